"""Quantized artifacts: each maintained path on a small model, real calibration images, gates, remedies."""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from core import zoo
from core.checkpoint import load_checkpoint
from core.errors import UserError
from core.evaluation import load_test_split
from export import parity, runners
from export.calibration import calibration_set, stratified_pick
from export.common import ExportModel, NotRunnable, example_inputs
from export.formats import BY_KEY, artifact_name
from export.parity import gate_for
from export.pipeline import recommend
from export.precision import QuantOptions, parse_precisions
from export.quantize import Int8Search, Remedy, candidates, dynamic_rungs, float_name, quantize_with_remedies
from export.report import _remedies


def test_precision_vocabulary() -> None:
    assert parse_precisions("fp32,fp16,int8") == ["fp32", "fp16", "int8", "int8-weights", "palettized"]
    assert parse_precisions("int8-dynamic") == ["int8-dynamic"]  # by its own name only (slower than fp32 here)
    assert parse_precisions("int8,int8-dynamic") == ["int8", "int8-weights", "palettized", "int8-dynamic"]
    with pytest.raises(UserError, match='unknown precision "int4"'):
        parse_precisions("fp32,int4")
    assert gate_for("palettized") == "int8" and gate_for("fp16") == "fp16"


def test_stratified_pick_over_represents_melanomas() -> None:
    table = pd.DataFrame({"target": [1] * 10 + [0] * 190})
    picked = stratified_pick(table, 40)
    assert len(picked) == 40 and picked["target"].sum() == 10  # every melanoma, then benign lesions
    picked = stratified_pick(pd.DataFrame({"target": [1] * 100 + [0] * 100}), 40)
    assert picked["target"].sum() == 20


@pytest.fixture(scope="module")
def trained(tiny_run: Path):
    model, spec = load_checkpoint(tiny_run / "checkpoint.pt")
    calibration = calibration_set(tiny_run / "checkpoint.pt", spec, size=32)
    test = load_test_split(tiny_run / "checkpoint.pt", spec)
    return model, spec, calibration, test


def test_calibration_uses_real_training_images_of_both_classes(tiny_run: Path, trained) -> None:
    _, _, calibration, _ = trained
    split = pd.read_csv(tiny_run / "split.csv")
    train_names = set(split.query("split == 'train'")["image_name"])
    assert set(calibration.table["image_name"]) <= train_names
    assert 0 < calibration.target.sum() < len(calibration)
    assert calibration.image.shape[1:] == (3, 32, 32)
    assert calibration.image.std() > 0.05  # decoded lesions, not constant or random noise
    assert calibration.image.min() >= 0.0 and calibration.image.max() <= 1.0


PATHS = [
    ("onnx", "fp16"),
    ("onnx", "int8-dynamic"),
    ("onnx", "int8"),
    ("tflite", "fp16"),
    ("tflite", "int8-dynamic"),
    ("tflite", "int8"),
    ("executorch", "int8"),
    ("coreml", "fp16"),
    ("coreml", "int8-weights"),
    ("coreml", "palettized"),
]


@pytest.mark.slow
@pytest.mark.parametrize(("fmt_key", "precision"), PATHS)
def test_quantization_path(fmt_key: str, precision: str, trained, tmp_path: Path) -> None:
    model, spec, calibration, test = trained
    fmt = BY_KEY[fmt_key]
    artifact = fmt.artifacts[0]
    options = QuantOptions(calibration=calibration if precision == "int8" else None)
    example = example_inputs(spec, 2)
    fp32 = tmp_path / artifact_name(spec.name, artifact, "fp32")
    fmt.exporter(artifact)(model, spec, example, fp32, "fp32")
    path = tmp_path / artifact_name(spec.name, artifact, precision)
    fmt.exporter(artifact)(model, spec, example, path, precision, options)
    read = runners.read_spec(path)
    assert read.precision["name"] == precision and read.precision["method"]
    if precision == "int8":
        assert f"{len(calibration)} training images" in read.precision["method"]

    def size(p: Path) -> int:
        return sum(f.stat().st_size for f in p.rglob("*")) if p.is_dir() else p.stat().st_size

    assert size(path) < size(fp32) / (1.7 if precision == "fp16" else 2.5)
    if precision.startswith("int8") and fmt_key != "coreml":
        # The quantizer scopes (export.common.WRAPPED) matched the model: the file itself holds int8 kernels.
        weights, activations = fmt.load_module().int8_tensors(path)
        assert weights >= 3, f"{fmt_key} {precision}: no int8 weights ({weights})"
        if precision == "int8":
            assert activations >= 3, f"{fmt_key} int8: no int8 activations ({activations})"
    if fmt_key == "onnx":
        from export.onnx_format import foreign_domains

        assert foreign_domains(path) == {} and foreign_domains(fp32) == {}  # standard operators only
    if fmt_key == "coreml":
        with pytest.raises(NotRunnable):
            runners.load(path)
        return
    got = runners.load(path).predict(test.image, test.meta).probability.reshape(-1)
    ref = ExportModel(model, spec.outputs.temperature)(torch.from_numpy(test.image), torch.from_numpy(test.meta))
    ref = ref[1].detach().numpy().reshape(-1)
    assert np.abs(got - ref).max() < (0.01 if precision == "fp16" else 0.25)
    assert abs(parity.auroc(test.target, got) - parity.auroc(test.target, ref)) < 0.15


@pytest.mark.slow
def test_keep_float_leaves_modules_unquantized(trained, tmp_path: Path) -> None:
    import onnx

    model, spec, calibration, _ = trained
    path = tmp_path / "q.onnx"
    options = QuantOptions(calibration=calibration, keep_float=("head", "meta_mlp"), remedy="test")
    BY_KEY["onnx"].exporter(BY_KEY["onnx"].artifacts[0])(model, spec, example_inputs(spec, 2), path, "int8", options)
    names = [n.name for n in onnx.load(str(path)).graph.node]
    assert not any(n.startswith("model.head.weight") or n.startswith("model.meta_mlp") for n in names)
    assert any("DequantizeLinear" in n for n in names)  # the backbone is still quantized
    assert runners.read_spec(path).precision["kept_float"] == ["head", "meta_mlp"]


