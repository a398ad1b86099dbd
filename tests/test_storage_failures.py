"""A store that fails at any step of a run is one line naming the step, exit 2, no traceback, and
says what became of the run and its leases (issue 33, item 1), through the real CLI.

The failures are injected into the run store's file operations (``runstore.fs``), as a full disk
(``OSError`` ENOSPC) or a server gone (``ConnectionError``) raises them.
"""

from __future__ import annotations

import errno
import json

import pytest

import scoring_fixtures

apache_beam = pytest.importorskip("apache_beam")

from mnist_batch.cli import main as cli_main  # noqa: E402
from mnist_batch.runstore import fs, runs  # noqa: E402
from mnist_batch.tables import CLAIMS_DIR, JOURNAL_FILE  # noqa: E402

tiny_model = scoring_fixtures.tiny_litert_model  # the CLI scores it without TensorFlow
sample_data = scoring_fixtures.sample_data
write_inputs = scoring_fixtures.write_train_digits
pytestmark = pytest.mark.slow  # each scores a run through the CLI in-process (a few seconds)


def score_argv(model, inputs, root, *extra) -> list[str]:
    return ["score", "--model", str(model), "--input", str(inputs), "--output", str(root), "--layout", "runs",
            "--run-date", "2026-06-01", "--run-id", "r1", *extra]  # fmt: skip


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith("mnist-batch: error:")]
    assert len(lines) == 1, err
    return lines[0]


def failing(function, error: BaseException, when=lambda *a: True):
    def wrapped(*args, **kwargs):
        if when(*args):
            raise error
        return function(*args, **kwargs)

    return wrapped


def claims_only(uri, *_):
    return f"/{CLAIMS_DIR}/" in uri


@pytest.mark.parametrize(
    ("name", "error", "when", "step"),
    [
        ("create_exclusive", ConnectionError("Could not connect"), lambda *a: True, "prepare the run store"),
        ("create_exclusive", ConnectionError("Could not connect"), claims_only, "claim run r1 under"),
        ("write_atomic", OSError(errno.ENOSPC, "No space left on device"), lambda *a: True, "commit run r1 into"),
    ],
    ids=["layout file", "lease", "journal"],
)
def test_a_store_failing_at_a_step_is_one_line_naming_it(
    name, error, when, step, tiny_model, sample_data, tmp_path, monkeypatch, capsys
):
    inputs, root = tmp_path / "in", tmp_path / "root"
    write_inputs(sample_data, inputs, 4)
    monkeypatch.setattr(fs, name, failing(getattr(fs, name), error, when))
    assert cli_main(score_argv(tiny_model, inputs, root)) == 2
    line = one_error_line(capsys)
    assert f"{step}" in line and str(root) in line and "the storage failed" in line, line
    assert type(error).__name__ in line
    if step.startswith("commit"):
        assert "run r1 failed, nothing committed" in line  # the journal was never written
    monkeypatch.undo()
    assert not list(root.glob(f"{CLAIMS_DIR}/*.json"))  # released
    assert runs.committed_runs(str(root)) == []
    assert cli_main(score_argv(tiny_model, inputs, root)) == 0  # nothing wedged


def test_a_store_failing_mid_commit_says_runs_clean_completes_it(
    tiny_model, sample_data, tmp_path, monkeypatch, capsys
):
    inputs, root = tmp_path / "in", tmp_path / "root"
    write_inputs(sample_data, inputs, 8)
    monkeypatch.setattr(fs, "rename", failing(fs.rename, ConnectionError("the server went away")))
    assert cli_main(score_argv(tiny_model, inputs, root)) == 2
    line = one_error_line(capsys)
    # Before: "run r1 failed, nothing committed", and `runs clean` then committed it.
    assert "mid-commit" in line and "runs clean" in line and "completes it" in line, line
    assert "commit run r1 into" in line and "the storage failed: ConnectionError: the server went away" in line
    monkeypatch.undo()
    (journal,) = root.glob("_runs/**/" + JOURNAL_FILE)
    assert json.loads(journal.read_text())["fenced"] is True
    assert runs.clean(str(root))["completed"] == [str(journal)]
    assert [r.run_id for r in runs.committed_runs(str(root))] == ["r1"]


def test_a_lease_the_store_does_not_let_go_is_named_for_runs_clean(
    tiny_model, sample_data, tmp_path, monkeypatch, capsys
):
    inputs, root = tmp_path / "in", tmp_path / "root"
    write_inputs(sample_data, inputs, 4)
    monkeypatch.setattr(
        fs, "delete_file", failing(fs.delete_file, ConnectionError("timed out"), lambda uri: "/_claims/" in uri)
    )
    assert cli_main(score_argv(tiny_model, inputs, root)) == 0  # committed; its lease could not be deleted
    err = capsys.readouterr().err
    assert "note: lease(s) left for `mnist-batch runs clean" in err and "run=r1.json" in err, err
    monkeypatch.undo()
    assert [r.run_id for r in runs.committed_runs(str(root))] == ["r1"]


def test_runs_clean_with_a_failing_store_is_one_line(tiny_model, sample_data, tmp_path, monkeypatch, capsys):
    inputs, root = tmp_path / "in", tmp_path / "root"
    write_inputs(sample_data, inputs, 4)
    assert cli_main(score_argv(tiny_model, inputs, root)) == 0
    capsys.readouterr()
    monkeypatch.setattr(fs, "list_dir", failing(fs.list_dir, TimeoutError("Read timeout on endpoint URL")))
    assert cli_main(["runs", "clean", str(root)]) == 2
    line = one_error_line(capsys)
    assert f"runs clean {root}: the storage failed: TimeoutError" in line, line
