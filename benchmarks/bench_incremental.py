"""The nightly incremental launch at scale: +N new files in a folder that holds a million files
already scored (issue 24, item 4: "--incremental adding 10k files over a 1M history <= 20 s").

What it builds once (kept in ``--work`` and reused while its ``.count`` matches):

* ``in/<label>/<i>.png``: ``--files`` PNG files, the bundled test split's digits hard-linked
  (``bench_score.make_folder``), and a history: one ``score --layout runs`` run over them,
  committed with ``--run-date 2026-01-01`` into ``root/``;
* ``in/new/``: ``--new`` more links, files no run has seen.

What it measures, ``--repeat`` times: ``mnist-batch score --layout runs --incremental --input in
--output root --run-date 2026-01-02`` as its own process, from start to exit, with the peak RSS of
its process tree (polled every 50 ms). Every launch must score exactly ``--new`` files and skip
the ``--files`` known ones, or the benchmark fails. The measured run (``dt=2026-01-02``) is then
deleted, so that each repeat meets the same history.

Usage:
  python benchmarks/bench_incremental.py --model out/demo/models/cnn.keras --work .cache/bi
  python benchmarks/bench_incremental.py --model M --files 200000 --new 2000 --repeat 3 --work W
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import shutil
import subprocess
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

from bench_score import make_folder, tree_rss_bytes  # noqa: E402

HISTORY_DATE = "2026-01-01"
MEASURED_DATE = "2026-01-02"


def score(model: str, folder: pathlib.Path, root: pathlib.Path, run_date: str, *extra: str) -> dict:
    """One ``mnist-batch score`` process: its wall time, peak RSS and summary counts."""
    cmd = [sys.executable, "-m", "mnist_batch", "score", "--model", model, "--input", str(folder)]
    cmd += ["--output", str(root), "--layout", "runs", "--run-date", run_date, "-q", *extra]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=str(REPO))
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    peak = 0
    while proc.poll() is None:
        peak = max(peak, tree_rss_bytes(proc.pid))
        time.sleep(0.05)
    seconds = time.perf_counter() - start
    _, err = proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"score failed ({proc.returncode}): {err.strip()[-2000:]}")
    (marker,) = (root / "_runs" / f"dt={run_date}").glob("run=*/summary.json")
    summary = json.loads(marker.read_text())
    return {"seconds": seconds, "peak_rss_mb": peak / 2**20, "counts": summary["counts"], "summary": summary}


def drop_measured_run(root: pathlib.Path) -> None:
    """Deletes the measured run's partition of every table and its marker."""
    for table in root.iterdir():
        shutil.rmtree(table / f"dt={MEASURED_DATE}", ignore_errors=True)


def build(work: pathlib.Path, model: str, files: int, new: int) -> tuple[pathlib.Path, pathlib.Path]:
    """The input folder (``files`` known + ``new`` new files) and the root holding the history."""
    from mnist_batch.data import load_dataset
    from mnist_batch.data.export import export_images

    source = work / "export"
    if not (source / "EXPORT.json").is_file():
        export_images(load_dataset("sample"), "test", source, overwrite=True)
    folder, root = work / "in", work / "root"
    stamp = work / ".history"
    wanted = json.dumps({"files": files, "model": model})
    if not (stamp.is_file() and stamp.read_text() == wanted):
        shutil.rmtree(folder / "new", ignore_errors=True)
        make_folder(source, folder, files)
        shutil.rmtree(root, ignore_errors=True)
        print(f"scoring the history: {files:,} files (once) ...", flush=True)
        history = score(model, folder, root, HISTORY_DATE)
        print(f"  history committed in {history['seconds']:.1f} s", flush=True)
        stamp.write_text(wanted)
    make_folder(source, folder / "new", new)
    drop_measured_run(root)
    return folder, root


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="an exported model (.keras with its card)")
    parser.add_argument("--files", type=int, default=1_000_000, help="files in the history")
    parser.add_argument("--new", type=int, default=10_000, help="new files the nightly launch finds")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--work", required=True, help="work folder (kept: the history is built once)")
    args = parser.parse_args(argv)
    work = pathlib.Path(args.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    folder, root = build(work, str(pathlib.Path(args.model).resolve()), args.files, args.new)
    rows = []
    for i in range(args.repeat):
        r = score(args.model, folder, root, MEASURED_DATE, "--incremental")
        counts, skipped = r["counts"], r["summary"].get("skipped_by_reason", {})
        if counts["scored"] != args.new or skipped.get("already scored") != args.files:
            raise RuntimeError(
                f"expected {args.new:,} scored and {args.files:,} already scored, got {counts}, {skipped}"
            )
        drop_measured_run(root)
        rows.append(r)
        print(
            f"repeat {i + 1}: +{args.new:,} over {args.files:,}: {r['seconds']:.1f} s, "
            f"peak RSS {r['peak_rss_mb']:,.0f} MiB",
            flush=True,
        )
    print()
    print("| history files | new files | whole command s | peak RSS MiB |")
    print("| ---: | ---: | ---: | ---: |")
    for r in rows:
        print(f"| {args.files:,} | {args.new:,} | {r['seconds']:.1f} | {r['peak_rss_mb']:,.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