@pytest.mark.slow
def test_onnx_int8_weights_are_7_bit_only_where_the_cpu_saturates(trained, tmp_path: Path, monkeypatch) -> None:
    """Static int8 ONNX weights span [-64, 64] where ONNX Runtime's uint8 x int8 dot products saturate (x86
    without VNNI) and the full int8 range elsewhere; the spec says which, and running an 8-bit file on a
    saturating CPU warns."""
    import onnx
    from onnx import numpy_helper

    import core.cpu

    model, spec, calibration, _ = trained
    export = BY_KEY["onnx"].exporter(BY_KEY["onnx"].artifacts[0])
    spans = {}
    for saturating in (True, False):
        monkeypatch.setattr(core.cpu, "saturating_int8_dot", lambda s=saturating: s)
        path = tmp_path / f"{saturating}.int8.onnx"
        export(model, spec, example_inputs(spec, 2), path, "int8", QuantOptions(calibration=calibration))
        weights = [numpy_helper.to_array(w) for w in onnx.load(str(path)).graph.initializer]
        weights = [w for w in weights if w.dtype == np.int8 and w.ndim >= 2]
        spans[saturating] = max(int(np.abs(w.astype(np.int32)).max()) for w in weights)
        read = runners.read_spec(path)
        assert read.precision["weight_bits"] == (7 if saturating else 8)
        assert f"{read.precision['weight_bits']}-bit weights" in read.precision["method"]
    assert spans[True] <= 64 < spans[False]  # onnxruntime's reduced symmetric range is [-64, 64]
    monkeypatch.setattr(core.cpu, "saturating_int8_dot", lambda: True)
    with pytest.warns(UserWarning, match="8-bit int8 weights"):
        runners.load(tmp_path / "False.int8.onnx")


def test_search_candidates_are_the_blocks_and_the_fixed_modules() -> None:
    lite, _ = zoo.create_model("efficientnet_lite0", 12, "none", 64)
    found = candidates(lite)
    assert found[:2] == ["backbone.net._conv_stem", "backbone.net._blocks.0"]  # the stem conv is a block of its own
    assert found[-2:] == ["head", "meta_mlp"] and len(found) == len(set(found)) == 20
    dynamic = dynamic_rungs()
    assert dynamic[0].name.startswith("none") and dynamic[1].fixed and not any(r.finetune for r in dynamic)


def _search(passing: int | None, n: int = 20) -> tuple[Int8Search, list[int]]:
    """An Int8Search over `n` fake candidates whose probe passes when `passing` or more are float."""
    search = Int8Search(torch.nn.Linear(1, 1), None, 16)
    search.candidates = [f"m{i}" for i in range(n)]
    search._ranked = [(f"m{i}", 1.0 / (i + 1)) for i in range(n)]
    probed: list[int] = []

    def probe(count: int) -> dict:
        if count not in search._probes:
            probed.append(count)
            ok = passing is not None and count >= passing
            search._probes[count] = {
                "float_modules": count,
                "status": "pass" if ok else "fail",
                "flips": 30 - count,
                "auroc_delta": -0.01,
                "reason": "" if ok else "flips",
            }
        return search._probes[count]

    search.probe = probe  # type: ignore[method-assign]
    return search, probed


def test_the_search_finds_the_fewest_float_modules_by_doubling_then_bisecting() -> None:
    search, probed = _search(passing=5)
    decision = search.decision()
    assert decision.float_modules == 5 and decision.passed
    assert probed == [0, 1, 2, 4, 6, 5]  # growing steps to the first pass, then bisecting
    assert [p["float_modules"] for p in decision.as_dict()["probes"]] == [0, 1, 2, 4, 5, 6]
    assert decision.as_dict()["kept_float"] == ["m0", "m1", "m2", "m3", "m4"]
    rungs = search.rungs(calibrated=True, int16=True)
    assert [(r.float_modules, r.activation_bits, r.finetune) for r in rungs] == [
        (5, 8, False),
        (10, 8, False),
        (5, 16, False),
        (10, 8, True),
    ]  # more float (8-bit activations stay fast, at most half float) before 16-bit activations, fine-tuning last
    search, _ = _search(passing=0)
    counts = [r.float_modules for r in search.rungs(calibrated=True, int16=False)]
    assert counts == [0, 2, 4, 8, 10, 10] and search.rungs()[0].name.startswith("none")
    assert not any(r.activation_bits == 16 for r in search.rungs(calibrated=True, int16=False))
    assert search.rungs(calibrated=False) == dynamic_rungs()

    search, probed = _search(passing=0)
    assert search.decision().float_modules == 0 and probed == [0]  # everything int8: nothing ranked or bisected
    search, probed = _search(passing=9)
    assert search.decision().float_modules == 9 and probed == [0, 1, 2, 4, 6, 9, 7, 8]  # half again past 4
    search, probed = _search(passing=None, n=6)
    decision = search.decision()
    assert not decision.passed and probed == [0, 1, 2, 4, 6] and decision.float_modules == 6  # the closest miss


def test_int8_gates_on_constructed_cases() -> None:
    y = np.array([0, 1] * 50)
    ref = np.where(y == 1, 0.8, 0.2) + np.linspace(0, 0.1, 100)
    one_flip = ref.copy()
    one_flip[0] = 0.55  # a benign case now above 0.5 (still below every melanoma): 1 flip in 100 = 1% <= 2%
    status, _ = parity.judge(parity.compare(y, ref, one_flip, 0.5), "int8")
    assert status == "pass"
    three = ref.copy()
    three[[0, 2, 4]] = 0.55
    status, reasons = parity.judge(parity.compare(y, ref, three, 0.5), "int8")
    assert status == "fail" and any("flipped" in r for r in reasons)
    fp16 = parity.compare(y, ref, ref + 3e-3, 0.5)
    assert parity.judge(fp16, "fp16")[0] == "pass"  # no max |dp| gate for reduced precision
    assert parity.judge(fp16, "fp32")[0] == "fail"


class _Rungs:
    """Int8Search's one method the walk calls, without models: each rung's options carry only its name."""

    model = torch.nn.Linear(1, 1)

    def options(self, remedy: Remedy, calibrated: bool) -> tuple[QuantOptions, None]:
        return QuantOptions(remedy=remedy.name), None


def _judged(flips: dict[str, int]):
    exported = []

    def export_and_judge(options: QuantOptions, model: torch.nn.Module | None) -> dict:
        exported.append(options.remedy)
        time.sleep(0.1)  # each export takes time: the discarded share is the time of artifacts not kept
        n = flips[options.remedy]
        status, reason = ("pass", "") if n <= 2 else ("fail", f"{n} flips")
        return {"status": status, "reason": reason, "auroc": 0.7, "auroc_delta": 0.0, "flips": n}

    return export_and_judge, exported


