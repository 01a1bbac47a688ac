"""The standard TFLite model metadata (`TFLITE_METADATA`, schema `M001`) of every exported .tflite.

Readers of the ecosystem (Netron, the LiteRT Support Library's MetadataExtractor, Android Studio's model
viewer and ML binding, MediaPipe's MetadataDisplayer) look for this entry, not for our own `melanoma_spec`.
It is written with MediaPipe's maintained metadata writer (`mediapipe.tasks.python.metadata`: its
metadata_info builders and MetadataPopulator) and holds:

- the model: name, description (the intended use), version, author, license;
- `image`: ImageProperties (RGB) with NormalizationOptions mean 0 / std 255, the standard way of saying "feed
  RGB pixel values divided by 255" (mean / std of the training data are inside the graph), and stats [0, 1];
- `meta`: FeatureProperties, dimension names [batch, feature] and a description listing every feature's
  index, name and encoding;
- `logit` and `probability`: FeatureProperties with their meaning, the decision threshold and its rule;
- the whole spec as the subgraph's custom metadata `melanoma_spec` (schema 1.5), next to the model-level
  `melanoma_spec` entry our own readers use.

Tensor metadata are paired with the subgraph's tensors through the `serving_default` signature, so the
order is the model's whichever order the converter chose; the SignatureDefs themselves are kept (an old
populator dropped them: tensorflow issue 62620; a test runs the signature after writing).

MediaPipe 1.2.3's wheel ships the writer without its one C++ helper, `_pywrap_metadata_version`, which
only computes the minimum parser version stamped into the metadata. `minimum_parser_version` computes it
from the schema's history instead and is installed under that module's name when the real one is absent.
"""

from __future__ import annotations

import json
import sys
import types
from typing import Any

from core.spec import ModelSpec
from export.common import SPEC_KEY

METADATA_NAME = "TFLITE_METADATA"
SIGNATURE = "serving_default"
_MISSING_HELPER = "mediapipe.tasks.cc.metadata.python._pywrap_metadata_version"


def minimum_parser_version(metadata_buffer: bytes) -> str:
    """The oldest metadata parser that reads every field set in `metadata_buffer`, after the schema's history
    (metadata_schema.fbs 1.5.0): 1.0.1 VOCABULARY files, 1.1.0 tokenizers and subgraph process units, 1.2.0
    tensor groups, 1.2.1 regex tokenizer, 1.3.0 audio, 1.4.0 ScaNN index files, 1.4.1 file versions, 1.5.0
    custom metadata."""
    from mediapipe.tasks.metadata import metadata_schema_py_generated as fb

    model = fb.ModelMetadataT.InitFromObj(fb.ModelMetadata.GetRootAsModelMetadata(bytes(metadata_buffer), 0))
    found = [(1, 0, 0)]

    def files(entries: list | None) -> None:
        for entry in entries or []:
            if entry.type == fb.AssociatedFileType.VOCABULARY:
                found.append((1, 0, 1))
            if entry.type == fb.AssociatedFileType.SCANN_INDEX_FILE:
                found.append((1, 4, 0))
            if entry.version:
                found.append((1, 4, 1))

    def units(entries: list | None) -> None:
        for unit in entries or []:
            kind, options = unit.optionsType, fb.ProcessUnitOptions
            if kind in (options.BertTokenizerOptions, options.SentencePieceTokenizerOptions):
                found.append((1, 1, 0))
            if kind == options.RegexTokenizerOptions:
                found.append((1, 2, 1))
            for name in ("vocabFile", "sentencePieceModel"):
                files(getattr(unit.options, name, None))

    def tensors(entries: list | None) -> None:
        for tensor in entries or []:
            files(tensor.associatedFiles)
            units(tensor.processUnits)
            if tensor.content and tensor.content.contentPropertiesType == fb.ContentProperties.AudioProperties:
                found.append((1, 3, 0))

    files(model.associatedFiles)
    for graph in model.subgraphMetadata or []:
        files(graph.associatedFiles)
        tensors(graph.inputTensorMetadata)
        tensors(graph.outputTensorMetadata)
        if graph.inputProcessUnits or graph.outputProcessUnits:
            found.append((1, 1, 0))
            units(graph.inputProcessUnits)
            units(graph.outputProcessUnits)
        if graph.inputTensorGroups or graph.outputTensorGroups:
            found.append((1, 2, 0))
        if graph.customMetadata:
            found.append((1, 5, 0))
    return ".".join(str(part) for part in max(found))


