"""What the adversarial sweep found on the training side, each ending in one sentence or in correct behaviour:
a split without melanomas, an undefined validation AUROC, a full or read-only disk, decompression bombs, a
damaged synthetic-set cache."""

from __future__ import annotations

import errno
import io
import json
import warnings
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from core import datasets
from core.errors import UserError
from core.images import ImageTooLarge, eval_transform, load_rgb
from core.metadata import MetadataEncoder
from core.spec import ImageContract, ModelSpec
from tests.conftest import TINY, write_isic_fixture
from train import data as D
from train.loop import TrainConfig, run

# ---- a split that lacks a class ---------------------------------------------------------------------------


def _one_melanoma_patient(root: Path, n: int = 60) -> None:
    write_isic_fixture(root, n=n, odd_images=False)
    frame = pd.read_csv(root / "train.csv")
    frame.loc[frame["target"] == 1, "patient_id"] = "IP_MELANOMA"  # every melanoma belongs to one patient
    frame.to_csv(root / "train.csv", index=False)


def test_a_split_without_melanoma_is_refused_before_training(tmp_path: Path) -> None:
    _one_melanoma_patient(tmp_path / "isic")
    out = tmp_path / "run"
    with pytest.raises(UserError) as caught:
        run(TrainConfig(**{**TINY, "data": str(tmp_path / "isic")}, epochs=1, out=str(out)))
    message = str(caught.value)
    assert "split with no melanoma" in message and "belong to 1 patient(s)" in message
    assert "never divided between splits" in message and "add data with melanomas from more patients" in message
    assert "--split-seed" not in message  # no seed can spread one patient over three splits
    assert not (out / "checkpoint.pt").exists() and not (out / "last.pt").exists()


def test_the_split_check_suggests_another_seed_only_when_one_could_help() -> None:
    target = np.array([1, 1, 1, 0, 0, 0, 0, 0, 0])
    split = np.array(["train", "train", "train", "train", "val", "test", "train", "val", "test"])
    groups = np.array(["p1", "p2", "p3", "p4", "p5", "p6", "p7", "p8", "p9"])  # three melanoma patients
    with pytest.raises(UserError, match=r"leaves the val split with no melanoma: .*, or try another --split-seed"):
        D._check_classes(target, split, groups, seed=7)
    groups[:3] = "p1"  # one melanoma patient: no seed can help
    with pytest.raises(UserError, match=r"belong to 1 patient\(s\); add data with melanomas from more patients$"):
        D._check_classes(target, split, groups, seed=7)
    D._check_classes(target, np.array(["train", "val", "test"] * 3), groups, seed=7)


# ---- an undefined validation AUROC, a threshold that cannot be computed ---------------------------------------


def _split(tmp_path: Path) -> D.SplitData:
    write_isic_fixture(tmp_path / "isic", n=24, odd_images=False)
    table = datasets.load_isic2020(tmp_path / "isic")
    return D.encode_split(table, MetadataEncoder.fit(table["age_approx"]))


def test_a_nan_validation_auroc_never_selects_an_epoch(tmp_path: Path) -> None:
    from train.loop import _validation_auroc

    split = _split(tmp_path)
    logits = np.where(split.targets == 1, np.nan, 0.0).astype(np.float32)  # every melanoma failed to decode
    with pytest.raises(UserError, match=r"validation AUROC is undefined at epoch 3: .* hold no melanoma"):
        _validation_auroc(logits, split, 3)
    assert 0 <= _validation_auroc(np.arange(len(split.targets), dtype=np.float32), split, 1) <= 1


def test_non_finite_model_outputs_are_an_error_not_a_skipped_image(tmp_path: Path) -> None:
    from train.distributed import Dist
    from train.loop import predict_logits
    from train.prepare import BadImages

    class Diverged(torch.nn.Module):
        def forward(self, image: torch.Tensor, meta: torch.Tensor) -> torch.Tensor:
            return torch.full((len(image), 1), float("nan"))

    cfg = TrainConfig(**TINY)
    with pytest.raises(UserError, match="outputs became NaN or infinite"):
        predict_logits(Diverged(), _split(tmp_path), cfg, Dist(), "validating", BadImages(0.02))


# ---- the disk: full, read-only --------------------------------------------------------------------------


