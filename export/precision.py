"""The precision vocabulary every format and report shares, and the options a quantizing exporter takes.

Precisions (the `precision` of a parity row):
    fp32          the float model
    fp16          float16 weights (and compute where the runtime does it)
    int8-dynamic  int8 weights, activations quantized on the fly (no calibration)
    int8          full int8: weights and activations, calibrated on real training images
    int8-weights  int8 weights only, float compute (Core ML)
    palettized    6-bit k-means weight palettes (Core ML)

    parse_precisions("fp32,int8")   # ["fp32", "int8", "int8-weights", "palettized"]
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from core.errors import UserError

PRECISIONS = ("fp32", "fp16", "int8-dynamic", "int8", "int8-weights", "palettized")
# --precision int8 means these: the calibrated int8 each format has (and Core ML's weight-only variants).
# int8-dynamic only by its own name: activations quantized at run time were slower than fp32 in every format
# measured here (ONNX Runtime 6x at 224 px) and its rungs cost minutes of an export.
GROUPS = {"int8": ("int8", "int8-weights", "palettized")}
CALIBRATED = ("int8",)
REMEDIABLE = ("int8", "int8-dynamic")  # formats can keep chosen modules in float for these


def family(precision: str) -> str:
    """The precision family a key belongs to (what `--precision` names): fp32, fp16 or int8."""
    return next((group for group, keys in GROUPS.items() if precision in keys), precision)


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

    calibration: Any = None  # core.evaluation.EvalSet of training images (image NCHW, meta)
    keep_float: tuple[str, ...] = ()  # module paths inside the FusionModel kept in float
    remedy: str = "none"
    activation_bits: int = 8  # 16 = "16x8": int8 weights, int16 activations (ONNX QDQ, TFLite)
    finetuned: dict | None = None  # export.finetune's report when the weights were fine-tuned for int8
    # () -> the search's simulation with these modules float (export.sensitivity.with_float: PT2E-converted with
    # its pairs unfolded, calibrated on `calibration`, temperature 1), where the search made one for this remedy:
    # ExecuTorch lowers that graph instead of preparing and calibrating the model again.
    simulated: Callable[[], Any] | None = None
