"""deploy/airflow/mnist_batch_score_dag.py run by a real Airflow (``airflow dags test``), not just parsed.

Run by ``make test-schedulers``, which installs Airflow and the Beam provider into their own virtualenv
(``.cache/airflow/venv``, pinned by ``deploy/airflow/airflow-lock.txt``) and sets ``MNIST_BATCH_AIRFLOW``
to its ``airflow``; skipped otherwise. Airflow keeps its metadata in SQLite in a temporary
``AIRFLOW_HOME``; no webserver or scheduler runs. The DAG's ``score`` task launches
``pipelines/score.py`` with this virtualenv's Python (``MNIST_BATCH_PYTHON``), so Airflow's environment
holds no TensorFlow. Nights, each one ``airflow dags test`` for a logical date:

* 2026-11-22: the bundled sample's test split exported with ``mnist-batch data export-images``:
  ``score`` commits run ``d20261122-try1`` on DirectRunner, ``monitor`` writes its page;
* 2026-11-23: 30 new files: only those are scored (``--incremental``);
* 2026-11-24: the first try's scorer is SIGKILLed mid-run: the second try commits the run, once;
* 2026-11-25: new files of one class: ``monitor`` fails with exit 5, the flag in its log;
* 2026-11-26: a wrong Variable (a model that does not exist): ``score`` fails with the CLI's one line
  in the task log, nothing committed.
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time

import numpy as np
import pytest

import scoring_fixtures

tiny_model = scoring_fixtures.tiny_model
sample_data = scoring_fixtures.sample_data
REPO = pathlib.Path(__file__).resolve().parents[1]
AIRFLOW = os.environ.get("MNIST_BATCH_AIRFLOW", "")
DAG_ID = "mnist_batch_score"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not AIRFLOW, reason="runs a real Airflow: make test-schedulers (installs it into .cache/airflow/venv)"
    ),
]


class Airflow:
    """One AIRFLOW_HOME with the DAG, the Variables of deploy/README and a runs root."""

    def __init__(self, base: pathlib.Path, model: pathlib.Path):
        self.base = base
        self.home = base / "airflow_home"
        self.scans = base / "scans"
        self.runs = base / "runs"
        self.monitor = base / "monitor"
        self.model = model
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "MNIST_BATCH_", "VIRTUAL_ENV"))}
        self.env |= {
            "AIRFLOW_HOME": str(self.home),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "MNIST_BATCH_PY_FILE": str(REPO / "pipelines" / "score.py"),
            "MNIST_BATCH_PYTHON": sys.executable,  # the project's virtualenv: TensorFlow, Beam, mnist_batch
            "MNIST_BATCH_RETRY_DELAY_S": "2",  # instead of 15 minutes
        }

    def cli(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
        return subprocess.run(
            [AIRFLOW, *args], env=self.env, capture_output=True, text=True, timeout=timeout, cwd=self.base
        )

    def dags_test(self, day: str) -> subprocess.CompletedProcess:
        done = self.cli("dags", "test", DAG_ID, day)
        (self.base / f"dags-test-{day}.log").write_text(done.stdout + done.stderr, encoding="utf-8")
        return done

    def task_states(self, day: str) -> dict[str, tuple[str, int]]:
        """task_id -> (state, try_number) of the DAG run for logical date ``day``, from the metadata DB."""
        with sqlite3.connect(self.home / "airflow.db") as db:
            rows = db.execute(
                "SELECT ti.task_id, ti.state, ti.try_number FROM task_instance ti JOIN dag_run dr"
                " ON ti.dag_id = dr.dag_id AND ti.run_id = dr.run_id"
                " WHERE dr.dag_id = ? AND date(dr.logical_date) = ?",
                (DAG_ID, day),
            ).fetchall()
        return {task: (state, tries) for task, state, tries in rows}

    def committed(self, day: str) -> list[str]:
        return sorted(p.parent.name.removeprefix("run=") for p in self.runs.glob(f"_runs/dt={day}/run=*/_SUCCESS"))

    def summary(self, day: str, run_id: str) -> dict:
        return json.loads((self.runs / f"_runs/dt={day}/run={run_id}/summary.json").read_text(encoding="utf-8"))


def add_scans(folder: pathlib.Path, data, indices, tag: str) -> int:
    """Writes new files (``<label>/<tag>-<index>.png``) of held-out digits, the distribution of the first
    night (the monitor's reference), so only the one-class night is flagged; the split is sorted by class."""
    from PIL import Image

    for i in indices:
        label = int(data.labels[i])
        (folder / str(label)).mkdir(parents=True, exist_ok=True)
        Image.fromarray(data.images[i]).save(folder / str(label) / f"{tag}-{i:05d}.png")
    return len(indices)


def log_text(done: subprocess.CompletedProcess) -> str:
    return done.stdout + done.stderr


@pytest.fixture(scope="module")
def airflow(tmp_path_factory, tiny_model) -> Airflow:
    """Airflow set up as deploy/README says, with the first night (2026-11-22) run."""
    base = tmp_path_factory.mktemp("airflow")
    models = base / "models"
    models.mkdir()
    shutil.copyfile(tiny_model, models / "cnn.keras")
    shutil.copyfile(tiny_model.with_suffix(".card.json"), models / "cnn.card.json")
    af = Airflow(base, models / "cnn.keras")
    export = subprocess.run(
        [
            sys.executable,
            "-m",
            "mnist_batch",
            "data",
            "export-images",
            "sample",
            "--split",
            "test",
            "--out",
            str(af.scans),
        ],
        capture_output=True,
        text=True,
    )
    assert export.returncode == 0, export.stdout + export.stderr
    (af.home / "dags").mkdir(parents=True)
    shutil.copyfile(
        REPO / "deploy" / "airflow" / "mnist_batch_score_dag.py", af.home / "dags" / "mnist_batch_score_dag.py"
    )
    migrate = af.cli("db", "migrate")
    assert migrate.returncode == 0, log_text(migrate)[-3000:]
    card = json.loads((models / "cnn.card.json").read_text(encoding="utf-8"))
    variables = {
        "mnist_batch_model": str(af.model),
        "mnist_batch_input": str(af.scans),
        "mnist_batch_output": str(af.runs),
        "mnist_batch_expect_model_id": card["model_id"],
        "mnist_batch_runner": "DirectRunner",
        "mnist_batch_monitor_dir": str(af.monitor),
        "mnist_batch_cmd": str(pathlib.Path(sys.executable).parent / "mnist-batch"),
    }
    (base / "variables.json").write_text(json.dumps(variables), encoding="utf-8")
    imported = af.cli("variables", "import", str(base / "variables.json"))
    assert imported.returncode == 0 and "7 of 7 variables successfully updated" in imported.stdout, log_text(imported)

    first = af.dags_test("2026-11-22")
    af.first_night = first
    return af


def test_score_commits_a_run_and_monitor_writes_its_page(airflow):
    out = log_text(airflow.first_night)
    assert airflow.first_night.returncode == 0, out[-5000:]
    assert airflow.task_states("2026-11-22") == {"score": ("success", 1), "monitor": ("success", 1)}
    assert airflow.committed("2026-11-22") == ["d20261122-try1"]
    summary = airflow.summary("2026-11-22", "d20261122-try1")
    assert summary["counts"]["scored"] == 2000 and summary["incremental"]["enabled"] is True
    assert "Running command: " + sys.executable in out and "--runner=DirectRunner" in out
    assert "scored 2,000 of 2,000 images" in out and "on DirectRunner" in out
    assert "latest run d20261122-try1 (dt=2026-11-22): ok" in out
    assert (airflow.monitor / "monitor.html").is_file() and (airflow.monitor / "runs.parquet").is_file()


def test_next_night_scores_only_the_new_files(airflow, sample_data):
    new = add_scans(airflow.scans, sample_data.split("test"), range(0, 2000, 20), "n20261123")  # 100, all classes
    done = airflow.dags_test("2026-11-23")
    assert done.returncode == 0, log_text(done)[-5000:]
    assert airflow.committed("2026-11-23") == ["d20261123-try1"]
    counts = airflow.summary("2026-11-23", "d20261123-try1")["counts"]
    assert counts["scored"] == new and counts["matched"] == new, counts
    assert f"scored {new} of {new} images" in log_text(done)


def scorer_pid(run_id: str) -> int | None:
    """The pid of the pipelines/score.py process launched with ``--run-id=RUN_ID``, if one runs."""
    for proc in pathlib.Path("/proc").glob("[0-9]*"):
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"--run-id={run_id}".encode() in argv and any(a.endswith(b"score.py") for a in argv):
            return int(proc.name)
    return None


def test_a_retry_after_the_scorer_is_killed_commits_one_run(airflow, sample_data):
    day, first_try, second_try = "2026-11-24", "d20261124-try1", "d20261124-try2"
    spread = sorted({int(i) for i in np.linspace(0, 1999, 300)})  # 300, all classes
    new = add_scans(airflow.scans, sample_data.split("test"), spread, "n20261124")
    log_path = airflow.base / f"dags-test-{day}.log"
    with open(log_path, "w", encoding="utf-8") as log:
        dags_test = subprocess.Popen(
            [AIRFLOW, "dags", "test", DAG_ID, day],
            env=airflow.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=airflow.base,
        )
        claim = airflow.runs / "_claims" / f"run={first_try}.json"
        deadline, pid = time.monotonic() + 300, None
        while time.monotonic() < deadline and dags_test.poll() is None:
            pid = scorer_pid(first_try)
            if pid and claim.exists():  # the first try's scorer has launched its run
                break
            time.sleep(0.05)
        assert pid and claim.exists(), log_path.read_text(encoding="utf-8")[-5000:]
        os.kill(pid, signal.SIGKILL)
        rc = dags_test.wait(timeout=900)
    out = log_path.read_text(encoding="utf-8")
    assert rc == 0, out[-5000:]
    assert "Apache Beam process failed with return code -9" in out
    assert airflow.task_states(day) == {"score": ("success", 2), "monitor": ("success", 1)}
    assert airflow.committed(day) == [second_try]  # one run, never two
    assert not list(airflow.runs.glob(f"*/dt={day}/run={first_try}"))  # no table holds the killed try's rows
    assert airflow.summary(day, second_try)["counts"]["scored"] == new
    listing = subprocess.run(
        [sys.executable, "-m", "mnist_batch", "runs", "list", str(airflow.runs)], capture_output=True, text=True
    )
    assert listing.returncode == 0 and second_try in listing.stdout and first_try not in listing.stdout, listing.stdout


def test_one_class_night_fails_the_monitor_task_with_exit_5(airflow, sample_data):
    day = "2026-11-25"
    test = sample_data.split("test")
    ones = [i for i in range(len(test.labels)) if int(test.labels[i]) == 1][:150]
    assert len(ones) == 150  # above --min-scored (100): the PSI checks run
    add_scans(airflow.scans, test, ones, "n20261125")
    done = airflow.dags_test(day)
    out = log_text(done)
    assert done.returncode != 0 and "DagRun failed" in out, out[-5000:]
    assert airflow.task_states(day) == {"score": ("success", 1), "monitor": ("failed", 1)}  # no retry of monitor
    assert airflow.committed(day) == ["d20261125-try1"]  # the flagged run is committed; the monitor reports it
    assert re.search(r"mnist-batch monitor: FAILED class_mix: run d20261125-try1 \(dt=2026-11-25\): .*PSI", out), out[
        -5000:
    ]
    assert "Command exited with return code 5" in out and "non-zero exit code 5" in out, out[-5000:]


def test_a_wrong_variable_fails_score_with_the_cli_line_and_commits_nothing(airflow):
    day = "2026-11-26"
    missing = str(airflow.base / "models" / "missing.keras")
    assert airflow.cli("variables", "set", "mnist_batch_model", missing).returncode == 0
    try:
        done = airflow.dags_test(day)
    finally:
        assert airflow.cli("variables", "set", "mnist_batch_model", str(airflow.model)).returncode == 0
    out = log_text(done)
    assert done.returncode != 0 and "DagRun failed" in out, out[-5000:]
    states = airflow.task_states(day)
    assert states["score"] == ("failed", 3) and states["monitor"][0] == "upstream_failed", states  # 1 + 2 retries
    # pipelines/score.py's one line (the CLI's error, with the script's name), logged once per try
    lines = [line for line in out.splitlines() if f"score: error: {missing}: no such model file" in line]
    assert len(lines) == 3, out[-5000:]
    assert out.count("Apache Beam process failed with return code 2") == 3
    assert airflow.committed(day) == [] and not list(airflow.runs.glob(f"*/dt={day}"))
