"""A real browser for the page tests: Debian's chromium, headless (installed with apt-get when missing)."""

from __future__ import annotations

import pathlib
import shutil
import subprocess

import pytest

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)


@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's chromium; installed with apt-get when missing (skips, with the reason, if that fails)."""
    exe = shutil.which("chromium")
    if exe is None and shutil.which("apt-get"):
        log = ""
        for cmd in (["apt-get", "install", "-y", "-qq", "chromium"], ["apt-get", "update", "-qq"]):
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
            log += proc.stdout[-500:] + proc.stderr[-500:]
        if shutil.which("chromium") is None:
            subprocess.run(["apt-get", "install", "-y", "-qq", "chromium"], capture_output=True, timeout=900)
        exe = shutil.which("chromium")
        if exe is None:
            pytest.skip(f"chromium is not installed and apt-get install -y chromium failed: {log[-300:]}")
    if exe is None:
        pytest.skip("chromium is not installed and there is no apt-get")
    return exe


def headless(chromium: str, profile: pathlib.Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [chromium, *FLAGS, f"--user-data-dir={profile}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=180)
