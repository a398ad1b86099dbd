"""``evaluate(models, dataset, split, output)``: every model on one split, metrics and comparison written."""

from __future__ import annotations

import dataclasses
import datetime
import pathlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from mnist_batch import jsonfmt
from mnist_batch.constants import (
    AUTO_RUNTIME,
)
from mnist_batch.errors import MnistBatchError
from mnist_batch.evaluation import summarize
from mnist_batch.evaluation.infer import Predictions, predict_arrays, predict_folder
from mnist_batch.model_card import ModelCard
from mnist_batch.models import check_model, choose_runtime
from mnist_batch.review import review_threshold_for
from mnist_batch.runstore.run_ids import default_run_id
from mnist_batch.trust import flag, threshold_for

SUMMARY_FILE = "evaluation.json"
OUTPUT_FILES = ("metrics.parquet", "per_class.parquet", "confusion.parquet", "predictions.parquet", "comparison.md")


class EvaluationError(MnistBatchError, ValueError):
    """Models that cannot be compared on the data (class names differ, output folder in use, ...)."""


@dataclasses.dataclass(frozen=True)
class DataToEvaluate:
    """The split to evaluate: arrays (``images`` set) or a folder of images (``folder`` set)."""

    name: str
    split: str
    class_names: tuple[str, ...]
    images: np.ndarray | None = None
    labels: np.ndarray | None = None
    folder: str | None = None


def resolve_data(spec: str, split: str, first_card: ModelCard, class_names: str | None = None) -> DataToEvaluate:
    """``folder:DIR`` or a plain directory -> scored as files; any other spec -> arrays.

    A folder with a ``DIR/<split>/`` subfolder is read from there. Folder class names are the
    first model's (scoring maps folder names to the card's classes).
    """
    from mnist_batch.data import image_folder, load_dataset
    from mnist_batch.data.class_names import parse_class_names, with_class_names

    directory = image_folder(spec)
    if directory is not None:
        path = pathlib.Path(directory)
        if not path.is_dir():
            raise EvaluationError(f"{directory}: no such directory")
        if (path / split).is_dir():
            path = path / split
        names = parse_class_names(class_names) if class_names else first_card.class_names
        return DataToEvaluate(spec, split, names, folder=str(path))
    dataset = load_dataset(spec)
    if class_names:
        dataset = with_class_names(dataset, parse_class_names(class_names))
    part = dataset.split(split)
    return DataToEvaluate(dataset.name, split, dataset.class_names, images=part.images, labels=part.labels)


def display_names(models: Sequence[str]) -> list[str]:
    """Short unique names: the file stem, or ``parent/stem`` where stems repeat."""
    stems = [pathlib.Path(m).stem for m in models]
    names = [
        s if stems.count(s) == 1 else f"{pathlib.Path(m).parent.name}/{s}" for m, s in zip(models, stems, strict=True)
    ]
    return [n if names.count(n) == 1 else f"{n}#{i + 1}" for i, n in enumerate(names)]


TRUST_FILES = ("trust.parquet", "trust.md", "trust.png")


def earlier_outputs(output: pathlib.Path) -> list[pathlib.Path]:
    """The files an earlier evaluation (and its report) left in ``output``: its tables, summary, trust
    report, ``report.html`` and every model's report PNGs (``<model>_confusion.png`` ...)."""
    from mnist_batch.report.build import PLOT_FILES, REPORT_FILE

    if not output.is_dir():
        return []
    named = {*OUTPUT_FILES, SUMMARY_FILE, *TRUST_FILES, REPORT_FILE}
    return sorted(p for p in output.iterdir() if p.is_file() and (p.name in named or p.name.endswith(PLOT_FILES)))


def prepare_output(output: pathlib.Path, overwrite: bool) -> None:
    """Creates ``output``; refuses to mix with an earlier evaluation unless ``overwrite``, which removes
    every file the earlier one wrote (so its report never lists a model this one did not evaluate)."""
    tables = [f for f in (*OUTPUT_FILES, SUMMARY_FILE) if (output / f).exists()]
    if tables and not overwrite:
        raise EvaluationError(f"--output {output}: holds an earlier evaluation ({tables[0]}); pass --overwrite")
    if overwrite:
        for path in earlier_outputs(output):
            path.unlink()
    output.mkdir(parents=True, exist_ok=True)


