"""``mnist-batch score``: the Beam batch-scoring pipeline (folders of images -> Parquet).

Exit codes: 0 scored; 2 bad argument, model or input, a live launch of the same run, or a
job that failed (nothing committed); 4 the run finished but every file failed, no image
matched, or ``--max-error-rate`` was exceeded (outputs are still written).
"""

from __future__ import annotations

import argparse
import difflib
import sys

from mnist_batch.cli.common import HelpFormatter, add_verbosity, slow_step
from mnist_batch.config import DEFAULT_MAX_BATCH_SIZE, DEFAULT_MIN_BATCH_SIZE, DEFAULT_REVIEW_THRESHOLD
from mnist_batch.constants import IMAGE_EXTENSIONS
from mnist_batch.errors import MnistBatchError

DESCRIPTION = """\
Score folders of digit images with Apache Beam and write Parquet outputs.

Any image (scans, photos, PNG/JPEG/BMP/GIF/TIFF/WebP, any mode) is normalised the way MNIST
was made before the model sees it. Outputs under --output: predictions/, errors/,
confusion/, per_class/ (Parquet), summary.json and _SUCCESS (written last). With
--layout runs, --output is a root of Hive-partitioned tables, ROOT/<table>/dt=D/run=ID/.

Examples:
  mnist-batch score --model models/cnn.keras --input out/test_images --output out/scored
  mnist-batch score --model models/cnn.keras --input 'scans/**/*.jpg' --input more/ \\
      --output out/scored --max-error-rate 0.05 \\
      --direct_running_mode multi_processing --direct_num_workers 2
  mnist-batch score --model models/cnn.keras --input scans/ --output out/runs --layout runs --incremental

Unknown options are passed to Beam (--runner, --project, --region, --temp_location,
--setup_file ./setup.py, ...). Exit codes: 0 ok; 2 bad argument/model/input, run id
held by a live launch or already committed, or the job failed (nothing committed); 4 every
file failed, nothing matched, or --max-error-rate exceeded (outputs still written).
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="exported .keras model (its .card.json beside it)")
    p.add_argument(
        "--input",
        action="append",
        required=True,
        metavar="PATH",
        help="folder, glob ('**' recursive), image file, or @LIST file; repeatable",
    )
    p.add_argument("--output", required=True, help="output folder (local or any Beam filesystem)")
    p.add_argument("--labels-csv", default=None, help="CSV 'path,label' of true labels (default: parent folder name)")
    p.add_argument(
        "--extensions",
        default=",".join(IMAGE_EXTENSIONS),
        help="comma-separated image extensions (case-insensitive); other files are skipped and counted",
    )
    p.add_argument(
        "--review-threshold",
        type=float,
        default=DEFAULT_REVIEW_THRESHOLD,
        help="flag predictions below this confidence as low_confidence",
    )
    p.add_argument("--min-batch-size", type=int, default=DEFAULT_MIN_BATCH_SIZE, help="RunInference min batch")
    p.add_argument("--max-batch-size", type=int, default=DEFAULT_MAX_BATCH_SIZE, help="RunInference max batch")
    p.add_argument(
        "--max-error-rate",
        type=float,
        default=None,
        help="exit 4 when errors/matched exceeds this (0-1); default: only when every file failed",
    )
    p.add_argument("--max-pixels", type=int, default=40_000_000, help="refuse larger images (decompression bombs)")
    p.add_argument(
        "--run-id",
        default=None,
        help="run id written to every row and the run= partition: a letter, then letters, digits, ._- "
        "(default: unique, r + UTC time + random, e.g. r20261122T020000Z-3fa9c2d1)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an earlier run's outputs in --output")
    add_production_arguments(p)


def add_production_arguments(p: argparse.ArgumentParser) -> None:
    """Options of production runs (``mnist_batch.scoring.runs``; see deploy/README.md)."""
    g = p.add_argument_group("production runs (deploy/README.md)")
    g.add_argument(
        "--layout",
        choices=("flat", "runs"),
        default="flat",
        help="flat: tables directly in --output; runs: --output is a ROOT of Hive-partitioned tables "
        "ROOT/<table>/dt=DATE/run=ID/, each run committed with ROOT/_runs/dt=DATE/run=ID/_SUCCESS",
    )
    g.add_argument("--run-date", default=None, help="dt= partition YYYY-MM-DD (--layout runs; default: today, UTC)")
    g.add_argument(
        "--replace",
        action="store_true",
        help="replace a committed run with the same --run-id (--layout runs; without it that is refused)",
    )
    g.add_argument(
        "--incremental",
        action="store_true",
        help="skip files that an earlier committed run under ROOT took on (needs --layout runs)",
    )
    g.add_argument(
        "--incremental-key",
        choices=("stat", "hash"),
        default="stat",
        help="what identifies a file already scored: stat = path+size+mtime, hash = path+sha256 of the content",
    )
    g.add_argument(
        "--expect-model-id",
        default=None,
        metavar="SHA256",
        help="refuse to run (exit 2) unless the model's id (its sha256, or a prefix of 8+ characters) matches",
    )


class BeamArgsParser(argparse.ArgumentParser):
    """Keeps the arguments it does not know in ``namespace.beam_args`` (they are Beam's options)."""

    def parse_known_args(self, args=None, namespace=None):
        namespace, extras = super().parse_known_args(args, namespace)
        namespace.beam_args = list(getattr(namespace, "beam_args", None) or []) + list(extras)
        return namespace, []


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "score",
        help="score folders of images with Beam, write Parquet",
        description=DESCRIPTION,
        formatter_class=HelpFormatter,
        allow_abbrev=False,  # Beam's --labels must not be taken for --labels-csv
    )
    p.__class__ = BeamArgsParser  # the top-level parser would reject Beam's options otherwise
    add_arguments(p)
    add_verbosity(p)
    p.set_defaults(run=run, parser=p)


