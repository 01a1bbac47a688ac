"""benchmark.json / .csv / .md / .html (with plots) and the history file that spots regressions."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from core.document import Document
from core.io import append_jsonl, read_jsonl, write_json, write_text, write_with
from core.metrics import json_safe
from export.formats import deploy_targets

CSV_FIELDS = [
    "model",
    "format",
    "precision",
    "threads",
    "batch",
    "p50_ms",
    "p90_ms",
    "p99_ms",
    "mean_ms",
    "std_ms",
    "iqr_ms",
    "tail_ratio",
    "drift_ratio",
    "unstable",
    "throughput_per_s",
    "speedup_vs_eager",
    "load_ms",
    "first_ms",
    "peak_mb",
    "size_mb",
    "gflops",
    "gflops_per_s",
    "peak_share",
    "parity_status",
    "auroc_delta",
    "flips",
    "path",
]
PICK_FIELDS = ("format", "precision", "threads", "batch", "p50_ms", "p90_ms", "size_mb", "speedup_vs_eager")
PICK_FIELDS += ("auroc_delta", "flips", "path")


def recommend(rows: list[dict[str, Any]], skipped: list[dict[str, Any]] = ()) -> list[dict[str, Any]]:
    """Per model and deployment target: the fastest artifact that passed parity (a failed one never is)."""
    picks = []
    for model in sorted({r["model"] for r in rows}):
        for target, labels in deploy_targets().items():
            mine = [r for r in rows if r["model"] == model and r["format"] in labels]
            ok = [r for r in mine if r.get("parity_status") == "pass" and r.get("p50_ms") is not None]
            if ok:
                best = min(ok, key=lambda r: (r["p50_ms"], r["threads"], r["batch"]))
                picks.append({"model": model, "target": target, **{k: best.get(k) for k in PICK_FIELDS}})
                continue
            not_here = [s["reason"] for s in skipped if s["model"] == model and s["format"] in labels]
            reason = (
                f"{not_here[0]}: measure it on such a device"
                if not_here and not mine
                else "no artifact of these formats passed parity"
            )
            picks.append({"model": model, "target": target, "format": None, "reason": reason})
    return picks


def _fmt(v: Any, spec: str = ".2f") -> str:
    if v is None or (isinstance(v, float) and v != v):
        return "-"
    return format(v, spec)


def _environment(result: dict[str, Any]) -> str:
    env, packages = result["environment"], result["environment"]["packages"]
    return (
        f"{env['cpu']} ({', '.join(env['simd'])}), {env['logical_cores']} logical cores; "
        f"torch {packages.get('torch')}, "
        f"onnxruntime {packages.get('onnxruntime')}, ai-edge-litert {packages.get('ai-edge-litert')}, executorch "
        f"{packages.get('executorch')}. {result['runs']} timed runs after {result['warmup']} warm-up, interleaved "
        "across artifacts; latency = one `predict` call through the same runner that passed parity."
    )


def _picks_table(result: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    headers = ["model", "target", "artifact", "precision", "threads", "batch", "p50 ms", "x eager", "size MB"]
    headers += ["dAUROC", "flips"]
    table = []
    for p in result["recommended"]:
        if p.get("format"):
            table.append(
                [
                    p["model"],
                    p["target"],
                    f"`{Path(p['path']).name}`",
                    p["precision"],
                    p["threads"],
                    p["batch"],
                    _fmt(p["p50_ms"]),
                    _fmt(p["speedup_vs_eager"], ".1f"),
                    _fmt(p["size_mb"]),
                    _fmt(p["auroc_delta"], "+.4f"),
                    p["flips"],
                ]
            )
        else:
            table.append([p["model"], p["target"], f"none: {p['reason']}"] + [""] * 8)
    return headers, table


def _rows_table(rows: list[dict[str, Any]]) -> tuple[list[str], list[list[Any]]]:
    headers = ["model", "format", "precision", "threads", "batch", "p50 ms", "p90 ms", "p99 ms", "IQR ms", "x eager"]
    headers += ["load ms", "first ms", "peak MB", "size MB", "GFLOP/s", "% of peak", "stable", "parity"]
    table = []
    for r in rows:
        share = 100 * r["peak_share"] if r.get("peak_share") else None
        table.append(
            [r["model"], r["format"], r["precision"], r["threads"], r["batch"]]
            + [_fmt(r.get(k)) for k in ("p50_ms", "p90_ms", "p99_ms", "iqr_ms")]
            + [_fmt(r.get("speedup_vs_eager"), ".1f"), _fmt(r.get("load_ms"), ".0f"), _fmt(r.get("first_ms"), ".1f")]
            + [_fmt(r.get("peak_mb"), ".0f"), _fmt(r.get("size_mb")), _fmt(r.get("gflops_per_s"), ".1f")]
            + [_fmt(share, ".1f"), "no" if r.get("unstable") else "yes", r.get("parity_status") or "-"]
        )
    return headers, table


def _across_models(result: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    table = []
    for model in result["models"]:
        mine = [r for r in result["rows"] if r["model"] == model and r["batch"] == min(result["batches"])]
        eager = min((r for r in mine if r["format"] == "pytorch-eager"), key=lambda r: r["p50_ms"], default=None)
        ok = [r for r in mine if r.get("parity_status") == "pass" and r["format"] != "pytorch-eager"]
        best = min(ok, key=lambda r: r["p50_ms"], default=None)
        table.append(
            [
                model,
                _fmt(eager and eager.get("gflops")),
                _fmt(eager and eager["p50_ms"]),
                (best and f"{best['format']} {best['precision']}") or "-",
                _fmt(best and best["p50_ms"]),
                _fmt(best and best.get("speedup_vs_eager"), ".1f"),
            ]
        )
    return ["model", "GFLOPs", "eager p50 ms", "fastest passing artifact", "p50 ms", "x eager"], table


def _imported(doc: Document, result: dict[str, Any]) -> None:
    if result.get("web_rows"):
        doc.heading("Headless browser (web_demo: WebAssembly with 1 and N threads, WebGPU where offered)")
        doc.table(
            ["model", "format", "precision", "compute", "threads", "load ms", "p50 ms", "runs", "browser"],
            [
                [
                    w.get("model", "-"),
                    w["format"],
                    w.get("precision", "-"),
                    w.get("backend", "wasm"),
                    w.get("threads", 1),
                    _fmt(w.get("load_ms"), ".0f"),
                    _fmt(w["p50_ms"]),
                    w.get("runs", "-"),
                    w.get("browser", "-"),
                ]
                for w in result["web_rows"]
            ],
        )
    if result.get("phone_rows"):
        doc.heading("Imported phone measurements")
        doc.table(
            ["device", "artifact", "tool", "avg ms", "init ms", "peak MB"],
            [
                [
                    p["device"],
                    p["artifact"],
                    p["tool"],
                    _fmt(p.get("avg_ms")),
                    _fmt(p.get("init_ms")),
                    _fmt(p.get("peak_mb")),
                ]
                for p in result["phone_rows"]
            ],
        )


def document(result: dict[str, Any], figures: list[str]) -> Document:
    """The benchmark report as a Document (rendered to Markdown and HTML)."""
    doc = Document(f"Benchmark: {', '.join(result['models'])}")
    doc.paragraph(_environment(result))
    if result.get("warnings"):
        doc.heading("Warnings").bullets([f"**{w}**" for w in result["warnings"]])
    if result.get("notes"):
        doc.heading("Notes").bullets(result["notes"])
    doc.heading("Recommended artifact per target (fastest that passed parity)").table(*_picks_table(result))
    doc.heading("All artifacts").table(*_rows_table(result["rows"]), status_column="parity")
    if len(result["models"]) > 1:
        doc.heading("Across models (fp32, best threads, batch 1)").table(*_across_models(result))
    if result.get("skipped"):
        doc.heading("Not timed here").bullets(
            [f"{s['format']} {s['precision']} ({s['model']}): {s['reason']}" for s in result["skipped"]]
        )
    if result.get("regressions"):
        doc.heading("Regressions against the previous run (p50 up > 20 %)").bullets(
            [
                f"{g['model']} {g['format']} {g['precision']} t{g['threads']} b{g['batch']}: "
                f"{g['previous_p50_ms']:.2f} -> {g['p50_ms']:.2f} ms"
                for g in result["regressions"]
            ]
        )
    _imported(doc, result)
    for name in figures:
        doc.image(name, Path(name).stem.replace("_", " "))
    if result.get("peak_note"):
        doc.paragraph(result["peak_note"])
    doc.paragraph("Machine-readable: `benchmark.json`, `benchmark.csv`.")
    return doc


def markdown(result: dict[str, Any]) -> str:
    """benchmark.md."""
    return document(result, [name for name, _ in _figure_names(result)]).markdown()


# The plots go into a folder of their own: a signed export leaves it (and the other benchmark files) out of its
# signature by name (export.sign.BENCHMARK_OUTPUTS), whatever threads and batches a run plots.
FIGURE_DIR = "benchmark_figures"


def _figure_names(result: dict[str, Any]) -> list[tuple[str, tuple[int, int] | None]]:
    names = [(f"latency_t{t}_b{b}.png", (t, b)) for t in result["threads"] for b in result["batches"]]
    names += [("size_vs_latency.png", None), ("parity_vs_speed.png", None)]
    return [(f"{FIGURE_DIR}/{name}", key) for name, key in names]


def _colour(row: dict[str, Any]) -> str:
    if row["format"].startswith("pytorch-"):
        return "#888888"
    return "#2a9d8f" if row.get("parity_status") == "pass" else "#e76f51"


def _latency_bars(plt, rows: list[dict[str, Any]], threads: int, batch: int) -> Any:
    rows = sorted(rows, key=lambda r: r["p50_ms"])
    fig, ax = plt.subplots(figsize=(8, 0.35 * len(rows) + 1.5), dpi=100)
    ax.barh(
        [f"{r['model']} {r['format']} {r['precision']}" for r in rows],
        [r["p50_ms"] for r in rows],
        xerr=[[0] * len(rows), [r["p90_ms"] - r["p50_ms"] for r in rows]],
        color=[_colour(r) for r in rows],
        capsize=3,
    )
    ax.invert_yaxis()
    ax.set_xlabel("latency per predict call, ms (bar = p50, whisker = p90)")
    ax.set_title(f"{threads} thread(s), batch {batch}: green passed parity, red failed, grey = PyTorch")
    return fig


def _scatter(plt, rows: list[dict[str, Any]], x: str, y: str, xlabel: str, ylabel: str, title: str) -> Any:
    """One marker per artifact, named in a legend beside the plot (labels on the points overlap)."""
    fig, ax = plt.subplots(figsize=(9, 5), dpi=100)
    markers = "o^sDv<>pPX*h"
    for i, r in enumerate(rows):
        ok = r.get("parity_status") in ("pass", "reference")
        ax.scatter(
            r[x],
            r[y],
            marker=markers[i % len(markers)],
            s=60,
            facecolors=_colour(r) if ok else "none",
            edgecolors=_colour(r),
            label=f"{r['model']} {r['format']} {r['precision']}" + ("" if ok else " (failed parity)"),
        )
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7, frameon=False)
    return fig


def _figures(result: dict[str, Any]) -> list[tuple[str, bytes]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in result["rows"] if r.get("p50_ms") is not None]
    first = [r for r in rows if r["threads"] == result["threads"][0] and r["batch"] == result["batches"][0]]
    figs = []
    for name, key in _figure_names(result):
        if key is not None:
            sel = [r for r in rows if (r["threads"], r["batch"]) == key]
            fig = _latency_bars(plt, sel, *key) if sel else None
        elif name.endswith("/size_vs_latency.png"):
            fig = _scatter(plt, first, "size_mb", "p50_ms", "artifact size, MB", "p50 latency, ms", "Size vs latency")
        else:
            judged = [r for r in first if r.get("auroc_delta") is not None]
            fig = _scatter(
                plt, judged, "p50_ms", "auroc_delta", "p50 latency, ms", "AUROC change vs PyTorch", "Parity vs speed"
            )
        if fig is not None:
            fig.tight_layout()
            buffer = io.BytesIO()
            fig.savefig(buffer, format="png", bbox_inches="tight")
            plt.close(fig)
            figs.append((name, buffer.getvalue()))
    return figs


def write_reports(out: Path, result: dict[str, Any], history: Path) -> dict[str, Path]:
    """Write every report atomically; append this run to the history file."""
    out.mkdir(parents=True, exist_ok=True)
    figs = _figures(result)
    doc = document(result, [name for name, _ in figs])
    paths = {
        "json": write_json(out / "benchmark.json", result),
        "md": write_text(out / "benchmark.md", doc.markdown()),
        "html": write_text(out / "benchmark.html", doc.html(images=dict(figs))),
    }
    for name, data in figs:
        paths[name] = write_with(out / name, lambda tmp, d=data: tmp.write_bytes(d))

    def write_csv(tmp: Path) -> None:
        with tmp.open("w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=CSV_FIELDS, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(result["rows"])

    paths["csv"] = write_with(out / "benchmark.csv", write_csv)
    entry = {
        "time": result["time"],
        "environment": {k: result["environment"][k] for k in ("cpu", "commit")},
        "rows": [
            {k: r.get(k) for k in ("model", "format", "precision", "threads", "batch", "p50_ms", "p90_ms")}
            for r in result["rows"]
        ],
    }
    paths["history"] = append_jsonl(history, json_safe(entry))  # a torn last line is dropped, never joined
    return paths


def previous_rows(history: Path, cpu: str) -> list[dict[str, Any]]:
    """The rows of the last history entry measured on the same CPU model."""
    last: list[dict[str, Any]] = []
    for entry in read_jsonl(history):  # torn or edited lines are skipped
        if isinstance(entry, dict) and entry.get("environment", {}).get("cpu") == cpu:
            last = entry.get("rows", [])
    return last
