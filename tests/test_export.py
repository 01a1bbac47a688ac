"""Export: every format round-trips the model and its spec, runners read the spec back, parity, refusals."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from core import zoo
from core.contract import Contract
from core.errors import UserError
from core.metadata import MetadataEncoder
from core.spec import ImageContract, ModelSpec, OutputContract
from export import parity, runners
from export.common import Conversions, ExportModel, NotRunnable, example_inputs, sidecar_path
from export.formats import BY_KEY, FORMATS, markdown_table, parse_formats
from tests.conftest import ROOT

SIZE = 32


def small_model(name: str) -> tuple[torch.nn.Module, ModelSpec]:
    torch.manual_seed(0)
    enc = MetadataEncoder.fit([30, 50, 70])
    model, backbone = zoo.create_model(name, enc.size, "none", SIZE)
    model.eval()
    spec = ModelSpec.for_contract(
        Contract.from_metadata_encoder(enc, zoo.resolve_name(name), SIZE),
        architecture=name,
        outputs=OutputContract(),
        image=ImageContract(size=SIZE, mean=backbone.mean, std=backbone.std),
        model_config=zoo.model_config(name, enc.size, SIZE),
    )
    spec.outputs.temperature = 1.5
    return model, spec


def export_one(fmt_key: str, model, spec, folder: Path, artifact_index: int = 0) -> Path:
    fmt = BY_KEY[fmt_key]
    artifact = fmt.artifacts[artifact_index]
    path = folder / f"{spec.name}{artifact.suffix}"
    fmt.exporter(artifact)(model, spec, example_inputs(spec, 2), path, "fp32")
    return path


ROUND_TRIPS = [
    (fmt.key, i, backbone)
    for fmt in FORMATS
    for i in range(len(fmt.artifacts))
    for backbone in ("standard_cnn", "mobilenet_v3_small", "efficientnet_lite0")
]


@pytest.mark.slow
@pytest.mark.parametrize(("fmt_key", "artifact_index", "backbone"), ROUND_TRIPS)
def test_round_trip(fmt_key: str, artifact_index: int, backbone: str, tmp_path: Path) -> None:
    model, spec = small_model(backbone)
    path = export_one(fmt_key, model, spec, tmp_path, artifact_index)
    read = runners.read_spec(path)
    expected = json.loads(spec.to_json())
    got = json.loads(read.to_json())
    assert got["image"].pop("layout") == ("NHWC" if fmt_key == "tflite" else "NCHW")
    expected["image"].pop("layout")
    assert got == expected, "the spec must survive the round trip"
    if fmt_key == "coreml":
        with pytest.raises(NotRunnable, match="needs macOS"):
            runners.load(path)
        return
    runner = runners.load(path)
    image, meta = example_inputs(spec, batch=3, seed=7)  # 3 > the static batch of 1: the runner loops
    got_p = runner.predict(image, meta)
    logit, prob = ExportModel(model, spec.outputs.temperature)(image, meta)
    np.testing.assert_allclose(got_p.probability, prob.detach().numpy(), atol=1e-5)
    np.testing.assert_allclose(got_p.logit, logit.detach().numpy(), atol=1e-4)


CARD_BACKBONES = ("efficientnet_b0", "mnasnet1_0", "mobilenet_v2", "shufflenet_v2_x1_0", "efficientnet_lite0")


@pytest.mark.slow
@pytest.mark.parametrize("backbone", CARD_BACKBONES)
def test_every_card_backbone_converts_to_core_ml(backbone: str, tmp_path: Path) -> None:
    """ShuffleNet's channel shuffle failed with numpy 2.4 (an int() of a 1-element array in coremltools 9.0)."""
    model, spec = small_model(backbone)
    path = export_one("coreml", model, spec, tmp_path)
    assert BY_KEY["coreml"].load_module().structure(path)["inputs"] == [
        ("image", [1, 3, SIZE, SIZE]),
        ("meta", [1, spec.meta_size]),
    ]


