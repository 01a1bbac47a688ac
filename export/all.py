"""Export a trained model to every format a phone runs and prove each one still ranks patients like the
PyTorch original.

    python -m export.all --model efficientnet_lite0                 # newest run of that model under runs/
    python -m export.all --model mobilenet --checkpoint runs/.../checkpoint.pt --formats onnx,tflite --out dist/m
    python -m export.all --model efficientnet --precision fp32,fp16,int8    # quantized artifacts, same gates

Writes, in --out (default dist/<model>/): one artifact per format with the ModelSpec embedded and beside it
as <artifact>.spec.json, parity.json, export_report.md / .html, roc.png, golden.json + golden/, spec.json and
export.log (what the converters printed). The folder is built beside --out and swapped in whole when the run
ends, so an interrupted export leaves the previous one intact. Exit status 0 when every requested format
has an artifact that passed its gate at every requested precision (a format that cannot run here, or has no
such precision, is reported and does not count); 1 otherwise, or with --strict when any row failed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from pathlib import Path
from typing import Any

from core.errors import UserError, run_cli

DEFAULT_RUNS = Path("runs")
DEFAULT_DIST = Path("dist")
MARKERS = ("parity.json", "golden.json", "export_report.md")  # what makes a folder an earlier export


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
    p.add_argument("--overwrite", action="store_true", help="replace an earlier export in --out")
    p.add_argument("--runs", default=str(DEFAULT_RUNS), help="where python -m train wrote its runs")
    p.add_argument("--golden", type=int, default=4, help="test cases in golden.json")
    p.add_argument("--limit", type=int, default=None, help="use only the first N test cases (quick checks)")
    p.add_argument("--strict", action="store_true", help="exit 1 when any artifact tried failed, remedied or not")
    p.add_argument("--verbose", action="store_true", help="show the converters' own output instead of logging it")
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


class Judge:
    """Exports one artifact at a time into `out` and judges it against the checkpoint's PyTorch model on the
    test split; keeps each artifact's probabilities (for the ROC plot) and runner (for the golden vectors)."""

    def __init__(self, model: Any, spec: Any, data: Any, reference: Any, out: Path, console: Any):
        from export import parity
        from export.common import example_inputs

        self.model, self.spec, self.data, self.out, self.console = model, spec, data, out, console
        self.reference = reference.predict(data.image, data.meta).probability.reshape(-1)
        self.groups = parity.subgroups(data.table)
        self.example = example_inputs(spec, batch=2)
        self.curves: dict[str, Any] = {"pytorch-eager": self.reference}
        self.runners: dict[str, Any] = {}

    def reference_row(self, checkpoint: Path) -> dict[str, Any]:
        from core.io import sha256_file
        from export import parity
        from export.common import artifact_size_mb

        return {
            "format": "pytorch-eager",
            "precision": "fp32",
            "file": str(checkpoint),
            "sha256": sha256_file(checkpoint),
            "status": "reference",
            "size_mb": artifact_size_mb(checkpoint),
            "auroc": parity.auroc(self.data.target, self.reference),
            "auprc": parity.auprc(self.data.target, self.reference),
        }

    def check(self, fmt: Any, artifact: Any, precision: str, options: Any, model: Any = None) -> dict[str, Any]:
        """Export, run the format's checker, read the spec back, predict and judge; failures become the row."""
        from export.common import NotRunnable
        from export.formats import artifact_name

        path = self.out / artifact_name(self.spec.name, artifact, precision)
        row: dict[str, Any] = {"format": fmt.label(artifact), "precision": precision, "file": path.name}
        start = time.time()
        try:
            with self.console.captured():
                runner = self._export(fmt, artifact, precision, options, model, path, row)
        except NotRunnable as exc:
            return row | {"status": "not-run", "reason": str(exc)}
        except UserError as exc:
            return row | {"status": "fail", "reason": str(exc), "export_seconds": round(time.time() - start, 2)}
        except Exception as exc:  # noqa: BLE001 - a converter failing must not stop the others
            first = str(exc).splitlines()[0] if str(exc) else ""
            row |= {"status": "fail", "reason": f"{exc.__class__.__name__}: {first}"}
            return row | {"export_seconds": round(time.time() - start, 2), "traceback": traceback.format_exc(limit=5)}
        return self._judge(runner, row, precision)

    def _export(self, fmt: Any, artifact: Any, precision: str, options: Any, model: Any, path: Path, row: dict) -> Any:
        from core.io import sha256_file
        from export import runners
        from export.common import artifact_size_mb, sidecar_path

        start = time.time()
        fmt.exporter(artifact)(model or self.model, self.spec, self.example, path, precision, options)
        fmt.load_module().check(path)  # the format's own strictest checker, before anything is judged
        embedded = fmt.load_module().read_spec(path)  # the new artifact's own spec replaces any old sidecar
        embedded.save(sidecar_path(path))
        row["export_seconds"] = round(time.time() - start, 2)
        row["size_mb"] = round(artifact_size_mb(path), 3)
        row["sha256"] = sha256_file(path)
        row["method"] = embedded.precision.get("method", "")
        row["spec_round_trip"] = _same_except_artifact_fields(embedded, self.spec)
        return runners.load(path)

    def _judge(self, runner: Any, row: dict[str, Any], precision: str) -> dict[str, Any]:
        from export import parity

        start = time.time()
        prob = runner.predict(self.data.image, self.data.meta).probability.reshape(-1)
        row["predict_seconds"] = round(time.time() - start, 2)
        row.update(parity.compare(self.data.target, self.reference, prob, self.spec.outputs.threshold, self.groups))
        status, reasons = parity.judge(row, parity.gate_for(precision))
        if not row["spec_round_trip"]:
            status, reasons = "fail", [*reasons, "the spec read back differs from the one exported"]
        self.curves[row["format"] if precision == "fp32" else f"{row['format']} {precision}"] = prob
        self.runners[row["file"]] = runner
        return row | {"status": status, "reason": "; ".join(reasons)}


