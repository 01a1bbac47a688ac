"""dist/zoo/zoo.{md,html}: one table per question a reader of the model card asks, from the zoo's exports
(parity.json per model) and its one interleaved benchmark (benchmark.json)."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

from benchmark.stats import unstable_rows
from core.document import Document
from core.io import write_json, write_text, write_with
from core.parity_file import ParityReport

TARGET_SPEEDUP = 3.0  # the fastest passing artifact against PyTorch eager, same threads and batch


def _fmt(v: Any, spec: str = ".2f") -> str:
    return "-" if v is None else format(v, spec)


def summary_rows(infos: list[dict[str, Any]], bench: dict[str, Any]) -> list[dict[str, Any]]:
    """Per model: training, export time (and the int8 search's share), eager / compiled / fastest passing latency."""
    rows = []
    for info in infos:
        mine = [r for r in bench["rows"] if r["model"] == info["model"] and r["batch"] == 1]
        eager = next((r for r in mine if r["format"] == "pytorch-eager"), None)
        compiled = next((r for r in mine if r["format"] == "pytorch-compiled"), None)
        passing = [r for r in mine if r.get("parity_status") == "pass"]
        best = min(passing, key=lambda r: r["p50_ms"], default=None)
        rows.append(
            {
                "model": info["model"],
                "weights": info["weights"],
                "epochs": info["epochs"],
                "test_auroc": info["test_auroc"],
                "export_seconds": info.get("export_seconds"),
                "int8_seconds": info.get("int8_seconds", {}),
                "eager_p50_ms": eager and eager["p50_ms"],
                "compiled_p50_ms": compiled and compiled["p50_ms"],
                "best": best and f"{best['format']} {best['precision']}",
                "best_p50_ms": best and best["p50_ms"],
                "best_speedup": best and best.get("speedup_vs_eager"),
                "meets_target": bool(best and (best.get("speedup_vs_eager") or 0) >= TARGET_SPEEDUP),
            }
        )
    return rows


def _plot(rows: list[dict[str, Any]], model: str) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=100)
    markers = "o^sDv<>pPX*h"
    for i, r in enumerate(rows):
        ok = r.get("parity_status") in ("pass", "reference")
        colour = "#888888" if r["format"].startswith("pytorch-") else "#2a9d8f" if ok else "#e76f51"
        ax.scatter(
            r["size_mb"],
            r["p50_ms"],
            marker=markers[i % len(markers)],
            s=60,
            facecolors=colour if ok else "none",
            edgecolors=colour,
            label=f"{r['format']} {r['precision']}" + ("" if ok else " (failed parity)"),
        )
    ax.set_xlabel("size, MB")
    ax.set_ylabel("p50 latency, ms (2 threads, batch 1)")
    ax.set_title(f"{model}: latency vs size (green passed parity, red failed, grey PyTorch)")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7, frameon=False)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def write_zoo_report(out: Path, infos: list[dict[str, Any]]) -> dict[str, Path]:
    """zoo.md, zoo.html, zoo.json and one latency-vs-size plot per model, from out/benchmark.json."""
    bench = json.loads((out / "benchmark.json").read_text(encoding="utf-8"))
    summary = summary_rows(infos, bench)
    doc = Document("Model zoo at 224 px: every card backbone through every format")
    doc.paragraph(
        f"Each model trained briefly on the embedded SYNTHETIC set, exported with `--precision fp32,fp16,int8` "
        f"and benchmarked in one interleaved run ({bench['runs']} timed runs per artifact, 2 threads, batch 1) "
        f"on {bench['environment']['cpu']}. Target: the fastest artifact that passed parity at least "
        f"{TARGET_SPEEDUP:.0f}x PyTorch eager."
    )
    headers = ["model", "weights", "epochs", "test AUROC", "export s (int8 parts)", "eager ms", "compiled ms"]
    headers += ["fastest passing", "its ms", "x eager", f">= {TARGET_SPEEDUP:.0f}x"]
    doc.table(
        headers,
        [
            [s["model"], s["weights"], s["epochs"], f"{s['test_auroc']:.3f}"]
            + [f"{_fmt(s['export_seconds'], '.0f')} ({_parts(s['int8_seconds'])})"]
            + [_fmt(s["eager_p50_ms"]), _fmt(s["compiled_p50_ms"]), s["best"] or "none", _fmt(s["best_p50_ms"])]
            + [_fmt(s["best_speedup"], ".1f"), "yes" if s["meets_target"] else "no"]
            for s in summary
        ],
    )
    doc.heading("Static int8 per format: float modules and speed against fp32")
    doc.table(
        ["model", "format", "status", "float modules", "activation bits", "int8 ms", "fp32 ms", "x fp32"],
        [row for info in infos for row in _int8_rows(info, bench["rows"])],
        status_column="status",
    )
    figures = {}
    for info in infos:
        rows = [r for r in bench["rows"] if r["model"] == info["model"] and r["batch"] == 1]
        parity = ParityReport.load(Path(info["export"])).data
        doc.heading(info["model"])
        doc.table(
            ["format", "precision", "p50 ms", "x eager", "size MB", "parity", "remedy / reason"],
            [_row(r, rows) for r in parity["rows"]],
            status_column="parity",
        )
        name = f"{info['model']}_latency_vs_size.png"
        figures[name] = _plot(rows, info["model"])
        doc.image(name, f"{info['model']}: latency vs size")
    if bench.get("notes"):
        doc.heading("Notes from the benchmark").bullets(bench["notes"])
    warnings = unstable_rows(bench["rows"]) + [w for w in bench.get("warnings", []) if w.startswith("load average")]
    if warnings:
        doc.heading("Warnings").bullets(warnings)
    for name, data in figures.items():
        write_with(out / name, lambda tmp, d=data: tmp.write_bytes(d))
    write_json(out / "zoo.json", {"summary": summary, "infos": infos})
    return {
        "md": write_text(out / "zoo.md", doc.markdown()),
        "html": write_text(out / "zoo.html", doc.html(images=figures)),
    }


