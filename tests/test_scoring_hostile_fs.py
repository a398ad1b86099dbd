"""Issue #11: the filesystem, the model file and the environment turned against a scoring run.

Each case runs the real command line (``mnist_batch.cli.main`` in process, or
``python -m mnist_batch`` in a child process where the original code hung or grew without bound):

* non-regular files named as images (a FIFO, a symlink to ``/dev/urandom``) and a sparse 3 GB
  file are read errors with a reason, never read (the child run has a timeout and a peak-RSS
  bound);
* broken symlinks, symlink loops, a symlink to a folder, an unreadable folder and folders of
  this tool's outputs are skipped rows with a reason. Tests run as root, and root lists mode-000
  folders, so the child patches the listing's one ``os.scandir`` call
  (``listing.scan_dir``) to raise the PermissionError a normal user gets; the folder really is
  mode 000;
* a model file replaced between the launcher's check and the workers' load fails the run: exit 2,
  one line, nothing committed;
* a read-only output (a read-only tmpfs mount; skipped where mounting is not allowed) and an
  unknown ``--runner`` are exit 2 with one line, before any file is read;
* damaged model files are one line naming the file and what is wrong;
* a 36 MP RGBA image is decoded within a peak-RSS bound (child process).
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import pathlib
import resource
import shutil
import stat
import subprocess
import sys
import textwrap
import zipfile

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image, ImageDraw

from mnist_batch.model_card import file_sha256, read_card, write_card

import scoring_fixtures

apache_beam = pytest.importorskip("apache_beam")

from mnist_batch import files, models  # noqa: E402
from mnist_batch.cli import main as cli_main  # noqa: E402
from mnist_batch.runstore import storage  # noqa: E402
from mnist_batch.runstore.store import Storage  # noqa: E402
from mnist_batch.scoring import decode, matching, worker_errors  # noqa: E402

tiny_model = scoring_fixtures.tiny_model
sample_data = scoring_fixtures.sample_data

REPO = pathlib.Path(__file__).resolve().parents[1]
HUGE_BYTES = 3 * 1024**3
RUN_TIMEOUT_S = 240
CHILD_RSS_LIMIT_MB = 2000
"""The whole scoring child (TensorFlow, Beam, the model) stays far below the 3 GB a read of the sparse
file, or of /dev/urandom, would add."""

LISTING_DRIVER = textwrap.dedent(
    """
    import errno, os, resource, sys
    from mnist_batch.scoring import listing

    original = listing.scan_dir

    def scan_dir(path):
        # Root lists mode-000 folders; a normal user gets this error.
        if os.stat(path).st_mode & 0o777 == 0:
            raise PermissionError(errno.EACCES, "Permission denied", path)
        return original(path)

    listing.scan_dir = scan_dir
    from mnist_batch.cli import main

    code = main(sys.argv[1:])
    print("MAXRSS_KB", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)
    sys.exit(code)
    """
)


def digit_png(sample_data, index: int) -> tuple[bytes, int]:
    test = sample_data.split("test")
    return scoring_fixtures.encode(Image.fromarray(test.images[index]), "PNG"), int(test.labels[index])


def fake_flat_output(folder: pathlib.Path, png: bytes) -> None:
    """What ``score`` + ``report`` leave: summary.json, predictions/, and PNG plots beside them."""
    (folder / "predictions").mkdir(parents=True)
    (folder / "predictions" / "part-0.parquet").write_bytes(b"PAR1")
    (folder / "summary.json").write_text("{}", encoding="utf-8")
    (folder / "confusion.png").write_bytes(png)
    (folder / "report_plots").mkdir()
    (folder / "report_plots" / "histogram.png").write_bytes(png)


def build_hostile_folder(root: pathlib.Path, sample_data) -> dict[str, tuple[str, str]]:
    """Writes the issue's filesystem cases under ``root``; returns {relative path: (where, reason)}."""
    good, _ = digit_png(sample_data, 0)
    root.mkdir(parents=True)
    expected: dict[str, tuple[str, str]] = {}
    for i in range(3):
        data, label = digit_png(sample_data, i)
        (root / str(label)).mkdir(exist_ok=True)
        (root / str(label) / f"{i}.png").write_bytes(data)
        expected[f"{label}/{i}.png"] = ("prediction", "")
    os.mkfifo(root / "x.png")
    expected["x.png"] = ("error:read", "not a regular file (FIFO)")
    os.symlink("/dev/urandom", root / "noise.png")
    expected["noise.png"] = ("error:read", "not a regular file (character device)")
    with open(root / "huge.png", "wb") as f:
        f.truncate(HUGE_BYTES)  # sparse: no disk used
    expected["huge.png"] = ("error:read", f"file is {HUGE_BYTES:,} bytes, over --max-file-bytes")
    os.symlink(root / "nowhere.png", root / "broken.png")
    expected["broken.png"] = ("skipped", "broken symlink")
    os.symlink("loop.png", root / "loop.png")
    expected["loop.png"] = ("skipped", "symlink loop")
    os.symlink("loop_b.png", root / "loop_a.png")
    os.symlink("loop_a.png", root / "loop_b.png")
    expected["loop_a.png"] = expected["loop_b.png"] = ("skipped", "symlink loop")
    (root / "locked").mkdir()
    (root / "locked" / "hidden.png").write_bytes(good)
    os.chmod(root / "locked", 0)
    expected["locked/"] = ("skipped", "unreadable folder: Permission denied")
    os.symlink(root / "0", root / "linked_folder")
    expected["linked_folder"] = ("skipped", "symlink to a folder (not followed)")
    fake_flat_output(root / "first_run", good)
    expected["first_run/"] = ("skipped", "output of mnist-batch")
    store = root / "store"
    (store / "dt=2026-01-01" / "run=a").mkdir(parents=True)
    (store / "_mnist_batch_layout.json").write_text("{}", encoding="utf-8")
    (store / "dt=2026-01-01" / "run=a" / "plot.png").write_bytes(good)
    expected["store/"] = ("skipped", "output of mnist-batch")
    (root / "scored").mkdir()  # this run's own --output, inside its input
    (root / "scored" / "leftover.png").write_bytes(good)
    expected["scored/"] = ("skipped", "output of mnist-batch")
    return expected


