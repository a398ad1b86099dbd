"""The options of a scoring run, in one place: settings, their argparse wiring, Beam-option checks.

``mnist-batch score``, ``pipelines/score.py`` and the Dataflow flex-template launcher all build
their parser with :func:`add_arguments` and turn what it parsed into one :class:`ScoreSettings`
with :func:`parse`: a :class:`ScoreConfig` (:func:`config_from_args`), a :class:`RunOptions`
(:func:`run_options_from_args`) and the Beam options, checked by :func:`check_beam_args`
(options that neither this package nor Beam knows are refused). The launch sequence that
takes them is :func:`mnist_batch.scoring.launch.start`.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import difflib
import functools
import os
import re
import sys
from collections.abc import Sequence
from typing import Any

from mnist_batch.config import (
    DEFAULT_MAX_BATCH_SIZE,
    DEFAULT_MAX_FILE_BYTES,
    DEFAULT_MAX_PIXELS,
    ScoreConfig,
    name_flags,
)
from mnist_batch.constants import AUTO_RUNTIME, IMAGE_EXTENSIONS, RUNTIME_CHOICES
from mnist_batch.errors import MnistBatchError
from mnist_batch.models.runtimes import RUNTIME_HELP
from mnist_batch.review import DEFAULT_REVIEW_THRESHOLD
from mnist_batch.scoring.runners import DEFAULT_RUNNER
from mnist_batch.tables import INCREMENTAL_KEYS, LAYOUTS

AUTO_ENGINE = "auto"
ENGINES = (AUTO_ENGINE, "beam", "inprocess")
"""``--engine`` values: ``beam`` (the Beam job), ``inprocess`` (the same job in this process, without
Beam: small local runs), ``auto`` (in-process where it applies, :mod:`mnist_batch.inprocess.engine`)."""
ENGINE_ENV = "MNIST_BATCH_ENGINE"
"""The default of ``--engine`` (e.g. ``beam`` to run every launch of a session on Beam)."""
INPROCESS_MAX_FILES_ENV = "MNIST_BATCH_INPROCESS_MAX_FILES"
"""When set, the most image files ``--engine auto`` runs in process (more: Beam); unset, no limit."""

RUN_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
RUNS_ONLY = ("incremental", "run_date", "replace")
"""Run options that need the runs layout (the one statement of that rule, for the API and the CLI)."""


@dataclasses.dataclass(frozen=True)
class RunOptions:
    """How a run is placed and which files it takes on.

    Attributes:
      layout: ``flat`` (tables directly in ``--output``) or ``runs`` (``--output`` is a root of
        Hive-partitioned tables; see :mod:`mnist_batch.tables`).
      run_date: the ``dt=`` partition, ``YYYY-MM-DD`` (``runs``; default: today, UTC).
      incremental: skip files an earlier committed run under the same root took on (``runs``).
      incremental_key: ``stat`` (path + size + mtime) or ``hash`` (path + sha256 of the content).
      expect_model_id: refuse to run unless the model's id (sha256) starts with this.
      replace: replace a committed run of the same id (``runs``); without it that is refused.
    """

    layout: str = "flat"
    run_date: str | None = None
    incremental: bool = False
    incremental_key: str = "stat"
    expect_model_id: str | None = None
    replace: bool = False

    def __post_init__(self) -> None:
        if self.layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}, got {self.layout!r}")
        if self.layout == "flat":
            for name in RUNS_ONLY:
                if getattr(self, name):
                    raise ValueError(f"{name} needs layout 'runs', got layout {self.layout!r}")
        if self.run_date is not None:
            valid = bool(RUN_DATE_RE.match(self.run_date))
            if valid:
                try:
                    datetime.date.fromisoformat(self.run_date)
                except ValueError:
                    valid = False
            if not valid:
                raise ValueError(f"run_date must be YYYY-MM-DD, got {self.run_date!r}")
        if self.incremental_key not in INCREMENTAL_KEYS:
            raise ValueError(f"incremental_key must be one of {INCREMENTAL_KEYS}, got {self.incremental_key!r}")
        if self.expect_model_id is not None and len(self.expect_model_id) < 8:
            raise ValueError(f"expect_model_id must have at least 8 characters, got {self.expect_model_id!r}")


@dataclasses.dataclass(frozen=True)
class ScoreSettings:
    """Everything one scoring launch was asked for, parsed and checked once.

    Attributes:
      config: what is scored and how (:class:`ScoreConfig`).
      run: where the run goes and which files it takes on (:class:`RunOptions`).
      beam_args: the options passed on to Beam (``--runner`` ...), checked to be Beam's.
    """

    config: ScoreConfig
    run: RunOptions = dataclasses.field(default_factory=lambda: RunOptions())
    beam_args: tuple[str, ...] = ()
    engine: str = AUTO_ENGINE
    """``--engine``: ``auto``, ``beam`` or ``inprocess`` (:func:`mnist_batch.inprocess.engine.choose_engine`)."""
    engine_reason: str = ""
    """Why the engine that runs the job was chosen (said in the summary), once it is."""

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise ValueError(f"engine must be one of {ENGINES}, got {self.engine!r}")

    @functools.cached_property
    def pipeline_options(self) -> Any:
        """Beam's ``PipelineOptions`` of :attr:`beam_args`, built once per launch, when first asked
        (the checks, the stores and the job all read this one object); a launch that runs without
        Beam (the in-process engine) never builds them, so never imports Beam."""
        from apache_beam.options.pipeline_options import PipelineOptions

        return PipelineOptions(list(self.beam_args))

    @classmethod
    def of(cls, config: ScoreConfig, run=None, beam_args: Sequence[str] = (), engine="auto", *, quiet=False):
        """The one way every front door makes its settings: the runner named once, and what depends
        on it decided here, never rewritten later: the run id (a fresh one when none was given) and
        the progress line (on for the runners on this machine; off when ``quiet``, as ``-q`` shows none)."""
        from mnist_batch.runstore.run_ids import default_run_id
        from mnist_batch.scoring.runners import LOCAL_RUNNERS

        draft = cls(config, run or RunOptions(), tuple(beam_args), engine)
        decided = dataclasses.replace(
            config,
            run_id=config.run_id or default_run_id(),
            progress=(config.progress or draft.runner in LOCAL_RUNNERS) and not quiet,
        )
        return draft.replaced(config=decided)

    def replaced(self, **changes: Any) -> ScoreSettings:
        """``dataclasses.replace(self, **changes)`` keeping Beam's options if already built (one object
        per launch: the runner was named from it)."""
        settings = dataclasses.replace(self, **changes)
        if "pipeline_options" in self.__dict__:
            settings.__dict__["pipeline_options"] = self.__dict__["pipeline_options"]
        return settings

    @functools.cached_property
    def workers_see_this_disk(self) -> bool:
        """Whether the job's workers can read this machine's disk (a local runner, LOOPBACK workers)."""
        from mnist_batch.scoring.runners import workers_see_this_disk

        return workers_see_this_disk(self.pipeline_options)

    @functools.cached_property
    def runner(self) -> str:
        """The runner's name (``DirectRunner`` when none is given): decided once, asked everywhere.
        With no Beam options at all, ``DirectRunner`` without building Beam's options (no Beam import)."""
        if not self.beam_args:
            return DEFAULT_RUNNER
        from mnist_batch.scoring.runners import runner_name

        return runner_name(self.pipeline_options)