def test_the_walk_stops_at_the_first_pass_and_keeps_the_closest_miss_otherwise() -> None:
    rungs = [Remedy(name="a"), Remedy(name="b"), Remedy(name="c")]
    judge, exported = _judged({"a": 9, "b": 1, "c": 0})
    row = quantize_with_remedies(rungs, _Rungs(), True, judge)
    assert exported == ["a", "b"] and row["remedy"] == "b" and row["status"] == "pass"
    assert [a["remedy"] for a in row["attempts"]] == ["a", "b"]
    assert all(a["seconds"] >= 0.1 for a in row["attempts"])
    assert row["discarded_seconds"] == pytest.approx(row["attempts"][0]["seconds"], abs=0.11)
    judge, exported = _judged({"a": 9, "b": 5, "c": 7})
    row = quantize_with_remedies(rungs, _Rungs(), True, judge)
    assert exported == ["a", "b", "c", "b"]  # the closest miss is exported again: the file on disk is the best
    assert row["remedy"] == "b" and row["status"] == "fail" and "closest miss" in row["reason"]
    assert [a["flips"] for a in row["attempts"]] == [9, 5, 7]
    assert row["discarded_seconds"] == pytest.approx(sum(a["seconds"] for a in row["attempts"]), abs=0.15)


def test_a_rung_two_formats_failed_is_skipped_in_the_third_but_never_the_last() -> None:
    search = Int8Search(torch.nn.Linear(1, 1), lambda *a, **k: None, 0)
    search.top = lambda count: tuple(f"m{i}" for i in range(count))  # type: ignore[method-assign]
    rungs = [Remedy(name=n, float_modules=k) for n, k in (("k0", 0), ("k2", 2), ("k4", 4), ("k8", 8))]
    flips = {"k0": 9, "k2": 5, "k4": 1, "k8": 0}
    for label in ("onnx", "tflite"):
        judge, exported = _judged(flips)
        row = quantize_with_remedies(rungs, search, True, judge, skip=search.known_miss)
        assert exported == ["k0", "k2", "k4"]  # one earlier walk is not evidence enough: every rung tried
        search.learn(label, row["attempts"])
    judge, exported = _judged(flips)
    row = quantize_with_remedies(rungs, search, True, judge, skip=search.known_miss)
    assert exported == ["k4"] and row["remedy"] == "k4"  # the decision's rung and k2 failed twice: skipped
    skipped = row["attempts"][1]
    assert skipped["status"] == "skipped" and skipped["reason"] == "failed in onnx int8 and tflite int8"
    assert skipped["float_modules"] == 2 and skipped["seconds"] == 0.0
    shown = _remedies([row | {"format": "executorch", "precision": "int8"}])[0]
    assert "k2: skipped (failed in onnx int8 and tflite int8); k4: pass (dAUROC +0.0000, 1 flips)" in shown
    assert shown.startswith("executorch int8: k0: skipped (failed in onnx int8 and tflite int8)")
    search.learn("executorch", row["attempts"])
    assert search.known_miss(rungs[2]) is None  # passed where it was tried
    search.learn("x", [{"remedy": "k2", "status": "pass"}])
    assert search.known_miss(rungs[1]) is None  # failed twice, but passed in a third format
    search.learn("x", [{"remedy": "k4", "status": "fail", "flips": None}, {"remedy": "k8", "status": "fail"}])
    assert search._walked["x"] == {}  # a crash, or a refusal before judging, says nothing of another format

    def crashing(options: QuantOptions, model: torch.nn.Module | None) -> dict:
        crashed.append(options.remedy)
        if options.remedy == "k4":  # the first rung tried, after the skipped ones: a crash there is a failed rung
            return {"status": "unsupported", "reason": "the converter crashed"}
        return {"status": "pass", "reason": "", "auroc": 0.7, "auroc_delta": 0.0, "flips": 0}

    search._walked = {k: {"k0": "fail", "k2": "fail", "k4": "fail"} for k in ("a", "b")}
    crashed: list[str] = []
    row = quantize_with_remedies(rungs, search, True, crashing, skip=search.known_miss)
    assert crashed == ["k8"] and row["status"] == "pass"  # every rung but the last failed twice: skipped
    search._walked = {k: {"k0": "fail", "k2": "fail"} for k in ("a", "b")}
    crashed = []
    row = quantize_with_remedies(rungs, search, True, crashing, skip=search.known_miss)
    assert crashed == ["k4", "k8"] and row["status"] == "pass"
    assert [a["status"] for a in row["attempts"]] == ["skipped", "skipped", "fail", "pass"]
    assert quantize_with_remedies(rungs[2:], search, True, crashing)["status"] == "unsupported"  # crash on rung 0
    for label in ("a", "b"):  # every rung failed twice: the last is still tried
        search.learn(label, [{"remedy": r.name, "status": "fail", "flips": 9} for r in rungs])
    search._walked = {k: v for k, v in search._walked.items() if k in ("a", "b")}
    judge, exported = _judged(dict.fromkeys(flips, 9))
    row = quantize_with_remedies(rungs, search, True, judge, skip=search.known_miss)
    assert exported == ["k8"] and row["status"] == "fail" and "closest miss" in row["reason"]
    assert [a["status"] for a in row["attempts"]] == ["skipped", "skipped", "skipped", "fail"]


def test_a_failed_artifact_is_never_recommended() -> None:
    rows = [
        {"format": "pytorch-eager", "precision": "fp32", "status": "reference", "file": "c.pt", "size_mb": 14},
        {"format": "onnx", "precision": "fp32", "status": "pass", "file": "m.onnx", "size_mb": 13.7},
        {"format": "onnx", "precision": "fp16", "status": "pass", "file": "m.fp16.onnx", "size_mb": 6.9},
        {"format": "onnx", "precision": "int8", "status": "fail", "file": "m.int8.onnx", "size_mb": 3.6},
        {"format": "coreml", "precision": "fp32", "status": "not-run", "file": "m.mlpackage", "size_mb": 13.8},
    ]
    chosen = recommend(rows)
    assert chosen["onnx"]["file"] == "m.fp16.onnx"
    assert chosen["coreml"]["file"] is None and "passed" in chosen["coreml"]["reason"]


