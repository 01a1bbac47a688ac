"""export.sources: a model from the user's own file and state dict, or from a saved torch.export program; every
way it can go wrong is one sentence (issue 20 groundwork)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from core.errors import UserError
from export.sources import load_module_model, load_program

THEIR_FILE = """
import torch
from torch import nn


class Theirs(nn.Module):
    def __init__(self, width=8):
        super().__init__()
        self.conv = nn.Conv2d(3, width, 3)
        self.head = nn.Linear(width + 4, 9)

    def forward(self, x, meta):
        return self.head(torch.cat([self.conv(x).mean((2, 3)), meta], 1))


def build():
    return Theirs()


def build_wide():
    return Theirs(width=16)


NOT_A_FUNCTION = 3


def broken():
    raise RuntimeError("their bug")
"""


@pytest.fixture
def their_file(tmp_path: Path) -> Path:
    path = tmp_path / "theirs.py"
    path.write_text(THEIR_FILE)
    return path


def test_a_factory_and_its_state_dict(their_file: Path, tmp_path: Path) -> None:
    reference = load_module_model(f"{their_file}:build", None)
    torch.save(reference.state_dict(), tmp_path / "w.pth")
    model = load_module_model(f"{their_file}:build", tmp_path / "w.pth")
    x, meta = torch.rand(2, 3, 16, 16), torch.rand(2, 4)
    assert torch.equal(model(x, meta), reference.eval()(x, meta)) and not model.training
    torch.save({"state_dict": reference.state_dict(), "epoch": 3}, tmp_path / "ckpt.pth")
    assert torch.equal(load_module_model(f"{their_file}:build", tmp_path / "ckpt.pth")(x, meta), model(x, meta))


@pytest.mark.parametrize(
    ("reference", "words"),
    [
        ("{file}", "must be FILE.py:FACTORY"),
        ("{dir}/absent.py:build", "does not exist"),
        ("{file}:missing", "is not defined there"),
        ("{file}:NOT_A_FUNCTION", "is not callable"),
        ("{file}:broken", "RuntimeError: their bug"),
        ("no_such_package.models:build", "cannot import no_such_package.models"),
    ],
)
def test_a_bad_module_reference_is_one_sentence(their_file: Path, reference: str, words: str) -> None:
    with pytest.raises(UserError) as caught:
        load_module_model(reference.format(file=their_file, dir=their_file.parent), None)
    assert words in str(caught.value) and "\n" not in str(caught.value)


def test_weights_that_do_not_fit_name_the_keys(their_file: Path, tmp_path: Path) -> None:
    torch.save(load_module_model(f"{their_file}:build_wide", None).state_dict(), tmp_path / "wide.pth")
    with pytest.raises(UserError, match=r"of another shape \(conv\.weight \[16, 3, 3, 3\] vs \[8, 3, 3, 3\]"):
        load_module_model(f"{their_file}:build", tmp_path / "wide.pth")
    state = {f"module.{k}": v for k, v in load_module_model(f"{their_file}:build", None).state_dict().items()}
    torch.save(state, tmp_path / "dp.pth")
    with pytest.raises(UserError, match="DataParallel"):
        load_module_model(f"{their_file}:build", tmp_path / "dp.pth")
    with pytest.raises(UserError, match="does not exist"):
        load_module_model(f"{their_file}:build", tmp_path / "absent.pth")


def test_a_saved_export_program(their_file: Path, tmp_path: Path) -> None:
    model = load_module_model(f"{their_file}:build", None)
    x, meta = torch.rand(1, 3, 16, 16), torch.rand(1, 4)
    torch.export.save(torch.export.export(model, (x, meta)), tmp_path / "theirs.pt2")
    assert torch.allclose(load_program(tmp_path / "theirs.pt2")(x, meta), model(x, meta))
    (tmp_path / "bad.pt2").write_bytes(b"not a program")
    with pytest.raises(UserError, match=r"is not a torch\.export program"):
        load_program(tmp_path / "bad.pt2")