def _leftovers(out: Path) -> list[str]:
    """Temporary files or folders a failed atomic write would have left (core.io's hidden names)."""
    return sorted(p.name for p in out.iterdir() if p.name.startswith("."))


def test_a_full_disk_under_torch_save_is_one_sentence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def full(*args, **kwargs):
        raise RuntimeError("[enforce fail at inline_container.cc:664] . unexpected pos 4288 vs 4176")

    monkeypatch.setattr(torch, "save", full)
    out = tmp_path / "run"
    with pytest.raises(UserError) as caught:
        run(TrainConfig(**TINY, epochs=1, out=str(out)))
    message = str(caught.value)
    assert message.startswith(f"cannot write the training state (last.pt) after epoch 1 into {out}: the disk is full")
    assert " free); free space, then rerun" in message and "\n" not in message
    assert not (out / "last.pt").exists() and _leftovers(out) == []


def test_a_full_disk_at_the_end_leaves_a_resumable_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import train.run_dir

    def full(path, data):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    out = tmp_path / "run"
    cfg = dict(TINY, epochs=1, out=str(out), threshold_target=0.9)
    with monkeypatch.context() as patch:
        patch.setattr(train.run_dir, "write_json", full)  # metrics.json, the last file finish() writes
        with pytest.raises(UserError) as caught:
            run(TrainConfig(**cfg))
    assert f"into {out}: the disk is full (" in str(caught.value)
    assert f"then continue the run with --resume --out {out}" in str(caught.value)
    for name in ("checkpoint.pt", "spec.json", "predictions.csv", "metrics.json"):
        assert not (out / name).exists(), name  # no checkpoint without its metrics
    assert (out / "last.pt").is_file() and (out / "split.csv").is_file() and _leftovers(out) == []
    metrics = run(TrainConfig(**cfg, resume=True))
    assert metrics["threshold"]["name"] == "sensitivity_90"
    spec = ModelSpec.load(out / "spec.json")
    assert set(spec.outputs.thresholds) == {"sensitivity_90", "youden"}
    assert spec.outputs.threshold == spec.outputs.thresholds["sensitivity_90"]["value"]
    assert json.loads((out / "metrics.json").read_text())["threshold"]["rule"].endswith(">= 0.9")


def test_a_refused_write_is_one_sentence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import train.loop

    def refused(out: Path, *args) -> None:
        raise PermissionError(errno.EACCES, "Permission denied", str(out / "last.pt"))

    monkeypatch.setattr(train.loop, "_save_state", refused)
    out = tmp_path / "run"
    with pytest.raises(UserError, match=r"cannot write the training state .* \(Permission denied\): give an --out"):
        run(TrainConfig(**TINY, epochs=1, out=str(out)))


def test_the_run_lock_that_cannot_be_written_is_one_sentence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import train.run_dir

    def read_only(folder, what):
        raise OSError(errno.EROFS, "Read-only file system", str(folder))

    monkeypatch.setattr(train.run_dir, "exclusive", read_only)
    with pytest.raises(UserError, match=r"cannot write the run's lock file into .* \(Read-only file system\)"):
        run(TrainConfig(**TINY, epochs=1, out=str(tmp_path / "run")))


def test_another_process_on_the_run_is_told_apart(tmp_path: Path) -> None:
    from core.io import exclusive
    from train.run_dir import RunInUse

    out = tmp_path / "run"
    with exclusive(out, "training run"), pytest.raises(RunInUse, match="right now: wait for it to finish"):
        run(TrainConfig(**TINY, epochs=1, out=str(out)))


# ---- decompression bombs ----------------------------------------------------------------------------------


def png_claiming(path: Path, width: int, height: int) -> Path:
    """A small PNG whose header claims width x height pixels (its IHDR rewritten, CRC recomputed)."""
    buffer = io.BytesIO()
    Image.new("L", (8, 8)).save(buffer, "PNG")
    data = bytearray(buffer.getvalue())
    data[16:20], data[20:24] = width.to_bytes(4, "big"), height.to_bytes(4, "big")
    data[29:33] = zlib.crc32(bytes(data[12:29])).to_bytes(4, "big")
    path.write_bytes(bytes(data))
    return path


