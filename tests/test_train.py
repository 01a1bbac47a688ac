"""End-to-end training runs at a tiny size, resume, the command line and its bad-input handling."""

import json
import os
import signal
import subprocess
import sys
import warnings
from pathlib import Path

import pandas as pd
import pytest
import torch

from core.checkpoint import load_checkpoint
from core.spec import ModelSpec
from tests.conftest import ROOT, TINY, write_isic_fixture
from train.__main__ import main
from train.loop import TrainConfig, run


def run_cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run(
        [sys.executable, "-m", "train", *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=600
    )


def test_run_directory_holds_everything(tiny_run: Path) -> None:
    for name in ("checkpoint.pt", "spec.json", "metrics.json", "split.csv", "predictions.csv"):
        assert (tiny_run / name).is_file(), name
    metrics = json.loads((tiny_run / "metrics.json").read_text())
    test = metrics["test"]
    for key in ("auroc", "auprc", "accuracy", "f1", "sensitivity_at_95_specificity", "specificity_at_95_sensitivity"):
        assert key in test
    assert 0.0 <= test["auroc"] <= 1.0
    assert metrics["threshold"]["chosen_on"] == "validation"
    assert metrics["data"]["synthetic"] is True
    assert len(metrics["history"]) == 2


def test_split_csv_is_patient_grouped(tiny_run: Path) -> None:
    split = pd.read_csv(tiny_run / "split.csv", dtype={"patient_id": str})
    assert {"image_name", "patient_id", "split"} <= set(split.columns)
    assert split.groupby("patient_id")["split"].nunique().max() == 1


def test_checkpoint_carries_the_spec_and_reproduces_predictions(tiny_run: Path) -> None:
    raw = torch.load(tiny_run / "checkpoint.pt", weights_only=True)
    spec = ModelSpec.from_dict(raw["spec"])
    assert spec == ModelSpec.load(tiny_run / "spec.json")
    assert spec.image.size == 32 and spec.meta_size == 12
    assert spec.outputs.threshold == json.loads((tiny_run / "metrics.json").read_text())["threshold"]["value"]
    assert "Not a medical device" in spec.provenance["intended_use"]

    from core import datasets
    from core.evaluation import cases
    from core.images import eval_transform
    from train import data as D

    model, spec = load_checkpoint(tiny_run / "checkpoint.pt")
    preds = pd.read_csv(tiny_run / "predictions.csv").query("split == 'test'").head(8)
    table = datasets.load_isic2020(Path(json.loads((tiny_run / "metrics.json").read_text())["data"]["path"]))
    table = table.set_index("image_name").loc[preds["image_name"]].reset_index()
    # The checkpoint's own contract rebuilds the training encoding (sites under their ISIC column name).
    encoder = spec.encoder()
    rows = cases(table.assign(anatom_site_general_challenge=table["site"]), encoder.fields)
    encoded = D.SplitData(table, encoder.encode_many(rows), table["target"].to_numpy(dtype="float32"))
    ds = D.LesionDataset(encoded, eval_transform(spec.image))
    images = torch.stack([ds[i][0] for i in range(len(ds))])
    with torch.no_grad():
        logits = model(images, torch.from_numpy(encoded.meta)).squeeze(1)
    torch.testing.assert_close(logits, torch.tensor(preds["logit"].to_numpy(), dtype=torch.float32), atol=1e-4, rtol=0)


def test_resume_continues_an_interrupted_run(tmp_path: Path) -> None:
    out = tmp_path / "resumable"
    cfg = dict(TINY, patience=5, seed=1, out=str(out))
    run(TrainConfig(**cfg, epochs=1))
    (out / "metrics.json").unlink()  # as if the run had been stopped after epoch 1
    state = torch.load(out / "last.pt", weights_only=True)
    assert state["epoch"] == 1
    metrics = run(TrainConfig(**cfg, epochs=3, resume=True))
    assert [h["epoch"] for h in metrics["history"]] == [1, 2, 3]
    with pytest.raises(Exception, match="finished run"):
        run(TrainConfig(**cfg, epochs=3, resume=True))


def test_isic_folder_trains(tmp_path: Path) -> None:
    write_isic_fixture(tmp_path / "isic", n=80)
    metrics = run(TrainConfig(**{**TINY, "data": str(tmp_path / "isic")}, epochs=1, out=str(tmp_path / "r")))
    assert metrics["data"]["name"] == "ISIC 2020"
    assert metrics["data"]["images"] == 79


def test_list_models(capsys) -> None:
    assert main(["--list-models"]) == 0
    assert "efficientnet_b0  (alias: efficientnet)" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "alexnet"], 'unknown model "alexnet"'),
        (["--model", "standard_cnn", "--epochs", "-1"], "--epochs must be between 1 and 1000"),
        (["--model", "standard_cnn", "--batch-size", "0"], "--batch-size must be at least 2"),
        (["--model", "standard_cnn", "--lr", "nan"], "--lr must be a positive number"),
        (["--model", "standard_cnn", "--weights", "none", "--data", "/no/such/folder"], "does not exist"),
        (["--model", "standard_cnn"], "standard_cnn has no ImageNet weights"),
        (["--model", "mobilenet", "--weights", "/no/such.pth"], "does not exist"),
        (["--model", "standard_cnn", "--weights", "none", "--external", "/x"], "--external adds to ISIC 2020"),
        (["--model", "standard_cnn", "--resume"], "--resume needs --out"),
        (["--model", "standard_cnn", "--weights", "none", "--pos-weight", "-2"], "--pos-weight must be"),
        (["--model", "standard_cnn", "--weights", "none", "--pos-weight", "inf"], "--pos-weight must be"),
        (["--model", "standard_cnn", "--weights", "none", "--seed", str(2**32)], "numpy's limit"),
        (["--model", "standard_cnn", "--weights", "none", "--image-size", "20000"], "between 32 and 1024 pixels"),
        (["--model", "standard_cnn", "--weights", "none", "--out", "pyproject.toml/run"], "which is a file"),
        ([], "--model is required"),
    ],
)
def test_bad_input_is_one_sentence_and_nonzero_exit(args: list[str], message: str, capfd, monkeypatch) -> None:
    """Each case through the command's own entry point (core.errors.run_cli around train's main) in this
    process, from the repository root as `python -m train` would run: 15 interpreters cost about 2 minutes of
    the suite. Each case is refused before any data, model or seed is touched; the ones that go deeper, and
    three of these, run as `python -m train` processes (`..._from_the_real_command`)."""
    from core.errors import run_cli as run_command

    monkeypatch.chdir(ROOT)
    previous = signal.getsignal(signal.SIGTERM)  # run_cli maps SIGTERM to an interruption: restored after
    with warnings.catch_warnings(record=True) as warned:  # a warning would have been a line of its stderr
        warnings.simplefilter("always")
        try:
            status = run_command(main, ["--synthetic-count", "150", "--image-size", "32", "--epochs", "1", *args])
        except SystemExit as exc:  # argparse's own usage errors exit from inside main
            status = exc.code
        finally:
            signal.signal(signal.SIGTERM, previous)
    stderr = capfd.readouterr().err
    assert not warned, [str(w.message) for w in warned]
    assert status == 2, stderr
    assert message in stderr
    assert "Traceback" not in stderr
    assert stderr.strip().count("\n") <= 1, stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "alexnet"], 'unknown model "alexnet"'),
        (["--model", "standard_cnn", "--weights", "pyproject.toml"], "not a PyTorch checkpoint"),
        (["--model", "standard_cnn", "--weights", "none", "--out", "pyproject.toml/run"], "which is a file"),
        ([], "--model is required"),
    ],
)
def test_bad_input_is_one_sentence_and_nonzero_exit_from_the_real_command(args: list[str], message: str) -> None:
    result = run_cli("--synthetic-count", "150", "--image-size", "32", "--epochs", "1", *args)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().count("\n") <= 1, result.stderr


