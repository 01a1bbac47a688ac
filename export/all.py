"""Export a trained model to every format a phone runs and prove each one still ranks patients like the
PyTorch original.

    python -m export.all --model efficientnet_lite0                 # newest run of that model under runs/
    python -m export.all --model mobilenet --checkpoint runs/.../checkpoint.pt --formats onnx,tflite --out dist/

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


def _size_mb(path: Path) -> float:
    if path.is_dir():
        return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e6
    return path.stat().st_size / 1e6


def export_all(
    checkpoint: Path,
    out: Path,
    formats: Sequence[Any],
    golden_count: int = 4,
    limit: int | None = None,
) -> dict[str, Any]:
    """Export `checkpoint` to `formats` in `out`, run parity, write the reports; returns the summary."""
    from core.checkpoint import load_checkpoint
    from core.io import write_json
    from core.metrics import json_safe
    from export import parity, runners
    from export.common import NotRunnable, example_inputs, sidecar_path
    from export.evaldata import load_test_split
    from export.golden import write_golden
    from export.report import roc_plot, write_report

    model, spec = load_checkpoint(checkpoint)
    out.mkdir(parents=True, exist_ok=True)
    spec.save(out / "spec.json")
    _say(f"loading the test split of {spec.provenance.get('data', {}).get('name', '?')} for parity ...")
    data = load_test_split(checkpoint, spec, limit=limit)
    reference = runners.TorchEagerRunner(checkpoint, model, spec)
    t0 = time.time()
    ref_prob = reference.predict(data.image, data.meta).probability.reshape(-1)
    eager_seconds = time.time() - t0
    threshold = spec.outputs.threshold
    groups = parity.subgroups(data.table)
    example = example_inputs(spec, batch=2)
    rows: list[dict[str, Any]] = [
        {
            "format": "pytorch-eager",
            "precision": "fp32",
            "path": str(checkpoint),
            "status": "reference",
            "size_mb": _size_mb(checkpoint),
            "auroc": parity.auroc(data.target, ref_prob),
            "auprc": parity.auprc(data.target, ref_prob),
            "predict_seconds": eager_seconds,
        }
    ]
    curves = {"pytorch-eager": ref_prob}
    _say(f"reference (PyTorch eager): AUROC {rows[0]['auroc']:.4f} on {len(data)} test cases")
    for fmt in formats:
        for artifact in fmt.artifacts:
            for precision in fmt.precisions:
                path = out / f"{spec.name}{artifact.suffix}"
                label = fmt.key if len(fmt.artifacts) == 1 else f"{fmt.key}{artifact.suffix}"
                row: dict[str, Any] = {"format": label, "precision": precision, "path": str(path)}
                rows.append(row)
                _say(f"[{label} {precision}] exporting {path.name} ...")
                start = time.time()
                try:
                    fmt.exporter(artifact)(model, spec, example, path, precision)
                    embedded = runners.read_spec(path)
                    embedded.save(sidecar_path(path))
                    row["export_seconds"] = round(time.time() - start, 2)
                    row["size_mb"] = round(_size_mb(path), 3)
                    row["spec_round_trip"] = _same_except_layout(embedded, spec)
                    runner = runners.load(path)
                except NotRunnable as exc:
                    row.update(status="not-run", reason=str(exc))
                    _say(f"[{label} {precision}] {row['export_seconds']} s, {row['size_mb']:.1f} MB: {exc}")
                    continue
                except UserError as exc:
                    row.update(status="fail", reason=str(exc), export_seconds=round(time.time() - start, 2))
                    _say(f"[{label} {precision}] FAILED: {exc}")
                    continue
                except Exception as exc:  # noqa: BLE001 - a converter failing must not stop the others
                    row.update(
                        status="fail",
                        reason=f"{exc.__class__.__name__}: {str(exc).splitlines()[0] if str(exc) else ''}",
                    )
                    row["export_seconds"] = round(time.time() - start, 2)
                    row["traceback"] = traceback.format_exc(limit=5)
                    _say(f"[{label} {precision}] FAILED: {row['reason']}")
                    continue
                t1 = time.time()
                prob = runner.predict(data.image, data.meta).probability.reshape(-1)
                row["predict_seconds"] = round(time.time() - t1, 2)
                row.update(parity.compare(data.target, ref_prob, prob, threshold, groups))
                status, reasons = parity.judge(row, precision)
                if not row["spec_round_trip"]:
                    status, reasons = "fail", [*reasons, "the spec read back differs from the one exported"]
                row.update(status=status, reason="; ".join(reasons))
                curves[label if precision == "fp32" else f"{label} {precision}"] = prob
                _say(
                    f"[{label} {precision}] {row['export_seconds']} s, {row['size_mb']:.1f} MB, max |dp| "
                    f"{row['max_abs_diff']:.1e}, AUROC {row['auroc']:.4f} ({row['auroc_delta']:+.5f}), "
                    f"{row['flips']} flip(s): {status.upper()}{': ' + row['reason'] if reasons else ''}"
                )
    data_info = spec.provenance.get("data", {})
    summary = json_safe(
        {
            "model": spec.name,
            "checkpoint": str(checkpoint),
            "weights_sha256": spec.weights_sha256,
            "data": data_info.get("name", "?"),
            "n": len(data),
            "n_positive": int(data.target.sum()),
            "threshold": threshold,
            "threshold_rule": spec.outputs.threshold_rule,
            "gates": parity.gates_as_dict(),
            "rows": rows,
        }
    )
    write_json(out / "parity.json", summary)
    roc_plot(out / "roc.png", data.target, curves)
    write_report(out / "export_report.md", summary)
    if golden_count > 0:
        write_golden(out / "golden.json", spec, data.table, reference, golden_count)
    return summary


def _same_except_layout(embedded: Any, spec: Any) -> bool:
    a, b = json.loads(embedded.to_json()), json.loads(spec.to_json())
    a["image"].pop("layout"), b["image"].pop("layout")
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
    if args.golden < 0 or (args.limit is not None and args.limit < 1):
        raise UserError("--golden must be >= 0 and --limit >= 1")
    from core import zoo

    name = zoo.resolve_name(args.model) if args.model else None
    checkpoint = Path(args.checkpoint) if args.checkpoint else newest_checkpoint(Path(args.runs), name)
    from core.checkpoint import read_checkpoint

    spec_name = read_checkpoint(checkpoint)["spec"]["name"]
    if name and spec_name != name:
        raise UserError(f"{checkpoint} holds a {spec_name} model, not {name}: fix --model or --checkpoint")
    out = Path(args.out) if args.out else DEFAULT_DIST / spec_name
    _say(f"exporting {checkpoint} -> {out}/ ({', '.join(f.key for f in formats)})")
    summary = export_all(checkpoint, out, formats, args.golden, args.limit)
    failed = [r for r in summary["rows"] if r["status"] == "fail"]
    counts = {s: sum(r["status"] == s for r in summary["rows"]) for s in ("pass", "fail", "not-run")}
    _say(
        f"{counts['pass']} passed, {counts['fail']} failed, {counts['not-run']} not run here; "
        f"report: {out / 'export_report.md'}"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
