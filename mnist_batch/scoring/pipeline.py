"""Wires the scoring pipeline (``build_pipeline``); :mod:`mnist_batch.scoring.launch` runs it.

Graph (every step named; composites are PTransforms)::

    MatchImageFiles: local: ListLocalFiles (list + classify + ReadableFile, one step per file);
      remote: MatchAll -> ClassifyMatches -> ReadMatches; then [DropDuplicatePaths]
      -> Reshuffle (every runner but the single-process in-memory DirectRunner)
    DecodeImages: GroupFiles (--max-batch-size files a group) -> read + decode + preprocess each file
      -> one ImageGroup (N keys, uint8 [N, 28, 28]) per group | one error row per failed file
    ScoreImages: RunInference(DigitModelHandler.with_no_batching()): one model call per group on the
      chosen runtime (keras or the card's LiteRT artifact),
      with exception handling -> a failed group becomes one error row per file
    FormatPredictions -> predictions as pyarrow.Table chunks (a group's rows in one numpy step)
    ComputeStats: PredictionStats, CountMatched, CountOutcomes (errors by stage + skipped by reason)
      (combiners) -> AssembleStats -> stats -> confusion rows, per_class rows
    launch.launch: WritePredictions, WriteErrors, ... (shards into staging) -> CommitRun
"""

from __future__ import annotations

import dataclasses

import apache_beam as beam

from mnist_batch.config import ScoreConfig
from mnist_batch.constants import COL_MODEL_ID, COL_RUN_ID
from mnist_batch.model_card import ModelCard
from mnist_batch.models import ScoringModel, check_model, choose_runtime
from mnist_batch.review import review_threshold_for
from mnist_batch.runstore.run_ids import default_run_id
from mnist_batch.scoring import decode_pool
from mnist_batch.scoring.counters import PROGRESS_LISTING
from mnist_batch.scoring.decode import DecodeGroupFn, DecodeImages
from mnist_batch.scoring.format import FormatGroupsFn, ScoreImages
from mnist_batch.scoring.handler import DigitModelHandler, group_inference_fn
from mnist_batch.scoring.labels import read_labels_csv
from mnist_batch.scoring.matching import MatchImageFiles, needs_reshuffle
from mnist_batch.scoring.read import check_patterns_match, expand_inputs
from mnist_batch.scoring.runners import runs_in_one_process
from mnist_batch.scoring.stats import ComputeStats
from mnist_batch.scoring.storage_fn import storage_settings
from mnist_batch.trust import threshold_for


@dataclasses.dataclass(frozen=True)
class ScoringOutputs:
    """The named PCollections ``build_pipeline`` returns (nothing written or run yet)."""

    predictions: beam.PCollection
    errors: beam.PCollection
    skipped: beam.PCollection
    confusion: beam.PCollection
    per_class: beam.PCollection
    stats: beam.PCollection
    card: ModelCard
    scorer: ScoringModel
    """The runtime that scores, its file and that file's sha256 (every row's model_id)."""
    run_id: str
    manifest: beam.PCollection | None = None
    """Manifest rows of the files taken on (only with a ``select_files`` step, as production runs have)."""


def count_for_progress(p: beam.Pipeline, patterns: list[str], config: ScoreConfig) -> beam.PCollection:
    """The number of image files, for the progress line's share done and ETA: one element.

    The files are listed a second time, on their own, and only counted. Counting the scoring
    branch's own listing would make the in-memory runner hold the whole listing until the count
    is known (the count is a side input of decoding): +180 MiB at 200,000 files, growing with
    the run. A second listing costs a few seconds per million local files and no memory.
    Incremental runs have no total (the files scored before are dropped later, in the job).
    """
    listed = p | PROGRESS_LISTING >> MatchImageFiles(
        patterns, config.extensions, reshuffle=False, output_dirs=(config.output,)
    )
    return listed["images"] | "CountForProgress" >> beam.combiners.Count.Globally().without_defaults()


def decode_helpers(options) -> int:
    """Helper processes that decode while the model runs: only for the single-process runner
    (other runners already run a process per core), one on two or more cores (measured:
    docs/benchmarks.md, "Both cores")."""
    if not runs_in_one_process(options):
        return 0
    return decode_pool.helper_count()


def decode_group_fn(
    p: beam.Pipeline, config: ScoreConfig, card: ModelCard, run_id: str, progress_dir: str | None
) -> DecodeGroupFn:
    """The decode step's DoFn: labels, limits, progress and the decode helper as the run asks."""
    return DecodeGroupFn(
        card.class_names,
        run_id,
        labels_csv=config.labels_csv,
        max_pixels=config.max_pixels,
        max_file_bytes=config.max_file_bytes,
        progress=config.progress,
        progress_dir=progress_dir,
        storage_settings=storage_settings(p),
        decode_helpers=decode_helpers(getattr(p, "options", None)),
    )


