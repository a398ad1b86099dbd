"""Entry point for ``python -m``/Dataflow-style launches of the scoring pipeline.

Same options as ``mnist-batch score``; everything it does not know goes to Beam.

Local (DirectRunner, one process); ``python -m pipelines.score`` from the repository root is the same::

    python pipelines/score.py --model out/demo/models/cnn.keras --input out/demo/test_images --output out/scored
    python -m pipelines.score --model out/demo/models/cnn.keras --input out/demo/test_images --output out/scored2

Local, two worker processes::

    python pipelines/score.py --model out/demo/models/cnn.keras --input out/demo/test_images --output out/scored \\
        --direct_running_mode multi_processing --direct_num_workers 2

Portable runner (the path Flink, Spark and Dataflow use), with Beam's local job service::

    python -m apache_beam.runners.portability.local_job_service_main --port 8099 &
    python pipelines/score.py --model out/demo/models/cnn.keras --input out/demo/test_images --output out/scored \\
        --runner PortableRunner --job_endpoint localhost:8099 --environment_type LOOPBACK

Dataflow (``pip install -e '.[gcp]'``; model, inputs and output on GCS; ``--setup_file`` ships
this package to the workers)::

    python pipelines/score.py --model gs://BUCKET/models/cnn.keras --input gs://BUCKET/scans/ \\
        --output gs://BUCKET/scored/run1 --runner DataflowRunner --project PROJECT --region europe-west1 \\
        --temp_location gs://BUCKET/tmp --setup_file ./setup.py

Exit codes as ``mnist-batch score``: 0 ok, 2 bad argument/model/input, 4 every file failed,
nothing matched, or ``--max-error-rate`` exceeded.
"""

from __future__ import annotations

import argparse
import contextlib
import sys

from mnist_batch.cli.common import add_verbosity
from mnist_batch.cli.logs import StderrFilter, configure_logging
from mnist_batch.cli.score_cmd import DESCRIPTION, run
from mnist_batch.errors import MnistBatchError
from mnist_batch.scoring.options import add_arguments


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="pipelines/score.py",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,  # Beam's --labels must not be taken for --labels-csv
    )
    add_arguments(parser)
    add_verbosity(parser, top_level=True)
    args, beam_args = parser.parse_known_args(argv)
    configure_logging(args.verbosity)
    # As the console script: TensorFlow's and Beam's start-up noise filtered (--verbose shows it).
    with StderrFilter(args.verbosity) if argv is None else contextlib.nullcontext():
        try:
            return run(args, beam_args)
        except MnistBatchError as exc:
            print(f"score: error: {exc}", file=sys.stderr)
            return 2


if __name__ == "__main__":
    sys.exit(main())