def _int8_rows(info: dict[str, Any], timed: list[dict[str, Any]]) -> list[list[Any]]:
    """One row per format with a static int8 artifact: how many modules the search kept float, its activation
    bits, and its p50 against the same format's fp32 in the same interleaved run (batch 1)."""
    parity = ParityReport.load(Path(info["export"])).data
    p50 = {(r["format"], r["precision"]): r["p50_ms"] for r in timed if r["model"] == info["model"] and r["batch"] == 1}
    rows = []
    for r in parity["rows"]:
        if r["precision"] != "int8" or r["status"] in ("unsupported", "not-run"):
            continue
        int8, fp32 = p50.get((r["format"], "int8")), p50.get((r["format"], "fp32"))
        rows.append(
            [
                info["model"],
                r["format"],
                r["status"],
                _fmt(r.get("float_modules"), "d"),
                _fmt(r.get("activation_bits"), "d"),
                _fmt(int8),
                _fmt(fp32),
                _fmt(fp32 / int8 if int8 and fp32 else None, ".2f"),
            ]
        )
    return rows


def _parts(seconds: dict[str, float]) -> str:
    return ", ".join(f"{k.replace('_', ' ')} {v:.0f}" for k, v in seconds.items()) or "-"


def _row(parity_row: dict[str, Any], timed: list[dict[str, Any]]) -> list[Any]:
    match = next(
        (r for r in timed if r["format"] == parity_row["format"] and r["precision"] == parity_row["precision"]), None
    )
    why = parity_row.get("remedy") or ""
    if parity_row["status"] not in ("pass", "reference"):
        why = f"{why}; {parity_row.get('reason', '')}".strip("; ")
    return [
        parity_row["format"],
        parity_row["precision"],
        _fmt(match and match["p50_ms"]),
        _fmt(match and match.get("speedup_vs_eager"), ".1f"),
        _fmt(parity_row.get("size_mb")),
        parity_row["status"],
        why or "-",
    ]
