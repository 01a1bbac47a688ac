"""The model contract as data (`melanoma-contract/1`): what a model trained anywhere expects as input and
returns, read from one JSON file and validated with one sentence naming the bad field.

    contract = Contract.load(Path("my-model.contract.json"))
    meta = contract.encoder().encode({"sex": "female", "age_approx": 55, "n_images": 12})   # float32 [K]

This module is the Python reference of the schema (issue 20, "bring your own model"): the parser, and the
metadata encoder every feature kind defines. `Contract.from_metadata_encoder` states today's age / sex / site
encoding (core.metadata) in this schema, and a test holds the two encoders equal. The ModelSpec carries the
contract (core.spec), export.adapter folds its image rules and output head into the graph, and the Kotlin and
JavaScript ports interpret it alike.

Schema (every field required unless marked optional; unknown fields are refused):
    contract   "melanoma-contract/1"
    name       the model's name
    image      size (int), channels "RGB" | "BGR", mean / std (3 numbers each, in the order of `channels`, as the
               model's own pipeline subtracts them; or both null: the model takes
               v / 255), resize "pillow" (antialiased bilinear) | "bilinear" (no antialias, half-pixel centres)
    metadata   a list of features, each {name, kind, field, ...}:
               number   value = (transform(x) - offset) / scale; transform "none" | "log" | "log1p"; `missing`
                        the value when empty; optional missing_flag (true adds a 0/1 entry after it)
               one_hot  categories (in order; an explicit category wins over an alias), aliases (optional),
                        missing "column" (an extra last entry) | "zeros"
               code     codes {value: number}, aliases (optional), missing (the number when empty)
    normalize  optional list of {kind: "l2", features: [names]}: the listed features' entries divided by
               their L2 norm, after encoding
    output     {kind: "sigmoid"} (one logit) | {kind: "softmax", classes: C, positive: [indices]}
    decision   {threshold: p} | {rule: "sensitivity" | "youden", target: t (sensitivity only)}
    tta        optional list of "hflip" / "vflip"
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import UserError
from core.metadata import AGE_COLUMN, AGE_RANGE, MISSING_TOKENS, SEX_COLUMN, SITE_COLUMN, MetadataEncoder, MetadataError

SCHEMA = "melanoma-contract/1"
KINDS = ("number", "one_hot", "code")
TRANSFORMS = {"none": lambda x: x, "log": math.log, "log1p": math.log1p}
TTA = ("hflip", "vflip")


class ContractError(UserError):
    """A contract file that cannot be used; the message names the field."""


def _require(data: Any, keys: Sequence[str], where: str, optional: Sequence[str] = ()) -> Mapping[str, Any]:
    if not isinstance(data, Mapping):
        raise ContractError(f"{where} must be an object, got {type(data).__name__}")
    missing = [k for k in keys if k not in data]
    if missing:
        raise ContractError(f"{where} has no {missing[0]!r}: add it (see the contract schema in the README)")
    unknown = sorted(set(data) - set(keys) - set(optional))
    if unknown:
        raise ContractError(f"{where} has an unknown field {unknown[0]!r}: allowed are {', '.join([*keys, *optional])}")
    return data


def _number(value: Any, where: str, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ContractError(f"{where} must be a finite number, got {value!r}")
    if positive and value <= 0:
        raise ContractError(f"{where} must be greater than 0, got {value!r}")
    return float(value)


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ContractError(f"{where} must be a non-empty string, got {value!r}")
    return value


def _key(value: Any) -> str:
    return " ".join(str(value).strip().lower().replace("_", " ").split())


def _is_missing(value: Any) -> bool:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return True
    return isinstance(value, str) and value.strip().lower() in MISSING_TOKENS


@dataclass(frozen=True)
class Feature:
    """One metadata feature: how one field of a case becomes one or more entries of `meta`."""

    name: str
    kind: str
    field: str
    missing: Any
    transform: str = "none"
    offset: float = 0.0
    scale: float = 1.0
    missing_flag: bool = False
    categories: tuple[str, ...] = ()
    aliases: dict[str, str] = field(default_factory=dict)
    codes: dict[str, float] = field(default_factory=dict)
    range: tuple[float, float] | None = None  # number: the raw values accepted (inclusive)
    bands: tuple[float, ...] = ()  # number: cut points of the subgroups parity compares
    unit: str = ""  # number: shown in forms and messages ("years")
    description: str = ""  # what a form asks for

    @property
    def categorical(self) -> bool:
        return self.kind in ("one_hot", "code")

    def group_of(self, value: Any) -> str:
        """The subgroup a raw value falls in: its category or code ("missing" when empty), or its band of a
        number ("<40", "40-<60", "60+"); "" for a number without bands or a value this feature refuses."""
        if _is_missing(value) or (self.kind == "number" and _as_float(value) is None):
            return "missing" if self.categorical or self.bands else ""
        try:
            if self.kind == "one_hot":
                return self._category(value) or "missing"
            if self.kind == "code":
                return self._code_key(value)
        except MetadataError:
            return ""
        x = _as_float(value)
        if not self.bands or x is None:
            return ""
        edges = self.bands
        if x < edges[0]:
            return f"<{edges[0]:g}"
        for low, high in itertools.pairwise(edges):
            if low <= x < high:
                return f"{low:g}-<{high:g}"
        return f"{edges[-1]:g}+"

    @property
    def entries(self) -> list[str]:
        """Names of this feature's entries in `meta`, in order."""
        if self.kind == "number":
            return [self.name] + ([f"{self.name}_missing"] if self.missing_flag else [])
        if self.kind == "one_hot":
            return [f"{self.name}_{c}" for c in self.categories] + (
                [f"{self.name}_missing"] if self.missing == "column" else []
            )
        return [self.name]

    def encode(self, value: Any) -> list[float]:
        """This feature's entries for one raw value; MetadataError for a value it cannot take."""
        if self.kind == "number":
            return self._number(value)
        if self.kind == "one_hot":
            vector = [0.0] * len(self.entries)
            category = self._category(value)
            if category is not None:
                vector[self.categories.index(category)] = 1.0
            elif self.missing == "column":
                vector[-1] = 1.0
            return vector
        if _is_missing(value):
            return [float(self.missing)]
        return [float(self.codes[self._code_key(value)])]

    def _code_key(self, value: Any) -> str:
        accepted = ", ".join(f'"{c}"' for c in (*self.codes, *self.aliases))
        if not isinstance(value, str):
            raise MetadataError(f"{self.name} {value!r} is not text: use one of {accepted}, or leave it empty")
        key = _key(value)
        key = key if key in self.codes else self.aliases.get(key, key)  # an explicit code wins over an alias
        if key not in self.codes:
            raise MetadataError(f'unknown {self.name} "{value}": use one of {accepted}, or leave it empty')
        return key

    def _number(self, value: Any) -> list[float]:
        if _is_missing(value):
            return [float(self.missing)] + ([1.0] if self.missing_flag else [])
        if isinstance(value, bool | bytes) or not isinstance(value, str | int | float | np.number):
            raise MetadataError(f"{self.name} {value!r} is not a number: give a number or leave it empty")
        try:
            x = float(value)
        except ValueError:
            raise MetadataError(f'{self.name} "{value}" is not a number: give a number or leave it empty') from None
        if math.isnan(x):
            return [float(self.missing)] + ([1.0] if self.missing_flag else [])
        if self.range is not None and not self.range[0] <= x <= self.range[1]:
            unit = f" {self.unit}" if self.unit else ""
            raise MetadataError(
                f"{self.name} {x:g} is outside {self.range[0]:g}-{self.range[1]:g}{unit}: fix or blank it"
            )
        try:
            y = TRANSFORMS[self.transform](x)
        except ValueError:
            raise MetadataError(f"{self.name} {x:g} is outside the domain of {self.transform}") from None
        return [(y - self.offset) / self.scale] + ([0.0] if self.missing_flag else [])

    def _category(self, value: Any) -> str | None:
        if _is_missing(value):
            return None
        if not isinstance(value, str):
            raise MetadataError(f"{self.name} {value!r} is not text: use one of {', '.join(self.categories)}")
        key = _key(value)
        if key in self.categories:  # an explicit category always wins over an alias
            return key
        if key in self.aliases:
            return self.aliases[key]
        accepted = ", ".join(f'"{c}"' for c in (*self.categories, *self.aliases))
        raise MetadataError(f'unknown {self.name} "{value}": use one of {accepted}, or leave it empty for missing')


