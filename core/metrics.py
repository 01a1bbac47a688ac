"""Metrics computed from probabilities (never from rounded predictions), thresholds and bootstrap CIs.

m = binary_metrics(y_true, prob, threshold=0.31)
t = choose_threshold(y_val, p_val, rule="sensitivity", target=0.95)
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.metrics import average_precision_score, f1_score, roc_auc_score, roc_curve


def _check(y_true: np.ndarray, prob: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true).astype(int).reshape(-1)
    p = np.asarray(prob, dtype=np.float64).reshape(-1)
    if y.shape != p.shape:
        raise ValueError(f"labels ({y.shape}) and probabilities ({p.shape}) differ in length")
    if not np.isfinite(p).all():
        raise ValueError("probabilities contain NaN or infinity")
    return y, p


def has_both_classes(y_true: np.ndarray) -> bool:
    """AUROC is defined only when both classes occur."""
    y = np.asarray(y_true).astype(int)
    return bool(y.min(initial=1) == 0 and y.max(initial=0) == 1)


def auroc(y_true: np.ndarray, prob: np.ndarray) -> float:
    """Area under the ROC curve (NaN when one class is absent)."""
    y, p = _check(y_true, prob)
    return float(roc_auc_score(y, p)) if has_both_classes(y) else float("nan")


def auprc(y_true: np.ndarray, prob: np.ndarray) -> float:
    """Average precision, the step-wise area under the precision-recall curve (NaN without positives)."""
    y, p = _check(y_true, prob)
    return float(average_precision_score(y, p)) if y.sum() > 0 else float("nan")


def sensitivity_at_specificity(y_true: np.ndarray, prob: np.ndarray, specificity: float = 0.95) -> float:
    """Best sensitivity among ROC operating points whose specificity is at least `specificity`."""
    y, p = _check(y_true, prob)
    if not has_both_classes(y):
        return float("nan")
    fpr, tpr, _ = roc_curve(y, p)
    ok = (1 - fpr) >= specificity - 1e-12
    return float(tpr[ok].max()) if ok.any() else 0.0


def specificity_at_sensitivity(y_true: np.ndarray, prob: np.ndarray, sensitivity: float = 0.95) -> float:
    """Best specificity among ROC operating points whose sensitivity is at least `sensitivity`."""
    y, p = _check(y_true, prob)
    if not has_both_classes(y):
        return float("nan")
    fpr, tpr, _ = roc_curve(y, p)
    ok = tpr >= sensitivity - 1e-12
    return float((1 - fpr[ok]).max()) if ok.any() else 0.0


def choose_threshold(y_true: np.ndarray, prob: np.ndarray, rule: str = "sensitivity", target: float = 0.95) -> float:
    """Pick a decision threshold on validation data.

    Rules:
        "sensitivity": the highest threshold whose sensitivity is >= target (screening: few misses).
        "youden": the threshold maximising sensitivity + specificity - 1.
    A probability >= threshold is called positive.
    """
    y, p = _check(y_true, prob)
    if not has_both_classes(y):
        return 0.5
    fpr, tpr, thr = roc_curve(y, p)
    thr = np.minimum(thr, 1.0)  # sklearn puts +inf first
    if rule == "sensitivity":
        ok = np.flatnonzero(tpr >= target - 1e-12)
        return float(thr[ok[0]])
    if rule == "youden":
        return float(thr[int(np.argmax(tpr - fpr))])
    raise ValueError(f"unknown threshold rule {rule!r}: use 'sensitivity' or 'youden'")


def binary_metrics(y_true: np.ndarray, prob: np.ndarray, threshold: float = 0.5) -> dict[str, Any]:
    """Accuracy, AUROC, AUPRC, F1, sensitivity/specificity at `threshold`, and the 95% operating points."""
    y, p = _check(y_true, prob)
    pred = (p >= threshold).astype(int)
    pos, neg = y == 1, y == 0
    return {
        "n": int(y.size),
        "n_positive": int(pos.sum()),
        "prevalence": float(pos.mean()) if y.size else float("nan"),
        "auroc": auroc(y, p),
        "auprc": auprc(y, p),
        "threshold": float(threshold),
        "accuracy": float((pred == y).mean()) if y.size else float("nan"),
        "f1": float(f1_score(y, pred, zero_division=0)),
        "sensitivity": float(pred[pos].mean()) if pos.any() else float("nan"),
        "specificity": float(1 - pred[neg].mean()) if neg.any() else float("nan"),
        "sensitivity_at_95_specificity": sensitivity_at_specificity(y, p, 0.95),
        "specificity_at_95_sensitivity": specificity_at_sensitivity(y, p, 0.95),
    }


def bootstrap_ci(
    y_true: np.ndarray,
    prob: np.ndarray,
    metric=auroc,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> tuple[float, float]:
    """Percentile bootstrap (1 - alpha) CI of `metric`, resampling cases with replacement."""
    y, p = _check(y_true, prob)
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(n_boot):
        idx = rng.integers(0, y.size, y.size)
        if has_both_classes(y[idx]):
            values.append(metric(y[idx], p[idx]))
    if not values:
        return (float("nan"), float("nan"))
    lo, hi = np.quantile(values, [alpha / 2, 1 - alpha / 2])
    return (float(lo), float(hi))


def json_safe(value: Any) -> Any:
    """Replace NaN/inf floats (not valid JSON) by None, recursively."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, float | np.floating) and not np.isfinite(value):
        return None
    if isinstance(value, np.generic):
        return value.item()
    return value
