"""Shared fixtures: small data sets written in the real ISIC formats, and an isolated cache."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


TINY = dict(model="standard_cnn", weights="none", image_size=32, batch_size=16, workers=0, synthetic_count=300)


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Generated synthetic sets go to a per-session temporary cache, never the user's."""
    import os

    os.environ["MELANOMA_CACHE"] = str(tmp_path_factory.getbasetemp() / "cache")


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-epoch standard_cnn run at 32 px on a 300-image synthetic set (seconds on a CPU). Its test split (60
    cases, 11 melanomas) has subgroups with 5 of each class, so the parity gate's subgroup check can be made."""
    from train.loop import TrainConfig, run

    out = tmp_path_factory.mktemp("run")
    run(TrainConfig(**TINY, epochs=2, out=str(out)))
    return out


def _lesion(rng: np.random.Generator, size: int, dark: bool) -> np.ndarray:
    arr = np.full((size, size, 3), (220, 180, 150), dtype=np.uint8)
    yy, xx = np.mgrid[:size, :size]
    r = size * (0.35 if dark else 0.25)
    mask = (yy - size / 2) ** 2 + (xx - size / 2) ** 2 < r**2
    arr[mask] = (60, 40, 30) if dark else (150, 100, 70)
    return np.clip(arr.astype(int) + rng.integers(-10, 10, arr.shape), 0, 255).astype(np.uint8)


def write_isic_fixture(root: Path, n: int = 40, seed: int = 0, odd_images: bool = True) -> pd.DataFrame:
    """Write a tiny ISIC 2020 folder: train.csv (real columns), jpeg/train/*.jpg, a duplicates CSV.

    Includes NaN ages and sexes, a 2019 site name, a missing site, a repeated row, a duplicate pair, and
    (with odd_images) CMYK, grayscale, RGBA-PNG, 16-bit and EXIF-rotated images.
    """
    rng = np.random.default_rng(seed)
    image_dir = root / "jpeg" / "train"
    image_dir.mkdir(parents=True, exist_ok=True)
    sites = ["torso", "lower extremity", "upper extremity", "head/neck", "anterior torso", np.nan, "palms/soles"]
    rows = []
    for i in range(n):
        target = int(i % 4 == 0)
        rows.append(
            {
                "image_name": f"ISIC_{i:07d}",
                "patient_id": f"IP_{i // 3:07d}",
                "sex": np.nan if i == 5 else ("male" if i % 2 else "female"),
                "age_approx": np.nan if i == 7 else float(30 + (i % 10) * 5),
                "anatom_site_general_challenge": sites[i % len(sites)],
                "diagnosis": "melanoma" if target else "nevus",
                "benign_malignant": "malignant" if target else "benign",
                "target": target,
            }
        )
        image = Image.fromarray(_lesion(rng, 48, bool(target)))
        path = image_dir / f"ISIC_{i:07d}.jpg"
        if odd_images and i == 1:
            image.convert("CMYK").save(path, "JPEG")
        elif odd_images and i == 2:
            image.convert("L").save(path, "JPEG")
        elif odd_images and i == 3:
            path = path.with_suffix(".png")
            rgba = image.convert("RGBA")
            rgba.putalpha(128)
            rgba.save(path)
        elif odd_images and i == 4:
            path = path.with_suffix(".png")
            gray16 = (np.asarray(image.convert("L"), dtype=np.uint16) * 257).astype(np.uint16)
            Image.fromarray(gray16).save(path)
        elif odd_images and i == 6:
            exif = Image.Exif()
            exif[0x0112] = 6  # rotate 90 degrees on display
            image.crop((0, 0, 48, 32)).save(path, "JPEG", exif=exif.tobytes())
        else:
            image.save(path, "JPEG", quality=90)
    frame = pd.DataFrame(rows)
    frame = pd.concat([frame, frame.iloc[[0]]], ignore_index=True)  # a repeated row
    frame.to_csv(root / "train.csv", index=False)
    pd.DataFrame({"image_name_1": ["ISIC_0000008"], "image_name_2": ["ISIC_0000009"]}).to_csv(
        root / "ISIC_2020_Training_Duplicates.csv", index=False
    )
    return frame


