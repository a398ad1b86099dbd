"""A cluster's workers share nothing with the launcher: local paths refused before launch, versions checked.

The cluster tier (tests/cluster, ``make test-cluster``) runs the same against real Flink workers on
emulated hosts; these are the decisions themselves, without a cluster.
"""

from __future__ import annotations

import pytest
from apache_beam.options.pipeline_options import PipelineOptions

import mnist_batch
from mnist_batch.cli import main as cli_main
from mnist_batch.scoring import storage_fn, worker_errors
from mnist_batch.scoring.errors import ScoringError
from mnist_batch.scoring.preflight import check_places_reach_workers
from mnist_batch.scoring.runners import workers_see_this_disk

CLUSTER = ["--runner", "PortableRunner", "--job_endpoint", "localhost:1", "--environment_type", "EXTERNAL"]


@pytest.mark.parametrize(
    ("args", "local"),
    [
        ([], True),
        (["--runner", "DirectRunner", "--direct_running_mode", "multi_processing"], True),
        (["--runner", "PortableRunner", "--job_endpoint", "localhost:1", "--environment_type", "LOOPBACK"], True),
        (["--runner", "FlinkRunner"], True),  # Flink embedded in this process ([auto])
        (CLUSTER, False),
        (["--runner", "FlinkRunner", "--flink_master", "jm:8081", "--environment_type", "EXTERNAL"], False),
        (["--runner", "DataflowRunner"], False),
    ],
)
def test_which_runs_have_workers_that_see_this_disk(args, local):
    assert workers_see_this_disk(PipelineOptions(args)) is local


def test_a_local_path_for_a_cluster_is_refused_naming_the_option():
    check_places_reach_workers("PortableRunner", [("--model", "s3://b/m.keras"), ("--input", "gs://b/scans/")])
    with pytest.raises(ScoringError, match=r"^--labels-csv file:///x.csv: a path on this machine, which the workers"):
        check_places_reach_workers("PortableRunner", [("--input", "s3://b/x/"), ("--labels-csv", "file:///x.csv")])


@pytest.mark.parametrize("flag", ["--model", "--input", "--output"])
def test_the_cli_refuses_a_local_path_for_a_cluster_before_anything_runs(flag, tmp_path, capsys):
    places = {"--model": "s3://b/m/cnn.keras", "--input": "s3://b/scans/", "--output": "s3://b/runs"}
    here = str(tmp_path / ("here.keras" if flag == "--model" else "here"))
    places[flag] = here
    args = [a for pair in places.items() for a in pair]
    assert cli_main(["score", *args, *CLUSTER]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{flag} {here}: a path on this machine" in err[0], err
    assert "(on other hosts) cannot read; put it in the bucket" in err[0]


def test_a_worker_of_another_version_stops_at_setup_and_the_launcher_says_one_line(monkeypatch):
    step = storage_fn.StorageDoFn({})  # built by this launcher: carries its version
    step.setup()  # the same version: nothing to say
    monkeypatch.setattr(mnist_batch, "__version__", "0.0.1")  # now the worker's installed package differs
    with pytest.raises(storage_fn.WorkerVersionError) as info:
        step.setup()
    message = str(info.value)
    assert message.startswith(f"the workers run mnist-batch 0.0.1 but the launcher {step._launcher_version}: install")
    relayed = RuntimeError(  # what the portable runner re-raises: the worker's traceback, the step named
        f"Traceback (most recent call last):\n  ...\nmnist_batch.scoring.storage_fn.WorkerVersionError: {message} "
        "[while running 'WritePredictions/WriteShards']\n"
    )
    with pytest.raises(storage_fn.WorkerVersionError) as said, worker_errors.worker_model_errors():
        raise relayed
    assert str(said.value) == message


def test_a_worker_s_error_relayed_by_flink_is_said_in_one_line():
    """Flink's job failure holds the worker's whole traceback; the line names the worker's error."""
    from mnist_batch.scoring.summary import failure_line

    relayed = (
        "Pipeline BeamApp-x failed in state FAILED: java.lang.RuntimeException: Error received from SDK harness "
        'for instruction 1: Traceback (most recent call last):\n  File "x.py", line 1, in f\n'
        "botocore.exceptions.NoCredentialsError: Unable to locate credentials\n\nDuring handling ...\n"
        'Traceback (most recent call last):\n  File "y.py", line 2, in g\n'
        "RuntimeError: botocore.exceptions.NoCredentialsError: Unable to locate credentials "
        "[while running 'MatchImageFiles/ListS3Folders']\n"
    )
    line = failure_line(RuntimeError(relayed))
    assert line.startswith("NoCredentialsError: Unable to locate credentials [while running 'MatchImageFiles/")
    assert "give their hosts the AWS_* variables, or pass --s3_access_key_id" in line and "\n" not in line
    ours = relayed.replace(
        "RuntimeError: botocore.exceptions.NoCredentialsError: Unable to locate credentials",
        "RuntimeError: mnist_batch.runstore.errors.UncommittedStorageError: writing shards into s3://b/r: the "
        "storage failed: EndpointConnectionError: http://127.0.0.1:9",
    )
    assert failure_line(RuntimeError(ours)) == (
        "writing shards into s3://b/r: the storage failed: EndpointConnectionError: http://127.0.0.1:9"
    )
    assert failure_line(RuntimeError("no traceback here\nsecond")) == "RuntimeError: no traceback here"


def test_a_job_the_cluster_lost_is_said_in_one_line():
    from mnist_batch.scoring.summary import failure_line

    lost = RuntimeError("Pipeline BeamApp-root-1 failed in state FAILED: java.net.ConnectException: Connection refused")
    assert (
        failure_line(lost)
        == "the job BeamApp-root-1 ended FAILED on the cluster: java.net.ConnectException: Connection refused"
    )
