"""The export formats as data: one table drives `export.all`, `--help`, option validation, runner lookup,
the benchmark's deployment targets and the README's formats table (`python -m export.all --formats-table`).

Everything that is particular to a format lives in this table or in the format's own module (its exporter,
`read_spec`, `check`, runner and, where a suffix is shared, an ownership test); nothing else names a format.
"""

from __future__ import annotations

import importlib
import platform
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from core.errors import UserError

OS_NAMES = {"Darwin": "macOS", "Linux": "Linux", "Windows": "Windows"}


@dataclass(frozen=True)
class Artifact:
    """One file a format produces."""

    suffix: str  # e.g. ".onnx"; the artifact is <model><suffix>
    exporter: str  # function name in the format's module
    description: str
    deploy: tuple[str, ...] = ()  # deployment targets the benchmark recommends this artifact for


@dataclass(frozen=True)
class Format:
    """One export format: what it makes, how it is run and checked, where it runs."""

    key: str
    title: str
    module: str
    runner: str
    artifacts: tuple[Artifact, ...]
    precisions: tuple[str, ...]
    spec_location: str
    runtime: str
    targets: str
    quantization: str = ""  # how each reduced precision is made; for a format without one, why not
    int16_activations: bool = False  # whether the "16x8" remedy exists for this format
    predicts_on: tuple[str, ...] = ()  # platform.system() values where its runtime predicts; () = everywhere
    owner_check: str = ""  # a function in the module that tells its files from others with the same suffix

    def load_module(self) -> ModuleType:
        """Import the format's module (heavy converters are imported only when used)."""
        return importlib.import_module(self.module)

    def exporter(self, artifact: Artifact) -> Callable:
        return getattr(self.load_module(), artifact.exporter)

    def runner_class(self) -> type:
        return getattr(self.load_module(), self.runner)

    def label(self, artifact: Artifact) -> str:
        """The row label: the key, or `key.suffix` when the format makes several artifacts."""
        return self.key if len(self.artifacts) == 1 else f"{self.key}{artifact.suffix}"

    def predicts_here(self) -> bool:
        """Whether this machine's OS can run the format's artifacts."""
        return not self.predicts_on or platform.system() in self.predicts_on

    @property
    def not_run(self) -> str:
        """The status reason of an artifact that was converted and checked but cannot predict here."""
        return f"converted, not run (needs {' or '.join(OS_NAMES.get(o, o) for o in self.predicts_on)})"

    def owns(self, path: Path) -> bool:
        """Whether `path` is one of this format's artifacts."""
        if not any(a.suffix == path.suffix for a in self.artifacts):
            return False
        return not self.owner_check or getattr(self.load_module(), self.owner_check)(path)


FORMATS: tuple[Format, ...] = (
    Format(
        key="onnx",
        title="ONNX",
        module="export.onnx_format",
        runner="OnnxRunner",
        artifacts=(
            Artifact(
                ".onnx",
                "export",
                "opset 17, dynamic batch, simplified with onnxslim",
                deploy=("anywhere (ONNX Runtime)",),
            ),
        ),
        precisions=("fp32", "fp16", "int8-dynamic", "int8"),
        spec_location="metadata_props[melanoma_spec]",
        runtime="ONNX Runtime",
        targets="anywhere (Android, iOS, desktop, server)",
        quantization="fp16: float16 conversion (float I/O); int8-dynamic: quantize_dynamic; "
        "int8: static QDQ (default-domain Q/DQ only), per-channel 8-bit weights (7-bit on x86 without VNNI), "
        "calibrated",
        int16_activations=False,  # OpenVINO misreads 16-bit QDQ (export.onnx_format)
    ),
    Format(
        key="torchscript",
        title="TorchScript",
        module="export.torchscript_format",
        runner="TorchScriptRunner",
        artifacts=(
            Artifact(".pt", "export", "traced TorchScript"),
            Artifact(
                ".ptl",
                "export_lite",
                "lite interpreter for PyTorch Android (frozen; optimize_for_mobile where torch has XNNPACK)",
                deploy=("Android",),
            ),
        ),
        precisions=("fp32",),
        spec_location="extra file melanoma_spec.json",
        runtime="torch.jit / lite interpreter",
        targets="PyTorch Android, LibTorch",
        quantization="none: no maintained path (torch.ao eager quantization is deprecated); use ExecuTorch int8",
        owner_check="owns",  # a training checkpoint is a .pt too
    ),
    Format(
        key="coreml",
        title="Core ML",
        module="export.coreml_format",
        runner="CoreMLRunner",
        artifacts=(Artifact(".mlpackage", "export", "ML program, iOS 16+, batch 1", deploy=("iOS",)),),
        precisions=("fp32", "fp16", "int8-weights", "palettized"),
        spec_location="user_defined_metadata[melanoma_spec]",
        runtime="Core ML (macOS / iOS only)",
        targets="iOS, macOS",
        quantization="fp16 compute; int8-weights: linear_quantize_weights; palettized: 6-bit k-means",
        predicts_on=("Darwin",),
    ),
    Format(
        key="tflite",
        title="TFLite (LiteRT)",
        module="export.tflite_format",
        runner="TFLiteRunner",
        artifacts=(
            Artifact(
                ".tflite",
                "export",
                "litert-torch, image NHWC, batch 1, signature inputs image/meta",
                deploy=("Android",),
            ),
        ),
        precisions=("fp32", "fp16", "int8-dynamic", "int8"),
        spec_location="TFLite Metadata entry melanoma_spec (and in the standard TFLITE_METADATA)",
        runtime="LiteRT interpreter (ai-edge-litert)",
        targets="Android, iOS, embedded",
        quantization="ai-edge-quantizer: fp16 weights; int8-dynamic range; "
        "int8 static, calibrated on the global min / max (float I/O)",
        int16_activations=True,
    ),
    Format(
        key="executorch",
        title="ExecuTorch",
        module="export.executorch_format",
        runner="ExecuTorchRunner",
        artifacts=(Artifact(".pte", "export", "XNNPACK delegate, batch 1", deploy=("Android",)),),
        precisions=("fp32", "int8"),
        spec_location="constant method melanoma_spec + sidecar",
        runtime="ExecuTorch runtime",
        targets="Android, iOS, embedded",
        quantization="int8: PT2E XNNPACKQuantizer (+ conv-ReLU6 fusion), per-channel, calibrated (float I/O)",
    ),
)
BY_KEY = {f.key: f for f in FORMATS}
ALIASES = {
    "ts": "torchscript",
    "tf": "tflite",
    "litert": "tflite",
    "et": "executorch",
    "pte": "executorch",
    "mlpackage": "coreml",
}


