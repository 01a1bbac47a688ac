"""The embedded SYNTHETIC dermoscopy-like set: generated on demand, deterministic, cached, offline.

Nothing here is a real patient. Benign lesions are round, symmetric and evenly coloured; melanomas are
asymmetric with irregular borders and several colours. Each lesion's look is driven by an "atypia"
score whose distributions overlap between the classes (atypical naevi, featureless melanomas), so a good
model lands well below AUROC 1.0 and parity checks stay meaningful. Metadata are informative but not
sufficient: melanoma risk rises with age, differs by body site (site mix like ISIC 2020's) and a little
by sex. Skin tones, hairs, dermoscope vignetting and blur vary.

The set is written in the ISIC 2020 layout (`train.csv` + `train/<image_name>.jpg`) and read by the same
loader as the real data:

    root = ensure_synthetic()            # ~/.cache/melanoma-export/synthetic-v2-n2000-s256-seed0

A cached set is checked against the manifest written with it (train.csv's hash, every image's size) each
time it is asked for, and regenerated when damaged.
"""

from __future__ import annotations

import fcntl
import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw, ImageFilter
from tqdm import tqdm

from core.errors import UserError
from core.io import atomic_path, sha256_file
from core.metadata import SITES

VERSION = 2
MANIFEST = "manifest.json"  # written last by generate(): train.csv's sha256 and every image's size
DEFAULT_COUNT = 2000
DEFAULT_SIZE = 256
# ISIC 2020 training set site mix (Kim & Rocheteau 2020, Table 3 / train.csv counts), last = missing.
SITE_MIX = (0.056, 0.150, 0.254, 0.509, 0.011, 0.004, 0.016)
SITE_EFFECT = {
    "head/neck": 0.9,
    "upper extremity": 0.35,
    "lower extremity": 0.0,
    "torso": 0.0,
    "palms/soles": 0.0,
    "oral/genital": 0.6,
}
SKIN_TONES = np.array(
    [(238, 204, 184), (226, 184, 155), (204, 156, 120), (170, 120, 86), (126, 86, 60), (88, 58, 42)], dtype=np.float32
)
SKIN_WEIGHTS = (0.30, 0.30, 0.20, 0.10, 0.06, 0.04)
LESION_COLOURS = {
    "light brown": (172, 120, 82),
    "dark brown": (96, 58, 38),
    "black": (42, 32, 32),
    "blue-gray": (104, 114, 136),
    "red": (176, 74, 72),
    "white": (222, 212, 204),
}


