"""The in-process engine (issue 36): the Beam job's tables without Beam, and when it runs.

Fast tier: the CLI called here with ``--engine beam`` and ``--engine inprocess`` on the same folders
(good digits, corrupt files, other extensions, a labels CSV), every table compared; ``--engine auto``'s
choice (the file limit, object stores, Beam options, the runs layout); a live lease refused.
Slow tier: a launch in its own process never imports Beam; two launches at once (the second exits 2);
a killed launch's lease and staging taken over by the next.
"""

from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import pyarrow.parquet as pq
import pytest
from PIL import Image

import scoring_fixtures

pytest.importorskip("apache_beam")

from mnist_batch.cli import main as cli_main
from mnist_batch.config import ScoreConfig
from mnist_batch.inprocess.engine import choose_engine, count_images
from mnist_batch.runstore import claims
from mnist_batch.scoring.errors import ScoringError
from mnist_batch.scoring.listing import translate_pattern
from mnist_batch.scoring.options import INPROCESS_MAX_FILES_ENV, RunOptions, ScoreSettings

REPO = pathlib.Path(__file__).resolve().parents[1]
tiny_model = scoring_fixtures.tiny_litert_model  # LiteRT: neither engine imports TensorFlow
sample_data = scoring_fixtures.sample_data
IGNORED = {"run_id", "scored_at"}
"""The columns that differ between any two runs."""
SUMMARY_IGNORED = {
    "attempt",
    "committed_at",
    "engine",
    "engine_reason",
    "images_per_s",
    "marker",
    "metrics",
    "output",
    "recovered",
    "run_id",
    "started_at",
    "started_at_epoch",
    "summary_path",
    "tables",
    "wall_time_s",
}


def write_folder(sample_data, folder: pathlib.Path, n: int = 12) -> pathlib.Path:
    """``n`` test digits under folder/<label>/, corrupt files, other extensions and a labels CSV (returned)."""
    test = sample_data.split("test")
    rows, first = ["path,label"], None
    for i in range(n):
        path = folder / str(test.labels[i]) / f"{i:05d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(test.images[i]).save(path)
        first = first or path
        if i % 3:  # a third of the images have no row: labelled by the CSV only where it says
            rows.append(f"{path},{(int(test.labels[i]) + (i % 2)) % 10}")
    (folder / "bad").mkdir()
    (folder / "bad" / "empty.png").write_bytes(b"")
    (folder / "bad" / "text.jpg").write_bytes(b"not an image\n" * 3)
    (folder / "bad" / "truncated.png").write_bytes(first.read_bytes()[:40])
    (folder / "notes.txt").write_text("not scored\n")
    (folder / "README").write_text("no extension\n")
    (folder / "broken.png").symlink_to(folder / "missing.png")
    labels = folder.parent / f"{folder.name}_labels.csv"
    labels.write_text("\n".join(rows) + "\n")
    return labels


def table(root: pathlib.Path, name: str) -> list[dict]:
    rows = pq.read_table(root / name).to_pylist()
    rows = [{k: v for k, v in r.items() if k not in IGNORED} for r in rows]
    return sorted(rows, key=lambda r: json.dumps(r, sort_keys=True, default=str))


def run_both(model, folder, tmp_path, capsys, *extra) -> dict[str, tuple[int, pathlib.Path, dict, str]]:
    """The same CLI launch with each engine: ``{engine: (exit code, output, summary, stdout)}``."""
    out = {}
    for engine in ("beam", "inprocess"):
        root = tmp_path / f"out_{engine}"
        argv = ["score", "--model", str(model), "--input", str(folder), "--output", str(root), *extra]
        code = cli_main([*argv, "--engine", engine])
        printed = capsys.readouterr()
        summary = json.loads((root / "summary.json").read_text()) if (root / "summary.json").exists() else {}
        out[engine] = (code, root, summary, printed.out + printed.err)
    return out


