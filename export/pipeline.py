"""The export pipeline: a model, its spec and an evaluation set in; artifacts judged against the model, the
reports and the golden vectors out. `python -m export.all` (export/all.py) parses the command line and
calls `export_all`; a notebook can too.

    summary = export_all(Path("runs/x/checkpoint.pt"), Path("dist/x"), parse_formats("onnx,tflite"), ["fp32"])

For each (format, artifact, precision) the plan names, `Judge.check` exports the artifact, runs the format's
own checker, reads the spec back from the artifact, predicts the evaluation cases through the format's
runner and judges the row with export.parity's gates; static int8 rows start from export.quantize's one
search decision, shared by every format.
"""

from __future__ import annotations

import json
import os
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from core.console import Console
from core.errors import UserError, free_space_mb
from core.evaluation import EvalSet
from core.io import sha256_file, write_json
from core.metrics import auprc, bootstrap_ci, calibrated_probability, calibration, has_both_classes, json_safe
from core.spec import ModelSpec
from export import parity, runners
from export.common import NotRunnable, Runner, artifact_size_mb, example_inputs, sidecar_path
from export.formats import Artifact, Format, artifact_name
from export.golden import write_golden
from export.model_card import write_card
from export.precision import CALIBRATED, REMEDIABLE, QuantOptions, family
from export.quantize import SIMULATION_MARGIN, Int8Search, quantize_with_remedies
from export.report import write_reports
from export.runners import TorchEagerRunner
from export.sources import Source, checkpoint_source

Row = dict[str, Any]  # one parity.json row (see README: format, precision, file, sha256, status, ...)
# Cases per call when the judge predicts through a runner that takes any batch (and the reference's): on this
# 2-core CPU, the 224 px EfficientNet-Lite0 in TorchScript took 5.1 s for the 399 judge cases in batches of 4
# and 22.8 s in batches of 32 (the activations of a large batch overflow the caches); ONNX Runtime 2.3 vs 2.7 s.
# The benchmark times the batch it is asked for.
JUDGE_BATCH = 4
# A float row's second runtime runs beside the next conversions only with this many CPUs or more: both run
# 2-threaded, so on 2 cores they only share them. The 224 px B0, every format (AMD EPYC, 2 cores): 307 s with
# each witness awaited at once, 318 and 329 s with them beside (their own time 51 s against 79 and 95 s).
WITNESS_BESIDE_MIN_CPUS = 4
MIN_FREE_MB = 20.0  # below this, a converter's failure is taken for a full disk, not for the converter's own


def out_of_space(folder: Path, exc: BaseException) -> None:
    """Raise a UserError when `exc` came from a full disk (ENOSPC / EDQUOT anywhere in its chain, or almost
    no space left where the export is built): the whole export stops there, so the staged folder is dropped
    and an earlier export stays in place, instead of a row of failures being swapped in over it."""
    import errno

    chain, seen = [], exc
    while seen is not None and len(chain) < 10:
        chain.append(seen)
        seen = seen.__cause__ or seen.__context__
    full = [e for e in chain if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT)]
    if full or (free_space_mb(folder) or 0.0) < MIN_FREE_MB:
        where = Path(full[0].filename).parent if full and full[0].filename else folder.parent
        free_mb = free_space_mb(where) or 0.0
        raise UserError(
            f"the disk holding {where} filled up during the export ({free_mb:.0f} MB free there; "
            f"{exc.__class__.__name__}): free some space or give another --out; the earlier export, if any, is "
            "unchanged"
        ) from None


class ConverterRefused(Exception):
    """A format's converter raised on a model trained elsewhere: that format is unsupported for it."""


