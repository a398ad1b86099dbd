"""Runs ``pip install ARGS`` with one short progress line every few seconds instead of pip's output.

``make install`` uses it: ``pip --quiet`` printed nothing for the ~75 s a fresh install takes,
and pip's own output is a few hundred lines. The full output goes to a log file; when pip
fails, its last lines are printed and the exit code is pip's.

Usage: python scripts/pip_progress.py LOG_FILE PIP_INSTALL_ARGS...
"""

from __future__ import annotations

import re
import subprocess
import sys
import time

EVERY_S = 10.0
STEP = re.compile(r"^\s*(Collecting|Downloading|Building|Installing collected packages|Successfully installed)\b.*")


def status(line: str) -> str:
    """A short form of one of pip's step lines (``Downloading tensorflow-2.21.0-... (572 MB)``)."""
    text = re.sub(r"https?://\S+/", "", line.strip())
    return text if len(text) <= 100 else text[:97] + "..."


def run(log_path: str, pip_args: list[str]) -> int:
    """Runs pip, logging everything to ``log_path``; returns pip's exit code."""
    start = last = time.monotonic()
    collected, current = 0, "starting pip"
    command = [sys.executable, "-m", "pip", "install", "--progress-bar", "off", *pip_args]
    with open(log_path, "w", encoding="utf-8") as log:
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for line in proc.stdout:
            log.write(line)
            if STEP.match(line):
                collected += line.lstrip().startswith("Collecting")
                current = status(line)
            if time.monotonic() - last >= EVERY_S:
                last = time.monotonic()
                print(f"  {last - start:4.0f} s  {collected} packages resolved; {current}", flush=True)
        code = proc.wait()
    if code:
        with open(log_path, encoding="utf-8") as log:
            sys.stderr.writelines(log.readlines()[-30:])
        print(f"pip install failed (exit {code}); full log: {log_path}", file=sys.stderr)
    else:
        print(f"  done in {time.monotonic() - start:.0f} s ({collected} packages; log: {log_path})", flush=True)
    return code


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    sys.exit(run(sys.argv[1], sys.argv[2:]))
