"""Latency, size and memory of every exported artifact next to PyTorch eager, with a recommendation.

    python -m benchmark --model efficientnet_lite0                     # artifacts in dist/<model>/ (export.all)
    python -m benchmark --model efficientnet,mnasnet,mobilenet,shufflenet --threads 1,2 --batch 1,8
    python -m benchmark --model efficientnet_lite0 --import-phone pixel8=benchmark_model.log

Reads each model's parity.json (what export.all verified) and times the artifacts it lists from the folder it
was given, after checking that each file is the one parity checked (same sha256), through the same runners,
interleaved (with --trust KEY.pub, after each export folder's signature verified: export.sign). Writes
benchmark.{json,csv,md,html}, plots and a history line to --out (default: beside the
artifacts, or dist/benchmark/ for several models); runtime output goes to benchmark.log there.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
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
    p.add_argument(
        "--artifacts", default=None, help="artifact folder (default dist/<model>/); one model only, or alone"
    )
    p.add_argument(
        "--artifacts-of",
        action="append",
        default=[],
        metavar="MODEL=DIR",
        help="the artifact folder of one of several models (repeat per model)",
    )
    p.add_argument(
        "--compile",
        action="store_true",
        help="add PyTorch under torch.compile (inductor) as a second reference row (compiles for a minute or more)",
    )
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
    p.add_argument(
        "--import-web",
        action="append",
        default=[],
        metavar="JSON",
        help="add headless-browser rows (litert-web, onnxruntime-web) written by web_demo/bench.py",
    )
    p.add_argument(
        "--trust",
        default=None,
        metavar="PUBLIC_KEY",
        help="time only export folders signed with this key (PEM; export.sign): each folder's model.sig and "
        "every file in it are verified first",
    )
    p.add_argument("--verbose", action="store_true", help="show the runtimes' own output instead of logging it")
    return p


def candidates(model: str, folder: Path) -> tuple[list[Any], list[dict[str, Any]], dict[str, Any]]:
    """The artifacts parity.json lists, read from `folder`; rows that cannot be timed, with the reason.

    Raises UserError when a file is not the one parity checked (its sha256 differs): its numbers would
    describe an artifact that was never verified.
    """
    from benchmark.measure import Candidate
    from core.parity_file import ParityReport

    report = ParityReport.load(
        folder, hint=f"export first with `python -m export.all --model {model}` (or give --artifacts DIR)"
    )
    found, skipped = [], []
    for row in report.rows:
        skip = {"model": report.model, "format": row["format"], "precision": row["precision"]}
        if row["status"] == "reference" and not row.get("file"):
            origin = report.data.get("source") or {}
            if origin.get("kind") == "memory":
                reason = "the model was exported from memory (export.api.export_model): no file to rebuild PyTorch from"
                skipped.append(skip | {"reason": reason})
                continue
            # --module without --weights: the factory builds the model; the spec stands in for its file
            found.append(
                Candidate(report.model, row["format"], row["precision"], folder / "spec.json", {"status": "reference"})
            )
            continue
        if not row.get("file") or row["status"] == "unsupported":
            skipped.append(skip | {"reason": row.get("reason") or "no artifact was written"})
            continue
        if not report.path_of(row).exists():
            skipped.append(skip | {"reason": f"{report.path_of(row)} is missing"})
            continue
        if not row.get("sha256") and row["status"] != "pass":
            reason = f"its export failed before it was verified ({row.get('reason') or row['status']})"
            skipped.append(skip | {"reason": reason})
            continue
        path = report.verified(row)
        keys = ("status", "auroc_delta", "flips", "max_abs_diff", "size_mb", "remedy", "float_modules")
        parity = {k: row.get(k) for k in (*keys, "activation_bits", "finetuned")}
        found.append(Candidate(report.model, row["format"], row["precision"], path, parity))
    summary = report.data
    return found, skipped, summary


def benchmark_model(
    model: str,
    folder: Path,
    threads: list[int],
    batches: list[int],
    runs: int,
    warmup: int,
    memory: bool,
    console,
    compiled: bool = False,
) -> tuple[list[dict], list[dict]]:
    """Rows for one model across threads x batch; and the artifacts that could not be timed."""
    import numpy as np
    import torch

    from benchmark import measure
    from benchmark.env import fingerprint, peak_gflops
    from benchmark.stats import speedup
    from core.spec import ModelSpec
    from export import runners
    from export.common import sample_meta
    from export.sources import model_from_origin

    env = fingerprint(threads)
    rows, (listed, skipped, summary) = [], candidates(model, folder)
    spec = ModelSpec.load(folder / "spec.json")
    origin = summary.get("source") or {"kind": "checkpoint", "checkpoint": summary["checkpoint"]}
    try:  # the PyTorch reference, rebuilt as it was exported (a checkpoint, or the user's own module)
        eager_model = model_from_origin(origin, spec)
    except UserError as exc:
        eager_model = None
        for c in [c for c in listed if c.format == "pytorch-eager"]:
            listed.remove(c)
            skipped.append({"model": model, "format": c.format, "precision": c.precision, "reason": str(exc)})
    if eager_model is not None and origin.get("kind") != "checkpoint":
        for c in listed:
            if c.format == "pytorch-eager":
                c.factory = lambda threads, path=c.path: runners.TorchEagerRunner(path, eager_model, spec)
    if compiled and eager_model is not None:
        path = Path(summary["checkpoint"]) if summary.get("checkpoint") else folder / "spec.json"
        reference = measure.Candidate(summary["model"], "pytorch-compiled", "fp32", path, {"status": "reference"})
        if origin.get("kind") != "checkpoint":
            reference.factory = lambda threads: runners.TorchCompiledRunner(reference.path, eager_model, spec)
        listed.insert(1, reference)
    for t in threads:
        measure.set_threads(t)
        for b in batches:
            # NOTE: content does not change latency; valid inputs (RGB in [0, 1], an encoded patient) do.
            image = np.random.default_rng(0).random((b, 3, spec.image.size, spec.image.size), dtype=np.float32)
            meta = sample_meta(spec, b)
            fresh = [
                measure.Candidate(c.model, c.format, c.precision, c.path, c.parity, factory=c.factory) for c in listed
            ]
            console.say(f"[{model}] threads {t}, batch {b}: loading {len(fresh)} artifacts ...")
            with console.captured():
                for c in fresh:
                    measure.load(c, t)
            start = time.time()
            with console.captured():
                measure.measure(fresh, image, meta, runs, warmup)
            console.say(f"[{model}] threads {t}, batch {b}: timed in {time.time() - start:.0f} s")
            flops = (
                measure.count_flops(eager_model, torch.from_numpy(image), torch.from_numpy(meta))
                if eager_model is not None
                else None
            )
            eager = next((c for c in fresh if c.format == "pytorch-eager" and c.times), None)
            eager_p50 = float(np.median(eager.times)) if eager else None
            for c in fresh:
                if c.skipped or not c.times:
                    if t == threads[0] and b == batches[0]:
                        reason = c.skipped or "no timings"
                        skipped.append({"model": model, "format": c.format, "precision": c.precision, "reason": reason})
                    continue
                row = measure.row(c, t, b, flops, peak_gflops(env, t, c.precision))
                row["speedup_vs_eager"] = speedup(eager_p50, row["p50_ms"]) if eager_p50 else None
                if memory and t == threads[0] and c.factory is None:
                    with console.captured():
                        row["peak_mb"] = measure.peak_memory_mb(c.path, t, b)
                rows.append(row)
    return rows, skipped


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `python -m benchmark`."""
    args = build_parser().parse_args(argv)
    if not args.model and not args.artifacts:
        raise UserError(
            "--model or --artifacts DIR is required: e.g. --model efficientnet_lite0 (after python -m export.all)"
        )
    from core import zoo
    from core.parity_file import ParityReport

    if args.model:
        models = [zoo.resolve_name(m) for m in args.model.split(",") if m.strip()]
    else:  # an export folder alone, e.g. of a model trained elsewhere: its name is the one parity.json records
        _verify(args, Path(args.artifacts), lock=True)  # before parity.json is read (again under the locks)
        models = [ParityReport.load(Path(args.artifacts), hint="give a folder python -m export.all wrote").model]
    threads, batches = _ints(args.threads, "--threads"), _ints(args.batch, "--batch")
    if args.runs < 3 or args.warmup < 0:
        raise UserError("--runs must be at least 3 and --warmup at least 0")
    if args.artifacts and len(models) > 1:
        raise UserError("--artifacts names one model's folder: give one --model, or leave --artifacts out")
    from benchmark.phone import parse_log, parse_web
    from core.io import exclusive

    # Imported logs are checked before anything is timed: a bad one fails in a second, not after the run.
    phones = [parse_log(path, device) for device, path in map(_parse_phone_arg, args.import_phone)]
    web = [row for path in args.import_web for row in parse_web(Path(path))]
    folders = {m: Path(args.artifacts) if args.artifacts else Path("dist") / m for m in models}
    for entry in args.artifacts_of:
        name, sep, folder = entry.partition("=")
        if not sep or zoo.resolve_name(name) not in folders:
            raise UserError(f"--artifacts-of takes MODEL=DIR for a model named in --model, got {entry!r}")
        folders[zoo.resolve_name(name)] = Path(folder)
    out = Path(args.out) if args.out else (folders[models[0]] if len(models) == 1 else Path("dist") / "benchmark")
    with contextlib.ExitStack() as locks:
        # Held for the whole run: the reports' folder alone (a second benchmark writing it is refused), the
        # artifact folders shared (an export swapping one in while its artifacts are timed is refused; other
        # benchmarks reading it are not). export.all takes the same locks; exclusive() refuses an --out under a file.
        out = out.resolve()
        locks.enter_context(exclusive(out, "benchmark"))
        for folder in dict.fromkeys(f.resolve() for f in folders.values()):
            if folder != out:
                locks.enter_context(exclusive(folder, "benchmark", shared=True))
        for folder in folders.values():  # before anything in them is read
            _verify(args, folder, lock=False)  # the locks above are held
        out.mkdir(parents=True, exist_ok=True)
        return _run(args, models, folders, out, threads, batches, phones, web)


