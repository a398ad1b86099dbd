"""``mnist-batch train`` end to end on small slices, its errors (exit 2), and no Beam import."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from mnist_batch.cli import main
from mnist_batch.cli.train_cmd import MODEL_CHOICES

from conftest import write_npz

ROOT = pathlib.Path(__file__).resolve().parent.parent


def test_cli_model_choices_match_the_zoo():
    from mnist_batch.training.zoo import MODEL_NAMES

    assert set(MODEL_CHOICES) == set(MODEL_NAMES)


@pytest.mark.slow
def test_train_cli_end_to_end(tmp_path, capsys):
    export = tmp_path / "models" / "cnn.keras"
    run = tmp_path / "run"
    code = main(
        [
            "train",
            "--limit",
            "300",
            "--epochs",
            "1",
            "--batch-size",
            "64",
            "--run-dir",
            str(run),
            "--export",
            str(export),
            "--progress",
            "epoch",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "training cnn on sample: 300 train + 15 generated non-digits / 300 validation images" in out
    assert "epoch 1/1  loss " in out and "val_accuracy" in out
    assert f"model:          {export}" in out and "model_id:" in out and "test (300 images): accuracy" in out
    assert f"learning curve:  {run / 'learning_curve.png'}" in out
    card = json.loads((tmp_path / "models" / "cnn.card.json").read_text())
    assert card["model_name"] == "cnn" and card["split_sizes"]["train"] == 300


def run_cli(args, capsys):
    code = main(["train", *args])
    return code, capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--batch-size", "-3"], "--batch-size must be > 0, got -3"),  # the flag typed, not the field
        (["--epochs", "0"], "epochs must be > 0"),
        (["--strategy", "mirrored"], "strategy 'mirrored' needs a GPU"),
        (["--export", "model.h5"], "export must end with .keras"),
        (["--strategy", "multi-worker"], "needs the TF_CONFIG"),
        (["--dataset", "npz:/no/such/file.npz"], "no such file"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(args, message, capsys, monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    code, err = run_cli([*args, "--progress", "none"], capsys)
    assert code == 2
    assert err.startswith("mnist-batch: error: ") and message in err
    assert "Traceback" not in err


def test_bad_data_exit_2(tmp_path, capsys):
    empty = tmp_path / "empty.npz"
    write_npz(
        empty,
        x_train=np.zeros((0, 28, 28), np.uint8),
        y_train=np.zeros((0,), np.uint8),
    )
    code, err = run_cli(["--dataset", f"npz:{empty}", "--progress", "none"], capsys)
    assert code == 2 and "empty" in err

    bad_labels = tmp_path / "labels.npz"
    write_npz(bad_labels, y_train=np.full((60,), 12, np.uint8))
    code, err = run_cli(["--dataset", f"npz:{bad_labels}", "--progress", "none"], capsys)
    assert code == 2 and "label 12 out of range" in err

    bad_shape = tmp_path / "shape.npz"
    write_npz(bad_shape, x_train=np.zeros((60, 32, 32), np.uint8))
    code, err = run_cli(["--dataset", f"npz:{bad_shape}", "--progress", "none"], capsys)
    assert code == 2 and "28, 28" in err


def test_unwritable_export_exit_2(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, err = run_cli(
        ["--limit", "50", "--epochs", "1", "--export", f"{blocker}/m.keras", "--progress", "none"], capsys
    )
    assert code == 2 and "not writable" in err


@pytest.mark.slow
def test_training_never_imports_beam():
    code = (
        "import sys\n"
        "import mnist_batch.training, mnist_batch.training.train, mnist_batch.training.export\n"
        "import mnist_batch.cli.train_cmd, pipelines.train\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] == 'apache_beam')\n"
        "assert not bad, bad\n"
        "assert 'tensorflow' in sys.modules\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-2000:]


@pytest.mark.slow
def test_data_info_does_not_import_tensorflow():
    code = (
        "import sys\nfrom mnist_batch.cli import build_parser\nbuild_parser()\nassert 'tensorflow' not in sys.modules\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]
