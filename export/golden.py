"""Golden vectors: a few test cases an app replays to prove it preprocesses exactly like Python.

`golden.json` holds, per case: the decoded RGB pixels (uint8, H x W x 3, row-major, base64), the raw
metadata (age, sex, site) and the encoded `meta`, the expected `image` tensor after the spec's resize
(float32 little-endian [3, S, S], base64) and the expected logit and probability of the PyTorch model.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core.io import write_json
from core.spec import ModelSpec
from export.common import Runner
from train.images import eval_transform, load_rgb


def _b64(array: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(array).tobytes()).decode("ascii")


def decode(field: dict[str, Any]) -> np.ndarray:
    """Inverse of the encoding used in golden.json (for tests and Python apps)."""
    raw = base64.b64decode(field["base64"])
    return np.frombuffer(raw, dtype=np.dtype(field["dtype"]).newbyteorder("<")).reshape(field["shape"])


def _missing(value: Any) -> Any:
    return None if value is None or (isinstance(value, float) and np.isnan(value)) or value == "" else value


def write_golden(path: Path, spec: ModelSpec, table: pd.DataFrame, reference: Runner, count: int = 4) -> Path:
    """Pick `count` cases (both classes when possible) and write golden.json atomically."""
    positives = table.index[table["target"] == 1].tolist()
    negatives = table.index[table["target"] == 0].tolist()
    half = count // 2
    picks = positives[:half] + negatives[: count - min(half, len(positives))]
    picks = (picks + [i for i in table.index if i not in picks])[:count]
    encoder, transform = spec.encoder(), eval_transform(spec.image.size)
    cases = []
    for i in picks:
        row = table.loc[i]
        pixels = np.asarray(load_rgb(row["path"]), dtype=np.uint8)
        tensor = transform(load_rgb(row["path"])).numpy().astype("<f4")
        raw_meta = {"age": _missing(row["age_approx"]), "sex": _missing(row["sex"]), "site": _missing(row["site"])}
        meta = encoder.encode(raw_meta["age"], raw_meta["sex"], raw_meta["site"])
        out = reference.predict(tensor[None], meta[None])
        cases.append(
            {
                "image_name": row["image_name"],
                "label": int(row["target"]),
                "decoded_rgb": {"shape": list(pixels.shape), "dtype": "uint8", "layout": "HWC", "base64": _b64(pixels)},
                "metadata": raw_meta,
                "meta": [float(v) for v in meta],
                "image": {"shape": list(tensor.shape), "dtype": "float32", "layout": "CHW", "base64": _b64(tensor)},
                "expected": {"logit": float(out.logit[0, 0]), "probability": float(out.probability[0, 0])},
            }
        )
    return write_json(
        path,
        {
            "model": spec.name,
            "weights_sha256": spec.weights_sha256,
            "preprocessing": {
                "resize": spec.image.resize,
                "interpolation": spec.image.interpolation,
                "antialias": spec.image.antialias,
                "library": spec.image.resize_library,
            },
            "tolerance": {
                "image_max_abs": 2.0 / 255,
                "probability_max_abs": 1e-3,
                "note": "resizers differ slightly across platforms; the probability bound is the one that matters",
            },
            "cases": cases,
        },
    )
