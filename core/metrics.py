"""Metrics computed from probabilities (never from rounded predictions), thresholds and bootstrap CIs.

m = binary_metrics(y_true, prob, threshold=0.31)
t = choose_threshold(y_val, p_val, rule="sensitivity", target=0.95)
T = fit_temperature(val_logits, y_val)      # then calibrated_probability(logits, T)
c = calibration(y_true, prob)               # expected calibration error and the reliability diagram's bins
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np
from sklearn.metrics import average_precision_score, f1_score, roc_auc_score, roc_curve


def calibrated_probability(logit: Any, temperature: float = 1.0) -> Any:
    """sigmoid(logit / temperature): the probability every spec promises (`outputs.probability`).

    Takes a torch tensor (the exported graph, the study's attributions) or anything numpy reads (training's
    predictions); returns the same kind. The numpy path clips the scaled logit to +-80 so exp cannot overflow.
    """
    torch = sys.modules.get("torch")  # a tensor exists only once torch is imported; numpy callers need not import it
    if torch is not None and isinstance(logit, torch.Tensor):
        return torch.sigmoid(logit / temperature)
    scaled = np.asarray(logit, dtype=np.float64) / temperature
    return 1.0 / (1.0 + np.exp(-np.clip(scaled, -80, 80)))


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


def threshold_name(rule: str, target: float) -> str:
    """The key a threshold is stored under: "sensitivity_95" for target 0.95, "sensitivity_90" for 0.9,
    "sensitivity_97_5" for 0.975; "youden" for the Youden rule."""
    if rule == "youden":
        return "youden"
    percent = f"{round(target * 100, 2):g}".replace(".", "_")
    return f"sensitivity_{percent}"


def choose_threshold(y_true: np.ndarray, prob: np.ndarray, rule: str = "sensitivity", target: float = 0.95) -> float:
    """Pick a decision threshold on validation data.

    Rules:
        "sensitivity": the highest threshold whose sensitivity is >= target (screening: few misses).
        "youden": the threshold maximising sensitivity + specificity - 1.
    A probability >= threshold is called positive.

    Raises:
        ValueError: the labels hold one class only (neither rule means anything then; no fallback value is
            returned under a rule's name), or the rule is unknown.
    """
    y, p = _check(y_true, prob)
    if not has_both_classes(y):
        raise ValueError(f"cannot choose a {rule!r} threshold: the labels hold only one class")
    fpr, tpr, thr = roc_curve(y, p)
    thr = np.minimum(thr, 1.0)  # sklearn puts +inf first
    if rule == "sensitivity":
        ok = np.flatnonzero(tpr >= target - 1e-12)
        return float(thr[ok[0]])
    if rule == "youden":
        return float(thr[int(np.argmax(tpr - fpr))])
    raise ValueError(f"unknown threshold rule {rule!r}: use 'sensitivity' or 'youden'")


def fit_temperature(logits: np.ndarray, targets: np.ndarray) -> float:
    """Temperature T minimising the NLL of calibrated_probability(logit, T) on validation (Guo et al. 2017).

    Returns T rounded to 4 decimals; 1.0 (no scaling) when one class is absent or the fitted T falls outside
    0.05-20, which is no calibration but the sign of a degenerate model.
    """
    import torch  # here: the numpy metrics stay importable without it

    if not has_both_classes(targets):
        return 1.0
    z = torch.tensor(np.asarray(logits), dtype=torch.float64)
    y = torch.tensor(np.asarray(targets), dtype=torch.float64)
    log_t = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=0.1, max_iter=100)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(z / log_t.exp(), y)
        loss.backward()
        return loss

    opt.step(closure)
    t = float(log_t.detach().exp())
    return round(t, 4) if 0.05 < t < 20 and np.isfinite(t) else 1.0


CALIBRATION_BINS = 10


def calibration(y_true: np.ndarray, prob: np.ndarray, bins: int = CALIBRATION_BINS) -> dict[str, Any]:
    """Expected calibration error (ECE) of the melanoma probability and the reliability diagram behind it.

    Equal-width bins over [0, 1], each holding (low, high] (the first also 0), as
    sklearn.calibration.calibration_curve(strategy="uniform") bins; per non-empty bin the mean predicted
    probability and the observed fraction of melanomas. ECE is the case-weighted mean of |fraction - mean
    probability| over the bins, and the maximum calibration error (MCE) the largest such gap.
    """
    y, p = _check(y_true, prob)
    index = np.searchsorted(np.linspace(0.0, 1.0, bins + 1)[1:-1], p, side="left")
    curve, ece, mce = [], 0.0, 0.0
    for b in range(bins):
        members = index == b
        n = int(members.sum())
        if not n:
            continue
        mean_p, fraction = float(p[members].mean()), float(y[members].mean())
        gap = abs(fraction - mean_p)
        ece += n / len(p) * gap
        mce = max(mce, gap)
        curve.append({"low": b / bins, "high": (b + 1) / bins, "n": n, "mean_probability": mean_p})
        curve[-1]["fraction"] = fraction
    return {"ece": float(ece), "mce": float(mce), "bins": bins, "curve": curve}


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


def auroc_rows(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    """AUROC of every row of scores `p` [B, N] against the labels in the same row of `y` [B, N] (NaN where a
    row lacks a class): the Mann-Whitney statistic on average ranks, tied scores counting half, which is
    what roc_auc_score computes. One array operation for a whole bootstrap."""
    from scipy.stats import rankdata

    y = np.asarray(y, dtype=np.float64)
    ranks = rankdata(np.asarray(p, dtype=np.float64), axis=1)
    n_pos = y.sum(1)
    pairs = n_pos * (y.shape[1] - n_pos)
    u = (ranks * y).sum(1) - n_pos * (n_pos + 1) / 2
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(pairs > 0, u / pairs, np.nan)


def auprc_rows(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Average precision of every row of `p` [B, N] against the labels in the same row of `y` (NaN where a
    row has no positive), as average_precision_score: each positive adds the precision at the lowest score
    of its tie group, over the number of positives."""
    y, p = np.asarray(y, dtype=np.float64), np.asarray(p, dtype=np.float64)
    order = np.argsort(-p, axis=1, kind="stable")
    scores, hits = np.take_along_axis(p, order, 1), np.take_along_axis(y, order, 1)
    rank = np.arange(1, p.shape[1] + 1)
    precision = np.cumsum(hits, 1) / rank
    group_end = np.ones_like(hits, dtype=bool)
    group_end[:, :-1] = scores[:, 1:] != scores[:, :-1]
    end = np.where(group_end, rank - 1, p.shape[1])
    end = np.flip(np.minimum.accumulate(np.flip(end, 1), 1), 1)  # each position's tie group's last index
    n_pos = hits.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n_pos > 0, (hits * np.take_along_axis(precision, end, 1)).sum(1) / n_pos, np.nan)