@pytest.mark.slow
def test_export_all_int8_rows(tiny_run: Path, tmp_path: Path) -> None:
    """One search decides for both formats; every .onnx holds standard operators only; every passing artifact
    is run again by a second runtime of its format (OpenVINO, TensorFlow's tf.lite) and held to its gate."""
    from export.onnx_format import foreign_domains
    from tests.test_export import run_export

    checkpoint = str(tiny_run / "checkpoint.pt")
    args = ["--formats", "onnx,tflite", "--precision", "fp32,int8", "--calibration-size", "16", "--golden", "0"]
    result = run_export("--checkpoint", checkpoint, *args, "--out", str(tmp_path), "--gate-flips", "3%")
    assert result.returncode in (0, 1), result.stderr[-3000:]
    summary = json.loads((tmp_path / "parity.json").read_text())
    assert summary["gates"]["int8"]["max_flip_fraction"] == 0.03 and summary["gates"]["fp32"]["max_flip_fraction"] == 0
    rows = {r["precision"]: r for r in summary["rows"] if r["format"] == "onnx"}
    assert set(rows) == {"fp32", "int8"}
    assert rows["int8"]["attempts"] and rows["int8"]["remedy"]
    assert rows["int8"]["size_reduction"] > 2.5
    search = summary["int8_search"]
    assert search["probes"][0]["float_modules"] == 0 and search["candidates"] >= 3  # the tiny CNN: 3 modules
    decided = search["float_modules"]
    for row in summary["rows"]:
        if row["precision"] == "int8":  # every format starts from the one decision
            assert row["attempts"][0]["remedy"] == float_name(decided, search["candidates"])
            assert row["float_modules"] >= decided and row["activation_bits"] in (8, 16)
        if row["status"] == "pass" and row["format"] in ("onnx", "tflite"):
            witness = row["second_runtime"]
            assert witness["status"] == "pass", (row["format"], row["precision"], witness)
            assert witness["runtime"].split()[0] in ("openvino", "tensorflow")
            assert witness["max_abs_diff_to_primary"] < (1e-4 if row["precision"] == "fp32" else 0.1)
    for path in tmp_path.glob("*.onnx"):
        assert foreign_domains(path) == {}, path.name
    report = (tmp_path / "export_report.md").read_text()
    assert "one search, applied in every format" in report and "one pair moves AUROC by" in report
    assert (tmp_path / "int8_search.png").read_bytes()[:4] == b"\x89PNG" and "int8_search.png" in report
    assert all(a.get("float_modules") is not None for r in summary["rows"] for a in r.get("attempts", []))
    assert result.returncode == (1 if any(r["status"] == "fail" for r in summary["rows"]) else 0)
    assert "## Recommended artifact per format" in (tmp_path / "export_report.md").read_text()


def test_a_second_runtime_runs_beside_the_next_export_and_its_failure_fails_the_row(
    tiny_run: Path, tmp_path: Path, monkeypatch
) -> None:
    """Second runtimes run on the witness thread; a float row's verdict arrives at the end and still fails the
    row (and its recommendation) when the second runtime reads the file differently; int8's arrives at once."""
    import threading

    from export import pipeline, witness
    from export.formats import parse_formats
    from export.pipeline import export_all

    monkeypatch.setattr(pipeline, "WITNESS_BESIDE_MIN_CPUS", 1)  # beside the conversions even on 2 cores
    honest, threads = witness.predict, {}

    def predict(path: Path, image, meta, nhwc: bool = False):
        threads[path.name] = threading.current_thread().name
        prob = honest(path, image, meta, nhwc)
        return 1.0 - prob if ".fp16." in path.name else prob  # fp16 means the opposite to this "runtime"

    monkeypatch.setattr(witness, "predict", predict)
    summary = export_all(
        tiny_run / "checkpoint.pt", tmp_path, parse_formats("onnx"), ["fp32", "fp16", "int8"], 0, None, 16
    )
    rows = {r["precision"]: r for r in summary["rows"][1:]}
    assert set(threads.values()) == {"witness_0"}, threads  # never on the main thread
    assert rows["fp32"]["status"] == "pass" and rows["fp32"]["second_runtime"]["status"] == "pass"
    assert rows["fp16"]["status"] == "fail" and rows["fp16"]["reason"].startswith("in openvino"), rows["fp16"]
    assert rows["fp16"]["second_runtime"]["flips"] > 0
    assert summary["recommended"]["onnx"]["file"] != rows["fp16"]["file"]
    stored = json.loads((tmp_path / "parity.json").read_text())
    assert [r["status"] for r in stored["rows"][1:]] == [r["status"] for r in summary["rows"][1:]]
    if rows["int8"]["status"] == "pass":  # awaited before the remedies walk moved on
        assert rows["int8"]["second_runtime"]["status"] == "pass"


def test_scope_matching_for_keep_float() -> None:
    from export.scopes import in_module
    from export.tflite_format import _scopes

    # EfficientNet-Lite's stem is reached through extract_features, so the exporter drops "net".
    assert in_module(["backbone", "_conv_stem"], "backbone.net._conv_stem")
    assert in_module(["backbone", "_conv_stem", "static_padding"], "backbone.net._conv_stem")
    assert not in_module(["backbone", "_conv_head"], "backbone.net._conv_stem")
    # Numeric indices are never skipped: features.0.0 is the stem conv only, not all of features.0.
    assert in_module(["backbone", "features", "0", "0"], "backbone.features.0.0")
    assert not in_module(["backbone", "features", "0", "2"], "backbone.features.0.0")
    assert not in_module(["backbone", "features", "1", "0", "block", "0", "2"], "backbone.features.0.2")
    assert in_module(["head"], "head") and not in_module(["meta_mlp", "0"], "head")
    name = (
        "export.tflite_format._NamedOutputs/export.common.ExportModel_inner/core.zoo.FusionModel_model/"
        "core.zoo._LiteFeatures_backbone/efficientnet_lite_pytorch.utils.Conv2dStaticSamePadding__conv_stem;"
        "export.tflite_format._NamedOutputs/export.common.ExportModel_inner/core.zoo.FusionModel_model/"
        "torch.nn.modules.container.Sequential_meta_mlp/torch.nn.modules.linear.Linear_0"
    )
    assert _scopes(name) == [["backbone", "_conv_stem"], ["meta_mlp", "0"]]