def _writer() -> types.ModuleType:
    """MediaPipe's metadata module, with the parser-version helper supplied when its wheel lacks it."""
    try:
        __import__(_MISSING_HELPER)
    except ImportError:
        helper = types.ModuleType(_MISSING_HELPER)
        helper.GetMinimumMetadataParserVersion = minimum_parser_version  # type: ignore[attr-defined]
        parts = _MISSING_HELPER.split(".")
        for i in range(len(parts) - 1, 2, -1):  # mediapipe.tasks.cc, .metadata, .python: placeholders
            name = ".".join(parts[:i])
            sys.modules.setdefault(name, types.ModuleType(name))
        sys.modules[_MISSING_HELPER] = helper
        sys.modules[".".join(parts[:-1])]._pywrap_metadata_version = helper  # type: ignore[attr-defined]
    from mediapipe.tasks.python.metadata import metadata

    return metadata


def _signature_tensors(flatbuffer: bytes) -> dict[str, str]:
    """Signature name (`image`, `meta`, `logit`, `probability`) -> the subgraph tensor's name."""
    from mediapipe.tasks.metadata import schema_py_generated as schema

    model = schema.Model.GetRootAs(flatbuffer, 0)
    graph = model.Subgraphs(0)
    for i in range(model.SignatureDefsLength()):
        signature = model.SignatureDefs(i)
        if signature.SignatureKey().decode() == SIGNATURE:
            pairs = [signature.Inputs(j) for j in range(signature.InputsLength())]
            pairs += [signature.Outputs(j) for j in range(signature.OutputsLength())]
            return {p.Name().decode(): graph.Tensors(p.TensorIndex()).Name().decode() for p in pairs}
    raise ValueError(f"the converted model has no {SIGNATURE} signature")


def _meta_description(spec: ModelSpec) -> str:
    listed = ", ".join(f"{i} {name}" for i, name in enumerate(spec.metadata.get("entries", [])))
    fields = ", ".join(spec.metadata.get("fields", []))
    return (
        f"Patient metadata: {spec.meta_size} float32 values encoded from the case's fields ({fields or 'none'}) as "
        f"the contract in the custom metadata {SPEC_KEY} says; by index: {listed or 'none'}."
    )


def _about(spec: ModelSpec) -> dict[str, str]:
    """Description, author and license as the metadata states them."""
    provenance = spec.provenance or {}
    use = provenance.get("intended_use") or "Research use only; not a medical device."
    return {
        "description": f"{spec.architecture}: probability of {spec.outputs.positive_label} from a skin-lesion image "
        f"and patient metadata. {use}",
        "author": str(provenance.get("author") or "not stated (give export.all --author)"),
        "license": str(provenance.get("license") or "not stated (give export.all --license)"),
    }