class Judge:
    """Exports one artifact at a time into `out` and judges it against the checkpoint's PyTorch model on the
    test split; keeps each artifact's probabilities (for the ROC plot) and runner (for the golden vectors)."""

    def __init__(
        self,
        model: nn.Module,
        spec: ModelSpec,
        data: EvalSet,
        reference: Runner,
        out: Path,
        console: Console,
        foreign: bool = False,
        gates: parity.Gates = parity.DEFAULT_GATES,
    ):
        self.model, self.spec, self.data, self.out, self.console = model, spec, data, out, console
        self.gates = gates
        self.foreign = foreign  # a converter that cannot take a foreign model makes its format unsupported
        self.unsupported: dict[str, str] = {}  # format label -> why its converter cannot take the model
        self.reference = reference.predict(data.image, data.meta).probability.reshape(-1)
        self.groups = parity.subgroups(data.table, spec.model_contract().features)
        self.example = example_inputs(spec, batch=2)
        self.curves: dict[str, np.ndarray] = {"pytorch-eager": self.reference}
        self.runners: dict[str, Runner] = {}
        # Second runtimes run on the witness thread (tf.lite in its own process, OpenVINO in native code). With
        # enough CPUs a float row's runs beside the next conversions and its verdict waits for `settle`;
        # otherwise, and for an int8 row always (the remedies walk reads it), it is awaited at once.
        self._witnesses = ThreadPoolExecutor(max_workers=1, thread_name_prefix="witness")
        self.witness_beside = usable_cpus() >= WITNESS_BESIDE_MIN_CPUS
        self._pending: list[tuple[Row, Future[Row]]] = []

    def reference_row(self, file: Path | None) -> Row:
        both = has_both_classes(self.data.target)
        return {
            "format": "pytorch-eager",
            "precision": "fp32",
            "file": str(file) if file else None,
            "sha256": sha256_file(file) if file else None,
            "status": "reference",
            "size_mb": artifact_size_mb(file) if file else None,
            "auroc": parity.auroc(self.data.target, self.reference),
            "auprc": parity.auprc(self.data.target, self.reference),
            "auroc_ci95": list(bootstrap_ci(self.data.target, self.reference)) if both else None,
            "auprc_ci95": list(bootstrap_ci(self.data.target, self.reference, auprc)) if both else None,
            "calibration": calibration(self.data.target, self.reference),
        }

    def check(
        self, fmt: Format, artifact: Artifact, precision: str, options: QuantOptions, model: nn.Module | None = None
    ) -> Row:
        """Export, run the format's checker, read the spec back, predict and judge; failures become the row."""
        path = self.out / artifact_name(self.spec.name, artifact, precision)
        row: Row = {"format": fmt.label(artifact), "precision": precision, "file": path.name}
        if row["format"] in self.unsupported:  # its fp32 conversion already could not take the model
            return {**row, "file": None, "status": "unsupported", "reason": self.unsupported[row["format"]]}
        start = time.time()
        try:
            with self.console.captured():
                runner = self._export(fmt, artifact, precision, options, model, path, row)
        except NotRunnable as exc:
            return row | {"status": "not-run", "reason": str(exc)}
        except ConverterRefused as exc:
            out_of_space(self.out, exc.__cause__ or exc)
            path.unlink(missing_ok=True)
            if precision == "fp32":
                self.unsupported[row["format"]] = str(exc)
            return {**row, "file": None, "status": "unsupported", "reason": str(exc)}
        except UserError as exc:  # e.g. the format's checker refusing a file a full disk cut short
            out_of_space(self.out, exc)
            return row | {"status": "fail", "reason": str(exc), "export_seconds": round(time.time() - start, 2)}
        except Exception as exc:  # noqa: BLE001 - a converter failing must not stop the others
            out_of_space(self.out, exc)
            first = str(exc).splitlines()[0] if str(exc) else ""
            row |= {"status": "fail", "reason": f"{exc.__class__.__name__}: {first}"}
            return row | {"export_seconds": round(time.time() - start, 2), "traceback": traceback.format_exc(limit=5)}
        return self._judge(runner, row, precision)

    def _export(
        self,
        fmt: Format,
        artifact: Artifact,
        precision: str,
        options: QuantOptions,
        model: nn.Module | None,
        path: Path,
        row: Row,
    ) -> Runner:
        start = time.time()
        module = fmt.load_module()
        try:
            fmt.exporter(artifact)(model or self.model, self.spec, self.example, path, precision, options)
        except (NotRunnable, UserError):
            raise
        except Exception as exc:
            if not self.foreign:
                raise
            first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
            raise ConverterRefused(
                f"{fmt.title}'s converter cannot take this model ({exc.__class__.__name__}: {first})"
            ) from exc
        module.check(path)  # the format's own strictest checker, before anything is judged
        embedded = module.read_spec(path)  # the new artifact's own spec replaces any old sidecar
        embedded.save(sidecar_path(path))
        row["export_seconds"] = round(time.time() - start, 2)
        row["size_mb"] = round(artifact_size_mb(path), 3)
        row["sha256"] = sha256_file(path)
        row["method"] = embedded.precision.get("method", "")
        if precision in REMEDIABLE and hasattr(module, "int8_tensors"):
            # The quantizers find the model through export.common.WRAPPED: had a scope missed, the "int8"
            # artifact would be float. The file itself must hold int8 weights (and activations, when static).
            weights, activations = module.int8_tensors(path)
            row["int8_tensors"] = {"weights": int(weights), "activations": int(activations)}
            if not weights or (precision in CALIBRATED and not activations):
                raise UserError(
                    f"{path.name} holds {weights} int8 weight and {activations} quantized activation tensors: the "
                    "quantizer matched none of the model's layers, so it is not an int8 artifact"
                )
        row["spec_round_trip"] = _same_except_artifact_fields(embedded, self.spec)
        runner = runners.load(path)
        runner.max_batch = JUDGE_BATCH
        return runner

    def figures(self, prob: np.ndarray, n_boot: int = parity.BOOTSTRAP) -> Row:
        """Parity figures of probabilities on the judge cases against the reference's."""
        threshold, least = self.spec.outputs.threshold, self.gates.min_subgroup_class
        return parity.compare(self.data.target, self.reference, prob, threshold, self.groups, n_boot, least)

    def simulated(self, logits: np.ndarray) -> Row:
        """The int8 gate on the logits of a simulated artifact (export.quantize's search probes): the figures
        of a real row, a lighter bootstrap (the gates do not read its intervals)."""
        prob = calibrated_probability(logits, self.spec.outputs.temperature).astype(np.float32)
        row = self.figures(prob, n_boot=100)
        status, reasons = parity.judge(row, "int8", self.gates.with_margin(SIMULATION_MARGIN))
        return row | {"status": status, "reason": "; ".join(reasons)}

    def witness(self, path: Path, runner: Runner, prob: np.ndarray, precision: str) -> Future[Row]:
        """The artifact run by a second runtime of its format (export.witness), held to the same gate against
        PyTorch, on the witness thread; "not-run" with the reason where there is none here. The file must stay
        as it is until the row is settled."""
        from export import witness

        try:
            name = witness.runtime_for(path)
        except witness.Unavailable as exc:
            done: Future[Row] = Future()
            done.set_result({"status": "not-run", "reason": str(exc)})
            return done
        nhwc = runner.spec.image.layout == "NHWC"
        return self._witnesses.submit(self._witnessed, name, path, nhwc, prob, precision)

    def _witnessed(self, name: str, path: Path, nhwc: bool, prob: np.ndarray, precision: str) -> Row:
        from export import witness

        start = time.time()
        try:  # (not inside console.captured: that redirects the whole process's output, the main thread's too)
            other = witness.predict(path, self.data.image, self.data.meta, nhwc)
        except Exception as exc:  # noqa: BLE001 - a runtime that cannot read the file is the finding
            first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
            return {
                "runtime": name,
                "status": "fail",
                "reason": f"it cannot run the file ({exc.__class__.__name__}: {first})",
            }
        if other.shape != prob.shape:
            return {
                "runtime": name,
                "status": "fail",
                "reason": f"it returned {other.size} probabilities for {prob.size} cases (outputs of shape "
                f"{list(other.shape)}): it reads the file differently",
            }
        figures = self.figures(other, n_boot=100)
        status, reasons = parity.judge(figures, precision, self.gates)
        keys = ("max_abs_diff", "auroc_delta", "flips", "worst_subgroup_delta")
        return {
            "runtime": name,
            "status": status,
            "reason": "; ".join(reasons),
            "max_abs_diff_to_primary": float(np.max(np.abs(other - prob))) if len(prob) else 0.0,
            "seconds": round(time.time() - start, 2),
        } | {k: figures[k] for k in keys}

    def hopeless(self, logits: np.ndarray) -> bool:
        """True when the simulated logits of the first cases alone flip more decisions than the int8 gate allows
        on every judge case (the search's probes stop there)."""
        prob = calibrated_probability(logits, self.spec.outputs.temperature)
        threshold = self.spec.outputs.threshold
        flips = int(((self.reference[: len(prob)] >= threshold) != (prob >= threshold)).sum())
        return flips > self.gates.with_margin(SIMULATION_MARGIN)["int8"].max_flip_fraction * len(self.reference)

    def _judge(self, runner: Runner, row: Row, precision: str) -> Row:
        start = time.time()
        prob = runner.predict(self.data.image, self.data.meta).probability.reshape(-1)
        row["predict_seconds"] = round(time.time() - start, 2)
        row.update(self.figures(prob))
        row["calibration"] = calibration(self.data.target, prob)
        status, reasons = parity.judge(row, precision, self.gates)
        if not row["spec_round_trip"]:
            status, reasons = "fail", [*reasons, "the spec read back differs from the one exported"]
        self.curves[row["format"] if precision == "fp32" else f"{row['format']} {precision}"] = prob
        self.runners[row["file"]] = runner
        row |= {"status": status, "reason": "; ".join(reasons)}
        if status == "pass":
            pending = self.witness(self.out / row["file"], runner, prob, precision)
            if precision in REMEDIABLE or not self.witness_beside:
                _witnessed_verdict(row, pending.result())
            else:
                self._pending.append((row, pending))
        return row

    def settle(self) -> list[Row]:
        """Wait for the second runtimes still running and give each row its verdict (a failure there fails the
        row); returns the rows whose status changed."""
        running = sum(not future.done() for _, future in self._pending)
        if running:
            self.console.say(f"waiting for {running} second-runtime check(s) ...")
        changed = []
        for row, future in self._pending:
            if not _witnessed_verdict(row, future.result()):  # writes the verdict into the row
                changed.append(row)
        self._pending.clear()
        return changed

    def close(self) -> None:
        """Drop the witnesses not yet started (an export stopped early) and stop the witnesses' tf.lite
        process (a request of it still running then fails)."""
        from export import witness

        self._witnesses.shutdown(wait=False, cancel_futures=True)
        witness.close()


