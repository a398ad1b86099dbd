"""The same files scored on DirectRunner and on the Flink cluster of ``make cluster-up``, from and into the bucket.

Exports the bundled test split (2,000 real digits) as PNG files, uploads ``--files`` of them (the
split repeated) and the model to the bucket of ``make s3-up`` (``--bucket``; its ``AWS_*`` variables
set: the cluster's hosts share nothing with this machine's disk), and runs ``mnist-batch score
--layout runs`` as a process on each runner (the cluster's `runner options` from
``deploy/flink/cluster.sh``). For each run:

- wall: launch to exit (imports, job submission, the job, the commit: what a user waits for);
- img/s: images scored / wall;
- launch-to-first-row: launch until a worker took its first image (the ``started`` time of the
  workers' progress files in staging, which Flink's workers write while they work), or, without
  progress files (DirectRunner), until the first predictions shard appears in staging;
- CPU s: user + system seconds of every process taking part (the launcher's tree; on Flink also
  every process of the JobManager, the job server and each worker host: TaskManager, pool, harnesses),
  counted from /proc every 0.5 s, and per image;
- peak RSS, per process: the launcher's process tree; on Flink also the JobManager, each
  TaskManager, the job server and the worker pool with its SDK harness processes (sampled every
  0.2 s, /proc), and the sum of their peaks.

Usage (the bucket and the cluster up first: make s3-up; eval "$(deploy/s3/server.sh env)"; make cluster-up):
  python benchmarks/bench_cluster.py --model out/demo/models/cnn.keras --files 20000
  python benchmarks/bench_cluster.py --model M --files 20000 --runners flink --flink-extra=--max-batch-size=1024
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
import threading
import time
import uuid

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parent
CLUSTER_SH = REPO / "deploy" / "flink" / "cluster.sh"
PID_DIR = REPO / ".cache" / "flink" / "run"
sys.path.insert(0, str(HERE))

from bench_score import descendants, tree_rss_bytes  # noqa: E402


def cluster_options() -> list[str]:
    status = subprocess.run([str(CLUSTER_SH), "status"], capture_output=True, text=True, cwd=REPO)
    if status.returncode != 0:
        sys.exit("the Flink cluster is not up: make cluster-up\n" + status.stdout)
    return next(ln for ln in status.stdout.splitlines() if ln.startswith("runner options: "))[16:].split()


def cluster_pids() -> dict[str, int]:
    return {p.stem: int(p.read_text()) for p in sorted(PID_DIR.glob("*.pid"))}


def flink_job_timing(since_epoch: float) -> dict | None:
    """Where the time of the newest Flink job went: launch to its start, its run, its slowest vertices."""
    import urllib.request

    rest = "http://127.0.0.1:" + os.environ.get("FLINK_REST_PORT", "8081")
    with urllib.request.urlopen(rest + "/jobs/overview", timeout=10) as r:
        jobs = [j for j in json.load(r)["jobs"] if j["start-time"] / 1000 >= since_epoch]
    if not jobs:
        return None
    job = max(jobs, key=lambda j: j["start-time"])
    with urllib.request.urlopen(f"{rest}/jobs/{job['jid']}", timeout=10) as r:
        vertices = json.load(r)["vertices"]
    slowest = sorted(vertices, key=lambda v: -v["duration"])[:3]
    return {
        "launch_to_job_start_s": job["start-time"] / 1000 - since_epoch,
        "job_s": job["duration"] / 1000,
        "vertices": len(vertices),
        "slowest_vertices": [(v["name"][:80], v["duration"] / 1000, v["parallelism"]) for v in slowest],
    }


def first_row_seen(fs, staging: str, launched_at: float, now_s: float) -> list[float]:
    """Seconds from launch to the first image a worker took, once staging shows one; else ``[]``.

    A worker's progress file (``_progress/*.json``) records when its first file started (written
    every few seconds while it works: what Flink's batch mode shows before a partition ends); without
    one, the first predictions shard (DirectRunner) counts, at the time it is seen.
    """
    paths = fs.list_files(staging)
    started = []
    for path in (p for p in paths if "/_progress/" in p and p.endswith(".json")):
        try:
            started.append(json.loads(fs.read_text(path))["started"])
        except (OSError, ValueError, KeyError, TypeError):
            continue  # gone with a commit, or being replaced: the next sample reads another
    if started:
        return [min(started) - launched_at]
    return [now_s] if any("/predictions/" in p for p in paths) else []


TICKS = os.sysconf("SC_CLK_TCK")


def tree_cpu(pid: int, cpu: dict[int, list[float]], group: dict[int, str] | None = None, name: str = "") -> None:
    """Records the user + system seconds of ``pid`` and its descendants: ``cpu[pid] = [first, last]``
    (and ``group[pid] = name``, to sum them per process of the cluster)."""
    for p in descendants(pid):
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        seconds = (int(fields[11]) + int(fields[12])) / TICKS
        cpu.setdefault(p, [seconds, seconds])[1] = seconds
        if group is not None:
            group[p] = name


def measure(name: str, command: list[str], root: str, pids: dict[str, int]) -> dict:
    from mnist_batch.runstore import fs

    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    peaks: dict[str, int] = {}
    cpu: dict[int, list[float]] = {}
    group: dict[int, str] = {}
    for what, pid in pids.items():  # the cluster's processes before the launch: their CPU counts from here
        tree_cpu(pid, cpu, group, what)
    baseline = set(cpu)  # processes started later (the SDK harnesses) count from zero
    first_row: list[float] = []
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    launcher_before = before.ru_utime + before.ru_stime
    launched_at = time.time()
    start = time.perf_counter()
    proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    watched = {"launcher": proc.pid, **pids}
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            for what, pid in watched.items():
                peaks[what] = max(peaks.get(what, 0), tree_rss_bytes(pid))
                if what != "launcher":  # the launcher's tree: from its rusage once it exited
                    tree_cpu(pid, cpu, group, what)
            if not first_row:
                first_row.extend(first_row_seen(fs, f"{root}/_staging", launched_at, time.perf_counter() - start))
            time.sleep(0.5)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    stdout, stderr = proc.communicate()
    wall = time.perf_counter() - start
    done.set()
    thread.join()
    if proc.returncode != 0:
        raise SystemExit(f"{name} failed ({proc.returncode}):\n{stderr[-3000:]}")
    children = resource.getrusage(resource.RUSAGE_CHILDREN)  # the launcher's whole tree, once it exited
    cpu_by = {"launcher": children.ru_utime + children.ru_stime - launcher_before}  # its whole tree, exited
    for p, (first, last) in cpu.items():  # the cluster's processes; harnesses started later count from zero
        cpu_by[group[p]] = cpu_by.get(group[p], 0.0) + last - (first if p in baseline else 0.0)
    cpu_s = sum(cpu_by.values())
    summary = json.loads(fs.read_text(next(p for p in fs.list_files(f"{root}/_runs") if p.endswith("summary.json"))))
    scored = summary["counts"]["scored"]
    return {
        "runner": name,
        "scored": scored,
        "wall_s": wall,
        "images_per_s": scored / wall,
        "first_row_s": first_row[0] if first_row else None,
        "cpu_s": cpu_s,
        "cpu_ms_per_image": 1000 * cpu_s / scored,
        "cpu_s_per_process": cpu_by,
        "peak_rss_mb": {k: v / 2**20 for k, v in peaks.items()},
        "peak_rss_total_mb": sum(peaks.values()) / 2**20,
        "summary_line": next((ln for ln in stdout.splitlines() if ln.startswith("scored ")), ""),
        "flink": flink_job_timing(launched_at) if pids else None,
    }


def upload(exported: pathlib.Path, model: pathlib.Path, bucket: str, count: int) -> tuple[str, str]:
    """``count`` of the exported PNGs (the split repeated) and the model's files, onto the bucket once."""
    from concurrent.futures import ThreadPoolExecutor

    import boto3

    name, _, prefix = bucket.removeprefix("s3://").partition("/")
    client = boto3.session.Session().client("s3")
    folder = f"{prefix}/in_{count}"
    files = sorted(exported.glob("*/*.png"))
    have = {o["Key"] for page in client.get_paginator("list_objects_v2").paginate(Bucket=name, Prefix=folder + "/")
            for o in page.get("Contents", [])}  # fmt: skip
    jobs = [(files[i % len(files)], f"{folder}/{files[i % len(files)].parent.name}/{i:07d}.png") for i in range(count)]
    todo = [(src, key) for src, key in jobs if key not in have]
    with ThreadPoolExecutor(32) as pool:
        list(pool.map(lambda job: client.put_object(Bucket=name, Key=job[1], Body=job[0].read_bytes()), todo))
    for path in model.parent.glob(model.stem + ".*"):
        client.upload_file(str(path), name, f"{prefix}/model/{path.name}")
    return f"s3://{name}/{folder}/", f"s3://{name}/{prefix}/model/{model.name}"


