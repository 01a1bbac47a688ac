"""The paper's study as one command: Table 1, Figure 3 (ROC) and Figure 4 (integrated gradients) from fresh
runs, with the statistics done right (Kim & Rocheteau 2020).

    python -m train.study --out studies/quick                   # offline default: embedded set, small and fast
    python -m train.study --models efficientnet,mnasnet,mobilenet,shufflenet,cnn --weights imagenet,none \\
        --seeds 10 --data ~/isic2020 --external ~/melanoma-external-malignant-256 --out studies/paper
    python -m train.study --out studies/paper --shard 3/16      # one slice of the runs (a scheduler's array job)
    python -m train.study --out studies/paper --aggregate       # tables and figures from whatever runs are done

Every (model, weights, seed) is one fresh model trained by the same code path as `python -m train`, in its own
run directory under --out/runs/. The data split is the same for every run (seed --split-seed; the paper varied
the initialisation, not the data) unless --vary-split. A finished run is never redone and an interrupted one
resumes, so the command can be rerun, or sharded over machines with no coordinator: the shards of `--shard i/n`
partition the runs. A failed run is recorded with its error and the study goes on; the exit status is 1 when
a run failed (a model whose ImageNet weights the machine cannot have is reported, not counted as failed). A lock
refuses a second copy of the same study (or the same shard) on one --out; a run that another process is
training is skipped, not failed. Under `torchrun` every run is a multi-GPU run (all processes walk the same
runs).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import UserError, run_cli

METRICS = ("accuracy", "auroc", "auprc", "f1")
# Phillips et al. meta-analysis as Kim & Rocheteau 2020 cite it: AUROC and the half-width of its 95% CI.
CLINICIANS = {"general practitioners": (0.83, 0.03), "dermatologists": (0.91, 0.02)}
CLINICIAN_MARKS = {"general practitioners": "†", "dermatologists": "‡"}
PAPER_ORDER = (
    "efficientnet_b0",
    "efficientnet_lite0",
    "mnasnet1_0",
    "mobilenet_v2",
    "shufflenet_v2_x1_0",
    "densenet121",
    "resnet50",
    "resnext50_32x4d",
    "googlenet",
    "squeezenet1_0",
    "vgg16",
    "standard_cnn",
)
QUICK = {
    "models": "efficientnet_lite0,mobilenet_v2,standard_cnn",
    "weights": "imagenet,none",
    "seeds": 3,
    "epochs": 3,
    "image_size": 64,
    "batch_size": 32,
    "data": "synthetic",
    "external": None,
    "synthetic_count": 2000,
    "split_seed": 0,
    "vary_split": False,
}
CONFIG_FILE = "study_config.json"
MAX_SEEDS = 1000  # runs per (model, weights): the paper did 10


@dataclass(frozen=True)
class Run:
    """One fresh model of the study."""

    model: str
    weights: str
    seed: int

    @property
    def name(self) -> str:
        return f"{self.model}-{self.weights}-seed{self.seed}"


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """`i/n` (1 <= i <= n) -> (i, n); UserError otherwise."""
    if text is None:
        return None
    try:
        i, n = (int(part) for part in text.split("/"))
    except ValueError:
        raise UserError(f"--shard takes i/n with whole numbers (e.g. 3/16), got {text!r}") from None
    if not 1 <= i <= n:
        raise UserError(f"--shard {text}: i must be between 1 and n (e.g. 3/16 for the third of 16 slices)")
    return i, n


def plan(config: dict[str, Any]) -> tuple[list[Run], list[dict[str, str]]]:
    """Every run of the study, in the paper's model order; and the combinations that do not apply."""
    from core import zoo

    models = [zoo.resolve_name(m) for m in config["models"]]
    models.sort(key=lambda m: PAPER_ORDER.index(m) if m in PAPER_ORDER else len(PAPER_ORDER))
    runs, not_applicable = [], []
    for model in models:
        for weights in config["weights"]:
            if weights == "imagenet" and not zoo.has_imagenet_weights(model):
                not_applicable.append({"model": model, "weights": weights, "reason": "no ImageNet weights exist"})
                continue
            runs += [Run(model, weights, seed) for seed in range(config["seeds"])]
    return runs, not_applicable


def shard(runs: list[Run], part: tuple[int, int] | None) -> list[Run]:
    """The i-th of n deterministic slices (every n-th run, starting at the i-th); all runs without --shard."""
    if part is None:
        return runs
    i, n = part
    return runs[i - 1 :: n]


