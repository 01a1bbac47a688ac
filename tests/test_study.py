"""The study: fresh runs, Table 1's statistics against scipy and hand-computed cases, resume, shards, bad options."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats

from core.errors import UserError
from tests.conftest import ROOT
from train import stats
from train.study import QUICK, Run, main, parse_shard, plan, shard

TINY = ["--models", "cnn,efficientnet_lite0", "--weights", "imagenet,none", "--seeds", "2", "--epochs", "1"]
TINY += ["--image-size", "32", "--synthetic-count", "150", "--batch-size", "16"]


def command(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run(
        [sys.executable, "-m", "train.study", *args], capture_output=True, text=True, cwd=ROOT, env=env, timeout=1200
    )


# ---- statistics -------------------------------------------------------------------------------------------


def test_mean_ci_is_the_t_interval() -> None:
    values = [0.80, 0.82, 0.85, 0.81]
    got = stats.mean_ci(values)
    sd = np.std(values, ddof=1)
    half = scipy_stats.t.ppf(0.975, 3) * sd / math.sqrt(4)  # 3.182446 * 0.021602 / 2
    assert got["mean"] == pytest.approx(0.82) and got["sd"] == pytest.approx(0.0216025, rel=1e-5)
    assert got["ci_high"] - got["mean"] == pytest.approx(half) and half == pytest.approx(0.0343741, rel=1e-5)
    assert stats.mean_ci([0.9])["ci_low"] is None


def test_welch_one_tailed_against_scipy_and_by_hand() -> None:
    tl, scratch = [0.90, 0.92, 0.91, 0.93], [0.85, 0.88, 0.86, 0.84]
    got = stats.greater_welch(tl, scratch)
    expected = scipy_stats.ttest_ind(tl, scratch, equal_var=False, alternative="greater")
    assert got["p"] == pytest.approx(expected.pvalue) and got["t"] == pytest.approx(expected.statistic)
    # By hand: means 0.915 / 0.8575, variances 5e-4 / 3 and 8.75e-4 / 3, se = sqrt((v1 + v2) / 4) = 0.010704
    v1, v2 = 5e-4 / 3, 8.75e-4 / 3
    t = (0.915 - 0.8575) / math.sqrt((v1 + v2) / 4)
    assert got["t"] == pytest.approx(t, rel=1e-6) and t == pytest.approx(5.3716, rel=1e-4)
    df = (v1 / 4 + v2 / 4) ** 2 / ((v1 / 4) ** 2 / 3 + (v2 / 4) ** 2 / 3)
    assert got["df"] == pytest.approx(df, rel=1e-6)
    assert got["p"] == pytest.approx(scipy_stats.t.sf(t, df), rel=1e-6) and got["p"] < 0.01
    assert stats.stars(got["p"]) == "*" and stats.stars(0.0005) == "**" and stats.stars(0.2) == ""


def test_against_a_published_estimate_by_hand() -> None:
    aurocs = [0.93, 0.94, 0.92, 0.95, 0.93]
    got = stats.greater_than_published(aurocs, 0.91, 0.02)
    se_runs2 = np.var(aurocs, ddof=1) / 5  # 1.3e-4 / 5 = 2.6e-5
    se_pub2 = (0.02 / 1.959964) ** 2  # 1.0413e-4
    t = (0.934 - 0.91) / math.sqrt(se_runs2 + se_pub2)
    df = (se_runs2 + se_pub2) ** 2 / (se_runs2**2 / 4)
    assert got["t"] == pytest.approx(t, rel=1e-6) and t == pytest.approx(2.1048, rel=1e-3)
    assert got["df"] == pytest.approx(df, rel=1e-6)
    assert got["p"] == pytest.approx(scipy_stats.t.sf(t, df), rel=1e-6)
    assert 0.01 < got["p"] < 0.05  # above the dermatologists' estimate, but not by much
    assert stats.greater_than_published(aurocs, 0.83, 0.03)["p"] < 0.001


# ---- runs, shards, options ------------------------------------------------------------------------------------


def test_shards_partition_the_runs_exactly() -> None:
    runs = [Run(m, w, s) for m in ("a", "b", "c") for w in ("imagenet", "none") for s in range(5)]
    for n in (1, 2, 3, 7, 30, 31):
        parts = [shard(runs, (i, n)) for i in range(1, n + 1)]
        flat = [r for part in parts for r in part]
        assert sorted(flat, key=runs.index) == runs and len(flat) == len(set(flat)) == len(runs)
    assert shard(runs, (2, 3)) == shard(runs, (2, 3))  # deterministic
    assert shard(runs, None) == runs


def test_plan_orders_like_the_paper_and_skips_what_does_not_apply() -> None:
    config = {"models": ["cnn", "mobilenet", "efficientnet"], "weights": ["imagenet", "none"], "seeds": 2}
    runs, not_applicable = plan(config)
    assert [r.model for r in runs[::2]] == ["efficientnet_b0"] * 2 + ["mobilenet_v2"] * 2 + ["standard_cnn"]
    assert not_applicable == [{"model": "standard_cnn", "weights": "imagenet", "reason": "no ImageNet weights exist"}]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--models", "alexnet"], 'unknown model "alexnet"'),
        (["--seeds", "1"], "--seeds must be at least 2"),
        (["--shard", "5/4"], "i must be between 1 and n"),
        (["--shard", "x"], "--shard takes i/n"),
        (["--weights", "imagenet,random"], "--weights takes imagenet and/or none"),
    ],
)
def test_bad_options_are_one_sentence(args: list[str], message: str, tmp_path: Path) -> None:
    result = command("--out", str(tmp_path / "s"), *args)
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr
    assert result.stderr.strip().count("\n") == 0


def test_parse_shard() -> None:
    assert parse_shard("3/16") == (3, 16) and parse_shard(None) is None
    with pytest.raises(UserError):
        parse_shard("0/4")


# ---- a tiny study end to end ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("study") / "s"
    result = command("--out", str(out), *TINY, "--shard", "1/2")
    assert result.returncode == 0, result.stderr[-3000:]
    assert not (out / "study.md").exists()  # a shard trains, it does not aggregate
    result = command("--out", str(out), *TINY)  # the rest of the runs, then the tables and figures
    assert result.returncode == 0, result.stderr[-3000:]
    assert "3 trained, 3 done earlier, 0 no weights, 0 failed" in result.stderr
    return out


@pytest.mark.slow
def test_table1_structure(tiny_study: Path) -> None:
    result = json.loads((tiny_study / "study.json").read_text())
    keys = [(r["model"], r["weights"]) for r in result["rows"]]
    assert keys == [("efficientnet_lite0", "imagenet"), ("efficientnet_lite0", "none"), ("standard_cnn", "none")]
    for row in result["rows"]:
        assert row["runs"] == 2
        for metric in ("accuracy", "auroc", "auprc", "f1"):
            assert row[metric]["ci_low"] <= row[metric]["mean"] <= row[metric]["ci_high"]
        assert set(row["vs_clinicians"]) == {"general practitioners", "dermatologists"}
    lite_tl = result["rows"][0]
    assert (
        set(lite_tl["tl_vs_scratch"]) == {"accuracy", "auroc", "auprc", "f1"}
        and "tl_vs_scratch" not in result["rows"][1]
    )
    table = (tiny_study / "study.md").read_text()
    assert "| efficientnet_lite0 | imagenet | 2 |" in table and "standard_cnn imagenet: no ImageNet weights" in table
    csv = pd.read_csv(tiny_study / "study.csv")
    assert list(csv["model"]) == ["efficientnet_lite0", "efficientnet_lite0", "standard_cnn"]
    for name in ("figure3.png", "study.html"):
        assert (tiny_study / name).stat().st_size > 1000
    for folder in result["figure4"].values():
        explained = json.loads((tiny_study / folder / "attributions.json").read_text())
        assert explained["cases"] and explained["max_abs_convergence_delta"] < 0.2  # IG's completeness error, logit
        assert set(explained["cases"][0]["metadata"]) == {"age", "sex", "site"}


@pytest.mark.slow
def test_each_run_is_a_fresh_model_on_the_same_split(tiny_study: Path) -> None:
    runs = sorted((tiny_study / "runs").glob("*/metrics.json"))
    assert len(runs) == 6
    metrics = {p.parent.name: json.loads(p.read_text()) for p in runs}
    starts = {m["initial_weights_sha256"] for name, m in metrics.items() if name.startswith("standard_cnn")}
    assert len(starts) == 2  # different initial weights per seed
    splits = {(p.parent / "split.csv").read_bytes() for p in runs}
    assert len(splits) == 1  # and the same split for every run
    assert {m["data"]["split_seed"] for m in metrics.values()} == {0}


@pytest.mark.slow
def test_a_killed_study_continues_without_redoing_runs(tiny_study: Path) -> None:
    runs = tiny_study / "runs"
    before = {p.parent.name: p.stat().st_mtime_ns for p in runs.glob("*/metrics.json")}
    interrupted = runs / "standard_cnn-none-seed1"
    for name in ("metrics.json", "checkpoint.pt"):  # as if killed after its last epoch's state was saved
        (interrupted / name).unlink()
    result = command("--out", str(tiny_study), "--no-explain")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "1 trained, 5 done earlier, 0 no weights, 0 failed" in result.stderr
    after = {p.parent.name: p.stat().st_mtime_ns for p in runs.glob("*/metrics.json")}
    assert {k: v for k, v in after.items() if k != interrupted.name} == {
        k: v for k, v in before.items() if k != interrupted.name
    }
    assert "resuming" in (interrupted / "train.log").read_text()


def test_a_changed_option_is_refused_for_an_existing_study(tmp_path: Path) -> None:
    out = tmp_path / "s"
    out.mkdir()
    (out / "study_config.json").write_text(json.dumps({"seeds": 3, "models": ["standard_cnn"]}))
    result = command("--out", str(out), "--seeds", "4")
    assert result.returncode == 2 and "cannot change" in result.stderr


def test_main_refuses_a_file_as_out(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    with pytest.raises(UserError, match="is a file"):
        main(["--out", str(tmp_path / "f")])


def test_exit_status_counts_crashed_runs_not_weights_the_machine_cannot_have(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    import train.loop
    import train.study

    def crash(config) -> dict:
        raise RuntimeError("CUDA out of memory (simulated)")

    monkeypatch.setattr(train.study, "imagenet_unavailable", lambda models: dict.fromkeys(models, "offline"))
    monkeypatch.setattr(train.loop, "run", crash)
    base = ["--models", "mobilenet", "--seeds", "2", "--shard", "1/1"]
    assert main(["--out", str(tmp_path / "a"), *base, "--weights", "imagenet"]) == 0
    error = json.loads((tmp_path / "a" / "runs" / "mobilenet_v2-imagenet-seed0" / "error.json").read_text())
    assert error["kind"] == "no weights"
    assert "0 trained, 0 done earlier, 2 no weights, 0 failed" in capfd.readouterr().err
    assert main(["--out", str(tmp_path / "b"), *base, "--weights", "none"]) == 1
    error = json.loads((tmp_path / "b" / "runs" / "mobilenet_v2-none-seed1" / "error.json").read_text())
    assert error["kind"] == "failed" and "CUDA out of memory" in error["error"]
    assert "0 no weights, 2 failed" in capfd.readouterr().err


# ---- the adversarial sweep: locks, damaged files, bounds --------------------------------------------------


def _crashing_study(monkeypatch: pytest.MonkeyPatch, error: Exception) -> None:
    import train.loop

    def crash(config) -> dict:
        raise error

    monkeypatch.setattr(train.loop, "run", crash)


def test_a_second_study_on_the_same_out_is_refused(tmp_path: Path) -> None:
    from core.io import exclusive

    out = tmp_path / "s"
    with exclusive(out, "study"), pytest.raises(UserError, match=r"another python -m train.study is running on"):
        main(["--out", str(out), "--models", "cnn", "--weights", "none", "--seeds", "2"])
    with exclusive(out / "shard-1-of-2", "study"), pytest.raises(UserError, match=r"--shard 1/2 is running on"):
        main(["--out", str(out), "--models", "cnn", "--weights", "none", "--seeds", "2", "--shard", "1/2"])


def test_shards_run_at_once_and_a_run_in_use_is_not_a_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    from core.io import exclusive
    from train.run_dir import RunInUse

    out = tmp_path / "s"
    _crashing_study(monkeypatch, RunInUse("a training run (process 1) is using it right now"))
    with exclusive(out / "shard-1-of-2", "study"):  # shard 1 is running; shard 2 is another slice
        assert main(["--out", str(out), "--models", "cnn", "--weights", "none", "--seeds", "2", "--shard", "2/2"]) == 0
    assert "0 trained, 0 done earlier, 0 no weights, 0 failed, 1 running elsewhere" in capfd.readouterr().err
    assert not list((out / "runs").glob("*/error.json"))


def test_the_failure_message_names_only_error_files_that_exist(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "s"
    _crashing_study(monkeypatch, RuntimeError("simulated"))
    assert main(["--out", str(out), "--models", "cnn", "--weights", "none", "--seeds", "2", "--shard", "1/1"]) == 1
    last = capfd.readouterr().err.strip().splitlines()[-1]
    named = [Path(p) for p in last.split("see ", 1)[1].split(";", 1)[0].split(", ")]
    assert last.startswith("2 run(s) failed") and len(named) == 2 and all(p.is_file() for p in named)


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"", "is empty"), (b"{", "is not valid JSON"), (b"[1, 2]", "holds a JSON list"), (b'{"seeds": 3}', "lacks")],
)
def test_a_damaged_study_config_is_one_sentence(tmp_path: Path, content: bytes, message: str) -> None:
    out = tmp_path / "s"
    out.mkdir()
    (out / "study_config.json").write_bytes(content)
    with pytest.raises(UserError) as caught:
        main(["--out", str(out)])
    assert message in str(caught.value) and "restore it, or delete it and rerun" in str(caught.value)


def test_aggregate_names_the_run_whose_predictions_are_gone(tmp_path: Path) -> None:
    out = tmp_path / "s"
    folder = out / "runs" / "standard_cnn-none-seed0"
    folder.mkdir(parents=True)
    config = {**QUICK, "models": ["standard_cnn"], "weights": ["none"]}
    (out / "study_config.json").write_text(json.dumps(config))
    test = {"auroc": 0.7, "auprc": 0.3, "accuracy": 0.5, "f1": 0.3, "sensitivity": 0.9, "specificity": 0.4}
    (folder / "metrics.json").write_text(json.dumps({"test": test}))
    with pytest.raises(UserError, match=r"run standard_cnn-none-seed0 is finished but its predictions.csv is missing"):
        main(["--out", str(out), "--aggregate", "--no-explain"])
    (folder / "metrics.json").write_text("")
    with pytest.raises(UserError, match=r"run standard_cnn-none-seed0: its metrics.json is damaged"):
        main(["--out", str(out), "--aggregate", "--no-explain"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--split-seed", "-1"], "--split-seed must be a whole number from 0 to 2**32-1"),
        (["--split-seed", str(2**32)], "numpy's limit"),
        (["--seeds", "100000"], "--seeds must be at most 1000"),
        (["--image-size", "5000"], "--image-size must be between 32 and 1024 pixels"),
        (["--batch-size", "100000"], "--batch-size must be between 2 and 4096"),
        (["--synthetic-count", "100000000"], "--synthetic-count must be between 50 and 100000"),
    ],
)
def test_the_study_bounds_its_numbers_like_train(args: list[str], message: str, tmp_path: Path) -> None:
    with pytest.raises(UserError, match=message.replace("*", r"\*")):
        main(["--out", str(tmp_path / "s"), *args])


def test_a_study_out_under_a_file_is_one_sentence(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    with pytest.raises(UserError, match="which is a file, not a folder"):
        main(["--out", str(tmp_path / "f" / "study")])
