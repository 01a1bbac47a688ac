"""Quantization options, the remedy ladder, and the precision vocabulary shared by every format.

Precisions (the `precision` of a parity row):
    fp32          the float model
    fp16          float16 weights (and compute where the runtime does it)
    int8-dynamic  int8 weights, activations quantized on the fly (no calibration)
    int8          full int8: weights and activations, calibrated on real training images
    int8-weights  int8 weights only, float compute (Core ML)
    palettized    6-bit k-means weight palettes (Core ML)

When a calibrated int8 artifact fails its parity gate, `export.all` walks REMEDIES in order and keeps
the first artifact that passes, recording which remedy was needed. Later rungs also keep the blocks
that int8 hurts most in float (export.sensitivity ranks them once per export), and the last ones
fine-tune the weights for int8 first (export.finetune); both are made once and shared by the formats.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

from core.errors import UserError

PRECISIONS = ("fp32", "fp16", "int8-dynamic", "int8", "int8-weights", "palettized")
GROUPS = {"int8": ("int8-dynamic", "int8", "int8-weights", "palettized")}  # --precision int8 means all of these
CALIBRATED = ("int8",)
REMEDIABLE = ("int8", "int8-dynamic")  # formats can keep chosen modules in float for these


def gate_for(precision: str) -> str:
    """The parity gate a precision is judged by."""
    return precision if precision in ("fp32", "fp16") else "int8"


def parse_precisions(text: str) -> list[str]:
    """`fp32,fp16,int8` -> the precision keys, int8 expanded to its family; UserError when unknown."""
    chosen: list[str] = []
    for raw in (t.strip().lower() for t in text.split(",")):
        if not raw:
            continue
        keys = GROUPS.get(raw, (raw,))
        for key in keys:
            if key not in PRECISIONS:
                raise UserError(f'unknown precision "{raw}": choose from fp32, fp16, int8 ({", ".join(PRECISIONS)})')
            if key not in chosen:
                chosen.append(key)
    if not chosen:
        raise UserError("--precision is empty: e.g. --precision fp32,fp16,int8")
    return chosen


@dataclass(frozen=True)
class QuantOptions:
    """What a quantizing exporter needs beyond the model."""

    calibration: Any = None  # export.evaldata.EvalSet of training images (image NCHW, meta)
    keep_float: tuple[str, ...] = ()  # module paths inside the FusionModel kept in float
    remedy: str = "none"
    activation_bits: int = 8  # 16 = "16x8": int8 weights, int16 activations (ONNX QDQ, TFLite)
    finetuned: dict | None = None  # export.finetune's report when the weights were fine-tuned for int8


def within(path: str, prefixes: tuple[str, ...] | list[str]) -> bool:
    """Whether dotted module `path` is one of `prefixes` or lies below one of them."""
    return any(path == p or path.startswith(p + ".") for p in prefixes)


def _aligns(components: list[str], segments: list[str]) -> bool:
    """Whether scope `components` name the module at `segments`, allowing the exporter to have dropped
    named parents (a module reached through a parent's method, as EfficientNet-Lite's extract_features,
    loses that parent's scope) but never a numeric index."""
    if not components or components[0] != segments[0] or components[-1] != segments[-1]:
        return False
    i = 0
    for seg in segments:
        if i < len(components) and components[i] == seg:
            i += 1
        elif seg.isdigit():
            return False
    return i == len(components)


def in_module(components: list[str], path: str) -> bool:
    """Whether an op whose scope is `components` (module attribute names below the FusionModel) lies in
    the module at dotted `path` or below it."""
    segments = path.split(".")
    return any(_aligns(components[:k], segments) for k in range(1, len(components) + 1))


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
    """One rung of the ladder: a description and how it changes the options."""

    name: str
    calibration_factor: int
    keep_float: Callable[[nn.Module], list[str]]
    activation_bits: int = 8
    finetune: bool = False  # export.finetune: int8-aware weight fine-tuning, distilled from the fp32 model
    sensitive_blocks: int = 0  # also keep this many blocks in float, the most int8-sensitive first


def sensitive_modules(model: nn.Module) -> list[str]:
    """The modules the third rung keeps in float (and the sensitivity ranking leaves out: later rungs keep them too)."""
    return [first_conv(model), "head", "meta_mlp"]


SENSITIVE_BLOCKS = 2
_PLUS = f"first conv, head, metadata MLP and the {SENSITIVE_BLOCKS} most int8-sensitive blocks in float"

REMEDIES: tuple[Remedy, ...] = (
    Remedy("none (per-channel int8 weights)", 1, lambda m: []),
    Remedy("2x calibration data", 2, lambda m: []),
    Remedy("first conv, head and metadata MLP in float", 2, sensitive_modules),
    Remedy(
        "first conv, head, metadata MLP and SiLU/SE blocks in float",
        2,
        lambda m: sensitive_modules(m) + silu_se_paths(m),
    ),
    Remedy(_PLUS, 2, sensitive_modules, sensitive_blocks=SENSITIVE_BLOCKS),
    Remedy(f"int16 activations (16x8); {_PLUS}", 2, sensitive_modules, 16, sensitive_blocks=SENSITIVE_BLOCKS),
    Remedy(f"int8-aware weight fine-tuning; {_PLUS}", 2, sensitive_modules, 8, True, SENSITIVE_BLOCKS),
    Remedy(
        f"int8-aware weight fine-tuning, int16 activations (16x8); {_PLUS}",
        2,
        sensitive_modules,
        16,
        True,
        SENSITIVE_BLOCKS,
    ),
)


def ladder(model: nn.Module, calibrated: bool = True, int16: bool = True) -> list[Remedy]:
    """The remedies that apply to this model and format.

    SiLU/SE only when the model has such blocks; 16-bit activations only where the format has them; for an
    uncalibrated (dynamic) precision, only the rungs that keep fixed modules in float (the sensitivity
    ranking simulates static int8, and dynamic per-tensor uint8 weights do not use the grid that
    fine-tuning rounds to).
    """
    rungs = [r for r in REMEDIES if "SiLU" not in r.name or silu_se_paths(model)]
    rungs = [r for r in rungs if int16 or r.activation_bits == 8]
    if not calibrated:
        rungs = [
            r
            for r in rungs
            if r.activation_bits == 8
            and not r.finetune
            and not r.sensitive_blocks
            and (r is REMEDIES[0] or r.keep_float(model))
        ]
    return rungs