def parse(args: argparse.Namespace, beam_args: Sequence[str] = ()) -> ScoreSettings:
    """What :func:`add_arguments` parsed, plus the arguments left to Beam -> :class:`ScoreSettings`.

    Raises:
      MnistBatchError: a bad value or combination, or an option neither this command nor Beam knows.
    """
    engine = getattr(args, "engine", AUTO_ENGINE)
    if engine not in ENGINES:  # from $MNIST_BATCH_ENGINE, which argparse does not check
        raise MnistBatchError(f"score: {ENGINE_ENV}={engine!r}: the engine must be one of {', '.join(ENGINES)}")
    quiet = getattr(args, "verbosity", 0) < 0  # -q: cli.logs.QUIET
    settings = ScoreSettings.of(config_from_args(args), run_options_from_args(args), beam_args, engine, quiet=quiet)
    for flag in check_beam_args(beam_args, settings.pipeline_options if beam_args else None):
        print(
            f"mnist-batch score: note: {flag} goes to the job server unchecked (not an option of Beam's Python SDK)",
            file=sys.stderr,
        )
    return settings


def add_arguments(p: argparse.ArgumentParser) -> list[argparse.Action]:
    """Adds every scoring option to ``p``; returns the actions (their ``option_strings``, ``nargs``)."""
    actions: list[argparse.Action] = []

    def add(*args, **kwargs) -> None:
        actions.append(p.add_argument(*args, **kwargs))

    add("--model", required=True, help="exported .keras model (its .card.json beside it)")
    add(
        "--input",
        action="append",
        required=True,
        metavar="PATH",
        help="folder, glob ('**' recursive), image file, or @LIST file; repeatable",
    )
    add("--output", required=True, help="output folder (local or any Beam filesystem)")
    add("--labels-csv", default=None, help="CSV 'path,label' of true labels (default: parent folder name)")
    add(
        "--extensions",
        default=",".join(IMAGE_EXTENSIONS),
        help="comma-separated image extensions (case-insensitive); other files are skipped and counted",
    )
    add(
        "--review-threshold",
        type=float,
        default=None,
        metavar="T",
        help="flag predictions below this confidence (0 <= T <= 1) as low_confidence; default: the model card's "
        f"(chosen on validation data at export), {DEFAULT_REVIEW_THRESHOLD:g} for a card without one",
    )
    add(
        "--not-digit-threshold",
        type=float,
        default=None,
        metavar="T",
        help="flag images whose not-digit score is at least T (0 < T <= 1) as not_digit; default: the model card's",
    )
    add(
        "--max-batch-size",
        type=int,
        default=DEFAULT_MAX_BATCH_SIZE,
        help="files per group, and so images per model call",
    )
    add(
        "--max-error-rate",
        type=float,
        default=None,
        help="exit 4 when errors/matched exceeds this (0-1); default: only when every file failed",
    )
    add("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS, help="refuse larger images (decompression bombs)")
    add(
        "--max-file-bytes",
        type=int,
        default=DEFAULT_MAX_FILE_BYTES,
        help="larger files are read errors, refused from their size (no more than this is ever read)",
    )
    add(
        "--run-id",
        default=None,
        help="run id written to every row and the run= partition: a letter, then letters, digits, ._- "
        "(default: unique, r + UTC time + random, e.g. r20261122T020000Z-3fa9c2d1)",
    )
    add("--overwrite", action="store_true", help="replace an earlier run's outputs in --output")
    add("--runtime", choices=RUNTIME_CHOICES, default=AUTO_RUNTIME, help=RUNTIME_HELP)
    add(
        "--engine",
        choices=ENGINES,
        default=os.environ.get(ENGINE_ENV, AUTO_ENGINE),
        help="beam: the Beam job on --runner; inprocess: the same job in this process without Beam (local "
        "files, no Beam options, flat layout); auto: inprocess where it applies (and at most "
        f"$MNIST_BATCH_INPROCESS_MAX_FILES image files when that is set), else beam (env {ENGINE_ENV})",
    )
    actions.extend(add_production_arguments(p))
    return actions


def add_production_arguments(p: argparse.ArgumentParser) -> list[argparse.Action]:
    """Options of production runs (the run store; see deploy/README.md); returns their actions."""
    g = p.add_argument_group("production runs (deploy/README.md)")
    actions: list[argparse.Action] = []

    def add(*args, **kwargs) -> None:
        actions.append(g.add_argument(*args, **kwargs))

    add(
        "--layout",
        choices=LAYOUTS,
        default="flat",
        help="flat: tables directly in --output; runs: --output is a ROOT of Hive-partitioned tables "
        "ROOT/<table>/dt=DATE/run=ID/, each run committed with ROOT/_runs/dt=DATE/run=ID/_SUCCESS",
    )
    add("--run-date", default=None, help="dt= partition YYYY-MM-DD (--layout runs; default: today, UTC)")
    add(
        "--replace",
        action="store_true",
        help="replace a committed run with the same --run-id (--layout runs; without it that is refused)",
    )
    add(
        "--incremental",
        action="store_true",
        help="skip files that an earlier committed run under ROOT took on (needs --layout runs)",
    )
    add(
        "--incremental-key",
        choices=INCREMENTAL_KEYS,
        default="stat",
        help="what identifies a file already scored: stat = path+size+mtime, hash = path+sha256 of the content",
    )
    add(
        "--expect-model-id",
        default=None,
        metavar="SHA256",
        help="refuse to run (exit 2) unless the model's id (its sha256, or a prefix of 8+ characters) matches",
    )
    return actions


def config_from_args(args: argparse.Namespace) -> ScoreConfig:
    """argparse namespace -> ScoreConfig (a bad value becomes a MnistBatchError naming the field)."""

    extensions = tuple(e.strip().lower().lstrip(".") for e in args.extensions.split(",") if e.strip())
    try:
        return ScoreConfig(
            model=args.model,
            inputs=tuple(args.input),
            output=args.output,
            labels_csv=args.labels_csv,
            extensions=extensions,
            review_threshold=args.review_threshold,
            max_batch_size=args.max_batch_size,
            max_error_rate=args.max_error_rate,
            max_pixels=args.max_pixels,
            max_file_bytes=args.max_file_bytes,
            run_id=args.run_id,
            overwrite=args.overwrite,
            runtime=args.runtime,
            not_digit_threshold=args.not_digit_threshold,
        )
    except ValueError as exc:
        raise MnistBatchError(f"score: {name_flags(str(exc), option_strings())}") from exc


def option_strings() -> list[str]:
    """Every option string of the scoring options (``--model``, ``--input``, ...)."""
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    return [o for action in add_arguments(parser) for o in action.option_strings]


def check_beam_args(beam_args: Sequence[str], options=None) -> list[str]:
    """Refuses options that neither this command nor Beam knows (a typo would be silently ignored).

    ``options``: the ``PipelineOptions`` of ``beam_args`` when the caller built them already.

    With a runner that hands the job to a job server (``PortableRunner``, ``FlinkRunner``,
    ``SparkRunner``), an unknown option spelt as Beam spells its own (``--max_bundle_size``:
    underscores) is the job server's (Java) and goes to it unchecked; the caller says so.

    Returns:
      The options passed to the job server unchecked (``["--max_bundle_size"]``).

    Raises:
      MnistBatchError: naming the option, with the closest option of this command if any.
    """
    flags = [a for a in beam_args if a.startswith("--") and len(a) > 2]
    if not flags:
        return []
    from apache_beam.options.pipeline_options import PipelineOptions

    from mnist_batch.scoring.runners import JOB_SERVER_RUNNERS, runner_name

    # Beam's parser knows every spelling (--experiment for experiments, --no_use_public_ips, ...);
    # what it keeps only with retain_unknown_options is what no Beam option accepted.
    options = options if options is not None else PipelineOptions(list(beam_args))
    unknown = set(options.get_all_options(retain_unknown_options=True)) - set(
        options.get_all_options(retain_unknown_options=False)
    )
    own, unchecked = option_strings(), []
    to_job_server = runner_name(options) in JOB_SERVER_RUNNERS
    for flag in flags:
        name = flag[2:].split("=", 1)[0]
        if name.replace("-", "_") not in unknown:  # Beam reports --a-b as a_b
            continue
        if to_job_server and "-" not in name:
            unchecked.append(f"--{name}")
            continue
        guess = difflib.get_close_matches("--" + name, own, n=1)
        hint = f"did you mean {guess[0]}?" if guess else "not an option of mnist-batch score or of Beam"
        raise MnistBatchError(f"score: unknown option --{name} ({hint})")
    return unchecked


def run_options_from_args(args: argparse.Namespace) -> RunOptions:
    """argparse namespace -> :class:`RunOptions` (a bad combination becomes a MnistBatchError)."""
    layout = getattr(args, "layout", "flat")
    if layout == "flat" and any(getattr(args, name, None) for name in RUNS_ONLY):
        flags = [f"--{name.replace('_', '-')}" for name in RUNS_ONLY]
        raise MnistBatchError(f"score: {', '.join(flags[:-1])} and {flags[-1]} need --layout runs")
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
        raise MnistBatchError(f"score: {name_flags(str(exc), option_strings())}") from exc