def imagenet_unavailable(models: list[str]) -> dict[str, str]:
    """Models whose ImageNet weights cannot be had here (offline, not in the torch hub cache): the reason."""
    from core import zoo

    reasons = {model: zoo.imagenet_unavailable(model) for model in models}
    return {model: reason for model, reason in reasons.items() if reason is not None}


def train_config(config: dict[str, Any], run: Run, folder: Path) -> Any:
    """The TrainConfig of one run: the same path as `python -m train`, resuming an interrupted run."""
    from train.loop import TrainConfig

    return TrainConfig(
        model=run.model,
        weights=run.weights,
        seed=run.seed,
        split_seed=None if config["vary_split"] else config["split_seed"],
        data=config["data"],
        external=config["external"],
        epochs=config["epochs"],
        image_size=config["image_size"],
        batch_size=config["batch_size"],
        synthetic_count=config["synthetic_count"],
        workers=config.get("workers", 2),
        out=str(folder),
        resume=(folder / "last.pt").is_file(),
    )


def _why_not_run(error_file: Path) -> str:
    """The Table's words for a run that has an error.json."""
    try:
        kind = json.loads(error_file.read_text()).get("kind")
    except (OSError, ValueError):
        kind = None
    return "ImageNet weights unavailable where it ran" if kind == "no weights" else "failed"


def run_all(config: dict[str, Any], out: Path, runs: list[Run], unavailable: dict[str, str], console) -> list[dict]:
    """Train every run that is not finished: an overall bar with the time left, one line per run; each run's
    own output goes to its train.log."""
    from core.io import write_json
    from train.loop import run
    from train.run_dir import RunInUse

    outcomes = []
    for r in console.bar(runs, "study", total=len(runs)):
        folder = out / "runs" / r.name
        if (folder / "metrics.json").is_file():
            outcomes.append({"run": r.name, "status": "done earlier"})
            continue
        error = unavailable.get(r.model) if r.weights == "imagenet" else None
        if error is not None:  # said once, before the runs started
            write_json(folder / "error.json", {"run": asdict(r), "error": error, "kind": "no weights"})
            outcomes.append({"run": r.name, "status": "no weights", "error": error})
            console.say(f"{r.model} {r.weights} seed {r.seed}: not run (ImageNet weights unavailable, see above)")
            continue
        start = time.time()
        try:
            with console.captured(folder / "train.log"):
                metrics = run(train_config(config, r, folder))
        except RunInUse:  # another study (or shard) is training it right now: neither done nor failed here
            outcomes.append({"run": r.name, "status": "running elsewhere"})
            console.say(f"{r.model} {r.weights} seed {r.seed}: skipped, another process is training it")
            continue
        except (UserError, RuntimeError, ValueError) as exc:  # recorded; the other runs go on
            error = f"{exc.__class__.__name__}: {exc}"
        if error is not None:
            write_json(folder / "error.json", {"run": asdict(r), "error": error, "kind": "failed"})
            outcomes.append({"run": r.name, "status": "failed", "error": error})
            console.say(f"{r.model} {r.weights} seed {r.seed}: FAILED ({error})")
            continue
        (folder / "error.json").unlink(missing_ok=True)
        outcomes.append({"run": r.name, "status": "trained"})
        console.say(
            f"{r.model} {r.weights} seed {r.seed}: test AUROC {metrics['test']['auroc']:.4f} "
            f"({time.time() - start:.0f} s)"
        )
    return outcomes