@pytest.mark.slow
def test_int8_probability_stays_float(trained, tmp_path: Path) -> None:
    """An int8 probability has 1/256 resolution: coarser than many cases' distance to the threshold."""
    import onnx

    from export.pt2e import pt2e_int8

    model, spec, calibration, _ = trained
    options = QuantOptions(calibration=calibration)
    path = tmp_path / "q.onnx"
    BY_KEY["onnx"].exporter(BY_KEY["onnx"].artifacts[0])(model, spec, example_inputs(spec, 2), path, "int8", options)
    graph = onnx.load(str(path)).graph
    producer = {out: node for node in graph.node for out in node.output}
    assert producer["probability"].op_type == "Sigmoid"
    assert producer[producer["probability"].input[0]].op_type == "Div"  # logit / temperature, in float
    assert sum(n.op_type == "DequantizeLinear" for n in graph.node) > 5  # the model itself is quantized

    wrapper = ExportModel(model, spec.outputs.temperature).eval()
    args = tuple(t[:1] for t in example_inputs(spec, 2))
    converted = pt2e_int8(torch.export.export(wrapper, args, strict=False).module(), options)
    nodes = list(converted.graph.nodes)
    sigmoid = next(n for n in nodes if "sigmoid" in str(n.target))
    assert "dequantize" not in str(sigmoid.args[0].target)  # its input is the float logit / temperature
    assert not any("quantize" in str(user.target) for user in sigmoid.users)
    assert sum("dequantize_per_channel" in str(n.target) for n in nodes) >= 5  # weights are int8


@pytest.mark.slow
def test_finetuning_folds_batchnorm_and_leaves_weights_on_the_int8_grid(trained) -> None:
    from torch import nn

    from export.finetune import finetune_for_int8, fold_batchnorm, grid_scale

    model, _, calibration, test = trained
    image, meta = torch.from_numpy(test.image), torch.from_numpy(test.meta)
    folded, count = fold_batchnorm(model, (image[:2], meta[:2]))
    assert count >= 5 and not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    with torch.no_grad():
        assert torch.allclose(folded(image, meta), model(image, meta), atol=1e-4)

    tuned, report = finetune_for_int8(
        model, calibration.image, calibration.meta, keep_float=("head",), steps=100, progress=False
    )
    assert report["rms_logit_error_after"] < report["rms_logit_error_before"]
    for name, layer in tuned.named_modules():
        if isinstance(layer, nn.Conv2d | nn.Linear):
            w = layer.weight.detach()
            steps = w / grid_scale(w).reshape([-1] + [1] * (w.ndim - 1))
            on_grid = torch.allclose(steps, steps.round(), atol=1e-3)
            assert on_grid == (name != "head"), name  # the kept-float head is left as it was


def test_candidate_blocks_are_small_units_of_the_backbone() -> None:
    from export.sensitivity import candidate_blocks

    lite, _ = zoo.create_model("efficientnet_lite0", 12, "none", 64)
    blocks = candidate_blocks(lite, exclude=("backbone.net._conv_stem",))
    assert blocks[:2] == ["backbone.net._blocks.0", "backbone.net._blocks.1"]
    assert "backbone.net._conv_head" in blocks and "backbone.net._conv_stem" not in blocks
    assert len(blocks) == 17  # 16 MBConv blocks + the head conv
    b0, _ = zoo.create_model("efficientnet_b0", 12, "none", 64)
    for block in candidate_blocks(b0):
        layers = [m for m in b0.get_submodule(block).modules() if isinstance(m, torch.nn.Conv2d | torch.nn.Linear)]
        assert 1 <= len(layers) <= 5


@pytest.mark.slow
def test_sensitivity_ranking_scores_every_block(trained) -> None:
    from export.sensitivity import candidate_blocks, rank_blocks

    model, _, calibration, _ = trained
    ranked = rank_blocks(model, calibration, calibration, progress=False)
    assert sorted(b for b, _ in ranked) == sorted(candidate_blocks(model))
    errors = [e for _, e in ranked]
    assert errors == sorted(errors, reverse=True) and all(np.isfinite(errors)) and errors[-1] > 0


def _random_calibration(size: int, count: int = 4, meta_size: int = 12):
    """Random images and metadata as an EvalSet: enough to calibrate a graph whose structure is under test."""
    from core.evaluation import EvalSet

    rng = np.random.default_rng(0)
    image = rng.random((count, 3, size, size), dtype=np.float32)
    meta = rng.random((count, meta_size), dtype=np.float32)
    return EvalSet(pd.DataFrame(index=range(count)), image, meta, np.zeros(count, dtype=int))


def _quantized_edges(graph: torch.fx.GraphModule) -> dict[tuple[str, str], tuple[float, int]]:
    """(producer, consumer) -> (scale, zero point) of every activation a dequantize feeds."""
    edges = {}
    for dq in graph.graph.nodes:
        if str(dq.target).startswith("quantized_decomposed.dequantize_per_tensor"):
            q = dq.args[0]
            source = q.args[0] if str(q.target).startswith("quantized_decomposed.quantize") else q
            edges |= {(source.name, user.name): (round(float(dq.args[1]), 8), int(dq.args[2])) for user in dq.users}
    return edges


@pytest.mark.slow
def test_sensitivity_quantizes_one_block_at_a_time() -> None:
    """Removing the other blocks' quantize / dequantize pairs from the fully converted graph gives what
    quantizing that block alone gives: the same activations quantized, with the same ranges (the same
    observers saw the same float activations), and that block's weights."""
    from export.pt2e import pt2e_int8
    from export.sensitivity import candidate_blocks, only_block

    torch.manual_seed(0)
    model, _ = zoo.create_model("mobilenet_v2", 12, "none", 32)
    wrapper, calibration = ExportModel(model).eval(), _random_calibration(32)
    case = (torch.from_numpy(calibration.image[:1]), torch.from_numpy(calibration.meta[:1]))
    with torch.no_grad():
        graph = torch.export.export(wrapper, case, strict=False).module()
        converted = pt2e_int8(graph, QuantOptions(calibration), fold=False)
        for block in candidate_blocks(model)[2:4]:
            layers = sum(isinstance(m, torch.nn.Conv2d | torch.nn.Linear) for m in model.get_submodule(block).modules())
            alone = only_block(converted, block)
            weights = [n for n in alone.graph.nodes if "dequantize_per_channel" in str(n.target)]
            assert len(weights) == layers  # that block's weights, and nobody else's
            direct = pt2e_int8(
                torch.export.export(wrapper, case, strict=False).module(), QuantOptions(calibration), only=block
            )
            edges = _quantized_edges(alone)
            assert len(edges) >= layers and edges == _quantized_edges(direct), block