def cache_root() -> Path:
    """Where generated data is cached: $MELANOMA_CACHE, else ~/.cache/melanoma-export."""
    env = os.environ.get("MELANOMA_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "melanoma-export"


def synthetic_dir(count: int = DEFAULT_COUNT, size: int = DEFAULT_SIZE, seed: int = 0) -> Path:
    """The cache folder of one synthetic set."""
    return cache_root() / f"synthetic-v{VERSION}-n{count}-s{size}-seed{seed}"


def ensure_synthetic(count: int = DEFAULT_COUNT, size: int = DEFAULT_SIZE, seed: int = 0) -> Path:
    """Generate the synthetic set unless an intact copy is cached; returns its folder (ISIC 2020 layout).

    A cached copy is intact when its manifest (written last at generation) matches: the sha256 of train.csv,
    and every image present with the size it was written with. A damaged one (train.csv or images deleted or
    overwritten, an interrupted copy) is said on stderr and regenerated; one that cannot be regenerated ends
    in a UserError saying to delete the folder.
    """
    target = synthetic_dir(count, size, seed)
    damage = _damage(target)
    if damage is None:
        return target
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with _generation_lock(target):  # a second process waits here, then finds the set the first one wrote
            damage = _damage(target)
            if damage is None:
                return target
            if target.exists():
                print(f"the synthetic set in {target} cannot be trusted ({damage}): regenerating it", file=sys.stderr)
            _generate_into(target, count, size, seed)
    except OSError as exc:
        state = f"damaged ({damage})" if target.exists() else "not generated yet"
        raise UserError(
            f"the synthetic set in {target} is {state} and cannot be written there ({exc.strerror or exc}): "
            "delete that folder, or set MELANOMA_CACHE to a folder you can write, and rerun"
        ) from None
    return target


def _generate_into(target: Path, count: int, size: int, seed: int) -> None:
    """Generate beside `target`, then put the complete set in its place (a damaged copy is swapped out whole)."""
    with atomic_path(target) as tmp:
        generate(tmp, count, size, seed)


def _damage(folder: Path) -> str | None:
    """What is wrong with a cached set (None when it is intact): checked against its manifest, so the cost is
    one hash of train.csv and one stat per image."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
        images = list(manifest["images"].items())
        wanted = manifest["train_csv_sha256"]
    except FileNotFoundError:
        return "missing" if not folder.exists() else f"it has no {MANIFEST}: unfinished, or older than manifests"
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return f"its {MANIFEST} is unreadable"
    try:
        if sha256_file(folder / "train.csv") != wanted:
            return "its train.csv was changed"
    except OSError:
        return "its train.csv is missing"
    for name, length in images:
        try:
            if (folder / "train" / name).stat().st_size != length:
                return f"image {name} was changed"
        except OSError:
            return f"image {name} is missing"
    return None


@contextmanager
def _generation_lock(target: Path) -> Iterator[None]:
    """A blocking lock beside the cache folder: generation runs once however many processes need the set."""
    fd = os.open(target.parent / f".{target.name}.lock", os.O_CREAT | os.O_RDWR, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # released when the process dies, too
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def patients_table(count: int, seed: int) -> pd.DataFrame:
    """Metadata and labels of `count` synthetic lesions, several per patient (ISIC 2020 columns)."""
    rng = np.random.default_rng([seed, 1])
    rows = []
    patient = 0
    while len(rows) < count:
        age = float(np.clip(np.round(rng.normal(50, 16) / 5) * 5, 10, 90))
        sex = "male" if rng.random() < 0.52 else "female"
        for _ in range(1 + rng.poisson(2.0)):
            site_idx = rng.choice(len(SITE_MIX), p=np.array(SITE_MIX) / sum(SITE_MIX))
            site = SITES[site_idx] if site_idx < len(SITES) else ""
            logit = -2.3 + 0.05 * (age - 50) + SITE_EFFECT.get(site, 0.0) + (0.25 if sex == "male" else 0.0)
            target = int(rng.random() < 1 / (1 + np.exp(-logit)))
            rows.append(
                {
                    "image_name": f"SYN_{len(rows):07d}",
                    "patient_id": f"SYNP_{patient:06d}",
                    "sex": "" if rng.random() < 0.01 else sex,
                    "age_approx": np.nan if rng.random() < 0.01 else age,
                    "anatom_site_general_challenge": site,
                    "diagnosis": "melanoma" if target else "nevus",
                    "benign_malignant": "malignant" if target else "benign",
                    "target": target,
                }
            )
            if len(rows) == count:
                break
        patient += 1
    return pd.DataFrame(rows)


def generate(folder: Path, count: int, size: int, seed: int) -> None:
    """Write `train.csv` and `train/*.jpg` of a synthetic set into `folder`."""
    table = patients_table(count, seed)
    (folder / "train").mkdir(parents=True, exist_ok=True)
    for i, row in enumerate(
        tqdm(
            table.itertuples(),
            total=len(table),
            desc="generating synthetic set",
            unit="img",
            file=sys.stderr,
            disable=None,
        )
    ):
        rng = np.random.default_rng([seed, 2, i])
        atypia = rng.beta(6, 3) if row.target else rng.beta(2, 5)
        render(rng, atypia, size).save(folder / "train" / f"{row.image_name}.jpg", quality=92)
    table.to_csv(folder / "train.csv", index=False)
    (folder / "README.txt").write_text(
        "SYNTHETIC data generated by core/synthetic.py: procedurally drawn lesions, not real patients.\n"
    )
    manifest = {
        "count": count,
        "size": size,
        "seed": seed,
        "version": VERSION,
        "train_csv_sha256": sha256_file(folder / "train.csv"),
        "images": {p.name: p.stat().st_size for p in sorted((folder / "train").glob("*.jpg"))},
    }
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")  # last: its presence means "complete"


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Low-frequency noise in [-1, 1]: a random grid upsampled bicubically."""
    grid = rng.standard_normal((cells, cells)).astype(np.float32)
    up = np.asarray(Image.fromarray(grid, mode="F").resize((size, size), Image.BICUBIC))
    return np.clip(up / (np.abs(up).max() + 1e-6), -1, 1)


def render(rng: np.random.Generator, atypia: float, size: int) -> Image.Image:
    """Draw one lesion whose asymmetry, border irregularity and colour count grow with `atypia` (0-1)."""
    lin = np.linspace(-1, 1, size, dtype=np.float32)
    yy, xx = np.meshgrid(lin, lin, indexing="ij")

    skin = SKIN_TONES[rng.choice(len(SKIN_TONES), p=SKIN_WEIGHTS)] * rng.uniform(0.92, 1.06)
    image = np.broadcast_to(skin, (size, size, 3)) * (1 + 0.06 * _smooth_noise(rng, size, 5))[..., None]

    # Shape: polar radius with low-order (asymmetry) and high-order (ragged border) harmonics.
    cx, cy = rng.normal(0, 0.08, 2)
    stretch = rng.uniform(0.75, 1.0)
    angle = rng.uniform(0, np.pi)
    dx, dy = xx - cx, yy - cy
    u = dx * np.cos(angle) + dy * np.sin(angle)
    v = (-dx * np.sin(angle) + dy * np.cos(angle)) / stretch
    rho = np.sqrt(u**2 + v**2)
    theta = np.arctan2(v, u)
    r0 = float(np.clip(0.3 + 0.18 * atypia + rng.normal(0, 0.06), 0.14, 0.62))
    radius = np.ones_like(theta)
    for k in range(1, 4):
        radius += rng.normal(0, 0.02 + 0.14 * atypia) / k**0.5 * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
    for k in range(5, 16):
        radius += rng.normal(0, 0.002 + 0.022 * atypia) * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
    edge = 0.012 + 0.03 * atypia * rng.uniform(0.5, 1.5)
    mask = 1 / (1 + np.exp(-(r0 * radius - rho) / edge))

    # Colour: one brown for benign-looking lesions, extra colour zones as atypia grows.
    base = np.array(LESION_COLOURS["light brown"], dtype=np.float32) * rng.uniform(0.6, 1.05)
    lesion = np.broadcast_to(base, (size, size, 3)).copy()
    centre_dark = 1 - 0.25 * np.clip(1 - rho / (r0 + 1e-6), 0, 1) * rng.uniform(0.3, 1)
    lesion *= centre_dark[..., None]
    extra = rng.binomial(4, min(atypia, 0.95) ** 1.3)
    names = list(LESION_COLOURS)[1:]
    for name in rng.choice(names, size=extra, replace=False):
        zone = _smooth_noise(rng, size, int(rng.integers(3, 7)))
        weight = np.clip((zone - rng.uniform(-0.1, 0.5)) * 4, 0, 1) * rng.uniform(0.5, 0.95)
        lesion = lesion * (1 - weight[..., None]) + np.array(LESION_COLOURS[name], np.float32) * weight[..., None]
    # Pigment-network-like texture, more irregular with atypia.
    texture = _smooth_noise(rng, size, int(12 + 20 * atypia))
    lesion *= (1 + (0.05 + 0.12 * atypia) * texture)[..., None]
    image = image * (1 - mask[..., None]) + lesion * mask[..., None]

    # Dots and globules: central and few when benign, scattered towards the rim when atypical.
    out = Image.fromarray(np.clip(image, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(out)
    for _ in range(rng.poisson(3 + 12 * atypia)):
        spread = 0.3 + 0.7 * atypia
        a, r = rng.uniform(0, 2 * np.pi), r0 * spread * np.sqrt(rng.random())
        px = (cx + r * np.cos(a) + 1) / 2 * size
        py = (cy + r * np.sin(a) + 1) / 2 * size
        dot = size * rng.uniform(0.004, 0.012)
        shade = tuple(int(c) for c in np.array(LESION_COLOURS["dark brown"]) * rng.uniform(0.4, 1))
        draw.ellipse([px - dot, py - dot, px + dot, py + dot], fill=shade)
    # Hairs.
    if rng.random() < 0.45:
        for _ in range(1 + rng.poisson(4)):
            p0, p1, p2 = rng.uniform(-0.1, 1.1, (3, 2)) * size
            t = np.linspace(0, 1, 24)[:, None]
            curve = (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t**2 * p2
            colour = tuple(int(c) for c in rng.uniform(20, 70) * np.array([1.0, 0.8, 0.7]))
            draw.line([tuple(p) for p in curve], fill=colour, width=int(rng.integers(1, 3)))
    out = out.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.2) * size / 256))

    # Dermoscope vignetting or a black circular field stop; exposure jitter.
    pixels = np.asarray(out, dtype=np.float32)
    r_img = np.sqrt(xx**2 + yy**2)
    if rng.random() < 0.5:
        strength = rng.uniform(0.2, 0.6)
        pixels = pixels * (1 - strength * np.clip((r_img - 0.8) / 0.6, 0, 1) ** 2)[..., None]
    if rng.random() < 0.2:
        stop = rng.uniform(1.0, 1.3)
        pixels = pixels * np.clip((stop - r_img) / 0.03, 0, 1)[..., None]
    pixels = pixels * rng.uniform(0.9, 1.1) + rng.normal(0, 2.0, pixels.shape)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