ROW_METRICS = {auroc: auroc_rows, auprc: auprc_rows}  # the batched form of each metric that has one


def bootstrap_values(
    y_true: np.ndarray, probs: list[np.ndarray], metric=auroc, n_boot: int = 1000, seed: int = 0
) -> list[np.ndarray]:
    """`metric` of each of `probs` on the same `n_boot` resamples of the cases (with replacement), keeping
    the resamples that have both classes; computed in one batch for AUROC and AUPRC."""
    y = np.asarray(y_true).astype(int).reshape(-1)
    for p in probs:
        _check(y, p)  # same length, finite
    idx = np.random.default_rng(seed).integers(0, y.size, (n_boot, y.size))
    positives = y[idx].sum(1)
    idx = idx[(positives > 0) & (positives < y.size)]  # resamples with both classes
    if metric in ROW_METRICS:
        return [ROW_METRICS[metric](y[idx], np.asarray(p, dtype=np.float64).reshape(-1)[idx]) for p in probs]
    return [np.array([metric(y[i], np.asarray(p).reshape(-1)[i]) for i in idx]) for p in probs]


def bootstrap_ci(
    y_true: np.ndarray,
    prob: np.ndarray,
    metric=auroc,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> tuple[float, float]:
    """Percentile bootstrap (1 - alpha) CI of `metric`, resampling cases with replacement."""
    (values,) = bootstrap_values(y_true, [prob], metric, n_boot, seed)  # it checks the inputs
    if not len(values):
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
