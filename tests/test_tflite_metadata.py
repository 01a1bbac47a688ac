"""The standard TFLITE_METADATA of every exported .tflite, read back by MediaPipe's MetadataDisplayer (its C++
flatbuffers parser against the metadata schema), with the signature runner and our own spec entry intact."""

from __future__ import annotations

import json
from pathlib import Path

import flatbuffers
import pytest

from core.errors import UserError
from core.spec import ModelSpec
from tests.conftest import PHONE_EXPORT_AUTHOR, PHONE_EXPORT_LICENSE
from tests.test_export import _encode_from_contract, _image_from_spec


def _tflites(folder: Path) -> list[Path]:
    found = sorted(folder.glob("*.tflite"))
    assert {p.name for p in found} >= {"standard_cnn.tflite", "standard_cnn.int8.tflite"}, found
    return found


@pytest.mark.slow
def test_every_tflite_carries_standard_metadata_describing_both_inputs(phone_export: Path) -> None:
    from export.tflite_format import read_embedded
    from export.tflite_metadata import read_standard

    for path in _tflites(phone_export):
        data = path.read_bytes()
        metadata = read_standard(data)
        assert metadata is not None, f"{path.name} has no TFLITE_METADATA"
        spec = ModelSpec.from_json(read_embedded(data).decode())
        assert metadata["name"] == spec.name
        assert metadata["author"] == PHONE_EXPORT_AUTHOR and metadata["license"] == PHONE_EXPORT_LICENSE
        assert "Not a medical device" in metadata["description"]
        assert spec.precision.get("name", "fp32") in metadata["version"]
        assert metadata["min_parser_version"] == "1.5.0"  # custom metadata (schema 1.5)
        (graph,) = metadata["subgraph_metadata"]
        image, meta = graph["input_tensor_metadata"]
        assert image["name"] == "image" and str(spec.image.size) in image["description"]
        assert image["content"]["content_properties_type"] == "ImageProperties"
        assert image["content"]["content_properties"]["color_space"] == "RGB"
        (unit,) = image["process_units"]
        assert unit["options_type"] == "NormalizationOptions"
        assert unit["options"] == {"mean": [0.0], "std": [255.0]}  # RGB / 255: mean and std are in the graph
        assert image["dimension_names"] == ["batch", "height", "width", "channel"]
        assert meta["name"] == "meta" and meta["dimension_names"] == ["batch", "feature"]
        assert meta["content"]["content_properties_type"] == "FeatureProperties"
        for i, entry in enumerate(spec.metadata["entries"]):
            assert f"{i} {entry}" in meta["description"]
        assert [t["name"] for t in graph["output_tensor_metadata"]] == ["logit", "probability"]
        assert f"{spec.outputs.threshold:.6g}" in graph["output_tensor_metadata"][1]["description"]
        (custom,) = graph["custom_metadata"]
        assert custom["name"] == "melanoma_spec"
        assert bytes(custom["data"]) == read_embedded(data)  # the whole spec, as our readers find it
        assert json.loads(bytes(custom["data"])) == json.loads(path.with_name(path.name + ".spec.json").read_text())


@pytest.mark.slow
def test_metadata_keeps_the_signature_runner_and_the_golden_outputs(phone_export: Path) -> None:
    from ai_edge_litert.interpreter import Interpreter

    from export.golden import decode
    from export.tflite_format import read_spec

    golden = json.loads((phone_export / "golden.json").read_text())
    for path in _tflites(phone_export):
        interpreter = Interpreter(model_path=str(path))
        assert interpreter.get_signature_list() == {
            "serving_default": {"inputs": ["image", "meta"], "outputs": ["logit", "probability"]}
        }
        spec = read_spec(path).to_dict()
        if spec["precision"].get("io"):
            continue  # quantized inputs: the phone ports' golden replay covers them
        case = golden["cases"][0]
        rgb = decode(case["decoded_rgb"])
        out = interpreter.get_signature_runner("serving_default")(
            image=_image_from_spec(spec["image"], rgb), meta=_encode_from_contract(spec["contract"], case["metadata"])
        )
        probability = float(out["probability"][0, 0])
        if path.name == "standard_cnn.tflite":
            assert probability == pytest.approx(case["expected"]["probability"], abs=1e-4)
        assert 0.0 <= probability <= 1.0


def _metadata_with(**fields: object) -> bytes:
    from mediapipe.tasks.metadata import metadata_schema_py_generated as fb

    model = fb.ModelMetadataT()
    graph = fb.SubGraphMetadataT()
    tensor = fb.TensorMetadataT()
    model.subgraphMetadata = [graph]
    graph.inputTensorMetadata = [tensor]
    if "custom" in fields:
        custom = fb.CustomMetadataT()
        custom.name, custom.data = "x", [1]
        graph.customMetadata = [custom]
    if "file_version" in fields:
        file = fb.AssociatedFileT()
        file.name, file.version = "labels.txt", "2"
        tensor.associatedFiles = [file]
    if "vocabulary" in fields:
        file = fb.AssociatedFileT()
        file.name, file.type = "vocab.txt", fb.AssociatedFileType.VOCABULARY
        model.associatedFiles = [file]
    builder = flatbuffers.Builder(0)
    builder.Finish(model.Pack(builder), b"M001")
    return bytes(builder.Output())


def test_minimum_parser_version_follows_the_schema_history() -> None:
    from export.tflite_metadata import minimum_parser_version

    assert minimum_parser_version(_metadata_with()) == "1.0.0"
    assert minimum_parser_version(_metadata_with(vocabulary=True)) == "1.0.1"
    assert minimum_parser_version(_metadata_with(file_version=True)) == "1.4.1"
    assert minimum_parser_version(_metadata_with(custom=True, vocabulary=True)) == "1.5.0"


def test_author_and_license_must_be_one_line() -> None:
    from export.all import about

    assert about(" Lab ", None) == {"author": "Lab"}
    with pytest.raises(UserError, match="--license must be one line"):
        about(None, "MIT\nor not")
    with pytest.raises(UserError, match="--author must be one line"):
        about("  ", None)