@pytest.fixture(scope="module")
def hostile_run(tiny_model, sample_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile")
    inputs = root / "in"
    expected = build_hostile_folder(inputs, sample_data)
    output = inputs / "scored"
    command = [sys.executable, "-c", LISTING_DRIVER, "score", "--model", str(tiny_model)]
    command += ["--input", str(inputs), "--output", str(output), "--run-id", "hostile"]
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2"}
    try:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=RUN_TIMEOUT_S, env=env, cwd=root)
    finally:
        os.chmod(inputs / "locked", 0o755)  # let pytest clean up
    return inputs, output, expected, proc


@pytest.mark.slow
def test_hostile_filesystem_run_finishes_in_bounded_memory(hostile_run):
    _inputs, _output, _expected, proc = hostile_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    max_rss_kb = int(proc.stderr.rsplit("MAXRSS_KB", 1)[1].split()[0])
    assert max_rss_kb / 1024 < CHILD_RSS_LIMIT_MB, max_rss_kb


def test_every_entry_lands_in_predictions_errors_or_skipped_with_its_reason(hostile_run):
    inputs, output, expected, _proc = hostile_run
    landed: dict[str, tuple[str, str]] = {}
    for path in pq.read_table(output / "predictions").column("path").to_pylist():
        landed[os.path.relpath(path, inputs)] = ("prediction", "")
    errors = pq.read_table(output / "errors").to_pydict()
    for path, stage, message in zip(errors["path"], errors["stage"], errors["message"], strict=True):
        landed[os.path.relpath(path, inputs)] = (f"error:{stage}", message)
    summary = json.loads((output / "summary.json").read_text(encoding="utf-8"))
    for where, wanted in expected.items():
        if wanted[0] == "skipped":
            continue
        assert where in landed, where
        assert landed[where][0] == wanted[0] and landed[where][1].startswith(wanted[1]), (where, landed[where])
    assert {k for k, v in expected.items() if v[0] != "skipped"} == set(landed)
    skipped = {}
    for reason in {v[1] for v in expected.values() if v[0] == "skipped"}:
        skipped[reason] = sum(1 for v in expected.values() if v == ("skipped", reason))
    assert summary["skipped_by_reason"] == skipped
    assert summary["counts"]["matched"] == len(landed)
    assert summary["counts"]["skipped"] == sum(skipped.values())
    assert summary["exit_code"] == 0


