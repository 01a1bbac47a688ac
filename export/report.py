"""export_report.md / .html, roc.png and int8_search.png: the parity table a person reads, every artifact's ROC
curve, and the int8 search's flips against float modules."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from core.document import Document
from core.io import write_text, write_with

FIGURES = ("roc.png", "int8_search.png")


def _fmt(value: Any, spec: str) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "-"
    return format(value, spec)


def _png(fig: Any) -> bytes:
    """A matplotlib figure as PNG bytes; the figure is closed."""
    import io

    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def roc_png(y: np.ndarray, curves: dict[str, np.ndarray]) -> bytes:
    """The ROC curve of each label -> probabilities, overlaid, as PNG bytes."""
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
    return _png(fig)


def search_png(summary: dict[str, Any]) -> bytes | None:
    """Flipped decisions against the number of float modules: the search's simulated probes and each format's
    real static int8 attempts, with the gate's allowance; None when no static int8 was searched."""
    search = summary.get("int8_search")
    if not search:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    allowed = summary["gates"]["int8"]["max_flip_fraction"] * summary["n"]
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    probes = search["probes"]
    top = max([allowed * 2, *(p["flips"] for p in probes if p.get("flips") is not None)])
    for p in probes:
        stopped = p.get("flips") is None  # stopped early: more flips than allowed
        ax.scatter(
            p["float_modules"],
            top if stopped else p["flips"],
            marker="^" if stopped else "o",
            s=60,
            facecolors="none" if stopped else "grey",
            edgecolors="grey",
        )
    ax.scatter([], [], marker="o", color="grey", label="simulation (PT2E in PyTorch)")
    ax.scatter([], [], marker="^", facecolors="none", edgecolors="grey", label="simulation, stopped early")
    markers = {"onnx": "s", "tflite": "D", "executorch": "P"}
    for r in summary["rows"]:
        if r["precision"] != "int8" or not r.get("attempts"):
            continue
        points = [
            (a["float_modules"], a["flips"])
            for a in r["attempts"]
            if a.get("flips") is not None and a.get("float_modules") is not None and a.get("activation_bits") == 8
        ]
        if points:
            xs, ys = zip(*points, strict=True)
            ax.plot(xs, ys, marker=markers.get(r["format"], "x"), lw=1, label=f"{r['format']} int8 artifacts")
    ax.axhline(allowed, color="red", lw=1, ls="--", label=f"gate: at most {int(np.floor(allowed))} flips")
    ax.axvline(search["float_modules"], color="black", lw=0.8, ls=":", label="the search's decision")
    ax.set_xlabel(f"most int8-sensitive modules kept float (of {search['candidates']})")
    ax.set_ylabel(f"flipped decisions (of {summary['n']})")
    ax.set_title("Static int8: flips against float modules")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return _png(fig)


def _artifact_rows(rows: list[dict[str, Any]]) -> list[list[Any]]:
    table = []
    for r in rows:
        if r["status"] == "unsupported":  # listed under the table, one line each
            continue
        ci = r.get("auroc_delta_ci") or [None, None]
        table.append(
            [
                r["format"],
                r["precision"],
                f"`{r['file']}`" if r.get("file") else "-",
                _fmt(r.get("size_mb"), ".2f"),
                _fmt(r.get("size_reduction"), ".1f"),
                _fmt(r.get("export_seconds"), ".1f"),
                r["status"] + (f": {r['reason']}" if r.get("reason") else ""),
                _fmt(r.get("max_abs_diff"), ".1e"),
                _fmt(r.get("auroc"), ".4f"),
                f"{_fmt(r.get('auroc_delta'), '+.5f')} [{_fmt(ci[0], '+.4f')}, {_fmt(ci[1], '+.4f')}]",
                _fmt(r.get("flips"), "d"),
                _fmt(r.get("worst_subgroup_delta"), "+.5f"),
                r.get("remedy", "-"),
            ]
        )
    return table


def _recommendations(summary: dict[str, Any]) -> list[str]:
    items = []
    for label, rec in summary.get("recommended", {}).items():
        if rec.get("file"):
            items.append(
                f"**{label}**: `{rec['file']}` ({rec['precision']}, {rec['size_mb']:.2f} MB, "
                f"dAUROC {_fmt(rec.get('auroc_delta'), '+.5f')}, {rec.get('flips')} flips): the smallest that passed"
            )
        else:
            items.append(f"**{label}**: none ({rec['reason']})")
    return items


def _remedies(rows: list[dict[str, Any]]) -> list[str]:
    items = []
    for r in rows:
        if len(r.get("attempts", [])) > 1:
            tried = "; ".join(
                f"{a['remedy']}: skipped ({a['reason']})"
                if a["status"] == "skipped"
                else (
                    f"{a['remedy']}: {a['status']}"
                    + (
                        f" (dAUROC {a['auroc_delta']:+.4f}, {a['flips']} flips)"
                        if a.get("auroc_delta") is not None
                        else ""
                    )
                    + (f", {a['seconds']:.0f} s" if a.get("seconds") is not None else "")
                )
                for a in r["attempts"]
            )
            items.append(f"{r['format']} {r['precision']}: {tried}")
    return items


