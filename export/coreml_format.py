"""Core ML: an ML program `.mlpackage` with inputs `image`/`meta` and outputs `logit`/`probability`, the
spec in `user_defined_metadata`. Conversion works on Linux; prediction needs macOS (the format table's
`predicts_on`), so elsewhere the runner stops after the structural checks and the row reads "converted, not
run (needs macOS)".
"""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Any

import numpy as np
import torch

from core.errors import UserError
from core.io import atomic_path
from core.spec import ModelSpec
from export.common import (
    OUTPUT_NAMES,
    SPEC_KEY,
    Conversions,
    ExportModel,
    Runner,
    parse_embedded,
    with_precision,
)
from export.precision import QuantOptions

_CONVERSIONS = Conversions(keep=2)  # the fp32 and fp16 programs of the model being exported


def _converted(model: torch.nn.Module, temperature: float, example: tuple, compute: str) -> Any:
    """The ML program of `model` (traced at batch 1) computing in `compute` ("fp32" or "fp16"), converted once
    per model object and input size: int8-weights and palettized compress the fp32 conversion, which their
    compressors leave as it was (they build a new program from it), instead of tracing and converting anew
    (the 224 px B0: about 4 s each)."""
    import coremltools as ct

    image, meta = (t[:1] for t in example)

    def convert() -> Any:
        wrapper = ExportModel(model, temperature).eval()
        with torch.no_grad():
            traced = torch.jit.trace(wrapper, (image, meta))
        return ct.convert(
            traced,
            inputs=[
                ct.TensorType(name="image", shape=tuple(image.shape)),
                ct.TensorType(name="meta", shape=tuple(meta.shape)),
            ],
            outputs=[ct.TensorType(name=name) for name in OUTPUT_NAMES],
            convert_to="mlprogram",
            compute_precision=ct.precision.FLOAT16 if compute == "fp16" else ct.precision.FLOAT32,
            minimum_deployment_target=ct.target.iOS16,
        )

    return _CONVERSIONS.get(model, (temperature, *image.shape, *meta.shape, compute), convert)


def export(
    model: torch.nn.Module,
    spec: ModelSpec,
    example: tuple,
    out_path: Path,
    precision: str = "fp32",
    options: QuantOptions | None = None,
) -> Path:
    """Trace, convert to an ML program (batch 1), reduce precision, embed the spec, save atomically."""
    mlmodel = _converted(model, spec.outputs.temperature, example, "fp16" if precision == "fp16" else "fp32")
    if precision == "fp16":
        spec = with_precision(spec, "fp16", "coremltools compute_precision FLOAT16 (weights and compute)")
    elif precision == "int8-weights":
        import coremltools.optimize.coreml as cto

        config = cto.OpLinearQuantizerConfig(mode="linear_symmetric", dtype="int8", granularity="per_channel")
        mlmodel = cto.linear_quantize_weights(mlmodel, cto.OptimizationConfig(global_config=config))
        spec = with_precision(spec, "int8-weights", "coremltools linear_quantize_weights: per-channel int8 weights")
    elif precision == "palettized":
        import coremltools.optimize.coreml as cto

        config = cto.OpPalettizerConfig(nbits=6, mode="kmeans")
        mlmodel = cto.palettize_weights(mlmodel, cto.OptimizationConfig(global_config=config))
        spec = with_precision(spec, "palettized", "coremltools palettize_weights: 6-bit k-means palettes")
    elif precision != "fp32":
        raise ValueError(f"Core ML has no {precision} path")
    mlmodel.user_defined_metadata[SPEC_KEY] = spec.to_json()
    mlmodel.short_description = (
        f"{spec.name}: melanoma probability from a dermoscopic image + metadata (not a medical device)"
    )
    with atomic_path(out_path) as tmp:
        mlmodel.save(str(tmp))
    return out_path


def _load(path: Path):
    import coremltools as ct

    try:
        return ct.models.MLModel(str(path), skip_model_load=platform.system() != "Darwin")
    except Exception as exc:  # noqa: BLE001 - coremltools raises several types for a damaged package
        raise UserError(f"{path} is not a readable Core ML package ({exc.__class__.__name__}): re-export it") from None


def read_spec(path: Path) -> ModelSpec:
    """The spec from the package's user_defined_metadata."""
    return parse_embedded(dict(_load(path).user_defined_metadata).get(SPEC_KEY), path)


def structure(path: Path) -> dict[str, list[tuple[str, list[int]]]]:
    """Input and output names with shapes, read from the package (works on any OS)."""
    described = _load(path).get_spec().description

    def dims(feature) -> list[int]:
        return [int(d) for d in feature.type.multiArrayType.shape]

    return {
        "inputs": [(f.name, dims(f)) for f in described.input],
        "outputs": [(f.name, dims(f)) for f in described.output],
    }


def check(path: Path) -> None:
    """What coremltools offers off macOS: the package's model description parses (names, shapes)."""
    structure(path)


class CoreMLRunner(Runner):
    """Core ML prediction (macOS only); elsewhere the structural checks alone (runners.load says why)."""

    format = "coreml"
    static_batch = 1

    def __init__(self, path: Path, spec: ModelSpec, threads: int | None = None):
        super().__init__(path, spec)
        self.structure = structure(path)
        self.model = _load(path) if platform.system() == "Darwin" else None

    def io_shapes(self) -> dict[str, list[int | None]]:
        found = self.structure["inputs"] + self.structure["outputs"]
        # Outputs carry no static shape in an ML program's description: the batch-1 model returns [1, 1].
        return {name: shape or [1, 1] for name, shape in found}

    def _run(self, image: np.ndarray, meta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        out = self.model.predict({"image": image, "meta": meta})
        return np.asarray(out["logit"]), np.asarray(out["probability"])