def test_a_conversion_is_found_again_by_its_model_object_and_key_and_the_oldest_dropped() -> None:
    cache, made = Conversions(keep=2), []
    a, b, twin = torch.nn.Linear(1, 1), torch.nn.Linear(1, 1), torch.nn.Linear(1, 1)
    twin.load_state_dict(a.state_dict())

    def get(model: torch.nn.Module, key: tuple) -> tuple:
        return cache.get(model, key, lambda: made.append((model, key)) or (id(model), key))

    assert get(a, (1.0, 224)) == get(a, (1.0, 224)) and len(made) == 1
    get(a, (1.0, 128)), get(twin, (1.0, 224))  # another key; an equal model that is another object
    assert len(made) == 3 and [key for _, key, _ in cache.entries] == [(1.0, 128), (1.0, 224)]
    get(a, (1.0, 224))  # dropped as the oldest: converted again
    get(b, (1.0, 224))
    assert len(made) == 5 and [m for m, _, _ in cache.entries] == [a, b]


def test_core_ml_compresses_the_fp32_conversion_it_already_made(tmp_path: Path, monkeypatch) -> None:
    """int8-weights and palettized start from the fp32 ML program converted for the same model (one trace and
    conversion, not three), which stays as it was; fp16 and another model are converted anew."""
    import coremltools as ct

    from export import coreml_format

    converted, convert = [], ct.convert
    monkeypatch.setattr(ct, "convert", lambda *a, **k: converted.append(k["compute_precision"]) or convert(*a, **k))
    monkeypatch.setattr(coreml_format, "_CONVERSIONS", Conversions(keep=2))
    model, spec = small_model("standard_cnn")

    def exported(name: str, precision: str, of: torch.nn.Module = model) -> Path:
        path = tmp_path / f"{name}.mlpackage"
        coreml_format.export(of, spec, example_inputs(spec, 2), path, precision)
        return path

    def weights(path: Path) -> bytes:
        return next(path.rglob("weight.bin")).read_bytes()

    fp32 = weights(exported("fp32", "fp32"))
    packages = {p: exported(p, p) for p in ("int8-weights", "palettized", "fp16")}
    assert converted == [ct.precision.FLOAT32, ct.precision.FLOAT16]
    assert weights(exported("fp32-again", "fp32")) == fp32 and len(converted) == 2  # the compressions left it be
    for precision, path in packages.items():
        assert coreml_format.read_spec(path).precision["name"] == precision
        assert len(weights(path)) < len(fp32)
    other, _ = small_model("standard_cnn")
    exported("other", "int8-weights", other)
    assert converted[2:] == [ct.precision.FLOAT32]  # another model object: converted for itself


def test_format_table_drives_choices_and_readme() -> None:
    assert [f.key for f in parse_formats("onnx, tflite")] == ["onnx", "tflite"]
    assert len(parse_formats("all")) == len(FORMATS)
    with pytest.raises(
        UserError, match='unknown format "keras": choose from onnx, torchscript, coreml, tflite, executorch'
    ):
        parse_formats("onnx,keras")
    table = markdown_table()
    for fmt in FORMATS:
        assert f"`{fmt.key}`" in table
    readme = (ROOT / "README.md").read_text()
    assert table in readme, "README's formats table is stale: paste `python -m export.all --formats-table`"


# ---- refusals -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def onnx_artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    model, spec = small_model("standard_cnn")
    folder = tmp_path_factory.mktemp("onnx")
    path = export_one("onnx", model, spec, folder)
    spec.save(sidecar_path(path))
    return path


def test_sidecar_that_disagrees_is_refused(onnx_artifact: Path, tmp_path: Path) -> None:
    copy = tmp_path / onnx_artifact.name
    copy.write_bytes(onnx_artifact.read_bytes())
    spec = ModelSpec.load(sidecar_path(onnx_artifact))
    spec.outputs.threshold = 0.99
    spec.save(sidecar_path(copy))
    with pytest.raises(UserError, match="disagrees with the spec embedded"):
        runners.load(copy)