def test_a_bomb_is_one_sentence_for_load_rgb_callers(tmp_path: Path) -> None:
    bomb = png_claiming(tmp_path / "bomb.png", 20000, 20000)
    with pytest.raises(ImageTooLarge) as caught:
        load_rgb(bomb)
    assert isinstance(caught.value, UserError) and isinstance(caught.value, OSError)
    assert "is too large to decode safely (Image size (400000000 pixels) exceeds limit" in str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_bomb_warning_turned_error_is_the_same(tmp_path: Path) -> None:
    big = png_claiming(tmp_path / "big.png", 10000, 10000)  # above MAX_IMAGE_PIXELS, below twice it: a warning
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        with pytest.raises(ImageTooLarge, match="exceeds limit of 89478485 pixels"):
            load_rgb(big)
        table = pd.DataFrame({"image_name": ["big"], "path": [str(big)]})
        skipped: list[dict] = []
        assert D.check_images(table, 1.0, skipped).empty
    assert skipped[0]["reason"] == "too large (DecompressionBombWarning)"


def test_a_bomb_is_a_bad_image_in_training(tmp_path: Path) -> None:
    write_isic_fixture(tmp_path / "isic", n=60, odd_images=False)
    folder = tmp_path / "isic" / "jpeg" / "train"
    (folder / "ISIC_0000010.jpg").unlink()
    png_claiming(folder / "ISIC_0000010.png", 20000, 20000)
    table = datasets.load_isic2020(tmp_path / "isic")
    skipped: list[dict] = []
    kept = D.check_images(table, 0.05, skipped)
    assert len(kept) == len(table) - 1
    assert skipped == [
        {
            "image_name": "ISIC_0000010",
            "path": str(folder / "ISIC_0000010.png"),
            "reason": "too large (DecompressionBombError)",
            "found": "pre-scan",
        }
    ]
    with pytest.raises(UserError, match="more than the 1% allowed"):
        D.check_images(table, 0.01)
    # Past the pre-scan (a file swapped after it), the decoder's error is a skipped row like a truncated JPEG.
    encoded = D.encode_split(table, MetadataEncoder.fit(table["age_approx"]))
    row = int(np.flatnonzero(table["image_name"] == "ISIC_0000010")[0])
    assert D.LesionDataset(encoded, eval_transform(ImageContract(size=24)))[row][0] is None


# ---- a damaged synthetic-set cache ----------------------------------------------------------------------


@pytest.fixture
def own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MELANOMA_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _fingerprint(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("damage", ["delete csv", "rewrite csv", "empty csv", "delete image", "overwrite image"])
def test_a_damaged_synthetic_cache_is_regenerated(own_cache: Path, damage: str, capsys) -> None:
    from core.synthetic import ensure_synthetic

    root = ensure_synthetic(60, size=32)
    intact = _fingerprint(root)
    image = root / "train" / "SYN_0000007.jpg"
    if damage == "delete csv":
        (root / "train.csv").unlink()
    elif damage == "rewrite csv":
        frame = pd.read_csv(root / "train.csv")
        frame.loc[0, "target"] = 1 - frame.loc[0, "target"]
        frame.to_csv(root / "train.csv", index=False)
    elif damage == "empty csv":
        (root / "train.csv").write_bytes(b"")
    elif damage == "delete image":
        image.unlink()
    else:
        image.write_bytes(b"\x00" * 100)
    capsys.readouterr()
    assert ensure_synthetic(60, size=32) == root
    assert "cannot be trusted" in capsys.readouterr().err
    assert _fingerprint(root) == intact  # deterministic: the same set again
    ensure_synthetic(60, size=32)
    assert capsys.readouterr().err == ""  # intact now: nothing regenerated


def test_a_cache_that_cannot_be_regenerated_says_delete_it(own_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import core.synthetic as S

    root = S.ensure_synthetic(60, size=32)
    (root / "train.csv").unlink()

    def refused(*args) -> None:
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(S, "_generate_into", refused)
    with pytest.raises(UserError) as caught:
        S.ensure_synthetic(60, size=32)
    message = str(caught.value)
    assert f"the synthetic set in {root} is damaged (its train.csv is missing)" in message
    assert "delete that folder" in message and "\n" not in message