def _subgroup_table(rows: list[dict[str, Any]]) -> tuple[list[str], list[list[Any]]]:
    runnable = [r for r in rows if r.get("subgroups")]
    groups = sorted({g["group"] for r in runnable for g in r["subgroups"]})
    headers = ["subgroup", "n", "melanomas", "benign", "one pair moves AUROC by", "reference AUROC"]
    headers += [f"{r['format']} {r['precision']}" for r in runnable]
    table = []
    for g in groups:
        first = next(s for r in runnable for s in r["subgroups"] if s["group"] == g)
        deltas = []
        for r in runnable:
            match = [s for s in r["subgroups"] if s["group"] == g]
            deltas.append(_fmt(match[0]["auroc_delta"], "+.5f") if match else "-")
        n_neg = first["n"] - first["n_positive"]
        one_pair = first.get("one_pair_auroc", 1.0 / max(first["n_positive"] * n_neg, 1))
        table.append(
            [g, first["n"], first["n_positive"], n_neg, f"{one_pair:.4f}", f"{first['auroc_reference']:.4f}", *deltas]
        )
    return headers, table


def _coarse_subgroups(summary: dict[str, Any]) -> list[str]:
    """Judged subgroups so small that one swapped (melanoma, benign) pair moves their AUROC by more than a
    subgroup gate allows: a reader should know that gate is at the edge of what the split resolves there."""
    gates = [g.get("max_subgroup_auroc_drop") for g in summary["gates"].values() if isinstance(g, dict)]
    loosest = max((g for g in gates if g), default=None)
    seen: dict[str, float] = {}
    for r in summary["rows"]:
        for s in r.get("subgroups") or []:
            seen.setdefault(s["group"], s.get("one_pair_auroc", 0.0))
    if loosest is None:
        return []
    return [f"{g} ({v:.4f})" for g, v in sorted(seen.items()) if v > loosest]


def _search_lines(summary: dict[str, Any]) -> list[str]:
    """The int8 decision and the probes that led to it, in words."""
    search = summary.get("int8_search")
    if not search:
        return []
    lines = [
        f"simulated with {p['float_modules']} of {search['candidates']} modules float: {p['status']}"
        + (f" ({p['flips']} flips, dAUROC {_fmt(p.get('auroc_delta'), '+.4f')})" if p.get("flips") is not None else "")
        for p in search["probes"]
    ]
    kept = ", ".join(f"`{m}`" for m in search["kept_float"]) or "none"
    verdict = "passed" if search["simulation_passed"] else "never passed; the closest miss was kept"
    lines.append(f"decision for every format ({verdict} in the simulation): float modules {kept}")
    return lines


def _witness_lines(rows: list[dict[str, Any]]) -> list[str]:
    lines = []
    for r in rows:
        w = r.get("second_runtime")
        if not w:
            continue
        if w["status"] == "not-run":
            lines.append(f"{r['format']} {r['precision']}: not run ({w['reason']})")
            continue
        figures = (
            f" (max |dp| to the first runtime {_fmt(w.get('max_abs_diff_to_primary'), '.1e')}, {w['flips']} flips, "
            f"dAUROC {_fmt(w.get('auroc_delta'), '+.4f')})"
            if w.get("flips") is not None
            else ""
        )
        lines.append(
            f"{r['format']} {r['precision']}: {w['runtime']} {w['status']}{figures}"
            + (f": {w['reason']}" if w.get("reason") else "")
        )
    return lines


def _signature_lines(signature: dict[str, str] | None) -> str:
    if signature is None:
        return (
            "**Unsigned.** Apps and runners can check each file's sha256 against parity.json, which sits beside it "
            "and can be rewritten with it. Sign the folder with `python -m export.sign DIR --key KEY.pem` "
            "(`--new-key DIR` makes a key pair)."
        )
    return (
        f"**Signed** ({signature['curve']} key, hint `{signature['key_hint'][:16]}`): `model.sig` covers every file "
        "of this folder except the benchmark's later outputs. Verify it with `python -m export.sign --verify DIR "
        "--trust KEY.pub` or the reference `python -m model_signing verify key DIR --signature DIR/model.sig "
        "--public_key KEY.pub`; the apps check it with the key pinned in their assets."
    )