@pytest.mark.parametrize("labels_csv", [False, True], ids=["folder-labels", "labels-csv"])
def test_both_engines_write_the_same_tables_and_summary(tiny_model, sample_data, tmp_path, capsys, labels_csv):
    labels = write_folder(sample_data, tmp_path / "in")
    extra = ["--labels-csv", str(labels)] if labels_csv else []
    runs = run_both(tiny_model, tmp_path / "in", tmp_path, capsys, *extra, "--max-batch-size", "5")
    (code_b, root_b, summary_b, said_b), (code_i, root_i, summary_i, said_i) = runs["beam"], runs["inprocess"]
    assert code_b == code_i == 0, (said_b, said_i)
    assert summary_b["engine"] == "beam" and summary_i["engine"] == "inprocess"
    assert "in process (no Beam)" in said_i and "on DirectRunner" in said_b
    counts = summary_i["counts"]
    assert counts["matched"] == 15 and counts["scored"] == 12 and counts["errors"] == 3, counts  # all accounted for
    assert counts["skipped"] == 3 and set(summary_i["skipped_by_reason"]) == {
        "not an image extension",
        "broken symlink",
    }
    assert summary_i["errors_by_stage"] == {"decode": 3}
    if labels_csv:
        assert counts["labelled"] == 8 and summary_i["accuracy"] < 1.0  # the CSV's labels, half of them wrong
    for name in ("predictions", "errors", "confusion", "per_class"):
        beam_rows, inprocess_rows = table(root_b, name), table(root_i, name)
        assert beam_rows == inprocess_rows, name
        assert beam_rows or name == "errors"
    assert len(table(root_i, "predictions")) == 12 and len(table(root_i, "errors")) == 3
    for key in sorted(set(summary_b) | set(summary_i)):
        if key not in SUMMARY_IGNORED:
            assert summary_b.get(key) == summary_i.get(key), key


def test_overlapping_inputs_score_each_file_once_on_both_engines(tiny_model, sample_data, tmp_path, capsys):
    """A folder and a glob inside it: the in-process listing keeps the paths seen only for two or more
    patterns, and scores each file once, as the Beam job's DropDuplicatePaths."""
    write_folder(sample_data, tmp_path / "in")
    inner = str(tmp_path / "in" / "*" / "*.png")
    runs = run_both(tiny_model, tmp_path / "in", tmp_path, capsys, "--input", inner, "--max-batch-size", "4")
    for engine, (code, _root, summary, said) in runs.items():
        assert code == 0, said
        assert summary["counts"]["matched"] == 15 and summary["counts"]["scored"] == 12, (engine, summary["counts"])
    assert table(runs["beam"][1], "predictions") == table(runs["inprocess"][1], "predictions")


def test_both_engines_fail_the_same_way(tiny_model, sample_data, tmp_path, capsys):
    """Every file failing: exit 4 and the same failure; a pattern matching nothing: exit 2, one line each."""
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "a.png").write_bytes(b"")
    runs = run_both(tiny_model, tmp_path / "bad", tmp_path, capsys)
    assert runs["beam"][0] == runs["inprocess"][0] == 4
    assert runs["beam"][2]["failure"] == runs["inprocess"][2]["failure"] == "every one of the 1 matched files failed"
    for engine in ("beam", "inprocess"):
        argv = ["score", "--model", str(tiny_model), "--input", str(tmp_path / "nothing_*.png")]
        code = cli_main([*argv, "--output", str(tmp_path / f"none_{engine}"), "--engine", engine])
        err = capsys.readouterr().err
        assert code == 2 and err.count("\n") == 1 and "matches no files" in err, (engine, err)


