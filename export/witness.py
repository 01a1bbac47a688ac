"""A second, independent runtime of a format, as a witness: does the artifact mean the same thing to a runtime
that did not make it and is not the one it was judged with?

    probability = predict(Path("dist/x/x.int8.onnx"), image, meta)   # [N], by OpenVINO for a .onnx

- `.onnx`: OpenVINO (its ONNX front end), where ONNX Runtime made and judged the artifact;
- `.tflite`: TensorFlow's own `tf.lite.Interpreter`, where LiteRT (ai-edge-litert) judged it. TensorFlow runs
  in an environment of its own (`make witness`, or the Python named by MELANOMA_TF_PYTHON), through
  export/tflite_witness.py: loaded before torch's triton in one process it crashes it;
- `.pte`: none exists (ExecuTorch is the only runtime of its programs), said so in the row.
Each is optional: without it the row says what to install, and nothing else changes.
"""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
TF_ENV = "MELANOMA_TF_PYTHON"  # a Python with tensorflow-cpu (default: .venv-witness/bin/python, by make witness)


class Unavailable(Exception):
    """No second runtime of this format here: the message says why (and what to install)."""


def _tf_python() -> Path:
    chosen = os.environ.get(TF_ENV)
    path = Path(chosen) if chosen else ROOT / ".venv-witness" / "bin" / "python"
    if not path.is_file():
        where = f"{TF_ENV}={chosen} does not exist" if chosen else "there is no .venv-witness"
        raise Unavailable(
            f"TensorFlow's tf.lite runs in its own environment and {where} (make witness creates it), so no second "
            "runtime ran"
        )
    return path


def runtime_for(path: Path) -> str:
    """The name (and version, where cheap to know) of the second runtime of `path`'s format; Unavailable when
    there is none here."""
    if path.suffix == ".onnx":
        try:
            return f"openvino {importlib.metadata.version('openvino')}"
        except importlib.metadata.PackageNotFoundError:
            raise Unavailable("openvino is not installed (pip install openvino), so no second runtime ran") from None
    if path.suffix == ".tflite":
        _tf_python()
        return "tensorflow tf.lite"
    raise Unavailable(f"no second runtime of {path.suffix} exists (its own runtime is the only one)")


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
    with tempfile.TemporaryDirectory() as tmp:
        inputs, output = Path(tmp) / "inputs.npz", Path(tmp) / "probability.npy"
        np.savez(inputs, image=image, meta=meta)
        script = Path(__file__).with_name("tflite_witness.py")
        command = [str(_tf_python()), str(script), str(path), str(inputs), str(output)]
        done = subprocess.run(command, capture_output=True, text=True, timeout=1800, check=False)
        if done.returncode != 0:
            lines = (done.stderr or done.stdout).strip().splitlines()
            raise RuntimeError(lines[-1] if lines else f"exit status {done.returncode}")
        return np.load(output)
