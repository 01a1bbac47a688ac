"""Load any artifact (or a training checkpoint) and run it with the spec it carries.

    from export import runners
    r = runners.load("dist/efficientnet_lite0/efficientnet_lite0.tflite")
    r.spec                                  # read back from the artifact itself
    p = r.predict(image, meta)              # image float32 [N,3,S,S] RGB in [0,1], meta float32 [N,K]
    p.probability                           # float32 [N, 1]

The same runners serve the parity checks and the latency benchmarks, so what is benchmarked is what was
verified. An artifact is refused when it carries no spec, when its `<artifact>.spec.json` sidecar disagrees
with the embedded spec, or when the embedded spec disagrees with the artifact's own input and output shapes;
`predict` refuses inputs that break the spec's contract (shape, dtype, value range, metadata encoding).

    r = runners.load("dist/efficientnet_lite0/efficientnet_lite0.tflite", trust="keys/signing_key.pub")

With `trust`, the folder's signature (model.sig, export.sign) is verified with that public key, and every file
of the folder against it, before anything is read: a missing, foreign or broken signature, or any file
changed, added or removed since signing, is refused in one sentence (export.sign.SignatureError).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from core.checkpoint import load_checkpoint, read_checkpoint_spec
from core.errors import UserError
from core.spec import ModelSpec
from export.common import ExportModel, NotRunnable, Runner, sidecar_path
from export.formats import Format, identify, suffixes


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


class TorchCompiledRunner(TorchEagerRunner):
    """The checkpoint's model under torch.compile (inductor, CPU): the best PyTorch itself offers here, a second
    reference for the benchmark. Compilation happens on the first call (its `first_ms`)."""

    format = "pytorch-compiled"

    def __init__(
        self,
        path: Path,
        model: torch.nn.Module | None = None,
        spec: ModelSpec | None = None,
        threads: int | None = None,
    ):
        super().__init__(path, model, spec)
        self.module = torch.compile(self.module, backend="inductor", dynamic=False)


def _format_of(path: Path) -> Format | None:
    """The artifact's format; None for a training checkpoint; UserError for anything else."""
    if not path.exists():
        raise UserError(f"{path} does not exist: export it with python -m export.all")
    if path.is_dir() and path.suffix != ".mlpackage":
        raise UserError(f"{path} is a folder, not an artifact: give one of the files python -m export.all wrote")
    if path.is_file() and not os.access(path, os.R_OK):
        raise UserError(f"{path} cannot be read (permission denied): fix its permissions")
    fmt = identify(path)
    if fmt is None and path.suffix == ".ptl":
        raise UserError(f"{path} is not a readable TorchScript lite archive (damaged or truncated?): re-export it")
    if fmt is None and path.suffix != ".pt":
        raise UserError(
            f"{path} is not an artifact this toolkit knows (suffixes {', '.join(suffixes())}, or a checkpoint.pt)"
        )
    return fmt


def _embedded_spec(fmt: Format, path: Path) -> ModelSpec:
    """The spec embedded in an artifact, checked against its sidecar when one exists."""
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


def read_spec(path: str | Path) -> ModelSpec:
    """The spec an artifact carries (checked against its sidecar), or a checkpoint's, without loading a model."""
    path = Path(path)
    fmt = _format_of(path)
    return read_checkpoint_spec(path) if fmt is None else _embedded_spec(fmt, path)


def load(path: str | Path, trust: str | Path | None = None, **options) -> Runner:
    """A runner for `path` whose spec is read from the artifact (see module docstring); with `trust` (a PEM
    public key) only after the signature of the folder holding it verified with that key.

    Raises:
        UserError: unknown file type, missing/invalid/disagreeing spec, or an artifact the runtime rejects.
        export.sign.SignatureError (a UserError): `trust` given and the folder does not verify.
        export.common.NotRunnable: a valid artifact that cannot run on this machine (Core ML off macOS).
    """
    path = Path(path)
    fmt = _format_of(path)
    if trust is not None:
        from export.sign import verify_artifact

        verify_artifact(path, trust)
    if fmt is None:
        return TorchEagerRunner(path, **options)
    runner = fmt.runner_class()(path, _embedded_spec(fmt, path), **options)
    runner.check_io()
    if not fmt.predicts_here():
        raise NotRunnable(fmt.not_run)
    return runner