def test_artifact_without_spec_is_refused(onnx_artifact: Path, tmp_path: Path) -> None:
    import onnx

    proto = onnx.load(str(onnx_artifact))
    del proto.metadata_props[:]
    onnx.save(proto, str(tmp_path / "bare.onnx"))
    with pytest.raises(UserError, match="carries no model spec"):
        runners.load(tmp_path / "bare.onnx")


@pytest.mark.parametrize("fmt_key", ["onnx", "tflite", "executorch", "torchscript"])
def test_truncated_artifact_is_refused(fmt_key: str, tmp_path: Path) -> None:
    model, spec = small_model("standard_cnn")
    path = export_one(fmt_key, model, spec, tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError):
        runners.load(path)


def test_unknown_artifact_type(tmp_path: Path) -> None:
    (tmp_path / "model.h5").write_bytes(b"x")
    with pytest.raises(UserError, match="not an artifact this toolkit knows"):
        runners.load(tmp_path / "model.h5")
    with pytest.raises(UserError, match="does not exist"):
        runners.load(tmp_path / "missing.onnx")


def test_failed_export_keeps_the_previous_artifact(onnx_artifact: Path, tmp_path: Path) -> None:
    from core.io import atomic_path

    target = tmp_path / "a.onnx"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("converter crashed")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.onnx"]


# ---- parity arithmetic --------------------------------------------------------------------------------


def test_parity_identical_and_reversed() -> None:
    y = np.array([0, 0, 0, 1, 1, 1, 0, 1, 0, 1] * 5)
    ref = np.linspace(0.05, 0.95, len(y)) * 0.5 + y * 0.4
    same = parity.compare(y, ref, ref.copy(), threshold=0.5)
    assert same["max_abs_diff"] == 0 and same["flips"] == 0 and same["auroc_delta"] == 0
    assert same["auroc_delta_ci"] == [0.0, 0.0]
    assert parity.judge(same, "fp32") == ("pass", [])
    reversed_ = parity.compare(y, ref, 1 - ref, threshold=0.5)
    assert reversed_["auroc"] == pytest.approx(1 - reversed_["auroc_reference"])
    assert reversed_["auroc_delta_ci"][1] < 0
    status, reasons = parity.judge(reversed_, "int8")
    assert status == "fail" and any("AUROC drop" in r for r in reasons)


def test_parity_counts_flips_at_the_threshold() -> None:
    y = np.array([0, 1, 0, 1, 0, 1])
    ref = np.array([0.10, 0.90, 0.49, 0.51, 0.20, 0.80])
    other = np.array([0.10, 0.90, 0.51, 0.49, 0.20, 0.80])  # two cases cross 0.5
    figures = parity.compare(y, ref, other, threshold=0.5)
    assert figures["flips"] == 2 and figures["flip_fraction"] == pytest.approx(2 / 6)
    assert figures["max_abs_diff"] == pytest.approx(0.02)
    status, reasons = parity.judge(figures, "fp32")
    assert status == "fail" and any("flipped" in r for r in reasons)
    small = parity.compare(y, ref, ref + 5e-5, threshold=0.5)
    assert parity.judge(small, "fp32")[0] == "pass"
    big = parity.compare(y, ref, ref + 2e-4, threshold=0.7)
    assert any("max |dp|" in r for r in parity.judge(big, "fp32")[1])