def _verify(args: argparse.Namespace, folder: Path, lock: bool) -> None:
    """With --trust: the folder's signature and every file in it (export.sign.verify_folder)."""
    if not args.trust:
        return
    from export.sign import verify_folder

    statement = verify_folder(folder, Path(args.trust), lock=lock)
    print(f"{folder}: signature verified ({len(statement.resources)} files)", file=sys.stderr)


def _run(
    args: argparse.Namespace,
    models: list[str],
    folders: dict[str, Path],
    out: Path,
    threads: list[int],
    batches: list[int],
    phones: list[dict[str, Any]],
    web: list[dict[str, Any]],
) -> int:
    from benchmark.env import PEAK_NOTE, fingerprint, machine_load
    from benchmark.report import previous_rows, recommend, write_reports
    from benchmark.stats import int8_slower, regressions, unstable_rows
    from core.console import Console
    from core.metrics import json_safe

    rows, skipped, load_before = [], [], machine_load()
    with Console(out / "benchmark.log", verbose=args.verbose) as console:
        for m in models:
            r, s = benchmark_model(
                m, folders[m], threads, batches, args.runs, args.warmup, not args.no_memory, console, args.compile
            )
            rows += r
            skipped += s
    env = fingerprint(threads)
    history = out / "benchmark_history.jsonl"
    warnings = unstable_rows(rows) + [w for w in (load_before, machine_load()) if w]
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
            "phone_rows": phones,
            "web_rows": web,
            "warnings": list(dict.fromkeys(warnings)),
            "notes": int8_slower(rows, env),
            "peak_note": PEAK_NOTE,
        }
    )
    paths = write_reports(out, result, history)
    _print_summary(result, paths)
    return 0