def render(results: list[dict], files: int) -> str:
    lines = [
        "| runner | files | wall s | img/s | launch-to-first-row s | CPU s | CPU ms/image | CPU s per process "
        "| peak RSS MiB (sum) | per process |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | --- |",
    ]
    for r in results:
        per = ", ".join(f"{k} {v:,.0f}" for k, v in r["peak_rss_mb"].items())
        cpu = ", ".join(f"{k} {v:,.1f}" for k, v in r["cpu_s_per_process"].items())
        first = f"{r['first_row_s']:.1f}" if r["first_row_s"] is not None else "-"
        lines.append(
            f"| {r['runner']} | {files:,} | {r['wall_s']:.1f} | {r['images_per_s']:,.0f} | {first} | "
            f"{r['cpu_s']:.1f} | {r['cpu_ms_per_image']:.2f} | {cpu} | "
            f"{r['peak_rss_total_mb']:,.0f} | {per} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True, help="exported .keras model (card and .tflite beside it)")
    ap.add_argument("--files", type=int, default=50_000)
    ap.add_argument("--runners", default="direct,flink", help='comma-separated; "" uploads only')
    ap.add_argument("--flink-extra", action="append", default=[], help="more options for the Flink run")
    ap.add_argument("--work", default=None, help="work folder (default: a temporary one)")
    ap.add_argument("--bucket", default="s3://mnist-batch/bench", help="where the inputs, model and roots go")
    ap.add_argument("--json", default=None, help="write the results here too")
    args = ap.parse_args(argv)
    work = pathlib.Path(args.work or tempfile.mkdtemp(prefix="bench_cluster_"))
    exported = work / "exported"
    if not exported.is_dir():
        subprocess.run(
            [sys.executable, "-m", "mnist_batch", "data", "export-images", "sample", "--split", "test",
             "--out", str(exported)],
            check=True, cwd=REPO, capture_output=True,
        )  # fmt: skip
    folder, model = upload(exported, pathlib.Path(args.model), args.bucket, args.files)
    results = []
    for runner in filter(None, args.runners.split(",")):  # --runners "": upload only
        root = f"{args.bucket}/root_{runner}_{uuid.uuid4().hex[:8]}"
        extra, pids = [], {}
        if runner == "flink":
            extra, pids = [*cluster_options(), *args.flink_extra], cluster_pids()
        command = [sys.executable, "-m", "mnist_batch", "score", "--model", model, "--input", folder,
                   "--output", root, "--layout", "runs", "--run-id", f"bench-{runner}", *extra]  # fmt: skip
        r = measure(runner, command, root, pids)
        print(json.dumps(r), flush=True)
        results.append(r)
    print(render(results, args.files))
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
