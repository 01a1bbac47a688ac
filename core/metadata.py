"""Patient metadata -> the `meta` vector every model takes, and the contract an app needs to build it.

Encoding, per feature (never a row-wise normalisation, which would mix age with the one-hots):
- age: `(age - center) / scale`, with `center`/`scale` fitted on the training split; 0 when missing,
  plus an `age_missing` flag.
- sex: one-hot over (male, female) plus `sex_missing`.
- body site: one-hot over the six ISIC 2020 sites plus `site_missing`; ISIC 2019 names such as
  "anterior torso" are accepted as aliases.

`MetadataEncoder.contract()` is what the ModelSpec stores; `MetadataEncoder.from_contract()` rebuilds the
exact encoder from it, so an artifact's own spec is enough to encode a patient.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from core.errors import UserError

AGE_COLUMN = "age_approx"
SEX_COLUMN = "sex"
SITE_COLUMN = "anatom_site_general_challenge"

SITES = ("head/neck", "upper extremity", "lower extremity", "torso", "palms/soles", "oral/genital")
SEXES = ("male", "female")
# ISIC 2019 and common spellings -> the ISIC 2020 vocabulary.
SITE_ALIASES: dict[str, str] = {
    "anterior torso": "torso",
    "posterior torso": "torso",
    "lateral torso": "torso",
    "head neck": "head/neck",
    "head and neck": "head/neck",
    "palms soles": "palms/soles",
    "oral genital": "oral/genital",
}
SEX_ALIASES: dict[str, str] = {"m": "male", "f": "female"}
MISSING_TOKENS = ("", "nan", "na", "n/a", "none", "null", "unknown")
AGE_RANGE = (0.0, 120.0)
CONTRACT_VERSION = 1


class MetadataError(UserError):
    """A metadata value that cannot be encoded (unknown category, impossible age)."""


def _is_missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, str) and value.strip().lower() in MISSING_TOKENS


def _canonical(value: Any, categories: Sequence[str], aliases: Mapping[str, str], what: str) -> str | None:
    if _is_missing(value):
        return None
    key = " ".join(str(value).strip().lower().replace("_", " ").split())
    if key in categories:
        return key
    if key in aliases:
        return aliases[key]
    accepted = ", ".join(f'"{c}"' for c in (*categories, *aliases))
    raise MetadataError(f'unknown {what} "{value}": use one of {accepted}, or leave it empty for missing')


@dataclass
class MetadataEncoder:
    """Encodes (age, sex, site) into the model's `meta` vector; see the module docstring."""

    age_center: float = 50.0
    age_scale: float = 20.0
    sexes: tuple[str, ...] = SEXES
    sites: tuple[str, ...] = SITES
    sex_aliases: dict[str, str] = field(default_factory=lambda: dict(SEX_ALIASES))
    site_aliases: dict[str, str] = field(default_factory=lambda: dict(SITE_ALIASES))

    @classmethod
    def fit(cls, ages: Iterable[Any]) -> MetadataEncoder:
        """Fit the age centre and scale on known training ages (missing ones ignored)."""
        known = np.array([float(a) for a in ages if not _is_missing(a)], dtype=np.float64)
        if known.size < 2 or float(known.std()) == 0.0:
            return cls()
        return cls(age_center=round(float(known.mean()), 4), age_scale=round(float(known.std()), 4))

    @property
    def feature_names(self) -> list[str]:
        """Names of the `meta` vector's entries, in order."""
        return (
            ["age", "age_missing"]
            + [f"sex_{s}" for s in self.sexes]
            + ["sex_missing"]
            + [f"site_{s}" for s in self.sites]
            + ["site_missing"]
        )

    @property
    def size(self) -> int:
        """Length K of the `meta` vector."""
        return len(self.feature_names)

    def canonical_site(self, site: Any) -> str | None:
        """The ISIC 2020 name of `site`, None when missing; raises MetadataError when unknown."""
        return _canonical(site, self.sites, self.site_aliases, "body site")

    def canonical_sex(self, sex: Any) -> str | None:
        """`male`/`female`, None when missing; raises MetadataError when unknown."""
        return _canonical(sex, self.sexes, self.sex_aliases, "sex")

    def check_age(self, age: Any) -> float | None:
        """The age as a float, None when missing; raises MetadataError when not a plausible age."""
        if _is_missing(age):
            return None
        if isinstance(age, bool | bytes) or not isinstance(age, str | int | float | np.number):
            # float(True) is 1.0: a checkbox or a list must never encode as an age.
            raise MetadataError(f"age {age!r} is not a number: give years (e.g. 55) or leave it empty")
        try:
            value = float(age)
        except (TypeError, ValueError):
            raise MetadataError(f'age "{age}" is not a number: give years (e.g. 55) or leave it empty') from None
        if math.isnan(value):
            return None
        if not AGE_RANGE[0] <= value <= AGE_RANGE[1]:
            raise MetadataError(f"age {value:g} is outside {AGE_RANGE[0]:g}-{AGE_RANGE[1]:g} years: fix or blank it")
        return value

    def encode(self, age: Any = None, sex: Any = None, site: Any = None) -> np.ndarray:
        """Encode one patient; returns float32 [K]."""
        vec = np.zeros(self.size, dtype=np.float32)
        age_value = self.check_age(age)
        if age_value is None:
            vec[1] = 1.0
        else:
            vec[0] = (age_value - self.age_center) / self.age_scale
        offset = 2
        sex_value = self.canonical_sex(sex)
        vec[offset + (len(self.sexes) if sex_value is None else self.sexes.index(sex_value))] = 1.0
        offset += len(self.sexes) + 1
        site_value = self.canonical_site(site)
        vec[offset + (len(self.sites) if site_value is None else self.sites.index(site_value))] = 1.0
        return vec

    def encode_many(self, ages: Sequence[Any], sexes: Sequence[Any], sites: Sequence[Any]) -> np.ndarray:
        """Encode N patients; returns float32 [N, K]."""
        if not len(ages) == len(sexes) == len(sites):
            raise ValueError("ages, sexes and sites must have the same length")
        out = np.zeros((len(ages), self.size), dtype=np.float32)
        for i, (a, s, t) in enumerate(zip(ages, sexes, sites, strict=True)):
            out[i] = self.encode(a, s, t)
        return out

    def check_encoded(self, meta: np.ndarray) -> str | None:
        """Why `meta` [N, K] cannot have come from `encode` (first problem found), or None when it could.

        Each one-hot group (sex + missing, site + missing) must hold one 1 and otherwise 0, `age_missing` must
        be 0 or 1 with the age entry 0 when it is 1, and the age entry must decode to an age in AGE_RANGE.
        """
        meta = np.asarray(meta, dtype=np.float64)
        if meta.ndim != 2 or meta.shape[1] != self.size:
            return f"expected [N, {self.size}], got {list(meta.shape)}"
        groups = {"sex": (2, 3 + len(self.sexes)), "site": (3 + len(self.sexes), self.size)}
        for name, (lo, hi) in groups.items():
            block = meta[:, lo:hi]
            bad = ~(np.isin(block, (0.0, 1.0)).all(axis=1) & (block.sum(axis=1) == 1))
            if bad.any():
                row = int(np.flatnonzero(bad)[0])
                return f"row {row}: the {name} entries {block[row].tolist()} are not one-hot (one 1, the rest 0)"
        flag, age = meta[:, 1], meta[:, 0]
        bad = ~np.isin(flag, (0.0, 1.0)) | ((flag == 1) & (age != 0))
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            return f"row {row}: age_missing is {flag[row]:g} with age entry {age[row]:g} (missing age encodes as 0, 1)"
        years = age * self.age_scale + self.age_center
        bad = (flag == 0) & ((years < AGE_RANGE[0] - 0.5) | (years > AGE_RANGE[1] + 0.5))
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            return f"row {row}: the age entry {age[row]:g} decodes to {years[row]:.1f} years, outside {AGE_RANGE}"
        return None

    def contract(self) -> dict[str, Any]:
        """The plain-data description an app needs to build `meta` exactly like this encoder."""
        features: list[dict[str, Any]] = [
            {
                "name": "age",
                "source": AGE_COLUMN,
                "encoding": f"(age_years - {self.age_center}) / {self.age_scale}; 0 when missing",
            },
            {"name": "age_missing", "source": AGE_COLUMN, "encoding": "1 when age is missing, else 0"},
        ]
        for s in self.sexes:
            features.append({"name": f"sex_{s}", "source": SEX_COLUMN, "encoding": f'1 when sex is "{s}"'})
        features.append({"name": "sex_missing", "source": SEX_COLUMN, "encoding": "1 when sex is missing"})
        for s in self.sites:
            features.append({"name": f"site_{s}", "source": SITE_COLUMN, "encoding": f'1 when site is "{s}"'})
        features.append({"name": "site_missing", "source": SITE_COLUMN, "encoding": "1 when site is missing"})
        for i, feat in enumerate(features):
            feat["index"] = i
        return {
            "version": CONTRACT_VERSION,
            "size": self.size,
            "dtype": "float32",
            "features": features,
            "age": {
                "column": AGE_COLUMN,
                "unit": "years",
                "center": self.age_center,
                "scale": self.age_scale,
                "valid_range": list(AGE_RANGE),
            },
            "sex": {"column": SEX_COLUMN, "categories": list(self.sexes), "aliases": dict(self.sex_aliases)},
            "site": {"column": SITE_COLUMN, "categories": list(self.sites), "aliases": dict(self.site_aliases)},
            "missing_tokens": list(MISSING_TOKENS),
            "case_insensitive": True,
        }

    @classmethod
    def from_contract(cls, contract: Mapping[str, Any]) -> MetadataEncoder:
        """Rebuild the encoder a contract describes; raises ValueError on a malformed contract."""
        try:
            if contract["version"] != CONTRACT_VERSION:
                raise ValueError(f"metadata contract version {contract['version']} is not {CONTRACT_VERSION}")
            enc = cls(
                age_center=float(contract["age"]["center"]),
                age_scale=float(contract["age"]["scale"]),
                sexes=tuple(contract["sex"]["categories"]),
                sites=tuple(contract["site"]["categories"]),
                sex_aliases=dict(contract["sex"]["aliases"]),
                site_aliases=dict(contract["site"]["aliases"]),
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"metadata contract is missing or malformed: {exc}") from None
        names = [f["name"] for f in contract.get("features", [])]
        if names != enc.feature_names:
            raise ValueError("metadata contract's feature list does not match its categories")
        return enc
