"""Incremental runs over a long history: launch time, job-graph size and peak RSS vs history keys.

Builds a runs root (layout v2) whose committed history holds N file keys (default 10,000,
100,000 and 1,000,000, in 10 runs of realistic ``gs://`` paths), plus a folder of 1,000 new PNG
files (real digits of the bundled test split) of which 500 are already in the history with their
real (path, size, mtime) keys. Then, for each N, in its own subprocess, one incremental
``score --layout runs`` run (DirectRunner) is measured:

  launch_s      start of the launch -> the job graph built and serialised, ready for the runner
                (checks, lease, listing the committed runs, building and serialising the graph)
  graph_bytes   size of the serialized job graph (``Pipeline.to_runner_api()``), what a runner
                such as Dataflow receives (it refuses graphs over 10 MB)
  wall_s        the whole run, including reading the history inside the job
  peak_rss_mb   the subprocess's peak resident memory (``ru_maxrss``)

and the run must score exactly the 500 new files and skip the 500 known ones.
Targets (issue #10): graph <= 1 MB and launch <= 10 s at 1,000,000 keys.

With ``--baseline-src`` the code before layout v2 (known keys read by the launcher and pickled
into the filter DoFn) runs the same history in its own layout, in the same run.

With ``--real`` the history is of real files instead, on local disk and in an S3 bucket
(``--stores local,s3``; the bucket is the VersityGW of ``make s3-up``, its ``AWS_*`` variables set):
``--keys`` files under ``scans/day=01..10/`` (one committed run per day) plus ``--new`` new files
under ``scans/day=11/``. The new files are PUT (their bytes: the bundled sample's digits); the
history's files are hard links to them: in the bucket, made in the server's posix data folder
(``--s3-data``), where each link is an object with its own key that the server lists and serves
with the ETag and checksums its inode got from the PUT; on local disk, links to the same inodes.
Each history run's manifest is what a run records for its files: path, size and mtime as the
job's own listing sees them (``FileSystems.match`` on the bucket, ``list_local`` on disk). Then,
per store, the real command (``mnist-batch score --layout runs --incremental``, in-process in a
subprocess) scores ``--input scans/day=11/ --input scans/day=01/batch-0000/``: the new files
must be scored and that known batch skipped. Measured, besides the above:

  process_s       the whole command, as the subprocess (Python start-up and imports included)
  first_new_s     start of the command -> the first new file passed the incremental filter (the
                  history is read inside the job and must be complete before that filter runs)
  history_read_s  the job's history step (``ReadManifests``): first run read to last run read
  transforms      the job graph's steps (leaf transforms), of which the history step's
  requests        S3 API calls made in the process (the DirectRunner runs the job in it), by
                  operation; the bytes their GETs fetched; and the boto3 clients made

Usage:
  python benchmarks/bench_history.py                    # 10k, 100k, 1M keys
  git worktree add /tmp/v1 a11d286 && python benchmarks/bench_history.py --baseline-src /tmp/v1
  python benchmarks/bench_history.py --keys 10000 --json out.json
  eval "$(make -s s3-up)" && python benchmarks/bench_history.py --real --keys 1000000 --new 10000 \
      --model out/demo/models/cnn.keras
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import resource
import subprocess
import sys
import tempfile
import time

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parent
RUNS = 10
NEW_FILES = 1000
SYNTHETIC_MODEL_ID = "0" * 64
"""The model id in the synthetic history's manifest rows (the incremental filter does not read it)."""