@pytest.mark.slow
@pytest.mark.parametrize("name", ["mobilenet_v2", "efficientnet_lite0"])
def test_the_search_simulation_cuts_like_pt2e_and_fuses_without_changing_a_value(name: str) -> None:
    """`with_float` (the converted graph with some blocks' pairs removed) quantizes what PT2E quantizes with those
    blocks left out of the quantizer, with the same ranges, borders included (Lite0: its stem and first block
    float, the stem's ReLU6 a module shared with the head conv); `fused` runs each pair as one fake-quantize op with the
    same result; `logits` stops when asked."""
    from export.pt2e import pt2e_int8
    from export.sensitivity import candidate_blocks, fused, logits, with_float

    torch.manual_seed(0)
    model, _ = zoo.create_model(name, 12, "none", 32)
    wrapper, calibration = ExportModel(model).eval(), _random_calibration(32)
    case = (torch.from_numpy(calibration.image[:1]), torch.from_numpy(calibration.meta[:1]))
    # Lite0: the stem float with the block after it (the 224 px search's first two), so that the ReLU6 between
    # them, a module outside both, is float too.
    kept = ("backbone.net._conv_stem", "backbone.net._blocks.0")
    kept = tuple(candidate_blocks(model)[2:4]) if name == "mobilenet_v2" else kept
    with torch.no_grad():
        converted = pt2e_int8(
            torch.export.export(wrapper, case, strict=False).module(), QuantOptions(calibration), fold=False
        )
        cut = with_float(converted, kept)
        direct = pt2e_int8(
            torch.export.export(wrapper, case, strict=False).module(),
            QuantOptions(calibration, keep_float=kept),
            fold=False,
        )
        assert _quantized_edges(cut) == _quantized_edges(direct)
        weights = sum("dequantize_per_channel" in str(n.target) for n in cut.graph.nodes)
        assert weights == sum("dequantize_per_channel" in str(n.target) for n in direct.graph.nodes)
        before = logits(cut, calibration.image, calibration.meta, batch=1)  # a batch-1 graph
        one_pass = fused(copy.deepcopy(cut))
        after = logits(one_pass, calibration.image, calibration.meta, batch=1)
    assert np.abs(before - after).max() < 1e-4 and np.abs(before).max() > 0
    # Every weight was rounded once, when the graph was fused: none is rounded again in a forward pass.
    targets = [getattr(n.target, "__name__", str(n.target)) for n in one_pass.graph.nodes if n.op == "call_function"]
    assert "_fake_quantize_channels" not in targets and not any("quantize_per" in t for t in targets)
    assert targets.count("_fake_quantize_tensor") > 0
    seen = []
    short = logits(cut, calibration.image, calibration.meta, batch=1, stop=lambda done: seen.append(len(done)) or True)
    assert len(short) == 1 and seen == [1]  # the first batch, then stopped


@pytest.mark.slow
def test_executorch_lowers_the_search_simulation_itself(trained, tmp_path: Path) -> None:
    """An ExecuTorch int8 artifact made from the search's simulation (QuantOptions.simulated) computes what one
    prepared and calibrated anew with the same float modules computes, to the bit, and is as int8 (two inner
    blocks float, whose borders the cut draws as PT2E does: test_the_search_simulation_cuts_like_pt2e...). The
    one made anew is the fallback's: where the lowering refuses the cut, the artifact is made the usual way,
    and its spec says so."""
    from export.executorch_format import ExecuTorchRunner, int8_tensors
    from export.executorch_format import export as export_pte
    from export.sensitivity import candidate_blocks, simulation, with_float

    _, spec, calibration, test = trained
    torch.manual_seed(0)
    model, _ = zoo.create_model("mobilenet_v2", spec.meta_size, "none", spec.image.size)
    model.eval()
    kept = tuple(candidate_blocks(model)[2:4])
    with torch.no_grad():
        converted = simulation(model, calibration)

    def refused() -> torch.fx.GraphModule:
        raise RuntimeError("XNNPACK refuses this graph")

    paths = {}
    for source, simulated in (("simulation", lambda: with_float(converted, kept)), ("anew", refused)):
        options = QuantOptions(calibration, kept, simulated=simulated)
        path = tmp_path / f"{source}.int8.pte"
        paths[source] = export_pte(model, spec, example_inputs(spec, 2), path, "int8", options)
    out = {s: ExecuTorchRunner(p, runners.read_spec(p)).predict(test.image, test.meta) for s, p in paths.items()}
    assert np.array_equal(out["simulation"].logit, out["anew"].logit) and np.ptp(out["anew"].logit) > 0
    assert int8_tensors(paths["simulation"]) == int8_tensors(paths["anew"]) != (0, 0)
    assert "simulation graph" in runners.read_spec(paths["simulation"]).precision["method"]
    assert "simulation graph" not in runners.read_spec(paths["anew"]).precision["method"]


@pytest.mark.slow
def test_executorch_int8_keeps_a_float_block_wholly_float() -> None:
    """XNNPACK's cat annotator and its range propagation ignore the quantizer's filter: in a ShuffleNet block
    kept float, no value computed inside it may be rounded on its way to another op inside it (its
    concatenation, reshapes and, in the graph ExecuTorch lowers, its channel-split slices included)."""
    from export.executorch_format import splits_as_slices
    from export.pt2e import module_paths, pt2e_int8

    model, _ = zoo.create_model("shufflenet_v2_x1_0", 12, "none", 32)
    wrapper, calibration = ExportModel(model).eval(), _random_calibration(32)
    args = (torch.from_numpy(calibration.image[:1]), torch.from_numpy(calibration.meta[:1]))
    kept = "backbone.stage2.1"
    with torch.no_grad():
        graph = splits_as_slices(torch.export.export(wrapper, args, strict=False)).module()
        converted = pt2e_int8(graph, QuantOptions(calibration=calibration, keep_float=(kept,)))
    nodes = list(converted.graph.nodes)

    def inside(node: torch.fx.Node, path: str) -> bool:
        return any(p == f"model.{path}" or p.startswith(f"model.{path}.") for p in module_paths(node))

    def rounded_between(path: str) -> list[str]:
        """Quantize / dequantize pairs whose producer and consumer both lie inside `path`."""
        pairs = []
        for dq in (n for n in nodes if str(n.target).startswith("quantized_decomposed.dequantize_per_tensor")):
            source = dq.args[0].args[0] if dq.args[0].op == "call_function" else dq.args[0]
            pairs += [f"{source.name}->{u.name}" for u in dq.users if inside(source, path) and inside(u, path)]
        return pairs

    slices = [n for n in nodes if n.target == torch.ops.aten.slice.Tensor and inside(n, kept)]
    assert slices and any(n.target == torch.ops.aten.cat.default and inside(n, kept) for n in nodes)
    assert rounded_between(kept) == []
    assert rounded_between("backbone.stage2.2")  # the next block is int8