def document(summary: dict[str, Any], signature: dict[str, str] | None = None) -> Document:
    """The export report as a Document (rendered to Markdown and HTML); `signature` is sign.key_description of
    the key the folder is signed with, None when it is not."""
    doc = Document(f"Export report: {summary['model']}")
    doc.paragraph(
        f"Checkpoint `{summary['checkpoint']}` (weights sha256 `{summary['weights_sha256'][:12]}...`), test split of "
        f"{summary['data']}: {summary['n']} cases, {summary['n_positive']} melanomas. Decision threshold "
        f"{summary['threshold']:.4f} ({summary['threshold_rule']}). Export took {summary['seconds']:.0f} s"
        + (f" (of which {_time_split(summary['int8_seconds'])})" if summary.get("int8_seconds") else "")
        + "."
    )
    headers = ["format", "precision", "artifact", "size MB", "x smaller", "export s", "status", "max abs dp", "AUROC"]
    headers += ["dAUROC [95% CI]", "flips", "worst subgroup dAUROC", "remedy"]
    doc.table(headers, _artifact_rows(summary["rows"]), status_column="status")
    unsupported = [r for r in summary["rows"] if r["status"] == "unsupported"]
    if unsupported:
        doc.paragraph(
            "Not offered by their format: "
            + "; ".join(f"{r['format']} {r['precision']}" for r in unsupported)
            + " (the formats table in the README says which precisions each format makes)."
        )
    doc.heading("Recommended artifact per format").bullets(_recommendations(summary))
    search = _search_lines(summary)
    if search:
        doc.heading("Int8: one search, applied in every format").paragraph(
            "PT2E int8 simulated in PyTorch on the judge cases, judged by the int8 gate: every module int8 first, "
            "then the most int8-sensitive modules (ranked on training images) back to float, as few as pass."
        ).bullets(search)
        doc.image("int8_search.png", "Flipped decisions against float modules: simulation and real artifacts")
    remedies = _remedies(summary["rows"])
    if remedies:
        doc.heading("Remedies tried").bullets(remedies)
    witnesses = _witness_lines(summary["rows"])
    if witnesses:
        doc.heading("Second runtime of each format (same gate, against PyTorch)").bullets(witnesses)
    doc.image("roc.png", "ROC of every artifact on the test split")
    doc.heading("Gates").bullets(
        [
            f"**{precision}**: " + ", ".join(f"{k} = {v}" for k, v in gate.items())
            for precision, gate in summary["gates"].items()
            if isinstance(gate, dict)
        ]
        + [
            f"subgroups are compared where they have at least {summary['gates']['min_subgroup_class']} melanomas "
            "and as many benign lesions",
            f"AUROC and AUPRC treat probability differences up to {summary['gates'].get('ranking_noise', 0):g} "
            "from PyTorch's as float noise (the reference's ties are kept); max |dp| and flips use raw values",
        ]
    )
    doc.paragraph(
        "Status `not-run`: converted and checked structurally, but this machine cannot run it; never counted as "
        "verified. `unsupported`: the format has no such precision. Every artifact passed its format's own "
        "checker before it was judged (a failure there is its status)."
    )
    doc.heading("Subgroups (AUROC of the reference / delta per artifact)")
    headers, table = _subgroup_table(summary["rows"])
    if table:
        doc.table(headers, table)
        coarse = _coarse_subgroups(summary)
        if coarse:
            doc.paragraph(
                "One swapped (melanoma, benign) pair moves these subgroups' AUROC by more than the subgroup gate "
                "allows, so there the gate is at the edge of what the judge split can resolve: " + ", ".join(coarse)
            )
    else:
        doc.paragraph("No subgroup has enough cases of both classes.")
    doc.paragraph("Golden vectors for apps: `golden.json` + `golden/`. Machine-readable results: `parity.json`.")
    doc.heading("Provenance").paragraph(_signature_lines(signature))
    return doc


def _time_split(seconds: dict[str, float]) -> str:
    return ", ".join(f"{name.replace('_', ' ')} {value:.0f} s" for name, value in seconds.items())


def write_reports(
    folder: Path,
    summary: dict[str, Any],
    y: np.ndarray,
    curves: dict[str, np.ndarray],
    signature: dict[str, str] | None = None,
) -> None:
    """export_report.md, export_report.html, roc.png and (when static int8 was searched) int8_search.png in
    `folder`."""
    roc, search = roc_png(y, curves), search_png(summary)
    write_with(folder / "roc.png", lambda tmp: tmp.write_bytes(roc))
    if search is not None:
        write_with(folder / "int8_search.png", lambda tmp: tmp.write_bytes(search))
    rewrite_documents(folder, summary, signature)


def rewrite_documents(folder: Path, summary: dict[str, Any], signature: dict[str, str] | None) -> None:
    """export_report.md and .html from parity.json's `summary` and the figures already in `folder` (what
    export.sign does to an existing export before it signs it)."""
    images = {name: (folder / name).read_bytes() for name in FIGURES if (folder / name).is_file()}
    doc = document(summary, signature)
    write_text(folder / "export_report.md", doc.markdown())
    write_text(folder / "export_report.html", doc.html(images=images))