def collect(out: Path, runs: list[Run]) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """Finished runs' test metrics and predictions, per (model, weights)."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in runs:
        folder = out / "runs" / r.name
        if not (folder / "metrics.json").is_file():
            continue
        metrics, test = _finished_run(folder, r)
        groups.setdefault((r.model, r.weights), []).append(
            {
                "run": r,
                "folder": folder,
                "metrics": metrics,
                "y": test["target"].to_numpy(int),
                "p": test["probability"].to_numpy(float),
            }
        )
    return groups


def _finished_run(folder: Path, r: Run) -> tuple[dict[str, Any], Any]:
    """A finished run's metrics.json and its test predictions; UserError naming the run and the file when
    one is missing or damaged (Table 1 would silently lose a run otherwise)."""
    import pandas as pd

    fix = f"restore it, or delete {folder} and rerun the study to train that run again"
    try:
        metrics = json.loads((folder / "metrics.json").read_text())
        lacking = [k for k in ("sensitivity", "specificity", *METRICS) if k not in metrics["test"]]
    except (OSError, ValueError, KeyError, TypeError):
        lacking = ["test section"]
    if lacking:  # Table 1 and Figure 3 read these
        raise UserError(f"run {r.name}: its metrics.json is damaged (no {lacking[0]}): {fix}")
    path = folder / "predictions.csv"
    if not path.is_file():
        raise UserError(f"run {r.name} is finished but its predictions.csv is missing: {fix}")
    try:
        predictions = pd.read_csv(path)
        return metrics, predictions[["split", "target", "probability"]].query("split == 'test'")
    except (OSError, ValueError, KeyError) as exc:  # pandas' parser errors are ValueErrors
        raise UserError(f"run {r.name}: its predictions.csv is unreadable ({exc.__class__.__name__}): {fix}") from None


def table1(groups: dict[tuple[str, str], list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """One row per (model, weights): each metric's mean and 95% CI, the TL > scratch tests, the clinicians."""
    from train import stats

    rows = []
    for (model, weights), done in groups.items():
        row: dict[str, Any] = {"model": model, "weights": weights, "runs": len(done)}
        for metric in METRICS:
            row[metric] = stats.mean_ci([d["metrics"]["test"][metric] for d in done])
        scratch = groups.get((model, "none")) if weights != "none" else None
        if scratch:
            row["tl_vs_scratch"] = {
                metric: stats.greater_welch(
                    [d["metrics"]["test"][metric] for d in done], [d["metrics"]["test"][metric] for d in scratch]
                )
                for metric in METRICS
            }
        aurocs = [d["metrics"]["test"]["auroc"] for d in done]
        row["vs_clinicians"] = {
            who: stats.greater_than_published(aurocs, estimate, half) for who, (estimate, half) in CLINICIANS.items()
        }
        rows.append(row)
    return rows


def _cell(row: dict[str, Any], metric: str) -> str:
    from train import stats

    m = row[metric]
    if m["mean"] is None:
        return "-"
    text = f"{m['mean']:.3f}" + (f" ± {(m['ci_high'] - m['ci_low']) / 2:.3f}" if m["ci_low"] is not None else "")
    text += stats.stars(row.get("tl_vs_scratch", {}).get(metric, {}).get("p"))
    if metric == "auroc":
        text += "".join(mark for who, mark in CLINICIAN_MARKS.items() if (row["vs_clinicians"][who]["p"] or 1) < 0.05)
    return text


