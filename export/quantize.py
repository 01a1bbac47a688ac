"""Static int8 for every format from one decision: which modules stay float, found once per export by a
search on a PyTorch simulation, then applied by each format's own quantizer.

The precision vocabulary and the exporters' options live in export.precision, the module-path matching in
export.scopes, the simulation in export.sensitivity; this module builds on them, never the other way round.

The search (`Int8Search.decision`), judged by the export's own parity gates on the judge cases, each limit
tightened to SIMULATION_MARGIN of itself:
1. Everything int8 (but the contract's float rules, `always_float`), simulated with PT2E's XNNPACK quantizer
   calibrated on the export's calibration images. When that passes, no module stays float.
2. Otherwise every candidate module (the blocks of `sensitivity.candidate_blocks`, plus the first conv and the
   classifier) is ranked by the logit error int8 causes in it alone, on training images.
3. The k most sensitive go back to float, k = 1, 2, 4, 6, 9, ... until the simulation passes, then bisected
   between the last failing and the first passing k: the fewest float modules the gate needs. Past 4 the
   steps grow by half, not double: a passing probe sees every judge case, so one far past the boundary is the
   dearest kind (the 224 px Lite0: 4 failed, 8 passed in 9.7 s, then 6 passed and 5 failed; now 6 comes
   straight after 4).
Each probe is a pass over the judge cases through the one calibrated simulation, cut by `with_float`. The
simulation is the graph ExecuTorch lowers (its splits as slices, the same quantizer): ExecuTorch's artifact is
that cut itself (QuantOptions.simulated), and ONNX and TFLite quantize the same modules with their own tools.

Each format then exports its artifact with those modules float (`rungs`), judged for real. Where that misses
(a format's kernels round differently from the simulation), a short walk follows, the fastest kind of
artifact first: more of the ranked modules float, doubling up to half of them (8-bit activations stay), then
16-bit activations (where the format has them), then int8-aware weight fine-tuning (export.finetune). The
first artifact that passes is kept; when none does, the closest miss. A rung that failed in two formats
already (every format that tried it), the decision's own included, is skipped in the next (`known_miss`).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from torch import nn

from export.finetune import finetune_for_int8
from export.precision import QuantOptions
from export.scopes import within


def first_conv(model: nn.Module) -> str:
    """Path of the model's first convolution."""
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            return name
    raise ValueError("the model has no convolution")


def always_float(model: nn.Module) -> list[str]:
    """Modules marked `keeps_float` (export.adapter's contract rules): float in every int8 artifact."""
    return [name for name, module in model.named_modules() if getattr(module, "keeps_float", False)]


def sensitive_modules(model: nn.Module) -> list[str]:
    """The first convolution, and the head and metadata MLP of a model `python -m train` made, or the last
    linear layer (the classifier) of one trained elsewhere: what dynamic int8's one remedy keeps float, and
    search candidates beside the blocks."""
    names = dict(model.named_modules())
    fixed = [name for name in ("head", "meta_mlp") if name in names]
    if not fixed:
        fixed = [name for name, module in names.items() if isinstance(module, nn.Linear)][-1:]
    convs = [name for name, module in names.items() if isinstance(module, nn.Conv2d)][:1]
    return [*convs, *fixed]


def candidates(model: nn.Module) -> list[str]:
    """The modules the search may keep float: the candidate blocks, then the first conv and classifier where
    no block holds them (outside `always_float`)."""
    from export.sensitivity import candidate_blocks

    exclude = tuple(always_float(model))
    blocks = candidate_blocks(model, exclude)
    extra = [m for m in sensitive_modules(model) if not within(m, blocks) and not within(m, list(exclude))]
    return blocks + extra


@dataclass(frozen=True)
class Remedy:
    """One artifact to try: what it keeps float and how it quantizes the rest."""

    name: str
    float_modules: int = 0  # how many of the ranked candidates stay float, the most int8-sensitive first
    fixed: bool = False  # instead: the first conv and the classifier (dynamic int8's one remedy)
    activation_bits: int = 8  # 16 = "16x8" (int8 weights, int16 activations) where the format has it
    finetune: bool = False  # export.finetune: int8-aware weight fine-tuning, distilled from the fp32 model


NONE = "none (per-channel int8 weights)"


def float_name(count: int, of: int) -> str:
    """How a remedy that keeps `count` ranked modules float is named in rows and reports."""
    if count == 0:
        return NONE
    return f"the {count} most int8-sensitive of {of} modules in float"