def parse_formats(text: str) -> list[Format]:
    """`onnx,tflite` -> formats; UserError naming the valid choices for an unknown one."""
    chosen: list[Format] = []
    for raw in (t.strip().lower() for t in text.split(",")):
        if not raw:
            continue
        key = ALIASES.get(raw, raw)
        if key == "all":
            return list(FORMATS)
        if key not in BY_KEY:
            raise UserError(f'unknown format "{raw}": choose from {", ".join(BY_KEY)} (comma-separated) or all')
        if BY_KEY[key] not in chosen:
            chosen.append(BY_KEY[key])
    if not chosen:
        raise UserError(f"--formats is empty: choose from {', '.join(BY_KEY)}")
    return chosen


def artifact_name(model: str, artifact: Artifact, precision: str) -> str:
    """`<model><suffix>` for fp32, `<model>.<precision><suffix>` otherwise."""
    return f"{model}{artifact.suffix}" if precision == "fp32" else f"{model}.{precision}{artifact.suffix}"


def identify(path: Path) -> Format | None:
    """The format whose artifact `path` is; None when no format claims it."""
    return next((fmt for fmt in FORMATS if fmt.owns(path)), None)


def suffixes() -> list[str]:
    """Every artifact suffix, for messages."""
    return sorted({a.suffix for f in FORMATS for a in f.artifacts})


def deploy_targets() -> dict[str, tuple[str, ...]]:
    """Deployment target -> the row labels of the artifacts recommended for it (the benchmark's picks)."""
    targets: dict[str, tuple[str, ...]] = {}
    for fmt in FORMATS:
        for artifact in fmt.artifacts:
            for target in artifact.deploy:
                targets[target] = (*targets.get(target, ()), fmt.label(artifact))
    order = ("Android", "iOS")
    return dict(sorted(targets.items(), key=lambda kv: (order.index(kv[0]) if kv[0] in order else len(order), kv[0])))


def markdown_table() -> str:
    """The README's formats table, generated from FORMATS."""
    lines = [
        "| format | `--formats` key | artifact(s) | precisions | how each precision is made | spec embedded as "
        "| runs with | targets | runs on this Linux CI |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for f in FORMATS:
        artifacts = "<br>".join(f"`{a.suffix}`: {a.description}" for a in f.artifacts)
        where = " or ".join(OS_NAMES.get(o, o) for o in f.predicts_on)
        here = "yes" if not f.predicts_on or "Linux" in f.predicts_on else f"converted and checked; predicts on {where}"
        lines.append(
            f"| {f.title} | `{f.key}` | {artifacts} | {', '.join(f.precisions)} | {f.quantization or '-'} "
            f"| {f.spec_location} | {f.runtime} "
            f"| {f.targets} | {here} |"
        )
    return "\n".join(lines)