def evaluate(
    models: Sequence[str],
    dataset: str,
    split: str,
    output: str | pathlib.Path,
    *,
    overwrite: bool = False,
    class_names: str | None = None,
    runtime: str = AUTO_RUNTIME,
    not_digit_threshold: float | None = None,
    trust_report: bool = False,
    review_threshold: float | None = None,
) -> dict[str, Any]:
    """Evaluates every model on ``dataset``'s ``split`` and writes the tables under ``output``.

    Args:
      models: ``.keras`` files, each with its model card; the first is the reference.
      dataset: data set spec (see :func:`mnist_batch.data.load_dataset`), ``folder:DIR`` or a directory.
      split: ``train``, ``validation`` or ``test``.
      output: output folder.
      overwrite: replace an earlier evaluation in ``output``.
      class_names: ``--class-names`` (comma list or file) overriding the data set's names.
      runtime: what runs each model (``auto``, ``keras``, ``litert``; :func:`choose_runtime`).
      not_digit_threshold: overrides each card's not-digit threshold (None: the card's).
      review_threshold: overrides each card's review threshold (None: the card's, 0.9 without one).
      trust_report: also measure every model on generated damaged digits and non-digits
        (:mod:`mnist_batch.evaluation.trust`): ``trust.parquet``, ``trust.md``, ``trust.png``.

    Returns:
      The summary written to ``output/evaluation.json`` (data, class names, one entry per model).

    Raises:
      EvaluationError, DataError, ModelCardError, InferenceError: one-line user errors.
    """
    if not models:
        raise EvaluationError("give at least one --model")
    cards = [check_model(m, load=False) for m in models]  # the model against its card, once, before any image
    scorers = [choose_runtime(m, card, runtime) for m, card in zip(models, cards, strict=True)]
    data = resolve_data(dataset, split, cards[0], class_names)
    if trust_report and data.folder is not None:
        raise EvaluationError(f"--trust: {dataset} is a folder of files; the trust sets are made from array data sets")
    check_classes(models, cards, data)
    thresholds = run_thresholds(models, cards, not_digit_threshold, review_threshold)
    output = pathlib.Path(output)
    prepare_output(output, overwrite)
    names = display_names(models)
    scored_at = datetime.datetime.now(datetime.UTC)
    run_id = "e" + default_run_id(scored_at)[1:]  # e20261201T...: an evaluation, not a scoring run
    results = predict_all(models, scorers, data)

    per_model = [summarize.model_metrics(r.labels, r.probabilities) for r in results]
    paired = summarize.versus_first([r.probabilities.argmax(axis=1) == r.labels for r in results])
    metric_rows, class_rows, cell_rows, pred_rows = [], [], [], []
    for name, model, card, scorer, r, m, pair, threshold in zip(
        names, models, cards, scorers, results, per_model, paired, thresholds, strict=True
    ):
        extra = {**flag_rates(r, threshold), **pair}
        metric_rows.append(metric_row(name, model, card, scorer, data, split, r, m, extra))
        class_rows += summarize.per_class_rows(name, data.class_names, m["per_class"])
        cell_rows += summarize.confusion_rows(name, data.class_names, m["confusion"])
        pred_rows.append(
            prediction_table(name, r, data.class_names, (card.model_id, scorer.model_id), run_id, scored_at, threshold)
        )
    write_tables(output, data, metric_rows, class_rows, cell_rows, pred_rows)
    summary = {
        "kind": "evaluation",
        "dataset": data.name,
        "split": split,
        "source": "scoring pipeline (files)" if data.folder is not None else "arrays (tf.data)",
        "class_names": list(data.class_names),
        "models": metric_rows,
        "left_out": results[0].left_out,
    }
    if trust_report:
        summary["trust"] = write_trust(output, data, names, scorers, thresholds)
    (output / SUMMARY_FILE).write_text(jsonfmt.dumps(summary) + "\n", encoding="utf-8")
    return summary


