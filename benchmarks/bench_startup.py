"""Start-up of ``mnist-batch score`` on a few files against the hand-written loop (issue 36).

Two measurements, each process timed from start to exit (what a user waits for):

``--rounds N`` (default): the loop (``bench_score.py``'s ``fast_loop``: Pillow + the same
normalisation + one LiteRT call, one process) and ``score`` with each ``--engine`` in turn, N
rounds, alternating, so that a change in the machine's load hits every command alike; min and
median of each, and ``score``'s min over the loop's min. The load average is printed beside.

``--phases``: where each 100 ms of one ``score`` run goes. A harness process imports the CLI, then
Beam (if the engine imports it), then wraps the launch's steps with timers and runs the CLI's
``main``; each row is a step's wall time (nested steps indented under theirs), ``other`` what is
left of the process's wall time.

Usage:
  git worktree add --detach /tmp/before main    # the code before, to time in the same rounds
  python benchmarks/bench_startup.py --model out/bench/models/cnn.keras --files 20 --rounds 7 --before /tmp/before
  python benchmarks/bench_startup.py --model M --phases --engine inprocess
  python benchmarks/bench_startup.py --model M --phases --engine none --code /tmp/before   # before issue 36
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parent
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=str(REPO))
"""The child processes' environment; ``--code DIR`` points PYTHONPATH at another checkout (the code before)."""

PHASES = (
    # (label, module, attribute, depth): the steps the harness times, in the order they run. A step is
    # wrapped where its caller looks it up (each call goes through one of these names, so nothing counts twice);
    # the names of the code before issue 36 (launch.check_model ...) are kept to time it too.
    ("settings parsed (Beam's PipelineOptions before issue 36)", "mnist_batch.scoring.options", "ScoreSettings.of", 1),
    ("engine chosen (auto: the listing counted)", "mnist_batch.inprocess.engine", "choose_engine", 1),
    ("environment checked (preflight)", "mnist_batch.scoring.launch", "check_environment", 1),
    ("environment checked (preflight)", "mnist_batch.inprocess.job", "check_environment", 1),
    ("launch: check, claim, recover, run", "mnist_batch.scoring.launch", "launch_settings", 1),
    ("launch: check, claim, recover, run", "mnist_batch.inprocess.job", "launch_settings", 1),
    ("model checked against its card", "mnist_batch.scoring.attempt", "check_model", 2),
    ("model checked against its card", "mnist_batch.scoring.launch", "check_model", 2),
    ("runtime chosen and loaded", "mnist_batch.scoring.attempt", "choose_runtime", 2),
    ("runtime chosen and loaded", "mnist_batch.scoring.launch", "choose_runtime", 2),
    ("job graph built", "mnist_batch.scoring.launch", "build_job", 2),
    ("Beam job run (DirectRunner)", "apache_beam.pipeline", "Pipeline.run", 2),
    ("in-process job run", "mnist_batch.inprocess.job", "run_job", 2),
    ("listing, decode, model, shards", "mnist_batch.inprocess.job", "score_files", 3),
    ("commit", "mnist_batch.scoring.commit_step", "commit_attempt", 3),
    ("commit", "mnist_batch.inprocess.job", "commit_attempt", 3),
    ("commit", "mnist_batch.scoring.commit_step", "commit_run", 3),
    ("summary printed", "mnist_batch.cli.score_cmd", "print_summary", 1),
)


