"""Two melanoma fusion models as other people's code writes them, for the bring-your-own-model tests. The tests
copy this file somewhere else and load it with `--module FILE.py:FACTORY`, as a user would.

- `PaperNet` after Kim & Rocheteau 2020's public code: BGR input (cv2.imread never converted), ImageNet mean /
  std applied by the data loader (outside the model), a Swish written as a Python autograd.Function (which
  TorchScript cannot script or trace into a saved graph), metadata as a sex code, age / 90, log1p of the
  patient's image count, log of the JPEG size in bytes and a one-hot over the 2019 and 2020 site names kept
  apart, the whole vector divided by its L2 norm; a softmax over 9 classes, melanoma at index 6.
- `SmallTorchvisionNet`: a torchvision MobileNetV3-Small trunk (batch norm, hard-swish, squeeze-excite), RGB
  input in [0, 1] with no normalisation, age with a missing flag, sex one-hot with aliases, site as a code; one
  logit with a sigmoid.

Each comes with its own pipeline (`*_pipeline`): what its training code does to an image file and a CSV row,
written here as that code would, without this toolkit, so a test can hold the export to it.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import torch
from torch import nn

PAPER_SIZE = 64
PAPER_SITES = [
    "head/neck",
    "upper extremity",
    "lower extremity",
    "torso",
    "anterior torso",
    "posterior torso",
    "lateral torso",
    "palms/soles",
    "oral/genital",
]
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
TORCHVISION_SIZE = 48


class _Swish(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * torch.sigmoid(x)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        s = torch.sigmoid(x)
        return grad * (s * (1 + x * (1 - s)))


class Swish(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _Swish.apply(x)


class PaperNet(nn.Module):
    """A 5-layer CNN, metadata concatenated before the final layer, 9 classes."""

    def __init__(self, n_meta: int = 14, width: int = 12):
        super().__init__()
        layers, channels = [], 3
        for i in range(5):
            out = width * (2 ** min(i, 2))
            layers += [nn.Conv2d(channels, out, 3, stride=2 if i else 1, padding=1), Swish()]
            channels = out
        self.cnn = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.meta = nn.Sequential(nn.Linear(n_meta, 16), nn.ReLU())
        self.classifier = nn.Linear(channels + 16, 9)

    def forward(self, image: torch.Tensor, meta: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.cat([self.cnn(image), self.meta(meta)], dim=1))


def build_paper() -> nn.Module:
    return PaperNet()


def paper_contract() -> dict:
    return {
        "contract": "melanoma-contract/1",
        "name": "paper-net",
        "image": {
            "size": PAPER_SIZE,
            "channels": "BGR",
            "mean": [0.485, 0.456, 0.406],
            "std": [0.229, 0.224, 0.225],
            "resize": "bilinear",
        },
        "metadata": [
            {"name": "sex", "kind": "code", "field": "sex", "codes": {"male": 1, "female": 0}, "missing": -1},
            {"name": "age", "kind": "number", "field": "age_approx", "offset": 0, "scale": 90, "missing": 0},
            {"name": "n_images", "kind": "number", "field": "n_images", "transform": "log1p", "missing": 0},
            {"name": "file_size", "kind": "number", "field": "jpeg_bytes", "transform": "log", "missing": 0},
            {
                "name": "site",
                "kind": "one_hot",
                "field": "anatom_site_general_challenge",
                "categories": PAPER_SITES,
                "aliases": {},
                "missing": "column",
            },
        ],
        "normalize": [{"kind": "l2", "features": ["sex", "age", "n_images", "file_size", "site"]}],
        "output": {"kind": "softmax", "classes": 9, "positive": [6]},
        "decision": {"rule": "sensitivity", "target": 0.9},
    }


def paper_meta(row: dict) -> np.ndarray:
    """The paper code's own metadata vector for one CSV row."""
    sex = {"male": 1.0, "female": 0.0}.get(row.get("sex"), -1.0)
    age = row.get("age_approx")
    age = 0.0 if age is None or (isinstance(age, float) and math.isnan(age)) else float(age) / 90
    n = row.get("n_images")
    n = 0.0 if n is None or (isinstance(n, float) and math.isnan(n)) else math.log1p(float(n))
    size = row.get("jpeg_bytes")
    size = 0.0 if size is None or (isinstance(size, float) and math.isnan(size)) else math.log(float(size))
    site = np.zeros(len(PAPER_SITES) + 1)
    name = row.get("anatom_site_general_challenge")
    site[PAPER_SITES.index(name) if isinstance(name, str) and name in PAPER_SITES else -1] = 1.0
    vector = np.array([sex, age, n, size, *site], dtype=np.float64)
    return (vector / np.linalg.norm(vector)).astype(np.float32)


