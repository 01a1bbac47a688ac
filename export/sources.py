"""Where a model to export comes from when `python -m train` did not make it: a factory in the user's own code
plus a weights-only state dict, or a `torch.export` program the user saved. Every way it can go wrong is one
sentence naming the fix.

    model = load_module_model("models/theirs.py:build", "theirs.pth")   # or "their_pkg.models:build"
    model = load_program("theirs.pt2")

`Source` is what an export works from (the model, its spec, an evaluation set): `checkpoint_source` for a
`python -m train` run, `contract_source` for a model trained elsewhere with its contract.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from core.contract import Contract
from core.errors import UserError
from core.evaluation import EvalSet
from core.io import load_tensors
from core.metrics import choose_threshold, threshold_name
from core.spec import INTENDED_USE, ModelSpec, OutputContract, state_dict_sha256

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
        folder = str(path.resolve().parent)
        sys.path.insert(
            0, folder
        )  # the file's own siblings (`from layers import ...`) import as they do for its author
        try:
            spec.loader.exec_module(module)
        except Exception as exc:  # noqa: BLE001 - the user's code failing to import is their sentence to read
            del sys.modules[module_name]
            raise UserError(f"--module: importing {path} failed ({exc.__class__.__name__}: {exc})") from None
        finally:
            sys.path.remove(folder)
    else:
        try:
            module = importlib.import_module(location)
        except ImportError as exc:
            raise UserError(f"--module: cannot import {location} ({exc}): check the name and PYTHONPATH") from None
        except Exception as exc:  # noqa: BLE001 - an error inside the user's package while it imports
            raise UserError(f"--module: importing {location} failed ({exc.__class__.__name__}: {exc})") from None
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
    return ProgramModule(program.module())


class ProgramModule(nn.Module):
    """A `torch.export` program's module, which refuses train() and eval() (it was exported in one mode and
    stays in it): those calls, which every wrapper makes on its children, do nothing here."""

    def __init__(self, graph: nn.Module):
        super().__init__()
        self.graph = graph

    def train(self, mode: bool = True) -> ProgramModule:
        return self

    def forward(self, image: torch.Tensor, meta: torch.Tensor) -> Any:
        return self.graph(image, meta)


# --- What an export works from -------------------------------------------------------------------------------


@dataclass
class Source:
    """The three things an export needs: the model, its spec (which carries its contract) and an evaluation set.

    model: (image RGB in [0, 1] NCHW, meta) -> logit [N, 1] (a foreign model behind export.adapter.ContractModel).
    judge: the cases parity is judged on (never used to calibrate or to choose the threshold).
    training_split: `(size, seed=0, stratified=False) -> EvalSet`, the images int8 calibrates, ranks and
        fine-tunes on: the checkpoint's training split, or the calibrate half of a user's evaluation set.
    origin: how to rebuild the reference (parity.json's "source"): {"kind": "checkpoint" | "module" | "program" |
        "memory", ...paths}.
    reference_file: the file the reference row names and hashes (checkpoint, weights, program), if any.
    foreign: made by someone else's code: a converter that cannot take it makes its format "unsupported".
    """

    model: nn.Module
    spec: ModelSpec
    judge: EvalSet
    training_split: Callable[..., EvalSet]
    origin: dict[str, Any]
    reference_file: Path | None = None
    foreign: bool = False


def checkpoint_source(checkpoint: Path, limit: int | None = None) -> Source:
    """A `python -m train` run: its checkpoint, its test split, its training split."""
    from core.checkpoint import load_checkpoint
    from core.evaluation import load_test_split
    from export.calibration import training_split

    model, spec = load_checkpoint(checkpoint)
    judge = load_test_split(checkpoint, spec, limit=limit)
    origin = {"kind": "checkpoint", "checkpoint": str(checkpoint)}
    return Source(model, spec, judge, partial(training_split, checkpoint, spec), origin, checkpoint)


def probe(model: nn.Module, contract: Contract) -> None:
    """Run the model as its contract says, on 1 and on 2 cases; UserError naming the field when it refuses the
    image size or the meta length, needs a fixed batch, or returns other than the contract's output says."""
    size, k = contract.image["size"], contract.encoder().size
    outputs, failures = {}, {}
    for n in (1, 2):
        try:
            with torch.no_grad():
                outputs[n] = model(torch.rand(n, 3, size, size), torch.zeros(n, k))
        except Exception as exc:  # noqa: BLE001 - the user's model refusing the contract's inputs
            failures[n] = exc
    if len(failures) == 2:
        exc = failures[2]
        first = str(exc).splitlines()[0][:160] if str(exc) else ""
        raise UserError(
            f"the model refuses a [2, 3, {size}, {size}] image with a [2, {k}] meta ({exc.__class__.__name__}: "
            f"{first}): check the contract's image.size and metadata features against what the model was trained on"
        )
    if failures:
        ran, failed = (1, 2) if 2 in failures else (2, 1)
        raise UserError(
            f"the model runs on a batch of {ran} but not on a batch of {failed}: the phone formats trace batch 1 "
            "and ONNX a dynamic batch, so a torch.export program needs a dynamic batch, e.g. "
            "dynamic_shapes=({0: Dim('batch')}, {0: Dim('batch')})"
        )
    out = outputs[2]
    out = out[0] if isinstance(out, tuple | list) else out
    if not isinstance(out, torch.Tensor):
        raise UserError(f"the model returns a {type(out).__name__}, not a tensor of logits")
    output = contract.data["output"]
    width = int(out.numel() // 2) if out.numel() % 2 == 0 else -1
    expected = 1 if output["kind"] == "sigmoid" else output["classes"]
    if out.shape[0] != 2 or width != expected:
        says = "one logit (sigmoid)" if expected == 1 else f"softmax over {expected} classes"
        raise UserError(
            f"the model returns {list(out.shape)} for 2 cases but the contract's output says {says}: fix output in the "
            "contract"
        )
    if not torch.isfinite(out).all():
        raise UserError("the model returns NaN or infinite logits on a random image: check its weights")


def contract_source(
    model: nn.Module,
    contract: Contract,
    table: pd.DataFrame,
    origin: dict[str, Any],
    reference_file: Path | None = None,
    limit: int | None = None,
    say: Callable[[str], None] = lambda _: None,
) -> Source:
    """A model trained elsewhere, its contract and the user's evaluation set (core.eval_csv's table).

    The set is split without leakage (patient-grouped) into a calibrate half (int8 calibration, the decision
    threshold by the contract's rule) and a judge half (parity); the spec records both.
    """
    from core.eval_csv import split_evaluation
    from core.evaluation import prepared
    from export.adapter import ContractModel
    from export.calibration import random_pick, stratified_pick
    from export.common import ExportModel

    probe(model.eval(), contract)
    wrapped = ContractModel(model, contract).eval()
    part = split_evaluation(table).to_numpy()
    halves = {name: table[part == name].reset_index(drop=True) for name in ("calibrate", "judge")}
    if limit:  # quick checks: the first N cases of each half
        halves = {name: half.head(limit) for name, half in halves.items()}
    _check_memory(sum(len(h) for h in halves.values()), contract.image["size"])
    draft = ModelSpec.for_contract(contract, architecture=type(model).__name__, outputs=OutputContract())
    say(f"preprocessing {len(halves['calibrate'])} calibrate cases to choose the threshold ...")
    calibrate = prepared(halves["calibrate"], draft, "evaluation")
    with torch.no_grad():
        probability = _probabilities(ExportModel(wrapped), calibrate)
    outputs = _decision(contract, calibrate.target, probability)
    parts = {name: _part_summary(half) for name, half in halves.items()}
    spec = ModelSpec.for_contract(
        contract,
        architecture=f"{type(model).__name__} (trained elsewhere; {origin['kind']} source)",
        outputs=outputs,
        weights_sha256=state_dict_sha256(model.state_dict()),
        provenance={
            "data": {"name": origin.get("evaluation", "evaluation set"), "parts": parts}
            | {k: origin[k] for k in ("eval_csv", "eval_csv_sha256") if k in origin},
            "intended_use": INTENDED_USE.format(data="data outside this toolkit (see the model's own documentation)"),
            "source": origin,
        },
    )
    say(f"preprocessing {len(halves['judge'])} judge cases for parity ...")
    judge = prepared(halves["judge"], spec, "evaluation")
    del calibrate  # the int8 steps decode what they need from the calibrate half again

    def training_split(size: int, seed: int = 0, stratified: bool = False) -> EvalSet:
        pick = stratified_pick if stratified else random_pick
        return prepared(pick(halves["calibrate"], size, seed).reset_index(drop=True), spec, "calibration")

    return Source(wrapped, spec, judge, training_split, origin, reference_file, foreign=True)


BATCH = 32
MEMORY_SHARE = 0.5  # of this machine's memory that the decoded evaluation images may take


def _probabilities(model: nn.Module, data: EvalSet) -> np.ndarray:
    """The wrapped model's probabilities, BATCH cases at a time."""
    out = [
        model(torch.from_numpy(data.image[i : i + BATCH]), torch.from_numpy(data.meta[i : i + BATCH]))[1]
        for i in range(0, len(data), BATCH)
    ]
    return torch.cat(out).numpy().reshape(-1) if out else np.zeros(0, np.float32)


def _check_memory(cases: int, size: int) -> None:
    """UserError when the decoded images of `cases` cases would not fit in memory (with --limit as the fix)."""
    import os

    need = cases * 3 * size * size * 4
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return
    if need > MEMORY_SHARE * total:
        raise UserError(
            f"the evaluation set's {cases} cases at {size} px need about {need / 1e9:.1f} GB decoded, more than half "
            f"of this machine's {total / 1e9:.0f} GB: give --limit N (the first N cases of each half) or a smaller CSV"
        )


def _decision(contract: Contract, target: np.ndarray, probability: np.ndarray) -> OutputContract:
    """The output contract: the contract's fixed threshold, or one chosen on the calibrate half by its rule."""
    decision = contract.data["decision"]
    if "threshold" in decision:
        value, rule, key = float(decision["threshold"]), "fixed by the contract", "contract"
    else:
        target_value = float(decision.get("target", 0.0))
        value = choose_threshold(target, probability, decision["rule"], target_value)
        key = threshold_name(decision["rule"], target_value)
        rule = (
            f"calibrate-half threshold reaching sensitivity >= {target_value:g}"
            if decision["rule"] == "sensitivity"
            else "calibrate-half threshold maximising sensitivity + specificity - 1"
        )
    return OutputContract(
        temperature=1.0, threshold=value, threshold_rule=rule, thresholds={key: {"value": value, "rule": rule}}
    )


def _part_summary(table: pd.DataFrame) -> dict[str, Any]:
    names = "\n".join(sorted(table["image_name"])).encode()
    return {
        "images": len(table),
        "melanomas": int(table["target"].sum()),
        "patients": int(table.loc[table["patient_id"] != "", "patient_id"].nunique()),
        "image_names_sha256": hashlib.sha256(names).hexdigest(),
    }


def model_from_origin(origin: dict[str, Any], spec: ModelSpec) -> nn.Module:
    """Rebuild the reference model, wrapped as it was exported, from parity.json's "source" (for the
    benchmark's PyTorch rows); UserError when that is not possible here (a model that was only in memory,
    files moved since)."""
    from core.checkpoint import load_checkpoint
    from export.adapter import ContractModel

    kind = origin.get("kind")
    if kind == "checkpoint":
        return load_checkpoint(Path(origin["checkpoint"]))[0]
    if kind == "module":
        model = load_module_model(origin["module"], origin.get("weights"))
    elif kind == "program":
        model = load_program(origin["program"])
    else:
        raise UserError("the export was made from a model in memory (export_model): no PyTorch reference to rebuild")
    return ContractModel(model, spec.model_contract()).eval()