def plan(formats: Sequence[Format], precisions: Sequence[str]) -> Iterator[tuple[Format, Artifact, str]]:
    """(format, artifact, precision) for every requested pair; a family a format lacks altogether comes once,
    with precision = the family name, so that it is reported as unsupported."""
    for fmt in formats:
        for artifact in fmt.artifacts:
            families = dict.fromkeys(family(p) for p in precisions)
            for fam in families:
                mine = [p for p in precisions if family(p) == fam and p in fmt.precisions]
                yield from ((fmt, artifact, p) for p in mine) if mine else [(fmt, artifact, fam)]


def export_one(judge: Judge, inputs: Int8Search, fmt: Format, artifact: Artifact, precision: str) -> Row:
    """One artifact's row: unsupported, judged once, or int8 from the search's decision (and its remedies)."""
    if precision not in fmt.precisions:
        reason = f"{fmt.title} has no {precision} path; it makes {', '.join(fmt.precisions)}"
        reason += f" ({fmt.quantization})" if fmt.precisions == ("fp32",) else ""
        return {"format": fmt.label(artifact), "precision": precision, "status": "unsupported", "reason": reason}
    if precision not in REMEDIABLE or fmt.label(artifact) in judge.unsupported:
        return judge.check(fmt, artifact, precision, QuantOptions())  # (an unsupported format: its row at once)
    calibrated = precision in CALIBRATED
    rungs = inputs.rungs(calibrated, fmt.int16_activations)
    step: Callable[[QuantOptions, nn.Module | None], Row] = partial(judge.check, fmt, artifact, precision)
    skip = inputs.known_miss if calibrated else lambda _: None  # only static int8 walks share their misses
    row = quantize_with_remedies(rungs, inputs, calibrated, step, say=judge.console.say, skip=skip)
    if calibrated:
        inputs.learn(fmt.label(artifact), row["attempts"])
    return row