def harness(argv: list[str], engine: str) -> None:
    """Runs the CLI's ``main`` in this process with the steps of :data:`PHASES` timed; prints RESULT json."""
    start = time.perf_counter()
    times: dict[str, float] = {}
    import mnist_batch.cli as cli

    times["imports: the CLI (numpy, pyarrow, Pillow, ours)"] = time.perf_counter() - start
    if engine in ("beam", "none"):
        t = time.perf_counter()
        import apache_beam  # noqa: F401

        times["imports: apache_beam"] = time.perf_counter() - t
        t = time.perf_counter()
        import mnist_batch.scoring.launch

        times["imports: the scoring side (ours)"] = time.perf_counter() - t
    else:
        t = time.perf_counter()
        import mnist_batch.inprocess.engine
        import mnist_batch.inprocess.job  # noqa: F401

        times["imports: the in-process engine (ours)"] = time.perf_counter() - t
    import importlib

    for label, module, attr, _ in PHASES:
        if module not in sys.modules:
            continue  # not imported by this engine: importing it here would time what the run never does
        owner = importlib.import_module(module)
        *path, name = attr.split(".")
        for part in path:
            owner = getattr(owner, part, None)
        if owner is None or not hasattr(owner, name):
            continue
        original = getattr(owner, name)
        bound = hasattr(original, "__self__")  # a classmethod, bound to its class: keep it a static callable

        def timed(*a, __original=original, __label=label, **kw):
            t0 = time.perf_counter()
            try:
                return __original(*a, **kw)
            finally:
                times[__label] = times.get(__label, 0.0) + time.perf_counter() - t0

        setattr(owner, name, staticmethod(timed) if bound else timed)
    code = cli.main(argv)
    times["total in the process"] = time.perf_counter() - start
    print("RESULT " + json.dumps({"code": code, "times": times}), flush=True)


def loadavg() -> str:
    """The load averages (1, 5, 15 min) and the running / all tasks, from /proc/loadavg."""
    with open("/proc/loadavg") as f:
        return f.read().strip()


def score_command(model: str, folder: pathlib.Path, out: pathlib.Path, engine: str) -> list[str]:
    score = [sys.executable, "-m", "mnist_batch", "score", "--model", model, "--input", str(folder)]
    flag = [] if engine == "none" else ["--engine", engine]  # none: the code before issue 36 (no --engine)
    return [*score, "--output", str(out), "--runtime", "litert", *flag, "-q"]


def loop_command(model: str, folder: pathlib.Path, out: pathlib.Path) -> list[str]:
    loop = [sys.executable, str(HERE / "bench_score.py"), "--worker", "litert", "--model", model]
    return [*loop, "--folder", str(folder), "--out", str(out)]


def timed_run(command: list[str], out: pathlib.Path, code: str | None = None) -> float:
    """Seconds from start to exit of ``command`` (``code``: the checkout on its PYTHONPATH)."""
    shutil.rmtree(out, ignore_errors=True)  # a fresh output: no replacing commit (its 1 s reader grace)
    env = dict(ENV, PYTHONPATH=code) if code else ENV
    start = time.perf_counter()  # cwd: `python -m` puts it first on sys.path, before PYTHONPATH
    proc = subprocess.run(command, capture_output=True, text=True, env=env, cwd=code or env["PYTHONPATH"])
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{command} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return seconds


def make_folder(folder: pathlib.Path, files: int) -> None:
    """``files`` PNG digits of the bundled test split (cycled through) under folder/<label>/."""
    if folder.is_dir() and len(list(folder.glob("*/*.png"))) == files:
        return
    import numpy as np
    from PIL import Image

    from mnist_batch.data import load_dataset

    test = load_dataset("sample").split("test")
    shutil.rmtree(folder, ignore_errors=True)
    for i in range(files):
        j = i % len(test.labels)
        target = folder / str(int(test.labels[j])) / f"{i:07d}.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.asarray(test.images[j], np.uint8)).save(target)


def rounds(
    model: str, folder: pathlib.Path, work: pathlib.Path, n: int, engines: list[str], before: str | None = None
) -> dict[str, list[float]]:
    """``n`` rounds of: the loop, ``score`` of the checkout ``before`` (if given), ``score --engine E`` for each E."""
    commands = {"loop": (loop_command(model, folder, work / "loop"), work / "loop", None)}
    if before:
        commands["score, before (no --engine)"] = (
            score_command(model, folder, work / "before", "none"),
            work / "before",
            before,
        )
    for e in engines:
        commands[f"score --engine {e}"] = (score_command(model, folder, work / e, e), work / e, None)
    results: dict[str, list[float]] = {key: [] for key in commands}
    for i in range(n):
        line = [f"round {i + 1}/{n} (load {loadavg().split()[0]}):"]
        for key, (command, out, code) in commands.items():
            results[key].append(timed_run(command, out, code))
            line.append(f"{key} {results[key][-1]:.2f} s")
        print("  ".join(line), flush=True)
    return results