def make_history(root: pathlib.Path, keys: int, known: list[tuple[str, int, float]]) -> None:
    """A runs root whose committed runs took on ``keys`` files (``known`` among them)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from mnist_batch.tables import LAYOUT_FILE, LAYOUT_FORMAT, LAYOUT_VERSION, RUN_TABLES

    root.mkdir(parents=True)
    info = {"format": LAYOUT_FORMAT, "layout_version": LAYOUT_VERSION, "partitioning": ["dt", "run"]}
    (root / LAYOUT_FILE).write_text(json.dumps(info))
    per_run = keys // RUNS
    for r in range(RUNS):
        dt, run_id = f"2026-10-{r + 1:02d}", f"d202610{r + 1:02d}"
        start = r * per_run
        n = per_run if r < RUNS - 1 else keys - start
        paths = [
            f"gs://scans-bucket/incoming/2026/10/{r + 1:02d}/batch-{i // 1000:04d}/scan-{start + i:09d}.png"
            for i in range(n - (len(known) if r == 0 else 0))
        ]
        sizes = [1200 + (start + i) % 500 for i in range(len(paths))]
        mtimes = [1_790_000_000.0 + start + i + 0.25 for i in range(len(paths))]
        if r == 0:
            paths += [k[0] for k in known]
            sizes += [k[1] for k in known]
            mtimes += [k[2] for k in known]
        manifest = pa.table(
            {
                "path": paths,
                "size": sizes,
                "mtime": mtimes,
                "sha256": [None] * len(paths),
                "run_id": [run_id] * len(paths),
                "model_id": [SYNTHETIC_MODEL_ID] * len(paths),
            },
            schema=RUN_TABLES["manifest"],
        )
        for table, data in (("manifest", manifest), ("errors", RUN_TABLES["errors"].empty_table())):
            folder = root / table / f"dt={dt}" / f"run={run_id}"
            folder.mkdir(parents=True)
            pq.write_table(data, folder / "part-0.parquet")
        meta = root / "_runs" / f"dt={dt}" / f"run={run_id}"
        meta.mkdir(parents=True)
        (meta / "summary.json").write_text("{}")
        (meta / "_SUCCESS").write_text("{}")


def make_v1_history(root: pathlib.Path, keys: int, known: list[tuple[str, int, float]]) -> None:
    """The same history in the layout before v2 (``ROOT/dt=/run=/{manifest,errors}/``), for the baseline."""
    v2 = root.parent / (root.name + "_v2tmp")
    make_history(v2, keys, known)
    for run_meta in (v2 / "_runs").glob("dt=*/run=*"):
        dt, run = run_meta.parent.name, run_meta.name
        target = root / dt / run
        for table in ("manifest", "errors"):
            (target / table).mkdir(parents=True)
            (v2 / table / dt / run / "part-0.parquet").rename(target / table / "part-0.parquet")
        (target / "_SUCCESS").write_text("{}")


def launch_v1(model: str, inputs: str, root: str) -> dict:
    """The launcher before v2 (a checkout of that code on PYTHONPATH): known keys pickled into the DoFn."""
    from mnist_batch.config import ScoreConfig
    from mnist_batch.runstore import runs

    config = ScoreConfig(model=model, inputs=(inputs,), output=root, run_id="bench")
    summary = runs.run_partitioned(config, runs.RunOptions(incremental=True, run_date="2026-11-01"))
    return {"scored": summary["counts"]["scored"], "skipped": summary["incremental"]["skipped"]}


def worker(root: str, inputs: str, model: str) -> None:
    """One incremental run, instrumented; prints a JSON line."""
    import apache_beam as beam

    marks: dict[str, float] = {}
    start = time.perf_counter()
    original_run = beam.Pipeline.run

    def timed_run(self, *args, **kwargs):
        marks["graph_bytes"] = len(self.to_runner_api().SerializeToString())
        marks["launch_s"] = time.perf_counter() - start  # checks, history, graph built and serialised
        marks["launch_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        return original_run(self, *args, **kwargs)

    beam.Pipeline.run = timed_run
    try:
        from mnist_batch.scoring.launch import RunOptions, launch
    except ImportError:  # the baseline checkout
        counts = launch_v1(model, inputs, root)
    else:
        from mnist_batch.config import ScoreConfig

        summary = launch(
            ScoreConfig(model=model, inputs=(inputs,), output=root, run_id="bench"),
            RunOptions(layout="runs", incremental=True, run_date="2026-11-01"),
        )
        counts = {"scored": summary["counts"]["scored"], "skipped": summary["incremental"]["skipped"]}
    wall = time.perf_counter() - start
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({**marks, "wall_s": wall, "peak_rss_mb": rss, **counts}))


REAL_RUN_DATE = "2026-11-01"
REAL_RUN_ID = "bench-incremental"
BATCH = 1000


def real_day(day: int) -> str:
    return f"scans/day={day:02d}"


def real_names(keys: int, new: int) -> tuple[list[str], list[str]]:
    """Relative names of the history's files (10 days) and of the new ones (day 11), 1,000 a folder."""
    per_day = -(-keys // RUNS)
    history = [f"{real_day(j // per_day + 1)}/batch-{j % per_day // BATCH:04d}/scan-{j:09d}.png" for j in range(keys)]
    fresh = [f"{real_day(RUNS + 1)}/batch-{i // BATCH:04d}/scan-{keys + i:09d}.png" for i in range(new)]
    return history, fresh


def put_bytes(uri: str, data: bytes) -> None:
    """One file or object (the run store's own S3 client on ``s3://``)."""
    from mnist_batch.runstore import fs, s3

    if fs.is_remote(uri):
        s3.put(uri, data)
        return
    pathlib.Path(uri).parent.mkdir(parents=True, exist_ok=True)
    pathlib.Path(uri).write_bytes(data)


def png_bytes(count: int) -> list[bytes]:
    """``count`` PNG files of the bundled sample's digits (test then train split, cycled)."""
    import io

    from PIL import Image

    from mnist_batch.data import load_dataset

    data = load_dataset("sample")
    images = [*data.split("test").images, *data.split("train").images]
    out = []
    for i in range(count):
        buffer = io.BytesIO()
        Image.fromarray(images[i % len(images)]).save(buffer, format="PNG")
        out.append(buffer.getvalue())
    return out


def make_real_files(store: str, base: str, folder: pathlib.Path, keys: int, new: int, pngs: list[bytes]) -> None:
    """The new files PUT (written) under ``base``; the history's files hard links to them in ``folder``
    (the server's data folder for ``base`` on S3, ``base`` itself locally)."""
    from concurrent.futures import ThreadPoolExecutor

    history, fresh = real_names(keys, new)
    if store == "s3":
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(lambda i: put_bytes(f"{base}/{fresh[i]}", pngs[i]), range(new)))
    else:
        for i, name in enumerate(fresh):
            put_bytes(f"{base}/{name}", pngs[i])
    made = set()
    for j, name in enumerate(history):
        target = folder / name
        if target.parent not in made:
            target.parent.mkdir(parents=True, exist_ok=True)
            made.add(target.parent)
        os.link(folder / fresh[j % new], target)


