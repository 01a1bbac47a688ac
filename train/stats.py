"""The study's statistics, each through scipy: means with t-distribution CIs over runs, one-tailed Welch
t-tests (transfer learning > from scratch), and a one-sided test of a mean AUROC against a published
estimate that carries its own uncertainty (the clinicians of the meta-analysis the paper cites).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import stats

Z95 = stats.norm.ppf(0.975)  # 1.96: a published 95% CI's half-width over this is its standard error


def mean_ci(values: Sequence[float], level: float = 0.95) -> dict[str, Any]:
    """Mean and its t-distribution CI (n - 1 degrees of freedom) over runs; the CI needs at least 2 runs."""
    x = np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype=np.float64)
    n = len(x)
    if n == 0:
        return {"n": 0, "mean": None, "sd": None, "ci_low": None, "ci_high": None}
    mean = float(x.mean())
    if n < 2:
        return {"n": 1, "mean": mean, "sd": None, "ci_low": None, "ci_high": None}
    sd = float(x.std(ddof=1))
    low, high = stats.t.interval(level, n - 1, loc=mean, scale=sd / math.sqrt(n)) if sd > 0 else (mean, mean)
    return {"n": n, "mean": mean, "sd": sd, "ci_low": float(low), "ci_high": float(high)}


def greater_welch(a: Sequence[float], b: Sequence[float]) -> dict[str, Any]:
    """One-tailed Welch t-test that mean(a) > mean(b) (unequal variances); p None when it cannot be run."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if len(a) < 2 or len(b) < 2 or (a.std(ddof=1) == 0 and b.std(ddof=1) == 0):
        return {"test": "Welch t-test, one-tailed (greater)", "t": None, "df": None, "p": None}
    result = stats.ttest_ind(a, b, equal_var=False, alternative="greater")
    return {
        "test": "Welch t-test, one-tailed (greater)",
        "t": float(result.statistic),
        "df": float(result.df),
        "p": float(result.pvalue),
    }


def greater_than_published(values: Sequence[float], estimate: float, ci_half_width: float) -> dict[str, Any]:
    """One-sided test that the runs' mean exceeds a published estimate with a 95% CI of +- `ci_half_width`.

    The published standard error is half-width / 1.96; t = (mean - estimate) / sqrt(se_runs^2 + se_pub^2)
    with Welch-Satterthwaite degrees of freedom, the published estimate counted as having infinitely many
    (df = (se_runs^2 + se_pub^2)^2 / (se_runs^4 / (n - 1))). p = scipy.stats.t.sf(t, df).
    """
    x = np.asarray(values, dtype=np.float64)
    n = len(x)
    if n < 2:
        return {"test": "one-sided Welch t-test vs a published estimate", "t": None, "df": None, "p": None}
    se_runs2 = float(x.var(ddof=1)) / n
    se_pub2 = (ci_half_width / Z95) ** 2
    t = (float(x.mean()) - estimate) / math.sqrt(se_runs2 + se_pub2)
    df = (se_runs2 + se_pub2) ** 2 / (se_runs2**2 / (n - 1)) if se_runs2 > 0 else math.inf
    return {
        "test": "one-sided Welch t-test vs a published estimate",
        "t": t,
        "df": df,
        "p": float(stats.t.sf(t, df)),
        "estimate": estimate,
        "published_se": math.sqrt(se_pub2),
    }


def stars(p: float | None) -> str:
    """* p < 0.05, ** p < 0.001 (the paper's marks)."""
    if p is None:
        return ""
    return "**" if p < 0.001 else "*" if p < 0.05 else ""
