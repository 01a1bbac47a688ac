"""The second adversarial sweep's export / benchmark cases, each ending in one sentence or the right outcome:
the output-folder rule, a full disk, torn history, a gate that cannot be computed, runners on odd paths and
tensors, the parity.json reader, the lock a benchmark holds."""

from __future__ import annotations

import errno
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from core.errors import UserError, describe_os_error, run_cli
from core.io import append_jsonl, claim_output_folder, exclusive, read_jsonl
from core.parity_file import ParityReport
from export import parity


def never(_: Path) -> bool:
    return False


def test_a_folder_of_the_users_own_files_is_never_replaced(tmp_path: Path) -> None:
    thesis = tmp_path / "thesis"
    thesis.mkdir()
    (thesis / "chapter1.docx").write_text("years of work")
    with pytest.raises(UserError, match=r"not an export .*chapter1\.docx.*would delete"):
        claim_output_folder(thesis, never, "an export", overwrite=True)
    assert (thesis / "chapter1.docx").read_text() == "years of work"


def test_the_output_folder_rule(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(UserError, match=r"lies under .*file\.txt, which is a file, not a folder"):
        claim_output_folder(tmp_path / "file.txt" / "out", never, "an export", False)
    with pytest.raises(UserError, match="is a file"):
        claim_output_folder(tmp_path / "file.txt", never, "an export", False)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError, match="current folder"):
        claim_output_folder(Path("."), never, "an export", True)
    earlier = tmp_path / "earlier"
    earlier.mkdir()
    (earlier / "parity.json").write_text("{}")
    with pytest.raises(UserError, match="pass --overwrite"):
        claim_output_folder(earlier, lambda e: True, "an export", False)
    assert claim_output_folder(earlier, lambda e: True, "an export", True) == earlier.resolve()
    assert claim_output_folder(tmp_path / "new", never, "an export", False) == (tmp_path / "new").resolve()
    with pytest.raises(UserError, match="MB is free"):
        claim_output_folder(tmp_path / "new", never, "an export", False, needed_mb=1e12)


def test_export_refuses_the_checkpoints_own_run_folder(tiny_run: Path) -> None:
    from export.all import main

    before = sorted(p.name for p in tiny_run.iterdir())
    with pytest.raises(UserError, match="holds the checkpoint"):
        main(["--checkpoint", str(tiny_run / "checkpoint.pt"), "--out", str(tiny_run), "--overwrite"])
    assert sorted(p.name for p in tiny_run.iterdir()) == before


def test_an_earlier_export_is_recognised_by_its_parity_json(tmp_path: Path) -> None:
    from export.all import earlier_export

    folder = tmp_path / "dist"
    folder.mkdir()
    rows = [{"format": "onnx", "precision": "fp32", "status": "pass", "file": "m.onnx", "sha256": "x"}]
    (folder / "parity.json").write_text(json.dumps({"model": "m", "rows": rows, "recommended": {}}))
    ours = earlier_export(folder)
    assert ours(folder / "m.onnx") and ours(folder / "m.onnx.spec.json") and ours(folder / "benchmark.json")
    assert ours(folder / "latency_t2_b1.png") and ours(folder / ".benchmark.json.k3j2") and ours(folder / "roc.png")
    assert ours(folder / "benchmark_figures") and ours(folder / "model.sig")
    assert not ours(folder / "holiday.jpg") and not ours(folder / "holiday.png") and not ours(folder / ".bashrc")
    assert not earlier_export(tmp_path)(folder)
    (folder / "parity.json").write_text("damaged")  # the artifacts are still recognised by their suffixes
    (folder / "m.tflite").write_bytes(b"x")
    assert earlier_export(folder)(folder / "m.tflite") and not earlier_export(folder)(folder / "thesis.pdf")


def test_the_swap_carries_what_must_survive(tmp_path: Path) -> None:
    from core.io import staged_folder

    out = tmp_path / "dist"
    out.mkdir()
    (out / "old.onnx").write_text("stale")
    (out / "benchmark_history.jsonl").write_text("{}\n")
    (out / "notes.txt").write_text("written while the export ran")
    with staged_folder(out, keep=lambda e: e.name != "old.onnx") as staging:
        (staging / "new.onnx").write_text("fresh")
    assert sorted(p.name for p in out.iterdir()) == ["benchmark_history.jsonl", "new.onnx", "notes.txt"]


def test_readers_share_a_folder_and_writers_do_not(tmp_path: Path) -> None:
    folder = tmp_path / "dist"
    readers = (exclusive(folder, "benchmark", shared=True), exclusive(folder, "benchmark", shared=True))
    with readers[0], readers[1], pytest.raises(UserError, match="right now"), exclusive(folder, "export"):
        pass
    writer, reader = exclusive(folder, "export"), exclusive(folder, "benchmark", shared=True)
    with writer, pytest.raises(UserError, match=r"an export \(process"), reader:
        pass