def listed(store: str, base: str, day: int) -> list[tuple[str, int, float]]:
    """(path, size, mtime) of a day's files as the scoring job lists them."""
    if store == "s3":
        from apache_beam.io.filesystems import FileSystems

        metadata = FileSystems.match([f"{base}/{real_day(day)}/**"])[0].metadata_list
        return sorted((m.path, int(m.size_in_bytes), float(m.last_updated_in_seconds)) for m in metadata)
    from mnist_batch.scoring.listing import list_local

    rows = [m for m in list_local(f"{base}/{real_day(day)}/**") if not isinstance(m, tuple)]
    return sorted((m.path, int(m.size_in_bytes), float(m.last_updated_in_seconds)) for m in rows)


def make_real_history(store: str, base: str, root: str, model_id: str) -> float:
    """A runs root whose committed runs (one a day, days 1-10) took on the history's files; the
    seconds spent listing the files as the job does."""
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    from mnist_batch.tables import LAYOUT_FILE, LAYOUT_FORMAT, LAYOUT_VERSION, RUN_TABLES

    info = {"format": LAYOUT_FORMAT, "layout_version": LAYOUT_VERSION, "partitioning": ["dt", "run"]}
    put_bytes(f"{root}/{LAYOUT_FILE}", json.dumps(info).encode())
    listing = 0.0
    for r in range(RUNS):
        dt, run_id = f"2026-10-{r + 1:02d}", f"d202610{r + 1:02d}"
        t0 = time.perf_counter()
        rows = listed(store, base, r + 1)
        listing += time.perf_counter() - t0
        manifest = pa.table(
            {
                "path": [p for p, _, _ in rows],
                "size": [s for _, s, _ in rows],
                "mtime": [m for _, _, m in rows],
                "sha256": [None] * len(rows),
                "run_id": [run_id] * len(rows),
                "model_id": [model_id] * len(rows),
            },
            schema=RUN_TABLES["manifest"],
        )
        for table, data in (("manifest", manifest), ("errors", RUN_TABLES["errors"].empty_table())):
            buffer = io.BytesIO()
            pq.write_table(data, buffer)
            put_bytes(f"{root}/{table}/dt={dt}/run={run_id}/part-0.parquet", buffer.getvalue())
        put_bytes(f"{root}/_runs/dt={dt}/run={run_id}/summary.json", b"{}")
        put_bytes(f"{root}/_runs/dt={dt}/run={run_id}/_SUCCESS", b"{}")
    return listing


