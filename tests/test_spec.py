import json

import numpy as np
import pytest
import torch

from core import zoo
from core.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from core.contract import Contract
from core.errors import UserError
from core.metadata import MetadataEncoder
from core.spec import ImageContract, ModelSpec, OutputContract, state_dict_sha256


def make_spec(size: int = 32, name: str = "standard_cnn") -> ModelSpec:
    enc = MetadataEncoder.fit([30, 50, 70])
    return ModelSpec.for_contract(
        Contract.from_metadata_encoder(enc, name, size),
        architecture=name,
        outputs=OutputContract(),
        image=ImageContract(size=size),
        model_config=zoo.model_config(name, enc.size, size),
    )


def test_round_trip_through_json_is_exact() -> None:
    spec = make_spec()
    again = ModelSpec.from_json(spec.to_json())
    assert again == spec
    assert again.to_json() == spec.to_json()
    assert again.encoder().size == spec.meta_size == 12


def test_spec_is_plain_json() -> None:
    data = json.loads(make_spec().to_json())
    assert data["image"]["value_range"] == [0.0, 1.0]
    assert data["outputs"]["names"] == ["logit", "probability"]
    assert "not a medical device" in make_spec().provenance.get("intended_use", "not a medical device")


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.update(schema="other"), "not a model spec"),
        (lambda d: d.update(schema_version=99), "not supported"),
        (lambda d: d.update(surprise=1), "unknown fields"),
        (lambda d: d["image"].update(colour="BGR"), "unknown fields"),
        (lambda d: d.pop("image"), "has no 'image'"),
        # A contract reader never fills in a missing field: each is refused by name.
        (lambda d: d["image"].pop("layout"), "image has no 'layout'"),
        (lambda d: d["outputs"].pop("threshold"), "outputs has no 'threshold'"),
        (lambda d: d.pop("outputs"), "has no 'outputs'"),
        (lambda d: d["image"].pop("mean"), "image has no 'mean'"),
        (lambda d: d["outputs"].update(threshold=float("nan")), "not a finite number"),
        (lambda d: d["outputs"].update(threshold=1.5), "not a probability"),
        (lambda d: d["outputs"].update(temperature=0.0), "must be positive"),
        (lambda d: d["outputs"].update(positive_label="naevus"), "is not one of"),
    ],
)
def test_invalid_specs_are_refused(mutate, message: str) -> None:
    data = make_spec().to_dict()
    mutate(data)
    with pytest.raises(ValueError, match=message):
        ModelSpec.from_dict(data)


def test_weights_hash_is_stable_and_sensitive() -> None:
    model, _ = zoo.create_model("standard_cnn", 12, "none", 32)
    sd = model.state_dict()
    h = state_dict_sha256(sd)
    assert h == state_dict_sha256({k: v.clone() for k, v in reversed(list(sd.items()))})
    sd["head.bias"] = sd["head.bias"] + 1e-3
    assert state_dict_sha256(sd) != h


def test_checkpoint_round_trip_weights_only(tmp_path) -> None:
    model, _ = zoo.create_model("standard_cnn", 12, "none", 32)
    spec = make_spec()
    path = save_checkpoint(tmp_path / "checkpoint.pt", model, spec)
    raw = torch.load(path, weights_only=True)  # plain data only: no pickled objects
    assert raw["spec"]["weights_sha256"] == spec.weights_sha256 != ""
    assert ModelSpec.load(tmp_path / "spec.json") == spec
    loaded, spec2 = load_checkpoint(path)
    assert spec2 == spec
    x, m = torch.rand(2, 3, 32, 32), torch.rand(2, 12)
    torch.testing.assert_close(loaded(x, m), model.eval()(x, m))
    assert not list(tmp_path.glob(".*.tmp"))  # the atomic write left nothing behind


def test_bad_checkpoints_are_refused(tmp_path) -> None:
    with pytest.raises(UserError, match="does not exist"):
        read_checkpoint(tmp_path / "nope.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="not a readable checkpoint"):
        read_checkpoint(tmp_path / "junk.pt")
    torch.save({"hello": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(UserError, match="not a checkpoint written by"):
        read_checkpoint(tmp_path / "other.pt")
    model, _ = zoo.create_model("standard_cnn", 12, "none", 32)
    path = save_checkpoint(tmp_path / "c.pt", model, make_spec())
    payload = torch.load(path, weights_only=True)
    payload["state_dict"]["head.bias"] += 1
    torch.save(payload, path)
    with pytest.raises(UserError, match="altered"):
        load_checkpoint(path)


def test_a_checkpoint_of_a_versioned_module_reloads(tmp_path) -> None:
    """torchvision's MNASNet refuses a state dict without its module versions (`_metadata`)."""
    model, _ = zoo.create_model("mnasnet1_0", 12, "none", 32)
    path = save_checkpoint(tmp_path / "c.pt", model, make_spec(name="mnasnet1_0"))
    assert torch.load(path, weights_only=True)["state_dict"]._metadata is not None
    reloaded, _ = load_checkpoint(path)  # and one written without them (older checkpoints) reloads too
    payload = torch.load(path, weights_only=True)
    payload["state_dict"] = dict(payload["state_dict"])
    torch.save(payload, path)
    reloaded, _ = load_checkpoint(path)
    assert isinstance(reloaded.backbone, torch.nn.Module)


@pytest.mark.parametrize("probability", [float("nan"), float("inf"), -0.1, 1.5, None, "0.9", True])
def test_decide_refuses_what_is_not_a_probability(probability) -> None:
    """A comparison with NaN is False, which would read as "benign": anything but a probability is refused."""
    with pytest.raises(ValueError, match="cannot decide"):
        make_spec().outputs.decide(probability)


def test_decide_at_the_threshold() -> None:
    outputs = make_spec().outputs
    assert outputs.decide(outputs.threshold) == ("melanoma", True)
    assert outputs.decide(np.float32(0.0)) == ("benign", False)
