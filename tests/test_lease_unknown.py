"""A lease the store could not read is *unknown*, never "gone" (issue 33), against the real CLI.

The store failing is emulated by making every read of a lease (``ROOT/_claims/*.json``) raise
``ConnectionError`` from a chosen moment on: what boto3 raises when the server is down. Before,
``claims.read_lease`` took any exception for "no lease": the commit said it lost its lease, its
rollback failed too, and ``runs clean`` later rolled the journal forward, committing a run whose
launch had reported failure.
"""

from __future__ import annotations

import json
import pathlib

import pytest

import scoring_fixtures

apache_beam = pytest.importorskip("apache_beam")

from mnist_batch.cli import main as cli_main  # noqa: E402
from mnist_batch.runstore import claims, commit, fs, runs  # noqa: E402
from mnist_batch.tables import CLAIMS_DIR, JOURNAL_FILE  # noqa: E402

tiny_model = scoring_fixtures.tiny_litert_model  # the CLI scores it without TensorFlow
sample_data = scoring_fixtures.sample_data
write_inputs = scoring_fixtures.write_train_digits
RUN_DATE = "2026-06-01"
DEAD_PID = 2**30  # over any pid_max: no such process


def score_argv(model, inputs, root, *extra) -> list[str]:
    return ["score", "--model", str(model), "--input", str(inputs), "--output", str(root), "--layout", "runs",
            "--run-date", RUN_DATE, *extra]  # fmt: skip


def error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("mnist-batch: error:")]


class Store:
    """Lease reads (and, with ``deletes``, deletes) fail while :attr:`down` is set."""

    def __init__(self, monkeypatch, *, deletes: bool = False) -> None:
        self.down = False
        self.failed_reads = 0
        read_text, delete_tree, delete_file = fs.read_text, fs.delete_tree, fs.delete_file

        def read(uri):
            if self.down and f"/{CLAIMS_DIR}/" in uri:
                self.failed_reads += 1
                raise ConnectionError(f"Could not connect to the endpoint URL: {uri}")
            return read_text(uri)

        def guard(function):
            def wrapped(uri):
                if self.down and deletes:
                    raise ConnectionError(f"Could not connect to the endpoint URL: {uri}")
                return function(uri)

            return wrapped

        monkeypatch.setattr(fs, "read_text", read)
        monkeypatch.setattr(fs, "delete_tree", guard(delete_tree))
        monkeypatch.setattr(fs, "delete_file", guard(delete_file))
        monkeypatch.setattr(claims, "UNKNOWN_WAIT_S", 0.3)
        monkeypatch.setattr(claims, "UNKNOWN_RETRY_S", (0.05,))


def as_exited(root: pathlib.Path) -> None:
    """Leases left by an in-process launch, as its launcher's exit leaves them: their process gone."""
    for path in (root / CLAIMS_DIR).glob("*.json"):
        path.write_text(json.dumps({**json.loads(path.read_text()), "pid": DEAD_PID}))


def test_read_lease_has_three_answers(tmp_path, monkeypatch):
    uri = str(tmp_path / CLAIMS_DIR / "run=a.json")
    assert claims.read_lease(uri) is None  # no lease
    lease = claims.claim(str(tmp_path), "run=a", run_id="a", attempt="a.1")
    try:
        assert claims.read_lease(uri)["attempt"] == "a.1"
        store = Store(monkeypatch)
        store.down = True
        for error in (ConnectionError("refused"), OSError(5, "Input/output error"), TimeoutError("timed out")):
            monkeypatch.setattr(fs, "read_text", lambda _uri, e=error: (_ for _ in ()).throw(e))
            with pytest.raises(claims.LeaseUnknownError, match="cannot be read"):
                claims.read_lease(uri)
            with pytest.raises(claims.LeaseUnknownError, match="is unknown.*nothing was moved in"):
                claims.check_held([lease.fence], "commit run a")
            # Never judged dead on an error: `runs clean` and a launch's recovery stop instead.
            with pytest.raises(claims.LeaseUnknownError):
                claims.live_attempts(str(tmp_path))
            with pytest.raises(claims.LeaseUnknownError):
                claims.remove_stale(uri)
    finally:
        monkeypatch.undo()
        lease.release()


def test_the_fence_check_waits_out_a_short_outage(tmp_path, monkeypatch):
    lease = claims.claim(str(tmp_path), "run=a", run_id="a", attempt="a.1")
    store = Store(monkeypatch)
    read = fs.read_text

    def flaky(uri):
        if store.failed_reads < 3:
            store.failed_reads += 1
            raise ConnectionError("Read timeout on endpoint URL")
        return read(uri)

    monkeypatch.setattr(fs, "read_text", flaky)
    monkeypatch.setattr(claims, "UNKNOWN_WAIT_S", 5.0)
    claims.check_held([lease.fence], "commit run a")  # three failures, then the answer: still ours
    assert store.failed_reads == 3
    lease.release()


