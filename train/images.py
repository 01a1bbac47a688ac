"""Decoding any image file to RGB, and the train / eval transform presets.

The eval preset is exactly the resize the ModelSpec describes (whole image stretched to S x S, PIL
bilinear with antialiasing, RGB in [0, 1]); an app that follows the spec reproduces it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps
from torchvision.transforms import v2


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any PIL mode to RGB: alpha composited on white, 16-bit gray rescaled, CMYK/P/L converted."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(image, dtype=np.float64)
        peak = 65535.0 if image.mode.startswith("I;16") else max(float(arr.max()), 1.0)
        image = Image.fromarray(np.clip(arr / peak * 255.0, 0, 255).astype(np.uint8), mode="L")
    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB") if image.mode != "RGB" else image


def load_rgb(path: str | Path, draft: int | None = None) -> Image.Image:
    """Decode `path` to an RGB PIL image with its EXIF orientation applied.

    Args:
        path: image file (any format PIL reads).
        draft: when set and the file is a JPEG, let the decoder downscale in the DCT domain to no less
            than draft x draft: much faster on large ISIC photos. Used for training only, since it
            changes pixels slightly compared with the full decode the spec describes.
    """
    with Image.open(path) as image:
        if draft and image.format == "JPEG":
            image.draft("RGB", (draft, draft))
        image = ImageOps.exif_transpose(image)
        image.load()
        return to_rgb(image)


def eval_transform(size: int) -> v2.Compose:
    """The spec's preprocessing: stretch to size x size (PIL bilinear, antialiased), float RGB in [0, 1]."""
    return v2.Compose(
        [
            v2.Resize((size, size), interpolation=v2.InterpolationMode.BILINEAR, antialias=True),
            v2.ToImage(),
            v2.ToDtype(torch.float32, scale=True),
        ]
    )


def train_transform(
    size: int,
    *,
    scale: tuple[float, float] = (0.5, 1.0),
    rotation: float = 180.0,
    brightness: float = 0.2,
    saturation: float = 0.2,
) -> v2.Compose:
    """The paper's augmentation: random resized crop, rotation, flips, brightness and saturation jitter."""
    return v2.Compose(
        [
            v2.RandomResizedCrop(size, scale=scale, antialias=True),
            v2.RandomHorizontalFlip(),
            v2.RandomVerticalFlip(),
            v2.RandomRotation(rotation),
            v2.ColorJitter(brightness=brightness, saturation=saturation),
            v2.ToImage(),
            v2.ToDtype(torch.float32, scale=True),
        ]
    )