def write_tables(output: pathlib.Path, data: DataToEvaluate, metric_rows, class_rows, cell_rows, pred_rows) -> None:
    """``metrics``, ``per_class``, ``confusion`` and ``predictions.parquet``, and ``comparison.md``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    for table, rows in (("metrics", metric_rows), ("per_class", class_rows), ("confusion", cell_rows)):
        pq.write_table(pa.Table.from_pylist(rows), output / f"{table}.parquet")
    pq.write_table(pa.concat_tables(pred_rows), output / "predictions.parquet")
    (output / "comparison.md").write_text(comparison_markdown(metric_rows, data), encoding="utf-8")


def metric_row(name, model, card: ModelCard, scorer, data: DataToEvaluate, split: str, r: Predictions, m, extra):
    """One model's row of ``metrics.parquet``: identity, runtime, metrics ``m``, speed and ``extra``."""
    return {
        "model": name,
        "model_path": str(model),
        "model_name": card.model_name,
        "model_id": card.model_id,
        "runtime": scorer.runtime,
        "runtime_model_id": scorer.model_id,
        "dataset": data.name,
        "split": split,
        **{k: v for k, v in m.items() if k not in ("confusion", "per_class")},
        "images_per_s": r.images_per_s,
        **extra,
    }


def check_classes(models: Sequence[str], cards: Sequence[ModelCard], data: DataToEvaluate) -> None:
    """Every model has the data's classes, in order.

    Raises:
      EvaluationError: naming the first model that differs.
    """
    for model, card in zip(models, cards, strict=True):
        if tuple(card.class_names) != tuple(data.class_names):
            raise EvaluationError(
                f"{model}: model classes ({', '.join(card.class_names[:4])}, ...) differ from {data.name}'s "
                f"({', '.join(data.class_names[:4])}, ...); use the data set the model was trained on "
                "(a classes.txt beside the data, or fashion-mnist for Fashion-MNIST)"
            )


def predict_all(models: Sequence[str], scorers, data: DataToEvaluate) -> list[Predictions]:
    """Every model's predictions on the split (arrays in-process, folders through the scoring pipeline).

    Raises:
      EvaluationError: on a folder, the models scored different sets of files.
    """
    results: list[Predictions] = []
    for model, scorer in zip(models, scorers, strict=True):
        if data.folder is not None:
            results.append(predict_folder(model, data.folder, data.class_names, scorer.runtime))
        else:
            results.append(predict_arrays(scorer, data.images, data.labels, len(data.class_names)))
    if data.folder is not None and any(r.paths != results[0].paths for r in results[1:]):
        raise EvaluationError(f"{data.folder}: models scored different sets of files; cannot pair them")
    return results


def run_thresholds(models, cards, not_digit: float | None, review: float | None) -> list[tuple[float | None, float]]:
    """``(not-digit threshold, review threshold)`` per model: the overrides, else each card's."""
    return [
        (
            threshold_for(card.not_digit_check(m), not_digit)[0],
            review_threshold_for(card.review_threshold(m), review)[0],
        )
        for m, card in zip(models, cards, strict=True)
    ]


def flag_rates(r: Predictions, thresholds: tuple[float | None, float]) -> dict[str, Any]:
    """``not_digit_threshold``, ``review_threshold``, and the shares of the split flagged not a digit,
    flagged at all (that or below the review threshold), and wrong but unflagged (None values without
    a check). ``thresholds``: (not-digit, review)."""
    threshold, review_at = thresholds
    n = len(r.labels)
    not_digit = flag(r.not_digit_score, threshold)
    low = r.probabilities.max(axis=1) < review_at if n else np.zeros(0, bool)
    flagged = low | not_digit if not_digit is not None else low
    wrong = r.probabilities.argmax(axis=1) != r.labels if n else np.zeros(0, bool)
    return {
        "review_threshold": review_at,
        "not_digit_threshold": threshold,
        "not_digit_rate": float(not_digit.mean()) if not_digit is not None and n else None,
        "flagged_rate": float(flagged.mean()) if n else None,
        "wrong_unflagged_rate": float((wrong & ~flagged).mean()) if n else None,
    }