def test_ctrl_c_in_process_commits_nothing_and_leaves_no_staged_shard(
    tiny_model, sample_data, tmp_path, capsys, monkeypatch
):
    """Ctrl-C mid-run (KeyboardInterrupt after some groups were scored and staged): exit 130 with one
    line, nothing committed, the attempt's staging deleted, the lease released; the next launch runs."""
    from mnist_batch.inprocess import job
    from mnist_batch.runstore import shards

    monkeypatch.setattr(shards, "ROWS_PER_GROUP", 4)  # rows reach the staged shard a group at a time
    monkeypatch.setattr(job, "ROWS_PER_GROUP", 4)

    folder = tmp_path / "in"
    write_folder(sample_data, folder, n=40)
    argv = ["score", "--model", str(tiny_model), "--input", str(folder), "--output", str(tmp_path / "out")]
    original, staged = job.Scorer.take, []

    def interrupted(self, paths, group):
        staged.extend(p for p in (tmp_path / "out").rglob("*.parquet"))
        if len(staged) >= 1:
            raise KeyboardInterrupt
        return original(self, paths, group)

    job.Scorer.take = interrupted
    try:
        code = cli_main([*argv, "--engine", "inprocess", "--max-batch-size", "4", "-q"])
    finally:
        job.Scorer.take = original
    assert code == 130 and capsys.readouterr().err == "mnist-batch: interrupted\n"
    out = tmp_path / "out"
    assert not (out / "summary.json").exists() and not (out / "predictions").exists()
    assert [p for p in out.rglob("*") if p.is_file()] == []  # no staged shard, no lease
    assert cli_main([*argv, "--engine", "inprocess", "-q"]) == 0
    assert json.loads((out / "summary.json").read_text())["counts"]["scored"] == 40


def settings(tmp_path, *, inputs=None, output=None, engine="auto", beam_args=(), layout="flat") -> ScoreSettings:
    config = ScoreConfig(
        model=str(tmp_path / "m.keras"),
        inputs=tuple(inputs or [str(tmp_path / "in")]),
        output=output or str(tmp_path / "out"),
    )
    return ScoreSettings.of(config, RunOptions(layout=layout), beam_args, engine)


def test_auto_runs_in_process_up_to_the_limit_and_on_beam_above_it(sample_data, tmp_path, monkeypatch):
    write_folder(sample_data, tmp_path / "in", n=6)
    monkeypatch.delenv(INPROCESS_MAX_FILES_ENV, raising=False)
    unlimited = choose_engine(settings(tmp_path))  # no limit by default: nothing listed before the job
    assert unlimited.engine == "inprocess" and unlimited.listing is None, unlimited
    assert count_images(settings(tmp_path), 100) == 9  # 6 digits and 3 corrupt image files
    monkeypatch.setenv(INPROCESS_MAX_FILES_ENV, "9")
    assert choose_engine(settings(tmp_path)).engine == "inprocess"
    monkeypatch.setenv(INPROCESS_MAX_FILES_ENV, "8")
    choice = choose_engine(settings(tmp_path))
    assert choice.engine == "beam" and "more than 8 image files" in choice.reason
    assert count_images(settings(tmp_path), 3) == 4  # the listing stops one file past the limit
    monkeypatch.setenv(INPROCESS_MAX_FILES_ENV, "many")
    with pytest.raises(ScoringError, match="not a whole number"):
        choose_engine(settings(tmp_path))


@pytest.mark.parametrize(
    "kind",
    ["s3-input", "s3-output", "runner", "multi-processing", "runs-layout"],
)
def test_auto_runs_on_beam_what_only_beam_runs_and_inprocess_refuses_it(sample_data, tmp_path, kind):
    write_folder(sample_data, tmp_path / "in", n=2)
    args = {
        "s3-input": {"inputs": ["s3://bucket/scans/"]},
        "s3-output": {"output": "s3://bucket/out"},
        "runner": {"beam_args": ("--runner", "DirectRunner")},
        "multi-processing": {"beam_args": ("--direct_running_mode", "multi_processing")},
        "runs-layout": {"layout": "runs"},
    }[kind]
    choice = choose_engine(settings(tmp_path, **args))
    assert choice.engine == "beam" and choice.reason
    with pytest.raises(ScoringError, match="--engine inprocess cannot run this launch"):
        choose_engine(settings(tmp_path, engine="inprocess", **args))
    assert choose_engine(settings(tmp_path, engine="beam", **args)).engine == "beam"


