"""Decoding in a helper process (mnist_batch.scoring.decode_pool): the same pixels and the same
dead letters as decoding in the scoring process, every group back exactly once, no file lost
when the helper dies, no helper left behind when the scoring process dies."""

from __future__ import annotations

import contextlib
import os
import pathlib
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from mnist_batch.scoring import decode_pool

import scoring_fixtures

sample_data = scoring_fixtures.sample_data

MAX_BYTES = 1_000_000
MAX_PIXELS = 10_000_000


@pytest.fixture
def files(sample_data, tmp_path) -> list[decode_pool.Source]:
    """40 real digits as PNG and JPEG, and one file of each kind that fails, at each stage."""
    test = sample_data.split("test")
    sources: list[decode_pool.Source] = []
    for i in range(40):
        path = tmp_path / f"{i:03d}.{'png' if i % 2 else 'jpg'}"
        Image.fromarray(test.images[i]).save(path)
        sources.append((str(path), None))
    (tmp_path / "text.png").write_text("not an image")
    os.mkfifo(tmp_path / "fifo.png")
    (tmp_path / "big.png").write_bytes(b"\x89PNG" + b"\0" * (MAX_BYTES + 10))
    sources += [
        (str(tmp_path / "text.png"), None),  # decode
        (str(tmp_path / "fifo.png"), None),  # read: never opened
        (str(tmp_path / "missing.png"), None),  # read
        (str(tmp_path / "big.png"), None),  # read: over --max-file-bytes
        ("s3://bucket/read-by-the-caller.png", (tmp_path / "001.png").read_bytes()),  # bytes handed in
        ("s3://bucket/empty.png", b""),  # decode
    ]
    return sources


def groups_of(sources, size):
    return [sources[i : i + size] for i in range(0, len(sources), size)]


def started_pool(**kwargs) -> decode_pool.DecodePool:
    return scoring_fixtures.started_pool(MAX_BYTES, MAX_PIXELS, **kwargs)


def test_decode_group_accounts_for_every_file_with_its_stage(files):
    group = decode_pool.decode_group(files, MAX_BYTES, MAX_PIXELS)
    assert len(group.ok) + len(group.failed) == len(files)
    assert group.pixels.shape == (len(group.ok), 28, 28) and group.pixels.dtype == np.uint8
    stages = {pathlib.Path(files[i][0]).name: (stage, kind) for i, stage, kind, _ in group.failed}
    assert stages == {
        "text.png": ("decode", "ImageDecodeError"),
        "fifo.png": ("read", "NotRegularFileError"),
        "missing.png": ("read", "FileNotFoundError"),
        "big.png": ("read", "FileTooLargeError"),
        "empty.png": ("decode", "ImageDecodeError"),
    }


def test_the_helper_decodes_exactly_as_the_caller(files):
    here = decode_pool.decode_group(files, MAX_BYTES, MAX_PIXELS)
    pool = started_pool()
    try:
        pool.submit(files, "all")
        ((tag, there),) = pool.drain()
    finally:
        pool.close()
    assert tag == "all" and pool.decoded_there == 1 and pool.decoded_here == 0
    assert there.ok == here.ok and there.failed == here.failed
    np.testing.assert_array_equal(there.pixels, here.pixels)
    np.testing.assert_array_equal(there.blank, here.blank)


def test_every_group_comes_back_once_whoever_decodes_it(files):
    pool = decode_pool.DecodePool(MAX_BYTES, MAX_PIXELS)  # not waited for: the first groups are decoded here
    seen = []
    try:
        for n, group in enumerate(groups_of(files * 20, 16)):
            pool.submit(group, n)
            seen += [tag for tag, _ in pool.ready()]
        seen += [tag for tag, _ in pool.drain()]
    finally:
        pool.close()
    assert sorted(seen) == list(range(len(groups_of(files * 20, 16))))
    assert pool.decoded_here + pool.decoded_there == len(seen)


def test_drain_takes_the_newest_group_back_while_the_helper_decodes_the_oldest(files):
    """The run's last groups end on both cores: the scoring process does not wait idle for the helper
    to reach a group it has not started; the helper's own answer to that group is dropped."""
    pool = started_pool(depth=2)
    pid = pool.helper_pid
    small = files[:8] + files[-6:]
    try:
        pool.submit(files * 30, "big")  # ~1,400 files: the helper is still on it when drain starts
        pool.submit(small, "small")
        done = dict(pool.drain())
    finally:
        pool.close()
    assert sorted(done) == ["big", "small"]
    assert (pool.decoded_there, pool.decoded_here) == (1, 1)
    here = decode_pool.decode_group(small, MAX_BYTES, MAX_PIXELS)
    assert done["small"].ok == here.ok and done["small"].failed == here.failed
    np.testing.assert_array_equal(done["small"].pixels, here.pixels)
    assert not os.path.exists(f"/proc/{pid}")  # stopped at once by close, and reaped


