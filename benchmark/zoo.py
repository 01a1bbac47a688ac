"""The card's backbones at 224 px, end to end: train briefly, export every format and precision with parity
checks, benchmark everything in one interleaved run, and write one zoo report.

    python -m benchmark.zoo                                  # make zoo: the four card backbones + Lite0
    python -m benchmark.zoo --models shufflenet,efficientnet_lite0 --epochs 1 --out dist/zoo

Per model: `python -m train` (ImageNet weights where they can be had here, else from scratch, said in the
table) into runs/zoo/<model>/ (a finished run is reused), `python -m export.all --precision fp32,fp16,int8`
into dist/zoo/<model>/ (an export that finished is reused unless --reexport), then one `python -m benchmark`
over all of them (with the torch.compile reference row) into dist/zoo/, and dist/zoo/zoo.{md,html}.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from core.errors import UserError, run_cli
from core.parity_file import PARITY_FILE, ParityReport

CARD = ("efficientnet", "mnasnet", "mobilenet", "shufflenet", "efficientnet_lite0")


def _step(args: list[str], what: str, log: Path) -> float:
    """Run one of the toolkit's own commands, its output to `log`; UserError with the log's tail on failure."""
    start = time.time()
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a", encoding="utf-8") as f:
        result = subprocess.run([sys.executable, "-m", *args], stdout=f, stderr=subprocess.STDOUT, check=False)
    if result.returncode not in (0, 1) or (result.returncode == 1 and args[0] != "export.all"):
        tail = log.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-1:]
        raise UserError(f"{what} failed ({tail[0] if tail else 'no output'}): see {log}")
    return round(time.time() - start, 1)


def weights_for(model: str) -> str:
    """imagenet when this machine has (or can fetch) the weights, else none."""
    from core import zoo

    return "none" if zoo.imagenet_unavailable(model) else "imagenet"


def prepare(model: str, args: argparse.Namespace, say) -> dict[str, Any]:
    """Train (or reuse) and export (or reuse) one model; what was done, with the seconds each step took."""
    from core import zoo

    name = zoo.resolve_name(model)
    run, dist = Path(args.runs) / name, Path(args.out) / name
    info: dict[str, Any] = {"model": name, "run": str(run), "export": str(dist)}
    if not (run / "metrics.json").is_file():
        weights = weights_for(name)
        say(f"[{name}] training {args.epochs} epoch(s) at 224 px, weights {weights} ...")
        train = ["train", "--model", name, "--weights", weights, "--epochs", str(args.epochs)]
        train += ["--image-size", "224", "--out", str(run), "--overwrite"]
        info["train_seconds"] = _step(train, f"training {name}", Path(args.out) / "logs" / f"{name}.train.log")
    metrics = json.loads((run / "metrics.json").read_text())  # the run's own record, reused or just written
    info["weights"], info["epochs"] = metrics["config"]["weights"], metrics["config"]["epochs"]
    info["test_auroc"] = metrics["test"]["auroc"]
    if args.reexport or not (dist / PARITY_FILE).is_file():
        say(f"[{name}] exporting every format at fp32, fp16 and int8 ...")
        export = ["export.all", "--checkpoint", str(run / "checkpoint.pt"), "--precision", "fp32,fp16,int8"]
        export += ["--out", str(dist), "--overwrite"]
        info["export_wall_seconds"] = _step(export, f"exporting {name}", Path(args.out) / "logs" / f"{name}.export.log")
    parity = ParityReport.load(dist).data
    info["export_seconds"] = parity.get("seconds")
    info["int8_seconds"] = parity.get("int8_seconds", {})
    say(
        f"[{name}] test AUROC {info['test_auroc']:.3f}; export {info['export_seconds']} s; "
        + ", ".join(
            f"{r['format']} {r['precision']} {r['status']}" for r in parity["rows"][1:] if r["status"] != "unsupported"
        )
    )
    return info


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `python -m benchmark.zoo` (`make zoo`)."""
    p = argparse.ArgumentParser(
        prog="python -m benchmark.zoo",
        description="Train, export, quantize, check and benchmark the card's backbones at 224 px; one report.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--models", default=",".join(CARD), help="comma-separated models")
    p.add_argument("--epochs", type=int, default=2, help="training epochs per model (a short run)")
    p.add_argument("--runs", default="runs/zoo", help="where the training runs go")
    p.add_argument("--out", default="dist/zoo", help="exports (one folder per model) and the zoo report")
    p.add_argument("--reexport", action="store_true", help="export again even where an export finished")
    p.add_argument("--runs-per-artifact", type=int, default=50, help="timed benchmark runs per artifact")
    args = p.parse_args(argv)
    from core import zoo

    models = [zoo.resolve_name(m) for m in args.models.split(",") if m.strip()]
    if args.epochs < 1 or args.runs_per_artifact < 3:
        raise UserError("--epochs must be at least 1 and --runs-per-artifact at least 3")

    def say(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    infos = [prepare(m, args, say) for m in models]
    out = Path(args.out)
    say(f"benchmarking {len(models)} models in one interleaved run ...")
    bench = ["benchmark", "--model", ",".join(models), "--out", str(out), "--compile"]
    bench += ["--runs", str(args.runs_per_artifact)] + [a for m in models for a in ("--artifacts-of", f"{m}={out / m}")]
    _step(bench, "the benchmark", out / "logs" / "benchmark.log")
    from benchmark.zoo_report import write_zoo_report

    paths = write_zoo_report(out, infos)
    print(f"zoo report: {paths['md']} and {paths['html']}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
