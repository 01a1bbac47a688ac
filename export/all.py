"""Export a trained model to every format a phone runs and prove each one still ranks patients like the
PyTorch original.

    python -m export.all --model efficientnet_lite0                 # newest run of that model under runs/
    python -m export.all --model mobilenet --checkpoint runs/.../checkpoint.pt --formats onnx,tflite --out dist/m
    python -m export.all --model efficientnet --precision fp32,fp16,int8    # quantized artifacts, same gates
    python -m export.all --module theirs.py:build --weights theirs.pth --contract theirs.contract.json \
        --eval-csv eval.csv --eval-images images/                             # a model trained elsewhere
    python -m export.all --program theirs.pt2 --contract theirs.contract.json --eval-csv ... --eval-images ...

Writes, in --out (default dist/<model>/): one artifact per format with the ModelSpec embedded and beside it
as <artifact>.spec.json, parity.json, export_report.md / .html, roc.png, int8_search.png (when static int8 was
searched), golden.json + golden/, spec.json and
export.log (what the converters printed). The folder is built beside --out and swapped in whole when the run
ends, so an interrupted export leaves the previous one intact. Exit status 0 when every requested format
has an artifact that passed its gate at every requested precision (a format that cannot run here, or has no
such precision, is reported and does not count); 1 otherwise, or with --strict when any row failed.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.errors import UserError, run_cli

DEFAULT_RUNS = Path("runs")
DEFAULT_DIST = Path("dist")
# What an export (and the benchmark run on it) writes into its folder, besides the artifacts parity.json lists.
HISTORY = "benchmark_history.jsonl"  # carried into the new export: the regressions it spots span re-exports
EXPORT_FILES = frozenset(
    {"parity.json", "golden.json", "golden", "export_report.md", "export_report.html", "roc.png", "spec.json"}
    | {"int8_search.png", "model.sig", "benchmark_figures", "MODEL_CARD.md", "MODEL_CARD.html", "calibration.png"}
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
    theirs = p.add_argument_group("a model trained elsewhere (instead of --model / --checkpoint)")
    theirs.add_argument(
        "--module", default=None, help="FILE.py:FACTORY or package.module:FACTORY returning the nn.Module"
    )
    theirs.add_argument("--weights", default=None, help="its state dict (torch.save(model.state_dict()), weights only)")
    theirs.add_argument("--program", default=None, help="a torch.export program saved with torch.export.save (.pt2)")
    theirs.add_argument("--contract", default=None, help="the model's contract JSON (melanoma-contract/1, see README)")
    theirs.add_argument("--eval-csv", default=None, help="evaluation cases: image_name, target, the contract's fields")
    theirs.add_argument("--eval-images", default=None, help="the folder holding the evaluation images")
    p.add_argument("--formats", default="all", help=f"comma-separated: {', '.join(BY_KEY)} (or all)")
    p.add_argument(
        "--precision",
        default="fp32",
        help="comma-separated: fp32, fp16, int8 (= static int8, and Core ML's int8-weights, palettized), "
        "int8-dynamic (only by name)",
    )
    p.add_argument(
        "--calibration-size",
        type=int,
        default=128,
        help="class-stratified training images (a foreign model's calibrate half) that calibrate int8",
    )
    gates = p.add_argument_group("parity gates for fp16 and int8 (fp32 keeps its own; recorded in parity.json)")
    gates.add_argument("--gate-auroc-drop", type=float, default=None, help="largest AUROC drop allowed (0.005)")
    gates.add_argument(
        "--gate-flips", default=None, help="largest share of flipped decisions: 0.02 or 2%% (default 2%%)"
    )
    gates.add_argument(
        "--gate-subgroup-drop", type=float, default=None, help="largest AUROC drop in any judged subgroup (0.01)"
    )
    gates.add_argument(
        "--min-subgroup-class",
        type=int,
        default=None,
        help="melanomas and benign cases a subgroup needs to be judged (5; applies to fp32 too)",
    )
    p.add_argument("--out", default=None, help="output folder (default dist/<model>/)")
    p.add_argument(
        "--sign-key",
        default=None,
        help="sign the finished export folder with this EC private key (PEM; python -m export.sign --new-key "
        "makes one): model.sig, which apps and runners verify",
    )
    card = p.add_argument_group("who stands behind the model (the .tflite metadata and MODEL_CARD.md state it)")
    card.add_argument("--author", default=None, help="the model's author or owner, e.g. 'Skin AI lab, Example Univ.'")
    card.add_argument("--license", default=None, help="the model's license, e.g. Apache-2.0 or 'research use only'")
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


def needed_mb(model_mb: float, jobs: int, precisions: Sequence[str]) -> float:
    """About how much space the staged export needs for a model of `model_mb` (see SPACE_PER_ARTIFACT)."""
    per = max(SPACE_PER_ARTIFACT.get(p, 0.4) for p in precisions)
    return SPACE_MARGIN_MB + model_mb * per * jobs


@dataclass
class Job:
    """What to export and where: `build(console)` makes the export.sources.Source inside the export's lock."""

    build: Callable[[Any], Any]
    out: Path
    model_mb: float  # the model's size, for the free-space estimate
    protected: Path | None = None  # a file of the source the output folder must not hold
    protected_what: str = "checkpoint"