def test_a_helper_that_dies_loses_no_group(files):
    pool = started_pool(depth=4)
    seen = []
    try:
        for n, group in enumerate(groups_of(files * 10, 8)):
            pool.submit(group, n)
            if n == 3:
                os.kill(pool.helper_pid, signal.SIGKILL)
            seen += [tag for tag, _ in pool.ready()]
        seen += [tag for tag, _ in pool.drain()]
    finally:
        pool.close()
    assert sorted(seen) == list(range(len(groups_of(files * 10, 8))))
    assert pool.helper_pid is None and pool.decoded_here > 0


@pytest.mark.parametrize("when", ["submitting", "draining"])
def test_a_frozen_helper_is_killed_and_loses_no_group(files, monkeypatch, when):
    """A helper stopped (SIGSTOP) or stuck is taken for frozen after HELPER_STALL_S (issue 33):
    before, ``drain`` waited for it forever and the run hung."""
    monkeypatch.setattr(decode_pool, "HELPER_STALL_S", 1.0)
    pool = started_pool(depth=2)
    pid = pool.helper_pid
    groups = groups_of(files * 6, 8)
    seen = []
    started = time.monotonic()
    try:
        os.kill(pid, signal.SIGSTOP)
        for n, group in enumerate(groups):
            pool.submit(group, n)
            seen += [tag for tag, _ in pool.ready()]
            if when == "submitting" and n == 1:
                time.sleep(1.2)  # the two groups it holds are now overdue
        seen += [tag for tag, _ in pool.drain()]
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)
        pool.close()
    assert sorted(seen) == list(range(len(groups)))
    assert pool.helper_pid is None and pool.decoded_there == 0
    assert time.monotonic() - started < 10
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and os.path.exists(f"/proc/{pid}"):
        time.sleep(0.05)  # killed (and reaped)
    assert not os.path.exists(f"/proc/{pid}")


@pytest.mark.slow
def test_the_helper_exits_when_the_scoring_process_is_killed(tmp_path):
    script = (
        "import time\n"
        "from mnist_batch.scoring import decode_pool\n"
        "pool = decode_pool.DecodePool(10, 10)\n"
        "while pool.helper_pid is None:\n"
        "    pool.ready(); time.sleep(0.01)\n"
        "print(pool.helper_pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    helper = int(parent.stdout.readline())
    os.kill(helper, 0)  # alive
    parent.kill()
    parent.wait()
    deadline = time.monotonic() + 10
    while pathlib.Path(f"/proc/{helper}").exists() and "Z" not in _state(helper):
        assert time.monotonic() < deadline, "the helper outlived its scoring process"
        time.sleep(0.05)


def _state(pid: int) -> str:
    try:
        return pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return "gone"


def test_helper_count(monkeypatch):
    monkeypatch.delenv(decode_pool.HELPERS_ENV, raising=False)
    assert decode_pool.helper_count(1) == 0
    assert decode_pool.helper_count(2) == 1


@pytest.mark.parametrize("helpers", [0, 1])
@pytest.mark.slow
def test_decode_step_gives_the_same_images_and_errors_with_a_helper(files, helpers):
    """The Beam step: groups of 8 files through DecodeGroupFn, with and without the helper process."""
    apache_beam = pytest.importorskip("apache_beam")
    from apache_beam.io import fileio
    from apache_beam.testing.test_pipeline import TestPipeline
    from apache_beam.testing.util import assert_that, equal_to

    from mnist_batch.scoring import decode

    local = [path for path, data in files if data is None and os.path.lexists(path)]  # listed files
    expected = decode_pool.decode_group([(p, None) for p in local], MAX_BYTES, MAX_PIXELS)
    images = [(local[i], expected.pixels[k].tobytes()) for k, i in enumerate(expected.ok)]
    errors = [(local[i], stage, kind) for i, stage, kind, _ in expected.failed]
    fn = decode.DecodeGroupFn(tuple("0123456789"), "run1", max_file_bytes=MAX_BYTES, decode_helpers=helpers)
    with TestPipeline() as p:
        out = (
            p
            | apache_beam.Create(local * 6)
            | fileio.MatchAll()
            | fileio.ReadMatches()
            | apache_beam.BatchElements(min_batch_size=8, max_batch_size=8)
            | apache_beam.ParDo(fn).with_outputs("errors", main="images")
        )
        got = out.images | apache_beam.FlatMap(
            lambda g: [(k.path, px.tobytes()) for k, px in zip(g.keys, g.pixels, strict=True)]
        )
        assert_that(got, equal_to(images * 6))
        bad = out.errors | "ErrorKeys" >> apache_beam.Map(lambda r: (r["path"], r["stage"], r["error_type"]))
        assert_that(bad, equal_to(errors * 6), label="CheckErrors")


def test_the_helper_never_imports_beam_or_a_model_runtime():
    code = (
        "import sys, mnist_batch.scoring.decode_pool\n"
        "print(sorted(m for m in ('apache_beam', 'tensorflow', 'ai_edge_litert') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
