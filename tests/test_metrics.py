"""Metrics against hand-computed values."""

import math

import numpy as np
import pytest

from mnist_batch import metrics


def test_confusion_and_per_class_by_hand():
    y_true = [0, 0, 0, 1, 1, 2]
    y_pred = [0, 0, 1, 1, 2, 2]
    cm = metrics.confusion_matrix(y_true, y_pred, 3)
    np.testing.assert_array_equal(cm, [[2, 1, 0], [0, 1, 1], [0, 0, 1]])
    stats = metrics.per_class(cm)
    np.testing.assert_array_equal(stats["support"], [3, 2, 1])
    np.testing.assert_allclose(stats["precision"], [1.0, 0.5, 0.5])
    np.testing.assert_allclose(stats["recall"], [2 / 3, 0.5, 1.0])
    np.testing.assert_allclose(stats["f1"], [0.8, 0.5, 2 / 3])
    assert metrics.accuracy(cm) == pytest.approx(4 / 6)
    assert metrics.macro_f1(cm) == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)


def test_per_class_zero_division_and_absent_classes():
    cm = metrics.confusion_matrix([0, 0], [0, 1], 4)
    stats = metrics.per_class(cm)
    assert stats["precision"][1] == 0 and stats["recall"][1] == 0
    # Only class 0 occurs in the labels: macro-F1 averages over it alone (class 1 is only predicted,
    # classes 2 and 3 never occur); averaging in their zeros misread partial-class runs (issue 23).
    assert metrics.macro_f1(cm) == pytest.approx(2 / 3)
    np.testing.assert_array_equal(metrics.present_classes(cm), [True, False, False, False])


def test_macro_f1_of_a_run_holding_only_some_classes_is_theirs():
    """Issue 23's case: two classes in the labels, near-perfect on both, a few images predicted elsewhere."""
    y_true = np.r_[np.zeros(500, int), np.ones(500, int)]
    y_pred = y_true.copy()
    y_pred[:3] = 7
    cm = metrics.confusion_matrix(y_true, y_pred, 10)
    f1 = metrics.per_class(cm)["f1"]
    assert metrics.macro_f1(cm) == pytest.approx((f1[0] + f1[1]) / 2) and metrics.macro_f1(cm) > 0.99
    assert np.isnan(metrics.macro_f1(np.zeros((3, 3), int)))


def test_confusion_rejects_out_of_range():
    with pytest.raises(ValueError, match="y_pred has values outside"):
        metrics.confusion_matrix([0], [3], 3)


def test_top_k_and_log_loss_by_hand():
    p = np.array([[0.6, 0.3, 0.1], [0.2, 0.5, 0.3], [0.1, 0.2, 0.7]])
    y = np.array([1, 2, 0])
    assert metrics.top_k_accuracy(y, p, k=1) == 0
    assert metrics.top_k_accuracy(y, p, k=2) == pytest.approx(2 / 3)
    assert metrics.top_k_accuracy(y, p, k=3) == 1
    assert metrics.log_loss(y, p) == pytest.approx(-(math.log(0.3) + math.log(0.3) + math.log(0.1)) / 3)


def test_ece_by_hand():
    # Two bins used (of 10): (0.5, 0.6] holds 0.55, 0.55 with one right -> gap |0.5 - 0.55| = 0.05;
    # (0.9, 1.0] holds 0.95, 0.95, 0.95, 0.95 all right -> gap 0.05. ECE = 0.05.
    conf = np.array([0.55, 0.55, 0.95, 0.95, 0.95, 0.95])
    correct = np.array([1, 0, 1, 1, 1, 1], dtype=bool)
    assert metrics.expected_calibration_error(conf, correct, n_bins=10) == pytest.approx(0.05)
    bins = metrics.reliability_bins(conf, correct, n_bins=10)
    assert bins["count"].tolist() == [0, 0, 0, 0, 0, 2, 0, 0, 0, 4]
    assert bins["accuracy"][5] == 0.5 and math.isnan(bins["accuracy"][0])
    # A bin edge belongs to the lower bin: 0.6 is in (0.5, 0.6].
    assert metrics.reliability_bins([0.6], [True], n_bins=10)["count"][5] == 1


def test_perfect_calibration_has_zero_ece():
    conf = np.array([0.75] * 4)
    correct = np.array([1, 1, 1, 0], dtype=bool)
    assert metrics.expected_calibration_error(conf, correct) == pytest.approx(0.0)


def test_error_rate_at_coverage():
    conf = np.array([0.99, 0.98, 0.97, 0.60, 0.50])
    correct = np.array([1, 1, 0, 0, 1], dtype=bool)
    out = metrics.error_rate_at_coverage(conf, correct, coverage=0.6)
    assert out["kept"] == 3 and out["threshold"] == 0.97
    assert out["error_rate"] == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="coverage"):
        metrics.error_rate_at_coverage(conf, correct, coverage=0)


def test_mcnemar_by_hand():
    # 10 discordant pairs: A alone right on 9, B alone right on 1.
    a = np.array([1] * 9 + [0] + [1] * 20, dtype=bool)
    b = np.array([0] * 9 + [1] + [1] * 20, dtype=bool)
    out = metrics.mcnemar(a, b)
    assert (out["a_only"], out["b_only"]) == (9, 1)
    # Exact: 2 * (C(10,0) + C(10,1)) / 2^10 = 22 / 1024.
    assert out["p_value"] == pytest.approx(22 / 1024)
    assert out["statistic"] == pytest.approx((8 - 1) ** 2 / 10)
    same = metrics.mcnemar(a, a)
    assert same["p_value"] == 1.0


def test_mcnemar_balanced_disagreement_is_not_significant():
    a = np.array([1, 0] * 10, dtype=bool)
    b = ~a
    assert metrics.mcnemar(a, b)["p_value"] == pytest.approx(1.0)


def test_per_class_table_rows():
    cm = metrics.confusion_matrix([0, 0, 1], [0, 1, 1], 2)
    rows = metrics.per_class_table(metrics.per_class(cm), ["cat", "dog"])
    assert rows == [
        {"label": 0, "class_name": "cat", "support": 2, "precision": 1.0, "recall": 0.5, "f1": pytest.approx(2 / 3)},
        {"label": 1, "class_name": "dog", "support": 1, "precision": 0.5, "recall": 1.0, "f1": pytest.approx(2 / 3)},
    ]
    assert all(type(r["support"]) is int and type(r["f1"]) is float for r in rows)


def test_confidence_histogram_and_population_stability_index():
    hist = metrics.confidence_histogram(np.array([0.0, 0.049, 0.05, 0.5, 0.999, 1.0]))
    assert hist.shape == (metrics.CONFIDENCE_BINS,) and hist.sum() == 6
    assert hist[0] == 2 and hist[1] == 1 and hist[10] == 1 and hist[-1] == 2
    same = np.array([10, 20, 30, 40])
    assert metrics.population_stability_index(same, same * 3) == pytest.approx(0.0)
    shifted = metrics.population_stability_index(same, same[::-1])
    expected = sum((a - e) * np.log(a / e) for e, a in zip(same / 100, same[::-1] / 100, strict=True))
    assert shifted == pytest.approx(expected) and shifted > 0.25
    assert metrics.population_stability_index(same, np.zeros(4)) == 0.0
    assert np.isfinite(metrics.population_stability_index([5, 0], [0, 5]))
