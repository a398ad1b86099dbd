"""Airflow DAG: score the day's new scans every night with ``BeamRunPythonPipelineOperator``.

Needs ``apache-airflow-providers-apache-beam`` (and ``-google`` for Dataflow). The Airflow
worker launches ``pipelines/score.py`` of a copy of this repository synced next to the DAG
(``dags/mnist_batch/``; or set ``MNIST_BATCH_PY_FILE``) in a virtualenv where that copy is
pip-installed with its pinned stack.

Each try of a DAG run is one committed run: ``--run-id`` is unique per try
(``d{{ ds_nodash }}-try{{ ti.try_number }}``: a retry never collides with a live or committed
try) and ``--run-date`` its ``dt=`` partition (the logical date); ``--incremental`` skips files
that earlier committed runs already scored, so a retry or a backfill scores only what is new.
Settings are Airflow Variables: ``mnist_batch_model``, ``mnist_batch_input``,
``mnist_batch_output`` (runs root), ``mnist_batch_expect_model_id``, ``mnist_batch_runner``
(``DirectRunner`` or ``DataflowRunner``), ``mnist_batch_project``, ``mnist_batch_region``,
``mnist_batch_temp_location``.

A second task, ``monitor``, runs after a successful ``score``: ``mnist-batch monitor`` over the runs
root rewrites the page and table in ``mnist_batch_monitor_dir`` (a folder the worker can write) and
fails the task (exit 5, one line per failed check in its log) when the new run is flagged on
``mnist_batch_monitor_fail_on`` (default ``drift,errors,low_confidence``). It needs the package
installed on the worker (``mnist_batch_cmd``, default ``mnist-batch``); it is never retried (a
flagged run stays flagged).
"""

from __future__ import annotations

import datetime
import os

from airflow import DAG
from airflow.providers.apache.beam.operators.beam import BeamRunPythonPipelineOperator

try:  # Airflow 3
    from airflow.providers.standard.operators.bash import BashOperator
except ImportError:  # Airflow 2
    from airflow.operators.bash import BashOperator

PY_FILE = os.environ.get(
    "MNIST_BATCH_PY_FILE", os.path.join(os.path.dirname(__file__), "mnist_batch", "pipelines", "score.py")
)
PACKAGE_DIR = os.path.dirname(os.path.dirname(PY_FILE))  # the repository copy: setup.py, mnist_batch/, ...
SETUP_FILE = os.path.join(PACKAGE_DIR, "setup.py")
# The Python that runs pipelines/score.py. Unset: the provider makes a fresh virtualenv per try from
# python3.11 and pip-installs the repository copy into it (the pinned TensorFlow/Beam stack: minutes and
# ~2.6 GB per try, PyPI needed). Set (e.g. /srv/mnist_batch/.venv/bin/python, where the package is
# installed): that interpreter runs the pipeline as is, and Airflow's own environment needs neither
# TensorFlow nor this package's pins. `make test-schedulers` runs the DAG this way.
PYTHON = os.environ.get("MNIST_BATCH_PYTHON") or None
RETRY_DELAY = datetime.timedelta(seconds=float(os.environ.get("MNIST_BATCH_RETRY_DELAY_S", "900")))

with DAG(
    dag_id="mnist_batch_score",
    description="Nightly incremental scoring of new digit scans (mnist_batch, Apache Beam)",
    schedule="@daily",
    start_date=datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 2, "retry_delay": RETRY_DELAY},  # 15 minutes unless MNIST_BATCH_RETRY_DELAY_S
    tags=["mnist_batch", "beam"],
) as dag:
    score = BeamRunPythonPipelineOperator(
        task_id="score",
        py_file=PY_FILE,
        runner="{{ var.value.get('mnist_batch_runner', 'DirectRunner') }}",
        py_interpreter=PYTHON or "python3.11",
        # without MNIST_BATCH_PYTHON, pip installs the package (and its pinned stack) into the task's venv
        py_requirements=None if PYTHON else [PACKAGE_DIR],
        py_system_site_packages=False,
        pipeline_options={
            "model": "{{ var.value.mnist_batch_model }}",
            "input": "{{ var.value.mnist_batch_input }}",
            "output": "{{ var.value.mnist_batch_output }}",
            "layout": "runs",
            "incremental": True,
            "run-id": "d{{ ds_nodash }}-try{{ ti.try_number }}",
            "run-date": "{{ ds }}",
            "expect-model-id": "{{ var.value.mnist_batch_expect_model_id }}",
            "max-error-rate": "0.05",
            "project": "{{ var.value.get('mnist_batch_project', '') }}",
            "region": "{{ var.value.get('mnist_batch_region', '') }}",
            "temp_location": "{{ var.value.get('mnist_batch_temp_location', '') }}",
            "setup_file": SETUP_FILE,
        },
    )
    monitor = BashOperator(
        task_id="monitor",
        bash_command=(
            "{{ var.value.get('mnist_batch_cmd', 'mnist-batch') }} monitor '{{ var.value.mnist_batch_output }}' "
            "--output '{{ var.value.mnist_batch_monitor_dir }}' "
            "--fail-on '{{ var.value.get('mnist_batch_monitor_fail_on', 'drift,errors,low_confidence') }}'"
        ),
        retries=0,
    )
    score >> monitor