def dynamic_rungs() -> list[Remedy]:
    """Dynamic int8 (no calibration, so no simulation of it): everything, then the first conv and classifier
    float."""
    return [Remedy(NONE), Remedy("first conv and classifier in float", fixed=True)]


@dataclass
class Decision:
    """The search's result: how many ranked modules stay float, and every probe that led there."""

    float_modules: int
    candidates: int
    passed: bool
    probes: list[dict[str, Any]] = field(default_factory=list)
    ranked: list[tuple[str, float]] = field(default_factory=list)
    error: str = ""  # why no simulation could be made (then no module is kept float by the decision)
    kept: tuple[str, ...] = ()  # the float modules themselves (the first `float_modules` of the ranking)

    def as_dict(self) -> dict[str, Any]:
        return {
            "error": self.error or None,
            "float_modules": self.float_modules,
            "kept_float": list(self.kept),
            "candidates": self.candidates,
            "simulation_passed": self.passed,
            "simulation_margin": SIMULATION_MARGIN,
            "probes": self.probes,
            "ranking": [{"module": m, "rms_logit_error": round(e, 5)} for m, e in self.ranked],
        }


# The search's probes meet the int8 gate with this share of each limit (AUROC drop, flips, subgroup drop): the
# simulation rounds like XNNPACK but not bit for bit (rms logit difference 0.06 on the 224 px Lite0), and a
# decision that met the full gate by a hair failed it in all three formats (Lite0: simulated AUROC drop 0.0043,
# the formats' 0.0047-0.0050 against 0.005 allowed), each then walking to its next rung at 15-25 s a try.
SIMULATION_MARGIN = 0.8
# A rung of the walk that failed in this many formats already (every one that tried it) is not tried again in the
# next, the decision's own rung included: the formats round differently, but a miss in two makes a third's
# likely, and an ExecuTorch rung costs 30-45 s at 224 px (ShuffleNet: everything int8, then 2 modules float,
# failed in ONNX, TFLite and then ExecuTorch, 76 s there). The last rung is always tried.
SKIP_AFTER_MISSES = 2
FINETUNE_IMAGES = 1024  # training images the int8-aware fine-tuning distils on (a random subset)
SENSITIVITY_IMAGES = 32  # training images the sensitivity ranking measures its error on
PROBE_FIELDS = ("status", "reason", "flips", "auroc_delta", "worst_subgroup_delta")


def _miss(probe: dict[str, Any]) -> tuple[float, float]:
    """How far a failed probe is from passing: fewer flips first, then the smaller AUROC drop."""
    if probe.get("flips") is None:
        return (float("inf"), float("inf"))
    return (probe["flips"], -(probe.get("auroc_delta") or 0.0))