def test_outputs_inside_the_input_are_never_scored(hostile_run):
    inputs, output, _expected, _proc = hostile_run
    paths = pq.read_table(output / "predictions").column("path").to_pylist()
    paths += pq.read_table(output / "errors").column("path").to_pylist()
    for folder in ("first_run", "store", "scored", "locked", "linked_folder"):
        assert not [p for p in paths if p.startswith(str(inputs / folder) + "/")], folder


# --- the model that scores is the model that was checked --------------------------------------


@pytest.fixture(scope="module")
def other_model(tiny_model, tmp_path_factory) -> pathlib.Path:
    """A valid model of the same architecture whose digit outputs are rolled by one (d -> d + 1)."""
    import keras

    model = keras.saving.load_model(tiny_model, compile=False)
    weights = model.get_weights()
    weights[-2], weights[-1] = np.roll(weights[-2], 1, axis=1), np.roll(weights[-1], 1)
    model.set_weights(weights)
    path = tmp_path_factory.mktemp("other") / "other.keras"
    model.save(path)
    return path


def swap_after_check(monkeypatch, model: pathlib.Path, replacement: pathlib.Path) -> None:
    """Replaces ``model`` (not its card) right after the launcher's check, before any worker loads it."""
    real_choose = models.choose_runtime

    def choose_then_swap(uri, card, requested="auto"):
        scorer = real_choose(uri, card, requested)
        shutil.copyfile(replacement, model)
        return scorer

    from mnist_batch.scoring import attempt  # the launch sequence both engines share

    monkeypatch.setattr(attempt, "choose_runtime", choose_then_swap)


SWAP_DRIVER = textwrap.dedent(
    """
    import shutil, sys
    from mnist_batch import models

    real_choose = models.choose_runtime

    def choose_then_swap(uri, card, requested="auto"):
        scorer = real_choose(uri, card, requested)
        shutil.copyfile(sys.argv[1], scorer.uri)  # another valid model, its card not updated
        return scorer

    models.choose_runtime = choose_then_swap
    from mnist_batch.cli import main

    sys.exit(main(sys.argv[2:]))
    """
)


def model_copy_and_inputs(tiny_model, sample_data, tmp_path) -> tuple[pathlib.Path, pathlib.Path]:
    model = tmp_path / "models" / "cnn.keras"
    model.parent.mkdir()
    shutil.copyfile(tiny_model, model)
    write_card(read_card(tiny_model), model)
    inputs = tmp_path / "in"
    inputs.mkdir()
    for i in range(4):
        (inputs / f"{i}.png").write_bytes(digit_png(sample_data, i)[0])
    return model, inputs


def assert_model_changed_line(line: str, model: pathlib.Path, tiny_model, other_model) -> None:
    assert line.startswith(f"mnist-batch: error: model {model} changed since it was checked: "), line
    assert f"sha256 {file_sha256(other_model)[:12]}... != card model_id {file_sha256(tiny_model)[:12]}..." in line


