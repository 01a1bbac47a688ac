"""Export a trained model to every format a phone runs and prove each one still ranks patients like the
PyTorch original.

    python -m export.all --model efficientnet_lite0                 # newest run of that model under runs/
    python -m export.all --model mobilenet --checkpoint runs/.../checkpoint.pt --formats onnx,tflite --out dist/
    python -m export.all --model efficientnet --precision fp32,fp16,int8    # quantized artifacts, same gates

Writes, in --out (default dist/<model>/): one artifact per format with the ModelSpec embedded and beside it
as <artifact>.spec.json, parity.json, export_report.md, roc.png, golden.json and spec.json. Exit status 1
when any requested artifact fails to export or fails its parity gate; a format that cannot run here (Core
ML off macOS) is reported as not-run and does not fail the command.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from core.errors import UserError, run_cli

DEFAULT_RUNS = Path("runs")
DEFAULT_DIST = Path("dist")
FINETUNE_IMAGES = 1024  # training images the int8-aware fine-tuning rungs distil on (a random subset)
SENSITIVITY_IMAGES = 200  # training images the int8 sensitivity ranking measures its error on


def build_parser() -> argparse.ArgumentParser:
    from export.formats import BY_KEY

    p = argparse.ArgumentParser(
        prog="python -m export.all",
        description="Export a trained melanoma model to ONNX, TorchScript, Core ML, TFLite and ExecuTorch, "
        "embed its spec, and check AUROC parity of every artifact against PyTorch.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--model", help="model name or alias, as given to python -m train")
    p.add_argument("--checkpoint", default=None, help="checkpoint.pt (default: the newest run of --model under --runs)")
    p.add_argument("--formats", default="all", help=f"comma-separated: {', '.join(BY_KEY)} (or all)")
    p.add_argument(
        "--precision",
        default="fp32",
        help="comma-separated: fp32, fp16, int8 (int8 = every int8 variant "
        "a format has: int8-dynamic, int8, int8-weights, palettized)",
    )
    p.add_argument(
        "--calibration-size",
        type=int,
        default=128,
        help="class-stratified training images used to calibrate int8 (doubled by a remedy)",
    )
    p.add_argument("--out", default=None, help="output folder (default dist/<model>/)")
    p.add_argument("--runs", default=str(DEFAULT_RUNS), help="where python -m train wrote its runs")
    p.add_argument("--golden", type=int, default=4, help="test cases in golden.json")
    p.add_argument("--limit", type=int, default=None, help="use only the first N test cases (quick checks)")
    p.add_argument("--formats-table", action="store_true", help="print the formats table (Markdown) and exit")
    return p


def newest_checkpoint(runs: Path, name: str) -> Path:
    """The most recent checkpoint.pt under runs/<name>/; UserError with the command that makes one."""
    found = sorted((runs / name).glob("*/checkpoint.pt"), key=lambda p: p.stat().st_mtime)
    if not found:
        raise UserError(
            f"no trained {name} under {runs / name}: train one first with "
            f"`python -m train --model {name}` (or give --checkpoint PATH)"
        )
    return found[-1]


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _check_artifact(
    fmt: Any, artifact: Any, precision: str, options: Any, ctx: dict[str, Any], label: str, model: Any = None
) -> dict[str, Any]:
    """Export one artifact (of `model`, default the checkpoint's) and judge its parity against the
    checkpoint's fp32 model; a failure becomes the row's status, never an exception."""
    from export import parity, runners
    from export.common import NotRunnable, artifact_size_mb, sidecar_path
    from export.formats import artifact_name
    from export.quantize import gate_for

    spec, data = ctx["spec"], ctx["data"]
    path = ctx["out"] / artifact_name(spec.name, artifact, precision)
    row: dict[str, Any] = {"format": label, "precision": precision, "path": str(path)}
    start = time.time()
    try:
        source = ctx["model"] if model is None else model
        fmt.exporter(artifact)(source, spec, ctx["example"], path, precision, options)
        embedded = fmt.load_module().read_spec(path)  # the new artifact's own spec replaces any old sidecar
        embedded.save(sidecar_path(path))
        row["export_seconds"] = round(time.time() - start, 2)
        row["size_mb"] = round(artifact_size_mb(path), 3)
        row["method"] = embedded.precision.get("method", "")
        row["spec_round_trip"] = _same_except_artifact_fields(embedded, spec)
        runner = runners.load(path)
    except NotRunnable as exc:
        row.update(status="not-run", reason=str(exc))
        return row
    except UserError as exc:
        row.update(status="fail", reason=str(exc), export_seconds=round(time.time() - start, 2))
        return row
    except Exception as exc:  # noqa: BLE001 - a converter failing must not stop the others
        first = str(exc).splitlines()[0] if str(exc) else ""
        row.update(
            status="fail", reason=f"{exc.__class__.__name__}: {first}", export_seconds=round(time.time() - start, 2)
        )
        row["traceback"] = traceback.format_exc(limit=5)
        return row
    t1 = time.time()
    prob = runner.predict(data.image, data.meta).probability.reshape(-1)
    row["predict_seconds"] = round(time.time() - t1, 2)
    row.update(parity.compare(data.target, ctx["ref_prob"], prob, spec.outputs.threshold, ctx["groups"]))
    status, reasons = parity.judge(row, gate_for(precision))
    if not row["spec_round_trip"]:
        status, reasons = "fail", [*reasons, "the spec read back differs from the one exported"]
    row.update(status=status, reason="; ".join(reasons))
    row["_prob"] = prob
    return row


def _describe(row: dict[str, Any]) -> str:
    if row["status"] == "not-run":
        return f"{row.get('export_seconds', '?')} s, {row.get('size_mb', 0):.1f} MB: {row['reason']}"
    if "auroc" not in row:
        return f"FAILED: {row['reason']}"
    return (
        f"{row['export_seconds']} s, {row['size_mb']:.1f} MB, max |dp| {row['max_abs_diff']:.1e}, AUROC "
        f"{row['auroc']:.4f} ({row['auroc_delta']:+.5f}), {row['flips']} flip(s): {row['status'].upper()}"
        + (f": {row['reason']}" if row["reason"] else "")
    )


def export_all(
    checkpoint: Path,
    out: Path,
    formats: Sequence[Any],
    precisions: Sequence[str] = ("fp32",),
    golden_count: int = 4,
    limit: int | None = None,
    calibration_size: int = 128,
) -> dict[str, Any]:
    """Export `checkpoint` to `formats` x `precisions` in `out`, run parity, write the reports."""
    from core.checkpoint import load_checkpoint
    from core.io import write_json
    from core.metrics import json_safe
    from export import parity, runners
    from export.calibration import calibration_set, training_images
    from export.common import artifact_size_mb, example_inputs
    from export.evaldata import load_test_split
    from export.golden import write_golden
    from export.quantize import CALIBRATED, REMEDIABLE, QuantOptions, ladder
    from export.report import roc_plot, write_report

    model, spec = load_checkpoint(checkpoint)
    out.mkdir(parents=True, exist_ok=True)
    spec.save(out / "spec.json")
    _say(f"loading the test split of {spec.provenance.get('data', {}).get('name', '?')} for parity ...")
    data = load_test_split(checkpoint, spec, limit=limit)
    reference = runners.TorchEagerRunner(checkpoint, model, spec)
    t0 = time.time()
    ref_prob = reference.predict(data.image, data.meta).probability.reshape(-1)
    ctx = {
        "spec": spec,
        "model": model,
        "data": data,
        "out": out,
        "ref_prob": ref_prob,
        "groups": parity.subgroups(data.table),
        "example": example_inputs(spec, batch=2),
    }
    rows: list[dict[str, Any]] = [
        {
            "format": "pytorch-eager",
            "precision": "fp32",
            "path": str(checkpoint),
            "status": "reference",
            "size_mb": artifact_size_mb(checkpoint),
            "auroc": parity.auroc(data.target, ref_prob),
            "auprc": parity.auprc(data.target, ref_prob),
            "predict_seconds": round(time.time() - t0, 2),
        }
    ]
    curves = {"pytorch-eager": ref_prob}
    _say(f"reference (PyTorch eager): AUROC {rows[0]['auroc']:.4f} on {len(data)} test cases")
    calibrations: dict[int, Any] = {}
    tuned: dict[tuple[str, ...], tuple[Any, dict[str, Any]]] = {}

    def calibration(factor: int):
        if factor not in calibrations:
            size = calibration_size * factor
            _say(f"loading {size} class-stratified training images for calibration ...")
            calibrations[factor] = calibration_set(checkpoint, spec, size)
        return calibrations[factor]

    ranked: list[tuple[str, float]] = []

    def sensitive_blocks(count: int) -> tuple[str, ...]:
        """The `count` blocks int8 hurts most (ranked once, on the PT2E simulation; shared by formats)."""
        if not ranked:
            from export.quantize import sensitive_modules
            from export.sensitivity import rank_blocks

            images = training_images(checkpoint, spec, SENSITIVITY_IMAGES, seed=1)
            _say(f"ranking blocks by simulated int8 error on {len(images)} training images ...")
            ranked.extend(rank_blocks(model, calibration(1), images, tuple(sensitive_modules(model))))
            _say("  most int8-sensitive: " + ", ".join(f"{b} ({e:.3f})" for b, e in ranked[:count]))
        return tuple(block for block, _ in ranked[:count])

    def finetuned(keep: tuple[str, ...]) -> tuple[Any, dict[str, Any]]:
        """The int8-aware fine-tuned model for this set of float modules (made once, shared by formats)."""
        if keep not in tuned:
            from export.finetune import finetune_for_int8

            images = training_images(checkpoint, spec, FINETUNE_IMAGES)
            _say(f"int8-aware weight fine-tuning on {len(images)} training images (distilled from fp32) ...")
            tuned[keep] = finetune_for_int8(model, images.image, images.meta, keep)
            report = tuned[keep][1]
            _say(
                f"  rms logit error of the int8-rounded weights {report['rms_logit_error_before']:.4f} -> "
                f"{report['rms_logit_error_after']:.4f} ({report['seconds']} s)"
            )
        return tuned[keep]

    for fmt in formats:
        for artifact in fmt.artifacts:
            label = fmt.key if len(fmt.artifacts) == 1 else f"{fmt.key}{artifact.suffix}"
            for precision in (p for p in precisions if p in fmt.precisions):
                _say(f"[{label} {precision}] exporting ...")
                if precision not in REMEDIABLE:
                    row = _check_artifact(fmt, artifact, precision, QuantOptions(), ctx, label)
                else:
                    attempts, tried = [], []
                    for remedy in ladder(model, precision in CALIBRATED, fmt.int16_activations):
                        cal = calibration(remedy.calibration_factor) if precision in CALIBRATED else None
                        keep = tuple(remedy.keep_float(model))
                        if remedy.sensitive_blocks:
                            keep += sensitive_blocks(remedy.sensitive_blocks)
                        source, report = finetuned(keep) if remedy.finetune else (None, None)
                        options = QuantOptions(cal, keep, remedy.name, remedy.activation_bits, report)
                        row = _check_artifact(fmt, artifact, precision, options, ctx, label, source)
                        row["remedy"] = remedy.name
                        if "auroc" in row:
                            tried.append((options, source, row))
                        attempts.append(
                            {k: row.get(k) for k in ("status", "reason", "auroc_delta", "flips", "max_abs_diff")}
                            | {"remedy": remedy.name}
                        )
                        if row["status"] != "fail" or not tried:
                            break  # passed, not runnable here, or the format cannot export this model at all
                        _say(f"[{label} {precision}] remedy '{remedy.name}' failed ({row['reason']}); next")
                    if row["status"] == "fail" and tried:
                        # Keep the closest miss on disk, not merely the last rung tried (which may have crashed
                        # after writing its artifact).
                        best = min(range(len(tried)), key=lambda i: (tried[i][2]["flips"], -tried[i][2]["auroc_delta"]))
                        if tried[best][2] is not row:
                            options, source, _ = tried[best]
                            row = _check_artifact(fmt, artifact, precision, options, ctx, label, source)
                            row["remedy"] = options.remedy
                        row["reason"] += "; no remedy passed the gate (kept the closest miss)"
                    row["attempts"] = attempts
                rows.append(row)
                if "_prob" in row:
                    curves[label if precision == "fp32" else f"{label} {precision}"] = row.pop("_prob")
                _say(f"[{label} {precision}] {_describe(row)}")
    _add_size_reduction(rows)
    data_info = spec.provenance.get("data", {})
    summary = json_safe(
        {
            "model": spec.name,
            "checkpoint": str(checkpoint),
            "weights_sha256": spec.weights_sha256,
            "data": data_info.get("name", "?"),
            "n": len(data),
            "n_positive": int(data.target.sum()),
            "threshold": spec.outputs.threshold,
            "threshold_rule": spec.outputs.threshold_rule,
            "gates": parity.gates_as_dict(),
            "rows": rows,
            "recommended": recommend(rows),
        }
    )
    write_json(out / "parity.json", summary)
    roc_plot(out / "roc.png", data.target, curves)
    write_report(out / "export_report.md", summary)
    if golden_count > 0:
        artifacts = {Path(r["path"]).name: runners.load(r["path"]) for r in rows[1:] if "auroc" in r}
        write_golden(out, spec, data.table, reference, golden_count, artifacts)
    return summary


def _add_size_reduction(rows: list[dict[str, Any]]) -> None:
    fp32 = {r["format"]: r.get("size_mb") for r in rows if r["precision"] == "fp32"}
    for r in rows:
        base = fp32.get(r["format"])
        if base and r.get("size_mb"):
            r["size_reduction"] = round(base / r["size_mb"], 2)


def recommend(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per format: the smallest artifact that passed its gate (a failed or unverified one never is)."""
    chosen: dict[str, dict[str, Any]] = {}
    for r in rows:
        if r["format"] == "pytorch-eager":
            continue
        if r["status"] == "pass" and (r["format"] not in chosen or r["size_mb"] < chosen[r["format"]]["size_mb"]):
            chosen[r["format"]] = {
                "path": r["path"],
                "precision": r["precision"],
                "size_mb": r["size_mb"],
                "auroc_delta": r.get("auroc_delta"),
                "flips": r.get("flips"),
            }
    for r in rows:
        if r["format"] != "pytorch-eager" and r["format"] not in chosen:
            chosen[r["format"]] = {
                "path": None,
                "precision": None,
                "reason": "no artifact of this format passed parity on this machine",
            }
    return chosen


def _same_except_artifact_fields(embedded: Any, spec: Any) -> bool:
    """The spec read back equals the exported one, apart from the per-artifact layout and precision."""
    a, b = json.loads(embedded.to_json()), json.loads(spec.to_json())
    for d in (a, b):
        d["image"].pop("layout")
        d.pop("precision")
    return a == b


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `python -m export.all`."""
    args = build_parser().parse_args(argv)
    from export.formats import markdown_table, parse_formats

    if args.formats_table:
        print(markdown_table())
        return 0
    if not args.model and not args.checkpoint:
        raise UserError("--model is required (or --checkpoint PATH): e.g. --model efficientnet_lite0")
    formats = parse_formats(args.formats)
    from export.quantize import parse_precisions

    precisions = parse_precisions(args.precision)
    if not any(p in f.precisions for f in formats for p in precisions):
        raise UserError(
            f"none of {', '.join(f.key for f in formats)} has precision {args.precision}: see --formats-table"
        )
    if args.golden < 0 or (args.limit is not None and args.limit < 1) or args.calibration_size < 1:
        raise UserError("--golden must be >= 0, --limit >= 1 and --calibration-size >= 1")
    from core import zoo

    name = zoo.resolve_name(args.model) if args.model else None
    checkpoint = Path(args.checkpoint) if args.checkpoint else newest_checkpoint(Path(args.runs), name)
    from core.checkpoint import read_checkpoint

    spec_name = read_checkpoint(checkpoint)["spec"]["name"]
    if name and spec_name != name:
        raise UserError(f"{checkpoint} holds a {spec_name} model, not {name}: fix --model or --checkpoint")
    out = Path(args.out) if args.out else DEFAULT_DIST / spec_name
    _say(f"exporting {checkpoint} -> {out}/ ({', '.join(f.key for f in formats)}; {', '.join(precisions)})")
    summary = export_all(checkpoint, out, formats, precisions, args.golden, args.limit, args.calibration_size)
    failed = [r for r in summary["rows"] if r["status"] == "fail"]
    counts = {s: sum(r["status"] == s for r in summary["rows"]) for s in ("pass", "fail", "not-run")}
    _say(
        f"{counts['pass']} passed, {counts['fail']} failed, {counts['not-run']} not run here; "
        f"report: {out / 'export_report.md'}"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