def test_parity_subgroups() -> None:
    import pandas as pd

    rng = np.random.default_rng(0)
    n = 120
    table = pd.DataFrame(
        {
            "sex": rng.choice(["male", "female"], n),
            "age_approx": rng.choice([30.0, 50.0, 70.0, np.nan], n),
            "anatom_site_general_challenge": rng.choice(["torso", "head/neck"], n),
        }
    )
    features = Contract.from_metadata_encoder(MetadataEncoder(), "m", 32).features
    y = rng.integers(0, 2, n)
    ref = np.clip(0.3 + 0.4 * y + rng.normal(0, 0.2, n), 0, 1)
    other = ref.copy()
    male = (table["sex"] == "male").to_numpy()
    other[male] = 1 - other[male]  # destroy the ranking for men only
    figures = parity.compare(y, ref, other, 0.5, parity.subgroups(table, features))
    groups = {g["group"]: g for g in figures["subgroups"]}
    assert groups["sex=male"]["auroc_delta"] < -0.5
    assert groups["sex=female"]["auroc_delta"] == 0
    assert figures["worst_subgroup_delta"] == groups["sex=male"]["auroc_delta"]
    assert {"age=<40", "age=40-<60", "age=60+", "site=torso"} <= set(groups)


# ---- the command, on a trained run -------------------------------------------------------------------


