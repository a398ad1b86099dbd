"""Runs every ``benchmarks/bench_*.py`` in turn (``make bench``).

Each benchmark prints its figures as ratios against a baseline measured in the same run
and is documented, with its results, in ``docs/benchmarks.md``.
"""

from __future__ import annotations

import pathlib
import subprocess
import sys

HERE = pathlib.Path(__file__).resolve().parent


def main() -> int:
    scripts = sorted(HERE.glob("bench_*.py"))
    if not scripts:
        print("no benchmarks yet: training and scoring benchmarks arrive with those features")
        return 0
    failed = 0
    for script in scripts:
        print(f"== {script.name}", flush=True)
        failed += subprocess.call([sys.executable, str(script)]) != 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
