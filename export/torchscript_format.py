"""TorchScript: a traced `.pt` and a mobile-optimised lite-interpreter `.ptl` (PyTorch Android), the spec
as the extra file `melanoma_spec.json` inside both."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import torch

from core.errors import UserError
from core.io import atomic_path
from core.spec import ModelSpec
from export.common import OUTPUT_NAMES, SPEC_KEY, ExportModel, Runner, parse_embedded

EXTRA_FILE = f"{SPEC_KEY}.json"


def _trace(model: torch.nn.Module, spec: ModelSpec, example: tuple) -> torch.jit.ScriptModule:
    wrapper = ExportModel(model, spec.outputs.temperature).eval()
    with torch.no_grad():
        return torch.jit.trace(wrapper, example, check_trace=True)


def export(
    model: torch.nn.Module, spec: ModelSpec, example: tuple, out_path: Path, precision: str = "fp32", options=None
) -> Path:
    """Traced TorchScript `.pt` with the spec as an extra file."""
    traced = _trace(model, spec, example)
    with atomic_path(out_path) as tmp:
        torch.jit.save(traced, str(tmp), _extra_files={EXTRA_FILE: spec.to_json()})
    return out_path


def export_lite(
    model: torch.nn.Module, spec: ModelSpec, example: tuple, out_path: Path, precision: str = "fp32", options=None
) -> Path:
    """Mobile-optimised lite-interpreter `.ptl` (what PyTorch Android's LiteModuleLoader loads)."""
    import torch.backends.xnnpack
    from torch.utils.mobile_optimizer import optimize_for_mobile

    traced = _trace(model, spec, example)
    if torch.backends.xnnpack.enabled:
        optimized = optimize_for_mobile(traced)
    else:
        # NOTE: optimize_for_mobile needs XNNPACK, which this torch build (the CUDA wheel) lacks. Freezing
        # still folds conv-BN and inlines the weights; PyTorch Android prepacks for XNNPACK at load.
        optimized = torch.jit.freeze(traced.eval())
    with atomic_path(out_path) as tmp:
        optimized._save_for_lite_interpreter(str(tmp), _extra_files={EXTRA_FILE: spec.to_json()})
    return out_path


def owns(path: Path) -> bool:
    """Whether a `.pt` / `.ptl` file is a TorchScript archive (a training checkpoint is a `.pt` too)."""
    try:
        with zipfile.ZipFile(path) as archive:
            return any(n.endswith(f"/extra/{EXTRA_FILE}") or n.endswith("/constants.pkl") for n in archive.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def _load(path: Path):
    try:
        if path.suffix == ".ptl":
            from torch.jit.mobile import _load_for_lite_interpreter

            return _load_for_lite_interpreter(str(path))
        return torch.jit.load(str(path), map_location="cpu").eval()
    except (RuntimeError, ValueError) as exc:
        raise UserError(f"cannot load {path} ({str(exc).splitlines()[0]}): re-export it") from None


def check(path: Path) -> None:
    """What TorchScript offers as a checker: the archive loads in its interpreter (full or lite)."""
    _load(path)


def read_spec(path: Path) -> ModelSpec:
    """The spec from the archive's `extra/melanoma_spec.json` (both .pt and .ptl are zip archives)."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = [n for n in archive.namelist() if n.endswith(f"/extra/{EXTRA_FILE}")]
            text = archive.read(names[0]) if names else None
    except (zipfile.BadZipFile, OSError) as exc:
        raise UserError(f"{path} is not a readable TorchScript archive ({exc}): re-export it") from None
    return parse_embedded(text, path)


class TorchScriptRunner(Runner):
    """`torch.jit.load` for .pt; the lite interpreter for .ptl."""

    format = "torchscript"

    def __init__(self, path: Path, spec: ModelSpec, threads: int | None = None):
        super().__init__(path, spec)
        self.module = _load(path)
        if path.suffix == ".ptl":
            self.format = "torchscript-lite"

    def io_shapes(self) -> dict[str, list[int | None]]:
        """A TorchScript archive records no shapes: probe it once with the spec's inputs and read the outputs."""
        size, k = self.spec.image.size, self.spec.meta_size
        shapes = {"image": [1, 3, size, size], "meta": [1, k]}
        try:
            with torch.no_grad():
                outputs = self.module(torch.zeros(*shapes["image"]), torch.zeros(*shapes["meta"]))
        except RuntimeError as exc:
            raise UserError(
                f"{self.path} does not accept the inputs its embedded spec describes ({str(exc).splitlines()[0]}): "
                "re-export it with python -m export.all"
            ) from None
        return shapes | {name: list(t.shape) for name, t in zip(OUTPUT_NAMES, outputs, strict=True)}

    def _run(self, image: np.ndarray, meta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with torch.no_grad():
            logit, prob = self.module(torch.from_numpy(image), torch.from_numpy(meta))
        return logit.numpy(), prob.numpy()