def plan(formats: Sequence[Any], precisions: Sequence[str]) -> Iterator[tuple[Any, Any, str]]:
    """(format, artifact, precision) for every requested pair; a family a format lacks altogether comes once,
    with precision = the family name, so that it is reported as unsupported."""
    from export.precision import family

    for fmt in formats:
        for artifact in fmt.artifacts:
            families = dict.fromkeys(family(p) for p in precisions)
            for fam in families:
                mine = [p for p in precisions if family(p) == fam and p in fmt.precisions]
                yield from ((fmt, artifact, p) for p in mine) if mine else [(fmt, artifact, fam)]


def export_one(judge: Judge, inputs: Any, fmt: Any, artifact: Any, precision: str) -> dict[str, Any]:
    """One artifact's row: unsupported, judged once, or walked up the int8 remedy ladder."""
    from export.precision import CALIBRATED, REMEDIABLE, QuantOptions
    from export.quantize import ladder, quantize_with_remedies

    if precision not in fmt.precisions:
        reason = f"{fmt.title} has no {precision} path; it makes {', '.join(fmt.precisions)}"
        reason += f" ({fmt.quantization})" if fmt.precisions == ("fp32",) else ""
        return {"format": fmt.label(artifact), "precision": precision, "status": "unsupported", "reason": reason}
    if precision not in REMEDIABLE:
        return judge.check(fmt, artifact, precision, QuantOptions())
    calibrated = precision in CALIBRATED
    rungs = ladder(judge.model, calibrated, fmt.int16_activations)
    step: Callable = partial(judge.check, fmt, artifact, precision)
    return quantize_with_remedies(rungs, inputs, calibrated, step, say=judge.console.say)


