"""Latency statistics: percentiles, spread, throughput and speed-up, from raw timings in milliseconds."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from core.cpu import VNNI


def summarize(times_ms: Sequence[float], batch: int = 1) -> dict[str, Any]:
    """p50/p90/p99, mean, std, IQR, min/max and throughput (images/s at the median) of timings in ms."""
    t = np.asarray(times_ms, dtype=np.float64)
    if t.size == 0:
        raise ValueError("no timings to summarize")
    p25, p50, p75, p90, p99 = np.percentile(t, [25, 50, 75, 90, 99])
    return {
        "runs": int(t.size),
        "p50_ms": float(p50),
        "p90_ms": float(p90),
        "p99_ms": float(p99),
        "mean_ms": float(t.mean()),
        "std_ms": float(t.std(ddof=1)) if t.size > 1 else 0.0,
        "iqr_ms": float(p75 - p25),
        "min_ms": float(t.min()),
        "max_ms": float(t.max()),
        "throughput_per_s": float(batch * 1000.0 / p50) if p50 > 0 else float("inf"),
    }


def speedup(reference_p50: float, p50: float) -> float:
    """How many times faster than the reference (both medians, same threads and batch)."""
    return float(reference_p50 / p50) if p50 > 0 else float("inf")


def regressions(current: Sequence[dict], previous: Sequence[dict], tolerance: float = 0.2) -> list[dict]:
    """Rows whose p50 grew by more than `tolerance` versus the same key in a previous run."""
    key = ("model", "format", "precision", "threads", "batch")
    before = {tuple(r[k] for k in key): r["p50_ms"] for r in previous}
    out = []
    for r in current:
        old = before.get(tuple(r[k] for k in key))
        if old and r["p50_ms"] > old * (1 + tolerance):
            out.append(
                {**{k: r[k] for k in key}, "p50_ms": r["p50_ms"], "previous_p50_ms": old, "slowdown": r["p50_ms"] / old}
            )
    return out


UNSTABLE_TAIL = 1.5  # p90 / p50 above this: the runs were disturbed
UNSTABLE_DRIFT = 1.25  # the slowest fifth of the run's median over the fastest fifth's


def stability(times_ms: Sequence[float], chunks: int = 5) -> dict[str, Any]:
    """How steady the timings were: the p90 / p50 tail and the drift between consecutive fifths of the run
    (medians of each fifth, slowest over fastest); `unstable` when either exceeds its bound."""
    t = np.asarray(times_ms, dtype=np.float64)
    p50, p90 = np.percentile(t, [50, 90])
    parts = [np.median(part) for part in np.array_split(t, min(chunks, len(t))) if len(part)]
    tail, drift = float(p90 / p50) if p50 > 0 else 1.0, float(max(parts) / min(parts)) if min(parts) > 0 else 1.0
    return {"tail_ratio": tail, "drift_ratio": drift, "unstable": tail > UNSTABLE_TAIL or drift > UNSTABLE_DRIFT}


def unstable_rows(rows: Sequence[dict], listed: int = 5) -> list[str]:
    """Warnings for rows whose timings were unsteady (see `stability`): one per row, or, when more than
    `listed` are, one line naming the worst (the machine itself was noisy: ratios between the interleaved
    rows hold better than absolute times)."""
    bad = sorted((r for r in rows if r.get("unstable")), key=lambda r: -max(r["tail_ratio"], r["drift_ratio"]))

    def name(r: dict) -> str:
        return (
            f"{r['model']} {r['format']} {r['precision']} (threads {r['threads']}, batch {r['batch']}): p90/p50 "
            f"{r['tail_ratio']:.2f}, drift {r['drift_ratio']:.2f}"
        )

    if len(bad) > listed:
        return [
            f"{len(bad)} of {len(rows)} rows had unstable timings (p90/p50 > {UNSTABLE_TAIL} or drift > "
            f"{UNSTABLE_DRIFT}; worst {name(bad[0])}): the machine was noisy, do not trust these numbers beyond "
            "the ratios between rows, which the interleaving protects"
        ]
    return [
        f"{name(r)}: timings unstable, do not trust these numbers (another process competed for the CPU?)" for r in bad
    ]


NO_VNNI = "this CPU has no VNNI, so int8 multiply-adds are no faster than fp32 FMAs"


def int8_slower(rows: Sequence[dict], env: dict[str, Any]) -> list[str]:
    """A note for each artifact whose int8 variant is slower than the same format's fp32 one here, naming the
    cause its recorded remedy shows (run-time quantization, 16-bit activations), else what this CPU lacks (VNNI)
    with any float islands beside it, else the islands alone."""
    no_vnni = not set(env.get("simd", [])) & VNNI
    fp32 = {(r["model"], r["format"], r["threads"], r["batch"]): r["p50_ms"] for r in rows if r["precision"] == "fp32"}
    notes = []
    for r in rows:
        base = fp32.get((r["model"], r["format"], r["threads"], r["batch"]))
        if not r["precision"].startswith("int8") or base is None or r["p50_ms"] <= base:
            continue
        remedy = str(r.get("remedy") or "")
        # The artifact's recorded remedy fields first (parity.json), its remedy's words for older exports.
        bits = r.get("activation_bits") or (16 if "16x8" in remedy or "int16" in remedy else 8)
        count = r.get("float_modules")
        islands = f"{count} module(s)" if count else "modules" if count is None and "in float" in remedy else ""
        if r["precision"] == "int8-dynamic":
            why = "dynamic int8 quantizes every activation at run time, which costs more than it saves here"
        elif bits == 16:
            why = "its activations are 16-bit (the 16x8 remedy it needed for parity), which int8 kernels do not run"
        elif islands or no_vnni:
            # With no VNNI, that is named first: measured on EfficientNet-Lite0, 224 px, ExecuTorch, AVX2 EPYC, the
            # .pte with every module int8 ran slower still (14.3 ms) than the one with 4 float (12.2) and fp32
            # (10.9), one XNNPACK partition each.
            causes = [NO_VNNI] if no_vnni else []
            if islands:
                border = f"keeps {islands} in float ({remedy}), converted to and from int8 at every border"
                causes.append(f"its parity remedy {'also ' if no_vnni else ''}{border}")
            why = "; ".join(causes)
        else:
            why = "its graph lacks int8 kernels for some ops on this CPU"
        notes.append(
            f"{r['model']} {r['format']} {r['precision']} is slower than its fp32 ({r['p50_ms']:.2f} vs {base:.2f} ms, "
            f"threads {r['threads']}, batch {r['batch']}): {why}; the recommendation takes the faster passing one"
        )
    return notes