def test_bad_csv_via_cli(tmp_path: Path) -> None:
    write_isic_fixture(tmp_path / "isic", n=12, odd_images=False)
    frame = pd.read_csv(tmp_path / "isic" / "train.csv")
    frame.loc[0, "age_approx"] = 400
    frame.to_csv(tmp_path / "isic" / "train.csv", index=False)
    result = run_cli("--model", "standard_cnn", "--data", str(tmp_path / "isic"), "--weights", "none")
    assert result.returncode == 2
    assert "row 2, column age_approx: age 400 is outside 0-120 years" in result.stderr
    assert "Traceback" not in result.stderr


def test_help_is_fast_and_documents_the_contract() -> None:
    result = run_cli("--help")
    assert result.returncode == 0
    for flag in (
        "--model",
        "--data",
        "--external",
        "--weights",
        "--epochs",
        "--image-size",
        "--batch-size",
        "--lr",
        "--seed",
        "--out",
    ):
        assert flag in result.stdout


@pytest.mark.slow
def test_torchrun_two_processes_on_cpu(tmp_path: Path) -> None:
    """DistributedDataParallel through torchrun (gloo on CPU): one run directory, consistent results."""
    out = tmp_path / "ddp"
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            "2",
            "-m",
            "train",
            "--model",
            "standard_cnn",
            "--weights",
            "none",
            "--image-size",
            "32",
            "--batch-size",
            "8",
            "--workers",
            "0",
            "--synthetic-count",
            "150",
            "--epochs",
            "2",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["world_size"] == 2
    assert metrics["test"]["n"] == len(pd.read_csv(out / "split.csv").query("split == 'test'"))
    load_checkpoint(out / "checkpoint.pt")