def export_all(
    checkpoint: Path,
    out: Path,
    formats: Sequence[Any],
    precisions: Sequence[str] = ("fp32",),
    golden_count: int = 4,
    limit: int | None = None,
    calibration_size: int = 128,
    console: Any = None,
) -> dict[str, Any]:
    """Export `checkpoint` to `formats` x `precisions` in the folder `out`, judge each, write the reports."""
    from core.checkpoint import load_checkpoint
    from core.console import Console
    from core.evaluation import load_test_split
    from core.io import write_json
    from export.calibration import training_split
    from export.golden import write_golden
    from export.quantize import RungInputs
    from export.report import write_reports
    from export.runners import TorchEagerRunner

    started, console = time.time(), console or Console()
    model, spec = load_checkpoint(checkpoint)
    spec.save(out / "spec.json")
    console.say(f"loading the test split of {spec.provenance.get('data', {}).get('name', '?')} for parity ...")
    data = load_test_split(checkpoint, spec, limit=limit)
    reference = TorchEagerRunner(checkpoint, model, spec)
    judge = Judge(model, spec, data, reference, out, console)
    inputs = RungInputs(
        model, partial(training_split, checkpoint, spec), calibration_size, console.say, console.captured
    )
    rows = [judge.reference_row(checkpoint)]
    console.say(f"reference (PyTorch eager): AUROC {rows[0]['auroc']:.4f} on {len(data)} test cases")
    jobs = list(plan(formats, precisions))
    for fmt, artifact, precision in console.bar(jobs, "exporting", total=len(jobs)):
        rows.append(export_one(judge, inputs, fmt, artifact, precision))
        console.result(f"[{rows[-1]['format']} {precision}] {describe(rows[-1])}")
        if "traceback" in rows[-1]:
            console.say("\n".join(f"    | {line}" for line in console.tail()))
    summary = summarize(checkpoint, spec, data, rows, inputs.seconds, time.time() - started)
    write_json(out / "parity.json", summary)
    write_reports(out, summary, data.target, judge.curves)
    if golden_count > 0:
        write_golden(out, spec, data.table, reference, golden_count, judge.runners)
    return summary


def describe(row: dict[str, Any]) -> str:
    """One result line for the console."""
    if row["status"] in ("not-run", "unsupported"):
        return f"{row['status']}: {row['reason']}"
    if "auroc" not in row:
        return f"FAILED: {row['reason']}"
    return (
        f"{row['export_seconds']} s, {row['size_mb']:.1f} MB, max |dp| {row['max_abs_diff']:.1e}, AUROC "
        f"{row['auroc']:.4f} ({row['auroc_delta']:+.5f}), {row['flips']} flip(s): {row['status'].upper()}"
        + (f": {row['reason']}" if row["reason"] else "")
    )


def summarize(
    checkpoint: Path, spec: Any, data: Any, rows: list[dict[str, Any]], int8_seconds: dict, seconds: float
) -> dict[str, Any]:
    """parity.json: the rows with their size reduction, the gates, the recommendation per format."""
    from core.metrics import json_safe
    from export import parity

    ladders = round(sum(r.get("ladder_seconds", 0.0) for r in rows), 1)  # the int8 ladders' rungs not kept
    fp32 = {r["format"]: r.get("size_mb") for r in rows if r["precision"] == "fp32"}
    for r in rows:
        if fp32.get(r["format"]) and r.get("size_mb"):
            r["size_reduction"] = round(fp32[r["format"]] / r["size_mb"], 2)
    return json_safe(
        {
            "model": spec.name,
            "checkpoint": str(checkpoint),
            "weights_sha256": spec.weights_sha256,
            "data": spec.provenance.get("data", {}).get("name", "?"),
            "n": len(data),
            "n_positive": int(data.target.sum()),
            "threshold": spec.outputs.threshold,
            "threshold_rule": spec.outputs.threshold_rule,
            "gates": parity.gates_as_dict(),
            "seconds": round(seconds, 1),
            "int8_seconds": int8_seconds | ({"failed rungs": ladders} if ladders else {}),
            "rows": rows,
            "recommended": recommend(rows),
        }
    )