def write_trust(output: pathlib.Path, data: DataToEvaluate, names, scorers, thresholds) -> list[dict[str, Any]]:
    """The trust report of every model (:mod:`mnist_batch.evaluation.trust`); its rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from mnist_batch.evaluation import trust
    from mnist_batch.models import Predictor

    sets = trust.trust_sets(data.images, data.labels, fashion=trust.fashion_images())
    rows, texts = [], []
    for i, (name, scorer, (threshold, review_at)) in enumerate(zip(names, scorers, thresholds, strict=True)):
        predictor = Predictor.load(scorer.uri, scorer.model_id, runtime=scorer.runtime)
        measured = trust.measure(
            predictor,
            sets,
            len(data.class_names),
            review_threshold=review_at,
            not_digit_threshold=threshold,
        )
        rows += [{"model": name, **row} for row in measured]
        texts.append(trust.markdown(measured, name, (review_at, threshold)))
        if i == 0:
            trust.plot(measured, output / "trust.png", f"{name}: flagged vs wrong and unflagged, per set")
    pq.write_table(pa.Table.from_pylist(rows), output / "trust.parquet")
    (output / "trust.md").write_text("\n".join(texts), encoding="utf-8")
    return rows


def prediction_table(
    name: str,
    r: Predictions,
    class_names: Sequence[str],
    ids: tuple[str, str],
    run_id: str,
    scored_at,
    thresholds: tuple[float | None, float] = (None, 0.9),
):
    """Per-image rows (``predictions.parquet``): the scoring row plus the model's name, the index and
    the 28x28 pixels for array inputs (:data:`~mnist_batch.tables.EVALUATION_PREDICTIONS_SCHEMA`);
    ``ids``: (the model's id, the id of the runtime file that scored); ``thresholds``: (not-digit, review)."""
    import pyarrow as pa

    from mnist_batch.tables import EVALUATION_PREDICTIONS_SCHEMA, prediction_columns

    n = len(r.labels)
    columns = prediction_columns(
        r.paths if r.paths is not None else [None] * n,
        [int(label) for label in r.labels],
        r.blank if r.blank is not None else np.zeros(n, bool),
        r.outputs if r.outputs is not None else r.probabilities,
        class_names=class_names,
        not_digit_threshold=thresholds[0],
        model_id=ids[0],
        runtime_model_id=ids[1],
        run_id=run_id,
        review_threshold=thresholds[1],
        scored_at=scored_at,
    )
    columns["model"] = pa.array([name] * n, pa.string())
    columns["index"] = pa.array(np.arange(n))
    columns["pixels"] = pa.array([bytes(p.tobytes()) for p in r.pixels] if r.pixels is not None else [None] * n)
    arrays = [columns[f.name].cast(f.type) for f in EVALUATION_PREDICTIONS_SCHEMA]
    return pa.Table.from_arrays(arrays, schema=EVALUATION_PREDICTIONS_SCHEMA)


def comparison_markdown(rows: Sequence[dict[str, Any]], data: DataToEvaluate) -> str:
    """The comparison table (one row per model) and one significance sentence per model."""
    n = rows[0]["examples"]
    lines = [
        f"# Evaluation on {data.name} [{data.split}] ({n:,} images)",
        "",
        "| model | accuracy | macro-F1 | top-2 | log-loss | ECE (15 bins) | error @ 98 % coverage | images/s "
        "| McNemar p vs first |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        p = "—" if r["mcnemar_p"] is None else f"{r['mcnemar_p']:.3g}"
        lines.append(
            f"| {r['model']} | {r['accuracy']:.4f} | {r['macro_f1']:.4f} | {r['top2_accuracy']:.4f} "
            f"| {r['log_loss']:.4f} | {r['ece']:.4f} | {r['error_rate_at_coverage']:.4f} "
            f"| {r['images_per_s']:,.0f} | {p} |"
        )
    lines += ["", "Error @ 98 % coverage: the error rate left when the 2 % least confident images go to review."]
    if len(rows) > 1:
        lines += ["", "Paired significance (McNemar's exact test on the images the two models disagree on):", ""]
        first = rows[0]
        for r in rows[1:]:
            note = summarize.significance_note(r["model"], first["model"], r, r["accuracy"], first["accuracy"])
            lines.append(f"- {note}")
    return "\n".join(lines) + "\n"
