"""The ModelSpec: everything an app needs to use a model correctly, as plain data.

It is written into the training checkpoint, embedded in every exported artifact and written beside each
as `<artifact>.spec.json`. Runners read it back from the artifact; nothing about preprocessing or the
metadata vector comes from command-line defaults.

    spec = ModelSpec.from_dict(json.load(open("spec.json")))
    spec.image.size, spec.contract["metadata"], spec.metadata["entries"], spec.outputs.threshold

`contract` is the model's own `melanoma-contract/1` (core.contract: its image rules, typed metadata features,
output head and decision rule), for a model `python -m train` made as for one trained elsewhere. `image` is the
exported graph's input (always RGB in [0, 1]: channel order and mean / std are folded into the graph) and
`metadata` the `meta` input's layout, both derived from the contract and checked against it when read.
Schema version 1 (before contracts) is read by upgrading its age / sex / site encoding to a contract.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import hashlib
import json
import math
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import core
from core.contract import Contract, ContractEncoder, ContractError
from core.metadata import MISSING_TOKENS, MetadataEncoder

SCHEMA = "melanoma-model-spec"
SCHEMA_VERSION = 2
PILLOW_RESIZE = "PIL"
BILINEAR_RESIZE = "OpenCV cv2.resize INTER_LINEAR (bit-exact port: core.images.resize_bilinear)"
INTENDED_USE = (
    "Research and engineering use only: ranking dermoscopic images of skin lesions by estimated risk of "
    "melanoma, to study model export and on-device inference. Not a medical device; not for diagnosis or "
    "for deciding on treatment. Trained on {data}."
)


@dataclass
class ImageContract:
    """How an image must be prepared before it is fed to the `image` input."""

    size: int
    layout: str = "NCHW"
    dtype: str = "float32"
    color: str = "RGB"
    value_range: tuple[float, float] = (0.0, 1.0)
    resize: str = "stretch"  # the whole image is resized to size x size, aspect ratio not kept
    interpolation: str = "bilinear"
    antialias: bool = True
    resize_library: str = "PIL"
    resize_library_version: str = ""  # the Pillow whose resize the model was trained and checked with
    scale: str = "v / 255 in float32 (a correctly rounded division) for each 8-bit RGB value"
    decode: str = "EXIF orientation applied; converted to RGB (alpha composited on white)"
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    normalization: str = "inside the model: (x - mean) / std is part of the graph; feed RGB in [0, 1]"


@dataclass
class OutputContract:
    """What the model returns and how to turn it into a decision."""

    names: tuple[str, ...] = ("logit", "probability")
    shape: str = "[N, 1]"
    labels: tuple[str, str] = ("benign", "melanoma")
    positive_label: str = "melanoma"
    probability: str = "sigmoid(logit / temperature)"
    temperature: float = 1.0
    threshold: float = 0.5
    threshold_rule: str = "fixed 0.5 (no validation data)"
    thresholds: dict[str, dict[str, float | str]] = field(default_factory=dict)

    def decide(self, probability: float) -> tuple[str, bool]:
        """(label, positive): a probability at or above the threshold is the positive label.

        Raises ValueError for anything that is not a probability (NaN, infinite, outside 0-1, not a number):
        a comparison with NaN is False, which would otherwise read as the negative label.
        """
        if isinstance(probability, bool) or not isinstance(probability, int | float | np.floating | np.integer):
            raise ValueError(f"cannot decide on {probability!r}: a probability must be a number in 0-1")
        if not 0.0 <= float(probability) <= 1.0:  # NaN fails this too
            raise ValueError(f"cannot decide on {float(probability)!r}: a probability must be a number in 0-1")
        positive = float(probability) >= self.threshold
        negative = next(label for label in self.labels if label != self.positive_label)
        return (self.positive_label if positive else negative), positive


@dataclass
class ModelSpec:
    """The one record that travels with a model; see the module docstring."""

    name: str
    architecture: str
    image: ImageContract
    metadata: dict[str, Any]  # the `meta` input's layout (metadata_layout of the contract)
    contract: dict[str, Any]  # the model's melanoma-contract/1 (core.contract)
    outputs: OutputContract = field(default_factory=OutputContract)
    model_config: dict[str, Any] = field(default_factory=dict)
    version: str = "1"
    weights_sha256: str = ""
    created_at: str = field(default_factory=lambda: _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"))
    code_version: str = field(default_factory=lambda: code_version())
    provenance: dict[str, Any] = field(default_factory=dict)
    # Set in a quantized artifact's spec: {"name": "int8", "method": ..., "remedy": ..., "io": {...}}.
    # "io" lists any input or output that is not float32 with its scale and zero point. "weights_finetuned"
    # (export.finetune's report) says the artifact's weights were fine-tuned for int8, so they are no longer
    # those that `weights_sha256` names, though its parity is judged against them.
    precision: dict[str, Any] = field(default_factory=dict)
    schema: str = SCHEMA
    schema_version: int = SCHEMA_VERSION

    @property
    def meta_size(self) -> int:
        """Length K of the `meta` input."""
        return int(self.metadata["size"])

    def model_contract(self) -> Contract:
        """The contract this spec carries, validated."""
        return Contract.from_dict(self.contract)

    def encoder(self) -> ContractEncoder:
        """The metadata encoder the contract describes: a case (field -> raw value) -> `meta`."""
        return self.model_contract().encoder()

    @classmethod
    def for_contract(cls, contract: Contract, architecture: str, outputs: OutputContract, **fields: Any) -> ModelSpec:
        """The spec of a model that `contract` describes; `image` and `metadata` are derived from it (an
        `image` given in `fields` must agree with it)."""
        image = fields.pop("image", None) or image_contract(contract)
        return cls(
            name=contract.name,
            architecture=architecture,
            image=image,
            metadata=metadata_layout(contract),
            contract=contract.data,
            outputs=outputs,
            **fields,
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able data (tuples become lists)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    def to_json(self) -> str:
        """Canonical JSON text (sorted keys), used for embedding and for comparing specs."""
        return json.dumps(self.to_dict(), sort_keys=True, indent=2, allow_nan=False)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelSpec:
        """Rebuild a spec from plain data; raises ValueError when it is not a valid spec."""
        if not isinstance(data, Mapping) or data.get("schema") != SCHEMA:
            raise ValueError(f'not a model spec (expected "schema": "{SCHEMA}")')
        if data.get("schema_version") == 1:
            data = upgrade_v1(data)
        if data.get("schema_version") != SCHEMA_VERSION:
            raise ValueError(f"model spec version {data.get('schema_version')} is not supported ({SCHEMA_VERSION})")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"model spec has unknown fields: {sorted(unknown)}")
        _require(data, known, "model spec")
        try:
            kwargs = dict(data)
            kwargs["image"] = _build(ImageContract, data["image"], "image")
            kwargs["outputs"] = _build(OutputContract, data["outputs"], "outputs")
            spec = cls(**kwargs)
        except TypeError as exc:
            raise ValueError(f"model spec is malformed: {exc}") from None
        _check_decision(spec.outputs)
        _check_against_contract(spec)
        return spec

    @classmethod
    def from_json(cls, text: str) -> ModelSpec:
        """Parse a spec from JSON text."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"model spec is not valid JSON: {exc}") from None
        return cls.from_dict(data)

    def save(self, path: str | Path) -> Path:
        """Write the spec as JSON (atomically)."""
        from core.io import write_text

        return write_text(path, self.to_json() + "\n")

    @classmethod
    def load(cls, path: str | Path) -> ModelSpec:
        """Read a spec JSON file."""
        return cls.from_json(Path(path).read_text(encoding="utf-8"))


