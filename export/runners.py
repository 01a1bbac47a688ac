"""Load any artifact (or a training checkpoint) and run it with the spec it carries.

    from export import runners
    r = runners.load("dist/efficientnet_lite0/efficientnet_lite0.tflite")
    r.spec                                  # read back from the artifact itself
    p = r.predict(image, meta)              # image float32 [N,3,S,S] RGB in [0,1], meta float32 [N,K]
    p.probability                           # float32 [N, 1]

The same runners serve the parity checks and the latency benchmarks, so what is benchmarked is what was
verified. An artifact without an embedded spec, or whose `<artifact>.spec.json` sidecar disagrees with
the embedded spec, is refused.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import torch

from core.checkpoint import load_checkpoint
from core.errors import UserError
from core.spec import ModelSpec
from export.common import ExportModel, Runner, sidecar_path
from export.formats import Format, format_for_suffix
from export.torchscript_format import EXTRA_FILE


class TorchEagerRunner(Runner):
    """The PyTorch model itself, from a training checkpoint: the reference every artifact is held to."""

    format = "pytorch-eager"

    def __init__(
        self,
        path: Path,
        model: torch.nn.Module | None = None,
        spec: ModelSpec | None = None,
        threads: int | None = None,
    ):
        if model is None or spec is None:
            model, spec = load_checkpoint(path)
        super().__init__(path, spec)
        self.module = ExportModel(model, spec.outputs.temperature).eval()

    def _run(self, image: np.ndarray, meta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with torch.no_grad():
            logit, prob = self.module(torch.from_numpy(image), torch.from_numpy(meta))
        return logit.numpy(), prob.numpy()


def _is_torchscript(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as archive:
            return any(n.endswith(f"/extra/{EXTRA_FILE}") or n.endswith("/constants.pkl") for n in archive.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def identify(path: str | Path) -> Format | None:
    """The format of an artifact path; None for a training checkpoint."""
    path = Path(path)
    if path.suffix == ".pt" and not _is_torchscript(path):
        return None
    fmt = format_for_suffix(path.suffix)
    if fmt is None:
        known = ", ".join(sorted({a.suffix for f in _formats() for a in f.artifacts}))
        raise UserError(f"{path} is not an artifact this toolkit knows (suffixes {known}, or a checkpoint.pt)")
    return fmt


def _formats():
    from export.formats import FORMATS

    return FORMATS


def read_spec(path: str | Path) -> ModelSpec:
    """The spec embedded in an artifact, checked against its sidecar when one exists."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path} does not exist: export it with python -m export.all")
    fmt = identify(path)
    if fmt is None:
        return load_checkpoint(path)[1]
    embedded = fmt.load_module().read_spec(path)
    sidecar = sidecar_path(path)
    if sidecar.is_file():
        try:
            beside = ModelSpec.load(sidecar)
        except ValueError as exc:
            raise UserError(f"{sidecar} is not a valid spec ({exc}): delete it or re-export") from None
        if beside.to_json() != embedded.to_json():
            raise UserError(
                f"{sidecar} disagrees with the spec embedded in {path.name}: the artifact and its sidecar come from "
                "different exports; re-export, or delete the stale sidecar"
            )
    return embedded


def load(path: str | Path, **options) -> Runner:
    """A runner for `path` whose spec is read from the artifact (see module docstring).

    Raises:
        UserError: unknown file type, missing/invalid/disagreeing spec, or an artifact the runtime rejects.
        export.common.NotRunnable: a valid artifact that cannot run on this machine (Core ML off macOS).
    """
    path = Path(path)
    spec = read_spec(path)
    fmt = identify(path)
    if fmt is None:
        return TorchEagerRunner(path, **options)
    return fmt.runner_class()(path, spec, **options)