def _as_float(value: Any) -> float | None:
    if isinstance(value, bool | bytes) or not isinstance(value, str | int | float | np.number):
        return None
    try:
        x = float(value)
    except ValueError:
        return None
    return None if math.isnan(x) else x


def _numbers(value: Any, where: str, count: int | None = None) -> tuple[float, ...]:
    if not isinstance(value, list) or (count is not None and len(value) != count) or not value:
        raise ContractError(f"{where} must be a list of {count or 'one or more'} numbers, got {value!r}")
    numbers = tuple(_number(v, f"{where}[{i}]") for i, v in enumerate(value))
    if any(b <= a for a, b in itertools.pairwise(numbers)):
        raise ContractError(f"{where} must increase, got {value!r}")
    return numbers


def _first(bad: np.ndarray) -> int | None:
    return int(np.flatnonzero(bad)[0]) if bad.any() else None


def _check_block(f: Feature, block: np.ndarray) -> str | None:
    """check_encoded for one feature's entries [N, len(f.entries)] (not in a normalize group)."""
    if f.kind == "one_hot":
        ones = block.sum(axis=1)
        bad = ~np.isin(block, (0.0, 1.0)).all(axis=1) | ((ones != 1) if f.missing == "column" else (ones > 1))
        row = _first(bad)
        if row is not None:
            return f"row {row}: the {f.name} entries {block[row].tolist()} are not one-hot (one 1, the rest 0)"
        return None
    value = block[:, 0]
    if f.kind == "code":
        allowed = np.array([*f.codes.values(), f.missing], dtype=np.float32).astype(np.float64)
        row = _first(~np.isin(value, allowed))
        if row is not None:
            codes = ", ".join(f"{v:g}" for v in allowed)
            return f"row {row}: the {f.name} entry {value[row]:g} is none of its codes ({codes})"
        return None
    flag = block[:, 1] if f.missing_flag else np.zeros(len(block))
    missing = np.float64(np.float32(f.missing))
    row = _first(~np.isin(flag, (0.0, 1.0)) | ((flag == 1) & (value != missing)))
    if row is not None:
        return (
            f"row {row}: {f.name}_missing is {flag[row]:g} with {f.name} entry {value[row]:g} (a missing {f.name} "
            f"encodes as {f.missing:g}, 1)"
        )
    if f.range is None:
        return None
    inverse = {"none": lambda y: y, "log": np.exp, "log1p": np.expm1}[f.transform]
    with np.errstate(over="ignore", invalid="ignore"):
        raw = inverse(value * f.scale + f.offset)
    slack = 0.005 * (f.range[1] - f.range[0])
    known = flag == 0
    if f.missing_flag is False:  # without a flag, the missing value itself is a valid entry
        known &= value != missing
    row = _first(known & ~((raw >= f.range[0] - slack) & (raw <= f.range[1] + slack)))
    if row is not None:
        return f"row {row}: the {f.name} entry {value[row]:g} decodes to {raw[row]:.4g}, outside {list(f.range)}"
    return None