def paper_image(rgb: np.ndarray) -> np.ndarray:
    """The paper code's own image tensor [3, S, S] from decoded RGB pixels: BGR as cv2 reads it, cv2.resize,
    / 255, ImageNet mean / std (in RGB order, applied to BGR channels as that code does)."""
    bgr = np.ascontiguousarray(rgb[:, :, ::-1])
    small = cv2.resize(bgr, (PAPER_SIZE, PAPER_SIZE), interpolation=cv2.INTER_LINEAR).astype(np.float32) / 255
    return ((small - IMAGENET_MEAN) / IMAGENET_STD).transpose(2, 0, 1).copy()


def paper_probability(model: nn.Module, rgb: np.ndarray, row: dict) -> float:
    """Melanoma's softmax probability, as the paper's own inference code computes it."""
    with torch.no_grad():
        logits = model(torch.from_numpy(paper_image(rgb))[None], torch.from_numpy(paper_meta(row))[None])
    return float(torch.softmax(logits.double(), dim=1)[0, 6])


class SmallTorchvisionNet(nn.Module):
    def __init__(self, n_meta: int = 7):
        super().__init__()
        from torchvision.models import mobilenet_v3_small

        # The first 7 stages of a half-width MobileNetV3-Small: its blocks, at a size a test converts quickly.
        self.features = mobilenet_v3_small(weights=None, width_mult=0.5).features[:7]
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.meta_net = nn.Sequential(nn.Linear(n_meta, 8), nn.Hardswish())
        channels = self.features(torch.zeros(1, 3, 32, 32)).shape[1]
        self.fc = nn.Linear(channels + 8, 1)

    def forward(self, image: torch.Tensor, meta: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.features(image)).flatten(1)
        return self.fc(torch.cat([x, self.meta_net(meta)], dim=1))


def build_torchvision() -> nn.Module:
    return SmallTorchvisionNet()


def torchvision_contract() -> dict:
    return {
        "contract": "melanoma-contract/1",
        "name": "small-torchvision",
        "image": {"size": TORCHVISION_SIZE, "channels": "RGB", "mean": None, "std": None, "resize": "pillow"},
        "metadata": [
            {
                "name": "age",
                "kind": "number",
                "field": "age_approx",
                "offset": 50,
                "scale": 20,
                "missing": 0,
                "missing_flag": True,
                "range": [0, 120],
                "unit": "years",
            },
            {
                "name": "sex",
                "kind": "one_hot",
                "field": "sex",
                "categories": ["male", "female"],
                "aliases": {"m": "male", "f": "female"},
                "missing": "zeros",
            },
            {
                "name": "site",
                "kind": "code",
                "field": "anatom_site_general_challenge",
                "codes": {"torso": 1, "head/neck": 2, "upper extremity": 3, "lower extremity": 4},
                "aliases": {"anterior torso": "torso"},
                "missing": 0,
            },
            {"name": "n_images", "kind": "number", "field": "n_images", "transform": "log1p", "missing": 0},
            {"name": "lesions", "kind": "number", "field": "n_images", "offset": 10, "scale": 10, "missing": 0},
        ],
        "output": {"kind": "sigmoid"},
        "decision": {"rule": "youden"},
    }


class FixedSizeNet(nn.Module):
    """Flattens the image into one linear layer, so it takes 32 px images only (a contract's size it refuses)."""

    def __init__(self, n_meta: int = 14):
        super().__init__()
        self.fc = nn.Linear(3 * 32 * 32 + n_meta, 9)

    def forward(self, image: torch.Tensor, meta: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.cat([image.flatten(1), meta], dim=1))


def build_fixed() -> nn.Module:
    return FixedSizeNet()
