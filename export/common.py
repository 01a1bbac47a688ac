"""What every format shares: the exported wrapper, the spec key, sidecars, the runner interface.

Every exported graph takes `image` (float32 RGB in [0, 1], NCHW [N, 3, S, S]; NHWC in the TFLite phone
artifact) and `meta` (float32 [N, K]) and returns `logit` and `probability` (float32 [N, 1]).

One rule holds in every quantized artifact: the ops after the fusion model (the division by the fitted
temperature and the sigmoid) stay float, as do the artifact's inputs and outputs. An int8 probability has a
resolution of 1/256, coarser than the gap between many cases and the decision threshold. Each quantizing
exporter applies it with its own tool (ONNX node exclusion, an ai-edge-quantizer recipe entry, the PT2E
filter in export.pt2e); `AFTER_MODEL_FLOAT` is the sentence the spec records.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from torch import nn

from core.errors import UserError
from core.metrics import calibrated_probability
from core.spec import ModelSpec

SPEC_KEY = "melanoma_spec"  # the metadata key (ONNX, Core ML, TFLite) / extra file stem (TorchScript)
INPUT_NAMES = ("image", "meta")
OUTPUT_NAMES = ("logit", "probability")
AFTER_MODEL_FLOAT = "inputs, outputs, temperature and sigmoid kept float"
SAMPLE_CASE = {}  # every field missing: a valid `meta` under any contract, for tracing and timing
VALUE_TOLERANCE = 1e-3  # how far outside the spec's value range an input may stray (float error, not 0-255)


# The attribute of ExportModel that holds the model being exported. Every quantizer scope derives from it
# (export.pt2e's filters, ONNX node names "/model/...", TFLite's "...ExportModel.../<Class>_model/..."), so no
# rule depends on the model's own class or attribute names; a test checks each int8 artifact holds int8 kernels.
WRAPPED = "model"


class ExportModel(nn.Module):
    """The model -> (logit, probability), with the spec's temperature baked in; optional NHWC image."""

    def __init__(self, model: nn.Module, temperature: float = 1.0, nhwc: bool = False):
        super().__init__()
        self.model = model  # NOTE: named WRAPPED; the quantizer scopes depend on this name
        self.temperature = float(temperature)
        self.nhwc = nhwc

    def forward(self, image: torch.Tensor, meta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.nhwc:
            image = image.permute(0, 3, 1, 2)
        logit = self.model(image, meta)
        return logit, calibrated_probability(logit, self.temperature)


T = TypeVar("T")


class Conversions:
    """A format's last `keep` conversions, each found again by the model object itself and the rest of its key
    (temperature, input shapes, what the converter was asked for): every precision and remedy rung of an
    export starts from the one conversion of its model. A fine-tuned model is another object, so it is
    converted anew. Each entry holds its model, so an object's id is never reused while it is cached."""

    def __init__(self, keep: int):
        self.keep = keep
        self.entries: list[tuple[nn.Module, tuple, Any]] = []

    def get(self, model: nn.Module, key: tuple, convert: Callable[[], T]) -> T:
        """The cached conversion of (`model`, `key`), or `convert()`'s, cached."""
        for cached_model, cached_key, value in self.entries:
            if cached_model is model and cached_key == key:
                return value
        value = convert()
        self.entries = [*self.entries, (model, key, value)][-self.keep :]
        return value


def with_precision(spec: ModelSpec, name: str, method: str, options: Any = None, **extra: Any) -> ModelSpec:
    """A copy of `spec` that says how this artifact's numbers were reduced."""
    info = {"name": name, "method": method}
    if options is not None:
        info["remedy"] = options.remedy
        info["kept_float"] = list(options.keep_float)
        if options.finetuned:
            info["weights_finetuned"] = options.finetuned
    info.update(extra)
    return dataclasses.replace(spec, precision=info)


def calibrated_on(calibration: Any) -> str:
    """How a static int8 artifact was calibrated, for its spec's method text."""
    return f"calibrated on {len(calibration)} training images ({int(calibration.target.sum())} melanomas)"


def artifact_size_mb(path: Path) -> float:
    """Size of an artifact in MB; a folder artifact (.mlpackage) counts every file inside it."""
    if path.is_dir():
        return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e6
    return path.stat().st_size / 1e6


def sidecar_path(artifact: Path) -> Path:
    """`<artifact>.spec.json` beside the artifact."""
    return artifact.with_name(artifact.name + ".spec.json")


def sample_meta(spec: ModelSpec, batch: int = 1) -> np.ndarray:
    """`meta` of SAMPLE_CASE, float32 [batch, K]."""
    return np.repeat(spec.encoder().encode(SAMPLE_CASE)[None], batch, axis=0)


def example_inputs(spec: ModelSpec, batch: int = 1, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs of the right shape for tracing (values in the valid range)."""
    g = torch.Generator().manual_seed(seed)
    size = spec.image.size
    return torch.rand(batch, 3, size, size, generator=g), torch.from_numpy(sample_meta(spec, batch))


@dataclass
class Prediction:
    """A runner's output for N cases."""

    logit: np.ndarray  # float32 [N, 1]
    probability: np.ndarray  # float32 [N, 1]


class NotRunnable(Exception):
    """The artifact is valid but cannot run on this machine (e.g. Core ML off macOS)."""


def wrapper_scope() -> str:
    """How litert-torch names ExportModel's scope in tensor names ("export.common.ExportModel")."""
    return f"{ExportModel.__module__}.{ExportModel.__qualname__}"


class InvalidInput(UserError, ValueError):
    """An input that breaks the spec's contract (shape, dtype, range, metadata encoding)."""


def _as_float32(x: Any, name: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        # .detach(): a tensor that requires grad has no .numpy(); bfloat16 has no numpy dtype, so it is widened.
        x = x.detach().cpu()
        x = x.float() if x.dtype == torch.bfloat16 else x
        x = x.numpy()
    array = np.asarray(x)
    if not np.issubdtype(array.dtype, np.floating):
        hint = " (divide 8-bit pixels by 255)" if name == "image" else ""
        raise InvalidInput(f"{name} must be float32, got {array.dtype}{hint}")
    array = np.ascontiguousarray(array, dtype=np.float32)
    if not np.isfinite(array).all():
        raise InvalidInput(f"{name} holds NaN or infinite values: check the preprocessing that produced it")
    return array


class Runner:
    """One backend's way to run an artifact. `spec` is read from the artifact itself.

    Subclasses implement `_run`, and `io_shapes` where their runtime reports the artifact's input and output
    shapes: `check_io` then refuses an artifact whose embedded spec does not match its own graph.
    """

    format: str = ""
    static_batch: int | None = None  # when set, predict() loops in chunks of this size
    max_batch = 32  # otherwise in chunks of at most this many (a whole test split at once can exhaust memory)

    def __init__(self, path: Path, spec: ModelSpec):
        self.path = path
        self.spec = spec
        self.encoder = spec.encoder()  # validate() checks every meta batch against it

    def _run(self, image: np.ndarray, meta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def io_shapes(self) -> dict[str, list[int | None]] | None:
        """Input and output shapes by name as the runtime reports them (None: dynamic); None if unknown."""
        return None

    def expected_shapes(self) -> dict[str, list[int | None]]:
        """What the spec says the artifact's inputs and outputs are (batch left open)."""
        size = self.spec.image.size
        image = [None, size, size, 3] if self.spec.image.layout == "NHWC" else [None, 3, size, size]
        return {"image": image, "meta": [None, self.spec.meta_size], "logit": [None, 1], "probability": [None, 1]}

    def check_io(self) -> None:
        """Refuse an artifact whose own input / output shapes disagree with its embedded spec."""
        found = self.io_shapes()
        if found is None:
            return
        for name, expected in self.expected_shapes().items():
            shape = found.get(name)
            if shape is None:
                raise UserError(f"{self.path} has no {name!r} input or output: re-export it with python -m export.all")
            same = len(shape) == len(expected) and all(
                e is None or s in (None, e) for s, e in zip(shape, expected, strict=True)
            )
            if not same or shape[0] not in (None, 1):
                raise UserError(
                    f"{self.path}: its {name!r} is {shape} but its embedded spec says {expected} (batch free): the "
                    "spec was edited or belongs to another artifact; re-export it with python -m export.all"
                )

    def validate(self, image: Any, meta: Any) -> tuple[np.ndarray, np.ndarray]:
        """Both inputs as contiguous float32, or InvalidInput naming what breaks the spec's contract."""
        image, meta = _as_float32(image, "image"), _as_float32(meta, "meta")
        size, k = self.spec.image.size, self.spec.meta_size
        if image.ndim != 4 or image.shape[1:] != (3, size, size):
            raise InvalidInput(f"image must be [N, 3, {size}, {size}] (NCHW), got {list(image.shape)}")
        if meta.shape != (image.shape[0], k):
            raise InvalidInput(f"meta must be [{image.shape[0]}, {k}], got {list(meta.shape)}")
        low, high = self.spec.image.value_range
        if image.size and (image.min() < low - VALUE_TOLERANCE or image.max() > high + VALUE_TOLERANCE):
            raise InvalidInput(
                f"image values span {image.min():g}..{image.max():g}, outside the spec's range {low:g}..{high:g}: "
                f"feed RGB scaled to {low:g}..{high:g} ({self.spec.image.scale})"
            )
        problem = self.encoder.check_encoded(meta)
        if problem:
            raise InvalidInput(f"meta is not a valid encoding under the spec: {problem}")
        return image, meta

    def predict(self, image: np.ndarray | torch.Tensor, meta: np.ndarray | torch.Tensor) -> Prediction:
        """image float32 [N,3,S,S] RGB in [0,1] (always NCHW here), meta float32 [N,K] -> Prediction."""
        image, meta = self.validate(image, meta)
        step = self.static_batch or self.max_batch
        logits, probs = [], []
        for start in range(0, len(image), step):
            logit, prob = self._run(image[start : start + step], meta[start : start + step])
            logits.append(np.asarray(logit, dtype=np.float32).reshape(-1, 1))
            probs.append(np.asarray(prob, dtype=np.float32).reshape(-1, 1))
        if not logits:
            return Prediction(np.zeros((0, 1), np.float32), np.zeros((0, 1), np.float32))
        return Prediction(np.concatenate(logits), np.concatenate(probs))


def parse_embedded(text: str | bytes | None, path: Path) -> ModelSpec:
    """Turn an embedded spec string into a ModelSpec; UserError when it is missing or malformed."""
    if text is None or text == "" or text == b"":
        raise UserError(f"{path} carries no model spec: re-export it with python -m export.all")
    if isinstance(text, bytes):
        text = text.decode("utf-8")
    try:
        return ModelSpec.from_json(text)
    except ValueError as exc:
        raise UserError(f"{path} carries an invalid model spec ({exc}): re-export it") from None
