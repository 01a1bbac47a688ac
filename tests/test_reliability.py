"""Nothing lost, nothing stale, nothing silent: the failure scenarios a demanding user hits, each replayed."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from core.errors import UserError
from core.io import exclusive, sha256_file
from export import runners
from export.common import InvalidInput, example_inputs, sample_meta
from tests.conftest import ROOT, TINY, write_isic_fixture


def command(module: str, *args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run(
        [sys.executable, "-m", module, *args], capture_output=True, text=True, cwd=ROOT, env=env, timeout=timeout
    )


def one_sentence(result: subprocess.CompletedProcess, fragment: str) -> None:
    assert result.returncode == 2, result.stderr[-3000:]
    assert fragment in result.stderr, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: ")


def export_args(run: Path, out: Path, *extra: str) -> list[str]:
    return ["--checkpoint", str(run / "checkpoint.pt"), "--formats", "onnx", "--golden", "0", "--out", str(out), *extra]


@pytest.fixture(scope="module")
def onnx_export(tiny_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("reliability") / "dist"
    result = command("export.all", *export_args(tiny_run, out))
    assert result.returncode == 0, result.stderr[-3000:]
    return out


def folder_state(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): sha256_file(p) for p in sorted(folder.rglob("*")) if p.is_file()}


# ---- 1. a JPEG truncated after its header ---------------------------------------------------------------


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # the header survives, the scan data does not


@pytest.mark.slow
def test_a_truncated_jpeg_is_skipped_while_training_and_listed(tmp_path: Path) -> None:
    from PIL import Image

    from train.loop import TrainConfig, run

    root = tmp_path / "isic"
    write_isic_fixture(root, n=80, odd_images=False)
    broken = root / "jpeg" / "train" / "ISIC_0000020.jpg"
    _truncate(broken)
    with Image.open(broken) as image:
        assert image.size == (48, 48)  # the pre-scan's header check passes it
    out = tmp_path / "run"
    metrics = run(TrainConfig(**{**TINY, "data": str(root)}, epochs=1, out=str(out), max_bad_images=0.05))
    skipped = pd.read_csv(out / "skipped_images.csv")
    assert skipped.set_index("image_name").loc["ISIC_0000020", "found"] == "loading"
    assert "ISIC_0000020" not in set(pd.read_csv(out / "split.csv")["image_name"])
    assert metrics["data"]["skipped_images"] == 1


@pytest.mark.slow
def test_too_many_truncated_jpegs_end_in_one_sentence(tmp_path: Path) -> None:
    root = tmp_path / "isic"
    write_isic_fixture(root, n=60, odd_images=False)
    for i in range(12, 24):
        _truncate(root / "jpeg" / "train" / f"ISIC_{i:07d}.jpg")
    args = ["--model", "standard_cnn", "--weights", "none", "--data", str(root), "--image-size", "32"]
    result = command("train", *args, "--epochs", "1", "--workers", "0", "--out", str(tmp_path / "r"))
    one_sentence(result, "missing or unreadable")


# ---- 2. an interrupted export leaves the previous one intact ------------------------------------------


@pytest.mark.slow
def test_an_interrupted_export_leaves_the_previous_export_intact(tiny_run: Path, onnx_export: Path) -> None:
    out = onnx_export.parent / "interrupted"
    shutil.copytree(onnx_export, out)
    before = folder_state(out)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    args = [sys.executable, "-m", "export.all", *export_args(tiny_run, out, "--overwrite")]
    args[args.index("onnx")] = "onnx,torchscript,tflite"
    process = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    staging = []
    while time.time() < deadline and process.poll() is None:  # wait until the new export has written an artifact
        staging = [p for p in out.parent.glob(f".{out.name}.staging-*") if any(p.glob("*/*.onnx"))]
        if staging:
            break
        time.sleep(0.2)
    assert staging, "the export never reached its first artifact"
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr[-2000:]
    assert folder_state(out) == before  # the earlier export, untouched: no new artifact beside an old report
    assert not list(out.parent.glob(f".{out.name}.staging-*"))


@pytest.mark.slow
def test_a_second_writer_and_an_existing_export_are_refused(tiny_run: Path, onnx_export: Path, tmp_path: Path) -> None:
    one_sentence(command("export.all", *export_args(tiny_run, onnx_export)), "already holds an export")
    busy = tmp_path / "busy"
    with exclusive(busy, "export"):
        one_sentence(command("export.all", *export_args(tiny_run, busy)), "is using")
    (tmp_path / "a-file").write_text("x")
    one_sentence(command("export.all", *export_args(tiny_run, tmp_path / "a-file")), "is a file, not a folder")


# ---- 3. the benchmark reads the folder it is given and trusts only what parity checked -------------------


@pytest.mark.slow
def test_benchmark_times_the_folder_it_is_given_and_refuses_a_changed_artifact(
    onnx_export: Path, tmp_path: Path
) -> None:
    moved = tmp_path / "moved"
    shutil.copytree(onnx_export, moved)
    args = ["--model", "standard_cnn", "--runs", "3", "--warmup", "0", "--no-memory", "--threads", "1"]
    result = command("benchmark", *args, "--artifacts", str(moved))
    assert result.returncode == 0, result.stderr[-3000:]
    rows = json.loads((moved / "benchmark.json").read_text())["rows"]
    assert {r["format"] for r in rows} == {"pytorch-eager", "onnx"}
    assert all(Path(r["path"]).parent == moved for r in rows if r["format"] == "onnx")
    with (moved / "standard_cnn.onnx").open("ab") as f:
        f.write(b"\0")
    one_sentence(command("benchmark", *args, "--artifacts", str(moved)), "is not the file export.all checked")


def test_imported_logs_are_checked_before_anything_is_timed(tmp_path: Path) -> None:
    (tmp_path / "bad.log").write_text("nothing useful\n")
    result = command(
        "benchmark",
        "--model",
        "standard_cnn",
        "--artifacts",
        str(tmp_path / "no-export"),
        "--import-phone",
        f"pixel8={tmp_path / 'bad.log'}",
    )
    one_sentence(result, "no LiteRT benchmark_model or ExecuTorch timing line")


def test_unstable_timings_and_a_busy_machine_are_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    from benchmark.env import machine_load
    from benchmark.stats import stability, unstable_rows

    steady = stability([10.0] * 50)
    assert not steady["unstable"]
    drifting = stability([10.0] * 25 + [16.0] * 25)
    assert drifting["unstable"] and drifting["drift_ratio"] == pytest.approx(1.6)
    spiky = stability([10.0] * 40 + [1600.0] * 10)
    assert spiky["unstable"] and spiky["tail_ratio"] > 100
    row = {"model": "m", "format": "pytorch-eager", "precision": "fp32", "threads": 2, "batch": 1, **spiky}
    assert "do not trust these numbers" in unstable_rows([row])[0]
    monkeypatch.setattr(os, "getloadavg", lambda: (9.0, 9.0, 9.0))
    assert "not to be trusted" in machine_load()
    monkeypatch.setattr(os, "getloadavg", lambda: (0.1, 0.1, 0.1))
    assert machine_load() is None


# ---- 4. finished runs are not overwritten ----------------------------------------------------------------


def test_a_finished_run_is_refused_unless_overwrite(tiny_run: Path, tmp_path: Path) -> None:
    base = ["--model", "standard_cnn", "--weights", "none", "--synthetic-count", "150", "--image-size", "32"]
    one_sentence(command("train", *base, "--out", str(tiny_run)), "holds a finished run")
    (tmp_path / "a-file").write_text("x")
    one_sentence(command("train", *base, "--out", str(tmp_path / "a-file")), "is a file, not a folder")
    one_sentence(command("benchmark", "--model", "standard_cnn", "--out", str(tmp_path / "a-file")), "is a file")
    interrupted = tmp_path / "interrupted"
    interrupted.mkdir()
    (interrupted / "last.pt").write_bytes(b"x")
    one_sentence(command("train", *base, "--out", str(interrupted)), "holds an interrupted run")


# ---- 5. runners refuse inputs and specs that break the contract -----------------------------------------


def test_runners_refuse_inputs_that_break_the_spec(onnx_export: Path) -> None:
    runner = runners.load(onnx_export / "standard_cnn.onnx")
    size = runner.spec.image.size
    image = np.random.default_rng(0).random((2, 3, size, size), dtype=np.float32)
    meta = sample_meta(runner.spec, 2)
    assert runner.predict(image, meta).probability.shape == (2, 1)
    for bad_image, message in (
        (np.where(image > 0.5, np.nan, image), "NaN or infinite"),
        (image * 255, "outside the spec's range"),
        ((image * 255).astype(np.uint8), "must be float32"),
        (image[:, :, :-1], "must be [N, 3"),
    ):
        with pytest.raises(InvalidInput, match=message.replace("[", r"\[")):
            runner.predict(bad_image, meta)
    for change, message in (
        (lambda m: m.__setitem__((0, 8), 7.0), "not one-hot"),
        (lambda m: m.__setitem__((1, 2), 1.0), "not one-hot"),
        (lambda m: m.__setitem__((0, slice(0, 2)), (0.4, 1.0)), "age_missing"),
        (lambda m: m.__setitem__((0, slice(0, 2)), (40.0, 0.0)), "decodes to"),
    ):
        broken = meta.copy()
        change(broken)
        with pytest.raises(InvalidInput, match=message):
            runner.predict(image, broken)


@pytest.mark.slow
@pytest.mark.parametrize("fmt_key", ["onnx", "tflite", "executorch"])
def test_an_embedded_spec_that_disagrees_with_the_graph_is_refused(fmt_key: str, tmp_path: Path) -> None:
    import dataclasses

    from export.formats import BY_KEY
    from tests.test_export import small_model

    model, spec = small_model("standard_cnn")
    fmt = BY_KEY[fmt_key]
    path = tmp_path / f"m{fmt.artifacts[0].suffix}"
    size = spec.image.size * 2
    contract = spec.contract | {"image": spec.contract["image"] | {"size": size}}
    wider = dataclasses.replace(spec, image=dataclasses.replace(spec.image, size=size), contract=contract)
    fmt.exporter(fmt.artifacts[0])(model, wider, example_inputs(spec, 2), path, "fp32")  # traced at the old size
    with pytest.raises(UserError, match="embedded spec says"):
        runners.load(path)


# ---- 6. a tampered split.csv ------------------------------------------------------------------------------


def test_a_tampered_split_is_refused(tiny_run: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    split = pd.read_csv(run / "split.csv")
    split["split"] = "test"
    split.to_csv(run / "split.csv", index=False)
    one_sentence(command("export.all", *export_args(run, tmp_path / "out")), "is not the split this checkpoint")
    from core.checkpoint import load_checkpoint
    from core.evaluation import load_test_split

    _, spec = load_checkpoint(run / "checkpoint.pt")
    spec.provenance["data"].pop("split_sha256")  # an older checkpoint: the recorded counts still catch it
    with pytest.raises(UserError, match="lists 0 train images but the checkpoint was trained with"):
        load_test_split(run / "checkpoint.pt", spec)


# ---- 8. every artifact passes its own format's strictest checker -------------------------------------------


def test_onnx_fp16_passes_the_full_checker(tmp_path: Path) -> None:
    import onnx

    from export.onnx_format import check, export, topologically_sorted
    from tests.test_export import small_model

    model, spec = small_model("standard_cnn")
    path = export(model, spec, example_inputs(spec, 2), tmp_path / "m.fp16.onnx", "fp16")
    onnx.checker.check_model(str(path), full_check=True)
    check(path)
    proto = onnx.load(str(path))
    nodes = list(proto.graph.node)
    del proto.graph.node[:]
    proto.graph.node.extend(reversed(nodes))  # what the float16 converter's appended casts amount to
    with pytest.raises(onnx.checker.ValidationError, match="topologically sorted"):
        onnx.checker.check_model(proto, full_check=True)
    onnx.checker.check_model(topologically_sorted(proto), full_check=True)


def test_a_checker_failure_is_the_rows_status(tiny_run: Path, tmp_path: Path, monkeypatch) -> None:
    from export import onnx_format
    from export import pipeline as export_all_module
    from export.formats import BY_KEY

    def refuse(path: Path) -> None:
        raise UserError(f"{path.name} fails the ONNX checker (full check): simulated")

    monkeypatch.setattr(onnx_format, "check", refuse)
    out = tmp_path / "out"
    out.mkdir()
    summary = export_all_module.export_all(tiny_run / "checkpoint.pt", out, [BY_KEY["onnx"]], golden_count=0)
    row = summary["rows"][1]
    assert row["status"] == "fail" and "fails the ONNX checker" in row["reason"]


# ---- 9. the smaller messages --------------------------------------------------------------------------------


def test_a_code_running_pickle_is_named_as_such(tmp_path: Path) -> None:
    import pickle

    from core.checkpoint import read_checkpoint

    class Payload:
        def __reduce__(self):
            return (print, ("this would run",))

    with (tmp_path / "evil.pt").open("wb") as f:
        pickle.dump(Payload(), f)
    torch.save({"state_dict": {"w": torch.zeros(1)}, "extra": Payload()}, tmp_path / "evil2.pt")
    for name in ("evil.pt", "evil2.pt"):
        with pytest.raises(UserError, match="loading it could run code") as info:
            read_checkpoint(tmp_path / name)
        assert "complete" not in str(info.value)


def test_csv_messages_name_the_real_problem(tmp_path: Path) -> None:
    from core import datasets

    root = tmp_path / "isic"
    write_isic_fixture(root, n=12, odd_images=False)
    csv = root / "train.csv"
    frame = pd.read_csv(csv)
    frame.head(0).to_csv(csv, index=False)
    with pytest.raises(UserError, match="has a header but no rows"):
        datasets.load_isic2020(root)
    frame.to_csv(csv, index=False, sep=";")
    with pytest.raises(UserError, match="looks semicolon-separated"):
        datasets.load_isic2020(root)
    frame.loc[2, "target"] = 2
    frame.to_csv(csv, index=False)
    with pytest.raises(UserError, match=r"target must be 0 or 1, got 2$"):
        datasets.load_isic2020(root)