def phases(model: str, folder: pathlib.Path, work: pathlib.Path, engine: str) -> dict[str, float]:
    argv = score_command(model, folder, work / "phases", engine)[3:]
    shutil.rmtree(work / "phases", ignore_errors=True)
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, __file__, "--harness", json.dumps(argv), "--engine", engine],
        capture_output=True,
        text=True,
        env=ENV,
        cwd=ENV["PYTHONPATH"],  # the checkout that runs, first on sys.path
    )
    wall = time.perf_counter() - start
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"harness failed ({proc.returncode}): {proc.stderr[-2000:]}")
    times = json.loads(lines[-1][7:])["times"]
    t = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], check=True, env=ENV)
    return {"wall (start to exit)": wall, "interpreter start (python -c pass)": time.perf_counter() - t, **times}


def render_phases(times: dict[str, float], engine: str) -> str:
    depth = {label: d for label, _, _, d in PHASES}
    wall = times["wall (start to exit)"]
    rows = ["| step | ms | share |", "| --- | ---: | ---: |"]
    start = times["interpreter start (python -c pass)"]
    rows.append(f"| interpreter start (`python -c pass`) | {1000 * start:.0f} | {start / wall:.0%} |")
    order = [k for k in times if k.startswith("imports:")] + list(dict.fromkeys(label for label, *_ in PHASES))
    for label in order:
        if label in times:
            indent = "&nbsp;&nbsp;" * (depth.get(label, 1) - 1)
            rows.append(f"| {indent}{label} | {1000 * times[label]:.0f} | {times[label] / wall:.0%} |")
    top = sum(v for k, v in times.items() if k.startswith("imports:") or depth.get(k) == 1)
    main = times["total in the process"] - top
    rows.append(
        f"| the CLI's main, outside the steps above (argument parsing ...) | {1000 * main:.0f} | {main / wall:.0%} |"
    )
    rest = wall - start - times["total in the process"]
    rows.append(f"| interpreter exit (threads joined, modules freed) | {1000 * rest:.0f} | {rest / wall:.0%} |")
    rows.append(f"| **wall, start to exit ({engine})** | **{1000 * wall:.0f}** | 100% |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="an exported model with its LiteRT file in the card")
    parser.add_argument("--files", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--engines", default="beam,inprocess", help="comma-separated --engine values")
    parser.add_argument("--phases", action="store_true", help="one harnessed run: where the time goes")
    parser.add_argument("--engine", default="beam", help="the engine of --phases")
    parser.add_argument("--work", default=None)
    parser.add_argument("--before", default=None, help="a checkout of the code before (e.g. a worktree of main)")
    parser.add_argument("--code", default=None, help="a checkout whose mnist_batch runs (default: this one)")
    parser.add_argument("--harness", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.code:
        ENV["PYTHONPATH"] = str(pathlib.Path(args.code).resolve())
    if args.harness:
        harness(json.loads(args.harness), args.engine)
        return 0
    args.model = str(pathlib.Path(args.model).resolve())  # the commands run in the checkout's folder
    work = pathlib.Path(args.work or tempfile.mkdtemp(prefix="bench_startup_")).resolve()
    folder = work / f"files_{args.files}"
    make_folder(folder, args.files)
    host = subprocess.run("lscpu | grep 'Model name'", shell=True, capture_output=True, text=True).stdout.strip()
    print(f"host: {host}; cores: {len(os.sched_getaffinity(0))}; load at start: {loadavg()}")
    if args.phases:
        print(render_phases(phases(args.model, folder, work, args.engine), args.engine))
        return 0
    engines = [e for e in args.engines.split(",") if e]
    results = rounds(args.model, folder, work, args.rounds, engines, args.before)
    loop_min = min(results["loop"])
    print(f"\n| command ({args.files} files, {args.rounds} rounds) | min s | median s | min / loop's min |")
    print("| --- | ---: | ---: | ---: |")
    for key, values in results.items():
        print(f"| {key} | {min(values):.2f} | {statistics.median(values):.2f} | {min(values) / loop_min:.2f} |")
    print(f"load at end: {loadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
