import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from core import metrics as M


def test_auroc_known_cases() -> None:
    y = np.array([0, 0, 1, 1])
    assert M.auroc(y, np.array([0.1, 0.2, 0.8, 0.9])) == 1.0
    assert M.auroc(y, np.array([0.9, 0.8, 0.2, 0.1])) == 0.0
    assert M.auroc(y, np.array([0.1, 0.4, 0.35, 0.8])) == 0.75
    assert np.isnan(M.auroc(np.array([1, 1]), np.array([0.2, 0.3])))


def test_metrics_use_probabilities_not_rounded_predictions() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 500)
    p = np.clip(0.3 * y + rng.normal(0.35, 0.15, 500), 0, 1)
    m = M.binary_metrics(y, p, threshold=0.5)
    assert m["auroc"] == pytest.approx(roc_auc_score(y, p))
    assert m["auroc"] != pytest.approx(roc_auc_score(y, p >= 0.5))


def test_threshold_rules() -> None:
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    p = np.array([0.1, 0.2, 0.3, 0.6, 0.4, 0.7, 0.8, 0.9])
    t = M.choose_threshold(y, p, "sensitivity", 0.95)
    assert t == pytest.approx(0.4)  # the highest threshold that still catches every melanoma
    assert ((p >= t)[y == 1]).all()
    assert M.choose_threshold(y, p, "youden") == pytest.approx(0.7)
    with pytest.raises(ValueError):
        M.choose_threshold(y, p, "magic")


@pytest.mark.parametrize("rule", ["sensitivity", "youden"])
def test_a_threshold_without_both_classes_is_an_error_not_half(rule: str) -> None:
    with pytest.raises(ValueError, match="only one class"):
        M.choose_threshold(np.zeros(6), np.linspace(0.1, 0.6, 6), rule)


def test_fit_temperature_recovers_a_known_temperature() -> None:
    rng = np.random.default_rng(4)
    logits = rng.normal(0, 4, 20000)
    y = (rng.random(20000) < M.calibrated_probability(logits, 2.0)).astype(int)  # calibrated at T = 2
    assert M.fit_temperature(logits, y) == pytest.approx(2.0, abs=0.1)
    assert M.fit_temperature(logits, np.zeros(20000)) == 1.0  # one class: no calibration to fit


def test_operating_points() -> None:
    y = np.array([0] * 20 + [1] * 10)
    p = np.concatenate([np.linspace(0, 0.5, 20), np.linspace(0.45, 1, 10)])
    # Two benign scores (0.474, 0.5) lie above the lowest melanoma (0.45).
    assert M.specificity_at_sensitivity(y, p, 0.95) == pytest.approx(18 / 20)
    assert M.sensitivity_at_specificity(y, p, 0.95) == pytest.approx(9 / 10)
    m = M.binary_metrics(y, p, threshold=0.45)
    assert m["sensitivity"] == 1.0 and m["n_positive"] == 10


def test_bootstrap_ci_contains_estimate() -> None:
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 300)
    p = np.clip(0.25 * y + rng.normal(0.4, 0.2, 300), 0, 1)
    lo, hi = M.bootstrap_ci(y, p, M.auroc, n_boot=200)
    assert lo < M.auroc(y, p) < hi and hi - lo < 0.2


@pytest.mark.parametrize("metric", ["auroc", "auprc"])
def test_batched_metrics_equal_sklearn_row_by_row(metric: str) -> None:
    """The bootstrap's batched AUROC / AUPRC give sklearn's values, ties and resampled duplicates included."""
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, (200, 60))
    y[0], y[1] = 0, 1  # rows with one class: NaN, as the per-row metric
    p = np.round(rng.random((200, 60)), 1)  # many ties
    p[2] = 0.5  # every score tied
    batched = M.ROW_METRICS[getattr(M, metric)](y, p)
    single = np.array([getattr(M, metric)(y[i], p[i]) for i in range(len(y))])
    assert np.isnan(batched[0]) and np.isnan(single[0])
    ok = ~np.isnan(single)
    assert np.array_equal(np.isnan(batched), ~ok) and np.allclose(batched[ok], single[ok], rtol=0, atol=1e-12)


def test_bootstrap_falls_back_to_the_metric_for_others() -> None:
    rng = np.random.default_rng(1)
    y, p = rng.integers(0, 2, 100), rng.random(100)
    (fast,) = M.bootstrap_values(y, [p], M.auroc, n_boot=50)
    (slow,) = M.bootstrap_values(y, [p], lambda a, b: M.auroc(a, b), n_boot=50)
    assert len(fast) == 50 and np.allclose(fast, slow, atol=1e-12)


def test_json_safe() -> None:
    assert M.json_safe({"a": float("nan"), "b": [np.float32(1.5)], "c": np.int64(2)}) == {"a": None, "b": [1.5], "c": 2}


def test_calibration_matches_sklearn_calibration_curve_and_a_hand_worked_case() -> None:
    from sklearn.calibration import calibration_curve

    from core.metrics import calibration

    rng = np.random.default_rng(3)
    p = rng.beta(0.6, 2.5, 500)
    y = (rng.random(500) < np.clip(p * 1.3, 0, 1)).astype(int)  # under-confident: observed above predicted
    got = calibration(y, p, bins=10)
    fraction, mean_p = calibration_curve(y, p, n_bins=10, strategy="uniform")
    assert np.allclose([b["fraction"] for b in got["curve"]], fraction)
    assert np.allclose([b["mean_probability"] for b in got["curve"]], mean_p)
    counts = np.array([b["n"] for b in got["curve"]])
    assert counts.sum() == 500
    assert got["ece"] == pytest.approx(float((counts / 500 * np.abs(fraction - mean_p)).sum()))
    assert got["mce"] == pytest.approx(float(np.abs(fraction - mean_p).max()))
    # Two bins by hand: 0.05 x 4 (one melanoma) and 0.95 x 2 (both): |0.25 - 0.05| * 4/6 + |1 - 0.95| * 2/6.
    hand = calibration([1, 0, 0, 0, 1, 1], [0.05, 0.05, 0.05, 0.05, 0.95, 0.95], bins=10)
    assert hand["ece"] == pytest.approx(0.2 * 4 / 6 + 0.05 * 2 / 6)
    assert [b["n"] for b in hand["curve"]] == [4, 2]
