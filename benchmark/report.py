"""benchmark.json / .csv / .md / .html (with plots) and the history file that spots regressions."""

from __future__ import annotations

import base64
import csv
import io
import json
from pathlib import Path
from typing import Any

from core.io import write_json, write_text, write_with

TARGETS = {
    "Android": ("tflite", "executorch", "torchscript.ptl"),
    "iOS": ("coreml",),
    "anywhere (ONNX Runtime)": ("onnx",),
}
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


def recommend(rows: list[dict[str, Any]], skipped: list[dict[str, Any]] = ()) -> list[dict[str, Any]]:
    """Per model and target: the fastest artifact that passed parity (a failed one is never chosen)."""
    picks = []
    for model in sorted({r["model"] for r in rows}):
        for target, formats in TARGETS.items():
            ok = [
                r
                for r in rows
                if r["model"] == model
                and r["format"] in formats
                and r.get("parity_status") == "pass"
                and r.get("p50_ms") is not None
            ]
            if ok:
                best = min(ok, key=lambda r: (r["p50_ms"], r["threads"], r["batch"]))
                picks.append(
                    {
                        "model": model,
                        "target": target,
                        **{
                            k: best.get(k)
                            for k in (
                                "format",
                                "precision",
                                "threads",
                                "batch",
                                "p50_ms",
                                "p90_ms",
                                "size_mb",
                                "speedup_vs_eager",
                                "auroc_delta",
                                "flips",
                                "path",
                            )
                        },
                    }
                )
            else:
                unverified = [r.get("parity_status") for r in rows if r["model"] == model and r["format"] in formats]
                unverified += ["not-run" for s in skipped if s["model"] == model and s["format"] in formats]
                reason = (
                    "converted, not run (needs macOS): measure on a Mac or iPhone"
                    if "not-run" in unverified
                    else "no artifact of these formats passed parity"
                )
                picks.append({"model": model, "target": target, "format": None, "reason": reason})
    return picks


def _fmt(v: Any, spec: str = ".2f") -> str:
    if v is None or (isinstance(v, float) and v != v):
        return "-"
    return format(v, spec)


