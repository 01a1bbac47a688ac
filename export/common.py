"""What every format shares: the exported wrapper, the spec key, sidecars, the runner interface.

Every exported graph takes `image` (float32 RGB in [0, 1], NCHW [N, 3, S, S]; NHWC in the TFLite phone
artifact) and `meta` (float32 [N, K]) and returns `logit` and `probability` (float32 [N, 1]).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from core.errors import UserError
from core.spec import ModelSpec

SPEC_KEY = "melanoma_spec"  # the metadata key (ONNX, Core ML, TFLite) / extra file stem (TorchScript)
INPUT_NAMES = ("image", "meta")
OUTPUT_NAMES = ("logit", "probability")


class ExportModel(nn.Module):
    """FusionModel -> (logit, probability), with the spec's temperature baked in; optional NHWC image."""

    def __init__(self, model: nn.Module, temperature: float = 1.0, nhwc: bool = False):
        super().__init__()
        self.model = model
        self.temperature = float(temperature)
        self.nhwc = nhwc

    def forward(self, image: torch.Tensor, meta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.nhwc:
            image = image.permute(0, 3, 1, 2)
        logit = self.model(image, meta)
        return logit, torch.sigmoid(logit / self.temperature)


def with_precision(spec: ModelSpec, name: str, method: str, options=None, **extra) -> ModelSpec:
    """A copy of `spec` that says how this artifact's numbers were reduced."""
    import dataclasses

    info = {"name": name, "method": method}
    if options is not None:
        info["remedy"] = options.remedy
        info["kept_float"] = list(options.keep_float)
        if options.finetuned:
            info["weights_finetuned"] = options.finetuned
    info.update(extra)
    return dataclasses.replace(spec, precision=info)


def artifact_size_mb(path: Path) -> float:
    """Size of an artifact in MB; a folder artifact (.mlpackage) counts every file inside it."""
    if path.is_dir():
        return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e6
    return path.stat().st_size / 1e6


def sidecar_path(artifact: Path) -> Path:
    """`<artifact>.spec.json` beside the artifact."""
    return artifact.with_name(artifact.name + ".spec.json")


def example_inputs(spec: ModelSpec, batch: int = 1, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs of the right shape for tracing (values in the valid range)."""
    g = torch.Generator().manual_seed(seed)
    size = spec.image.size
    image = torch.rand(batch, 3, size, size, generator=g)
    meta = torch.from_numpy(np.stack([spec.encoder().encode(55, "female", "torso")] * batch))
    return image, meta


@dataclass
class Prediction:
    """A runner's output for N cases."""

    logit: np.ndarray  # float32 [N, 1]
    probability: np.ndarray  # float32 [N, 1]


class NotRunnable(Exception):
    """The artifact is valid but cannot run on this machine (e.g. Core ML off macOS)."""


class Runner:
    """One backend's way to run an artifact. `spec` is read from the artifact itself."""

    format: str = ""
    static_batch: int | None = None  # when set, predict() loops in chunks of this size

    def __init__(self, path: Path, spec: ModelSpec):
        self.path = path
        self.spec = spec

    def _run(self, image: np.ndarray, meta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def predict(self, image: np.ndarray | torch.Tensor, meta: np.ndarray | torch.Tensor) -> Prediction:
        """image float32 [N,3,S,S] RGB in [0,1] (always NCHW here), meta float32 [N,K] -> Prediction."""
        image = np.ascontiguousarray(image.numpy() if isinstance(image, torch.Tensor) else image, dtype=np.float32)
        meta = np.ascontiguousarray(meta.numpy() if isinstance(meta, torch.Tensor) else meta, dtype=np.float32)
        size, k = self.spec.image.size, self.spec.meta_size
        if image.ndim != 4 or image.shape[1:] != (3, size, size):
            raise ValueError(f"image must be [N, 3, {size}, {size}] (NCHW), got {list(image.shape)}")
        if meta.shape != (image.shape[0], k):
            raise ValueError(f"meta must be [{image.shape[0]}, {k}], got {list(meta.shape)}")
        step = self.static_batch or max(len(image), 1)
        logits, probs = [], []
        for start in range(0, len(image), step):
            logit, prob = self._run(image[start : start + step], meta[start : start + step])
            logits.append(np.asarray(logit, dtype=np.float32).reshape(-1, 1))
            probs.append(np.asarray(prob, dtype=np.float32).reshape(-1, 1))
        if not logits:
            return Prediction(np.zeros((0, 1), np.float32), np.zeros((0, 1), np.float32))
        return Prediction(np.concatenate(logits), np.concatenate(probs))


@contextmanager
def atomic_output(path: Path) -> Iterator[Path]:
    """Yield a temporary path (file or folder) in the same folder; on success it replaces `path`.

    An older artifact at `path` survives any failure; a folder artifact (.mlpackage) is swapped whole.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    tmp = tmp_dir / path.name
    try:
        yield tmp
        if not tmp.exists():
            raise RuntimeError(f"the exporter wrote nothing for {path.name}")
        if path.is_dir() and not path.is_symlink():
            old = path.with_name(f".{path.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)


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