def recommend(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per format: the smallest artifact that passed its gate (a failed or unverified one never is)."""
    chosen: dict[str, dict[str, Any]] = {}
    for r in rows:
        if r["status"] == "pass" and (r["format"] not in chosen or r["size_mb"] < chosen[r["format"]]["size_mb"]):
            keys = ("file", "sha256", "precision", "size_mb", "auroc_delta", "flips", "max_abs_diff")
            chosen[r["format"]] = {k: r.get(k) for k in keys}
    for r in rows:
        if r["status"] != "reference" and r["format"] not in chosen:
            chosen[r["format"]] = {
                "file": None,
                "precision": None,
                "reason": "no artifact of this format passed parity on this machine",
            }
    return chosen


def unmet(rows: list[dict[str, Any]]) -> list[str]:
    """The requested (format, precision family) pairs without a passing artifact, ignoring pairs that are
    unsupported or cannot run here (every row of the pair not-run / unsupported)."""
    from export.precision import family

    pairs: dict[tuple[str, str], list[str]] = {}
    for r in rows[1:]:
        pairs.setdefault((r["format"], family(r["precision"])), []).append(r["status"])
    return [
        f"{label} {fam}"
        for (label, fam), statuses in pairs.items()
        if "pass" not in statuses and not set(statuses) <= {"not-run", "unsupported"}
    ]


def _same_except_artifact_fields(embedded: Any, spec: Any) -> bool:
    """The spec read back equals the exported one, apart from the per-artifact layout and precision."""
    a, b = json.loads(embedded.to_json()), json.loads(spec.to_json())
    for d in (a, b):
        d["image"].pop("layout")
        d.pop("precision")
    return a == b


def _resolve(args: argparse.Namespace) -> tuple[Path, Path]:
    """The checkpoint and output folder the arguments name; UserError when they do not fit."""
    from core import zoo
    from core.checkpoint import read_checkpoint_spec

    name = zoo.resolve_name(args.model) if args.model else None
    checkpoint = Path(args.checkpoint) if args.checkpoint else newest_checkpoint(Path(args.runs), name)
    spec_name = read_checkpoint_spec(checkpoint).name
    if name and spec_name != name:
        raise UserError(f"{checkpoint} holds a {spec_name} model, not {name}: fix --model or --checkpoint")
    return checkpoint, Path(args.out) if args.out else DEFAULT_DIST / spec_name


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `python -m export.all`."""
    args = build_parser().parse_args(argv)
    from core.console import Console
    from core.io import exclusive, refuse_existing, staged_folder
    from export.formats import markdown_table, parse_formats
    from export.precision import parse_precisions

    if args.formats_table:
        print(markdown_table())
        return 0
    if not args.model and not args.checkpoint:
        raise UserError("--model is required (or --checkpoint PATH): e.g. --model efficientnet_lite0")
    formats, precisions = parse_formats(args.formats), parse_precisions(args.precision)
    if args.golden < 0 or (args.limit is not None and args.limit < 1) or args.calibration_size < 1:
        raise UserError("--golden must be >= 0, --limit >= 1 and --calibration-size >= 1")
    checkpoint, out = _resolve(args)
    refuse_existing(out, () if args.overwrite else MARKERS, "an export")
    with (
        exclusive(out, "export"),
        staged_folder(out) as staging,
        Console(staging / "export.log", verbose=args.verbose) as console,
    ):
        console.say(
            f"exporting {checkpoint} -> {out}/ ({', '.join(f.key for f in formats)}; "
            f"{', '.join(precisions)}); converter output: {out / 'export.log'}"
        )
        summary = export_all(
            checkpoint, staging, formats, precisions, args.golden, args.limit, args.calibration_size, console
        )
    counts = {s: sum(r["status"] == s for r in summary["rows"]) for s in ("pass", "fail", "not-run", "unsupported")}
    missing = unmet(summary["rows"])
    print(
        f"{counts['pass']} passed, {counts['fail']} failed, {counts['not-run']} not run here, "
        f"{counts['unsupported']} unsupported; report: {out / 'export_report.html'}",
        file=sys.stderr,
    )
    if missing:
        print(f"no passing artifact for: {', '.join(missing)}", file=sys.stderr)
    return 1 if missing or (args.strict and counts["fail"]) else 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
