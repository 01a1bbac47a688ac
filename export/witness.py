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

import atexit
import contextlib
import importlib.metadata
import json
import os
import queue
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
TF_ENV = "MELANOMA_TF_PYTHON"  # a Python with tensorflow-cpu (default: .venv-witness/bin/python, by make witness)
TF_TIMEOUT_S = 1800  # the longest one artifact's judge cases may take in tf.lite
REPLY = "tflite-witness-reply: "  # export/tflite_witness.py's mark on its answer lines (it imports no project code)


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
    if path.suffix == ".onnx":
        return _openvino(path, _laid_out(image, nhwc), meta)
    return _TF_LITE.predict(path, image, meta, nhwc)


def prepare(suffixes: set[str]) -> None:
    """Start the second runtimes an export will need before its first artifact is made, where that costs a
    start-up: the tf.lite process imports TensorFlow (about 4 s of CPU) while the first conversions run.
    Nothing happens where there is no such runtime here (each row then says why)."""
    if ".tflite" in suffixes:
        with contextlib.suppress(Unavailable):
            _TF_LITE.start()


def close() -> None:
    """Stop the tf.lite process, if one runs (an export calls this when it ends; the next witness starts one)."""
    _TF_LITE.close()


def _laid_out(image: np.ndarray, nhwc: bool) -> np.ndarray:
    return np.ascontiguousarray(image.transpose(0, 2, 3, 1)) if nhwc else image


def _openvino(path: Path, image: np.ndarray, meta: np.ndarray, batch: int = 16) -> np.ndarray:
    import openvino as ov

    compiled = ov.Core().compile_model(str(path), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    output = compiled.output("probability")
    parts = [
        compiled({"image": image[i : i + batch], "meta": meta[i : i + batch]})[output].reshape(-1)
        for i in range(0, len(image), batch)
    ]
    return np.concatenate(parts).astype(np.float32) if parts else np.zeros(0, np.float32)


class _TfLiteProcess:
    """One tf.lite process (export/tflite_witness.py --serve) for every .tflite an export witnesses, started
    at the first: TensorFlow is imported once, and the judge cases written and read once (the 224 px B0's
    three artifacts: about 4 s of import and 1 s of inputs each, before). A process that died is replaced at
    the next request; its error names the last thing it printed."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._process: subprocess.Popen[str] | None = None
        self._replies: queue.Queue[str | None] = queue.Queue()
        self._folder: tempfile.TemporaryDirectory[str] | None = None
        self._inputs: tuple[np.ndarray, np.ndarray, bool, Path] | None = None  # the arrays written, and where
        self._count = 0

    def predict(self, path: Path, image: np.ndarray, meta: np.ndarray, nhwc: bool) -> np.ndarray:
        with self._lock:
            self._start()
            assert self._process is not None and self._folder is not None and self._process.stdin is not None
            folder = Path(self._folder.name)
            held = self._inputs
            if held is None or held[0] is not image or held[1] is not meta or held[2] != nhwc:
                self._count += 1
                inputs = folder / f"inputs{self._count}.npz"
                np.savez(inputs, image=_laid_out(image, nhwc), meta=meta)
                if held is not None:
                    held[3].unlink(missing_ok=True)
                self._inputs = held = (image, meta, nhwc, inputs)  # the arrays kept: their ids stay theirs
            output = folder / "probability.npy"
            output.unlink(missing_ok=True)
            request = {"model": str(path), "inputs": str(held[3]), "output": str(output)}
            hung = False
            try:
                self._process.stdin.write(json.dumps(request) + "\n")
                self._process.stdin.flush()
                line = self._replies.get(timeout=TF_TIMEOUT_S)
            except queue.Empty:
                hung, line = True, None
            except OSError:  # it had died before the request
                line = None
            if line is None:  # it died or hung: the next request starts another
                reason = self._last_words(hung)
                self._stop()
                raise RuntimeError(reason)
            reply = json.loads(line)
            if not reply["ok"]:
                raise RuntimeError(reply["error"])
            return np.load(output)

    def start(self) -> None:
        """Start the process now (it imports TensorFlow while the caller goes on); Unavailable if there is none."""
        with self._lock:
            self._start()

    def _start(self) -> None:
        if self._process is not None and self._process.poll() is None:
            return
        self._stop()
        self._folder = tempfile.TemporaryDirectory(prefix="tflite-witness-")
        log = open(Path(self._folder.name) / "stderr.log", "w")  # noqa: SIM115 - the process writes it
        script = Path(__file__).with_name("tflite_witness.py")
        self._process = subprocess.Popen(
            [str(_tf_python()), str(script), "--serve"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            bufsize=1,
        )
        log.close()
        self._replies = replies = queue.Queue()
        stdout = self._process.stdout
        threading.Thread(target=_read_replies, args=(stdout, replies), daemon=True, name="tflite-replies").start()

    def _last_words(self, hung: bool) -> str:
        """Why no answer came: the time it was given, or the last line the process wrote before it ended."""
        assert self._process is not None and self._folder is not None
        if hung:
            self._process.kill()
            return f"tf.lite gave no answer in {TF_TIMEOUT_S} s"
        try:
            code = self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            code = None
        log = Path(self._folder.name) / "stderr.log"
        lines = log.read_text(errors="replace").strip().splitlines() if log.is_file() else []
        return lines[-1] if lines else f"the tf.lite process ended (exit status {code})"

    def _stop(self) -> None:
        process, self._process, self._inputs = self._process, None, None
        if process is not None:
            if process.stdin is not None:
                with contextlib.suppress(OSError):
                    process.stdin.close()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._folder is not None:
            self._folder.cleanup()
            self._folder = None

    def close(self) -> None:
        if not self._lock.acquire(blocking=False):  # a request still running (an export stopped early)
            process = self._process
            if process is not None:
                process.kill()  # that request fails, and stops what is left of the process itself
            return
        try:
            self._stop()
        finally:
            self._lock.release()


def _read_replies(stdout: Any, replies: queue.Queue[str | None]) -> None:
    """The process's answer lines, into `replies`; None when its output ends."""
    for line in stdout:
        if line.startswith(REPLY):
            replies.put(line[len(REPLY) :])
    replies.put(None)


_TF_LITE = _TfLiteProcess()
atexit.register(_TF_LITE.close)