def drop_bench_run(root: str) -> None:
    """Deletes the measured run (committed or not), so that the next repeat meets the same history."""
    from mnist_batch.runstore import fs

    for table in fs.list_dir(root):
        fs.delete_tree(fs.join(root, table, f"dt={REAL_RUN_DATE}"))


def real_worker(root: str, model: str, inputs: list[str]) -> None:
    """The real command, instrumented, in this process; prints a JSON line."""
    start = time.perf_counter()
    import apache_beam as beam
    import botocore.client
    import botocore.session

    from mnist_batch.cli import main as cli_main
    from mnist_batch.scoring import incremental, launch

    marks: dict = {}
    requests: dict[str, int] = {}
    clients, got = [0], [0]
    make_call = botocore.client.BaseClient._make_api_call
    create_client = botocore.session.Session.create_client

    def counted_call(self, operation, params):
        requests[operation] = requests.get(operation, 0) + 1
        answer = make_call(self, operation, params)
        if operation == "GetObject":
            got[0] += int(answer.get("ContentLength") or 0)
        return answer

    def counted_client(self, *args, **kwargs):
        clients[0] += 1
        return create_client(self, *args, **kwargs)

    botocore.client.BaseClient._make_api_call = counted_call
    botocore.session.Session.create_client = counted_client
    original_run = beam.Pipeline.run

    def timed_run(self, *args, **kwargs):
        proto = self.to_runner_api()
        marks["graph_bytes"] = len(proto.SerializeToString())
        leaves = [t for t in proto.components.transforms.values() if not t.subtransforms]
        marks["transforms"] = len(leaves)
        marks["history_transforms"] = sorted(t.unique_name for t in leaves if "ReadKnownFiles" in t.unique_name)
        marks["launch_s"] = time.perf_counter() - start
        marks["launch_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        marks["launch_requests"] = sum(requests.values())
        return original_run(self, *args, **kwargs)

    beam.Pipeline.run = timed_run
    known_process = incremental.KnownDigestsFn.process
    select_process = incremental.SelectNewFilesFn.process

    def timed_known(self, run):
        marks.setdefault("history_first_s", time.perf_counter() - start)
        yield from known_process(self, run)
        marks["history_last_s"] = time.perf_counter() - start

    def timed_select(self, readable, known=b""):
        for out in select_process(self, readable, known):
            if not isinstance(out, beam.pvalue.TaggedOutput):
                marks.setdefault("first_new_s", time.perf_counter() - start)
            yield out

    incremental.KnownDigestsFn.process = timed_known
    incremental.SelectNewFilesFn.process = timed_select
    summaries = []
    original_start = launch.start

    def kept_start(*args, **kwargs):
        summaries.append(original_start(*args, **kwargs))
        return summaries[-1]

    launch.start = kept_start
    argv = ["score", "--model", model, "--output", root, "--layout", "runs", "--incremental"]
    argv += ["--run-date", REAL_RUN_DATE, "--run-id", REAL_RUN_ID, "-q"]
    for path in inputs:
        argv += ["--input", path]
    code = cli_main(argv)
    wall = time.perf_counter() - start
    summary = summaries[-1] if summaries else {}
    print(
        json.dumps(
            {
                **marks,
                "exit_code": code,
                "wall_s": wall,
                "history_read_s": marks.get("history_last_s", 0) - marks.get("history_first_s", 0),
                "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                "requests": dict(sorted(requests.items())),
                "boto3_clients": clients[0],
                "get_mb": got[0] / 2**20,
                "scored": summary.get("counts", {}).get("scored"),
                "skipped": summary.get("incremental", {}).get("skipped"),
            }
        )
    )


def run_real(args: argparse.Namespace) -> int:
    """``--real``: real files, history on local disk and in the bucket; the real command measured on each."""
    from mnist_batch.runstore import fs, s3

    keys, new = int(args.keys), args.new
    stores = args.stores.split(",")
    work = pathlib.Path(args.workdir or tempfile.mkdtemp(prefix="bench_history_real_")).resolve()
    bases = {"local": str(work / "local"), "s3": f"s3://{args.s3_bucket}/{args.s3_prefix}"}
    folders = {"local": work / "local", "s3": pathlib.Path(args.s3_data).resolve() / args.s3_bucket / args.s3_prefix}
    model = args.model or str(__import__("bench_score").train_small_cnn(work / "model"))
    if "s3" in stores:
        fs.configure({})  # the environment's AWS_* settings, as `mnist-batch runs` does
        if not args.reuse and fs.list_files(bases["s3"]):
            raise SystemExit(f"{bases['s3']} is not empty: use another --s3-prefix")
        if not folders["s3"].parent.is_dir():
            raise SystemExit(f"--s3-data: no bucket folder {folders['s3'].parent} (the server's posix data folder)")
    from mnist_batch.model_card import file_sha256

    model_id = file_sha256(model)  # the history's runs used the model the measured run uses
    t0 = time.perf_counter()
    pngs = png_bytes(new)
    built = {}
    for store in [] if args.reuse else stores:
        t1 = time.perf_counter()
        make_real_files(store, bases[store], folders[store], keys, new, pngs)
        linked = time.perf_counter() - t1
        listing = make_real_history(store, bases[store], f"{bases[store]}/runs", model_id)
        built[store] = {"files_s": linked, "listing_s": listing, "total_s": time.perf_counter() - t1}
        print(
            f"{store}: {keys:,} history files + {new:,} new in {linked:.1f} s; the history's manifests "
            f"from the job's listing in {listing:.1f} s",
            flush=True,
        )
    if "s3" in stores:  # the links are objects the server lists, with the ETag of their inode
        sample = real_names(keys, new)[0][-1]
        assert s3.exists(f"{bases['s3']}/{sample}") and s3.read(f"{bases['s3']}/{sample}")[1], sample
    print(f"built in {time.perf_counter() - t0:.1f} s", flush=True)
    results = []
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    for repeat in range(args.repeat):
        for store in stores:
            base = bases[store]
            inputs = [f"{base}/{real_day(RUNS + 1)}/", f"{base}/{real_day(1)}/batch-0000/"]
            t1 = time.perf_counter()
            proc = subprocess.run(
                [sys.executable, __file__, "--real-worker", json.dumps([f"{base}/runs", model, inputs])],
                capture_output=True, text=True, env=env, cwd=REPO,
            )  # fmt: skip
            process_s = time.perf_counter() - t1
            if proc.returncode or not proc.stdout.strip():
                print(proc.stdout[-2000:], proc.stderr[-3000:], file=sys.stderr)
                return proc.returncode or 1
            result = {"store": store, "keys": keys, "new": new, "repeat": repeat, "process_s": process_s}
            result.update(json.loads(proc.stdout.strip().splitlines()[-1]))
            assert result["exit_code"] == 0 and result["scored"] == new and result["skipped"] == BATCH, result
            results.append(result)
            drop_bench_run(f"{base}/runs")
            print(
                f"{store} {keys:,} keys + {new:,} new: launch {result['launch_s']:.2f} s "
                f"(first new file through the filter {result['first_new_s']:.1f} s; history step "
                f"{result['history_read_s']:.1f} s), command {process_s:.1f} s, graph {result['transforms']} steps "
                f"{result['graph_bytes'] / 1024:,.1f} KiB, peak RSS {result['peak_rss_mb']:,.0f} MiB, "
                f"S3 requests {sum(result['requests'].values()):,} (at launch {result['launch_requests']}) "
                f"{result['requests']} ({result['get_mb']:,.1f} MiB got), boto3 clients {result['boto3_clients']}, "
                f"scored {result['scored']:,}, skipped {result['skipped']:,}",
                flush=True,
            )
    print()
    print(
        "| store | history keys | new files | launch s | first new file s | history step s | command s "
        "| steps | graph KiB | peak RSS MiB | S3 requests |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        print(
            f"| {r['store']} | {r['keys']:,} | {r['new']:,} | {r['launch_s']:.2f} | {r['first_new_s']:.1f} "
            f"| {r['history_read_s']:.1f} | {r['process_s']:.1f} | {r['transforms']} | {r['graph_bytes'] / 1024:,.1f} "
            f"| {r['peak_rss_mb']:,.0f} | {sum(r['requests'].values()):,} |"
        )
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps({"built": built, "results": results}, indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keys", default="10000,100000,1000000", help="comma-separated history sizes")
    parser.add_argument("--model", default=None, help=".keras model (default: train the bench's small CNN)")
    parser.add_argument("--json", default=None, help="also write the results here")
    parser.add_argument(
        "--baseline-src",
        default=None,
        help="a checkout of the code before layout v2 (e.g. git worktree add /tmp/v1 a11d286): measured too",
    )
    parser.add_argument("--real", action="store_true", help="real files; history on local disk and in a bucket")
    parser.add_argument("--new", type=int, default=10_000, help="--real: new files (default: 10,000)")
    parser.add_argument("--stores", default="local,s3", help="--real: where (default: local,s3)")
    parser.add_argument("--repeat", type=int, default=1, help="--real: measurements per store, alternated")
    parser.add_argument("--workdir", default=None, help="--real: the local files (default: a temporary folder)")
    parser.add_argument(
        "--reuse", action="store_true", help="--real: measure on the files and history an earlier --workdir run built"
    )
    parser.add_argument("--s3-bucket", default="mnist-batch", help="--real: the bucket (default: mnist-batch)")
    parser.add_argument("--s3-prefix", default="bench-history", help="--real: a prefix that must be empty")
    parser.add_argument(
        "--s3-data",
        default=str(REPO / ".cache" / "s3" / "data"),
        help="--real: the server's posix data folder, where the history's links are made (default: make s3-up's)",
    )
    parser.add_argument("--worker", nargs=3, metavar=("ROOT", "INPUTS", "MODEL"), help=argparse.SUPPRESS)
    parser.add_argument("--real-worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(*args.worker)
        return 0
    if args.real_worker:
        real_worker(*json.loads(args.real_worker))
        return 0
    if args.real:
        sys.path.insert(0, str(HERE))
        return run_real(args)
    from PIL import Image

    sys.path.insert(0, str(HERE))
    import bench_score

    from mnist_batch.data import load_dataset

    work = pathlib.Path(tempfile.mkdtemp(prefix="bench_history_"))
    model = args.model or str(bench_score.train_small_cnn(work / "model"))
    test = load_dataset("sample").split("test")
    inputs = work / "new"
    for i in range(NEW_FILES):
        path = inputs / str(test.labels[i]) / f"{i:05d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(test.images[i]).save(path)
    files = sorted(inputs.rglob("*.png"))
    known = [(str(p), p.stat().st_size, p.stat().st_mtime) for p in files[: NEW_FILES // 2]]
    results = []
    versions = [("v2", None)] + ([("v1", args.baseline_src)] if args.baseline_src else [])
    for keys in [int(k) for k in args.keys.split(",")]:
        for version, src in versions:
            root = work / f"root_{version}_{keys}"
            t0 = time.perf_counter()
            (make_history if version == "v2" else make_v1_history)(root, keys, known)
            made = time.perf_counter() - t0
            env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
            if src:
                env["PYTHONPATH"] = os.pathsep.join([src, env.get("PYTHONPATH", "")])
            proc = subprocess.run(
                [sys.executable, __file__, "--worker", str(root), str(inputs), model],
                capture_output=True, text=True, env=env, cwd=src or REPO,
            )  # fmt: skip
            if proc.returncode:
                print(proc.stderr[-3000:], file=sys.stderr)
                return proc.returncode
            result = {"keys": keys, "version": version, **json.loads(proc.stdout.strip().splitlines()[-1])}
            assert result["scored"] == NEW_FILES - len(known) and result["skipped"] == len(known), result
            results.append(result)
            print(
                f"{version} {keys:>9,} keys (history made in {made:.1f} s): launch {result['launch_s']:.2f} s, "
                f"graph {result['graph_bytes'] / 1024:,.1f} KiB, launcher RSS {result['launch_rss_mb']:,.0f} MiB, "
                f"run {result['wall_s']:.1f} s, peak RSS {result['peak_rss_mb']:,.0f} MiB, "
                f"scored {result['scored']}, skipped {result['skipped']}",
                flush=True,
            )
    print()
    print("| layout | history keys | launch s | job graph KiB | RSS at launch MiB | whole run s | peak RSS MiB |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in results:
        print(
            f"| {r['version']} | {r['keys']:,} | {r['launch_s']:.2f} | {r['graph_bytes'] / 1024:,.1f} "
            f"| {r['launch_rss_mb']:,.0f} | {r['wall_s']:.1f} | {r['peak_rss_mb']:,.0f} |"
        )
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
