"""Checkpoints: weights + the ModelSpec as plain data, loadable with `torch.load(weights_only=True)`.

save_checkpoint(path, model, spec)          # atomic; spec.json written beside it
model, spec = load_checkpoint(path)         # rebuilds the fusion model from the spec
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch

from core.errors import UserError
from core.io import atomic_path, load_tensors
from core.spec import ModelSpec, state_dict_sha256

FORMAT = "melanoma-checkpoint/1"


def save_checkpoint(
    path: str | Path, model: torch.nn.Module, spec: ModelSpec, extra: dict[str, Any] | None = None
) -> Path:
    """Write weights and spec atomically; `spec.weights_sha256` is set from the weights written."""
    path = Path(path)
    raw = model.state_dict()
    state = OrderedDict((k, v.detach().cpu()) for k, v in raw.items())
    state._metadata = getattr(raw, "_metadata", None)  # module versions: torchvision's MNASNet refuses a dict without
    spec.weights_sha256 = state_dict_sha256(state)
    payload = {"format": FORMAT, "spec": spec.to_dict(), "state_dict": state, **(extra or {})}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    spec.save(path.with_name("spec.json"))
    return path


def _with_versions(state: dict[str, Any], model: torch.nn.Module) -> dict[str, Any]:
    """`state` carrying module version metadata (torchvision's MNASNet checks it on load); a checkpoint written
    without it gets this code's own module versions, the ones its weights were trained with."""
    if getattr(state, "_metadata", None) is not None:
        return state
    versioned = OrderedDict(state)
    versioned._metadata = model.state_dict()._metadata
    return versioned


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint's raw payload safely; UserError when it is not one of ours."""
    path = Path(path)
    payload = load_tensors(
        path,
        missing=f"checkpoint {path} does not exist: train one with python -m train --model NAME",
        unreadable=f"{path} is not a readable checkpoint (damaged or truncated?): re-copy it or train again",
    )
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise UserError(f"{path} is not a checkpoint written by python -m train (no {FORMAT!r} marker)")
    return payload


def _spec_of(payload: dict[str, Any], path: str | Path) -> ModelSpec:
    try:
        return ModelSpec.from_dict(payload["spec"])
    except ValueError as exc:
        raise UserError(f"{path} carries an invalid model spec: {exc}") from None


def read_checkpoint_spec(path: str | Path) -> ModelSpec:
    """The spec a checkpoint carries, without building the model or hashing its weights."""
    return _spec_of(read_checkpoint(path), path)


def load_checkpoint(path: str | Path) -> tuple[torch.nn.Module, ModelSpec]:
    """Rebuild the model a checkpoint describes and load its weights (eval mode)."""
    from core import zoo

    payload = read_checkpoint(path)
    spec = _spec_of(payload, path)
    cfg = spec.model_config
    missing = [k for k in ("backbone", "meta_size", "image_size", "meta_hidden") if k not in cfg]
    if missing:
        raise UserError(f"{path}: its spec's model_config has no {', '.join(missing)}, so the model cannot be rebuilt")
    model, _ = zoo.create_model(
        cfg["backbone"],
        meta_size=cfg["meta_size"],
        weights="none",
        image_size=cfg["image_size"],
        meta_hidden=cfg["meta_hidden"],
    )
    model.load_state_dict(_with_versions(payload["state_dict"], model))
    if spec.weights_sha256 and state_dict_sha256(payload["state_dict"]) != spec.weights_sha256:
        raise UserError(f"{path}: the weights do not match the hash in their spec; the file was altered")
    return model.eval(), spec