@pytest.mark.slow
def test_tflite_int8_ranges_cover_every_calibration_image(trained) -> None:
    """ai-edge-quantizer's default range update is a moving average, which forgets early outliers."""
    import dataclasses

    import litert_torch
    from ai_edge_litert.tools import flatbuffer_utils

    from export.tflite_format import _NamedOutputs, _quantize

    model, spec, calibration, _ = trained
    meta = calibration.meta.copy()
    meta[0] = np.abs(meta).max() * 5  # one early patient far outside the others' range
    calibration = dataclasses.replace(calibration, meta=meta)
    image, meta_in = example_inputs(spec, 1)
    wrapper = _NamedOutputs(ExportModel(model, spec.outputs.temperature, nhwc=True)).eval()
    fp32 = litert_torch.convert(wrapper, sample_kwargs={"image": image.permute(0, 2, 3, 1), "meta": meta_in})
    data, _ = _quantize(fp32.model_content(), "int8", QuantOptions(calibration=calibration))
    graph = flatbuffer_utils.read_model_from_bytearray(bytearray(data)).subgraphs[0]
    names = [t.name.decode() for t in graph.tensors]
    source = next(i for i, n in enumerate(names) if n.endswith("meta"))  # the float input
    quantized = [graph.tensors[op.outputs[0]] for op in graph.operators if list(op.inputs) == [source]]
    assert quantized, "the meta input is not quantized at all"
    q = quantized[0].quantization
    top = (127 - int(q.zeroPoint[0])) * float(q.scale[0])
    assert top >= 0.99 * meta[0].max()


@pytest.mark.parametrize("relu6", [torch.nn.ReLU6(), torch.nn.functional.relu6], ids=["module", "function"])
def test_executorch_int8_gives_relu6_its_own_range(relu6) -> None:
    """XNNPACKQuantizer alone makes ReLU6 share the conv's unclamped range (a step of ~0.1 here)."""
    from core.evaluation import EvalSet
    from export.pt2e import pt2e_int8

    class Tiny(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 8, 3)
            self.head = torch.nn.Linear(8 + 2, 1)

        def forward(self, image: torch.Tensor, meta: torch.Tensor) -> torch.Tensor:
            x = relu6(self.conv(image)).mean((2, 3))
            return self.head(torch.cat([x, meta], 1))

    class Wrapper(torch.nn.Module):  # the filter quantizes what lies inside `model`, as in ExportModel
        def __init__(self) -> None:
            super().__init__()
            self.model = Tiny()

        def forward(self, image: torch.Tensor, meta: torch.Tensor) -> torch.Tensor:
            return self.model(image, meta)

    torch.manual_seed(0)
    wrapper = Wrapper().eval()
    wrapper.model.conv.weight.data *= 100  # conv outputs far beyond 6
    rng = np.random.default_rng(0)
    image, meta = rng.random((16, 3, 8, 8), dtype=np.float32), rng.random((16, 2), dtype=np.float32)
    calibration = EvalSet(pd.DataFrame(index=range(16)), image, meta, np.zeros(16, dtype=int))
    args = (torch.from_numpy(image[:1]), torch.from_numpy(meta[:1]))
    with torch.no_grad():
        assert wrapper.model.conv(args[0]).abs().max() > 12
        graph = torch.export.export(wrapper, args, strict=False).module()
        converted = pt2e_int8(graph, QuantOptions(calibration=calibration))
    clamp = next(n for n in converted.graph.nodes if "hardtanh" in str(n.target) or "relu6" in str(n.target))
    assert "conv2d" in str(clamp.args[0].target)  # the conv output reaches the clamp unquantized
    (quantize,) = [u for u in clamp.users if "quantize_per_tensor" in str(u.target)]
    assert float(quantize.args[1]) <= 6 / 255 * 1.01  # the ReLU6 output's own [0, 6] range


def test_gates_are_the_users_to_set_and_fp32_keeps_its_own() -> None:
    from export.all import chosen_gates

    gates = chosen_gates(flips="5%", auroc_drop=0.01, min_subgroup_class=3)
    assert gates["int8"].max_flip_fraction == 0.05 and gates["fp16"].max_auroc_drop == 0.01
    assert gates["fp32"] == parity.GATES["fp32"] and gates.min_subgroup_class == 3
    assert gates.as_dict()["int8"]["max_flip_fraction"] == 0.05 and gates.as_dict()["min_subgroup_class"] == 3
    assert chosen_gates(flips="0.02")["int8"].max_flip_fraction == 0.02
    assert chosen_gates() == parity.DEFAULT_GATES
    y = np.array([0, 1] * 50)
    ref = np.where(y == 1, 0.8, 0.2) + np.linspace(0, 0.1, 100)
    three = ref.copy()
    three[[0, 2, 4]] = 0.55  # 3 flips in 100
    figures = parity.compare(y, ref, three, 0.5)
    assert parity.judge(figures, "int8")[0] == "fail" and parity.judge(figures, "int8", gates)[0] == "pass"
    small = parity.compare(y[:12], ref[:12], ref[:12], 0.5, {"all": np.ones(12, bool)}, min_class=6)
    assert small["subgroups"] and small["subgroups"][0]["one_pair_auroc"] == pytest.approx(1 / 36)
    for bad in ({"flips": "lots"}, {"flips": "150%"}, {"auroc_drop": -0.1}, {"min_subgroup_class": 0}):
        with pytest.raises(UserError):
            chosen_gates(**bad)
    # The search's probes meet a tighter int8 gate; the artifacts, and the other precisions, the user's own.
    tight = gates.with_margin(0.8)
    assert tight["int8"].max_flip_fraction == pytest.approx(0.04) and tight["int8"].max_auroc_drop == 0.008
    assert tight["int8"].max_subgroup_auroc_drop == pytest.approx(0.008) and tight["fp16"] == gates["fp16"]
    assert tight.min_subgroup_class == 3 and gates["int8"].max_flip_fraction == 0.05


