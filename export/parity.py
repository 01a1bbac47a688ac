"""Clinical parity: does an artifact rank and decide like the PyTorch original on the same test cases?

For each artifact: max |delta probability|, AUROC and AUPRC of both with the paired bootstrap 95% CI of the
difference, decisions that flip at the spec's threshold, and AUROC per subgroup (sex, age band, site)
where a subgroup has enough of both classes; rankings treat differences up to NOISE as ties kept. The
default gates are the numbers in GATES, nowhere else; `Gates.chosen` applies a user's own (export.all's
--gate-* flags) to the reduced precisions, and parity.json records the ones used.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from core.contract import Feature
from core.metrics import auprc, auroc, bootstrap_values, json_safe


@dataclass(frozen=True)
class Gate:
    """Pass criteria for one precision (None = not checked)."""

    max_abs_diff: float | None
    max_auroc_drop: float
    max_flip_fraction: float
    max_subgroup_auroc_drop: float | None


GATES: dict[str, Gate] = {
    # fp32 artifacts must be numerically the same model.
    "fp32": Gate(max_abs_diff=1e-4, max_auroc_drop=0.001, max_flip_fraction=0.0, max_subgroup_auroc_drop=0.001),
    # Reduced precision: the same clinical ranking and decisions, within these bounds.
    "fp16": Gate(max_abs_diff=None, max_auroc_drop=0.005, max_flip_fraction=0.02, max_subgroup_auroc_drop=0.01),
    "int8": Gate(max_abs_diff=None, max_auroc_drop=0.005, max_flip_fraction=0.02, max_subgroup_auroc_drop=0.01),
}


MIN_SUBGROUP_CLASS = 5  # positives and negatives a subgroup needs before its AUROC is compared


@dataclass(frozen=True)
class Gates:
    """The gates one export is judged by: a Gate per precision key and the subgroup size rule."""

    by_precision: dict[str, Gate] = field(default_factory=lambda: dict(GATES))
    min_subgroup_class: int = MIN_SUBGROUP_CLASS

    @classmethod
    def chosen(
        cls,
        auroc_drop: float | None = None,
        flip_fraction: float | None = None,
        subgroup_drop: float | None = None,
        min_subgroup_class: int | None = None,
    ) -> Gates:
        """The default gates with the reduced-precision ones (fp16, every int8 variant) changed where a value
        is given; fp32 keeps its own (an fp32 artifact must be the same model, whatever the user allows)."""
        changes = {
            k: v
            for k, v in (
                ("max_auroc_drop", auroc_drop),
                ("max_flip_fraction", flip_fraction),
                ("max_subgroup_auroc_drop", subgroup_drop),
            )
            if v is not None
        }
        gates = {k: replace(g, **changes) if k != "fp32" else g for k, g in GATES.items()}
        return cls(gates, MIN_SUBGROUP_CLASS if min_subgroup_class is None else min_subgroup_class)

    def with_margin(self, fraction: float) -> Gates:
        """These gates with the int8 gate's limits multiplied by `fraction` (what the int8 search's simulation
        must meet: export.quantize.SIMULATION_MARGIN)."""
        int8 = self.by_precision["int8"]
        subgroup = int8.max_subgroup_auroc_drop
        tighter = replace(
            int8,
            max_auroc_drop=int8.max_auroc_drop * fraction,
            max_flip_fraction=int8.max_flip_fraction * fraction,
            max_subgroup_auroc_drop=None if subgroup is None else subgroup * fraction,
        )
        return Gates(self.by_precision | {"int8": tighter}, self.min_subgroup_class)

    def __getitem__(self, precision: str) -> Gate:
        return self.by_precision[gate_for(precision)]

    def as_dict(self) -> dict[str, Any]:
        """The gates, for parity.json and the report."""
        extra = {"min_subgroup_class": self.min_subgroup_class, "ranking_noise": NOISE}
        return json_safe({k: asdict(v) for k, v in self.by_precision.items()} | extra)


DEFAULT_GATES = Gates()


def gate_for(precision: str) -> str:
    """The key in GATES a precision is judged by (every int8 variant by "int8")."""
    return precision if precision in GATES else "int8"


# Probability differences at most this large are float noise, not a change of ranking: AUROC and AUPRC are
# compared on artifact probabilities snapped to the reference's within it. A model that gives many cases the
# same probability (a briefly trained one leaning on metadata gives whole groups of patients identical
# values) would otherwise see its exact ties broken by 1e-7 of noise, and AUROC move by up to 0.003 in an
# fp32 artifact that agrees with PyTorch to 1e-7. Max |dp| and flips are measured on the raw values.
NOISE = 1e-6
BOOTSTRAP = 1000


def paired_bootstrap_delta(
    y: np.ndarray, ref: np.ndarray, other: np.ndarray, metric=auroc, n_boot: int = BOOTSTRAP, seed: int = 0
) -> tuple[float, float]:
    """95% percentile CI of metric(other) - metric(ref), resampling the same cases for both."""
    theirs, ours = bootstrap_values(y, [other, ref], metric, n_boot, seed)
    if not len(ours):
        return (float("nan"), float("nan"))
    lo, hi = np.quantile(theirs - ours, [0.025, 0.975])
    return (float(lo), float(hi))


def subgroups(table: pd.DataFrame, features: Sequence[Feature]) -> dict[str, np.ndarray]:
    """Boolean masks per subgroup of the contract's categorical features (each category or code, "missing"
    its own group) and of its numbers with `bands` ("age=<40", "age=40-<60", "age=60+", "age=missing")."""
    groups: dict[str, np.ndarray] = {}
    for feature in features:
        if not (feature.categorical or feature.bands) or feature.field not in table:
            continue
        labels = np.array([feature.group_of(v) for v in table[feature.field].astype(object)], dtype=object)
        for label in sorted({str(v) for v in labels} - {""}):
            groups[f"{feature.name}={label}"] = labels == label
    return groups


def compare(
    y: np.ndarray,
    ref: np.ndarray,
    other: np.ndarray,
    threshold: float,
    groups: dict[str, np.ndarray] | None = None,
    n_boot: int = BOOTSTRAP,
    min_class: int = MIN_SUBGROUP_CLASS,
) -> dict[str, Any]:
    """Parity figures of `other` against `ref` (probabilities, [N]) on labels `y`; subgroups with fewer than
    `min_class` cases of either class are left out. Each judged subgroup records `one_pair_auroc`, the AUROC
    one swapped (melanoma, benign) pair moves it by: a subgroup gate below it cannot be resolved there."""
    y, ref, raw = (np.asarray(a).reshape(-1) for a in (y, ref, other))
    flips = int(((ref >= threshold) != (raw >= threshold)).sum())
    other = np.where(np.abs(raw - ref) <= NOISE, ref, raw)  # ranking: float noise does not break ties
    result: dict[str, Any] = {
        "n": len(y),
        "n_positive": int(y.sum()),
        "max_abs_diff": float(np.max(np.abs(ref - raw))) if len(y) else 0.0,
        "mean_abs_diff": float(np.mean(np.abs(ref - raw))) if len(y) else 0.0,
        "auroc_reference": auroc(y, ref),
        "auroc": auroc(y, other),
        "auprc_reference": auprc(y, ref),
        "auprc": auprc(y, other),
        "threshold": float(threshold),
        "flips": flips,
        "flip_fraction": flips / max(len(y), 1),
    }
    result["auroc_delta"] = result["auroc"] - result["auroc_reference"]
    result["auprc_delta"] = result["auprc"] - result["auprc_reference"]
    result["auroc_delta_ci"] = list(paired_bootstrap_delta(y, ref, other, auroc, n_boot))
    result["auprc_delta_ci"] = list(paired_bootstrap_delta(y, ref, other, auprc, n_boot))
    rows = []
    for name, mask in (groups or {}).items():
        n_pos = int(y[mask].sum())
        n_neg = int(mask.sum()) - n_pos
        if n_pos < min_class or n_neg < min_class:
            continue
        a_ref, a_other = auroc(y[mask], ref[mask]), auroc(y[mask], other[mask])
        rows.append(
            {
                "group": name,
                "n": int(mask.sum()),
                "n_positive": n_pos,
                "auroc_reference": a_ref,
                "auroc": a_other,
                "auroc_delta": a_other - a_ref,
                "one_pair_auroc": 1.0 / (n_pos * n_neg),
            }
        )
    result["subgroups"] = rows
    result["subgroups_considered"] = len(groups or {})  # 0: the caller asked for no subgroup figures
    result["worst_subgroup_delta"] = min((r["auroc_delta"] for r in rows), default=0.0)
    return result


def judge(figures: dict[str, Any], precision: str, gates: Gates = DEFAULT_GATES) -> tuple[str, list[str]]:
    """("pass" | "fail", reasons) for parity figures under the precision's gate in `gates`.

    A gate that cannot be computed is a failure with its reason, never a pass: an AUROC needs both classes
    among the cases, and the subgroup gate needs at least one of the subgroups considered to hold
    `gates.min_subgroup_class` cases of each class (figures computed without subgroups have no subgroup gate).
    """
    gate, least = gates[precision], gates.min_subgroup_class
    reasons = []
    if gate.max_abs_diff is not None and figures["max_abs_diff"] > gate.max_abs_diff:
        reasons.append(f"max |dp| {figures['max_abs_diff']:.2e} > {gate.max_abs_diff:g}")
    if not np.isfinite(figures["auroc_delta"]):
        reasons.append(
            f"AUROC cannot be computed on {figures['n']} case(s) with {figures['n_positive']} melanoma(s): judge on "
            "cases of both classes (a larger --limit, or the whole evaluation set)"
        )
    elif -figures["auroc_delta"] > gate.max_auroc_drop:
        reasons.append(f"AUROC drop {-figures['auroc_delta']:.4f} > {gate.max_auroc_drop:g}")
    if figures["flip_fraction"] > gate.max_flip_fraction:
        reasons.append(
            f"{figures['flips']} flipped decision(s) ({figures['flip_fraction']:.1%}) > "
            f"{gate.max_flip_fraction * 100:g}%"
        )
    if gate.max_subgroup_auroc_drop is not None and figures.get("subgroups_considered") and not figures["subgroups"]:
        reasons.append(
            f"no subgroup has {least} melanomas and {least} benign cases, so subgroup "
            "AUROC cannot be checked: judge on more cases"
        )
    elif gate.max_subgroup_auroc_drop is not None and -figures["worst_subgroup_delta"] > gate.max_subgroup_auroc_drop:
        worst = min(figures["subgroups"], key=lambda r: r["auroc_delta"])
        reasons.append(
            f"subgroup {worst['group']} AUROC drop {-worst['auroc_delta']:.4f} > {gate.max_subgroup_auroc_drop:g}"
        )
    return ("fail" if reasons else "pass"), reasons