def median_run(done: list[dict[str, Any]]) -> dict[str, Any]:
    """The run whose test AUROC is the median (the lower middle one for an even count)."""
    ordered = sorted(done, key=lambda d: d["metrics"]["test"]["auroc"])
    return ordered[(len(ordered) - 1) // 2]


def figure3(groups: dict[tuple[str, str], list[dict[str, Any]]]) -> bytes:
    """ROC of each model on its test split: the median-AUROC run as a line, the spread over runs as a band,
    the operating point at the spec's threshold as a dot; the clinicians' AUROC from the meta-analysis."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import roc_curve

    models = list(dict.fromkeys(model for model, _ in groups))
    cols = min(3, len(models))
    rows = (len(models) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 4.4 * rows), dpi=100, squeeze=False)
    grid = np.linspace(0, 1, 201)
    for ax, model in zip(axes.flat, models, strict=False):
        for weights, colour in (("imagenet", "#e76f51"), ("none", "#264653")):
            done = groups.get((model, weights))
            if not done:
                continue
            curves = [np.interp(grid, *roc_curve(d["y"], d["p"])[:2]) for d in done]
            ax.fill_between(grid, np.min(curves, axis=0), np.max(curves, axis=0), color=colour, alpha=0.15, lw=0)
            mid = median_run(done)
            fpr, tpr, _ = roc_curve(mid["y"], mid["p"])
            test = mid["metrics"]["test"]
            kind = "ImageNet" if weights == "imagenet" else "scratch"
            label = f"{kind}: AUROC {test['auroc']:.3f} (median of {len(done)})"
            ax.plot(fpr, tpr, color=colour, lw=1.8, label=label)
            ax.plot(1 - test["specificity"], test["sensitivity"], "o", color=colour, ms=6)
        ax.plot([0, 1], [0, 1], color="0.75", lw=0.8)
        ax.set_title(model, fontsize=10)
        ax.set_xlabel("1 - specificity")
        ax.set_ylabel("sensitivity")
        ax.legend(loc="lower right", fontsize=7)
    for ax in list(axes.flat)[len(models) :]:
        ax.axis("off")
    clinicians = "; ".join(f"{who} AUROC {e:.2f} ± {h:.2f}" for who, (e, h) in CLINICIANS.items())
    fig.suptitle(
        "Test-split ROC: line = median-AUROC run, band = range over runs, dot = the spec's threshold\n"
        f"Meta-analysis the paper cites: {clinicians}",
        fontsize=9,
    )
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def differences(config: dict[str, Any]) -> list[str]:
    """Every way this study's protocol differs from the paper's, for the report header."""
    items = []
    if config["data"] == "synthetic":
        items.append(f"data: the embedded SYNTHETIC set ({config['synthetic_count']} images), not ISIC 2020")
    items.append(f"image size {config['image_size']} px and at most {config['epochs']} epochs (paper: 15 epochs)")
    items.append(f"{config['seeds']} runs per model (paper: 10)")
    items.append(
        "the same patient-grouped split for every run (seed "
        f"{config['split_seed']}); only the initialisation and augmentation vary"
        if not config["vary_split"]
        else "a different patient-grouped split per run (--vary-split)"
    )
    items.append(
        "accuracy and F1 at the threshold chosen on validation for 95% sensitivity (the paper rounded at 0.5); "
        "AUROC and AUPRC from probabilities, never rounded predictions"
    )
    items.append("patient-level splits, a fresh model per run, the best epoch's weights restored before testing")
    return items


def aggregate(config: dict[str, Any], out: Path, runs: list[Run], not_applicable: list[dict], explain: bool) -> dict:
    """study.json / .csv / .md / .html, figure3.png and, per model, its median run's Figure 4."""
    from core.document import Document
    from core.io import write_json, write_text, write_with
    from core.metrics import json_safe

    groups = collect(out, runs)
    if not groups:
        raise UserError(f"no finished run under {out / 'runs'} yet: run the study (or its shards) first")
    rows = table1(groups)
    png = figure3(groups)
    write_with(out / "figure3.png", lambda tmp: tmp.write_bytes(png))
    figures4 = _figure4s(groups, out) if explain else {}
    failed = {p.parent.name: _why_not_run(p) for p in sorted((out / "runs").glob("*/error.json"))}
    result = json_safe(
        {
            "config": config,
            "rows": rows,
            "not_applicable": not_applicable,
            "failed": failed,
            "figure4": figures4,
            "clinicians": CLINICIANS,
        }
    )
    write_json(out / "study.json", result)
    _write_csv(out / "study.csv", rows)
    doc = Document("Study: Table 1 (test split, mean ± 95% CI over runs)")
    doc.paragraph("Protocol differences from Kim & Rocheteau 2020:").bullets(differences(config))
    headers = ["model", "weights", "runs", *METRICS]
    doc.table(headers, [[r["model"], r["weights"], r["runs"], *(_cell(r, m) for m in METRICS)] for r in rows])
    doc.paragraph(
        "Mean ± half-width of the 95% CI (t distribution, n - 1 df). * p < 0.05, ** p < 0.001: one-tailed Welch "
        "t-test, ImageNet weights > the same model from scratch. † / ‡: AUROC above general practitioners (0.83 "
        "± 0.03) / dermatologists (0.91 ± 0.02) of the meta-analysis the paper cites, p < 0.05 by a one-sided "
        "Welch t-test whose published standard error is the CI half-width / 1.96. p-values: study.json."
    )
    if not_applicable or failed:
        doc.heading("Not run").bullets(
            [f"{n['model']} {n['weights']}: {n['reason']}" for n in not_applicable]
            + [f"{name}: {why}, see runs/{name}/error.json" for name, why in failed.items()]
        )
    doc.image("figure3.png", "Figure 3: ROC curves")
    for model, folder in figures4.items():
        doc.image(f"{folder}/figure4.png", f"Figure 4: integrated gradients, {model}")
    write_text(out / "study.md", doc.markdown())
    write_text(out / "study.html", doc.html(images={"figure3.png": png}))
    return result


def _figure4s(groups: dict[tuple[str, str], list[dict[str, Any]]], out: Path) -> dict[str, str]:
    """Figure 4 of each model's median run (with ImageNet weights where the study has them)."""
    from train.explain import explain

    made = {}
    for model in dict.fromkeys(m for m, _ in groups):
        done = groups.get((model, "imagenet")) or groups[(model, "none")]
        mid = median_run(done)
        folder = f"explain/{mid['run'].name}"
        if not (out / folder / "figure4.png").is_file():
            explain(mid["folder"] / "checkpoint.pt", out / folder, cases=4, mean_cases=32, say=lambda m: None)
        made[model] = folder
    return made


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    import csv

    from core.io import write_with

    def write(tmp: Path) -> None:
        with tmp.open("w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(
                ["model", "weights", "runs"]
                + [f"{m}_{k}" for m in METRICS for k in ("mean", "ci_low", "ci_high")]
                + [f"{m}_p_tl_gt_scratch" for m in METRICS]
                + [f"auroc_p_gt_{w.split()[-1]}" for w in CLINICIANS]
            )
            for r in rows:
                writer.writerow(
                    [r["model"], r["weights"], r["runs"]]
                    + [r[m][k] for m in METRICS for k in ("mean", "ci_low", "ci_high")]
                    + [r.get("tl_vs_scratch", {}).get(m, {}).get("p") for m in METRICS]
                    + [r["vs_clinicians"][w]["p"] for w in CLINICIANS]
                )

    write_with(path, write)


def resolve_config(args: argparse.Namespace, out: Path) -> dict[str, Any]:
    """The study's options: those given, else those saved by an earlier invocation, else QUICK; a change to a
    saved study's options is refused (its runs would no longer be comparable)."""
    saved_path = out / CONFIG_FILE
    saved = _saved_config(saved_path) if saved_path.exists() else None
    config = dict(saved or QUICK)
    given = {k: getattr(args, k) for k in QUICK if getattr(args, k) is not None}
    for key in ("models", "weights"):
        if key in given:
            given[key] = [t.strip() for t in given[key].split(",") if t.strip()]
    if not saved:
        config = {**QUICK, "models": QUICK["models"].split(","), "weights": QUICK["weights"].split(","), **given}
    changed = [k for k, v in given.items() if saved and saved.get(k) != v]
    if changed:
        raise UserError(
            f"{out} is a study with {changed[0]}={saved[changed[0]]!r}; it cannot change to {given[changed[0]]!r}: "
            "use another --out, or leave the option out"
        )
    missing = [k for k in QUICK if k not in config]
    if missing:
        raise UserError(f"{saved_path} lacks {', '.join(missing)}: {_CONFIG_FIX}")
    validate(config)
    return config


_CONFIG_FIX = (
    "restore it, or delete it and rerun with the options the study was started with (finished runs are reused)"
)


def _saved_config(path: Path) -> dict[str, Any]:
    """study_config.json as a dict; UserError when it is empty, not JSON or not an object."""
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        why = "empty" if path.is_file() and path.stat().st_size == 0 else f"not valid JSON ({exc.__class__.__name__})"
        raise UserError(f"{path} is {why}: {_CONFIG_FIX}") from None
    if not isinstance(saved, dict):
        raise UserError(f"{path} holds a JSON {type(saved).__name__}, not the study's options: {_CONFIG_FIX}")
    return saved


def validate(config: dict[str, Any]) -> None:
    """One sentence per bad option (the per-run sizes and seeds have the bounds of python -m train)."""
    from core import zoo
    from train.config import check_seed, check_sizes

    numbers = ("seeds", "epochs", "image_size", "batch_size", "synthetic_count", "split_seed")
    wrong = [k for k in numbers if not isinstance(config[k], int) or isinstance(config[k], bool)]
    wrong += [k for k in ("models", "weights") if not isinstance(config[k], list)]
    if wrong:
        raise UserError(f"the study option {wrong[0]}={config[wrong[0]]!r} has the wrong type: {_CONFIG_FIX}")
    for model in config["models"]:
        zoo.resolve_name(model)
    unknown = [w for w in config["weights"] if w not in ("imagenet", "none")]
    if unknown or not config["weights"]:
        raise UserError(f"--weights takes imagenet and/or none, got {','.join(unknown) or 'nothing'}")
    if config["seeds"] < 2:
        raise UserError(f"--seeds must be at least 2 for confidence intervals and t-tests (got {config['seeds']})")
    if config["seeds"] > MAX_SEEDS:
        raise UserError(f"--seeds must be at most {MAX_SEEDS} runs per model and weights (got {config['seeds']})")
    check_sizes(
        epochs=config["epochs"],
        image_size=config["image_size"],
        batch_size=config["batch_size"],
        synthetic_count=config["synthetic_count"],
    )
    check_seed("--split-seed", config["split_seed"])


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m train.study",
        description="Reproduce the paper's Table 1, Figure 3 and Figure 4 from fresh runs.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=f"Defaults (offline; 9 min on the README's 2-core machine): {json.dumps(QUICK)}",
    )
    p.add_argument("--out", required=True, help="the study folder (runs/, tables, figures)")
    p.add_argument("--models", help="comma-separated model names or aliases")
    p.add_argument("--weights", help="imagenet,none (transfer learning vs from scratch)")
    p.add_argument("--seeds", type=int, help="runs per model and weights (at least 2)")
    p.add_argument("--epochs", type=int, help="maximum epochs per run")
    p.add_argument("--image-size", type=int, help="square input size")
    p.add_argument("--batch-size", type=int, help="batch size per process")
    p.add_argument("--data", help="synthetic or an ISIC 2020 folder")
    p.add_argument("--external", help="the external malignant set's folder")
    p.add_argument("--synthetic-count", type=int, help="images in the synthetic set")
    p.add_argument("--split-seed", type=int, help="seed of the patient split shared by every run")
    p.add_argument("--vary-split", action="store_true", default=None, help="a different split per run (seed)")
    p.add_argument("--shard", help="i/n: run only the i-th of n slices of the runs (no tables)")
    p.add_argument("--aggregate", action="store_true", help="only write tables and figures from finished runs")
    p.add_argument("--no-explain", action="store_true", help="skip Figure 4")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `python -m train.study`."""
    from contextlib import ExitStack

    from core.io import exclusive
    from train.config import check_out_folder

    args = build_parser().parse_args(argv)
    out = Path(args.out)
    check_out_folder(out)
    part = parse_shard(args.shard)
    config = resolve_config(args, out)
    # One lock per study, or per shard: shards of one study run at once by design (a run another process is
    # training is skipped, not failed), but a second copy of the same study or shard is refused.
    lock, who = (out, "") if part is None or args.aggregate else (out / f"shard-{part[0]}-of-{part[1]}", args.shard)
    with ExitStack() as stack:
        try:
            stack.enter_context(exclusive(lock, "study"))
        except UserError:  # exclusive's only UserError: the lock is held
            shard_text = f" --shard {who}" if who else ""
            raise UserError(
                f"another python -m train.study{shard_text} is running on {out} right now: wait for it to finish, "
                "or give another --out"
            ) from None
        return _study(args, out, part, config)


def _study(args: argparse.Namespace, out: Path, part: tuple[int, int] | None, config: dict[str, Any]) -> int:
    """Train this invocation's runs (unless --aggregate), then the tables and figures (unless --shard)."""
    from core.console import Console
    from core.io import write_json

    runs, not_applicable = plan(config)
    failed: list[str] = []
    if not args.aggregate:
        if not (out / CONFIG_FILE).is_file():
            write_json(out / CONFIG_FILE, config)
        mine = shard(runs, part)
        wanted = sorted({r.model for r in mine if r.weights == "imagenet"})
        unavailable = imagenet_unavailable(wanted) if wanted else {}
        for model, reason in unavailable.items():
            print(f"ImageNet weights unavailable for {model}: {reason}", file=sys.stderr)
        with Console() as console:
            outcomes = run_all(config, out, mine, unavailable, console)
        statuses = ("trained", "done earlier", "no weights", "failed")
        counts = {s: sum(o["status"] == s for o in outcomes) for s in (*statuses, "running elsewhere")}
        elsewhere = f", {counts['running elsewhere']} running elsewhere" if counts["running elsewhere"] else ""
        print(", ".join(f"{counts[s]} {s}" for s in statuses) + elsewhere, file=sys.stderr)
        # Only the error.json files that exist: a run failed here may have been finished by another process since.
        failed = [
            o["run"] for o in outcomes if o["status"] == "failed" and (out / "runs" / o["run"] / "error.json").is_file()
        ]
        if part is not None:
            return _report_failed(out, failed)
    result = aggregate(config, out, runs, not_applicable, explain=not args.no_explain)
    print(f"Table 1: {out / 'study.md'} ({sum(r['runs'] for r in result['rows'])} runs); figures in {out}")
    return _report_failed(out, failed)


def _report_failed(out: Path, failed: list[str]) -> int:
    """Exit status 1 when a run crashed (a scheduler should see it; weights a machine cannot have are no crash)."""
    if not failed:
        return 0
    files = ", ".join(str(out / "runs" / name / "error.json") for name in failed[:3]) + (
        " ..." if len(failed) > 3 else ""
    )
    print(f"{len(failed)} run(s) failed, see {files}; rerun the command to retry them", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(run_cli(main))