@pytest.mark.slow
def test_a_model_swapped_after_the_check_fails_the_run_with_one_line(tiny_model, other_model, sample_data, tmp_path):
    """The real command line in a child: exit 2, one error line, no traceback on stderr, no summary."""
    model, inputs = model_copy_and_inputs(tiny_model, sample_data, tmp_path)
    out = tmp_path / "out"
    command = [sys.executable, "-c", SWAP_DRIVER, str(other_model), "score", "--model", str(model)]
    command += ["--input", str(inputs), "--output", str(out)]
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.run(command, capture_output=True, text=True, timeout=RUN_TIMEOUT_S, env=env, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    # One error line; a progress line ("loading Beam ...", shown when start-up passes 2 s) is not an error.
    said = [line for line in proc.stderr.splitlines() if "mnist-batch" in line or "changed since" in line]
    lines = [line for line in said if "progress:" not in line]
    assert len(lines) == 1, proc.stderr[-3000:]
    assert_model_changed_line(lines[0], model, tiny_model, other_model)
    assert not (out / "summary.json").exists()


def test_a_model_swapped_after_the_check_fails_a_runs_layout_run_uncommitted(
    tiny_model, other_model, sample_data, tmp_path, monkeypatch, capsys
):
    model, inputs = model_copy_and_inputs(tiny_model, sample_data, tmp_path)
    swap_after_check(monkeypatch, model, other_model)
    root = tmp_path / "root"
    expect = file_sha256(tiny_model)[:12]
    args = ["score", "--model", str(model), "--input", str(inputs), "--output", str(root)]
    code = cli_main([*args, "--layout", "runs", "--run-id", "swapped", "--expect-model-id", expect])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert_model_changed_line(err.strip(), model, tiny_model, other_model)
    assert not list(root.rglob("_SUCCESS")) and not list(root.rglob("summary.json"))


def test_prediction_rows_carry_the_id_of_the_bytes_that_scored_them(tiny_model, sample_data, tmp_path, capsys):
    inputs = tmp_path / "in"
    inputs.mkdir()
    (inputs / "a.png").write_bytes(digit_png(sample_data, 0)[0])
    out = tmp_path / "out"
    assert cli_main(["score", "--model", str(tiny_model), "--input", str(inputs), "--output", str(out)]) == 0
    ids = set(pq.read_table(out / "predictions").column("model_id").to_pylist())
    assert ids == {file_sha256(tiny_model)}
    runtime_ids = set(pq.read_table(out / "predictions").column("runtime_model_id").to_pylist())
    assert runtime_ids == {file_sha256(tiny_model)}  # Keras scored the .keras file itself


# --- damaged model files ----------------------------------------------------------------------


def damaged(kind: str, tiny_model: pathlib.Path) -> bytes:
    data = tiny_model.read_bytes()
    if kind == "not a zip":
        return b"<html>404 Not Found</html>\n"
    if kind == "truncated":
        return data[: len(data) // 2]
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as source, zipfile.ZipFile(out, "w") as target:
        for item in source.infolist():
            if item.filename != "model.weights.h5":
                target.writestr(item, source.read(item))
    return out.getvalue()


@pytest.mark.parametrize(
    ("kind", "card_matches", "message"),
    [
        ("not a zip", True, "not a complete .keras zip archive"),
        ("truncated", True, "not a complete .keras zip archive"),
        ("truncated", False, "not a complete .keras zip archive"),
        ("missing weights", True, "the archive has no model.weights.h5"),
    ],
)
def test_a_damaged_model_file_is_one_line_naming_it(kind, card_matches, message, tiny_model, tmp_path, capsys):
    model = tmp_path / "cnn.keras"
    model.write_bytes(damaged(kind, tiny_model))
    card = read_card(tiny_model)
    write_card(dataclasses.replace(card, model_id=file_sha256(model)) if card_matches else card, model)
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.png").write_bytes(b"unused")
    code = cli_main(["score", "--model", str(model), "--input", str(tmp_path / "in"), "--output", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert err.startswith(f"mnist-batch: error: {model}: cannot load the Keras model: {message}"), err
    assert "File not found" not in err


# --- the environment, before any file is read -------------------------------------------------


@pytest.fixture
def opened_files(monkeypatch) -> list[str]:
    opened: list[str] = []
    original = files.open_local

    def recording(path):
        opened.append(path)
        return original(path)

    monkeypatch.setattr(files, "open_local", recording)
    return opened


@pytest.fixture
def read_only_folder(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(folder)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a read-only tmpfs here: {mounted.stderr.decode(errors='replace').strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=False)


def score_args(tiny_model, inputs: pathlib.Path, output: pathlib.Path, *extra: str) -> list[str]:
    return ["score", "--model", str(tiny_model), "--input", str(inputs), "--output", str(output), *extra]


@pytest.mark.parametrize("layout", ["flat", "runs"])
def test_a_read_only_output_is_one_line_before_any_file_is_read(
    layout, read_only_folder, tiny_model, sample_data, tmp_path, opened_files, capsys
):
    inputs = tmp_path / "in"
    inputs.mkdir()
    (inputs / "a.png").write_bytes(digit_png(sample_data, 0)[0])
    extra = ("--layout", "runs") if layout == "runs" else ()
    code = cli_main(score_args(tiny_model, inputs, read_only_folder / "out", *extra))
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert err.startswith(f"mnist-batch: error: --output {read_only_folder / 'out'}: cannot write there (Read-only")
    assert opened_files == []


def test_a_probe_of_a_new_output_leaves_nothing_behind(tmp_path):
    from mnist_batch.scoring.preflight import check_output_writable

    check_output_writable(str(tmp_path / "a" / "b" / "out"))
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "kept").mkdir()
    check_output_writable(str(tmp_path / "kept"))
    assert list((tmp_path / "kept").iterdir()) == []


def test_a_probe_never_removes_what_another_launch_wrote_meanwhile(tmp_path, monkeypatch):
    """Two launches into a new root at once: the first one's probe folder is the second one's root by
    the time the probe is cleaned up, so only empty folders are removed (the second launch's files stay)."""
    import tempfile

    from mnist_batch.scoring import preflight

    root = tmp_path / "new" / "root"
    real_mkstemp = tempfile.mkstemp

    def another_launch_writes_too(*args, **kwargs):
        (root / "_claims").mkdir(parents=True, exist_ok=True)
        (root / "_claims" / "run=b.json").write_text("{}")  # the other launch's lease
        return real_mkstemp(*args, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", another_launch_writes_too)
    preflight.check_output_writable(str(root))
    assert (root / "_claims" / "run=b.json").read_text() == "{}"


def test_an_unknown_runner_is_one_line_before_any_file_is_read(tiny_model, sample_data, tmp_path, opened_files, capsys):
    inputs = tmp_path / "in"
    inputs.mkdir()
    (inputs / "a.png").write_bytes(digit_png(sample_data, 0)[0])
    code = cli_main(score_args(tiny_model, inputs, tmp_path / "out", "--runner", "NoSuchRunner"))
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert err.startswith("mnist-batch: error: --runner NoSuchRunner: Beam cannot run it (Unexpected pipeline runner")
    assert opened_files == [] and not (tmp_path / "out").exists()


# --- bounded reads, in process ----------------------------------------------------------------


def test_max_file_bytes_refuses_from_the_size_and_bounds_the_read(tmp_path):
    from apache_beam.io.filesystem import FileMetadata

    path = tmp_path / "a.png"
    path.write_bytes(b"x" * 2000)
    readable = apache_beam.io.fileio.ReadableFile(FileMetadata(str(path), 2000, 0.0))
    assert len(decode.read_bytes(readable, 2000)) == 2000
    with pytest.raises(files.FileTooLargeError, match="file is 2,000 bytes, over --max-file-bytes 1,999"):
        decode.read_bytes(readable, 1999)
    assert len(files.read_at_most(io.BytesIO(b"y" * 10), 10)) == 10
    with pytest.raises(files.FileTooLargeError, match="grew"):
        files.read_at_most(io.BytesIO(b"y" * 11), 10)
    # Sized by fstat: a file that grew since is read on to the limit, never cut at its old size.
    assert files.read_at_most(io.BytesIO(b"y" * 8), 10, expected=5) == b"y" * 8
    assert files.read_at_most(io.BytesIO(b"y" * 3), 10, expected=5) == b"y" * 3
    with pytest.raises(files.FileTooLargeError, match="grew"):
        files.read_at_most(io.BytesIO(b"y" * 30), 10, expected=5)


@pytest.mark.parametrize(
    ("size", "expected", "outcome"),
    [(0, 0, 0), (5, 5, 5), (8, 5, 8), (3, 5, 3), (10, 5, 10), (10, 10, 10), (11, 5, "grew"), (30, 10, "grew")],
)
def test_a_descriptor_is_read_to_its_end_up_to_the_limit_whatever_fstat_said(tmp_path, size, expected, outcome):
    """The job's raw reads (read_at_most of a descriptor, no buffered file object): a file that grew since fstat is
    read on to the limit, never cut at its old size; one past the limit is FileTooLargeError."""
    path = tmp_path / "f.png"
    path.write_bytes(bytes(range(size)))
    fd = os.open(path, os.O_RDONLY)
    try:
        if outcome == "grew":
            with pytest.raises(files.FileTooLargeError, match="more than --max-file-bytes 10 bytes .it grew"):
                files.read_at_most(fd, 10, expected)
        else:
            assert files.read_at_most(fd, 10, expected) == bytes(range(outcome))
    finally:
        os.close(fd)


def test_glob_listing_reports_only_what_the_glob_can_reach(tmp_path):
    from mnist_batch.scoring import listing

    (tmp_path / "a" / "deep").mkdir(parents=True)
    (tmp_path / "a" / "x.png").write_bytes(b"1")
    (tmp_path / "a" / "y.txt").write_bytes(b"2")
    (tmp_path / "a" / "deep" / "z.png").write_bytes(b"3")
    os.symlink(tmp_path / "gone", tmp_path / "a" / "gone.png")
    os.symlink(tmp_path / "gone", tmp_path / "a" / "gone.txt")
    listed = list(listing.list_local(str(tmp_path / "*" / "*.png")))
    files = sorted(item.path for item in listed if not isinstance(item, tuple))
    skipped = sorted(item for item in listed if isinstance(item, tuple))
    assert files == [str(tmp_path / "a" / "x.png")]
    assert skipped == [(str(tmp_path / "a" / "gone.png"), "broken symlink")]
    everything = list(listing.list_local(str(tmp_path / "**")))
    assert len(everything) == 5


def test_listing_without_metadata_meets_the_same_entries_with_the_same_reasons(sample_data, tmp_path):
    """The in-process job lists without a stat per regular file (``metadata=False``): every path and
    every skip reason is the same as with it, in the same order; only regular files lose size and time."""
    from mnist_batch.scoring import listing

    build_hostile_folder(tmp_path / "in", sample_data)
    try:
        pattern, own = str(tmp_path / "in" / "**"), [listing.folder_id(str(tmp_path / "in" / "scored"))]
        full = list(listing.classify_listing(pattern, frozenset({"png"}), own))
        lean = list(listing.classify_listing(pattern, frozenset({"png"}), own, metadata=False))
    finally:
        os.chmod(tmp_path / "in" / "locked", 0o755)
    assert [i if isinstance(i, tuple) else i.path for i in lean] == [
        i if isinstance(i, tuple) else i.path for i in full
    ]
    for a, b in zip(full, lean, strict=True):
        if isinstance(a, tuple):
            continue
        regular = stat.S_ISREG(os.lstat(a.path).st_mode)
        assert (b.size_in_bytes, b.last_updated_in_seconds) == (
            (None, None) if regular else (a.size_in_bytes, a.last_updated_in_seconds)
        )
    regular = [i.path for i in full if not isinstance(i, tuple) and stat.S_ISREG(os.lstat(i.path).st_mode)]
    assert len(regular) >= 4  # 3 digits + huge.png (+ locked/hidden.png when the tests run as root)
    assert [i.path for i in lean if not isinstance(i, tuple) and i.size_in_bytes is None] == regular


def test_max_file_bytes_option_reaches_the_config(tiny_model, tmp_path):
    from mnist_batch.cli import build_parser
    from mnist_batch.scoring.options import config_from_args

    args = build_parser().parse_args(score_args(tiny_model, tmp_path, tmp_path / "o", "--max-file-bytes", "1000"))
    assert config_from_args(args).max_file_bytes == 1000


# --- memory per image -------------------------------------------------------------------------

RSS_CHILD = textwrap.dedent(
    """
    import json, resource, sys, time
    from mnist_batch import preprocess

    data = open(sys.argv[1], "rb").read()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.monotonic()
    image = preprocess.preprocess_bytes(data)
    seconds = time.monotonic() - start
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"added_mb": (after - before) / 1024, "seconds": seconds, "blank": bool(image.blank)}))
    """
)
MAX_ADDED_MB_36MP = 300
"""docs/scoring.md, "Memory per image": a 36 MP RGBA PNG adds at most 300 MB (measured 250 MB)."""


@pytest.mark.slow
def test_a_36_megapixel_image_is_decoded_in_bounded_memory(tmp_path):
    path = tmp_path / "big.png"
    img = Image.new("RGBA", (6000, 6000), (250, 248, 240, 255))
    ImageDraw.Draw(img).ellipse((2000, 1500, 4000, 4500), outline=(20, 20, 30, 255), width=300)
    img.save(path, compress_level=1)
    del img
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-c", RSS_CHILD, str(path)], capture_output=True, text=True, timeout=120, env=env, check=True
    )
    result = json.loads(proc.stdout)
    assert result["added_mb"] < MAX_ADDED_MB_36MP, result
    assert not result["blank"], result
    assert resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss > 0


# --- remote paths and the runner's wrapping, without a cloud ----------------------------------


class StubRemoteFile:
    """A ReadableFile stand-in for ``gs://``: only its listed size (the bytes come from the store)."""

    def __init__(self, path: str, listed_size: int) -> None:
        from apache_beam.io.filesystem import FileMetadata

        self.metadata = FileMetadata(path, listed_size, 0.0)


class CountingStore(Storage):
    """A remote store serving bytes from a dict and counting what is read."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files
        self.bytes_read = 0

    def read_at_most(self, uri: str, limit: int) -> bytes:
        data = self.files[uri][:limit]
        self.bytes_read += len(data)
        return data


def test_remote_reads_check_the_listed_size_then_read_at_most_the_limit(monkeypatch):
    store = CountingStore({"gs://b/a.png": b"z" * 10, "gs://b/grew.png": b"z" * 5000})
    monkeypatch.setitem(storage._stores, "gs", store)  # the store the scheme is served by, in this process
    assert decode.read_bytes(StubRemoteFile("gs://b/a.png", 10), 10) == b"z" * 10
    with pytest.raises(files.FileTooLargeError, match="5,000,000,000 bytes"):
        decode.read_bytes(StubRemoteFile("gs://b/big.png", 5_000_000_000), 1000)  # never read: the listed size
    store.bytes_read = 0
    with pytest.raises(files.FileTooLargeError, match="grew"):
        decode.read_bytes(StubRemoteFile("gs://b/grew.png", 10), 1000)
    assert store.bytes_read == 1001  # never more than the limit + 1 byte


def test_files_under_a_remote_own_output_are_skipped():
    from apache_beam.io.filesystem import FileMetadata

    fn = matching.ClassifyMatchFn(("png",), output_dirs=("gs://b/out", "/local/out"))
    inside = list(fn.process(FileMetadata("gs://b/out/report.png", 1, 0.0)))
    outside = list(fn.process(FileMetadata("gs://b/outside/a.png", 1, 0.0)))
    assert inside[0].value == ("gs://b/out/report.png", "output of mnist-batch")
    assert outside[0].path == "gs://b/outside/a.png"


def test_a_model_error_is_found_in_what_a_multi_process_runner_re_raises():
    worker_text = (
        "Traceback (most recent call last):\n  ...\nRuntimeError: mnist_batch.models.errors.ModelChangedError: "
        "model gs://b/m/cnn.keras changed since it was checked: sha256 0123456789ab... != card model_id "
        "ba9876543210... [while running 'ScoreImages/RunInference']\n"
    )
    with pytest.raises(models.ModelError) as info, worker_errors.worker_model_errors():
        raise RuntimeError(worker_text)
    assert str(info.value) == (
        "model gs://b/m/cnn.keras changed since it was checked: sha256 0123456789ab... != card model_id ba9876543210..."
    )
    with pytest.raises(RuntimeError, match="unrelated"), worker_errors.worker_model_errors():
        raise RuntimeError("unrelated")


def test_a_file_uri_output_is_local_and_kept_out_of_the_listing(tmp_path):
    """``--output file:///…`` is the local folder it names: its files are never listed as inputs,
    even before the run's markers are written (every module answers "remote?" with ``files.is_remote``)."""
    from PIL import Image

    (tmp_path / "in" / "out" / "predictions").mkdir(parents=True)
    Image.new("L", (28, 28)).save(tmp_path / "in" / "a.png")
    Image.new("L", (28, 28)).save(tmp_path / "in" / "out" / "predictions" / "plot.png")
    fn = matching.ListLocalFilesFn(("png",), output_dirs=(f"file://{tmp_path}/in/out",))
    listed = list(fn.process(str(tmp_path / "in" / "**")))
    read = [x.metadata.path for x in listed if not hasattr(x, "tag")]
    skipped = [x.value for x in listed if hasattr(x, "tag")]
    assert read == [str(tmp_path / "in" / "a.png")]
    assert skipped == [(f"{tmp_path}/in/out/", "output of mnist-batch")]


def test_the_listing_reads_each_extension_as_skip_reason_does(tmp_path):
    """classify_listing's inline extension test (ASCII paths) says what skip_reason says, for names
    that could fool it: case, a dot first or last, two extensions, a dotted folder, non-ASCII bytes."""
    from mnist_batch.files import escape_path
    from mnist_batch.scoring import listing

    names = ["a.png", "B.PNG", "c.Png", ".png", "noext", "d.png.txt", "e.txt.png", "f.", "dir.png/inner", "g.jpeg"]
    names += ["café.png", "dir.png/h.PNG"]
    for name in names:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / os.fsdecode(b"x\xff.png")).write_bytes(b"x")
    extensions = frozenset({"png", "jpeg"})
    listed = list(listing.classify_listing(str(tmp_path / "**"), extensions, metadata=False))
    files = [escape_path(os.path.join(d, f)) for d, _, fs in os.walk(tmp_path) for f in fs]
    assert sorted(i[0] if isinstance(i, tuple) else i.path for i in listed) == sorted(files)
    for item in listed:
        path, reason = item if isinstance(item, tuple) else (item.path, None)
        assert reason == listing.skip_reason(path, extensions), path
    scored = sorted(os.path.relpath(i.path, tmp_path) for i in listed if not isinstance(i, tuple))
    assert scored == sorted(
        ["a.png", "B.PNG", "c.Png", ".png", "e.txt.png", "g.jpeg", "café.png", "dir.png/h.PNG", "x\\xff.png"]
    )
