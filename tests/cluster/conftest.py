"""Fixtures of the tests against the Flink cluster of ``make cluster-up`` (``make test-cluster``).

Every test module here sets ``pytestmark = pytest.mark.cluster``: ``make test`` deselects them
(pytest.ini), ``make test-cluster`` selects them and fails, saying so, when the cluster is not up.
"""

from __future__ import annotations

import pathlib
import subprocess
import sys

import pytest

from flink_cluster import CLUSTER_SH, ENV, REPO

sys.path.insert(0, str(REPO / "tests"))

import scoring_fixtures  # noqa: E402


@pytest.fixture(scope="session")
def runner_options() -> list[str]:
    """The ``runner options: ...`` of ``cluster.sh`` (the cluster must be up)."""
    status = subprocess.run([str(CLUSTER_SH), "status"], capture_output=True, text=True, cwd=REPO)
    if status.returncode != 0:
        pytest.fail(f"the Flink cluster is not up (make cluster-up):\n{status.stdout}", pytrace=False)
    line = next(ln for ln in status.stdout.splitlines() if ln.startswith("runner options: "))
    return line.removeprefix("runner options: ").split()


@pytest.fixture(scope="session")
def model(tmp_path_factory) -> pathlib.Path:
    """A small CNN with its LiteRT file (the runtime workers use), trained on the bundled sample."""
    from mnist_batch.constants import FAST_RUNTIME
    from mnist_batch.training.export import add_runtime

    path = scoring_fixtures.train_tiny_model(tmp_path_factory.mktemp("cluster_model"))
    add_runtime(path, FAST_RUNTIME)
    return path


@pytest.fixture(scope="session")
def exported(tmp_path_factory) -> pathlib.Path:
    """The bundled sample's test split (2,000 real digits) as PNG files, as the CLI exports it."""
    out = tmp_path_factory.mktemp("exported") / "test_images"
    subprocess.run(
        [sys.executable, "-m", "mnist_batch", "data", "export-images", "sample", "--split", "test", "--out", str(out)],
        check=True,
        cwd=REPO,
        env=ENV,
        capture_output=True,
    )
    return out