def _checkpoint_job(args: argparse.Namespace) -> Job:
    from export.sources import checkpoint_source

    checkpoint, out = _resolve(args)
    return Job(
        lambda console: checkpoint_source(checkpoint, args.limit), out, checkpoint.stat().st_size / 1e6, checkpoint
    )


def _foreign_job(args: argparse.Namespace) -> Job:
    """--module / --program with --contract, --eval-csv and --eval-images; each missing one named."""
    from core.contract import Contract
    from core.eval_csv import read_evaluation_csv

    if args.model or args.checkpoint:
        raise UserError("give either --model / --checkpoint (a python -m train run) or --module / --program, not both")
    if args.module and args.program:
        raise UserError("give --module (with --weights) or --program, not both")
    if args.program and args.weights:
        raise UserError("--weights goes with --module; a --program carries its own weights")
    for flag in ("contract", "eval_csv", "eval_images"):
        if not getattr(args, flag):
            raise UserError(
                f"--{flag.replace('_', '-')} is required with --{'module' if args.module else 'program'}: "
                "a model trained elsewhere needs its contract and an evaluation set (see the README)"
            )
    contract = Contract.load(args.contract)
    csv, images = Path(args.eval_csv), Path(args.eval_images)
    table = read_evaluation_csv(csv, images, contract)
    files = [Path(f) for f in (args.weights, args.program) if f]
    origin = {
        "kind": "module" if args.module else "program",
        "contract": str(Path(args.contract).resolve()),
        "evaluation": f"{csv.name} ({len(table)} cases)",
        "eval_csv": str(csv.resolve()),
        "eval_images": str(images.resolve()),
    }
    if args.module:
        origin |= {"module": _absolute_module(args.module), "weights": str(files[0].resolve()) if files else None}
    else:
        origin["program"] = str(files[0].resolve())

    def build(console: Any) -> Any:
        from core.io import sha256_file
        from export.sources import contract_source, load_module_model, load_program

        console.say(f"loading {args.module or args.program} ...")
        with console.captured():
            model = load_module_model(args.module, args.weights) if args.module else load_program(args.program)
        origin["eval_csv_sha256"] = sha256_file(csv)
        reference = files[0] if files else None
        return contract_source(model, contract, table, origin, reference, args.limit, console.say)

    out = Path(args.out) if args.out else DEFAULT_DIST / contract.name
    size = sum(f.stat().st_size for f in files if f.is_file()) / 1e6 if files else 100.0
    return Job(build, out, size, files[0] if files else None, "weights" if args.module else "program")


def _absolute_module(reference: str) -> str:
    """FILE.py:FACTORY with the file made absolute (the benchmark rebuilds the reference from it)."""
    location, _, name = reference.rpartition(":")
    return f"{Path(location).resolve()}:{name}" if location.endswith(".py") else reference


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `python -m export.all`."""
    args = build_parser().parse_args(argv)
    from export.formats import markdown_table, parse_formats
    from export.precision import parse_precisions

    if args.formats_table:
        print(markdown_table())
        return 0
    foreign = bool(args.module or args.program)
    if not foreign and not args.model and not args.checkpoint:
        raise UserError(
            "--model is required (or --checkpoint PATH, or --module / --program for a model trained elsewhere): "
            "e.g. --model efficientnet_lite0"
        )
    if not foreign and (args.weights or args.contract or args.eval_csv or args.eval_images):
        raise UserError("--weights, --contract, --eval-csv and --eval-images go with --module or --program")
    formats, precisions = parse_formats(args.formats), parse_precisions(args.precision)
    if args.golden < 0 or (args.limit is not None and args.limit < 1) or args.calibration_size < 1:
        raise UserError("--golden must be >= 0, --limit >= 1 and --calibration-size >= 1")
    gates = chosen_gates(args.gate_auroc_drop, args.gate_flips, args.gate_subgroup_drop, args.min_subgroup_class)
    job = _foreign_job(args) if foreign else _checkpoint_job(args)
    return run_job(
        job,
        formats,
        precisions,
        args.golden,
        args.calibration_size,
        args.overwrite,
        args.strict,
        args.verbose,
        gates=gates,
        sign_key=Path(args.sign_key) if args.sign_key else None,
        about=about(args.author, args.license),
    )


def about(author: str | None, license: str | None) -> dict[str, str]:
    """`--author` / `--license` as the spec's provenance keeps them (one-line text, or refused)."""
    given = {"author": author, "license": license}
    for key, value in given.items():
        if value is not None and (not value.strip() or "\n" in value):
            raise UserError(f"--{key} must be one line of text, got {value!r}")
    return {k: v.strip() for k, v in given.items() if v is not None}