def config_from_args(args: argparse.Namespace):
    """argparse namespace -> ScoreConfig (a bad value becomes a MnistBatchError naming the field)."""
    from mnist_batch.config import ScoreConfig

    extensions = tuple(e.strip().lower().lstrip(".") for e in args.extensions.split(",") if e.strip())
    try:
        return ScoreConfig(
            model=args.model,
            inputs=tuple(args.input),
            output=args.output,
            labels_csv=args.labels_csv,
            extensions=extensions,
            review_threshold=args.review_threshold,
            min_batch_size=args.min_batch_size,
            max_batch_size=args.max_batch_size,
            max_error_rate=args.max_error_rate,
            max_pixels=args.max_pixels,
            run_id=args.run_id,
            overwrite=args.overwrite,
        )
    except ValueError as exc:
        raise MnistBatchError(f"score: {exc}") from exc


def check_beam_args(beam_args: list[str], parser: argparse.ArgumentParser | None = None) -> None:
    """Refuses options that neither this command nor Beam knows (a typo would be silently ignored).

    Raises:
      MnistBatchError: naming the option, with the closest option of this command if any.
    """
    flags = [a for a in beam_args if a.startswith("--") and len(a) > 2]
    if not flags:
        return
    from apache_beam.options.pipeline_options import PipelineOptions

    # Beam's parser knows every spelling (--experiment for experiments, --no_use_public_ips, ...);
    # what it keeps only with retain_unknown_options is what no Beam option accepted.
    options = PipelineOptions(beam_args)
    unknown = set(options.get_all_options(retain_unknown_options=True)) - set(
        options.get_all_options(retain_unknown_options=False)
    )
    own = [o for action in (parser._actions if parser else []) for o in action.option_strings]
    for flag in flags:
        name = flag[2:].split("=", 1)[0]
        if name not in unknown:
            continue
        guess = difflib.get_close_matches("--" + name, own, n=1)
        hint = f"did you mean {guess[0]}?" if guess else "not an option of mnist-batch score or of Beam"
        raise MnistBatchError(f"score: unknown option --{name} ({hint})")


def print_summary(summary: dict) -> None:
    counts = summary["counts"]
    print(
        f"scored {counts['scored']:,} of {counts['matched']:,} images "
        f"({counts['errors']:,} errors, {counts['skipped']:,} skipped, {counts['low_confidence']:,} low confidence, "
        f"{counts['blank']:,} blank) in {summary['wall_time_s']:.1f} s on {summary['runner']}"
    )
    if summary.get("accuracy") is not None:
        print(
            f"accuracy {summary['accuracy']:.4f}, macro-F1 {summary['macro_f1']:.4f} "
            f"on {counts['labelled']:,} labelled images"
        )
    tables = summary.get("tables", {})
    if summary.get("layout") == "runs":
        print(f"outputs: {summary['output']}/{{{','.join(tables)}}}/dt={summary['dt']}/run={summary['run_id']}/")
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
    config = config_from_args(args)
    beam_args = beam_args if beam_args is not None else getattr(args, "beam_args", [])
    check_beam_args(beam_args, getattr(args, "parser", None))
    summary = execute(args, config, beam_args)
    print_summary(summary)
    return int(summary["exit_code"])


def run_options_from_args(args: argparse.Namespace):
    """argparse namespace -> ``RunOptions`` (a bad combination becomes a MnistBatchError)."""
    from mnist_batch.scoring.launch import RunOptions

    layout = getattr(args, "layout", "flat")
    if layout == "flat" and (
        getattr(args, "incremental", False) or getattr(args, "run_date", None) or getattr(args, "replace", False)
    ):
        raise MnistBatchError("score: --incremental, --run-date and --replace need --layout runs")
    if layout == "runs" and getattr(args, "overwrite", False):
        raise MnistBatchError("score: --overwrite is for --layout flat; with --layout runs use --replace")
    try:
        return RunOptions(
            layout=layout,
            run_date=getattr(args, "run_date", None),
            incremental=getattr(args, "incremental", False),
            incremental_key=getattr(args, "incremental_key", "stat"),
            expect_model_id=getattr(args, "expect_model_id", None),
            replace=getattr(args, "replace", False),
        )
    except ValueError as exc:
        raise MnistBatchError(f"score: {exc}") from exc


def execute(args: argparse.Namespace, config, beam_args: list[str], *, wait: bool = True) -> dict:
    """Runs one scoring job in the layout the arguments name; returns its summary."""
    with slow_step(args, "loading Beam and TensorFlow (10-30 s on a small CPU machine) ..."):
        from mnist_batch.scoring.launch import launch

    return launch(config, run_options_from_args(args), beam_args, wait=wait)
