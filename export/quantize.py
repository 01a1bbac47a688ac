"""The int8 remedy ladder: what each rung keeps in float, and the walk that keeps the first passing artifact.

The precision vocabulary and the exporters' options live in export.precision, the module-path matching in
export.scopes; this module builds on them, on the sensitivity ranking and on the fine-tuning, never the other
way round.

When an int8 artifact fails its parity gate, `quantize_with_remedies` walks the ladder (REMEDIES, filtered
by `ladder`) and keeps the first artifact that passes, recording which remedy was needed. Later rungs also
keep the blocks that int8 hurts most in float (export.sensitivity ranks them once per export), and the last
ones fine-tune the weights for int8 first (export.finetune); `RungInputs` makes each once and shares it
between the formats.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

from export.finetune import finetune_for_int8
from export.precision import QuantOptions
from export.scopes import within
from export.sensitivity import rank_blocks


def first_conv(model: nn.Module) -> str:
    """Path of the first convolution of the backbone."""
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            return name
    raise ValueError("the model has no convolution")


def silu_se_paths(model: nn.Module) -> list[str]:
    """Paths of squeeze-excite blocks and SiLU activations (EfficientNet's int8 trouble spots)."""
    from torchvision.ops.misc import SqueezeExcitation

    paths = []
    for name, module in model.named_modules():
        if isinstance(module, SqueezeExcitation | nn.SiLU) and not within(name, paths):
            paths.append(name)
    return paths


@dataclass(frozen=True)
class Remedy:
    """One rung of the ladder: what it changes, each as its own field."""

    name: str
    calibration_factor: int = 1  # calibration images = --calibration-size x this (every rung after the first: 2)
    keep_fixed: bool = False  # the first conv, the head and the metadata MLP stay float
    keep_silu_se: bool = False  # SiLU / squeeze-excite blocks stay float too: needs a model that has them
    sensitive_blocks: int = 0  # also keep this many blocks float, the most int8-sensitive first
    activation_bits: int = 8  # 16 = "16x8" (int8 weights, int16 activations) where the format has it
    finetune: bool = False  # export.finetune: int8-aware weight fine-tuning, distilled from the fp32 model

    def keep_float(self, model: nn.Module) -> list[str]:
        """The module paths this rung keeps float (before the sensitive blocks are added)."""
        paths = sensitive_modules(model) if self.keep_fixed else []
        return paths + (silu_se_paths(model) if self.keep_silu_se else [])


def always_float(model: nn.Module) -> list[str]:
    """Modules marked `keeps_float` (export.adapter's contract rules): float on every rung."""
    return [name for name, module in model.named_modules() if getattr(module, "keeps_float", False)]


def sensitive_modules(model: nn.Module) -> list[str]:
    """The modules every later rung keeps in float (and the sensitivity ranking leaves out): the first
    convolution, and the head and metadata MLP of a model `python -m train` made, or the last linear layer
    (the classifier) of one trained elsewhere."""
    names = dict(model.named_modules())
    fixed = [name for name in ("head", "meta_mlp") if name in names]
    if not fixed:
        fixed = [name for name, module in names.items() if isinstance(module, nn.Linear)][-1:]
    return [first_conv(model), *fixed]


SENSITIVE_BLOCKS = 2
WITH_BLOCKS = f"first conv, head, metadata MLP and the {SENSITIVE_BLOCKS} most int8-sensitive blocks in float"

REMEDIES: tuple[Remedy, ...] = (
    # No rung of its own for 2x calibration data: in every zoo export it was tried in, it never turned a
    # failure into a pass (a full export per format each time); the later rungs calibrate on 2x anyway.
    Remedy(name="none (per-channel int8 weights)"),
    Remedy(name="first conv, head and metadata MLP in float", calibration_factor=2, keep_fixed=True),
    Remedy(
        name="first conv, head, metadata MLP and SiLU/SE blocks in float",
        calibration_factor=2,
        keep_fixed=True,
        keep_silu_se=True,
    ),
    Remedy(name=WITH_BLOCKS, calibration_factor=2, keep_fixed=True, sensitive_blocks=SENSITIVE_BLOCKS),
    Remedy(
        name=f"int16 activations (16x8); {WITH_BLOCKS}",
        calibration_factor=2,
        keep_fixed=True,
        sensitive_blocks=SENSITIVE_BLOCKS,
        activation_bits=16,
    ),
    Remedy(
        name=f"int8-aware weight fine-tuning; {WITH_BLOCKS}",
        calibration_factor=2,
        keep_fixed=True,
        sensitive_blocks=SENSITIVE_BLOCKS,
        finetune=True,
    ),
    Remedy(
        name=f"int8-aware weight fine-tuning, int16 activations (16x8); {WITH_BLOCKS}",
        calibration_factor=2,
        keep_fixed=True,
        sensitive_blocks=SENSITIVE_BLOCKS,
        activation_bits=16,
        finetune=True,
    ),
)


def ladder(model: nn.Module, calibrated: bool = True, int16: bool = True) -> list[Remedy]:
    """The remedies that apply to this model and format.

    SiLU/SE only when the model has such blocks; 16-bit activations only where the format has them; for an
    uncalibrated (dynamic) precision, only the rungs that keep fixed modules in float (the sensitivity
    ranking simulates static int8, and dynamic per-tensor uint8 weights do not use the grid that
    fine-tuning rounds to).
    """
    has_silu_se = bool(silu_se_paths(model))
    rungs = [r for r in REMEDIES if (has_silu_se or not r.keep_silu_se) and (int16 or r.activation_bits == 8)]
    if calibrated:
        return rungs
    return [
        r
        for r in rungs
        if r.activation_bits == 8
        and not r.finetune
        and not r.sensitive_blocks
        and (r is REMEDIES[0] or r.keep_float(model))
    ]


FINETUNE_IMAGES = 1024  # training images the int8-aware fine-tuning rungs distil on (a random subset)
SENSITIVITY_IMAGES = 200  # training images the int8 sensitivity ranking measures its error on


class RungInputs:
    """What the rungs need beyond the model, each made once on first use and shared by every format:
    calibration sets, the sensitivity ranking, fine-tuned models. `seconds` records where the time went.

    Args:
        model: the fp32 FusionModel.
        training_split: `(size, seed) -> EvalSet`; the checkpoint's training images, class-stratified
            when `stratified` (calibration) else drawn at random.
        calibration_size: images in the first rung's calibration set.
        say: where progress lines go.
    """

    def __init__(
        self,
        model: nn.Module,
        training_split: Callable[..., Any],
        calibration_size: int,
        say: Callable[[str], None] = lambda _: None,
        quiet: Callable[[], Any] = contextlib.nullcontext,
    ):
        self.model, self.training_split, self.calibration_size, self.say = model, training_split, calibration_size, say
        self.quiet = quiet  # a context in which third-party output goes to the log (core.console)
        self._calibration: dict[int, Any] = {}
        self._ranked: list[tuple[str, float]] = []
        self._tuned: dict[tuple[str, ...], tuple[nn.Module, dict[str, Any]]] = {}
        self.seconds: dict[str, float] = {}

    def _timed(self, key: str, start: float) -> None:
        self.seconds[key] = round(self.seconds.get(key, 0.0) + time.time() - start, 1)

    def calibration(self, factor: int) -> Any:
        if factor not in self._calibration:
            start = time.time()
            size = self.calibration_size * factor
            self.say(f"loading {size} class-stratified training images for calibration ...")
            self._calibration[factor] = self.training_split(size, stratified=True)
            self._timed("calibration_images", start)
        return self._calibration[factor]

    def sensitive_blocks(self, count: int) -> tuple[str, ...]:
        """The `count` blocks int8 hurts most (ranked once, on the PT2E simulation)."""
        if not self._ranked:
            start = time.time()
            images = self.training_split(SENSITIVITY_IMAGES, seed=1)
            self.say(f"ranking blocks by simulated int8 error on {len(images)} training images ...")
            exclude = tuple(always_float(self.model) + sensitive_modules(self.model))
            calibration = self.calibration(1)
            with self.quiet():
                self._ranked.extend(rank_blocks(self.model, calibration, images, exclude))
            self.say("most int8-sensitive: " + ", ".join(f"{b} ({e:.3f})" for b, e in self._ranked[:count]))
            self._timed("sensitivity_ranking", start)
        return tuple(block for block, _ in self._ranked[:count])

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

    def options(self, remedy: Remedy, calibrated: bool) -> tuple[QuantOptions, nn.Module | None]:
        """The quantizer options of a rung, and the model to export (None: the checkpoint's own)."""
        keep = tuple(always_float(self.model) + remedy.keep_float(self.model))
        if remedy.sensitive_blocks:
            keep += self.sensitive_blocks(remedy.sensitive_blocks)
        source, report = self.finetuned(keep) if remedy.finetune else (None, None)
        calibration = self.calibration(remedy.calibration_factor) if calibrated else None
        return QuantOptions(calibration, keep, remedy.name, remedy.activation_bits, report), source


ATTEMPT_FIELDS = ("status", "reason", "auroc_delta", "flips", "max_abs_diff")


def quantize_with_remedies(
    rungs: list[Remedy],
    inputs: RungInputs,
    calibrated: bool,
    export_and_judge: Callable[[QuantOptions, nn.Module | None], dict[str, Any]],
    say: Callable[[str], None] = lambda _: None,
) -> dict[str, Any]:
    """Walk the rungs until an artifact passes its gate; returns that artifact's row.

    `export_and_judge(options, model)` exports one artifact with these options (of `model`, or of the
    checkpoint's own when None) and returns its parity row, never raising. The walk stops at the first row
    that is not a failure, or at a failure before any rung could be measured (the format cannot export this
    model at all). When every rung fails, the closest miss (fewest flips, then smallest AUROC drop) is
    exported again, so the file on disk is the best one tried. The row records every attempt with its seconds,
    and in `ladder_seconds` the exports and judgements of artifacts it did not keep (the shared inputs, such as
    the sensitivity ranking, are timed by RungInputs).
    """
    attempts, measured, spent = [], [], 0.0
    for remedy in rungs:
        options, source = inputs.options(remedy, calibrated)
        start = time.time()
        row = export_and_judge(options, source) | {"remedy": remedy.name}
        if row["status"] == "unsupported" and measured:  # a later rung's crash is that rung failing, not the format
            row |= {"status": "fail"}
        last = time.time() - start
        spent += last
        attempts.append({k: row.get(k) for k in ATTEMPT_FIELDS} | {"remedy": remedy.name, "seconds": round(last, 1)})
        if "auroc" in row:
            measured.append((options, source, row))
        if row["status"] != "fail" or not measured:
            break
        say(f"remedy '{remedy.name}' failed ({row['reason']}); next")
    if row["status"] == "fail" and measured:
        options, source, best = min(measured, key=lambda m: (m[2]["flips"], -m[2]["auroc_delta"]))
        if best is not row:
            start = time.time()
            row = export_and_judge(options, source) | {"remedy": options.remedy}
            last = time.time() - start
            spent += last
        row["reason"] += "; no remedy passed the gate (kept the closest miss)"
    return row | {"attempts": attempts, "ladder_seconds": round(spent - last, 1)}