def metadata_buffer(flatbuffer: bytes, spec: ModelSpec) -> bytes:
    """The `M001` metadata flatbuffer for `flatbuffer`, built with MediaPipe's metadata_info."""
    import flatbuffers
    from mediapipe.tasks.metadata import metadata_schema_py_generated as fb
    from mediapipe.tasks.metadata import schema_py_generated as schema
    from mediapipe.tasks.python.metadata.metadata_writers import metadata_info

    metadata = _writer()
    names = _signature_tensors(flatbuffer)
    model = schema.Model.GetRootAs(flatbuffer, 0)
    graph = model.Subgraphs(0)
    by_name = {graph.Tensors(graph.Inputs(i)).Name().decode(): i for i in range(graph.InputsLength())}
    image_type = graph.Tensors(graph.Inputs(by_name[names["image"]])).Type()
    about = _about(spec)
    size = spec.image.size
    image = metadata_info.InputImageTensorMd(
        name="image",
        description=(
            f"Dermoscopic image, {size} x {size} RGB, NHWC, pixel values / 255 (the training mean and std are "
            f"inside the graph); resized by stretching, {spec.image.interpolation} with antialias "
            f"{spec.image.antialias} ({spec.image.resize_library})."
        ),
        norm_mean=[0.0],
        norm_std=[255.0],
        color_space_type=fb.ColorSpaceType.RGB,
        tensor_type=image_type,
    )
    image.tensor_name = names["image"]
    meta = metadata_info.TensorMd(name="meta", description=_meta_description(spec), tensor_name=names["meta"])
    rule = f"threshold {spec.outputs.threshold:.6g} ({spec.outputs.threshold_rule})"
    logit = metadata_info.TensorMd(
        name="logit",
        description=f"Raw score for {spec.outputs.positive_label}; probability = {spec.outputs.probability} with "
        f"temperature {spec.outputs.temperature:g}.",
        tensor_name=names["logit"],
    )
    probability = metadata_info.TensorMd(
        name="probability",
        description=f"Probability of {spec.outputs.positive_label} (labels {list(spec.outputs.labels)}); "
        f"positive when probability >= {rule}.",
        min_values=[0.0],
        max_values=[1.0],
        tensor_name=names["probability"],
    )
    inputs = {names["image"]: image.create_metadata(), names["meta"]: meta.create_metadata()}
    inputs[names["meta"]].dimensionNames = ["batch", "feature"]
    inputs[names["image"]].dimensionNames = ["batch", "height", "width", "channel"]
    outputs = {names["logit"]: logit.create_metadata(), names["probability"]: probability.create_metadata()}
    for tensor in outputs.values():
        tensor.dimensionNames = ["batch", "score"]

    def ordered(tensors: dict[str, Any], count: int, at: Any) -> list:
        order = [graph.Tensors(at(i)).Name().decode() for i in range(count)]
        if sorted(order) != sorted(tensors):
            raise ValueError(f"the model's tensors {order} are not the signature's {sorted(tensors)}")
        return [tensors[name] for name in order]

    subgraph = fb.SubGraphMetadataT()
    subgraph.name = SIGNATURE
    subgraph.inputTensorMetadata = ordered(inputs, graph.InputsLength(), graph.Inputs)
    subgraph.outputTensorMetadata = ordered(outputs, graph.OutputsLength(), graph.Outputs)
    custom = fb.CustomMetadataT()
    custom.name = SPEC_KEY
    custom.data = list(spec.to_json().encode("utf-8"))
    subgraph.customMetadata = [custom]
    general = metadata_info.GeneralMd(
        name=spec.name,
        version=f"{spec.version} ({spec.precision.get('name', 'fp32')}; weights sha256 {spec.weights_sha256[:12]})",
        description=about["description"],
        author=about["author"],
        licenses=about["license"],
    ).create_metadata()
    general.subgraphMetadata = [subgraph]
    builder = flatbuffers.Builder(0)
    builder.Finish(general.Pack(builder), metadata.MetadataPopulator.METADATA_FILE_IDENTIFIER)
    return bytes(builder.Output())


def embed_standard(flatbuffer: bytes, spec: ModelSpec) -> bytes:
    """`flatbuffer` with its `TFLITE_METADATA` entry written (or replaced) by MediaPipe's MetadataPopulator."""
    metadata = _writer()
    populator = metadata.MetadataPopulator.with_model_buffer(bytearray(flatbuffer))
    try:
        populator.load_metadata_buffer(metadata_buffer(flatbuffer, spec))
        populator.populate()
        return bytes(populator.get_model_buffer())
    finally:  # its temporary copy of the model, removed now: its __del__ may run only at exit, when it fails
        populator.__del__()
        populator.__class__ = metadata.MetadataPopulator


def read_standard(flatbuffer: bytes) -> dict[str, Any] | None:
    """The `TFLITE_METADATA` entry as JSON data, through MediaPipe's MetadataDisplayer (its C++ flatbuffers
    parser reads the buffer against the schema); None when the model has none."""
    metadata = _writer()
    try:
        displayer = metadata.MetadataDisplayer.with_model_buffer(bytearray(flatbuffer))
    except ValueError as exc:
        if "metadata" in str(exc).lower():
            return None
        raise
    return json.loads(displayer.get_metadata_json())
