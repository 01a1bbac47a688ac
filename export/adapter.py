"""A model trained anywhere, behind the toolkit's interface: the contract's image rules and output head folded
into the graph, so every artifact takes RGB in [0, 1] plus the encoded `meta` and returns one logit (the
log-odds of the positive class), like the models `python -m train` writes.

    wrapped = ContractModel(their_model, Contract.load("their.contract.json"))
    logit = wrapped(image_rgb_01, meta)            # [N, 1]; export.common.ExportModel adds the probability

Issue 20 groundwork: the export entry points (`--module`, `--contract`, `--eval-csv`) come next.
"""

from __future__ import annotations

import torch
from torch import nn

from core.contract import Contract


class ContractModel(nn.Module):
    """`model(image, meta)` of another pipeline, fed and read as its contract says.

    - image: the channel order is flipped for a BGR model; the contract's mean / std (in the model's own
      channel order) are applied, or nothing when they are null (the model takes v / 255).
    - output: one logit passes through; C softmax logits become log(p / (1 - p)) with p the summed
      probability of the positive classes, computed as logsumexp(positive) - logsumexp(negative), which is
      exact and stays finite where p rounds to 0 or 1 in float32.
    """

    def __init__(self, model: nn.Module, contract: Contract):
        super().__init__()
        self.model = model
        image, output = contract.data["image"], contract.data["output"]
        self.bgr = image["channels"] == "BGR"
        self.normalise = image["mean"] is not None
        if self.normalise:
            self.register_buffer("mean", torch.tensor(image["mean"], dtype=torch.float32).view(1, 3, 1, 1))
            self.register_buffer("std", torch.tensor(image["std"], dtype=torch.float32).view(1, 3, 1, 1))
        self.softmax = output["kind"] == "softmax"
        if self.softmax:
            positive = sorted(set(output["positive"]))
            negative = [i for i in range(output["classes"]) if i not in positive]
            self.register_buffer("positive", torch.tensor(positive, dtype=torch.long))
            self.register_buffer("negative", torch.tensor(negative, dtype=torch.long))
        self.classes = output.get("classes", 1)

    def forward(self, image: torch.Tensor, meta: torch.Tensor) -> torch.Tensor:
        x = image.flip(1) if self.bgr else image
        if self.normalise:
            x = (x - self.mean) / self.std
        out = self.model(x, meta)
        if isinstance(out, tuple | list):
            out = out[0]
        out = out.reshape(out.shape[0], -1)
        if not self.softmax:
            return out[:, :1]
        positive = torch.logsumexp(out.index_select(1, self.positive), dim=1, keepdim=True)
        negative = torch.logsumexp(out.index_select(1, self.negative), dim=1, keepdim=True)
        return positive - negative
