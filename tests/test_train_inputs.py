"""Training options refused before any work (one sentence each), and the names thresholds are stored under."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.errors import UserError
from train import config as C
from train.config import TrainConfig, check_out_folder, threshold_name

BASE = dict(model="standard_cnn", weights="none", workers=0)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"seed": -1}, "--seed must be a whole number from 0 to 2**32-1"),
        ({"seed": 2**32}, "numpy's limit"),
        ({"split_seed": 2**40}, "--split-seed must be a whole number"),
        ({"image_size": 20000}, "--image-size must be between 32 and 1024 pixels (got 20000)"),
        ({"image_size": 16}, "--image-size must be between 32 and 1024"),
        ({"batch_size": 10**9}, "--batch-size must be between 2 and 4096"),
        ({"batch_size": 1}, "--batch-size must be at least 2, for batch norm"),
        ({"workers": 10_000}, "--workers must be between 0 and 64"),
        ({"synthetic_count": 10**9}, "--synthetic-count must be between 50 and 100000"),
        ({"epochs": 10**7}, "--epochs must be between 1 and 1000"),
        ({"pos_weight": "inf"}, "--pos-weight must be none, auto or a number above 0"),
        ({"pos_weight": "nan"}, "--pos-weight must be"),
        ({"pos_weight": "0"}, "--pos-weight must be"),
        ({"pos_weight": "-3"}, "--pos-weight must be"),
        ({"pos_weight": "1e9"}, "at most 1000"),
        ({"pos_weight": "heavy"}, "--pos-weight must be"),
        ({"weight_decay": float("inf")}, "--weight-decay must be between 0 and 1"),
        ({"lr_patience": -1}, "--lr-patience must be at least 0"),
        ({"weights": "."}, "is a folder: give the weights file in it"),
    ],
)
def test_nonsense_options_are_refused_up_front(options: dict, message: str) -> None:
    with pytest.raises(UserError) as caught:
        TrainConfig(**{**BASE, **options}).validate()
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_sensible_options_pass() -> None:
    TrainConfig(**BASE, seed=2**32 - 1, split_seed=0, image_size=1024, pos_weight="56.5").validate()
    TrainConfig(**{**BASE, "workers": 64}, pos_weight="auto", batch_size=4096).validate()


def test_an_out_under_a_file_is_one_sentence(tmp_path: Path) -> None:
    (tmp_path / "somefile.txt").write_text("x")
    with pytest.raises(UserError, match=r"lies under .*somefile\.txt, which is a file, not a folder"):
        TrainConfig(**BASE, out=str(tmp_path / "somefile.txt" / "deeper" / "run")).validate()
    with pytest.raises(UserError, match="is a file, not a folder"):
        check_out_folder(tmp_path / "somefile.txt")


def test_an_out_this_user_may_not_write_is_one_sentence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # NOTE: the tests run as root, where chmod stops no write; os.access is what the check asks, so fake it.
    monkeypatch.setattr(C.os, "access", lambda path, mode: Path(path) != tmp_path)
    with pytest.raises(UserError, match=r"may not write into .*: give a folder you can write to"):
        TrainConfig(**BASE, out=str(tmp_path / "runs" / "r1")).validate()
    check_out_folder(tmp_path.parent / "elsewhere")


@pytest.mark.parametrize(
    ("rule", "target", "name"),
    [
        ("sensitivity", 0.95, "sensitivity_95"),
        ("sensitivity", 0.9, "sensitivity_90"),
        ("sensitivity", 0.975, "sensitivity_97_5"),
        ("sensitivity", 0.8, "sensitivity_80"),
        ("youden", 0.9, "youden"),
    ],
)
def test_threshold_names_follow_the_rule_and_target(rule: str, target: float, name: str) -> None:
    assert threshold_name(rule, target) == name
    assert TrainConfig(model="x", threshold_rule=rule, threshold_target=target).threshold_name == name


def test_the_loop_module_still_exports_the_entry_points() -> None:
    import train.loop

    assert train.loop.TrainConfig is TrainConfig and callable(train.loop.run)
