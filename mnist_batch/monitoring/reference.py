"""What each run is compared with: the model's held-out distribution, a chosen run, or the model's first run.

Order of preference for a run scored by model M:

1. ``--reference RUN_ID``: that committed run, for every run;
2. the ``reference`` of M's model card (written at export: predicted class mix and binned
   confidence on the test split), as copied into the run's summary at scoring
   (``summary["model_reference"]``): the verdict then does not depend on where the monitor runs
   or on whether the model's files are still there;
3. for summaries without that copy (scored before it existed): the card found beside the model
   path the summary records (``summary["model"]`` -> ``NAME.card.json``, any Beam filesystem) or
   given with ``--model-card``; it is used only when its ``model_id`` is M;
4. the first committed run of M (that run is then its own reference and is never flagged for drift).
   When M's card could not be found (or describes another model), this is a *fallback*: the
   ``reference`` check of each of M's runs alerts, with the reason. A card found without a
   held-out reference (exported before it existed) is no fallback: the first run is then the
   documented reference.

Runs whose summary is unreadable (:attr:`RunRecord.unreadable`) never become a reference.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence

import numpy as np

from mnist_batch.errors import MnistBatchError
from mnist_batch.metrics import CONFIDENCE_BINS
from mnist_batch.model_card import CARD_SUFFIX, ModelCard, ModelCardError, parse_card
from mnist_batch.monitoring.collect import RunRecord
from mnist_batch.runstore import fs


@dataclasses.dataclass(frozen=True)
class Reference:
    """A distribution to compare runs with.

    Attributes:
      kind: ``"card"`` (the model's held-out split) or ``"run"``.
      name: what the page shows, e.g. ``"model card of cnn 1a2b3c4d (test split, 2,000 images)"``.
      predicted_class_counts: int [C]; confidence_histogram: int [CONFIDENCE_BINS].
      error_rate, low_confidence_rate, blank_rate, accuracy: baselines of the jump checks (None: unknown).
      not_digit_rate: baseline of the not-digit rate (None: unknown, or a model without the check).
      run: the reference run's id (kind ``"run"``).
    """

    kind: str
    name: str
    predicted_class_counts: np.ndarray
    confidence_histogram: np.ndarray
    error_rate: float | None
    low_confidence_rate: float | None
    blank_rate: float | None
    accuracy: float | None
    run: str | None = None
    not_digit_rate: float | None = None
    fallback: str | None = None
    """Why the monitor fell back to the model's first run (its card not found); None otherwise."""

    @property
    def label(self) -> str:
        return f"run {self.run}" if self.kind == "run" else self.name


def from_run(record: RunRecord) -> Reference:
    return Reference(
        kind="run",
        name=f"run {record.run} (dt={record.dt}, {record.model_label})",
        predicted_class_counts=record.predicted_class_counts,
        confidence_histogram=record.confidence_histogram,
        error_rate=record.error_rate,
        low_confidence_rate=record.low_confidence_rate,
        blank_rate=record.blank_rate,
        accuracy=record.summary.get("accuracy"),
        run=record.run,
        not_digit_rate=record.not_digit_rate,
    )


def low_confidence_rate_from_histogram(hist: np.ndarray, threshold: float) -> float | None:
    """Share of confidences below ``threshold`` when it is a bin edge (0.9 = 18 of 20 bins); else None."""
    edge = threshold * CONFIDENCE_BINS
    total = hist.sum()
    if total <= 0 or abs(edge - round(edge)) > 1e-9:
        return None
    return float(hist[: round(edge)].sum() / total)


def from_card(card: ModelCard, review_threshold: float) -> Reference | None:
    """The card's held-out reference; None for cards exported before the field existed."""
    return from_held_out(
        card.reference, card.model_name, card.model_id, (card.test_metrics or {}).get("accuracy"), review_threshold
    )


def from_summary(record: RunRecord) -> Reference | None:
    """The held-out reference the run's summary carries (copied from the model card at scoring), if any."""
    ref = record.summary.get("model_reference")
    if not isinstance(ref, dict) or ref.get("model_id") != record.model_id:
        return None
    threshold = float(record.summary.get("review_threshold") or 0.9)
    return from_held_out(ref, record.model_name, record.model_id, ref.get("accuracy"), threshold)


def from_held_out(ref, model_name: str, model_id: str, accuracy, review_threshold: float) -> Reference | None:
    if not isinstance(ref, dict) or "predicted_class_counts" not in ref or "confidence_histogram" not in ref:
        return None
    hist = np.asarray(ref["confidence_histogram"], np.int64)
    low = low_confidence_rate_from_histogram(hist, review_threshold)
    if low is None:
        low = ref.get(f"low_confidence_rate_at_{review_threshold}")
    examples = int(ref.get("examples") or hist.sum())
    return Reference(
        kind="card",
        name=f"model card of {model_name} {model_id[:8]} ({ref.get('split', 'test')} split, {examples:,} images)",
        predicted_class_counts=np.asarray(ref["predicted_class_counts"], np.int64),
        confidence_histogram=hist,
        error_rate=0.0,  # held-out arrays: no file could fail to read or decode
        low_confidence_rate=low,
        blank_rate=0.0,
        accuracy=accuracy,
        not_digit_rate=ref.get("not_digit_rate"),
    )


def card_uri(model: str) -> str:
    """``gs://b/m/cnn.keras`` -> ``gs://b/m/cnn.card.json`` (string work: keeps ``scheme://``)."""
    stem = model[: -len(".keras")] if model.endswith(".keras") else model
    return stem + CARD_SUFFIX


def read_card_uri(uri: str) -> ModelCard:
    try:
        text = fs.read_text(uri)
    except Exception as exc:  # any filesystem's error: the card is not readable
        raise ModelCardError(f"{uri}: unreadable model card ({exc})") from exc
    return parse_card(text, where=uri)


def load_cards(records: Iterable[RunRecord], extra_cards: Sequence[str] = ()) -> tuple[dict[str, ModelCard], list[str]]:
    """model_id -> card, from ``--model-card`` paths and the model paths the summaries record; plus notes.

    A ``--model-card`` that cannot be read is an error; a card missing beside a recorded model path
    is a note on the page (the model's first run is then the reference).
    """
    cards: dict[str, ModelCard] = {}
    notes: list[str] = []
    for uri in extra_cards:
        try:
            card = read_card_uri(uri)
        except ModelCardError as exc:
            raise MnistBatchError(f"monitor: --model-card {exc}") from exc
        cards[card.model_id] = card
    tried: set[str] = set()
    for record in records:
        model = record.summary.get("model")
        if record.unreadable or from_summary(record) is not None:
            continue  # nothing to trust, or the reference travels with the run
        if record.model_id in cards or not model or str(model) in tried:
            continue
        tried.add(str(model))
        uri = card_uri(str(model))
        try:
            card = read_card_uri(uri)
        except ModelCardError as exc:
            notes.append(f"no model card for {record.model_label}: {exc}")
            continue
        if card.model_id == record.model_id:
            cards[card.model_id] = card
        else:
            notes.append(f"{uri} describes model {card.model_id[:8]}, not {record.model_id[:8]} (model replaced since)")
    return cards, notes


def assign_references(
    records: Sequence[RunRecord],
    cards: dict[str, ModelCard],
    reference_run: str | None = None,
) -> list[Reference]:
    """The reference of every record (same order); unreadable runs get :data:`NO_REFERENCE`."""
    if reference_run is not None:
        chosen = [r for r in records if r.run == reference_run]
        if not chosen:
            raise MnistBatchError(f"monitor: --reference {reference_run}: no committed run with that id")
        if chosen[-1].unreadable:
            raise MnistBatchError(f"monitor: --reference {reference_run}: {chosen[-1].unreadable}")
        ref = from_run(chosen[-1])
        return [NO_REFERENCE if r.unreadable else ref for r in records]
    out: list[Reference] = []
    by_model: dict[str, Reference] = {}
    for record in records:
        if record.unreadable:
            out.append(NO_REFERENCE)
            continue
        stored = from_summary(record)
        if stored is not None:
            out.append(stored)
            continue
        ref = by_model.get(record.model_id)
        if ref is None:
            card = cards.get(record.model_id)
            threshold = float(record.summary.get("review_threshold") or 0.9)
            ref = from_card(card, threshold) if card is not None else None
            if ref is None:
                ref = from_run(record)
                if card is None:
                    where = record.summary.get("model") or "no model path recorded"
                    ref = dataclasses.replace(
                        ref,
                        fallback=f"no model card found for {record.model_label} ({where}) and none stored in the "
                        f"summary: compared with the model's first run {record.run} instead (--model-card PATH)",
                    )
            by_model[record.model_id] = ref
        out.append(ref)
    return out


NO_REFERENCE = Reference(
    kind="none",
    name="none (unreadable summary)",
    predicted_class_counts=np.zeros(0, np.int64),
    confidence_histogram=np.zeros(CONFIDENCE_BINS, np.int64),
    error_rate=None,
    low_confidence_rate=None,
    blank_rate=None,
    accuracy=None,
)
"""What an unreadable run is compared with: nothing."""
