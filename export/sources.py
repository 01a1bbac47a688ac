"""Where a model to export comes from when `python -m train` did not make it: a factory in the user's own code
plus a weights-only state dict, or a `torch.export` program the user saved. Every way it can go wrong is one
sentence naming the fix.

    model = load_module_model("models/theirs.py:build", "theirs.pth")   # or "their_pkg.models:build"
    model = load_program("theirs.pt2")

Issue 20 groundwork: `export.all --module ... --weights ... --contract ...` will call these.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from typing import Any

import torch
from torch import nn

from core.errors import UserError
from core.io import load_tensors

MAX_KEYS_SHOWN = 3


def load_factory(reference: str) -> Any:
    """The callable `FILE.py:NAME` or `package.module:NAME` names (imported, not yet called)."""
    location, sep, name = reference.rpartition(":")
    if not sep or not location or not name.isidentifier():
        raise UserError(f"--module {reference!r} must be FILE.py:FACTORY or package.module:FACTORY")
    if location.endswith(".py"):
        path = Path(location).expanduser()
        if not path.is_file():
            raise UserError(f"--module: {path} does not exist: give the Python file that defines {name}")
        module_name = f"_melanoma_user_{path.stem}"
        spec = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module  # dataclasses and pickling look the module up by name
        try:
            spec.loader.exec_module(module)
        except Exception as exc:  # noqa: BLE001 - the user's code failing to import is their sentence to read
            del sys.modules[module_name]
            raise UserError(f"--module: importing {path} failed ({exc.__class__.__name__}: {exc})") from None
    else:
        try:
            module = importlib.import_module(location)
        except ImportError as exc:
            raise UserError(f"--module: cannot import {location} ({exc}): check the name and PYTHONPATH") from None
    factory = getattr(module, name, None)
    if not callable(factory):
        found = "is not callable" if factory is not None else "is not defined there"
        raise UserError(f"--module: {name} {found} in {location}: give a function that returns the nn.Module")
    return factory


def load_module_model(reference: str, weights: str | Path | None) -> nn.Module:
    """Call the factory, load the state dict (weights only, never a pickle that could run code), eval mode."""
    factory = load_factory(reference)
    try:
        model = factory()
    except Exception as exc:  # noqa: BLE001 - as above: the user's own code
        raise UserError(f"--module: calling {reference} failed ({exc.__class__.__name__}: {exc})") from None
    if not isinstance(model, nn.Module):
        raise UserError(f"--module: {reference} returned a {type(model).__name__}, not a torch nn.Module")
    if weights is not None:
        state = load_tensors(
            weights,
            missing=f"--weights {weights} does not exist: give the state dict saved with torch.save",
            unreadable=f"--weights {weights} is not a PyTorch state dict",
        )
        if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
            state = state["state_dict"]  # a training script's checkpoint around the weights
        if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
            raise UserError(f"--weights {weights} holds no state dict (a mapping of names to tensors)")
        fit_state_dict(model, state, str(weights))
    return model.eval()


def fit_state_dict(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Load `state` strictly; UserError naming the first missing, unexpected or mis-shaped keys."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shaped = [
        f"{k} {list(state[k].shape)} vs {list(own[k].shape)}"
        for k in own
        if k in state and state[k].shape != own[k].shape
    ]
    problems = []
    for label, keys in (("missing", missing), ("unexpected", unexpected), ("of another shape", shaped)):
        if keys:
            more = f" and {len(keys) - MAX_KEYS_SHOWN} more" if len(keys) > MAX_KEYS_SHOWN else ""
            problems.append(f"{len(keys)} {label} ({', '.join(keys[:MAX_KEYS_SHOWN])}{more})")
    if problems:
        hint = (
            " (saved from a DataParallel model?)"
            if unexpected and all(k.startswith("module.") for k in unexpected)
            else ""
        )
        raise UserError(
            f"{source} does not fit the model the factory builds: keys {'; '.join(problems)}{hint}: give the weights "
            "of this architecture"
        )
    model.load_state_dict(state, strict=True)


def load_program(path: str | Path) -> nn.Module:
    """A `torch.export` program saved with `torch.export.save` (.pt2), as a module."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path} does not exist: save the program with torch.export.save(program, '{path.name}')")
    try:
        program = torch.export.load(str(path))
    except Exception as exc:  # noqa: BLE001 - any failure means a damaged or foreign file
        raise UserError(
            f"{path} is not a torch.export program ({exc.__class__.__name__}): save one with torch.export.save"
        ) from None
    return program.module()
