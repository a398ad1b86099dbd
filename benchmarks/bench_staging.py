"""How the package reaches Beam's Python workers: a pre-built environment against Beam's artifact staging.

Runs the real ``mnist-batch score`` CLI through Beam's Python portable job service
(``local_job_service_main``, on free ports of its own) with three kinds of workers, and reports the
wall time of each run and what its worker did from its start to its first bundle:

- ``loopback``: ``--environment_type LOOPBACK``, the workers run in the launcher (the floor);
- ``prebuilt``: the project's way (``deploy/kubernetes/flink-taskmanager.yaml``'s sidecar): Beam's
  ``worker_pool_main`` run from a virtualenv that already holds the package (``deploy/worker/install.sh``
  over the built wheel), ``--environment_type EXTERNAL``; each worker is ``python -c SdkHarness(...)``;
- ``staged``: Beam's SDK container's way: the same ``worker_pool_main`` run from a stock Beam
  interpreter (Beam's ``apache/beam_python3.11_sdk:2.70.0`` image's pins, without the package), with
  ``--container_executable`` Beam's ``boot`` (what the image's ``boot --worker_pool`` runs), and
  ``--extra_package`` the project's wheel: ``boot`` fetches the staged artifacts, makes a venv and
  pip-installs the wheel and whatever of its dependencies the image lacks, then starts the harness;
- ``staged-default-env``: the same with ``RUN_PYTHON_SDK_IN_DEFAULT_ENVIRONMENT=1`` (boot installs
  into the interpreter's own environment, which outlives the worker);
- ``offline``: ``staged`` with the worker's package index unreachable (``PIP_INDEX_URL`` on a closed
  loopback port): how the run fails, how fast, and what it commits.

Each pool is started once and serves ``--rounds`` runs in a row (a long-lived sidecar): round 1 is
cold, the later ones show what a warm worker host reuses.

Python's job service runs no ``PROCESS`` environments (only ``EXTERNAL``, ``DOCKER``, embedded), so
``boot`` runs under Beam's worker pool (``EXTERNAL``), which starts it with the same flags a
``PROCESS`` environment or the SDK container's entrypoint gives it. The CLI refuses local paths for
workers that run elsewhere (``--environment_type EXTERNAL``); these workers run on this machine, so the
launcher here switches that one check off (``workers_see_this_disk``) and every run reads the model
and images from local disk: the figures are the staging cost without any bucket I/O.

Instrumentation, the same for every kind of worker: a ``sitecustomize.py`` on the workers'
``PYTHONPATH`` notes the harness process's start and its first ``ProcessBundle``; a wrapper notes
``boot``'s start; ``boot``'s own log lines (with their timestamps) come through the job service's
logging service; ``PIP_LOG`` keeps pip's timestamped log of each install.

Builds what it needs into WORKDIR (reused when present): the wheel (from a copy of the checkout),
the test split as PNGs, ``boot`` (``go build`` of github.com/apache/beam/sdks/v2/python/container at
the installed Beam's version), the stock interpreter (a copy of this Python's base interpreter without
its site-packages, then ``pip install --no-deps -r`` Beam's ``py311/base_image_requirements.txt`` and
``apache-beam[gcp]``, as Beam's Dockerfile does) and the pre-built venv. Prints a markdown table.

    .venv/bin/python benchmarks/bench_staging.py /tmp/stage-work --model out/demo/models/cnn.keras --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
AVOID_PORTS = {8081, 6123, 6124, 8097, 8098, 8099, 50000, 9766}
BEAM_MODULE = "github.com/apache/beam/sdks/v2"

SITECUSTOMIZE = '''\
"""bench_staging: notes when an SDK harness process starts and when it gets its first bundle."""
import importlib.abc
import os
import sys
import time

_T0 = time.time()
_EVENTS = os.environ.get("BENCH_STAGING_EVENTS")
_NAME = "apache_beam.runners.worker.sdk_worker"


def _note(event, at=None):
    with open(_EVENTS, "a") as f:
        f.write(f"{at or time.time():.3f} {os.getpid()} {event}\\n")


def _patch(module):
    original = module.SdkWorker.process_bundle
    seen = []

    def process_bundle(self, *args, **kwargs):
        if not seen:
            seen.append(1)
            _note("python_start", _T0)
            _note("first_bundle")
        return original(self, *args, **kwargs)

    module.SdkWorker.process_bundle = process_bundle


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name != _NAME:
            return None
        sys.meta_path.remove(self)
        import importlib.util

        spec = importlib.util.find_spec(name)
        exec_module = spec.loader.exec_module

        def exec_and_patch(module):
            exec_module(module)
            _patch(module)

        spec.loader.exec_module = exec_and_patch
        return spec


if _EVENTS:
    sys.meta_path.insert(0, _Finder())
'''

LAUNCHER = '''\
"""bench_staging's launcher: `mnist-batch score` with the local-path check for remote workers off
(the benchmark's workers run on this machine; the figures leave the bucket out)."""
import sys

import mnist_batch.scoring.runners as runners

runners.workers_see_this_disk = lambda options: True
from mnist_batch.cli import entry_point

sys.argv[0] = "mnist-batch"
entry_point()
'''

JOB_SERVICE = """\
\"\"\"bench_staging's job service: Beam's local_job_service_main, also logging the workers' DEBUG entries
(boot logs its steps at DEBUG through the job's logging service).\"\"\"
import logging
import signal
import sys

from apache_beam.runners.portability import local_job_service_main


class WorkerEntries(logging.Filter):
    def filter(self, record):
        return record.levelno >= logging.INFO or record.name == "root"


handler = logging.StreamHandler()
handler.addFilter(WorkerEntries())
logging.basicConfig(level=logging.DEBUG, handlers=[handler], force=True)  # Beam's import already logged
signal.signal(signal.SIGTERM, lambda *args: sys.exit(0))
local_job_service_main.run(sys.argv[1:])
"""

BOOT_WRAPPER = """\
#!/bin/sh
# bench_staging: notes boot's start, then runs Beam's boot as the worker pool asked (plus a semi-persistent dir).
echo "$(date +%s.%N) $$ boot_start" >> "$BENCH_STAGING_EVENTS"
exec {boot} "$@" --semi_persist_dir={semi} >> {log} 2>&1
"""


def run(cmd, **kwargs) -> subprocess.CompletedProcess:
    print("+", " ".join(str(c) for c in cmd), file=sys.stderr)
    return subprocess.run([str(c) for c in cmd], check=True, **kwargs)


def free_port() -> int:
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in AVOID_PORTS:
            return port


def closed_port() -> int:
    """A loopback port nobody listens on (for an unreachable package index)."""
    port = free_port()
    with socket.socket() as s:
        if s.connect_ex(("127.0.0.1", port)) == 0:
            raise SystemExit(f"port {port} is open")
    return port


def wait_port(port: int, timeout: float = 60) -> None:
    end = time.time() + timeout
    while time.time() < end:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise SystemExit(f"nothing listens on {port} after {timeout} s")


def beam_version() -> str:
    import apache_beam

    return apache_beam.__version__


# ---------------------------------------------------------------------------------------------- build


def build_wheel(work: pathlib.Path) -> pathlib.Path:
    """The project's wheel, built from a copy of the checkout's files (the checkout is not written)."""
    src, out = work / "src", work / "wheel"
    shutil.rmtree(src, ignore_errors=True)
    shutil.rmtree(out, ignore_errors=True)
    files = subprocess.run(
        ["git", "-C", str(REPO), "ls-files", "-co", "--exclude-standard"], check=True, capture_output=True, text=True
    ).stdout.splitlines()
    for name in files:
        if (REPO / name).is_file():
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, src / name)
    run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w", out, src])
    (wheel,) = out.glob("mnist_batch-*.whl")
    return wheel


def export_images(work: pathlib.Path) -> pathlib.Path:
    images = work / "images"
    if not (images / "EXPORT.json").exists():
        run(
            [sys.executable, "-m", "mnist_batch", "data", "export-images", "sample", "--split", "test", "--out", images]
        )
    return images


def build_boot(work: pathlib.Path) -> pathlib.Path:
    boot = work / "boot"
    if boot.exists():
        return boot
    build = work / "bootbuild"
    build.mkdir(parents=True, exist_ok=True)
    if not (build / "go.mod").exists():
        run(["go", "mod", "init", "bootbuild"], cwd=build)
    run(["go", "get", f"{BEAM_MODULE}/python/container@v{beam_version()}"], cwd=build)
    run(["go", "build", "-o", boot, f"{BEAM_MODULE}/python/container"], cwd=build)
    return boot


def image_requirements() -> pathlib.Path:
    """Beam's pins for its Python 3.11 SDK image, from the Go module (what its Dockerfile installs)."""
    modcache = subprocess.run(["go", "env", "GOMODCACHE"], check=True, capture_output=True, text=True).stdout.strip()
    path = pathlib.Path(modcache) / f"{BEAM_MODULE.replace('/v2', '')}/v2@v{beam_version()}"
    path = path / "python/container/py311/base_image_requirements.txt"
    if not path.exists():
        raise SystemExit(f"no {path} (build boot first: it fetches the module)")
    return path


def build_stock_python(work: pathlib.Path) -> pathlib.Path:
    """A stand-alone interpreter with Beam's SDK image's packages and not the project's: a copy of this
    Python's base interpreter without its site-packages, then what Beam's Dockerfile installs."""
    prefix = work / "stock-py"
    python = prefix / "bin" / "python"
    if (prefix / "READY").exists():
        return python
    shutil.rmtree(prefix, ignore_errors=True)
    base = pathlib.Path(sys.base_prefix)
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"

    def ignore(folder: str, names: list[str]) -> set[str]:
        here = pathlib.Path(folder)
        if here == base / "lib" / version / "site-packages":
            return set(names)
        if here == base / "bin":
            return {n for n in names if n not in (version, "python3", "python")}
        return {"__pycache__"} & set(names)

    shutil.copytree(base, prefix, symlinks=True, ignore=ignore)
    env = {k: v for k, v in os.environ.items() if k != "PIP_FIND_LINKS"}
    run([python, "-m", "ensurepip"], env=env)
    pins = {
        line.split("==")[0].lower(): line.strip()
        for line in image_requirements().read_text().splitlines()
        if "==" in line and not line.startswith("#")
    }
    run([python, "-m", "pip", "install", "-q", pins["pip"], pins["setuptools"], pins["wheel"]], env=env)
    run([python, "-m", "pip", "install", "-q", "--no-deps", "-r", image_requirements()], env=env)
    run([python, "-m", "pip", "install", "-q", "--no-deps", f"apache-beam[gcp]=={beam_version()}"], env=env)
    (prefix / "READY").write_text("")
    return python


def build_prebuilt_venv(work: pathlib.Path, wheel: pathlib.Path) -> pathlib.Path:
    """The project's worker environment: deploy/worker/install.sh over the wheel (as the image build does)."""
    venv = work / "prebuilt-venv"
    if not (venv / "READY").exists():
        base_python = pathlib.Path(sys.base_prefix) / "bin" / f"python{sys.version_info.major}.{sys.version_info.minor}"
        run([REPO / "deploy/worker/install.sh", wheel, venv], env={**os.environ, "PYTHON": str(base_python)})
        (venv / "READY").write_text("")
    return venv / "bin" / "python"


# ---------------------------------------------------------------------------------------------- run


class Processes:
    """The services this benchmark starts, each in its own session, stopped by their ids."""

    def __init__(self) -> None:
        self.started: list[subprocess.Popen] = []

    def start(self, cmd, log: pathlib.Path, env=None) -> subprocess.Popen:
        with open(log, "ab") as out:
            p = subprocess.Popen(
                [str(c) for c in cmd], stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        self.started.append(p)
        return p

    def stop(self, p: subprocess.Popen) -> None:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGTERM)
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()

    def stop_all(self) -> None:
        for p in self.started:
            self.stop(p)


def descendants_with_marker(marker: str) -> list[int]:
    """Processes (pids) whose environment holds ``BENCH_STAGING_EVENTS=marker``: workers this benchmark's
    pools started in process groups of their own."""
    found = []
    for proc in pathlib.Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            environ = (proc / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"BENCH_STAGING_EVENTS={marker}".encode() in environ:
            found.append(int(proc.name))
    return found


BOOT_STEPS = (
    "Initializing python harness",
    "Initializing temporary Python venv",
    "Cleaning up previous venv",
    "Found artifact",
    "Installing",
    "Successfully installed",
    "ERROR",
    "Executing Python",
    "Python (worker",
    "Cleaned up",
    "failed",
    "Failed",
    "Received signal",
    "Some packages",
    "Control channel established",
    "Completing background",
)
LOG_ENTRY = re.compile(r'timestamp \{\s*seconds: (\d+)\s*nanos: (\d+)\s*\}\s*message: "((?:[^"\\]|\\.)*)"')


def boot_log(job_log: pathlib.Path, since: float) -> list[tuple[float, str]]:
    """The worker log entries the job service received (boot's and the harness's), after ``since``."""
    text = job_log.read_text(errors="replace")
    entries = [
        (int(s) + int(n) / 1e9, m.encode().decode("unicode_escape", "replace")) for s, n, m in LOG_ENTRY.findall(text)
    ]
    return [(t, m) for t, m in entries if t >= since]


def events(path: pathlib.Path, since: float) -> list[tuple[float, str]]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        at, _pid, name = line.split(maxsplit=2)
        if float(at) >= since:
            out.append((float(at), name))
    return sorted(out)


PIP_LINE = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d),(\d{3}) (.*)$")


def pip_invocations(pip_log: pathlib.Path, since: float) -> list[dict]:
    """pip's own log (``PIP_LOG``), one entry per invocation: start, end, what it installed or downloaded."""
    if not pip_log.exists():
        return []
    import datetime

    runs: list[dict] = []
    for line in pip_log.read_text(errors="replace").splitlines():
        m = PIP_LINE.match(line)
        if not m:
            continue
        at = datetime.datetime.strptime(m[1], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=datetime.UTC).timestamp()
        at += int(m[2]) / 1000
        if at < since:
            continue
        msg = m[3]
        if msg.startswith("Using pip ") or not runs:
            runs.append({"start": at, "end": at, "args": "", "installed": "", "downloaded": [], "error": ""})
        run_ = runs[-1]
        run_["end"] = at
        if msg.startswith("Successfully installed "):
            run_["installed"] = msg.removeprefix("Successfully installed ")
        elif msg.lstrip().startswith("Downloading ") or msg.lstrip().startswith("Downloading link"):
            run_["downloaded"].append(msg.strip().split()[1].rsplit("/", 1)[-1])
        elif msg.startswith("ERROR:"):
            run_["error"] = run_["error"] or msg
    return runs


def launch(cmd, timeout: float) -> tuple[object, float, str, tuple[float, float] | None]:
    """Runs the CLI; past ``timeout`` interrupts it as a user would (Ctrl-C: SIGINT), then kills it
    after 60 s more. Returns (exit code or "killed", wall s, its output, (interrupted at, exited after))."""
    t0 = time.time()
    log = pathlib.Path(f"/tmp/bench_staging_{os.getpid()}.log")
    with open(log, "wb") as out:
        p = subprocess.Popen([str(c) for c in cmd], stdout=out, stderr=subprocess.STDOUT)
        interrupted = None
        try:
            rc = p.wait(timeout)
        except subprocess.TimeoutExpired:
            at = time.time() - t0
            p.send_signal(signal.SIGINT)
            try:
                rc = p.wait(60)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
                rc = "killed"
            interrupted = (round(at, 1), round(time.time() - t0 - at, 1))
    wall = time.time() - t0
    output = log.read_text(errors="replace")
    log.unlink()
    return rc, wall, output, interrupted


def score_cmd(launcher, model, images, out, job_port, env_args) -> list[str]:
    return [
        sys.executable,
        launcher,
        "score",
        "--model",
        model,
        "--input",
        images,
        "--output",
        out,
        "--runner",
        "PortableRunner",
        "--job_endpoint",
        f"localhost:{job_port}",
        *env_args,
    ]


def one_case(name: str, args, work: pathlib.Path, built: dict, procs: Processes, rounds: int) -> list[dict]:
    logs = work / "logs" / name
    shutil.rmtree(logs, ignore_errors=True)
    logs.mkdir(parents=True)
    events_file = logs / "events.log"
    pip_log = logs / "pip.log"
    job_port = free_port()
    job_log = logs / "job_service.log"
    job = procs.start([sys.executable, built["job_service"], "--port", job_port], job_log)
    wait_port(job_port)
    env_args = ["--environment_type", "LOOPBACK"]
    pool = None
    if name != "loopback":
        pool_port = free_port()
        python = built["prebuilt_python"] if name == "prebuilt" else built["stock_python"]
        # the worker host's own settings: none of this machine's pip settings but the CA bundle
        drop = ("PIP_FIND_LINKS", "PIP_DEFAULT_TIMEOUT", "VIRTUAL_ENV", "PYTHONPATH")
        env = {k: v for k, v in os.environ.items() if k not in drop}
        env.update(
            PATH=f"{python.parent}:{env['PATH']}",
            PYTHONPATH=str(built["hook"]),
            BENCH_STAGING_EVENTS=str(events_file),
            PIP_LOG=str(pip_log),
        )
        pool_cmd = [python, "-m", "apache_beam.runners.worker.worker_pool_main", f"--service_port={pool_port}"]
        if name != "prebuilt":
            wrapper = logs / "boot.sh"
            wrapper.write_text(
                BOOT_WRAPPER.format(boot=built["boot"], semi=work / "semi" / name, log=logs / "boot.out")
            )
            wrapper.chmod(0o755)
            pool_cmd.append(f"--container_executable={wrapper}")
        if name == "staged-default-env":
            venv = (
                work / "default-env-venv"
            )  # boot installs here; outlives each worker, as the image's own Python would
            shutil.rmtree(venv, ignore_errors=True)
            run([python, "-m", "venv", "--system-site-packages", "--without-pip", venv])
            env["PATH"] = f"{venv / 'bin'}:{env['PATH']}"
            env["RUN_PYTHON_SDK_IN_DEFAULT_ENVIRONMENT"] = "1"
        if name == "offline":
            env["PIP_INDEX_URL"] = f"http://127.0.0.1:{closed_port()}/simple"
        pool = procs.start(pool_cmd, logs / "pool.log", env=env)
        wait_port(pool_port)
        env_args = ["--environment_type", "EXTERNAL", "--environment_config", f"localhost:{pool_port}"]
        if name != "prebuilt":
            env_args += ["--extra_package", str(built["wheel"])]
    results = []
    for i in range(1, rounds + 1):
        out = work / "out" / f"{name}-{i}"
        shutil.rmtree(out, ignore_errors=True)
        cmd = score_cmd(built["launcher"], args.model, built["images"], out, job_port, env_args)
        if i == 1:
            print("$", " ".join(str(c) for c in cmd), file=sys.stderr)
        t0 = time.time()
        timeout = args.offline_timeout if name == "offline" else args.timeout
        rc, wall, output, interrupted = launch(cmd, timeout)
        tail = [
            line for line in output.strip().splitlines() if "crcmod" not in line and "binary-compatible" not in line
        ]
        tail = tail[-4:]
        time.sleep(1)  # the last log entries reach the job service
        row = {"case": name, "round": i, "rc": rc, "wall_s": round(wall, 2), "tail": tail}
        if interrupted is not None:
            row["interrupted_after_s"], row["exit_after_interrupt_s"] = interrupted
        ev = events(events_file, t0)
        boot_starts = [t for t, e in ev if e == "boot_start"]
        py_starts = [t for t, e in ev if e == "python_start"]
        bundles = [t for t, e in ev if e == "first_bundle"]
        worker_start = min(boot_starts or py_starts or [float("nan")])
        row["workers"] = max(len(boot_starts), len(py_starts))
        if bundles:
            row["launch_to_first_bundle_s"] = round(min(bundles) - t0, 2)
            row["worker_start_to_first_bundle_s"] = round(min(bundles) - worker_start, 2)
        if boot_starts and py_starts:
            row["boot_to_harness_s"] = round(min(py_starts) - min(boot_starts), 2)
        entries = boot_log(job_log, t0 - 1)
        row["boot_log"] = [(round(t - t0, 2), m[:300]) for t, m in entries if m.startswith(BOOT_STEPS)]
        pips = pip_invocations(pip_log, t0)
        row["pip"] = [
            {
                "s": round(r["end"] - r["start"], 2),
                "installed": r["installed"],
                "downloaded": r["downloaded"],
                "error": r["error"][:200],
            }
            for r in pips
        ]
        row["pip_s"] = round(sum(r["end"] - r["start"] for r in pips), 2)
        row["committed"] = sorted(p.name for p in out.iterdir()) if out.exists() else []
        results.append(row)
        print(json.dumps(row), file=sys.stderr)
        if interrupted is not None or name == "offline":
            break
    if pool is not None:
        procs.stop(pool)
    procs.stop(job)
    for pid in descendants_with_marker(str(events_file)):
        os.kill(pid, signal.SIGTERM)
    return results


def outcome(row: dict) -> str:
    if "interrupted_after_s" in row:
        return f"no end: Ctrl-C at {row['interrupted_after_s']:.0f} s, exit {row['rc']}"
    return f"exit {row['rc']}"


def table(results: list[dict]) -> str:
    lines = [
        "| workers | round | rc | wall s | launch → first bundle s | worker start → first bundle s | of which pip s |",
        "| --- | ---: | --- | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        lines.append(
            f"| {r['case']} | {r['round']} | {outcome(r)} | {r['wall_s']:.1f} | {r.get('launch_to_first_bundle_s', '-')} "
            f"| {r.get('worker_start_to_first_bundle_s', '-')} | {r['pip_s'] if r['pip'] else '-'} |"
        )
    summary = [
        "",
        "| workers | runs | wall s, min / median | worker start → first bundle s, min / median |",
        "| --- | ---: | ---: | ---: |",
    ]
    for case in dict.fromkeys(r["case"] for r in results):
        rows = [r for r in results if r["case"] == case and r["rc"] == 0]
        if not rows:
            continue
        walls = [r["wall_s"] for r in rows]
        starts = [r["worker_start_to_first_bundle_s"] for r in rows if "worker_start_to_first_bundle_s" in r]
        start_s = f"{min(starts):.1f} / {statistics.median(starts):.1f}" if starts else "-"
        summary.append(f"| {case} | {len(rows)} | {min(walls):.1f} / {statistics.median(walls):.1f} | {start_s} |")
    return "\n".join(lines + summary)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("work", type=pathlib.Path, help="work folder (built things are reused)")
    p.add_argument(
        "--model", required=True, type=pathlib.Path, help=".keras model, its .card.json and .tflite beside it"
    )
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--cases", default="loopback,prebuilt,staged,staged-default-env,offline")
    p.add_argument("--boot", type=pathlib.Path, help="Beam's Python boot binary (else built with go into WORK)")
    p.add_argument("--stock-python", type=pathlib.Path, help="a Python like Beam's SDK image's (else built into WORK)")
    p.add_argument("--timeout", type=float, default=300, help="seconds per run before it is stopped")
    p.add_argument("--offline-timeout", type=float, default=120, help="the same for the offline case")
    p.add_argument("--json", type=pathlib.Path, help="also write every round's details here")
    args = p.parse_args()
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    args.model = args.model.resolve()
    wheel = build_wheel(work)
    hook = work / "hook"
    hook.mkdir(exist_ok=True)
    (hook / "sitecustomize.py").write_text(SITECUSTOMIZE)
    launcher = work / "launch_score.py"
    launcher.write_text(LAUNCHER)
    job_service = work / "job_service.py"
    job_service.write_text(JOB_SERVICE)
    built = {
        "wheel": wheel,
        "images": export_images(work),
        "hook": hook,
        "launcher": launcher,
        "job_service": job_service,
        "boot": (args.boot or build_boot(work)).resolve(),
        "stock_python": args.stock_python or build_stock_python(work),
        "prebuilt_python": build_prebuilt_venv(work, wheel),
    }
    cases = args.cases.split(",")
    procs = Processes()
    results: list[dict] = []
    try:
        for name in cases:
            results += one_case(name, args, work, built, procs, 1 if name == "offline" else args.rounds)
    finally:
        procs.stop_all()
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    print(table(results))


if __name__ == "__main__":
    main()