@pytest.mark.slow
def test_a_fence_check_the_store_cannot_answer_commits_nothing(tiny_model, sample_data, tmp_path, monkeypatch, capsys):
    inputs, root = tmp_path / "in", tmp_path / "root"
    write_inputs(sample_data, inputs, 12)
    store = Store(monkeypatch)
    check_shards = commit.check_shards

    def then_down(*args, **kwargs):  # the commit step starts: the store goes away
        check_shards(*args, **kwargs)
        store.down = True

    monkeypatch.setattr(commit, "check_shards", then_down)
    assert cli_main(score_argv(tiny_model, inputs, root, "--run-id", "r1")) == 2
    (line,) = error_lines(capsys.readouterr().err)
    # Before: "lost its lease ... (now held by no one (deleted as stale))".
    assert "is unknown" in line and "ConnectionError" in line and "nothing was moved in" in line, line
    assert "lost its lease" not in line and store.failed_reads >= 2  # retried before refusing
    monkeypatch.undo()
    assert runs.committed_runs(str(root)) == [] and not list(root.glob("_runs/**/" + JOURNAL_FILE))
    # Its release could not read the lease either: left, stale once the launcher has exited.
    assert list((root / CLAIMS_DIR).glob("*.json"))
    as_exited(root)
    assert cli_main(score_argv(tiny_model, inputs, root, "--run-id", "r1")) == 0  # the root is not wedged


@pytest.mark.slow
def test_a_rollback_the_store_cannot_finish_is_rolled_back_later_never_forward(
    tiny_model, sample_data, tmp_path, monkeypatch, capsys
):
    inputs, root = tmp_path / "in", tmp_path / "root"
    write_inputs(sample_data, inputs, 12)
    store = Store(monkeypatch, deletes=True)
    write_atomic = fs.write_atomic

    def then_down(uri, text):  # the journal is written, then the store goes away
        write_atomic(uri, text)
        if uri.endswith(JOURNAL_FILE):
            store.down = True

    monkeypatch.setattr(fs, "write_atomic", then_down)
    assert cli_main(score_argv(tiny_model, inputs, root, "--run-id", "r1")) == 2
    (line,) = error_lines(capsys.readouterr().err)
    assert "is unknown" in line and "rollback could not finish" in line and "runs clean" in line, line
    monkeypatch.setattr(fs, "write_atomic", write_atomic)
    (journal,) = root.glob("_runs/**/" + JOURNAL_FILE)
    assert json.loads(journal.read_text())["fenced"] is False
    as_exited(root)
    # Still down: `runs clean` stops with one line, judges nothing, moves nothing.
    assert cli_main(["runs", "clean", str(root)]) == 2
    (line,) = error_lines(capsys.readouterr().err)
    assert "cannot be read" in line and CLAIMS_DIR in line
    assert journal.exists() and runs.committed_runs(str(root)) == []
    assert list((root / CLAIMS_DIR).glob("*.json"))  # no lease deleted as stale on an error
    # Back up: rolled back (before: rolled forward, committing a run reported as failed).
    store.down = False
    assert cli_main(["runs", "clean", str(root)]) == 0
    out = capsys.readouterr().out
    assert f"rolled back (its launch failed before the commit point; the run is not committed): {journal}" in out
    assert runs.committed_runs(str(root)) == [] and not journal.exists()
    assert not list(root.glob("predictions/**/*.parquet"))
    monkeypatch.undo()
    assert cli_main(score_argv(tiny_model, inputs, root, "--run-id", "r1")) == 0
    assert [r.run_id for r in runs.committed_runs(str(root))] == ["r1"]


@pytest.mark.slow
def test_a_journal_written_before_the_fenced_mark_is_still_completed(
    tiny_model, sample_data, tmp_path, monkeypatch, capsys
):
    """A journal with no ``fenced`` key (an older version's) is rolled forward, as it was then."""
    inputs, root = tmp_path / "in", tmp_path / "root"
    write_inputs(sample_data, inputs, 12)
    rename = fs.rename

    def killed(src, dst):
        raise KeyboardInterrupt("killed mid-commit")

    monkeypatch.setattr(fs, "rename", killed)
    assert cli_main(score_argv(tiny_model, inputs, root, "--run-id", "old")) == 130
    monkeypatch.setattr(fs, "rename", rename)
    (journal,) = root.glob("_runs/**/" + JOURNAL_FILE)
    content = json.loads(journal.read_text())
    assert content.pop("fenced") is True  # past its checks: killed in the first move
    journal.write_text(json.dumps(content))
    assert runs.clean(str(root))["completed"] == [str(journal)]
    assert [r.run_id for r in runs.committed_runs(str(root))] == ["old"]