def _print_summary(result: dict[str, Any], paths: dict[str, Path]) -> None:
    for pick in result["recommended"]:
        if pick.get("format"):
            print(
                f"{pick['model']} on {pick['target']}: {Path(pick['path']).name} ({pick['precision']}), p50 "
                f"{pick['p50_ms']:.2f} ms, {pick['speedup_vs_eager']:.1f}x eager, dAUROC {pick['auroc_delta']:+.5f}"
            )
        else:
            print(f"{pick['model']} on {pick['target']}: {pick['reason']}")
    for skip in result["skipped"]:
        if " has no " not in skip["reason"]:  # pairs a format does not offer are listed in the report only
            where = f"{skip['format']} {skip['precision']} ({skip['model']})"
            print(f"not timed: {where}: {skip['reason']}", file=sys.stderr)
    for note in result["notes"]:
        print(f"note: {note}", file=sys.stderr)
    for warning in result["warnings"]:
        print(f"WARNING: {warning}", file=sys.stderr)
    print(f"report: {paths['md']} and {paths['html']}")


def _parse_phone_arg(text: str) -> tuple[str, Path]:
    device, sep, path = text.partition("=")
    if not sep or not device or not Path(path).is_file():
        raise UserError(f"--import-phone takes DEVICE=LOGFILE with an existing log file, got {text!r}")
    return device, Path(path)


if __name__ == "__main__":
    sys.exit(run_cli(main))