def test_os_errors_a_person_can_fix_are_one_sentence(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    full = OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "x.onnx"))
    assert "disk is full" in describe_os_error(full) and "MB free" in describe_os_error(full)
    assert "give a folder you may write to" in describe_os_error(PermissionError(errno.EACCES, "denied", "/ro"))
    assert describe_os_error(OSError(errno.ENOENT, "gone")) is None
    assert "a file stands where a folder is needed" in describe_os_error(NotADirectoryError(errno.ENOTDIR, "x", "/f/a"))

    def fails(_: object) -> int:
        raise OSError(errno.EROFS, "Read-only file system", "/mnt/ro/out")

    assert run_cli(fails) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_a_full_disk_during_an_export_stops_it_whole(tmp_path: Path) -> None:
    from export.pipeline import out_of_space

    out_of_space(tmp_path, ValueError("a converter's own failure"))  # plenty of space: the row fails, no more
    wrapped = RuntimeError("unexpected pos 4096 vs 0")
    wrapped.__cause__ = OSError(errno.ENOSPC, "No space left on device")
    with pytest.raises(UserError, match="filled up during the export"):
        out_of_space(tmp_path, wrapped)


def test_a_torn_history_line_is_dropped_not_joined(tmp_path: Path) -> None:
    history = tmp_path / "benchmark_history.jsonl"
    history.write_text(json.dumps({"run": 1}) + "\n" + '{"run": 2, "rows": [{"p50')
    append_jsonl(history, {"run": 3})
    assert read_jsonl(history) == [{"run": 1}, {"run": 3}]
    assert history.read_text().endswith("\n")
    history.write_text(json.dumps({"run": 1}) + "\nnot json\n")
    assert read_jsonl(history) == [{"run": 1}]


def test_a_gate_that_cannot_be_computed_fails() -> None:
    y = np.array([1])  # --limit 1: one melanoma, no AUROC
    figures = parity.compare(y, np.array([0.9]), np.array([0.9]), 0.5, groups={"sex=male": np.array([True])})
    status, reasons = parity.judge(figures, "fp32")
    assert status == "fail" and any("AUROC cannot be computed" in r for r in reasons)
    assert any("no subgroup" in r for r in reasons)
    y = np.array([0, 1] * 20)
    ref = np.linspace(0.1, 0.9, 40)
    small = parity.compare(y, ref, ref, 0.5, groups={"site=torso": np.arange(40) < 6})
    status, reasons = parity.judge(small, "int8")  # the one subgroup considered is too small to judge
    assert status == "fail" and reasons == [r for r in reasons if "no subgroup" in r] and len(reasons) == 1


def test_the_parity_reader_refuses_what_it_cannot_trust(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="not found"):
        ParityReport.load(tmp_path)
    (tmp_path / "parity.json").write_text("")
    with pytest.raises(UserError, match="cannot be read as JSON"):
        ParityReport.load(tmp_path)
    old = {"model": "m", "recommended": {}, "rows": [{"format": "onnx", "precision": "fp32", "status": "pass"}]}
    old["rows"][0]["path"] = "/elsewhere/m.onnx"
    (tmp_path / "parity.json").write_text(json.dumps(old))
    with pytest.raises(UserError, match=r"older export\.all"):
        ParityReport.load(tmp_path)
    (tmp_path / "m.onnx").write_bytes(b"onnx")
    good = {"model": "m", "recommended": {"onnx": {"file": "m.onnx"}}}
    good["rows"] = [{"format": "onnx", "precision": "fp32", "status": "pass", "file": "m.onnx", "sha256": "0" * 64}]
    (tmp_path / "parity.json").write_text(json.dumps(good))
    report = ParityReport.load(tmp_path)
    with pytest.raises(UserError, match="sha256 differs"):
        report.verified(report.recommended_row("onnx"))


def test_runners_refuse_folders_and_damaged_lite_archives(tmp_path: Path) -> None:
    from export import runners

    (tmp_path / "dir.onnx").mkdir()
    with pytest.raises(UserError, match="is a folder, not an artifact"):
        runners.load(tmp_path / "dir.onnx")
    (tmp_path / "m.ptl").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(UserError, match="lite archive"):
        runners.load(tmp_path / "m.ptl")


def test_predict_takes_tensors_that_require_grad_or_are_bfloat16(tiny_run: Path) -> None:
    from core.checkpoint import load_checkpoint
    from export.common import example_inputs
    from export.runners import TorchEagerRunner

    model, spec = load_checkpoint(tiny_run / "checkpoint.pt")
    runner = TorchEagerRunner(tiny_run / "checkpoint.pt", model, spec)
    image, meta = example_inputs(spec, batch=2)
    expected = runner.predict(image, meta).probability
    got = runner.predict(image.clone().requires_grad_(True), meta.clone().requires_grad_(True)).probability
    assert np.array_equal(got, expected)
    half = runner.predict(image.to(torch.bfloat16), meta).probability
    assert np.abs(half - expected).max() < 0.05


def test_a_benchmark_refuses_a_folder_an_export_is_rebuilding(tmp_path: Path) -> None:
    from benchmark.__main__ import main

    folder = tmp_path / "dist"
    folder.mkdir()
    with exclusive(folder, "export"), pytest.raises(UserError, match=r"an export .* is using"):
        main(["--model", "standard_cnn", "--artifacts", str(folder)])