def _require(data: Any, names: set[str], where: str) -> None:
    """A contract reader never fills in a missing field: refuse, naming the first one missing."""
    if not isinstance(data, Mapping):
        raise ValueError(f"{where} is not an object")
    missing = sorted(names - set(data))
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise ValueError(f"{where} has no {missing[0]!r}{more}: re-export the model so its spec is complete")


def image_contract(contract: Contract) -> ImageContract:
    """The exported graph's `image` input for a model `contract` describes: RGB in [0, 1], resized by the
    contract's rule; the channel order and mean / std go into the graph (export.adapter.ContractModel)."""
    from core.images import PILLOW_VERSION

    image = contract.image
    pillow = image["resize"] == "pillow"
    if image["mean"] is None:
        mean, std, how = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), "none: the model takes v / 255"
    else:
        order = slice(None, None, -1) if image["channels"] == "BGR" else slice(None)
        mean, std = tuple(image["mean"][order]), tuple(image["std"][order])
        how = "inside the exported graph: (x - mean) / std (given here in RGB order); feed RGB in [0, 1]"
    if image["channels"] == "BGR":
        how += "; the graph reorders RGB to the model's BGR"
    return ImageContract(
        size=int(image["size"]),
        antialias=pillow,
        resize_library=PILLOW_RESIZE if pillow else BILINEAR_RESIZE,
        resize_library_version=PILLOW_VERSION if pillow else "",
        mean=mean,
        std=std,
        normalization=how,
    )


