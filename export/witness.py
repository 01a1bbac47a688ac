"""A second, independent runtime of a format, as a witness: does the artifact mean the same thing to a runtime
that did not make it and is not the one it was judged with?

    probabilities, name = predict(Path("dist/x/x.int8.onnx"), image, meta)   # OpenVINO for .onnx

- `.onnx`: OpenVINO (its ONNX front end), where ONNX Runtime made and judged the artifact;
- `.tflite`: TensorFlow's own `tf.lite.Interpreter`, where LiteRT (ai-edge-litert) judged it;
- `.pte`: none exists (ExecuTorch is the only runtime of its programs), said so in the row.
Each is optional: without it the row says which package to install, and nothing else changes.
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import numpy as np

SECOND_RUNTIMES = {".onnx": ("openvino", "openvino"), ".tflite": ("tensorflow", "tensorflow-cpu")}


class Unavailable(Exception):
    """No second runtime of this format here: the message says why (and what to install)."""


def runtime_for(path: Path) -> str:
    """The name and version of the second runtime of `path`'s format; Unavailable when there is none here."""
    if path.suffix not in SECOND_RUNTIMES:
        raise Unavailable(f"no second runtime of {path.suffix} exists (its own runtime is the only one)")
    module, package = SECOND_RUNTIMES[path.suffix]
    try:
        __import__(module)
    except ImportError:
        raise Unavailable(f"{package} is not installed (pip install {package}), so no second runtime ran") from None
    for dist in (package, module):
        try:
            return f"{module} {importlib.metadata.version(dist)}"
        except importlib.metadata.PackageNotFoundError:
            continue
    return module


def predict(path: Path, image: np.ndarray, meta: np.ndarray, nhwc: bool = False) -> np.ndarray:
    """Probabilities [N] of the artifact at `path` on float32 `image` (NCHW) and `meta`, by the second runtime.

    `nhwc`: the artifact takes its image channels-last (the TFLite phone artifact)."""
    runtime_for(path)
    if nhwc:
        image = np.ascontiguousarray(image.transpose(0, 2, 3, 1))
    if path.suffix == ".onnx":
        return _openvino(path, image, meta)
    return _tf_lite(path, image, meta)


def _openvino(path: Path, image: np.ndarray, meta: np.ndarray, batch: int = 16) -> np.ndarray:
    import openvino as ov

    compiled = ov.Core().compile_model(str(path), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    output = compiled.output("probability")
    parts = [
        compiled({"image": image[i : i + batch], "meta": meta[i : i + batch]})[output].reshape(-1)
        for i in range(0, len(image), batch)
    ]
    return np.concatenate(parts).astype(np.float32) if parts else np.zeros(0, np.float32)


def _tf_lite(path: Path, image: np.ndarray, meta: np.ndarray) -> np.ndarray:
    import tensorflow as tf

    interpreter = tf.lite.Interpreter(model_path=str(path), num_threads=2)
    runner = interpreter.get_signature_runner()
    inputs, outputs = runner.get_input_details(), runner.get_output_details()

    def fed(x: np.ndarray, detail: dict) -> np.ndarray:
        if detail["dtype"] == np.float32:
            return x
        scale, zero = detail["quantization"]
        info = np.iinfo(detail["dtype"])
        return np.clip(np.round(x / scale) + zero, info.min, info.max).astype(detail["dtype"])

    out = []
    for i in range(len(image)):
        result = runner(image=fed(image[i : i + 1], inputs["image"]), meta=fed(meta[i : i + 1], inputs["meta"]))
        value, detail = result["probability"], outputs["probability"]
        if detail["dtype"] != np.float32:
            scale, zero = detail["quantization"]
            value = (value.astype(np.float32) - zero) * scale
        out.append(np.asarray(value, np.float32).reshape(-1))
    return np.concatenate(out) if out else np.zeros(0, np.float32)