def test_a_second_runtime_is_named_or_its_absence_explained(tmp_path: Path, monkeypatch) -> None:
    from export import witness

    with pytest.raises(witness.Unavailable, match="only one"):
        witness.runtime_for(tmp_path / "m.pte")
    assert witness.runtime_for(tmp_path / "m.onnx").startswith("openvino ")
    assert witness.runtime_for(tmp_path / "m.tflite").startswith("tensorflow ")  # make test made .venv-witness
    monkeypatch.setenv(witness.TF_ENV, str(tmp_path / "no-python"))
    with pytest.raises(witness.Unavailable, match="make witness"):
        witness.runtime_for(tmp_path / "m.tflite")


def test_one_tf_lite_process_witnesses_every_tflite_and_a_dead_one_is_replaced(phone_export: Path) -> None:
    """An export's .tflite witnesses share one tf.lite process (TensorFlow imported once, started before the
    export's first artifact); it answers as the one-shot script does, a file it cannot read fails that
    request alone, and a process that died is replaced at the next request."""
    import subprocess

    from export import tflite_witness, witness

    assert witness.REPLY == tflite_witness.REPLY  # the script imports no project code, so it keeps its own copy
    artifacts = sorted(phone_export.glob("*.tflite"))
    assert len(artifacts) == 2, artifacts  # fp32 and int8
    image, meta = (t.numpy() for t in example_inputs(runners.read_spec(artifacts[0]), 5))
    image = image + np.linspace(0, 1, len(image), dtype=np.float32).reshape(-1, 1, 1, 1)  # five other cases
    server = witness._TF_LITE
    try:
        witness.prepare({".onnx", ".pte"})  # nothing to start for these
        assert server._process is None
        witness.prepare({".onnx", ".tflite"})  # an export with a .tflite starts it before its first artifact
        process = server._process
        assert process is not None and process.poll() is None and server._inputs is None
        first = [witness.predict(path, image, meta, nhwc=True) for path in artifacts]
        assert server._process is process and server._inputs is not None  # the one started beforehand serves
        written = server._inputs[3]
        second = witness.predict(artifacts[1], image, meta, nhwc=True)
        assert server._process is process and server._inputs[3] == written  # the same process and inputs file
        np.testing.assert_array_equal(second, first[1])
        inputs, output = written.with_name("mine.npz"), written.with_name("mine.npy")
        np.savez(inputs, image=np.ascontiguousarray(image.transpose(0, 2, 3, 1)), meta=meta)
        command = [str(witness._tf_python()), str(Path(tflite_witness.__file__)), str(artifacts[1]), str(inputs)]
        subprocess.run([*command, str(output)], check=True, capture_output=True, timeout=600)
        np.testing.assert_array_equal(np.load(output), first[1])
        assert len(set(np.round(first[0], 6))) > 1  # the cases differ, and so do their answers
        bad = written.with_name("bad.tflite")
        bad.write_bytes(b"not a flatbuffer")
        with pytest.raises(RuntimeError, match="TFL3"):
            witness.predict(bad, image, meta, nhwc=True)
        assert server._process is process and process.poll() is None  # still serving
        process.kill()
        process.wait()
        np.testing.assert_array_equal(witness.predict(artifacts[0], image, meta, nhwc=True), first[0])
        assert server._process is not None and server._process is not process
    finally:
        witness.close()
    assert server._process is None and server._inputs is None


def test_tflite_ranges_measured_in_cpp_equal_the_python_calibrators(monkeypatch) -> None:
    """The C++ min / max of each tensor (the calibrator's profiler-based mode) gives the ranges the Python
    mode reads tensor by tensor; a padded max pool (a -inf padding constant, which only the Python mode
    leaves out) sends the calibration back to the Python mode."""
    import litert_torch
    from ai_edge_quantizer import recipe_manager
    from ai_edge_quantizer.qtyping import TFLOperationName

    from export import tflite_format

    class Net(torch.nn.Module):
        def __init__(self, pool: bool):
            super().__init__()
            self.conv, self.head = torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.Conv2d(8, 4, 3)
            self.pool = torch.nn.MaxPool2d(3, 2, padding=1) if pool else torch.nn.AvgPool2d(2)

        def forward(self, image: torch.Tensor, meta: torch.Tensor) -> dict[str, torch.Tensor]:
            x = self.head(self.pool(torch.relu(self.conv(image.permute(0, 3, 1, 2)))))
            return {"logit": x.mean((1, 2, 3)).unsqueeze(1) + meta.sum(1, keepdim=True)}

    class Cases:
        rng = np.random.default_rng(0)
        image = rng.standard_normal((6, 3, 16, 16)).astype(np.float32) - 2
        meta = rng.standard_normal((6, 2)).astype(np.float32)

        def __len__(self) -> int:
            return 6

    manager = recipe_manager.RecipeManager()
    manager.add_static_config(
        regex=".*", operation_name=TFLOperationName.ALL_SUPPORTED, activation_num_bits=8, weight_num_bits=8
    )
    measured, calibrate = [], tflite_format._calibrate

    def recorded(*args: object, profiled: bool = True) -> dict:
        measured.append("C++" if profiled else "Python")
        return calibrate(*args, profiled=profiled)

    monkeypatch.setattr(tflite_format, "_calibrate", recorded)
    for pool, ways in ((False, ["C++"]), (True, ["C++", "Python"])):
        example = {"image": torch.randn(1, 16, 16, 3), "meta": torch.randn(1, 2)}
        fp32 = litert_torch.convert(Net(pool).eval(), sample_kwargs=example).model_content()
        measured.clear()
        fast = tflite_format._calibrate(fp32, manager, Cases())
        assert measured == ways, (pool, measured)
        python = calibrate(fp32, manager, Cases(), profiled=False)
        assert set(python) <= set(fast) and len(python) > 4
        for name, qsv in python.items():
            for key in ("min", "max"):
                assert fast[name][key].dtype == np.float32 and np.isfinite(fast[name][key]).all()
                np.testing.assert_array_equal(fast[name][key].reshape(-1), qsv[key].reshape(-1), err_msg=name)


def test_tensorflow_is_not_installed_beside_torch() -> None:
    """TensorFlow imported before torch's triton crashes the process (coremltools imports it when it can),
    so the .tflite witness keeps it in its own environment."""
    import importlib.util

    assert importlib.util.find_spec("tensorflow") is None
