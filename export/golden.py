"""Golden vectors: a few test cases an app replays to prove it preprocesses and predicts exactly like Python.

`golden.json` (beside the artifacts) holds, per case:
- `png`: the decoded RGB pixels as a lossless PNG under `golden/` (path relative to golden.json), so an
  app's own PNG decoder reads exactly the pixels Python resized; `decoded_rgb` holds the same pixels
  (uint8, H x W x 3, row-major, base64) for Python;
- `metadata` (the case as the contract's features read it: field -> raw value, null = missing) and the
  encoded `meta`;
- `image`: the expected `image` tensor after the spec's resize (float32 little-endian, [3, S, S], base64);
  an NHWC artifact takes its transpose;
- `expected`: the PyTorch model's logit and probability, and the decision at the spec's threshold;
- `artifacts`: each exported artifact's own logit and probability from its Python runtime, by file name
  (an int8 artifact is held to these, not to PyTorch's).
The top level records the Pillow version whose resize the tensors follow, and the bounds an app must meet.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from core.evaluation import cases as case_rows
from core.evaluation import decoded as decoded_image
from core.images import PILLOW_VERSION, preprocess
from core.io import write_json, write_with
from core.spec import ModelSpec
from export.common import Runner

GOLDEN_DIR = "golden"
IMAGE_BOUND = 1.0 / 255  # the most an app's tensor may differ from Python's; bit-identical is the target
PROBABILITY_BOUND_FP32 = 1e-4  # an fp32 artifact in an app against the expected probability


def _b64(array: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(array).tobytes()).decode("ascii")


def decode(field: dict[str, Any]) -> np.ndarray:
    """Inverse of the encoding used in golden.json (for tests and Python apps)."""
    raw = base64.b64decode(field["base64"])
    return np.frombuffer(raw, dtype=np.dtype(field["dtype"]).newbyteorder("<")).reshape(field["shape"])


def _missing(value: Any) -> Any:
    """A raw case value as JSON: None when missing (NaN, empty text), numpy scalars as plain numbers."""
    value = value.item() if isinstance(value, np.generic) else value
    return None if value is None or (isinstance(value, float) and np.isnan(value)) or value == "" else value


def pick_cases(table: pd.DataFrame, count: int) -> list[int]:
    """`count` row indices, melanomas and benign lesions alternating where both exist."""
    positives = table.index[table["target"] == 1].tolist()
    negatives = table.index[table["target"] == 0].tolist()
    half = count // 2
    picks = positives[:half] + negatives[: count - min(half, len(positives))]
    return (picks + [i for i in table.index if i not in picks])[:count]


def write_golden(
    folder: Path,
    spec: ModelSpec,
    table: pd.DataFrame,
    reference: Runner,
    count: int = 4,
    artifacts: dict[str, Runner] | None = None,
) -> Path:
    """Write `golden.json` and its PNGs into `folder` (atomically, file by file).

    Args:
        folder: the export folder.
        spec: the checkpoint's spec (metadata contract, threshold, image contract).
        table: test cases (image_name, target, path and the contract's fields).
        reference: the PyTorch runner whose outputs are the expected ones.
        count: how many cases.
        artifacts: file name -> runner of each artifact that runs here; its outputs are recorded per case.
    """
    encoder = spec.encoder()
    raw_cases = dict(zip(table.index, case_rows(table, encoder.fields), strict=True))
    cases = []
    for i in pick_cases(table, count):
        row = table.loc[i]
        decoded = decoded_image(row["path"], "golden-vector")
        pixels = np.asarray(decoded, dtype=np.uint8)
        tensor = preprocess(decoded, spec.image, layout="NCHW").astype("<f4")
        raw_meta = {k: _missing(v) for k, v in raw_cases[i].items()}
        meta = encoder.encode(raw_meta)
        png = f"{GOLDEN_DIR}/{row['image_name']}.png"
        write_with(folder / png, lambda tmp, p=pixels: Image.fromarray(p).save(tmp, format="PNG"))
        out = reference.predict(tensor[None], meta[None])
        probability = float(out.probability[0, 0])
        label, positive = spec.outputs.decide(probability)
        per_artifact = {}
        for name, runner in (artifacts or {}).items():
            got = runner.predict(tensor[None], meta[None])
            per_artifact[name] = {"logit": float(got.logit[0, 0]), "probability": float(got.probability[0, 0])}
        cases.append(
            {
                "image_name": row["image_name"],
                "label": int(row["target"]),
                "png": png,
                "decoded_rgb": {"shape": list(pixels.shape), "dtype": "uint8", "layout": "HWC", "base64": _b64(pixels)},
                "metadata": raw_meta,
                "meta": [float(v) for v in meta],
                "image": {"shape": list(tensor.shape), "dtype": "float32", "layout": "CHW", "base64": _b64(tensor)},
                "expected": {
                    "logit": float(out.logit[0, 0]),
                    "probability": probability,
                    "label": label,
                    "positive": positive,
                },
                "artifacts": per_artifact,
            }
        )
    return write_json(
        folder / "golden.json",
        {
            "model": spec.name,
            "weights_sha256": spec.weights_sha256,
            "threshold": spec.outputs.threshold,
            "preprocessing": {
                "rule": spec.contract["image"]["resize"],
                "resize": spec.image.resize,
                "interpolation": spec.image.interpolation,
                "antialias": spec.image.antialias,
                "library": spec.image.resize_library,
                "pillow_version": PILLOW_VERSION,
                "scale": spec.image.scale,
            },
            "tolerance": {
                "image_max_abs": IMAGE_BOUND,
                "image_target": "bit-identical (max |d| = 0)",
                "probability_max_abs_fp32": PROBABILITY_BOUND_FP32,
                "note": "an int8 or fp16 artifact is held to its own `artifacts` entry; a different decoder (JPEG) "
                "may change pixels, which is why the cases ship as PNG",
            },
            "cases": cases,
        },
    )
