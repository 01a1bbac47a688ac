"""The image half of the contract: decode a file, then turn its pixels into the `image` input the spec asks for.

This is the one Python reference implementation. The Kotlin port (`android_demo/core`, `Preprocess.kt`) and
the JavaScript port (`web_demo/src/contract.js`) mirror it function for function and are tested against it.

    from core.images import load_rgb, preprocess
    x = preprocess(load_rgb("lesion.jpg"), spec.image)     # float32 [3, S, S] (NCHW spec) or [S, S, 3] (NHWC)

The steps, each written down in the spec's `ImageContract`:
1. decode (`load_rgb`): EXIF orientation applied, any mode converted to 8-bit RGB (alpha composited on
   white, 16-bit gray rescaled), no colour-space conversion;
2. resize (`resize_rgb`): the whole image stretched to S x S (aspect ratio not kept) by Pillow's bilinear
   filter with antialiasing: per axis a triangle filter whose support grows with the downscale factor,
   coefficients in 22-bit fixed point, results rounded to 8 bits after each pass. Pillow 13 runs the
   vertical pass first when the height shrinks by more than twice as many pixels as the width (see
   `pass_order`); earlier versions always ran the horizontal pass first. The Pillow version is pinned
   in pyproject.toml and recorded in the spec (`resize_library_version`);
   A contract with `"resize": "bilinear"` (ImageContract.antialias false) asks instead for `resize_bilinear`:
   OpenCV's cv2.resize INTER_LINEAR (no antialias, half-pixel centres), in its own fixed point, bit-exact
   with opencv-python 5.0 (tests/test_contract.py checks it on random sizes);
3. scale (`to_float`): each 8-bit value v becomes v / 255 in float32 (a correctly rounded division, so
   every language gets the same bits), laid out as the spec says.
Mean / std and the channel order a model wants are applied inside the exported graph, never here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import PIL
from PIL import Image, ImageOps

from core.errors import UserError

PILLOW_VERSION = PIL.__version__
SUPPORTED = {"resize": ("stretch",), "interpolation": ("bilinear",), "layout": ("NCHW", "NHWC")}


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


class ImageTooLarge(UserError, OSError):
    """An image whose header claims more pixels than Pillow's decompression-bomb limit.

    Both kinds of error its callers already handle: an OSError, like a truncated file (training skips it and
    counts it as a bad image), and a UserError (a command ends in its one sentence).
    """


def load_rgb(path: str | Path, draft: int | None = None) -> Image.Image:
    """Decode `path` to an RGB PIL image with its EXIF orientation applied (decodes every pixel).

    Args:
        path: image file (any format PIL reads).
        draft: when set and the file is a JPEG, let the decoder downscale in the DCT domain to no less
            than draft x draft: much faster on large ISIC photos. For training only, since it changes
            pixels slightly compared with the full decode the spec describes.

    Raises:
        OSError / PIL.UnidentifiedImageError / ValueError: the file is missing, not an image, or damaged
        (a truncated JPEG fails here, where the pixels are decoded, not when the header is read).
        ImageTooLarge (an OSError and a UserError): the header claims more pixels than Pillow decodes safely
        (PIL.Image.DecompressionBombError, or its warning when warnings are errors).
    """
    try:
        with Image.open(path) as image:
            if draft and image.format == "JPEG":
                image.draft("RGB", (draft, draft))
            image = ImageOps.exif_transpose(image)
            image.load()
            return to_rgb(image)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageTooLarge(
            f"{path} is too large to decode safely ({str(exc).rstrip('.')}): "
            "no lesion photo is that large; remove it or downscale it"
        ) from None


def check_contract(contract) -> None:
    """Refuse an image contract this implementation cannot honour (one sentence naming the field)."""
    for name, allowed in SUPPORTED.items():
        value = getattr(contract, name)
        if value not in allowed:
            raise UserError(f"the spec asks for image {name} {value!r}; this toolkit implements {', '.join(allowed)}")
    if not isinstance(contract.antialias, bool):
        raise UserError(f"the spec's image antialias is {contract.antialias!r}, not true or false")


# OpenCV's INTER_LINEAR for 8-bit images: 11-bit coefficients, then its vectorised vertical pass, whose shifts
# (each product of the horizontal sum >> 4 and a coefficient, >> 16, summed, + 2, >> 2) differ from an exact
# rounding by one level now and then. OpenCV runs that vector code on every row, clamped ones included.
COEF_BITS = 11


def _linear_taps(src: int, dst: int) -> tuple[np.ndarray, np.ndarray]:
    """For each output index: the two source indices and their 11-bit weights, as cv2.resize computes them
    (source position in float32 from a double, floor, the fraction's weights rounded half to even; indices
    clamped to the image, the weights not)."""
    scale = 1.0 / (dst / src)
    position = ((np.arange(dst, dtype=np.float64) + 0.5) * scale - 0.5).astype(np.float32)
    first = np.floor(position)
    fraction = (position - first).astype(np.float32)
    one = np.float32(1 << COEF_BITS)
    weights = np.stack([np.rint((np.float32(1) - fraction) * one), np.rint(fraction * one)], axis=1)
    index = np.stack([first, first + 1], axis=1).astype(np.int64).clip(0, src - 1)
    return index, weights.astype(np.int32)


def resize_bilinear(pixels: np.ndarray, width: int, height: int) -> np.ndarray:
    """uint8 [H, W, C] -> uint8 [height, width, C], as cv2.resize(pixels, (width, height), INTER_LINEAR)."""
    x_index, x_weight = _linear_taps(pixels.shape[1], width)
    y_index, y_weight = _linear_taps(pixels.shape[0], height)
    source = np.asarray(pixels, dtype=np.int32)  # 255 * 2048 and (that >> 4) * 2048 both fit in 32 bits
    rows = source[:, x_index[:, 0]] * x_weight[:, 0, None] + source[:, x_index[:, 1]] * x_weight[:, 1, None]
    top, bottom = rows[y_index[:, 0]] >> 4, rows[y_index[:, 1]] >> 4
    out = ((top * y_weight[:, 0, None, None]) >> 16) + ((bottom * y_weight[:, 1, None, None]) >> 16)
    return ((out + 2) >> 2).astype(np.uint8)


def pass_order(in_width: int, in_height: int, out_width: int, out_height: int) -> str:
    """Which pass Pillow 13 runs first: "vertical" when the height shrinks by more than twice as many
    pixels as the width, else "horizontal" (a pass whose size does not change is skipped).

    Measured against Pillow 13.0 on 400 random size pairs (tests/test_images.py keeps checking it); the
    rounding to 8 bits between the passes is why the order changes results by up to 1/255.
    """
    shrink_y, shrink_x = in_height - out_height, in_width - out_width
    return "vertical" if out_height < in_height and shrink_y > 2 * shrink_x else "horizontal"


def resize_rgb(image: Image.Image, size: int) -> Image.Image:
    """Stretch an RGB image to size x size with Pillow's antialiased bilinear filter (the spec's resize)."""
    if image.mode != "RGB":
        raise ValueError(f"resize_rgb takes an RGB image, got mode {image.mode}: decode it with load_rgb")
    return image.resize((size, size), Image.Resampling.BILINEAR)


def to_float(pixels: np.ndarray, layout: str) -> np.ndarray:
    """uint8 RGB [H, W, 3] -> float32 v / 255, as [3, H, W] for "NCHW" or [H, W, 3] for "NHWC"."""
    x = np.asarray(pixels, dtype=np.uint8).astype(np.float32) / np.float32(255.0)
    if layout == "NCHW":
        return np.ascontiguousarray(x.transpose(2, 0, 1))
    if layout == "NHWC":
        return x
    raise ValueError(f"unknown image layout {layout!r}: NCHW or NHWC")


def preprocess(image: Image.Image, contract, layout: str | None = None) -> np.ndarray:
    """A decoded RGB image -> the `image` tensor of one case (no batch axis), as `contract` says.

    Args:
        image: RGB PIL image from `load_rgb` (or any RGB image).
        contract: the spec's ImageContract (size, resize rule, interpolation, layout).
        layout: override the contract's layout (runners take NCHW whatever the artifact's layout).
    """
    check_contract(contract)
    if contract.antialias:
        pixels = np.asarray(resize_rgb(image, contract.size))
    else:
        pixels = resize_bilinear(np.asarray(image.convert("RGB")), contract.size, contract.size)
    return to_float(pixels, layout or contract.layout)


def eval_transform(contract):
    """`preprocess` as a torchvision-style callable returning a CHW torch tensor (for DataLoaders)."""
    import torch

    check_contract(contract)

    def transform(image: Image.Image) -> torch.Tensor:
        return torch.from_numpy(preprocess(image, contract, layout="NCHW"))

    return transform
