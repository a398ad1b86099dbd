"""``mnist-batch score``: the Beam batch-scoring pipeline (folders of images -> Parquet).

Exit codes: 0 scored; 2 bad argument, model, input, unwritable output or unknown runner (nothing
run), a live launch of the same run id or a committed one without --replace, or a job that
failed, e.g. the model changed or broke on a worker (nothing committed); 4 the run finished but
every file failed, no image matched, or ``--max-error-rate`` was exceeded (outputs are still
written).
"""

from __future__ import annotations

import argparse
import sys
from contextlib import nullcontext

from mnist_batch.cli.common import HelpFormatter, add_verbosity, slow_step
from mnist_batch.scoring.options import ScoreSettings, add_arguments, parse
from mnist_batch.tables import partition_parts
from mnist_batch.trust import describe

DESCRIPTION = """\
Score folders of digit images with Apache Beam and write Parquet outputs.

Local runs (no Beam option, every place on this disk, --layout flat; at most
$MNIST_BATCH_INPROCESS_MAX_FILES image files when that is set) run the same job in this process
without importing Beam (--engine auto, the default); --engine beam always runs the Beam job.
The summary says which engine ran and why.

Any image (scans, photos, PNG/JPEG/BMP/GIF/TIFF/WebP, any mode) is normalised the way MNIST
was made before the model sees it. Outputs under --output: predictions/, errors/,
confusion/, per_class/ (Parquet), summary.json and _SUCCESS (written last). With
--layout runs, --output is a root of Hive-partitioned tables, ROOT/<table>/dt=D/run=ID/.

Examples:
  mnist-batch score --model out/demo/models/cnn.keras --input out/demo/test_images --output out/scored
  mnist-batch score --model out/demo/models/cnn.keras --input 'scans/**/*.jpg' --input more/ \\
      --output out/scored --max-error-rate 0.05 \\
      --direct_running_mode multi_processing --direct_num_workers 2
  mnist-batch score --model out/demo/models/cnn.keras --input out/demo/test_images --output out/runs --layout runs --incremental

Unknown options are passed to Beam (--runner, --project, --region, --temp_location,
--setup_file ./setup.py, ...). Exit codes: 0 ok; 2 bad argument/model/input, run id
held by a live launch or already committed, or the job failed (nothing committed); 4 every
file failed, nothing matched, or --max-error-rate exceeded (outputs still written).
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "score",
        help="score folders of images with Beam, write Parquet",
        description=DESCRIPTION,
        formatter_class=HelpFormatter,
        allow_abbrev=False,  # Beam's --labels must not be taken for --labels-csv
    )
    add_arguments(p)
    add_verbosity(p)
    p.set_defaults(run=run, passes_unknown_args=True)  # what this command does not know is Beam's


def print_recovered(summary: dict) -> None:
    """Commits of earlier launches this launch finished (rolled forward) or undid (rolled back)."""
    recovered = summary.get("recovered") or {}
    for journal in recovered.get("completed", []):
        print(f"recovered: rolled forward the commit cut short at {journal} (all its shards were there)")
    for journal in recovered.get("rolled_back", []):
        print(
            f"recovered: rolled back the aborted commit at {journal} (its shards were gone; that run is not committed)"
        )
    for journal in recovered.get("uncommitted", []):
        print(f"recovered: the earlier run that {journal} was replacing lost files with it and is uncommitted too")


def print_summary(summary: dict) -> None:
    print_recovered(summary)
    counts = summary["counts"]
    where = "in process (no Beam)" if summary.get("engine") == "inprocess" else f"on {summary['runner']}"
    print(
        f"scored {counts['scored']:,} of {counts['matched']:,} images "
        f"({counts['errors']:,} errors, {counts['skipped']:,} skipped, {counts['low_confidence']:,} low confidence, "
        f"{counts['blank']:,} blank) in {summary['wall_time_s']:.1f} s {where}"
    )
    if summary.get("engine_reason"):
        print(f"engine: {summary.get('engine', 'beam')} ({summary['engine_reason']})")
    if summary.get("runtime"):
        print(f"runtime: {summary['runtime']} ({summary.get('runtime_reason', '')})")
    if summary.get("review_threshold") is not None:
        source = summary.get("review_threshold_source", "")
        print(f"review: low_confidence below {summary['review_threshold']:g}" + (f" ({source})" if source else ""))
    if "not_digit_threshold" in summary:
        line = describe(summary["not_digit_threshold"], summary.get("not_digit_threshold_source", ""))
        flagged = counts.get("not_digit")
        print(line if flagged is None else f"{line}: {flagged:,} of {counts['scored']:,} flagged not a digit")
    if summary.get("accuracy") is not None:
        print(
            f"accuracy {summary['accuracy']:.4f}, macro-F1 {summary['macro_f1']:.4f} "
            f"on {counts['labelled']:,} labelled images"
        )
    tables = summary.get("tables", {})
    if summary.get("layout") == "runs":
        print(
            f"outputs: {summary['output']}/{{{','.join(tables)}}}/{'/'.join(partition_parts(summary['dt'], summary['run_id']))}/"
        )
        inc = summary["incremental"]
        print(
            f"run {summary['run_id']} committed: {summary['marker']} (model_id {summary['model_id'][:12]}, "
            f"{inc['skipped']:,} files already scored{'' if inc['enabled'] else ', not incremental'})"
        )
    else:
        print(f"outputs: {' '.join(d + '/' for d in tables.values())} {summary['summary_path']}")
    if summary.get("failure"):
        print(f"mnist-batch score: failed: {summary['failure']} (exit {summary['exit_code']})", file=sys.stderr)


def run(args: argparse.Namespace, beam_args: list[str] | None = None) -> int:
    settings = parse(args, beam_args if beam_args is not None else getattr(args, "beam_args", []))
    summary = execute(args, settings)
    print_summary(summary)
    if settings.config.labels_csv:  # said, so that nobody reads the accuracy as the folders' labels'
        counts = summary["counts"]
        print(
            f"labels: from --labels-csv {settings.config.labels_csv}: {counts['labelled']:,} of "
            f"{counts['scored']:,} scored images have a row there (folder names are not used as labels)"
        )
    return int(summary["exit_code"])


def execute(args: argparse.Namespace, settings: ScoreSettings, *, wait: bool = True, cli: bool = True) -> dict:
    """Runs one scoring job on the engine ``--engine`` picks (:func:`mnist_batch.inprocess.engine.choose_engine`):
    in this process without Beam (:func:`mnist_batch.inprocess.job.start`), or the Beam job
    (:func:`mnist_batch.scoring.launch.start`); returns its summary. ``cli``: this is the CLI's own
    process (pyarrow's pandas probe skipped, a slow Beam import announced); ``api.score`` passes False
    and keeps the caller's process and console as they are."""
    from mnist_batch.inprocess.engine import INPROCESS, choose_engine

    choice = choose_engine(settings) if wait else None  # a detached launch is a Beam job's
    if choice is not None:
        settings = settings.replaced(engine_reason=choice.reason)
    if choice is not None and choice.engine == INPROCESS:
        from mnist_batch.inprocess.job import skip_pandas_probe
        from mnist_batch.inprocess.job import start as start_inprocess

        if cli:
            skip_pandas_probe()  # the CLI's own process: pyarrow need not import pandas (0.1-0.25 s)
        return start_inprocess(settings, choice.listing)  # the files auto listed to count them, not listed again
    loading = slow_step(args, "loading Beam (1-2 s; TensorFlow too with --runtime keras) ...") if cli else nullcontext()
    with loading:
        from mnist_batch.scoring.launch import start
        from mnist_batch.scoring.worker_errors import worker_model_errors

    with worker_model_errors():  # a model that changed or broke on a worker: one line, exit 2
        return start(settings, wait=wait)