def export_all(
    checkpoint: Path,
    out: Path,
    formats: Sequence[Format],
    precisions: Sequence[str] = ("fp32",),
    golden_count: int = 4,
    limit: int | None = None,
    calibration_size: int = 128,
    console: Console | None = None,
    gates: parity.Gates = parity.DEFAULT_GATES,
) -> dict[str, Any]:
    """Export a `python -m train` checkpoint (see export_source)."""
    console = console or Console()
    console.say("loading the checkpoint and its test split for parity ...")
    source = checkpoint_source(checkpoint, limit)
    return export_source(source, out, formats, precisions, golden_count, calibration_size, console, gates)


def export_source(
    source: Source,
    out: Path,
    formats: Sequence[Format],
    precisions: Sequence[str] = ("fp32",),
    golden_count: int = 4,
    calibration_size: int = 128,
    console: Console | None = None,
    gates: parity.Gates = parity.DEFAULT_GATES,
    signature: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Export `source` (export.sources: a model, its spec, an evaluation set) to `formats` x `precisions` in
    the folder `out`, judge each artifact against the model on the judge cases under `gates`, write the
    reports (which say whether the folder will be signed: `signature` is export.sign.key_description)."""
    started, console = time.time(), console or Console()
    model, spec, data = source.model, source.spec, source.judge
    spec.save(out / "spec.json")
    reference = TorchEagerRunner(source.reference_file or out / "spec.json", model, spec)
    reference.max_batch = JUDGE_BATCH  # eager ran 2.7x slower per image in batches of 64 than of 4 (Lite0, 224 px)
    judge = Judge(model, spec, data, reference, out, console, foreign=source.foreign, gates=gates)
    cases = (data.image, data.meta)
    inputs = Int8Search(
        model,
        source.training_split,
        calibration_size,
        cases,
        judge.simulated,
        console.say,
        console.captured,
        hopeless=judge.hopeless,
    )
    rows = [judge.reference_row(source.reference_file)]
    console.say(f"reference (PyTorch eager): AUROC {rows[0]['auroc']:.4f} on {len(data)} judge cases")
    jobs = list(plan(formats, precisions))
    try:
        from export import witness

        witness.prepare({artifact.suffix for _, artifact, _ in jobs})
        for fmt, artifact, precision in console.bar(jobs, "exporting", total=len(jobs)):
            rows.append(export_one(judge, inputs, fmt, artifact, precision))
            console.result(f"[{rows[-1]['format']} {precision}] {describe(rows[-1])}")
            if "traceback" in rows[-1]:
                console.say("\n".join(f"    | {line}" for line in console.tail()))
        for row in judge.settle():
            console.result(f"[{row['format']} {row['precision']}] {describe(row)}")
    finally:
        judge.close()
    summary = summarize(source, rows, inputs, gates, time.time() - started)
    write_json(out / "parity.json", summary)
    write_reports(out, summary, data.target, judge.curves, signature)
    run_metrics = None if source.foreign or not source.reference_file else source.reference_file.parent / "metrics.json"
    write_card(out, run_metrics)
    if golden_count > 0:
        write_golden(out, spec, data.table, reference, golden_count, judge.runners)
    return summary


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity where the OS tells it, else every CPU)."""
    affinity = getattr(os, "sched_getaffinity", None)
    return len(affinity(0)) if affinity else (os.cpu_count() or 1)


def _witnessed_verdict(row: Row, witnessed: Row) -> bool:
    """Record the second runtime's row in `row`, failing `row` when it failed; True when `row` still stands."""
    row["second_runtime"] = witnessed
    if witnessed["status"] != "fail":
        return True
    row |= {"status": "fail", "reason": f"in {witnessed['runtime']}: {witnessed['reason']}"}
    return False


def describe(row: Row) -> str:
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
    source: Source, rows: list[Row], search: Int8Search, gates: parity.Gates, seconds: float
) -> dict[str, Any]:
    """parity.json: the rows with their size reduction, the gates, the recommendation per format."""
    spec, data = source.spec, source.judge
    discarded = round(sum(r.get("discarded_seconds", 0.0) for r in rows), 1)  # int8 attempts not kept
    fp32 = {r["format"]: r.get("size_mb") for r in rows if r["precision"] == "fp32"}
    for r in rows:
        if fp32.get(r["format"]) and r.get("size_mb"):
            r["size_reduction"] = round(fp32[r["format"]] / r["size_mb"], 2)
    return json_safe(
        {
            "model": spec.name,
            "checkpoint": str(source.reference_file) if source.reference_file else None,
            "source": source.origin,
            "weights_sha256": spec.weights_sha256,
            "data": spec.provenance.get("data", {}).get("name", "?"),
            "n": len(data),
            "n_positive": int(data.target.sum()),
            "threshold": spec.outputs.threshold,
            "threshold_rule": spec.outputs.threshold_rule,
            "gates": gates.as_dict(),
            "seconds": round(seconds, 1),
            "int8_seconds": search.seconds | ({"failed rungs": discarded} if discarded else {}),
            "int8_search": search.record(),
            "rows": rows,
            "recommended": recommend(rows),
        }
    )


def recommend(rows: list[Row]) -> dict[str, dict[str, Any]]:
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


def unmet(rows: list[Row]) -> list[str]:
    """The requested (format, precision family) pairs without a passing artifact, ignoring pairs that are
    unsupported or cannot run here (every row of the pair not-run / unsupported)."""
    pairs: dict[tuple[str, str], list[str]] = {}
    for r in rows[1:]:
        pairs.setdefault((r["format"], family(r["precision"])), []).append(r["status"])
    return [
        f"{label} {fam}"
        for (label, fam), statuses in pairs.items()
        if "pass" not in statuses and not set(statuses) <= {"not-run", "unsupported"}
    ]


def _same_except_artifact_fields(embedded: ModelSpec, spec: ModelSpec) -> bool:
    """The spec read back equals the exported one, apart from the per-artifact layout and precision."""
    a, b = json.loads(embedded.to_json()), json.loads(spec.to_json())
    for d in (a, b):
        d["image"].pop("layout")
        d.pop("precision")
    return a == b
