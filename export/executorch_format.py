"""ExecuTorch: a `.pte` program lowered to the XNNPACK delegate. The spec is embedded as the constant
method `melanoma_spec` (a string the runtime returns) and also written beside it as the sidecar."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from core.errors import UserError
from core.io import atomic_path
from core.metrics import calibrated_probability
from core.spec import ModelSpec
from export.common import (
    AFTER_MODEL_FLOAT,
    INPUT_NAMES,
    OUTPUT_NAMES,
    SPEC_KEY,
    ExportModel,
    Runner,
    calibrated_on,
    parse_embedded,
    with_precision,
)
from export.precision import QuantOptions

CALIBRATION_BATCH = 8  # images per calibration step of the int8 graph


def export(
    model: torch.nn.Module,
    spec: ModelSpec,
    example: tuple,
    out_path: Path,
    precision: str = "fp32",
    options: QuantOptions | None = None,
) -> Path:
    """torch.export (batch 1) -> [PT2E int8] -> edge -> XNNPACK partition -> ExecuTorch program."""
    options = options or QuantOptions()
    if precision == "int8" and options.simulated is not None:
        # The search's own graph, already calibrated on the same images: the artifact is the simulation the
        # decision judged, lowered (measured on the 224 px Lite0: the same logits as calibrating anew, 14 s less).
        # Where XNNPACK's lowering refuses that graph, the model is prepared and calibrated anew (the spec's
        # method says which was done).
        try:
            et_program = _lowered(model, spec, example, "int8", options, from_simulation=True)
        except Exception:  # noqa: BLE001 - any refusal of the cut graph leaves the usual path
            et_program = _lowered(model, spec, example, "int8", options, from_simulation=False)
    else:
        et_program = _lowered(model, spec, example, precision, options, from_simulation=False)
    with atomic_path(out_path) as tmp:
        tmp.write_bytes(et_program.buffer)
    return out_path


def _lowered(
    model: torch.nn.Module,
    spec: ModelSpec,
    example: tuple,
    precision: str,
    options: QuantOptions,
    from_simulation: bool,
):
    """The ExecuTorch program (XNNPACK-delegated) of `model` at `precision`, int8 from the search's simulation
    (`options.simulated`) or prepared and calibrated here."""
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    from export.pt2e import pt2e_int8

    wrapper = ExportModel(model, spec.outputs.temperature).eval()
    args = tuple(t[:1] for t in example)
    with torch.no_grad():
        if precision == "int8" and from_simulation:
            quantized = Tempered(folded(options.simulated()), spec.outputs.temperature)
            program = splits_as_slices(torch.export.export(quantized, args, strict=False))
            source = "the int8 search's simulation graph, "
        elif precision == "int8":
            # Calibrated CALIBRATION_BATCH images at a time through a dynamic-batch graph, as the simulation is
            # (a histogram observer's range depends on how the images are grouped), then exported at batch 1.
            pairs = tuple(torch.cat([t[:1], t[:1]]) for t in example)  # batch 2 traces the batch as dynamic
            batch = torch.export.Dim("batch", min=1, max=4096)
            dynamic = torch.export.export(wrapper, pairs, dynamic_shapes=({0: batch}, {0: batch}), strict=False)
            quantized = pt2e_int8(splits_as_slices(dynamic).module(), options, batch=CALIBRATION_BATCH)
            program = torch.export.export(quantized, args, strict=False)
            source = ""
        elif precision == "fp32":
            program = splits_as_slices(torch.export.export(wrapper, args, strict=False))
        else:
            raise ValueError(f"ExecuTorch has no {precision} path here")
        if precision == "int8":
            method = (
                f"PT2E XNNPACKQuantizer (conv + ReLU6 fused): {source}per-channel symmetric int8 weights, int8 "
                f"activations, {calibrated_on(options.calibration)}; {AFTER_MODEL_FLOAT}"
            )
            spec = with_precision(spec, "int8", method, options)
    lowered = to_edge_transform_and_lower(
        program, partitioner=[XnnpackPartitioner()], constant_methods={SPEC_KEY: spec.to_json()}
    )
    return lowered.to_executorch()


class Tempered(torch.nn.Module):
    """A graph returning (logit, probability at temperature 1), as export.sensitivity's simulation does, with
    the probability recomputed at `temperature` (what ExportModel gives the other artifacts)."""

    def __init__(self, graph: torch.nn.Module, temperature: float):
        super().__init__()
        # Not named `graph`: an exported program's module has a `graph` of its own, which its node targets
        # would then name (to_edge refused "graph.model...weight").
        self.simulated, self.temperature = graph, float(temperature)

    def forward(self, image: torch.Tensor, meta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logit, _ = self.simulated(image, meta)
        return logit, calibrated_probability(logit, self.temperature)


def folded(graph: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """A PT2E graph converted with its pairs unfolded, with each weight's quantize step evaluated once (as
    convert_pt2e's fold_quantize does): the int8 weights XNNPACK's partitioner takes. Changes `graph`."""
    from torchao.quantization.pt2e.constant_fold import constant_fold
    from torchao.quantization.pt2e.quantize_pt2e import _quant_node_constraint

    constant_fold(graph, _quant_node_constraint)
    return graph


def splits_as_slices(program: torch.export.ExportedProgram) -> torch.export.ExportedProgram:
    """The same program with every tensor split (ShuffleNet's `chunk`) written as slices.

    XNNPACK delegates slices but not `split_with_sizes`: a ShuffleNet V2 lowered as exported falls into 15
    delegate partitions with the 13 splits run by portable kernels between them (and, in int8, quantize /
    dequantize steps around each); as slices it is one partition plus the final mean. The values are
    identical (slicing copies).
    """
    aten = torch.ops.aten

    def as_slices(x: torch.Tensor, sizes: list[int], dim: int = 0) -> list[torch.Tensor]:
        starts = np.cumsum([0, *sizes[:-1]])
        return [aten.slice.Tensor(x, dim, int(a), int(a) + size) for a, size in zip(starts, sizes, strict=True)]

    def split(x: torch.Tensor, size: int, dim: int = 0) -> list[torch.Tensor]:
        n = x.shape[dim]
        return as_slices(x, [min(size, n - a) for a in range(0, n, size)], dim)

    splits = {aten.split_with_sizes.default, aten.split.Tensor, aten.chunk.default}  # chunk decomposes to split
    if not any(node.target in splits for node in program.graph.nodes):
        return program
    return program.run_decompositions({aten.split_with_sizes.default: as_slices, aten.split.Tensor: split})


def _program(path: Path):
    from executorch.runtime import Runtime, Verification

    try:
        return Runtime.get().load_program(str(path), verification=Verification.InternalConsistency)
    except Exception as exc:  # noqa: BLE001 - the runtime raises RuntimeError/ValueError on damage
        raise UserError(f"the ExecuTorch runtime cannot load {path} ({exc.__class__.__name__}): re-export it") from None


def read_spec(path: Path) -> ModelSpec:
    """The spec returned by the program's `melanoma_spec` constant method."""
    program = _program(path)
    if SPEC_KEY not in program.method_names:
        return parse_embedded(None, path)
    value = program.load_method(SPEC_KEY).execute([])
    return parse_embedded(value[0] if isinstance(value, list | tuple) else value, path)


def check(path: Path) -> None:
    """The runtime's strictest load: the program verified for internal consistency, `forward` planned."""
    _program(path).load_method("forward")


class ExecuTorchRunner(Runner):
    """The ExecuTorch runtime's `forward` method (XNNPACK delegate)."""

    format = "executorch"
    static_batch = 1

    def __init__(self, path: Path, spec: ModelSpec, threads: int | None = None):
        super().__init__(path, spec)
        program = _program(path)
        self.meta = program.metadata("forward")
        self.method = program.load_method("forward")

    def io_shapes(self) -> dict[str, list[int | None]]:
        # A .pte's forward takes (image, meta) and returns (logit, probability), positionally.
        shapes = {}
        for names, count, meta in (
            (INPUT_NAMES, self.meta.num_inputs(), self.meta.input_tensor_meta),
            (OUTPUT_NAMES, self.meta.num_outputs(), self.meta.output_tensor_meta),
        ):
            for i, name in enumerate(names[:count]):
                shapes[name] = list(meta(i).sizes())
        return shapes

    def _run(self, image: np.ndarray, meta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        logit, prob = self.method.execute([torch.from_numpy(image), torch.from_numpy(meta)])
        return logit.numpy(), prob.numpy()


def int8_tensors(path: Path) -> tuple[int, int]:
    """(per-channel int8 weight tensors, int8 activation tensors) in the XNNPACK graphs a .pte delegates,
    read from the file itself with the flatc that executorch ships (so an "int8" artifact whose quantizer
    scope matched nothing cannot pass for one)."""
    import json
    import re
    import subprocess
    import tempfile

    import executorch
    from executorch.backends.xnnpack.serialization.xnnpack_graph_serialize import XNNHeader
    from executorch.exir._serialize._program import deserialize_pte_binary

    base = Path(next(iter(executorch.__path__)))
    schema, flatc = base / "backends/xnnpack/serialization/schema.fbs", base / "data/bin/flatc"
    weights = activations = 0
    for blob in deserialize_pte_binary(path.read_bytes()).program.backend_delegate_data:
        header = XNNHeader.from_bytes(blob.data[: XNNHeader.EXPECTED_LENGTH])
        graph = blob.data[header.flatbuffer_offset : header.flatbuffer_offset + header.flatbuffer_size]
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / "graph.bin").write_bytes(graph)
            command = [str(flatc), "--json", "--strict-json", "--raw-binary", "-o", tmp, str(schema), "--"]
            subprocess.run([*command, str(Path(tmp) / "graph.bin")], check=True, capture_output=True)
            text = (Path(tmp) / "graph.json").read_text(encoding="utf-8")
        # flatc writes infinite clamp bounds as bare inf / nan, which JSON has no word for.
        values = json.loads(re.sub(r"(?<=[:\[,\s])-?(inf|nan)(?=[,\s\]}])", "null", text)).get("xvalues", [])
        for value in values:
            datatype = json.dumps(value.get("xvalue_union", {}))
            weights += '"xnn_datatype_qcint8"' in datatype or '"xnn_datatype_qcint4"' in datatype
            activations += '"xnn_datatype_qint8"' in datatype or '"xnn_datatype_qdint8"' in datatype
    return weights, activations