def run_export(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run(
        [sys.executable, "-m", "export.all", *args], capture_output=True, text=True, cwd=ROOT, env=env, timeout=900
    )


@pytest.fixture(scope="module")
def exported(tiny_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    result = run_export("--model", "standard_cnn", "--checkpoint", str(tiny_run / "checkpoint.pt"), "--out", str(out))
    assert result.returncode == 0, result.stderr[-4000:]
    return out


@pytest.mark.slow
def test_export_all_writes_every_format_and_the_reports(exported: Path) -> None:
    summary = json.loads((exported / "parity.json").read_text())
    rows = {r["format"]: r for r in summary["rows"]}
    assert set(rows) == {"pytorch-eager", "onnx", "torchscript.pt", "torchscript.ptl", "coreml", "tflite", "executorch"}
    for key in (
        "format",
        "precision",
        "file",
        "sha256",
        "max_abs_diff",
        "auroc",
        "auroc_delta",
        "auroc_delta_ci",
        "flips",
        "status",
    ):
        assert key in rows["onnx"], key
    for name, row in rows.items():
        if name == "coreml":
            assert row["status"] == "not-run" and row["reason"] == "converted, not run (needs macOS)"
        elif name != "pytorch-eager":
            assert row["status"] == "pass", row
            assert row["max_abs_diff"] <= 1e-4 and row["flips"] == 0
            assert (exported / row["file"]).exists() and sidecar_path(exported / row["file"]).is_file()
    for name in ("export_report.md", "roc.png", "golden.json", "spec.json"):
        assert (exported / name).is_file()
    assert "| onnx | fp32 |" in (exported / "export_report.md").read_text()


@pytest.mark.slow
def test_golden_vectors_reproduce(exported: Path) -> None:
    from core.images import eval_transform
    from export.golden import decode

    golden = json.loads((exported / "golden.json").read_text())
    runner = runners.load(exported / "standard_cnn.onnx")
    assert {c["label"] for c in golden["cases"]} == {0, 1}
    for case in golden["cases"]:
        from PIL import Image

        pixels = decode(case["decoded_rgb"])
        tensor = eval_transform(runner.spec.image)(Image.fromarray(pixels)).numpy()
        np.testing.assert_allclose(tensor, decode(case["image"]), atol=1e-6)
        meta = runner.spec.encoder().encode(case["metadata"])
        np.testing.assert_allclose(meta, case["meta"], atol=1e-6)
        prob = runner.predict(tensor[None], meta[None]).probability[0, 0]
        assert prob == pytest.approx(case["expected"]["probability"], abs=1e-5)


def _encode_from_contract(contract: dict, case: dict) -> np.ndarray:
    """An app's view: build `meta` from the embedded contract alone (no project code), for the kinds the
    contract `python -m train` writes uses (numbers with a missing flag, one-hots with a missing column)."""
    vec = []
    for feature in contract["metadata"]:
        value = case.get(feature["field"])
        if feature["kind"] == "number":
            missing = value is None
            vec.append(feature["missing"] if missing else (value - feature["offset"]) / feature["scale"])
            if feature.get("missing_flag"):
                vec.append(1.0 if missing else 0.0)
        else:
            assert feature["kind"] == "one_hot" and feature["missing"] == "column"
            value = None if value is None else feature["aliases"].get(value.lower(), value.lower())
            vec += [1.0 if value == category else 0.0 for category in feature["categories"]]
            vec.append(1.0 if value is None else 0.0)
    return np.array([vec], dtype=np.float32)


def _image_from_spec(image_spec: dict, rgb: np.ndarray) -> np.ndarray:
    from PIL import Image

    assert image_spec["resize"] == "stretch" and image_spec["interpolation"] == "bilinear"
    size = image_spec["size"]
    resized = np.asarray(Image.fromarray(rgb).resize((size, size), Image.BILINEAR), dtype=np.float32) / 255.0
    # NOTE: contiguous, as an app's buffer is: the ExecuTorch runtime ignores the strides of a transposed view.
    return np.ascontiguousarray(resized[None] if image_spec["layout"] == "NHWC" else resized.transpose(2, 0, 1)[None])


@pytest.mark.slow
def test_each_artifact_works_with_only_its_runtime_and_embedded_spec(exported: Path) -> None:
    """How a phone app uses an artifact: raw runtime API, inputs built from the spec it carries."""
    golden = json.loads((exported / "golden.json").read_text())
    from export.golden import decode

    case = golden["cases"][0]
    rgb = decode(case["decoded_rgb"])
    md = case["metadata"]
    expected = case["expected"]["probability"]

    # ONNX Runtime
    import onnx
    import onnxruntime as ort

    path = exported / "standard_cnn.onnx"
    spec = json.loads({p.key: p.value for p in onnx.load(str(path)).metadata_props}["melanoma_spec"])
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feeds = {"image": _image_from_spec(spec["image"], rgb), "meta": _encode_from_contract(spec["contract"], md)}
    assert session.run(["probability"], feeds)[0][0, 0] == pytest.approx(expected, abs=1e-4)

    # LiteRT interpreter (NHWC)
    from ai_edge_litert.interpreter import Interpreter

    from export.tflite_format import read_embedded

    path = exported / "standard_cnn.tflite"
    spec = json.loads(read_embedded(path.read_bytes()))
    assert spec["image"]["layout"] == "NHWC"
    interpreter = Interpreter(model_path=str(path))
    run = interpreter.get_signature_runner()
    out = run(image=_image_from_spec(spec["image"], rgb), meta=_encode_from_contract(spec["contract"], md))
    assert float(out["probability"][0, 0]) == pytest.approx(expected, abs=1e-4)

    # ExecuTorch runtime
    from executorch.runtime import Runtime

    program = Runtime.get().load_program(str(exported / "standard_cnn.pte"))
    spec = json.loads(program.load_method("melanoma_spec").execute([])[0])
    inputs = [
        torch.from_numpy(_image_from_spec(spec["image"], rgb)),
        torch.from_numpy(_encode_from_contract(spec["contract"], md)),
    ]
    assert float(program.load_method("forward").execute(inputs)[1][0, 0]) == pytest.approx(expected, abs=1e-4)

    # TorchScript (.pt and the lite interpreter's .ptl)
    from torch.jit.mobile import _load_for_lite_interpreter

    for suffix in (".pt", ".ptl"):
        path = exported / f"standard_cnn{suffix}"
        with zipfile.ZipFile(path) as archive:
            spec = json.loads(
                archive.read(next(n for n in archive.namelist() if n.endswith("extra/melanoma_spec.json")))
            )
        module = torch.jit.load(str(path)) if suffix == ".pt" else _load_for_lite_interpreter(str(path))
        inputs = (
            torch.from_numpy(_image_from_spec(spec["image"], rgb)),
            torch.from_numpy(_encode_from_contract(spec["contract"], md)),
        )
        assert float(module(*inputs)[1][0, 0]) == pytest.approx(expected, abs=1e-4)

    # Core ML: structure and spec only off macOS
    import coremltools as ct

    mlmodel = ct.models.MLModel(str(exported / "standard_cnn.mlpackage"), skip_model_load=True)
    spec = json.loads(mlmodel.user_defined_metadata["melanoma_spec"])
    assert [i.name for i in mlmodel.get_spec().description.input] == ["image", "meta"]
    assert spec["weights_sha256"] == json.loads((exported / "spec.json").read_text())["weights_sha256"]


def test_newest_checkpoint_and_missing_runs(tmp_path: Path) -> None:
    result = run_export("--model", "mobilenet", "--runs", str(tmp_path))
    assert result.returncode == 2
    assert "python -m train --model mobilenet_v2" in result.stderr and "Traceback" not in result.stderr
    result = run_export("--model", "alexnet")
    assert result.returncode == 2 and 'unknown model "alexnet"' in result.stderr
    result = run_export("--model", "mobilenet", "--formats", "onnx,gguf")
    assert result.returncode == 2 and 'unknown format "gguf"' in result.stderr


def test_checkpoint_of_another_model_is_refused(tiny_run: Path) -> None:
    result = run_export("--model", "mobilenet", "--checkpoint", str(tiny_run / "checkpoint.pt"))
    assert result.returncode == 2 and "holds a standard_cnn model, not mobilenet_v2" in result.stderr


def test_float_noise_does_not_break_the_references_ties() -> None:
    """A model that gives whole groups the same probability: 1e-7 of noise must not move AUROC."""
    rng = np.random.default_rng(0)
    y = np.array([1, 0] * 100)
    ref = np.repeat(rng.random(20).astype(np.float32), 10)  # 20 distinct values, each 10 times (ties)
    noisy = ref + rng.normal(0, 1e-7, ref.shape).astype(np.float32)
    fig = parity.compare(y, ref, noisy, 0.5)
    assert fig["auroc_delta"] == 0.0 and fig["max_abs_diff"] > 0
    assert parity.judge(fig, "fp32")[0] == "pass"
    shifted = parity.compare(y, ref, ref + np.where(y == 1, 1e-3, 0), 0.5)  # a real change still counts
    assert shifted["auroc_delta"] > 0


@pytest.mark.slow
def test_executorch_delegates_a_shufflenet_whole_to_xnnpack() -> None:
    """ShuffleNet's channel split becomes slices, which XNNPACK takes: one partition (and the final mean)
    instead of 15 with portable split kernels between them; the values do not change."""
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.devtools.backend_debug import get_delegation_info
    from executorch.exir import to_edge_transform_and_lower

    from export.executorch_format import splits_as_slices

    model, spec = small_model("shufflenet_v2_x0_5")
    wrapper, args = ExportModel(model, 1.5).eval(), example_inputs(spec)
    with torch.no_grad():
        program = torch.export.export(wrapper, args, strict=False)
        sliced = splits_as_slices(program)
        splits = [n for n in program.graph.nodes if "chunk" in str(n.target) or "split" in str(n.target)]
        assert len(splits) == 13 and not [n for n in sliced.graph.nodes if "split" in str(n.target)]
        for before, after in zip(program.module()(*args), sliced.module()(*args), strict=True):
            assert torch.equal(before, after)
    lowered = to_edge_transform_and_lower(sliced, partitioner=[XnnpackPartitioner()])
    info = get_delegation_info(lowered.exported_program().graph_module)
    table = info.get_operator_delegation_dataframe().set_index("op_type")
    outside = table.iloc[:, 1].drop(["getitem", "Total"], errors="ignore")
    assert info.num_delegated_subgraphs <= 2 and set(outside[outside > 0].index) <= {"aten_mean_dim"}
    assert splits_as_slices(sliced) is sliced  # nothing left to rewrite