def test_a_slow_int8_artifact_is_explained_by_its_remedy() -> None:
    from benchmark.stats import int8_slower

    base = {"model": "m", "format": "onnx", "threads": 2, "batch": 1}
    rows = [
        base | {"precision": "fp32", "p50_ms": 4.5},
        base | {"precision": "int8", "p50_ms": 13.6, "remedy": "int16 activations (16x8); first conv ... in float"},
    ]
    vnni = {"simd": ["avx512_vnni"]}
    assert "16-bit" in int8_slower(rows, {"simd": []})[0]  # named before "no VNNI"
    rows[1]["remedy"] = "first conv, head and metadata MLP in float"  # an older export: its words only
    assert "keeps modules in float" in int8_slower(rows, vnni)[0]
    rows[1] |= {"remedy": "the 3 most int8-sensitive of 20 modules in float", "float_modules": 3, "activation_bits": 8}
    assert "keeps 3 module(s) in float" in int8_slower(rows, vnni)[0]
    both = int8_slower(rows, {"simd": ["avx2"]})[0]  # no VNNI: named first, the islands beside it
    assert both.index("no VNNI") < both.index("keeps 3 module(s) in float")
    rows[1] |= {"remedy": "none (per-channel int8 weights)", "float_modules": 0}
    assert "no VNNI" in int8_slower(rows, {"simd": []})[0]


@pytest.mark.slow
def test_export_reads_a_damaged_synthetic_cache_after_repairing_it(tiny_run: Path) -> None:
    """The run's test split is rebuilt from the synthetic cache: a deleted train.csv or an overwritten image
    makes the cache regenerate (it is deterministic), never a traceback or a silently different split."""
    from core.checkpoint import read_checkpoint_spec
    from core.evaluation import load_test_split

    checkpoint = tiny_run / "checkpoint.pt"
    spec = read_checkpoint_spec(checkpoint)
    before = load_test_split(checkpoint, spec)
    root = Path(spec.provenance["data"]["path"])
    (root / "train.csv").unlink()
    next((root / "train").glob("*.jpg")).write_bytes(b"overwritten")
    after = load_test_split(checkpoint, spec)
    assert np.array_equal(after.image, before.image) and np.array_equal(after.meta, before.meta)


def test_an_undecodable_evaluation_image_is_one_sentence(tmp_path: Path) -> None:
    from core.evaluation import decoded

    (tmp_path / "cut.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a whole jpeg")
    with pytest.raises(UserError, match="cannot be decoded"):
        decoded(tmp_path / "cut.jpg", "test")


def test_the_wrapped_attribute_names_every_scope() -> None:
    import re

    from export.common import WRAPPED, ExportModel
    from export.tflite_format import _outside_model_regex, _scopes

    assert getattr(ExportModel(torch.nn.Identity()), WRAPPED) is not None
    inside = "export.tflite_format._NamedOutputs/export.common.ExportModel_inner/my.Res_Net_model/x.Conv2d_stem;"
    assert _scopes(inside) == [["stem"]] and not re.match(_outside_model_regex(), inside)
    after = "export.tflite_format._NamedOutputs/export.common.ExportModel_inner;2"
    assert _scopes(after) == [] and re.match(_outside_model_regex(), after)


def test_a_benchmark_skips_a_row_whose_export_failed_before_it_was_verified(tmp_path: Path) -> None:
    from benchmark.__main__ import candidates

    (tmp_path / "m.int8.onnx").write_bytes(b"half-made")
    rows = [
        {"format": "pytorch-eager", "precision": "fp32", "status": "reference", "file": str(tmp_path / "x.pt")},
        {"format": "onnx", "precision": "int8", "status": "fail", "file": "m.int8.onnx", "reason": "checker"},
    ]
    (tmp_path / "parity.json").write_text(json.dumps({"model": "m", "rows": rows, "recommended": {}}))
    found, skipped, _ = candidates("m", tmp_path)
    assert not found and any("failed before it was verified" in s["reason"] for s in skipped)


def test_a_web_build_never_replaces_a_folder_it_does_not_own(tmp_path: Path) -> None:
    import subprocess
    import sys

    from tests.conftest import ROOT

    mine = tmp_path / "Documents"
    mine.mkdir()
    (mine / "cv.pdf").write_text("mine")
    export = tmp_path / "export"
    export.mkdir()
    rows = [{"format": "onnx", "precision": "fp32", "status": "pass", "file": "m.onnx", "sha256": "0" * 64}]
    (export / "parity.json").write_text(json.dumps({"model": "m", "rows": rows, "recommended": {}}))
    (export / "m.onnx").write_bytes(b"x")
    for out in (mine, export):
        result = subprocess.run(
            [sys.executable, str(ROOT / "web_demo" / "build.py"), "--artifacts", str(export), "--out", str(out)],
            capture_output=True,
            text=True,
        )
        assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert (mine / "cv.pdf").read_text() == "mine" and (export / "m.onnx").is_file()
