"""Run a .tflite with TensorFlow's own tf.lite interpreter: the second TFLite runtime of export.witness.

Standalone on purpose (numpy and tensorflow only): it runs in its own environment (`make witness`), because
TensorFlow loaded before torch's triton in one process crashes it (coremltools imports TensorFlow whenever
it is installed, so it must not be installed beside torch).

    python export/tflite_witness.py MODEL.tflite INPUTS.npz OUTPUT.npy
INPUTS.npz holds `image` (float32 NHWC) and `meta` (float32 [N, K]); OUTPUT.npy gets the probabilities [N].
"""

from __future__ import annotations

import sys

import numpy as np


def _fed(x: np.ndarray, detail: dict) -> np.ndarray:
    if detail["dtype"] == np.float32:
        return x
    scale, zero = detail["quantization"]
    info = np.iinfo(detail["dtype"])
    return np.clip(np.round(x / scale) + zero, info.min, info.max).astype(detail["dtype"])


def main(model: str, inputs: str, output: str) -> None:
    import tensorflow as tf

    data = np.load(inputs)
    image, meta = data["image"], data["meta"]
    runner = tf.lite.Interpreter(model_path=model, num_threads=2).get_signature_runner()
    feeds, ends = runner.get_input_details(), runner.get_output_details()
    out = []
    for i in range(len(image)):
        result = runner(image=_fed(image[i : i + 1], feeds["image"]), meta=_fed(meta[i : i + 1], feeds["meta"]))
        value, detail = result["probability"], ends["probability"]
        if detail["dtype"] != np.float32:
            scale, zero = detail["quantization"]
            value = (value.astype(np.float32) - zero) * scale
        out.append(np.asarray(value, np.float32).reshape(-1))
    np.save(output, np.concatenate(out) if out else np.zeros(0, np.float32))
    print(f"tensorflow {tf.__version__}")


if __name__ == "__main__":
    main(*sys.argv[1:4])