def _feature(data: Any, where: str) -> Feature:
    base = ("name", "kind", "field", "missing")
    if not isinstance(data, Mapping) or data.get("kind") not in KINDS:
        kind = data.get("kind") if isinstance(data, Mapping) else data
        raise ContractError(f"{where}.kind is {kind!r}: use one of {', '.join(KINDS)}")
    name, kind = _text(data.get("name"), f"{where}.name"), data["kind"]
    description = data.get("description", "")
    if not isinstance(description, str):
        raise ContractError(f"{where}.description must be text, got {description!r}")
    if kind == "number":
        _require(
            data, base, where, ("transform", "offset", "scale", "missing_flag", "range", "bands", "unit", "description")
        )
        unit = data.get("unit", "")
        if not isinstance(unit, str):
            raise ContractError(f"{where}.unit must be text, got {unit!r}")
        transform = data.get("transform", "none")
        if transform not in TRANSFORMS:
            raise ContractError(f"{where}.transform is {transform!r}: use one of {', '.join(TRANSFORMS)}")
        flag = data.get("missing_flag", False)
        if not isinstance(flag, bool):
            raise ContractError(f"{where}.missing_flag must be true or false, got {flag!r}")
        return Feature(
            name,
            kind,
            _text(data["field"], f"{where}.field"),
            _number(data["missing"], f"{where}.missing"),
            transform=transform,
            offset=_number(data.get("offset", 0.0), f"{where}.offset"),
            scale=_number(data.get("scale", 1.0), f"{where}.scale", positive=True),
            missing_flag=flag,
            range=_numbers(data["range"], f"{where}.range", 2) if "range" in data else None,
            bands=_numbers(data["bands"], f"{where}.bands") if "bands" in data else (),
            unit=unit,
            description=description,
        )
    if kind == "one_hot":
        _require(data, (*base, "categories"), where, ("aliases", "description"))
        categories = _categories(data["categories"], f"{where}.categories")
        if data["missing"] not in ("column", "zeros"):
            raise ContractError(f'{where}.missing is {data["missing"]!r}: use "column" or "zeros"')
        aliases = _aliases(data.get("aliases", {}), categories, f"{where}.aliases")
        return Feature(
            name,
            kind,
            _text(data["field"], f"{where}.field"),
            data["missing"],
            categories=categories,
            aliases=aliases,
            description=description,
        )
    _require(data, (*base, "codes"), where, ("aliases", "description"))
    codes = data["codes"]
    if not isinstance(codes, Mapping) or not codes:
        raise ContractError(f"{where}.codes must be a non-empty object of value -> number")
    table = {_key(k): _number(v, f"{where}.codes[{k!r}]") for k, v in codes.items()}
    aliases = _aliases(data.get("aliases", {}), tuple(table), f"{where}.aliases")
    return Feature(
        name,
        kind,
        _text(data["field"], f"{where}.field"),
        _number(data["missing"], f"{where}.missing"),
        codes=table,
        aliases=aliases,
        description=description,
    )