def metadata_layout(contract: Contract) -> dict[str, Any]:
    """The `meta` input's layout: its size, the name of each entry, the case fields it is built from and the
    text that counts as missing (matched after trimming and lower-casing)."""
    encoder = contract.encoder()
    return {
        "size": encoder.size,
        "dtype": "float32",
        "entries": encoder.entries,
        "fields": encoder.fields,
        "missing_tokens": list(MISSING_TOKENS),
        "case_insensitive": True,
    }


def upgrade_v1(data: Mapping[str, Any]) -> dict[str, Any]:
    """A schema-1 spec (an age / sex / site metadata contract, no model contract) in schema 2."""
    data = dict(data)
    try:
        encoder = MetadataEncoder.from_contract(data["metadata"])
        contract = Contract.from_metadata_encoder(
            encoder, str(data["name"]), int(data["image"]["size"]), {"threshold": data["outputs"]["threshold"]}
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"model spec version 1 cannot be upgraded: {exc}") from None
    data["contract"] = contract.data
    data["metadata"] = metadata_layout(contract)
    data["schema_version"] = SCHEMA_VERSION
    return data


def _check_against_contract(spec: ModelSpec) -> None:
    """The derived parts (image size and resize rule, the `meta` layout) must agree with the contract."""
    try:
        contract = spec.model_contract()
    except ContractError as exc:
        raise ValueError(f"the spec's contract is not valid: {exc}") from None
    if spec.metadata != metadata_layout(contract):
        raise ValueError("the spec's metadata layout does not match its contract's features")
    if spec.image.size != contract.image["size"]:
        raise ValueError(f"image.size {spec.image.size} differs from the contract's {contract.image['size']}")
    if spec.image.antialias != (contract.image["resize"] == "pillow"):
        raise ValueError(f"image.antialias {spec.image.antialias} contradicts the contract's resize rule")


def _check_decision(outputs: OutputContract) -> None:
    for name in ("threshold", "temperature"):
        value = getattr(outputs, name)
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise ValueError(f"outputs.{name} is {value!r}, not a finite number")
    if not 0.0 <= outputs.threshold <= 1.0:
        raise ValueError(f"outputs.threshold {outputs.threshold!r} is not a probability (0-1)")
    if outputs.temperature <= 0:
        raise ValueError(f"outputs.temperature {outputs.temperature!r} must be positive")
    if outputs.positive_label not in outputs.labels:
        raise ValueError(f"outputs.positive_label {outputs.positive_label!r} is not one of {list(outputs.labels)}")


def _build(kind: type, data: Mapping[str, Any], where: str) -> Any:
    names = {f.name for f in dataclasses.fields(kind)}
    _require(data, names, where)
    unknown = set(data) - names
    if unknown:
        raise ValueError(f"{kind.__name__} has unknown fields: {sorted(unknown)}")
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
    return kind(**values)


def state_dict_sha256(state_dict: Mapping[str, Any]) -> str:
    """A hash of a model's weights that does not depend on how they were serialised.

    Keys are hashed in sorted order with each tensor's dtype, shape and contiguous bytes.
    """
    import torch

    digest = hashlib.sha256()
    for key in sorted(state_dict):
        value = state_dict[key]
        if not isinstance(value, torch.Tensor):
            continue
        tensor = value.detach().cpu().contiguous()
        digest.update(key.encode())
        digest.update(str(tensor.dtype).encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def code_version() -> str:
    """The package version plus the git commit when run from a checkout."""
    version = core.__version__
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return f"{version}+g{commit}" if commit else version
