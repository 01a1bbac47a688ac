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
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from core.errors import UserError, run_cli

DEFAULT_RUNS = Path("runs")
DEFAULT_DIST = Path("dist")
# What an export (and the benchmark run on it) writes into its folder, besides the artifacts parity.json lists.
HISTORY = "benchmark_history.jsonl"  # carried into the new export: the regressions it spots span re-exports
EXPORT_FILES = frozenset(
    {"parity.json", "golden.json", "golden", "export_report.md", "export_report.html", "roc.png", "spec.json"}
    | {"export.log", "benchmark.json", "benchmark.csv", "benchmark.md", "benchmark.html", "benchmark.log"}
    | {HISTORY, "benchmark_web.json"}
)
# The benchmark's figures (benchmark/report.py: latency_t<threads>_b<batch>.png, size_vs_latency.png, ...).
BENCHMARK_FIGURE_PREFIXES = ("latency_t", "size_vs_latency", "parity_vs_speed")
# Space an export needs per artifact, as a multiple of the checkpoint's size (fp32 artifacts are about its
# size; the staged folder is built while an earlier export still stands), plus a margin for reports and logs.
SPACE_PER_ARTIFACT = {"fp32": 1.2, "fp16": 0.6}
SPACE_MARGIN_MB = 50.0


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


def earlier_export(folder: Path) -> Callable[[Path], bool]:
    """Whether an entry of `folder` is something an export or a benchmark of it wrote: the artifacts its
    parity.json lists (or, when that cannot be read, any file with an artifact suffix) and their sidecars, the
    reports, the benchmark's figures, and the hidden temporary files they leave when killed. Nothing is, in a
    folder without a parity.json (a user's own folder, a training run)."""
    from core.parity_file import ParityReport
    from export.formats import suffixes

    if not (folder / "parity.json").is_file():
        return lambda entry: False
    try:
        listed = {Path(r["file"]).name for r in ParityReport.load(folder).artifact_rows()}
    except UserError:  # damaged or older: recognise the artifacts by their suffixes
        listed = {e.name for e in folder.iterdir() if any(e.name.endswith(s) for s in suffixes())}
    names = EXPORT_FILES | listed | {f"{name}.spec.json" for name in listed}

    def ours(entry: Path) -> bool:
        name = entry.name.lstrip(".") if entry.name.startswith(".") else entry.name
        if name != entry.name:  # a temporary of core.io.atomic_path (".benchmark.json.x1y2") or of a tmp write
            return any(name.startswith(f"{known}.") for known in names) or name.startswith(BENCHMARK_FIGURE_PREFIXES)
        return name in names or (name.endswith(".png") and name.startswith(BENCHMARK_FIGURE_PREFIXES))

    return ours


def needed_mb(checkpoint: Path, jobs: int, precisions: Sequence[str]) -> float:
    """About how much space the staged export needs (see SPACE_PER_ARTIFACT)."""
    size = checkpoint.stat().st_size / 1e6
    per = max(SPACE_PER_ARTIFACT.get(p, 0.4) for p in precisions)
    return SPACE_MARGIN_MB + size * per * jobs


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `python -m export.all`."""
    args = build_parser().parse_args(argv)
    from core.console import Console
    from core.io import claim_output_folder, exclusive, staged_folder
    from export.formats import markdown_table, parse_formats
    from export.pipeline import export_all, plan, unmet
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
    if checkpoint.resolve().parent == out.resolve() or out.resolve() in checkpoint.resolve().parents:
        raise UserError(f"--out {out} holds the checkpoint {checkpoint}: give the export a folder of its own")
    jobs = len(list(plan(formats, precisions)))
    ours = earlier_export(out)  # read once: the claim and the swap judge the same earlier export
    out = claim_output_folder(out, ours, "an export", args.overwrite, needed_mb(checkpoint, jobs, precisions))
    with (
        exclusive(out, "export"),
        # Carried over at the swap: the benchmark history, and anything not an export's that appeared meanwhile.
        staged_folder(out, keep=lambda entry: entry.name == HISTORY or not ours(entry)) as staging,
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