def _categories(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        raise ContractError(f"{where} must be a non-empty list of category names")
    keys = tuple(_key(_text(c, f"{where}[{i}]")) for i, c in enumerate(value))
    if len(set(keys)) != len(keys):
        raise ContractError(f"{where} lists a category twice (names compare case- and space-insensitively)")
    return keys


def _aliases(value: Any, targets: Sequence[str], where: str) -> dict[str, str]:
    if not isinstance(value, Mapping):
        raise ContractError(f"{where} must be an object of alias -> category")
    out = {}
    for alias, target in value.items():
        if _key(target) not in targets:
            raise ContractError(f"{where}[{alias!r}] points at {target!r}, which is not one of {', '.join(targets)}")
        out[_key(alias)] = _key(target)
    return out


@dataclass(frozen=True)
class ContractEncoder:
    """Encodes one case (a mapping of field -> raw value) into the `meta` vector a contract describes."""

    features: tuple[Feature, ...]
    groups: tuple[tuple[str, ...], ...] = ()  # L2-normalised feature groups (normalize), by feature name

    @property
    def entries(self) -> list[str]:
        return [e for f in self.features for e in f.entries]

    @property
    def size(self) -> int:
        return len(self.entries)

    def encode(self, case: Mapping[str, Any]) -> np.ndarray:
        """float32 [K]; a field absent from `case` counts as missing."""
        parts = {f.name: f.encode(case.get(f.field)) for f in self.features}
        for group in self.groups:
            values = [v for name in group for v in parts[name]]
            norm = math.sqrt(sum(v * v for v in values))
            if norm > 0:
                for name in group:
                    parts[name] = [v / norm for v in parts[name]]
        return np.array([v for f in self.features for v in parts[f.name]], dtype=np.float32)

    def encode_many(self, cases: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """float32 [N, K]."""
        out = np.zeros((len(cases), self.size), dtype=np.float32)
        for i, case in enumerate(cases):
            out[i] = self.encode(case)
        return out

    @property
    def fields(self) -> list[str]:
        """The case fields the features read, each once, in order."""
        return list(dict.fromkeys(f.field for f in self.features))

    def check_encoded(self, meta: np.ndarray) -> str | None:
        """Why `meta` [N, K] cannot have come from `encode` (the first problem found), or None when it could.

        A one-hot block holds one 1 (or, with missing "zeros", at most one) and otherwise 0; a code is one of
        its codes or its missing number; a missing flag is 0 or 1, with the value the missing one when it is
        1; a number with a `range` decodes to a value inside it (0.5% of the range of slack for float error).
        Features in an L2 `normalize` group are scaled per case, so only their length is checked.
        """
        meta = np.asarray(meta, dtype=np.float64)
        if meta.ndim != 2 or meta.shape[1] != self.size:
            return f"expected [N, {self.size}], got {list(meta.shape)}"
        scaled = {name for group in self.groups for name in group}
        start = 0
        for f in self.features:
            block, start = meta[:, start : start + len(f.entries)], start + len(f.entries)
            if f.name in scaled:
                continue
            problem = _check_block(f, block)
            if problem:
                return problem
        return None


@dataclass(frozen=True)
class Contract:
    """A validated `melanoma-contract/1` (see the module docstring), kept as the plain data it came from."""

    data: dict[str, Any]
    features: tuple[Feature, ...]

    @classmethod
    def from_dict(cls, data: Any) -> Contract:
        """Validate `data`; ContractError naming the first bad field."""
        top = _require(
            data, ("contract", "name", "image", "metadata", "output", "decision"), "the contract", ("normalize", "tta")
        )
        if top["contract"] != SCHEMA:
            raise ContractError(f'the contract\'s "contract" is {top["contract"]!r}: this toolkit reads "{SCHEMA}"')
        _text(top["name"], "name")
        _image(top["image"])
        if not isinstance(top["metadata"], list):
            raise ContractError("metadata must be a list of features (it may be empty)")
        features = tuple(_feature(f, f"metadata[{i}]") for i, f in enumerate(top["metadata"]))
        names = [f.name for f in features]
        if len(set(names)) != len(names):
            raise ContractError("metadata names a feature twice: every feature needs its own name")
        for key in ("normalize", "tta"):
            if key in top and not isinstance(top[key], list):
                raise ContractError(f"{key} must be a list, got {type(top[key]).__name__}")
        for i, group in enumerate(top.get("normalize", [])):
            _require(group, ("kind", "features"), f"normalize[{i}]")
            if group["kind"] != "l2":
                raise ContractError(f'normalize[{i}].kind is {group["kind"]!r}: only "l2" is defined')
            listed = group["features"]
            if not isinstance(listed, list) or not listed:
                raise ContractError(f"normalize[{i}].features must be a non-empty list of metadata feature names")
            unknown = [n for n in listed if n not in names]
            if unknown:
                raise ContractError(
                    f"normalize[{i}].features names {unknown[0]!r}, which is not a metadata feature "
                    f"({', '.join(names) or 'there are none'})"
                )
        _output(top["output"])
        _decision(top["decision"])
        for i, step in enumerate(top.get("tta", [])):
            if step not in TTA:
                raise ContractError(f"tta[{i}] is {step!r}: use {' or '.join(TTA)}")
        return cls(json.loads(json.dumps(data)), features)

    @classmethod
    def load(cls, path: str | Path) -> Contract:
        """Read a contract file; ContractError when it is missing, not JSON or not valid."""
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ContractError(f"contract file {path} does not exist: give --contract CONTRACT.json") from None
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise ContractError(f"{path} is not a readable JSON contract ({exc.__class__.__name__})") from None
        try:
            return cls.from_dict(data)
        except ContractError as exc:
            raise ContractError(f"{path}: {exc}") from None

    def encoder(self) -> ContractEncoder:
        groups = tuple(tuple(g["features"]) for g in self.data.get("normalize", []))
        return ContractEncoder(self.features, groups)

    @classmethod
    def from_metadata_encoder(
        cls, encoder: MetadataEncoder, name: str, size: int, decision: Mapping[str, Any] | None = None
    ) -> Contract:
        """Today's age / sex / site encoding (core.metadata) stated in this schema. The models `python -m train`
        makes take RGB in [0, 1] and normalise inside themselves, so mean and std are null here."""
        return cls.from_dict(
            {
                "contract": SCHEMA,
                "name": name,
                "image": {"size": size, "channels": "RGB", "mean": None, "std": None, "resize": "pillow"},
                "metadata": [
                    {
                        "name": "age",
                        "kind": "number",
                        "field": AGE_COLUMN,
                        "offset": encoder.age_center,
                        "scale": encoder.age_scale,
                        "missing": 0,
                        "missing_flag": True,
                        "range": list(AGE_RANGE),
                        "bands": [40, 60],
                        "unit": "years",
                        "description": "age in years",
                    },
                    {
                        "name": "sex",
                        "kind": "one_hot",
                        "field": SEX_COLUMN,
                        "categories": list(encoder.sexes),
                        "aliases": dict(encoder.sex_aliases),
                        "missing": "column",
                        "description": "sex",
                    },
                    {
                        "name": "site",
                        "kind": "one_hot",
                        "field": SITE_COLUMN,
                        "categories": list(encoder.sites),
                        "aliases": dict(encoder.site_aliases),
                        "missing": "column",
                        "description": "body site of the lesion",
                    },
                ],
                "output": {"kind": "sigmoid"},
                "decision": dict(decision or {"rule": "sensitivity", "target": 0.95}),
            }
        )

    @property
    def name(self) -> str:
        return str(self.data["name"])

    @property
    def image(self) -> dict[str, Any]:
        return self.data["image"]


def _image(data: Any) -> None:
    image = _require(data, ("size", "channels", "mean", "std", "resize"), "image")
    size = image["size"]
    if isinstance(size, bool) or not isinstance(size, int) or not 16 <= size <= 2048:
        raise ContractError(f"image.size must be a whole number of pixels from 16 to 2048, got {size!r}")
    if image["channels"] not in ("RGB", "BGR"):
        raise ContractError(f'image.channels is {image["channels"]!r}: use "RGB" or "BGR"')
    if (image["mean"] is None) != (image["std"] is None):
        raise ContractError("image.mean and image.std must both be given, or both be null (the model takes v / 255)")
    for key in ("mean", "std"):
        if image[key] is not None:
            if not isinstance(image[key], list) or len(image[key]) != 3:
                raise ContractError(
                    f"image.{key} must be 3 numbers (one per channel, in the order of image.channels) or null"
                )
            for i, v in enumerate(image[key]):
                _number(v, f"image.{key}[{i}]", positive=key == "std")
    if image["resize"] not in ("pillow", "bilinear"):
        raise ContractError(f'image.resize is {image["resize"]!r}: use "pillow" (antialiased) or "bilinear"')


def _output(data: Any) -> None:
    if not isinstance(data, Mapping) or data.get("kind") not in ("sigmoid", "softmax"):
        kind = data.get("kind") if isinstance(data, Mapping) else data
        raise ContractError(f'output.kind is {kind!r}: use "sigmoid" (one logit) or "softmax"')
    if data["kind"] == "sigmoid":
        _require(data, ("kind",), "output")
        return
    output = _require(data, ("kind", "classes", "positive"), "output")
    classes = output["classes"]
    if isinstance(classes, bool) or not isinstance(classes, int) or classes < 2:
        raise ContractError(f"output.classes must be a whole number of at least 2, got {classes!r}")
    positive = output["positive"]
    if not isinstance(positive, list) or not positive:
        raise ContractError("output.positive must list the positive class index or indices, e.g. [6]")
    for i in positive:
        if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < classes:
            raise ContractError(f"output.positive index {i!r} is out of range for {classes} classes (0-{classes - 1})")
    if len(set(positive)) == classes:
        raise ContractError("output.positive lists every class: at least one class must be negative")


def _decision(data: Any) -> None:
    if isinstance(data, Mapping) and "threshold" in data:
        decision = _require(data, ("threshold",), "decision")
        if not 0.0 <= _number(decision["threshold"], "decision.threshold") <= 1.0:
            raise ContractError(f"decision.threshold must be a probability (0-1), got {decision['threshold']!r}")
        return
    if not isinstance(data, Mapping) or data.get("rule") not in ("sensitivity", "youden"):
        raise ContractError('decision needs a "threshold", or a "rule" ("sensitivity" with a "target", or "youden")')
    if data["rule"] == "youden":
        _require(data, ("rule",), "decision")
        return
    decision = _require(data, ("rule", "target"), "decision")
    if not 0.0 < _number(decision["target"], "decision.target") < 1.0:
        raise ContractError(f"decision.target must lie strictly between 0 and 1, got {decision['target']!r}")
