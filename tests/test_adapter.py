"""export.adapter: a foreign model's own pipeline (BGR, normalisation outside the model, softmax over 9 classes
with melanoma at index 6) is reproduced by ContractModel fed RGB in [0, 1], in PyTorch and through ONNX Runtime
(issue 20 groundwork)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from core.contract import Contract
from export.adapter import ContractModel
from export.common import ExportModel
from tests.test_contract import EXAMPLE

MEAN, STD = np.array([0.406, 0.456, 0.485]), np.array([0.225, 0.224, 0.229])  # BGR order, as their code has it


class TheirNet(nn.Module):
    """A small fusion CNN in someone else's style: 9 classes, features ++ meta before the last layer."""

    def __init__(self, meta_size: int, classes: int = 9):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8), nn.SiLU(), nn.AdaptiveAvgPool2d(1)
        )
        self.classifier = nn.Linear(8 + meta_size, classes)

    def forward(self, x: torch.Tensor, meta: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.cat([self.features(x).flatten(1), meta], dim=1))


def their_model(meta_size: int) -> nn.Module:
    torch.manual_seed(3)
    model = TheirNet(meta_size)
    model.train()
    for m in model.modules():  # recalibrate batch norms so the output depends on the image
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = None
    with torch.no_grad():
        for _ in range(4):
            model(torch.randn(8, 3, 32, 32), torch.randn(8, meta_size))
    return model.eval()


def their_probability(model: nn.Module, rgb: np.ndarray, meta: np.ndarray) -> np.ndarray:
    """Their pipeline: cv2 gives BGR, / 255, normalise in BGR order, softmax, class 6."""
    bgr = rgb[..., ::-1].astype(np.float64) / 255.0
    x = torch.from_numpy(((bgr - MEAN) / STD).transpose(0, 3, 1, 2).astype(np.float32))
    with torch.no_grad():
        return torch.softmax(model(x, torch.from_numpy(meta)), dim=1)[:, 6].numpy()


@pytest.fixture(scope="module")
def case() -> tuple:
    data = copy.deepcopy(EXAMPLE)
    data["image"].update(size=32, mean=MEAN.tolist(), std=STD.tolist())
    contract = Contract.from_dict(data)
    encoder = contract.encoder()
    rgb = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    patients = [
        {"sex": "male", "age_approx": 45, "n_images": 12, "anatom_site_general_challenge": "torso"},
        {"sex": "female", "age_approx": None, "n_images": 1, "anatom_site_general_challenge": "head/neck"},
        {"sex": None, "age_approx": 80, "n_images": 30, "anatom_site_general_challenge": None},
        {"sex": "female", "age_approx": 30, "n_images": 0, "anatom_site_general_challenge": "anterior torso"},
    ]
    meta = encoder.encode_many(patients)
    return their_model(encoder.size), contract, rgb, meta


def test_the_wrapped_model_gives_their_pipelines_probability(case) -> None:
    model, contract, rgb, meta = case
    wrapped = ExportModel(ContractModel(model, contract)).eval()
    image = torch.from_numpy(rgb.transpose(0, 3, 1, 2).astype(np.float32) / 255.0)
    with torch.no_grad():
        logit, probability = wrapped(image, torch.from_numpy(meta))
    expected = their_probability(model, rgb, meta)
    assert logit.shape == (4, 1)
    assert np.abs(probability.numpy().reshape(-1) - expected).max() < 1e-5
    assert np.ptp(expected) > 1e-4  # the probabilities differ between cases: the check can fail


def test_the_folded_graph_runs_in_onnx_runtime(case, tmp_path) -> None:
    import onnxruntime as ort

    model, contract, rgb, meta = case
    wrapped = ExportModel(ContractModel(model, contract)).eval()
    image = rgb.transpose(0, 3, 1, 2).astype(np.float32) / 255.0
    path = tmp_path / "theirs.onnx"
    torch.onnx.export(
        wrapped,
        (torch.from_numpy(image), torch.from_numpy(meta)),
        str(path),
        input_names=["image", "meta"],
        output_names=["logit", "probability"],
        dynamic_axes={n: {0: "batch"} for n in ("image", "meta", "logit", "probability")},
        dynamo=False,
    )
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    _, probability = session.run(None, {"image": image, "meta": meta})
    assert np.abs(probability.reshape(-1) - their_probability(model, rgb, meta)).max() < 1e-5


def test_a_sigmoid_rgb_model_passes_through() -> None:
    data = copy.deepcopy(EXAMPLE)
    data["image"].update(channels="RGB", mean=None, std=None)
    data["output"] = {"kind": "sigmoid"}
    contract = Contract.from_dict(data)

    class One(nn.Module):
        def forward(self, x: torch.Tensor, meta: torch.Tensor) -> torch.Tensor:
            return x.mean(dim=(1, 2, 3)).unsqueeze(1) + meta.sum(1, keepdim=True)

    image, meta = torch.rand(2, 3, 8, 8), torch.rand(2, 7)
    assert torch.equal(ContractModel(One(), contract)(image, meta), One()(image, meta))


def test_tta_averages_the_probabilities_of_the_flipped_views() -> None:
    from core.contract import Contract
    from export.adapter import ContractModel

    class Tiny(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 3, 3)
            self.fc = torch.nn.Linear(3 + 2, 3)

        def forward(self, image: torch.Tensor, meta: torch.Tensor) -> torch.Tensor:
            x = self.conv(image)[:, :, :4, :6].mean(dim=(2, 3)) * 5  # not flip-invariant
            return self.fc(torch.cat([x, meta], 1))

    torch.manual_seed(0)
    base = {
        "contract": "melanoma-contract/1",
        "name": "tta",
        "image": {"size": 16, "channels": "RGB", "mean": None, "std": None, "resize": "pillow"},
        "metadata": [
            {"name": "a", "kind": "number", "field": "a", "missing": 0},
            {"name": "b", "kind": "number", "field": "b", "missing": 0},
        ],
        "output": {"kind": "softmax", "classes": 3, "positive": [1, 2]},
        "decision": {"threshold": 0.5},
    }
    model = Tiny().eval()
    plain = ContractModel(model, Contract.from_dict(base)).eval()
    tta = ContractModel(model, Contract.from_dict(base | {"tta": ["hflip", "vflip"]})).eval()
    image, meta = torch.rand(4, 3, 16, 16), torch.randn(4, 2)
    with torch.no_grad():
        views = [plain(image, meta), plain(image.flip(3), meta), plain(image.flip(2), meta)]
        expected = torch.stack([torch.sigmoid(v) for v in views]).mean(0)
        got = torch.sigmoid(tta(image, meta))
    assert torch.allclose(got, expected, atol=1e-6)
    assert not torch.allclose(got, torch.sigmoid(views[0]), atol=1e-3)  # the flips did change something
