"""Latency, size and memory of every exported artifact next to PyTorch eager, with a recommendation.

    python -m benchmark --model efficientnet_lite0                     # artifacts in dist/<model>/ (export.all)
    python -m benchmark --model efficientnet,mnasnet,mobilenet,shufflenet --threads 1,2 --batch 1,8
    python -m benchmark --model efficientnet_lite0 --import-phone pixel8=benchmark_model.log

Reads each model's parity.json (what export.all verified), times every artifact that runs here through the
same runners, interleaved, and writes benchmark.{json,csv,md,html}, plots and a history line to --out
(default: beside the artifacts, or dist/benchmark/ for several models).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from core.errors import UserError, run_cli


def _ints(text: str, flag: str) -> list[int]:
    try:
        values = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise UserError(f"{flag} takes comma-separated positive integers, got {text!r}") from None
    if not values or any(v < 1 for v in values):
        raise UserError(f"{flag} takes comma-separated positive integers, got {text!r}")
    return values


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m benchmark",
        description="Benchmark exported melanoma models (latency, size, memory) against PyTorch eager.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--model", required=False, help="model name(s), comma-separated, as given to export.all")
    p.add_argument("--artifacts", default=None, help="artifact folder (default dist/<model>/); one model only")
    p.add_argument("--threads", default="2", help="comma-separated thread counts")
    p.add_argument("--batch", default="1", help="comma-separated batch sizes")
    p.add_argument("--runs", type=int, default=50, help="timed runs per artifact (interleaved)")
    p.add_argument("--warmup", type=int, default=5, help="untimed runs per artifact first")
    p.add_argument("--out", default=None, help="report folder (default: the artifact folder, or dist/benchmark)")
    p.add_argument("--no-memory", action="store_true", help="skip the per-artifact peak-memory subprocesses")
    p.add_argument(
        "--import-phone",
        action="append",
        default=[],
        metavar="DEVICE=LOG",
        help="add real phone numbers from a LiteRT benchmark_model or ExecuTorch runner log",
    )
    return p


def _candidates(model: str, folder: Path) -> tuple[list[Any], dict[str, Any]]:
    from benchmark.measure import Candidate

    parity_file = folder / "parity.json"
    if not parity_file.is_file():
        raise UserError(
            f"{parity_file} not found: export first with `python -m export.all --model {model}` "
            "(or give --artifacts DIR)"
        )
    summary = json.loads(parity_file.read_text(encoding="utf-8"))
    out = []
    for row in summary["rows"]:
        path = Path(row["path"])
        if not path.exists():
            continue
        parity = {k: row.get(k) for k in ("status", "auroc_delta", "flips", "max_abs_diff", "size_mb")}
        out.append(Candidate(summary["model"], row["format"], row["precision"], path, parity))
    return out, summary


def benchmark_model(
    model: str, folder: Path, threads: list[int], batches: list[int], runs: int, warmup: int, memory: bool
) -> tuple[list[dict], list[dict]]:
    """Rows for one model across threads x batch; and the artifacts that could not be timed."""
    import numpy as np

    from benchmark import measure
    from benchmark.env import fingerprint, peak_gflops
    from benchmark.stats import speedup, summarize
    from core.checkpoint import load_checkpoint
    from export.common import artifact_size_mb

    env = fingerprint(threads)
    rows, skipped = [], []
    candidates, summary = _candidates(model, folder)
    eager_model, spec = load_checkpoint(Path(summary["checkpoint"]))
    size = spec.image.size
    for t in threads:
        measure.set_threads(t)
        for b in batches:
            # NOTE: content does not change latency; valid inputs (RGB in [0, 1], an encoded patient) do.
            image = np.random.default_rng(0).random((b, 3, size, size), dtype=np.float32)
            meta = np.repeat(spec.encoder().encode(55, "female", "torso")[None], b, axis=0)
            fresh = [measure.Candidate(c.model, c.format, c.precision, c.path, c.parity) for c in candidates]
            print(f"[{model}] threads {t}, batch {b}: loading {len(fresh)} artifacts ...", file=sys.stderr, flush=True)
            for c in fresh:
                measure.load(c, t)
            start = time.time()
            measure.measure(fresh, image, meta, runs, warmup)
            print(
                f"[{model}] threads {t}, batch {b}: timed in {time.time() - start:.0f} s", file=sys.stderr, flush=True
            )
            import torch

            flops = measure.count_flops(eager_model, torch.from_numpy(image), torch.from_numpy(meta))
            eager = next((c for c in fresh if c.format == "pytorch-eager" and c.times), None)
            eager_p50 = summarize(eager.times, b)["p50_ms"] if eager else None
            peak = peak_gflops(env, t)
            for c in fresh:
                if c.skipped or not c.times:
                    if t == threads[0] and b == batches[0]:
                        skipped.append(
                            {
                                "model": model,
                                "format": c.format,
                                "precision": c.precision,
                                "reason": c.skipped or "no timings",
                            }
                        )
                    continue
                stats = summarize(c.times, b)
                gflops_per_s = flops / 1e9 / (stats["p50_ms"] / 1000)
                row = {
                    "model": model,
                    "format": c.format,
                    "precision": c.precision,
                    "threads": t,
                    "batch": b,
                    **stats,
                    "speedup_vs_eager": speedup(eager_p50, stats["p50_ms"]) if eager_p50 else None,
                    "load_ms": c.load_ms,
                    "first_ms": c.first_ms,
                    "size_mb": round(artifact_size_mb(c.path), 3),
                    "gflops": flops / 1e9,
                    "gflops_per_s": gflops_per_s,
                    "peak_share": gflops_per_s / peak if peak else None,
                    "parity_status": c.parity.get("status"),
                    "auroc_delta": c.parity.get("auroc_delta"),
                    "flips": c.parity.get("flips"),
                    "path": str(c.path),
                }
                if memory and t == threads[0]:
                    row["peak_mb"] = measure.peak_memory_mb(c.path, t, b)
                rows.append(row)
    return rows, skipped


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `python -m benchmark`."""
    args = build_parser().parse_args(argv)
    if not args.model:
        raise UserError("--model is required: e.g. --model efficientnet_lite0 (after python -m export.all)")
    from core import zoo

    models = [zoo.resolve_name(m) for m in args.model.split(",") if m.strip()]
    threads, batches = _ints(args.threads, "--threads"), _ints(args.batch, "--batch")
    if args.runs < 3 or args.warmup < 0:
        raise UserError("--runs must be at least 3 and --warmup at least 0")
    if args.artifacts and len(models) > 1:
        raise UserError("--artifacts names one model's folder: give one --model, or leave --artifacts out")
    phones = [_parse_phone_arg(a) for a in args.import_phone]
    from benchmark.env import fingerprint
    from benchmark.phone import parse_log
    from benchmark.report import previous_rows, recommend, write_reports
    from benchmark.stats import regressions
    from core.metrics import json_safe

    folders = {m: Path(args.artifacts) if args.artifacts else Path("dist") / m for m in models}
    out = Path(args.out) if args.out else (folders[models[0]] if len(models) == 1 else Path("dist") / "benchmark")
    rows, skipped = [], []
    for m in models:
        r, s = benchmark_model(m, folders[m], threads, batches, args.runs, args.warmup, not args.no_memory)
        rows += r
        skipped += s
    env = fingerprint(threads)
    history = out / "benchmark_history.jsonl"
    result = json_safe(
        {
            "time": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            "models": models,
            "threads": threads,
            "batches": batches,
            "runs": args.runs,
            "warmup": args.warmup,
            "environment": env,
            "rows": rows,
            "skipped": skipped,
            "recommended": recommend(rows, skipped),
            "regressions": regressions(rows, previous_rows(history, env["cpu"])),
            "phone_rows": [parse_log(path, device) for device, path in phones],
        }
    )
    paths = write_reports(out, result, history)
    for pick in result["recommended"]:
        if pick.get("format"):
            print(
                f"{pick['model']} on {pick['target']}: {Path(pick['path']).name} ({pick['precision']}), p50 "
                f"{pick['p50_ms']:.2f} ms, {pick['speedup_vs_eager']:.1f}x eager, dAUROC {pick['auroc_delta']:+.5f}"
            )
        else:
            print(f"{pick['model']} on {pick['target']}: {pick['reason']}")
    print(f"report: {paths['md']} and {paths['html']}")
    return 0


def _parse_phone_arg(text: str) -> tuple[str, Path]:
    device, sep, path = text.partition("=")
    if not sep or not device or not Path(path).is_file():
        raise UserError(f"--import-phone takes DEVICE=LOGFILE with an existing log file, got {text!r}")
    return device, Path(path)


if __name__ == "__main__":
    sys.exit(run_cli(main))
