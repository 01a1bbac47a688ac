"""The training augmentation preset. Decoding and the eval preprocessing (the spec's contract) live in
`core.images`, the one reference the phone ports mirror."""

from __future__ import annotations

import torch
from torchvision.transforms import v2


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
