"""The scoring-only install (``pip install .``, no TensorFlow), as a user or a worker image gets it.

Runs the real console script of the virtualenv that ``make test-slim`` builds with ``pip install .``
(``MNIST_BATCH_SLIM_PYTHON``): score, predict, runs, monitor and report work on a model with its
LiteRT file; training, export, evaluate and the keras runtime stop with one line naming the install
that adds TensorFlow.
"""

from __future__ import annotations

import os
import pathlib
import subprocess

import pytest

import scoring_fixtures

SLIM_PYTHON = os.environ.get("MNIST_BATCH_SLIM_PYTHON")
pytestmark = [
    pytest.mark.slim,
    pytest.mark.slow,
    pytest.mark.skipif(not SLIM_PYTHON, reason="needs the scoring-only venv: make test-slim"),
]
tiny_model = scoring_fixtures.tiny_litert_model
sample_data = scoring_fixtures.sample_data
SIZE_GOAL_MB = 800
"""The slim environment's goal (issue 35): from ~2.6 GB with TensorFlow."""


def slim(*argv: str, cwd: pathlib.Path) -> subprocess.CompletedProcess:
    script = pathlib.Path(SLIM_PYTHON).parent / "mnist-batch"
    return subprocess.run([str(script), *argv], cwd=cwd, capture_output=True, text=True, timeout=300)


def test_the_slim_environment_has_no_tensorflow_and_fits_the_goal():
    code = "import importlib.util as u; print(u.find_spec('tensorflow'), u.find_spec('keras'))"
    done = subprocess.run([SLIM_PYTHON, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["None", "None"]
    venv = pathlib.Path(SLIM_PYTHON).parent.parent
    size = sum(p.stat().st_size for p in venv.rglob("*") if p.is_file() and not p.is_symlink())
    assert size / 1e6 <= SIZE_GOAL_MB, f"{venv}: {size / 1e6:.0f} MB"


def test_score_predict_runs_monitor_and_report_work_without_tensorflow(tiny_model, sample_data, tmp_path):
    scoring_fixtures.write_train_digits(sample_data, tmp_path / "in", 12)
    done = slim("score", "--model", str(tiny_model), "--input", "in", "--output", "flat", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "scored 12 of 12 images" in done.stdout and "runtime: litert" in done.stdout
    args = ["--model", str(tiny_model), "--input", "in", "--output", "root", "--layout", "runs", "--run-id", "n1"]
    assert slim("score", *args, cwd=tmp_path).returncode == 0
    image = next((tmp_path / "in").rglob("*.png"))
    predicted = slim("predict", str(image), "--model", str(tiny_model), cwd=tmp_path)
    assert predicted.returncode == 0 and image.name in predicted.stdout, predicted.stderr
    listed = slim("runs", "list", "root", cwd=tmp_path)
    assert listed.returncode == 0 and "1 committed run(s)" in listed.stdout, listed.stderr
    watched = slim("monitor", "root", "--output", "mon", cwd=tmp_path)
    assert watched.returncode == 0 and "latest run n1" in watched.stdout, watched.stderr
    reported = slim("report", "flat", cwd=tmp_path)
    assert reported.returncode == 0 and (tmp_path / "flat" / "report.html").is_file(), reported.stderr


@pytest.mark.parametrize(
    ("argv", "what"),
    [
        (["score", "--model", "{model}", "--input", "in", "--output", "k", "--runtime", "keras"], "the keras runtime"),
        (["train", "--epochs", "1"], "train"),
        (["export", "{model}"], "export"),
        (["evaluate", "--model", "{model}", "--output", "ev"], "evaluate"),
    ],
    ids=["keras-runtime", "train", "export", "evaluate"],
)
def test_what_needs_tensorflow_stops_with_one_line_naming_the_install(tiny_model, tmp_path, argv, what):
    (tmp_path / "in").mkdir()
    done = slim(*(a.replace("{model}", str(tiny_model)) for a in argv), cwd=tmp_path)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1, done.stderr
    assert lines[0].startswith(f"mnist-batch: error: {what}") and "pip install 'mnist-batch[train]'" in lines[0]
