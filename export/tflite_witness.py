"""Run a .tflite with TensorFlow's own tf.lite interpreter: the second TFLite runtime of export.witness.

Standalone on purpose (numpy and tensorflow only): it runs in its own environment (`make witness`), because
TensorFlow loaded before torch's triton in one process crashes it (coremltools imports TensorFlow whenever
it is installed, so it must not be installed beside torch).

    python export/tflite_witness.py MODEL.tflite INPUTS.npz OUTPUT.npy
    python export/tflite_witness.py --serve        # what export.witness runs: one process for an export

INPUTS.npz holds `image` (float32 NHWC) and `meta` (float32 [N, K]); OUTPUT.npy gets the probabilities [N].
Serving, each line on stdin is a JSON request {"model", "inputs", "output"} and each answer a line on stdout
after REPLY: {"ok": true, "runtime": "tensorflow X"} or {"ok": false, "error": "..."}. TensorFlow is imported
once and an inputs file read once, however many artifacts an export has.
"""

from __future__ import annotations

import json
import sys

import numpy as np

REPLY = "tflite-witness-reply: "  # marks the answer lines (anything else on stdout is TensorFlow's own)


def _fed(x: np.ndarray, detail: dict) -> np.ndarray:
    if detail["dtype"] == np.float32:
        return x
    scale, zero = detail["quantization"]
    info = np.iinfo(detail["dtype"])
    return np.clip(np.round(x / scale) + zero, info.min, info.max).astype(detail["dtype"])


def probabilities(tf, model: str, image: np.ndarray, meta: np.ndarray) -> np.ndarray:
    """The model's probabilities [N], one case per call (the batch-1 phone artifact)."""
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
    return np.concatenate(out) if out else np.zeros(0, np.float32)


def main(model: str, inputs: str, output: str) -> None:
    import tensorflow as tf

    data = np.load(inputs)
    np.save(output, probabilities(tf, model, data["image"], data["meta"]))
    print(f"tensorflow {tf.__version__}")


def serve() -> None:
    """Answer requests from stdin until it closes."""
    import tensorflow as tf

    read: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # the last inputs file: its arrays
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            request = json.loads(line)
            if request["inputs"] not in read:
                data = np.load(request["inputs"])
                read = {request["inputs"]: (data["image"], data["meta"])}
            image, meta = read[request["inputs"]]
            np.save(request["output"], probabilities(tf, request["model"], image, meta))
            reply = {"ok": True, "runtime": f"tensorflow {tf.__version__}"}
        except Exception as exc:  # noqa: BLE001 - the client reports it; the next request still runs
            first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
            reply = {"ok": False, "error": f"{exc.__class__.__name__}: {first}"}
        sys.stdout.write(REPLY + json.dumps(reply) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    if sys.argv[1:] == ["--serve"]:
        serve()
    else:
        main(*sys.argv[1:4])