def chosen_gates(
    auroc_drop: float | None = None,
    flips: float | str | None = None,
    subgroup_drop: float | None = None,
    min_subgroup_class: int | None = None,
) -> Any:
    """export.parity.Gates from the --gate-* values (None: the default); UserError naming a bad one."""
    import math

    from export.parity import Gates

    fraction = None
    if flips is not None:
        text = str(flips).strip()
        try:
            fraction = float(text[:-1]) / 100 if text.endswith("%") else float(text)
        except ValueError:
            raise UserError(f"--gate-flips {flips!r} is not a number: give a share such as 0.02 or 2%") from None
        if not 0 <= fraction <= 1 or not math.isfinite(fraction):
            raise UserError(f"--gate-flips {flips!r} is not a share of the cases: give 0 to 1, or 0% to 100%")
    for flag, value in (("--gate-auroc-drop", auroc_drop), ("--gate-subgroup-drop", subgroup_drop)):
        if value is not None and not (math.isfinite(value) and 0 <= value <= 1):
            raise UserError(f"{flag} {value} is not an AUROC difference: give a number from 0 to 1, e.g. 0.005")
    if min_subgroup_class is not None and min_subgroup_class < 1:
        raise UserError(f"--min-subgroup-class {min_subgroup_class} must be at least 1")
    return Gates.chosen(auroc_drop, fraction, subgroup_drop, min_subgroup_class)


def run_job(
    job: Job,
    formats: Sequence[Any],
    precisions: Sequence[str],
    golden: int = 4,
    calibration_size: int = 128,
    overwrite: bool = False,
    strict: bool = False,
    verbose: bool = False,
    overwrite_flag: str = "--overwrite",
    gates: Any = None,
    sign_key: Path | None = None,
    about: dict[str, str] | None = None,
) -> int:
    """Claim the output folder, build the source and export it in a staged folder swapped in at the end (signed
    there first when `sign_key` is given); print the counts; the exit status main returns."""
    from core.console import Console
    from core.io import claim_output_folder, exclusive, staged_folder
    from export.parity import DEFAULT_GATES
    from export.pipeline import export_source, plan, unmet
    from export.sign import key_description, read_signing_key, sign_folder

    out = job.out
    signature = None
    if sign_key is not None:  # checked before anything is exported
        signature = key_description(read_signing_key(sign_key).public_key())
        if out.resolve() in sign_key.resolve().parents:
            raise UserError(f"--sign-key {sign_key} lies inside --out {out}: keep the private key out of the export")
    if job.protected and (
        job.protected.resolve().parent == out.resolve() or out.resolve() in job.protected.resolve().parents
    ):
        raise UserError(
            f"--out {out} holds the {job.protected_what} {job.protected}: give the export a folder of its own"
        )
    jobs = len(list(plan(formats, precisions)))
    ours = earlier_export(out)  # read once: the claim and the swap judge the same earlier export
    out = claim_output_folder(
        out, ours, "an export", overwrite, needed_mb(job.model_mb, jobs, precisions), flag=overwrite_flag
    )
    with (
        exclusive(out, "export"),
        # Carried over at the swap: the benchmark history, and anything not an export's that appeared meanwhile.
        staged_folder(
            out,
            keep=lambda entry: entry.name == HISTORY or not ours(entry),
            before_swap=(lambda folder: sign_folder(folder, sign_key)) if sign_key else None,
        ) as staging,
        Console(staging / "export.log", verbose=verbose) as console,
    ):
        source = job.build(console)
        source.spec.provenance.update(about or {})  # before any artifact embeds the spec
        console.say(
            f"exporting {source.spec.name} -> {out}/ ({', '.join(f.key for f in formats)}; "
            f"{', '.join(precisions)}); converter output: {out / 'export.log'}"
        )
        gates = gates or DEFAULT_GATES
        summary = export_source(
            source, staging, formats, precisions, golden, calibration_size, console, gates, signature
        )
    counts = {s: sum(r["status"] == s for r in summary["rows"]) for s in ("pass", "fail", "not-run", "unsupported")}
    missing = unmet(summary["rows"])
    print(
        f"{counts['pass']} passed, {counts['fail']} failed, {counts['not-run']} not run here, "
        f"{counts['unsupported']} unsupported; report: {out / 'export_report.html'}"
        + (f"; signed: {out / 'model.sig'}" if sign_key else ""),
        file=sys.stderr,
    )
    if missing:
        print(f"no passing artifact for: {', '.join(missing)}", file=sys.stderr)
    return 1 if missing or (strict and counts["fail"]) else 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
