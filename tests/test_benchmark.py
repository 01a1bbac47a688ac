"""Benchmark: statistics, recommendation logic, phone-log import, report writing, and the command."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from benchmark.env import fingerprint, peak_gflops
from benchmark.phone import parse_log
from benchmark.report import markdown, recommend, write_reports
from benchmark.stats import regressions, speedup, summarize
from core.errors import UserError
from tests.conftest import ROOT


def test_summarize_known_timings() -> None:
    s = summarize(list(range(1, 101)), batch=4)  # 1..100 ms
    assert s["p50_ms"] == pytest.approx(50.5)
    assert s["p90_ms"] == pytest.approx(90.1)
    assert s["p99_ms"] == pytest.approx(99.01)
    assert s["iqr_ms"] == pytest.approx(49.5)
    assert s["throughput_per_s"] == pytest.approx(4 * 1000 / 50.5)
    assert speedup(40.0, 10.0) == 4.0
    with pytest.raises(ValueError):
        summarize([])


def test_regressions_flag_only_real_slowdowns() -> None:
    key = {"model": "m", "format": "onnx", "precision": "fp32", "threads": 2, "batch": 1}
    before = [{**key, "p50_ms": 10.0}]
    assert regressions([{**key, "p50_ms": 11.5}], before) == []
    flagged = regressions([{**key, "p50_ms": 13.0}], before)
    assert flagged and flagged[0]["slowdown"] == pytest.approx(1.3)


def _row(fmt: str, p50: float, status: str, precision: str = "fp32") -> dict:
    return {
        "model": "m",
        "format": fmt,
        "precision": precision,
        "threads": 2,
        "batch": 1,
        "p50_ms": p50,
        "p90_ms": p50 * 1.1,
        "size_mb": 10.0,
        "speedup_vs_eager": 40 / p50,
        "parity_status": status,
        "auroc_delta": 0.0,
        "flips": 0,
        "path": f"/x/m.{fmt}",
    }


def test_a_faster_artifact_that_failed_parity_is_never_recommended() -> None:
    rows = [
        _row("pytorch-eager", 40.0, "reference"),
        _row("tflite", 3.0, "fail", "int8"),  # fastest, but failed its gate
        _row("tflite", 8.0, "pass"),
        _row("executorch", 9.0, "pass"),
        _row("onnx", 7.0, "pass"),
    ]
    skipped = [{"model": "m", "format": "coreml", "precision": "fp32", "reason": "converted, not run (needs macOS)"}]
    picks = {p["target"]: p for p in recommend(rows, skipped)}
    assert picks["Android"]["format"] == "tflite" and picks["Android"]["p50_ms"] == 8.0
    assert picks["anywhere (ONNX Runtime)"]["format"] == "onnx"
    assert picks["iOS"]["format"] is None and "needs macOS" in picks["iOS"]["reason"]


def test_phone_logs_are_parsed_not_invented(tmp_path: Path) -> None:
    log = tmp_path / "bm.log"
    log.write_text(
        "Graph: [/data/local/tmp/efficientnet_lite0.tflite]\n"
        "Inference timings in us: Init: 41213, First inference: 20345, Warmup (avg): 9120.5, Inference (avg): 8713.2\n"
        "Memory footprint delta from the start of the tool (MB): init=12.3 overall=20.1\n"
    )
    row = parse_log(log, "pixel8")
    assert row["avg_ms"] == pytest.approx(8.7132) and row["peak_mb"] == 20.1
    assert row["artifact"] == "efficientnet_lite0.tflite"
    et = tmp_path / "et.log"
    et.write_text("I 00:00:01 Model executed successfully 50 time(s) in 431.0 ms.\n")
    assert parse_log(et, "s24")["avg_ms"] == pytest.approx(8.62)
    (tmp_path / "bad.log").write_text("nothing useful\n")
    with pytest.raises(UserError, match="no LiteRT benchmark_model or ExecuTorch timing line"):
        parse_log(tmp_path / "bad.log", "x")


def test_environment_and_peak_estimate() -> None:
    env = fingerprint([2])
    assert env["logical_cores"] >= 1 and "torch" in env["packages"]
    assert peak_gflops({"cpu_mhz": 3000.0, "simd": ["avx2", "fma"]}, 2) == pytest.approx(2 * 3.0 * 32)
    assert peak_gflops({"cpu_mhz": None}, 2) is None


def test_reports_are_written(tmp_path: Path) -> None:
    rows = [_row("pytorch-eager", 40.0, "reference"), _row("onnx", 7.0, "pass"), _row("tflite", 3.0, "fail", "int8")]
    for r in rows:
        r.update(p99_ms=r["p50_ms"] * 1.3, iqr_ms=0.5, mean_ms=r["p50_ms"], std_ms=0.2, throughput_per_s=1.0)
    result = {
        "time": "t",
        "models": ["m"],
        "threads": [2],
        "batches": [1],
        "runs": 10,
        "warmup": 2,
        "environment": fingerprint([2]),
        "rows": rows,
        "skipped": [],
        "recommended": recommend(rows),
        "regressions": [],
        "phone_rows": [],
    }
    paths = write_reports(tmp_path, result, tmp_path / "history.jsonl")
    for key in ("json", "md", "html", "csv"):
        assert paths[key].is_file()
    assert json.loads(paths["json"].read_text())["rows"][1]["format"] == "onnx"
    assert "data:image/png;base64," in paths["html"].read_text()
    assert (tmp_path / "benchmark_figures" / "latency_t2_b1.png").stat().st_size > 1000
    assert "| m | anywhere (ONNX Runtime) | `m.onnx` |" in markdown(result)
    write_reports(tmp_path, result, tmp_path / "history.jsonl")
    assert len((tmp_path / "history.jsonl").read_text().splitlines()) == 2


@pytest.mark.slow
def test_benchmark_command_on_an_export(phone_export: Path, tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    dist = tmp_path / "dist"
    shutil.copytree(phone_export, dist)  # the session's export of the tiny run (ONNX, TFLite; fp32, int8)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmark",
            "--model",
            "standard_cnn",
            "--artifacts",
            str(dist),
            "--runs",
            "5",
            "--warmup",
            "1",
            "--batch",
            "1,2",
            "--threads",
            "1",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    bench = json.loads((dist / "benchmark.json").read_text())
    formats = {(r["format"], r["batch"]) for r in bench["rows"]}
    assert {("pytorch-eager", 1), ("onnx", 1), ("tflite", 2)} <= formats
    eager = next(r for r in bench["rows"] if r["format"] == "pytorch-eager" and r["batch"] == 1)
    assert eager["speedup_vs_eager"] == pytest.approx(1.0)
    assert all(r["p50_ms"] > 0 and r["size_mb"] > 0 for r in bench["rows"])
    assert any(r.get("peak_mb") for r in bench["rows"])
    figure = "benchmark_figures/size_vs_latency.png"
    for name in ("benchmark.md", "benchmark.html", "benchmark.csv", figure, "benchmark_history.jsonl"):
        assert (dist / name).is_file()


def test_benchmark_without_export_says_what_to_run(tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    result = subprocess.run(
        [sys.executable, "-m", "benchmark", "--model", "mobilenet", "--artifacts", str(tmp_path)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2 and "python -m export.all --model mobilenet_v2" in result.stderr
    bad = subprocess.run(
        [sys.executable, "-m", "benchmark", "--model", "mobilenet", "--threads", "0"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2 and "--threads takes comma-separated positive integers" in bad.stderr


def test_the_zoo_report_gives_each_formats_int8_float_modules_and_speed_against_fp32(tmp_path) -> None:
    import json

    from benchmark.zoo_report import _int8_rows

    rows = [
        {"format": "pytorch-eager", "precision": "fp32", "status": "reference"},
        {"format": "onnx", "precision": "int8", "status": "pass", "float_modules": 10, "activation_bits": 8},
        {"format": "tflite", "precision": "int8", "status": "fail", "float_modules": 2, "activation_bits": 16},
        {"format": "torchscript.pt", "precision": "int8", "status": "unsupported"},
    ]
    (tmp_path / "parity.json").write_text(json.dumps({"model": "m", "recommended": {}, "rows": rows}))
    timed = [
        {"model": "m", "batch": 1, "format": f, "precision": p, "p50_ms": ms}
        for f, p, ms in (("onnx", "fp32", 10.0), ("onnx", "int8", 8.0), ("tflite", "fp32", 9.0))
    ]
    table = _int8_rows({"model": "m", "export": str(tmp_path)}, timed)
    assert table == [
        ["m", "onnx", "pass", "10", "8", "8.00", "10.00", "1.25"],
        ["m", "tflite", "fail", "2", "16", "-", "9.00", "-"],
    ]