def score_images(
    config: ScoreConfig, card: ModelCard, scorer: ScoringModel, run_id: str, settings: dict | None = None
) -> ScoreImages:
    """RunInference on the checked bytes of the chosen runtime, one call per group, rows formatted per chunk;
    ``settings``: the pipeline's storage settings (the model may be on the bucket)."""
    handler = DigitModelHandler(
        scorer.uri,
        model_id=scorer.model_id,  # workers load only the bytes that were checked
        runtime=scorer.runtime,
        inference_fn=group_inference_fn,
        storage_settings=settings,
    )
    format_fn = FormatGroupsFn(
        card.class_names,
        card.model_id,
        run_id,
        review_threshold_for(card.review_threshold(), config.review_threshold)[0],
        runtime_model_id=scorer.model_id,
        not_digit_threshold=threshold_for(card.not_digit_check(), config.not_digit_threshold)[0],
    )
    return ScoreImages(handler, format_fn, run_id)


def build_pipeline(
    p: beam.Pipeline,
    config: ScoreConfig,
    *,
    card: ModelCard | None = None,
    scorer: ScoringModel | None = None,
    check_inputs: bool = True,
    select_files: beam.PTransform | None = None,
    progress_dir: str | None = None,
) -> ScoringOutputs:
    """Adds the scoring graph to ``p`` and returns its named outputs; does not run or write.

    Before any step is added, the model is checked against its card (:func:`check_model`),
    the labels CSV is parsed, and every input pattern must match at least one file.

    Args:
      p: the pipeline (``TestPipeline`` in tests).
      config: the run's settings.
      card: skip checking the model here when the caller already checked it.
      scorer: the runtime that scores (:func:`choose_runtime` for ``config.runtime`` when None).
      check_inputs: list the first match of each pattern up front (fail fast).
      select_files: optional transform of ``{"images", "skipped"}`` to the same dict, applied
        right after matching, returning also ``"manifest"`` rows (production runs:
        :class:`mnist_batch.runstore.history.SelectFiles` drops files scored before).
      progress_dir: where the workers keep their files done for the launcher's progress line
        (a job on a cluster: ``<staging>/_progress``, :class:`~mnist_batch.scoring.progress.StagedProgress`).
    """
    card = card or check_model(config.model, load=False)
    scorer = scorer or choose_runtime(config.model, card, config.runtime)
    if config.labels_csv:
        read_labels_csv(config.labels_csv, card.class_names)  # fail now, not on a worker
    patterns = expand_inputs(config.inputs)
    if check_inputs:
        check_patterns_match(patterns)
    run_id = config.run_id or default_run_id()
    files = p | "MatchImageFiles" >> MatchImageFiles(
        patterns,
        config.extensions,
        reshuffle=needs_reshuffle(getattr(p, "options", None)),
        output_dirs=(config.output,),
    )
    if select_files is not None:
        files = files | "SelectFiles" >> select_files
    total = None
    every_file = select_files is None or getattr(select_files, "keeps_every_file", False)
    if config.progress and every_file and runs_in_one_process(getattr(p, "options", None)):
        total = count_for_progress(p, patterns, config)  # one worker sees every file: it can tell the ETA
    decode_fn = decode_group_fn(p, config, card, run_id, progress_dir)
    # a group of files is one model call
    decoded = files["images"] | "DecodeImages" >> DecodeImages(decode_fn, total, group_size=config.max_batch_size)
    scored = decoded["images"] | "ScoreImages" >> score_images(config, card, scorer, run_id, storage_settings(p))
    errors = (decoded["errors"], scored["errors"]) | "MergeErrors" >> beam.Flatten()
    counted = {
        "predictions": scored["predictions"],
        "images": files["images"],
        "errors": errors,
        "skipped": files["skipped"],
    }
    if files.get("already_scored") is not None:
        counted["already_scored"] = files["already_scored"]
    stats = counted | "ComputeStats" >> ComputeStats(card.class_names)
    ids = {COL_RUN_ID: run_id, COL_MODEL_ID: card.model_id}  # the join keys of every table

    def stamped(rows, name):
        return rows | name >> beam.Map(lambda row, extra: {**row, **extra}, ids)

    manifest = files.get("manifest")
    return ScoringOutputs(
        predictions=scored["predictions"],
        errors=stamped(errors, "StampErrors"),
        skipped=files["skipped"],
        confusion=stamped(stats["confusion"], "StampConfusion"),
        per_class=stamped(stats["per_class"], "StampPerClass"),
        stats=stats["stats"],
        card=card,
        scorer=scorer,
        run_id=run_id,
        manifest=stamped(manifest, "StampManifest") if manifest is not None else None,
    )
