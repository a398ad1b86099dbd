"""Beam's Python SDK worker pool, listening on one address only: an emulated host's own loopback address.

Beam's ``worker_pool_main`` listens on every address (``[::]:PORT``), so two emulated hosts on one
machine could not each run a pool on the port the job names (``--environment_config
workerpool:50000``). This is the same servicer (``BeamFnExternalWorkerPoolServicer``: each worker a
``python -c 'SdkHarness(...)'`` process, the first ``python`` on ``PATH``: the host's own
environment) on ``ADDRESS:PORT``; each host's ``/etc/hosts`` names its own address ``workerpool``.

Usage: python worker_pool.py ADDRESS PORT   (run from the host's environment, never a checkout)
"""

from __future__ import annotations

import logging
import sys
import time

import grpc
from apache_beam.portability.api import beam_fn_api_pb2_grpc
from apache_beam.runners.worker.worker_pool_main import BeamFnExternalWorkerPoolServicer
from apache_beam.utils import thread_pool_executor


def main(address: str, port: int) -> None:
    options = [("grpc.http2.max_pings_without_data", 0), ("grpc.http2.max_ping_strikes", 0)]
    server = grpc.server(thread_pool_executor.shared_unbounded_instance(), options=options)
    bound = server.add_insecure_port(f"{address}:{port}")
    if bound != port:
        sys.exit(f"worker_pool: cannot listen on {address}:{port}")
    beam_fn_api_pb2_grpc.add_BeamFnExternalWorkerPoolServicer_to_server(
        BeamFnExternalWorkerPoolServicer(use_process=True), server
    )
    server.start()
    logging.basicConfig(level=logging.INFO)
    logging.info("worker pool listening on %s:%d (python %s)", address, port, sys.executable)
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