def test_an_at_list_naming_a_bucket_runs_on_beam(sample_data, tmp_path):
    write_folder(sample_data, tmp_path / "in", n=2)
    listing = tmp_path / "list.txt"
    listing.write_text(f"{tmp_path / 'in'}\ns3://bucket/more/\n")
    assert choose_engine(settings(tmp_path, inputs=[f"@{listing}"])).engine == "beam"
    with pytest.raises(ScoringError, match="--engine inprocess cannot run this launch: --input s3://bucket/more/"):
        choose_engine(settings(tmp_path, inputs=[f"@{listing}"], engine="inprocess"))
    listing.write_text(f"{tmp_path / 'in'}\n")
    assert choose_engine(settings(tmp_path, inputs=[f"@{listing}"], engine="inprocess")).engine == "inprocess"


def test_translate_pattern_is_beams():
    from apache_beam.io.filesystem import FileSystem

    for pattern in (
        "/a/**",
        "/a/*.png",
        "/a/?/[0-9]*.jp*g",
        "/a/[!x]y/**/*.png",
        "/a/[[]b]/c",
        "/a/[^z]",
        "/a/[",
        "/a/\\b",
    ):
        assert translate_pattern(pattern) == FileSystem.translate_pattern(pattern), pattern


def test_a_live_lease_refuses_the_in_process_launch_in_one_line(tiny_model, sample_data, tmp_path, capsys):
    write_folder(sample_data, tmp_path / "in", n=2)
    root = tmp_path / "out"
    root.mkdir()
    held = claims.claim(str(root), "run=busy", run_id="busy", attempt="busy.1")  # a live launch (this process)
    try:
        argv = ["score", "--model", str(tiny_model), "--input", str(tmp_path / "in"), "--output", str(root)]
        assert cli_main([*argv, "--run-id", "busy", "--engine", "inprocess"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "run busy under" in err and f"pid {os.getpid()}" in err, err
        assert not list(root.rglob("*.parquet"))
    finally:
        held.release()


# --- in their own processes (slow) -------------------------------------------------------------

ENV = dict(os.environ, PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="3")


@pytest.mark.slow
def test_a_small_launch_never_imports_beam(tiny_model, sample_data, tmp_path):
    write_folder(sample_data, tmp_path / "in", n=4)
    code = (
        "import sys, json\nfrom mnist_batch.cli import main\n"
        f"rc = main(['score', '--model', {str(tiny_model)!r}, '--input', {str(tmp_path / 'in')!r}, "
        f"'--output', {str(tmp_path / 'out')!r}, '-q'])\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('apache_beam', 'tensorflow', 'keras', 'pandas'))\n"
        "import pyarrow as pa\n"
        "assert len(pa.table({'a': [1, 2]}).to_pandas()) == 2  # pyarrow still finds pandas when asked for it\n"
        "print('RESULT', json.dumps([rc, heavy]))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV, timeout=120)
    rc, heavy = json.loads(proc.stdout.split("RESULT ", 1)[1])
    assert rc == 0 and heavy == [], proc.stderr
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["engine"] == "inprocess"
    # the same launch made to run on Beam does import it (the check can fail)
    proc = subprocess.run(
        [sys.executable, "-c", code.replace("'-q'", "'-q', '--engine', 'beam'")],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=120,
    )
    assert "apache_beam" in json.loads(proc.stdout.split("RESULT ", 1)[1])[1]


def launch_blocked(model, inputs, out, run_id, fifo) -> subprocess.Popen:
    """A launch that holds its lease while it waits for its labels CSV (a FIFO nobody writes yet)."""
    argv = ["score", "--model", str(model), "--input", str(inputs), "--output", str(out), "--run-id", run_id]
    argv += ["--labels-csv", str(fifo), "--engine", "inprocess", "-q"]
    return subprocess.Popen(
        [sys.executable, "-m", "mnist_batch", *argv], env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def wait_for_lease(out: pathlib.Path, timeout: float = 60.0) -> None:
    """Until the launch into the flat output ``out`` holds its leases (the output's is taken last)."""
    deadline = time.monotonic() + timeout
    while not (out / "_claims" / "output.json").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert (out / "_claims" / "output.json").exists(), "the first launch never took its leases"


@pytest.mark.slow
@pytest.mark.parametrize(
    ("second_id", "refusal"),
    [("same", "run same under"), ("other", "the output ")],
    ids=["same-run-id", "another-run-id"],
)
def test_two_in_process_launches_at_once_the_second_exits_2(tiny_model, sample_data, tmp_path, second_id, refusal):
    """A second launch into a flat output that a live launch is scoring into is refused at once, one
    line naming the first, whatever its run id: it does not score everything to learn at its commit."""
    labels = write_folder(sample_data, tmp_path / "in", n=3)
    fifo = tmp_path / "labels.fifo"
    os.mkfifo(fifo)
    out = tmp_path / "out"
    first = launch_blocked(tiny_model, tmp_path / "in", out, "same", fifo)
    try:
        wait_for_lease(out)
        argv = ["score", "--model", str(tiny_model), "--input", str(tmp_path / "in"), "--output", str(out)]
        second = subprocess.run(
            [sys.executable, "-m", "mnist_batch", *argv, "--run-id", second_id, "--engine", "inprocess"],
            capture_output=True,
            text=True,
            env=ENV,
            timeout=120,
        )
        assert second.returncode == 2 and second.stderr.count("\n") == 1, second.stderr
        assert refusal in second.stderr and f"pid {first.pid}" in second.stderr, second.stderr
        assert "attempt same." in second.stderr, second.stderr
        assert sorted(p.name for p in (out / "_claims").iterdir()) == ["output.json", "run=same.json"]
        with open(fifo, "w") as f:  # the first goes on and commits
            f.write(labels.read_text())
        assert first.wait(timeout=120) == 0, first.stderr.read()
    finally:
        first.kill()
    assert json.loads((out / "summary.json").read_text())["counts"]["scored"] == 3


@pytest.mark.slow
@pytest.mark.parametrize("next_id", ["k1", "k2"])
def test_a_killed_in_process_launch_leaves_a_lease_the_next_takes_over(tiny_model, sample_data, tmp_path, next_id):
    """The next launch into the output, with the killed one's run id or another, takes over its leases
    and deletes them and its staging: nothing of the killed launch is left."""
    write_folder(sample_data, tmp_path / "in", n=3)
    fifo = tmp_path / "labels.fifo"
    os.mkfifo(fifo)
    out = tmp_path / "out"
    first = launch_blocked(tiny_model, tmp_path / "in", out, "k1", fifo)
    wait_for_lease(out)
    os.kill(first.pid, signal.SIGKILL)
    first.wait(timeout=30)
    argv = ["score", "--model", str(tiny_model), "--input", str(tmp_path / "in"), "--output", str(out)]
    proc = subprocess.run(
        [sys.executable, "-m", "mnist_batch", *argv, "--run-id", next_id, "--engine", "inprocess", "--overwrite"],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert not list(out.glob("_claims/*")) and not any((out / "_staging").glob("*"))
    assert json.loads((out / "summary.json").read_text())["counts"]["scored"] == 3


def test_quiet_runs_count_nothing_for_a_progress_line_nobody_sees(sample_data, tiny_model, tmp_path, monkeypatch):
    """``-q`` shows no progress line, so the run keeps none: no counting process takes CPU from scoring
    (it cost ~5 µs a file, on the core the decode helper scores on). Without ``-q`` the line is kept."""
    from mnist_batch.inprocess import count

    started = []
    monkeypatch.setenv("MNIST_BATCH_PROGRESS_S", "0.05")
    monkeypatch.setattr(
        count.FileCounter, "__init__", lambda self, *a: started.append(a) or setattr(self, "_total", None)
    )
    monkeypatch.setattr(count.FileCounter, "total", lambda self: None)
    monkeypatch.setattr(count.FileCounter, "close", lambda self: None)
    monkeypatch.setattr(count.ProgressLine, "add", lambda self, n=1: time.sleep(0.06))  # every add past an interval
    write_folder(sample_data, tmp_path / "in", n=6)
    args = ["score", "--model", str(tiny_model), "--input", str(tmp_path / "in"), "--engine", "inprocess"]
    assert cli_main([*args, "--output", str(tmp_path / "q"), "-q", "--max-batch-size", "2"]) == 0
    assert started == []
    assert cli_main([*args, "--output", str(tmp_path / "v"), "--max-batch-size", "2"]) == 0
    assert len(started) == 1


def test_the_progress_line_gets_its_total_from_a_counting_process(sample_data, tmp_path, capsys):
    """After the first interval the in-process progress line shows "N of TOTAL files done ... ETA",
    the total counted by a child process listing the same patterns as the job (corrupt image files
    count, other extensions do not); a run over before the count is done leaves no process behind."""
    from mnist_batch.config import IMAGE_EXTENSIONS
    from mnist_batch.inprocess.count import CountedProgress
    from mnist_batch.scoring.progress import ProgressLine

    write_folder(sample_data, tmp_path / "in", n=6)
    # an @LIST's worth of patterns (300 KB: more than one command-line argument may hold) goes on stdin
    patterns = [str(tmp_path / "in") + "/**"] + [f"{tmp_path}/gone/{'x' * 250}{i}/*.png" for i in range(1200)]
    progress = CountedProgress(ProgressLine(every_s=0.0), patterns, IMAGE_EXTENSIONS, str(tmp_path / "out"))
    deadline = time.monotonic() + 30
    while "of 9 files done" not in capsys.readouterr().err:
        assert time.monotonic() < deadline, "no total within 30 s"
        progress.add(1)
        time.sleep(0.05)
    progress.close()
    progress.add(1)  # the line keeps its total once counted
    assert "ETA" in capsys.readouterr().err
    stopped = CountedProgress(ProgressLine(every_s=0.0), patterns, IMAGE_EXTENSIONS, str(tmp_path / "out"))
    stopped.add(1)  # starts the count
    counter = stopped._counter
    stopped.close()
    assert counter is not None and counter._process.poll() is not None


def test_the_decode_helper_starts_at_the_first_full_group_and_never_for_one_short_group(
    sample_data, tiny_model, tmp_path, monkeypatch
):
    """A run of fewer files than a group starts no helper process; a full first group starts it
    before that group is scored (it gets ready meanwhile, instead of one group later)."""
    from mnist_batch.inprocess import job

    events = []

    class RecordedPool(job.DecodePool):
        def __init__(self, *args, **kwargs):
            events.append("helper")
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(job, "DecodePool", RecordedPool)
    monkeypatch.setattr(job, "helper_count", lambda: 1)
    take = job.Scorer.take
    monkeypatch.setattr(job.Scorer, "take", lambda self, *a: events.append("group") or take(self, *a))
    write_folder(sample_data, tmp_path / "in", n=6)
    args = ["score", "--model", str(tiny_model), "--input", str(tmp_path / "in"), "--engine", "inprocess", "-q"]
    assert cli_main([*args, "--output", str(tmp_path / "one"), "--max-batch-size", "64"]) == 0
    assert events == ["group"]
    events.clear()
    assert cli_main([*args, "--output", str(tmp_path / "many"), "--max-batch-size", "2"]) == 0
    assert events[:2] == ["helper", "group"] and events.count("helper") == 1