def write_external_fixture(root: Path, isic_names: list[str], n_new: int = 6) -> pd.DataFrame:
    """Write a tiny external malignant set: train_concat.csv + train/train/*.jpg (256 px in real life)."""
    rng = np.random.default_rng(1)
    image_dir = root / "train" / "train"
    image_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    names = list(isic_names[:3]) + [f"ISIC_{9000000 + i:07d}" for i in range(n_new)]
    for j, name in enumerate(names):
        target = 1 if j >= 3 and j % 2 == 1 else 0
        if j < 3:
            target = 0
        rows.append(
            {
                "image_name": name,
                "patient_id": "-1" if j == 4 else f"EP_{j:05d}",
                "sex": "female",
                "age_approx": 60.0,
                "anatom_site_general_challenge": "posterior torso",
                "target": target,
            }
        )
        Image.fromarray(_lesion(rng, 32, bool(target))).save(image_dir / f"{name}.jpg", "JPEG")
    frame = pd.DataFrame(rows)
    frame.to_csv(root / "train_concat.csv", index=False)
    return frame


@pytest.fixture
def isic_dir(tmp_path: Path) -> Path:
    write_isic_fixture(tmp_path / "isic")
    return tmp_path / "isic"


def jpeg_bytes(size: int = 16) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (size, size), (10, 20, 30)).save(buf, "JPEG")
    return buf.getvalue()


PHONE_EXPORT_AUTHOR = "Test lab, Example University"
PHONE_EXPORT_LICENSE = "CC-BY-NC-4.0"


@pytest.fixture(scope="session")
def phone_export(tiny_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What the phone ports are tested against: `python -m export.all` of the tiny run to ONNX and TFLite,
    fp32 and int8, with 6 golden cases (golden.json + golden/*.png), written in this test session."""
    import subprocess
    import sys

    out = tmp_path_factory.mktemp("phone_export") / "dist"
    command = [sys.executable, "-m", "export.all", "--checkpoint", str(tiny_run / "checkpoint.pt"), "--out", str(out)]
    command += ["--formats", "onnx,tflite", "--precision", "fp32,int8", "--golden", "6"]
    command += ["--author", PHONE_EXPORT_AUTHOR, "--license", PHONE_EXPORT_LICENSE]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    assert (out / "golden.json").is_file(), result.stderr[-4000:]
    return out


@pytest.fixture(scope="session")
def signing_keys(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """Two P-256 key pairs made by `python -m export.sign --new-key`: `private` / `public` sign the exports
    the tests trust, `other_private` / `other_public` stand for somebody else's key."""
    from types import SimpleNamespace

    from export.sign import new_key

    root = tmp_path_factory.mktemp("keys")
    private, public = new_key(root / "ours")
    other_private, other_public = new_key(root / "theirs")
    return SimpleNamespace(private=private, public=public, other_private=other_private, other_public=other_public)


@pytest.fixture(scope="session")
def signed_export(phone_export: Path, signing_keys: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of `phone_export` signed by `python -m export.sign DIR --key` with `signing_keys.private`. Read
    only: a test that tampers with it copies it first."""
    import shutil
    import subprocess
    import sys

    out = tmp_path_factory.mktemp("signed") / "dist"
    shutil.copytree(phone_export, out)
    command = [sys.executable, "-m", "export.sign", str(out), "--key", str(signing_keys.private)]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    assert result.returncode == 0 and (out / "model.sig").is_file(), result.stderr[-2000:]
    return out


def python_verdict(folder: Path, trust: Path) -> str:
    """What export.sign.verify_folder says of `folder`: "verified", or its refusal's sentence (what the Kotlin
    and JavaScript verifiers are held to)."""
    from export.sign import SignatureError, verify_folder

    try:
        verify_folder(folder, trust)
    except SignatureError as exc:
        return str(exc)
    return "verified"
