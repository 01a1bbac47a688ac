"""A model trained anywhere, behind the toolkit's interface: the contract's image rules and output head folded
into the graph, so every artifact takes RGB in [0, 1] plus the encoded `meta` and returns one logit (the
log-odds of the positive class), like the models `python -m train` writes.

    wrapped = ContractModel(their_model, Contract.load("their.contract.json"))
    logit = wrapped(image_rgb_01, meta)            # [N, 1]; export.common.ExportModel adds the probability

The rules are modules of their own, marked `keeps_float`: every int8 artifact keeps them float (a softmax head
in int8 would cost more flips than the whole model), as it keeps the temperature and the sigmoid.
"""

from __future__ import annotations

import torch
from torch import nn

from core.contract import Contract


class ImageRule(nn.Module):
    """RGB in [0, 1] -> what the model takes: channels flipped for a BGR model, the contract's mean / std (in
    the model's own channel order) applied, or nothing when they are null (the model takes v / 255)."""

    keeps_float = True  # export.quantize keeps it float in every int8 artifact, like the temperature and sigmoid

    def __init__(self, image: dict):
        super().__init__()
        self.bgr = image["channels"] == "BGR"
        self.normalise = image["mean"] is not None
        if self.normalise:
            self.register_buffer("mean", torch.tensor(image["mean"], dtype=torch.float32).view(1, 3, 1, 1))
            self.register_buffer("std", torch.tensor(image["std"], dtype=torch.float32).view(1, 3, 1, 1))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = image.flip(1) if self.bgr else image
        return (x - self.mean) / self.std if self.normalise else x


def log_sum_exp(x: torch.Tensor, dim: int, keepdim: bool = True) -> torch.Tensor:
    """log(sum(exp(x))) over `dim`, shifted by the maximum (exact, finite), written with max / exp / sum / log:
    torch.logsumexp exports as ONNX ReduceLogSumExp, whose `axes` OpenVINO 2026.4 ignores (it reduced over the
    batch too: one probability for a whole batch)."""
    top = x.amax(dim, keepdim=True)
    out = top + torch.log(torch.exp(x - top).sum(dim, keepdim=True))
    return out if keepdim else out.squeeze(dim)


class OutputRule(nn.Module):
    """The model's output -> one logit: a single logit passes through; C softmax logits become log(p / (1 - p))
    with p the summed probability of the positive classes, computed as logsumexp(positive) -
    logsumexp(negative), which is exact and stays finite where p rounds to 0 or 1 in float32."""

    keeps_float = True

    def __init__(self, output: dict):
        super().__init__()
        self.softmax = output["kind"] == "softmax"
        if self.softmax:
            positive = sorted(set(output["positive"]))
            negative = [i for i in range(output["classes"]) if i not in positive]
            self.register_buffer("positive", torch.tensor(positive, dtype=torch.long))
            self.register_buffer("negative", torch.tensor(negative, dtype=torch.long))

    def forward(self, out: torch.Tensor | tuple | list) -> torch.Tensor:
        if isinstance(out, tuple | list):
            out = out[0]
        out = out.reshape(out.shape[0], -1)
        if not self.softmax:
            return out[:, :1]
        positive = log_sum_exp(out.index_select(1, self.positive), 1)
        negative = log_sum_exp(out.index_select(1, self.negative), 1)
        return positive - negative


class ViewAverage(nn.Module):
    """Test-time augmentation's average: the logit of the mean probability over V views ([V, N, 1] logits),
    log(mean p) - log(mean (1 - p)) with log p = -softplus(-z), stable where p rounds to 0 or 1."""

    keeps_float = True

    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        positive = log_sum_exp(-nn.functional.softplus(-logits), 0, keepdim=False)
        negative = log_sum_exp(-nn.functional.softplus(logits), 0, keepdim=False)
        return positive - negative


class ContractModel(nn.Module):
    """`model(image, meta)` of another pipeline, fed and read as its contract says (ImageRule, OutputRule);
    with `tta`, the model sees the image and its flips in one batch and the probabilities are averaged."""

    def __init__(self, model: nn.Module, contract: Contract):
        super().__init__()
        self.image_rule = ImageRule(contract.data["image"])
        self.model = model
        self.output_rule = OutputRule(contract.data["output"])
        self.flips = tuple({"hflip": 3, "vflip": 2}[step] for step in contract.data.get("tta", []))
        self.views = ViewAverage()

    def forward(self, image: torch.Tensor, meta: torch.Tensor) -> torch.Tensor:
        if not self.flips:
            return self.output_rule(self.model(self.image_rule(image), meta))
        count = 1 + len(self.flips)
        views = torch.cat([image, *(image.flip(axis) for axis in self.flips)], dim=0)
        logits = self.output_rule(self.model(self.image_rule(views), meta.repeat(count, 1)))
        return self.views(logits.reshape(count, image.shape[0], 1))