class Int8Search:
    """The int8 decision and what each format's artifacts need beyond the model, each made once on first use
    and shared by every format: the calibration set, the simulation, the ranking, the decision, fine-tuned
    models. `seconds` records where the time went.

    Args:
        model: the fp32 model (an nn.Module taking image, meta).
        training_split: `(size, seed=0, stratified=False) -> EvalSet` of training (calibration) images.
        calibration_size: images every static int8 artifact calibrates on (class-stratified).
        cases: the judge cases' `(image, meta)` arrays the probes predict.
        judge_logits: `logits [N] -> parity row` (status, reason, flips, ...) under the export's gates.
        say: where progress lines go.
        quiet: a context in which third-party output goes to the log (core.console).
        hopeless: `logits of the first cases -> bool`, True once the flips among them alone exceed the gate:
            a probe stops there and fails (a probe that passes always sees every case).
    """

    def __init__(
        self,
        model: nn.Module,
        training_split: Callable[..., Any],
        calibration_size: int,
        cases: tuple[np.ndarray, np.ndarray] | None = None,
        judge_logits: Callable[[np.ndarray], dict[str, Any]] | None = None,
        say: Callable[[str], None] = lambda _: None,
        quiet: Callable[[], Any] = contextlib.nullcontext,
        hopeless: Callable[[np.ndarray], bool] | None = None,
    ):
        self.model, self.training_split, self.calibration_size = model, training_split, calibration_size
        self.cases, self.judge_logits, self.say, self.quiet = cases, judge_logits, say, quiet
        self.hopeless = hopeless  # logits of the first cases -> True when the gate is already lost
        self._calibration: Any = None
        self._simulation: Any = None
        self._ranked: list[tuple[str, float]] | None = None
        self._decision: Decision | None = None
        self._probes: dict[int, dict[str, Any]] = {}
        self._tuned: dict[tuple[str, ...], tuple[nn.Module, dict[str, Any]]] = {}
        self._walked: dict[str, dict[str, str]] = {}  # format -> remedy name -> "pass" / "fail" of its artifact
        self.candidates = candidates(model)
        self.seconds: dict[str, float] = {}

    def _timed(self, key: str, start: float) -> None:
        self.seconds[key] = round(self.seconds.get(key, 0.0) + time.time() - start, 1)

    def calibration(self) -> Any:
        if self._calibration is None:
            start = time.time()
            self.say(f"loading {self.calibration_size} class-stratified training images for calibration ...")
            self._calibration = self.training_split(self.calibration_size, stratified=True)
            self._timed("calibration_images", start)
        return self._calibration

    def simulation(self) -> Any:
        """The PT2E simulation, everything int8 but `always_float`, calibrated once."""
        if self._simulation is None:
            from export.sensitivity import simulation

            calibration = self.calibration()
            start = time.time()
            with self.quiet():
                self._simulation = simulation(self.model, calibration, tuple(always_float(self.model)))
            self._timed("search", start)
        return self._simulation

    def ranked(self) -> list[tuple[str, float]]:
        """The candidates, the one int8 hurts most first (ranked once)."""
        if self._ranked is None:
            from export.sensitivity import rank_blocks

            converted = self.simulation()
            start = time.time()
            images = self.training_split(SENSITIVITY_IMAGES, seed=1)
            self.say(f"ranking {len(self.candidates)} modules by simulated int8 error on {len(images)} images ...")
            with self.quiet():
                self._ranked = rank_blocks(
                    self.model, self.calibration(), images, converted=converted, blocks=self.candidates
                )
            self.say("most int8-sensitive: " + ", ".join(f"{b} ({e:.3f})" for b, e in self._ranked[:4]))
            self._timed("sensitivity_ranking", start)
        return self._ranked

    def top(self, count: int) -> tuple[str, ...]:
        return tuple(module for module, _ in self.ranked()[:count]) if count else ()

    def probe(self, count: int) -> dict[str, Any]:
        """The simulated artifact with the `count` most sensitive modules float, judged by the gates."""
        if count not in self._probes:
            from export.sensitivity import fused, logits, with_float

            assert self.cases is not None and self.judge_logits is not None, "the search needs the judge cases"
            converted, keep = self.simulation(), self.top(count)
            start = time.time()
            graph = fused(with_float(converted, keep))
            values = logits(graph, *self.cases, stop=self.hopeless)
            if len(values) < len(self.cases[0]):
                probe = {"float_modules": count, "status": "fail", "flips": None, "auroc_delta": None}
                probe["reason"] = f"more flipped decisions than the gate allows among the first {len(values)} cases"
            else:
                row = self.judge_logits(values)
                probe = {"float_modules": count} | {k: row.get(k) for k in PROBE_FIELDS}
            probe["seconds"] = round(time.time() - start, 1)
            self._probes[count] = probe
            self._timed("search", start)
            verdict = "pass" if probe["status"] == "pass" else f"fail ({probe['reason']})"
            self.say(f"int8 search: {float_name(count, len(self.candidates))}, simulated: {verdict}")
        return self._probes[count]

    def decision(self) -> Decision:
        """The fewest ranked modules in float with which the simulation passes (see the module docstring).

        When the simulation itself cannot be made (torch.export or PT2E refuses the model), the decision is
        "no module float" with the reason: every format then tries that, and the first conv and classifier
        in float, with its own quantizer."""
        if self._decision is None:
            try:
                self._decision = self._search()
            except Exception as exc:  # noqa: BLE001 - a model PT2E cannot take still gets each format's own int8
                first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
                reason = f"the PT2E simulation could not be made ({exc.__class__.__name__}: {first})"
                self.say(f"int8 search: {reason}; every format tries its own quantizer")
                self._decision = Decision(0, len(self.candidates), False, [], [], error=reason)
        return self._decision

    def _search(self) -> Decision:
        """The growing steps and the bisection on the simulation (see the module docstring)."""
        n = len(self.candidates)
        passes = lambda k: self.probe(k)["status"] == "pass"  # noqa: E731
        if passes(0) or n == 0:
            chosen, passed = 0, passes(0)
        else:
            failing, k = 0, 1
            while k < n and not passes(k):  # doubling to 4, then half as much again: 1, 2, 4, 6, 9, 14, ...
                failing, k = k, min(n, 2 * k if k < 4 else k + (k + 1) // 2)
            passed = passes(k)
            if passed:
                while k - failing > 1:
                    middle = (failing + k) // 2
                    failing, k = (failing, middle) if passes(middle) else (middle, k)
                chosen = k
            else:  # not even every candidate in float passes: the closest miss (a probe stopped early is far)
                chosen = min(self._probes, key=lambda c: (*_miss(self._probes[c]), -c))
        probes = [self._probes[k] for k in sorted(self._probes)]
        self.say(f"int8 decision for every format: {float_name(chosen, n)}")
        return Decision(chosen, n, passed, probes, kept=self.top(chosen))

    def rungs(self, calibrated: bool = True, int16: bool = True) -> list[Remedy]:
        """What one format tries, in order: the decision, more float, 16-bit activations, fine-tuning."""
        if not calibrated:
            return dynamic_rungs()
        decision = self.decision()
        k, n = decision.float_modules, decision.candidates
        if decision.error:  # no simulation, so no ranking: the format's own quantizer, then the fixed modules
            rungs = [Remedy(NONE), Remedy("first conv and classifier in float", fixed=True)]
            if int16:
                name = "int16 activations (16x8); first conv and classifier in float"
                rungs.append(Remedy(name, fixed=True, activation_bits=16))
            return rungs
        more = " (more than the simulation needed)" if decision.passed else ""
        rungs, count = [Remedy(float_name(k, n), k)], k
        while (step := min(max(count + 2, 2 * count), n // 2)) > count:  # at most half the modules float
            rungs.append(Remedy(float_name(step, n) + more, step))
            count = step
        if int16:
            rungs.append(Remedy(f"int16 activations (16x8); {float_name(k, n)}", k, activation_bits=16))
        rungs.append(Remedy(f"int8-aware weight fine-tuning; {float_name(count, n)}", count, finetune=True))
        return rungs

    def learn(self, label: str, attempts: list[dict[str, Any]]) -> None:
        """Remember how each rung one format's static int8 walk tried fared (`known_miss` reads it): passes, and
        failures on the judge cases; a rung that crashed or was refused before it was judged says nothing of
        how another format rounds."""
        judged = [
            a for a in attempts if a["status"] == "pass" or (a["status"] == "fail" and a.get("flips") is not None)
        ]
        self._walked[label] = {a["remedy"]: a["status"] for a in judged}

    def known_miss(self, remedy: Remedy) -> str | None:
        """Why a rung need not be tried again (it failed in SKIP_AFTER_MISSES formats or more, every format
        that tried it), or None."""
        tried = {label: walk[remedy.name] for label, walk in self._walked.items() if remedy.name in walk}
        if len(tried) >= SKIP_AFTER_MISSES and all(status == "fail" for status in tried.values()):
            return "failed in " + " and ".join(f"{label} int8" for label in tried)
        return None

    def finetuned(self, keep: tuple[str, ...]) -> tuple[nn.Module, dict[str, Any]]:
        """The int8-aware fine-tuned model for this set of float modules."""
        if keep not in self._tuned:
            start = time.time()
            images = self.training_split(FINETUNE_IMAGES)
            self.say(f"int8-aware weight fine-tuning on {len(images)} training images (distilled from fp32) ...")
            with self.quiet():
                self._tuned[keep] = finetune_for_int8(self.model, images.image, images.meta, keep, progress=False)
            report = self._tuned[keep][1]
            self.say(
                f"rms logit error of the int8-rounded weights {report['rms_logit_error_before']:.4f} -> "
                f"{report['rms_logit_error_after']:.4f} ({report['seconds']} s)"
            )
            self._timed("finetuning", start)
        return self._tuned[keep]

    def kept(self, remedy: Remedy) -> tuple[str, ...]:
        """Every module path an artifact of this remedy keeps float."""
        chosen = tuple(sensitive_modules(self.model)) if remedy.fixed else self.top(remedy.float_modules)
        return tuple(always_float(self.model)) + chosen

    def options(self, remedy: Remedy, calibrated: bool) -> tuple[QuantOptions, nn.Module | None]:
        """The quantizer options of a remedy, and the model to export (None: the source's own)."""
        keep = self.kept(remedy)
        source, report = self.finetuned(keep) if remedy.finetune else (None, None)
        calibration = self.calibration() if calibrated else None
        simulated = None
        # The simulation is of the source's own weights, 8-bit activations and the ranked modules.
        if (
            calibrated
            and self._simulation is not None
            and remedy.activation_bits == 8
            and not (remedy.fixed or remedy.finetune)
        ):
            from export.sensitivity import with_float

            simulation, blocks = self._simulation, self.top(remedy.float_modules)
            simulated = lambda: with_float(simulation, blocks)  # noqa: E731
        return QuantOptions(calibration, keep, remedy.name, remedy.activation_bits, report, simulated), source

    def record(self) -> dict[str, Any] | None:
        """The decision for parity.json (None when no static int8 artifact was asked for), with the ranking
        as far as it was made (a format's later rung may have ranked after the decision)."""
        if self._decision is None:
            return None
        self._decision.ranked = list(self._ranked or [])
        return self._decision.as_dict()


ATTEMPT_FIELDS = ("status", "reason", "auroc_delta", "flips", "max_abs_diff")


def quantize_with_remedies(
    rungs: list[Remedy],
    inputs: Int8Search,
    calibrated: bool,
    export_and_judge: Callable[[QuantOptions, nn.Module | None], dict[str, Any]],
    say: Callable[[str], None] = lambda _: None,
    skip: Callable[[Remedy], str | None] = lambda _: None,
) -> dict[str, Any]:
    """Try the rungs until an artifact passes its gate; returns that artifact's row.

    `export_and_judge(options, model)` exports one artifact with these options (of `model`, or of the
    source's own when None) and returns its parity row, never raising. The walk stops at the first row that
    is not a failure, or at a first rung that failed before it could be measured (the format cannot export
    this model at all). When every rung fails, the closest miss (fewest flips, then smallest AUROC drop) is
    exported again, so the file on disk is the best one tried. A rung before the last for which
    `skip(remedy)` gives a reason is not exported (its attempt says "skipped" and why). The row records every
    attempt with its seconds, and in `discarded_seconds` the exports and judgements of artifacts it did not
    keep (the shared inputs, such as the search, are timed by Int8Search).
    """
    attempts, measured, spent, last = [], [], 0.0, 0.0

    def described(row: dict[str, Any], remedy: Remedy, options: QuantOptions) -> dict[str, Any]:
        float_modules = len(options.keep_float) - len(always_float(inputs.model))
        return row | {
            "remedy": remedy.name,
            "float_modules": float_modules,
            "activation_bits": remedy.activation_bits if calibrated else None,
            "finetuned": remedy.finetune,
        }

    row: dict[str, Any] = {}
    for i, remedy in enumerate(rungs):
        why = skip(remedy) if i < len(rungs) - 1 else None
        if why:
            float_modules = len(inputs.kept(remedy)) - len(always_float(inputs.model))
            attempts.append(
                {"remedy": remedy.name, "status": "skipped", "reason": why, "seconds": 0.0}
                | {"float_modules": float_modules, "activation_bits": remedy.activation_bits}
            )
            say(f"remedy '{remedy.name}' skipped ({why})")
            continue
        options, source = inputs.options(remedy, calibrated)
        start = time.time()
        row = described(export_and_judge(options, source), remedy, options)
        # A crash on the first rung is the format's (it cannot export this model); on a later one, or after
        # skipped rungs (the formats before measured them), it is that rung failing.
        opening = i == 0
        if row["status"] == "unsupported" and not opening:
            row |= {"status": "fail"}
        last = time.time() - start
        spent += last
        done = {"remedy": remedy.name, "seconds": round(last, 1)}
        done |= {k: row.get(k) for k in ("float_modules", "activation_bits")}
        attempts.append({k: row.get(k) for k in ATTEMPT_FIELDS} | done)
        if "auroc" in row:
            measured.append((remedy, options, source, row))
        if row["status"] != "fail" or (opening and not measured):
            break
        say(f"remedy '{remedy.name}' failed ({row['reason']}); next")
    if row["status"] == "fail" and measured:
        remedy, options, source, best = min(measured, key=lambda m: (m[3]["flips"], -m[3]["auroc_delta"]))
        if best is not row:
            start = time.time()
            row = described(export_and_judge(options, source), remedy, options)
            last = time.time() - start
            spent += last
            if row["status"] == "unsupported":  # the converter crashed this time: still a failed artifact
                row |= {"status": "fail"}
        if row["status"] == "fail":
            row["reason"] = (row.get("reason") or "") + "; no remedy passed the gate (kept the closest miss)"
    return row | {"attempts": attempts, "discarded_seconds": round(spent - last, 1)}