def markdown(result: dict[str, Any]) -> str:
    env = result["environment"]
    lines = [
        f"# Benchmark: {', '.join(result['models'])}",
        "",
        f"{env['cpu']} ({', '.join(env['simd'])}), {env['logical_cores']} logical cores; torch "
        f"{env['packages'].get('torch')}, onnxruntime {env['packages'].get('onnxruntime')}, ai-edge-litert "
        f"{env['packages'].get('ai-edge-litert')}, executorch {env['packages'].get('executorch')}. "
        f"{result['runs']} timed runs after {result['warmup']} warm-up, interleaved across artifacts; "
        "latency = one `predict` call through the same runner that passed parity.",
        "",
        "## Recommended artifact per target (fastest that passed parity)",
        "",
        "| model | target | artifact | precision | threads | batch | p50 ms | x eager | size MB | dAUROC | flips |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for p in result["recommended"]:
        if p.get("format"):
            lines.append(
                f"| {p['model']} | {p['target']} | `{Path(p['path']).name}` | {p['precision']} | {p['threads']} "
                f"| {p['batch']} | {_fmt(p['p50_ms'])} | {_fmt(p['speedup_vs_eager'], '.1f')} | {_fmt(p['size_mb'])} "
                f"| {_fmt(p['auroc_delta'], '+.4f')} | {p['flips']} |"
            )
        else:
            lines.append(f"| {p['model']} | {p['target']} | none: {p['reason']} | | | | | | | | |")
    lines += [
        "",
        "## All artifacts",
        "",
        "| model | format | precision | threads | batch | p50 ms | p90 ms | p99 ms | IQR ms | x eager | load ms "
        "| first ms | peak MB | size MB | GFLOP/s | % of peak | parity |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        lines.append(
            f"| {r['model']} | {r['format']} | {r['precision']} | {r['threads']} | {r['batch']} "
            f"| {_fmt(r.get('p50_ms'))} "
            f"| {_fmt(r.get('p90_ms'))} | {_fmt(r.get('p99_ms'))} | {_fmt(r.get('iqr_ms'))} "
            f"| {_fmt(r.get('speedup_vs_eager'), '.1f')} | {_fmt(r.get('load_ms'), '.0f')} "
            f"| {_fmt(r.get('first_ms'), '.1f')} "
            f"| {_fmt(r.get('peak_mb'), '.0f')} | {_fmt(r.get('size_mb'))} | {_fmt(r.get('gflops_per_s'), '.1f')} "
            f"| {_fmt(100 * r['peak_share'] if r.get('peak_share') else None, '.1f')} | {r.get('parity_status', '-')} |"
        )
    if len(result["models"]) > 1:
        lines += [
            "",
            "## Across models (fp32, best threads, batch 1)",
            "",
            "| model | GFLOPs | eager p50 ms | fastest passing artifact | p50 ms | x eager |",
            "|---|---|---|---|---|---|",
        ]
        for model in result["models"]:
            mine = [r for r in result["rows"] if r["model"] == model and r["batch"] == min(result["batches"])]
            eager = min((r for r in mine if r["format"] == "pytorch-eager"), key=lambda r: r["p50_ms"], default=None)
            ok = [r for r in mine if r.get("parity_status") == "pass" and r["format"] != "pytorch-eager"]
            best = min(ok, key=lambda r: r["p50_ms"], default=None)
            lines.append(
                f"| {model} | {_fmt(eager and eager.get('gflops'))} | {_fmt(eager and eager['p50_ms'])} "
                f"| {(best and best['format'] + ' ' + best['precision']) or '-'} | {_fmt(best and best['p50_ms'])} "
                f"| {_fmt(best and best.get('speedup_vs_eager'), '.1f')} |"
            )
    if result.get("skipped"):
        lines += ["", "## Not timed here", ""] + [
            f"- {s['format']} {s['precision']} ({s['model']}): {s['reason']}" for s in result["skipped"]
        ]
    if result.get("regressions"):
        lines += ["", "## Regressions against the previous run (p50 up > 20 %)", ""] + [
            f"- {g['model']} {g['format']} {g['precision']} t{g['threads']} b{g['batch']}: "
            f"{g['previous_p50_ms']:.2f} -> "
            f"{g['p50_ms']:.2f} ms"
            for g in result["regressions"]
        ]
    if result.get("phone_rows"):
        lines += [
            "",
            "## Imported phone measurements",
            "",
            "| device | artifact | tool | avg ms | init ms | peak MB |",
            "|---|---|---|---|---|---|",
        ]
        for p in result["phone_rows"]:
            lines.append(
                f"| {p['device']} | {p['artifact']} | {p['tool']} | {_fmt(p.get('avg_ms'))} "
                f"| {_fmt(p.get('init_ms'))} | {_fmt(p.get('peak_mb'))} |"
            )
    lines += ["", "Plots: `benchmark.html`. Machine-readable: `benchmark.json`, `benchmark.csv`.", ""]
    return "\n".join(lines)


def _figures(result: dict[str, Any]) -> list[tuple[str, bytes]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in result["rows"] if r.get("p50_ms") is not None]
    figs = []
    for threads in result["threads"]:
        for batch in result["batches"]:
            sel = [r for r in rows if r["threads"] == threads and r["batch"] == batch]
            if not sel:
                continue
            sel.sort(key=lambda r: r["p50_ms"])
            fig, ax = plt.subplots(figsize=(8, 0.35 * len(sel) + 1.5), dpi=100)
            labels = [f"{r['model']} {r['format']} {r['precision']}" for r in sel]
            p50 = [r["p50_ms"] for r in sel]
            err = [r["p90_ms"] - r["p50_ms"] for r in sel]
            colors = [
                "#2a9d8f"
                if r.get("parity_status") == "pass"
                else "#888888"
                if r["format"] == "pytorch-eager"
                else "#e76f51"
                for r in sel
            ]
            ax.barh(labels, p50, xerr=[[0] * len(sel), err], color=colors, capsize=3)
            ax.invert_yaxis()
            ax.set_xlabel("latency per predict call, ms (bar = p50, whisker = p90)")
            ax.set_title(f"{threads} thread(s), batch {batch}: green passed parity, red failed, grey = PyTorch eager")
            fig.tight_layout()
            figs.append((f"latency_t{threads}_b{batch}.png", _png(fig)))
            plt.close(fig)
    fig, ax = plt.subplots(figsize=(7, 5), dpi=100)
    for r in rows:
        ok = r.get("parity_status") == "pass"
        ax.scatter(r["size_mb"], r["p50_ms"], marker="o" if ok else "x", color="#2a9d8f" if ok else "#e76f51")
        ax.annotate(f"{r['format']} {r['precision']}", (r["size_mb"], r["p50_ms"]), fontsize=6)
    ax.set_xlabel("artifact size, MB")
    ax.set_ylabel("p50 latency, ms")
    ax.set_title("Size vs latency (o passed parity, x failed / eager)")
    fig.tight_layout()
    figs.append(("size_vs_latency.png", _png(fig)))
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(7, 5), dpi=100)
    for r in rows:
        if r.get("auroc_delta") is None:
            continue
        ok = r.get("parity_status") == "pass"
        ax.scatter(r["p50_ms"], r["auroc_delta"], marker="o" if ok else "x", color="#2a9d8f" if ok else "#e76f51")
        ax.annotate(f"{r['format']} {r['precision']}", (r["p50_ms"], r["auroc_delta"]), fontsize=6)
    ax.axhline(0, color="0.6", lw=0.8)
    ax.set_xlabel("p50 latency, ms")
    ax.set_ylabel("AUROC change vs PyTorch")
    ax.set_title("Parity next to speed")
    fig.tight_layout()
    figs.append(("parity_vs_speed.png", _png(fig)))
    plt.close(fig)
    return figs


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def _html(result: dict[str, Any], md: str, figs: list[tuple[str, bytes]]) -> str:
    import html

    images = "\n".join(
        f'<h3>{html.escape(name)}</h3><img alt="{html.escape(name)}" src="data:image/png;base64,'
        f'{base64.b64encode(data).decode()}">'
        for name, data in figs
    )
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>Benchmark</title><style>"
        "body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
        "pre{white-space:pre-wrap;font-size:12px;background:#f6f6f6;padding:1em}img{max-width:100%}"
        "</style></head><body><h1>Benchmark</h1>"
        f"<h2>Plots</h2>{images}<h2>Tables</h2><pre>{html.escape(md)}</pre>"
        f"<h2>Environment</h2><pre>{html.escape(json.dumps(result['environment'], indent=2))}</pre></body></html>"
    )


def write_reports(out: Path, result: dict[str, Any], history: Path) -> dict[str, Path]:
    """Write every report atomically; append this run to the history file."""
    out.mkdir(parents=True, exist_ok=True)
    md = markdown(result)
    figs = _figures(result)
    paths = {
        "json": write_json(out / "benchmark.json", result),
        "md": write_text(out / "benchmark.md", md),
        "html": write_text(out / "benchmark.html", _html(result, md, figs)),
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
    history.parent.mkdir(parents=True, exist_ok=True)
    with history.open("a", encoding="utf-8") as f:
        f.write(json.dumps(entry) + "\n")
    paths["history"] = history
    return paths


def previous_rows(history: Path, cpu: str) -> list[dict[str, Any]]:
    """The rows of the last history entry measured on the same CPU model."""
    if not history.is_file():
        return []
    last: list[dict[str, Any]] = []
    for line in history.read_text(encoding="utf-8").splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue
        if entry.get("environment", {}).get("cpu") == cpu:
            last = entry["rows"]
    return last
