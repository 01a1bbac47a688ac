"""export_report.md and roc.png: the parity table a person reads, and every format's ROC curve."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from core.io import write_text, write_with


def _fmt(value: Any, spec: str) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "-"
    return format(value, spec)


def roc_plot(path: Path, y: np.ndarray, curves: dict[str, np.ndarray]) -> Path:
    """Overlay the ROC curve of each label -> probabilities."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import roc_curve

    from core.metrics import auroc

    fig, ax = plt.subplots(figsize=(6, 6), dpi=110)
    styles = ["-", "--", ":", "-."]
    for i, (label, prob) in enumerate(curves.items()):
        fpr, tpr, _ = roc_curve(y, prob)
        ax.plot(
            fpr, tpr, styles[i % len(styles)], lw=2.2 if i == 0 else 1.4, label=f"{label} (AUROC {auroc(y, prob):.4f})"
        )
    ax.plot([0, 1], [0, 1], color="0.7", lw=0.8)
    ax.set_xlabel("1 - specificity (false positive rate)")
    ax.set_ylabel("sensitivity (true positive rate)")
    ax.set_title("Test-split ROC of every artifact vs PyTorch")
    ax.legend(loc="lower right", fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    write_with(path, lambda tmp: fig.savefig(tmp, format="png"))
    plt.close(fig)
    return path


def write_report(path: Path, summary: dict[str, Any]) -> Path:
    """Markdown report from the parity.json summary."""
    rows = summary["rows"]
    lines = [
        f"# Export report: {summary['model']}",
        "",
        f"Checkpoint `{summary['checkpoint']}` (weights sha256 `{summary['weights_sha256'][:12]}...`), "
        f"test split of {summary['data']}: {summary['n']} cases, {summary['n_positive']} melanomas. "
        f"Decision threshold {summary['threshold']:.4f} ({summary['threshold_rule']}).",
        "",
        "| format | precision | artifact | size MB | x smaller | export s | status | max abs dp | AUROC "
        "| dAUROC [95% CI] | flips | worst subgroup dAUROC | remedy |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ci = r.get("auroc_delta_ci") or [None, None]
        status = r["status"] + (f": {r['reason']}" if r.get("reason") else "")
        lines.append(
            f"| {r['format']} | {r['precision']} | `{Path(r['path']).name}` | {_fmt(r.get('size_mb'), '.2f')} "
            f"| {_fmt(r.get('size_reduction'), '.1f')} "
            f"| {_fmt(r.get('export_seconds'), '.1f')} | {status} | {_fmt(r.get('max_abs_diff'), '.1e')} "
            f"| {_fmt(r.get('auroc'), '.4f')} | {_fmt(r.get('auroc_delta'), '+.5f')} "
            f"[{_fmt(ci[0], '+.4f')}, {_fmt(ci[1], '+.4f')}] "
            f"| {_fmt(r.get('flips'), 'd')} | {_fmt(r.get('worst_subgroup_delta'), '+.5f')} | {r.get('remedy', '-')} |"
        )
    lines += ["", "## Recommended artifact per format", ""]
    for label, rec in summary.get("recommended", {}).items():
        if rec.get("path"):
            lines.append(
                f"- **{label}**: `{Path(rec['path']).name}` ({rec['precision']}, {rec['size_mb']:.2f} MB, "
                f"dAUROC {_fmt(rec.get('auroc_delta'), '+.5f')}, {rec.get('flips')} flips): the smallest that passed"
            )
        else:
            lines.append(f"- **{label}**: none ({rec['reason']})")
    attempts = [r for r in rows if len(r.get("attempts", [])) > 1]
    if attempts:
        lines += ["", "## Remedies tried", ""]
        for r in attempts:
            tried = "; ".join(
                f"{a['remedy']}: {a['status']}"
                + (f" (dAUROC {a['auroc_delta']:+.4f}, {a['flips']} flips)" if a.get("auroc_delta") is not None else "")
                for a in r["attempts"]
            )
            lines.append(f"- {r['format']} {r['precision']}: {tried}")
    lines += ["", "![ROC of every artifact](roc.png)", "", "## Gates", ""]
    for precision, gate in summary["gates"].items():
        if isinstance(gate, dict):
            lines.append(f"- **{precision}**: " + ", ".join(f"{k} = {v}" for k, v in gate.items()))
    lines += [
        f"- subgroups are compared where they have at least {summary['gates']['min_subgroup_class']} melanomas "
        "and as many benign lesions",
        "",
        "Status `not-run` means the artifact was converted and checked structurally but cannot run on this "
        "machine; it is never counted as verified.",
        "",
        "## Subgroups (AUROC of the reference / delta per artifact)",
        "",
    ]
    groups = sorted({g["group"] for r in rows for g in r.get("subgroups", [])})
    runnable = [r for r in rows if r.get("subgroups")]
    if groups and runnable:
        lines.append(
            "| subgroup | n | melanomas | reference AUROC | "
            + " | ".join(f"{r['format']} {r['precision']}" for r in runnable)
            + " |"
        )
        lines.append("|---|---|---|---|" + "---|" * len(runnable))
        for g in groups:
            first = next(s for r in runnable for s in r["subgroups"] if s["group"] == g)
            deltas = []
            for r in runnable:
                match = [s for s in r["subgroups"] if s["group"] == g]
                deltas.append(_fmt(match[0]["auroc_delta"], "+.5f") if match else "-")
            lines.append(
                f"| {g} | {first['n']} | {first['n_positive']} | {first['auroc_reference']:.4f} | "
                + " | ".join(deltas)
                + " |"
            )
    else:
        lines.append("No subgroup has enough cases of both classes.")
    lines += ["", "Golden vectors for apps: `golden.json`. Machine-readable results: `parity.json`.", ""]
    return write_text(path, "\n".join(lines))
