"""web_demo: contract.js against the Python reference in Node, and the page end to end in headless Chromium.

- Node (`node --test web_demo/test/`): every golden case of an export written in this session (image tensor
  bit-identical, meta within 1e-6, decision); odd and random sizes this file writes through both resize rules
  (Pillow's antialiased bilinear against PIL, the "bilinear" rule against core.images.resize_bilinear, square
  and non-square outputs, up and down); cases of the export's contract and of foreign contracts written here
  (every feature kind: number with log / log1p, offset, scale, missing flag and range; one-hot with aliases
  and a missing column or zeros; code tables; L2 groups; several features reading one field) encoded by
  core.contract, its refusal sentences included; artifacts whose spec entry was removed.
- Chromium (Debian's, driven by Playwright; nothing downloads a browser): every golden case through the real
  page (file input, form, Assess) with LiteRT.js and onnxruntime-web, fp32 and the recommended int8; the form
  a foreign contract generates (one control per feature) and a prediction through it; the clear error for an
  artifact without a spec; no request leaving localhost; a screenshot; WebAssembly threads: N = min(cores, 4)
  on the cross-origin-isolated page (workers running, golden cases within bounds), 1 thread and the sentence
  why without COOP/COEP and over plain HTTP from a host that is not localhost (as on a phone); bench.py's
  rows: 1 thread and N threads per artifact with the golden cases' parity, WebGPU "not offered by this
  browser", a row beyond the bound failed.
- Signed exports: provenance.js in Node on the signed export and tampered copies says export.sign's sentence
  for each; build.py --trust copies model.sig and the key, refuses a file that differs from the statement and
  an unsigned export; the page of a --trust build runs, and the same build with a changed .tflite runs nothing.

Skips with the install line when node, the npm packages or chromium are missing, and fails instead when CI=true.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import math
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from core.contract import Contract, ContractEncoder, Feature
from core.images import pass_order, preprocess, resize_bilinear, resize_rgb, to_rgb
from core.io import sha256_file
from core.metadata import MetadataError
from core.spec import ImageContract, ModelSpec, OutputContract
from tests.conftest import ROOT, python_verdict

WEB = ROOT / "web_demo"
INSTALL_SYSTEM = "sudo apt-get install -y chromium nodejs npm"
INSTALL_NPM = "cd web_demo && npm ci"
FP32_BOUND = 1e-4  # an fp32 artifact in the page against PyTorch's probability (golden.json's bound)
# An int8 artifact in the page against its own Python runtime's probability. Measured here: at most 5e-7
# (LiteRT.js and onnxruntime-web, 32 px and 64 px models); 1e-5 leaves 20x margin for other CPUs. The
# artifact's parity bound (its max |dp| against PyTorch in parity.json) is the outer limit.
INT8_BOUND = 1e-5
SEED = int(os.environ.get("WEB_DEMO_SEED", "20261128"))


# ------------------------------------------------------------------------------------------------ helpers


def _require(ok: bool, what: str, install: str) -> None:
    """Skip (a developer machine) or fail (CI=true) when a tool is missing, naming the install line."""
    if ok:
        return
    message = f"{what} is not installed: {install}"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def _load_module(name: str, path: Path) -> Any:
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(name, module)
    spec.loader.exec_module(module)
    return module


bench = _load_module("web_demo_bench", WEB / "bench.py")
build = _load_module("web_demo_build", WEB / "build.py")


def _require_node() -> None:
    _require(shutil.which("node") is not None, "node", INSTALL_SYSTEM)


def _require_npm_packages() -> None:
    installed = all(
        (WEB / "node_modules" / p / "package.json").is_file() for p in ("@litertjs/core", "onnxruntime-web")
    )
    _require(installed, "the page's npm packages (@litertjs/core, onnxruntime-web)", INSTALL_NPM)


def _require_browser() -> None:
    _require_npm_packages()
    _require(bench.chromium_path() is not None, "chromium", INSTALL_SYSTEM)
    _require(
        importlib.util.find_spec("playwright") is not None, "the Python package playwright", "pip install -e '.[dev]'"
    )


@pytest.fixture(scope="session")
def node_tool() -> None:
    """Skip (or fail on CI) before the slow export when node is missing."""
    _require_node()


@pytest.fixture(scope="session")
def npm_packages() -> None:
    """Skip (or fail on CI) before the slow export when the page's npm packages are missing."""
    _require_npm_packages()


@pytest.fixture(scope="session")
def browser_tools() -> None:
    """Skip (or fail on CI) before the slow export when chromium, playwright or the npm packages are missing."""
    _require_browser()


class _Summary:
    """Lines shown in pytest's terminal summary under `web_demo` (Node counts, max |d|, |dp|, latency)."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if self.lines:
            terminalreporter.write_sep("-", "web_demo")
            for line in self.lines:
                terminalreporter.write_line(line)


@pytest.fixture(scope="module")
def summary(request: pytest.FixtureRequest) -> _Summary:
    """A plugin that prints this module's measurements in the terminal summary."""
    plugin = _Summary()
    request.config.pluginmanager.register(plugin, "web_demo_summary")
    yield plugin
    # Stays registered until the summary is printed; nothing else uses the name.


# ------------------------------------------------------------------------------------- cases for Node

# (name, width, height, size, alpha): odd sizes, both pass orders, up- and down-scaling, several S.
FIXED_RESIZES = [
    ("1x1-up", 1, 1, 32, False),
    ("3x500", 3, 500, 32, False),
    ("500x3", 500, 3, 32, False),
    ("4000x3000", 4000, 3000, 224, False),
    ("3000x4000", 3000, 4000, 64, False),
    ("300x1000-vertical-first", 300, 1000, 64, False),
    ("1000x300-horizontal-first", 1000, 300, 64, False),
    ("640x480", 640, 480, 224, False),
    ("480x640", 480, 640, 128, False),
    ("17x23-up", 17, 23, 64, False),
    ("100x37-mixed", 100, 37, 64, False),
    ("256-same", 256, 256, 256, False),
    ("257x255", 257, 255, 256, False),
    ("999x1000-to-1", 999, 1000, 1, False),
    ("333x777", 333, 777, 299, False),
    ("120x80-translucent", 120, 80, 32, True),
    ("45x300-translucent", 45, 300, 128, True),
]
RANDOM_SIZES = (16, 32, 64, 96, 128, 224, 299)
RANDOM_RESIZES = 16  # random image sizes, each through both resize rules


def _pixels(rng: np.random.Generator, width: int, height: int, alpha: bool) -> np.ndarray:
    """A gradient with noise (compresses well enough for the 4000 x 3000 case), optionally translucent."""
    yy, xx = np.mgrid[:height, :width]
    base = np.stack([xx * 255 // max(width, 1), yy * 255 // max(height, 1), (xx + yy) % 256], axis=-1)
    noise = rng.integers(-40, 41, size=(height, width, 3))
    rgb = np.clip(base + noise, 0, 255).astype(np.uint8)
    if not alpha:
        return rgb
    a = rng.integers(0, 256, size=(height, width, 1)).astype(np.uint8)
    a[: height // 3] = 255  # opaque, translucent and fully transparent pixels all occur
    a[-max(1, height // 5) :] = 0
    return np.concatenate([rgb, a], axis=-1)


def _resize_case(
    folder: Path, name: str, pixels: np.ndarray, size: int, layout: str, rect: tuple[int, int]
) -> list[dict[str, Any]]:
    """One image through both resize rules: Pillow's antialiased bilinear (resize_rgb, and PIL's resize to the
    non-square `rect`) and the "bilinear" rule (core.images.resize_bilinear), each to S x S, its image tensor
    (core.images.preprocess) and to `rect` (width, height)."""
    height, width = pixels.shape[:2]
    png = f"{name}.png"
    Image.fromarray(pixels, mode="RGBA" if pixels.shape[2] == 4 else "RGB").save(folder / png, compress_level=1)
    with Image.open(folder / png) as image:
        image.load()
        rgb = to_rgb(image)
    cases = []
    for rule in ("pillow", "bilinear"):
        antialias = rule == "pillow"
        if antialias:
            resized = np.asarray(resize_rgb(rgb, size), dtype=np.uint8)
            other = np.asarray(rgb.resize(rect, Image.Resampling.BILINEAR), dtype=np.uint8)
        else:
            resized = resize_bilinear(np.asarray(rgb), size, size)
            other = resize_bilinear(np.asarray(rgb), *rect)
        tensor = preprocess(rgb, ImageContract(size=size, layout=layout, antialias=antialias)).astype("<f4")
        stem = f"{name}.{rule}"
        (folder / f"{stem}.rgb").write_bytes(resized.tobytes())
        (folder / f"{stem}.rect.rgb").write_bytes(other.tobytes())
        (folder / f"{stem}.f32").write_bytes(tensor.tobytes())
        cases.append(
            {
                "name": name,
                "rule": rule,
                "png": png,
                "width": width,
                "height": height,
                "alpha": pixels.shape[2] == 4,
                "size": size,
                "layout": layout,
                "order": pass_order(width, height, size, size),
                "rgb": f"{stem}.rgb",
                "tensor": f"{stem}.f32",
                "rect": {"width": rect[0], "height": rect[1], "rgb": f"{stem}.rect.rgb"},
            }
        )
    return cases


def _side(rng: np.random.Generator, high: int) -> int:
    """A side length nobody chose: log-uniform from 1 to `high` px."""
    return round(math.exp(rng.uniform(0, math.log(high))))


# A contract written as a model trained elsewhere might state it: every feature kind and option the schema has.
# BGR with its own mean / std (folded into the graph, so the page still feeds RGB in [0, 1]) and the
# "bilinear" resize rule.
FOREIGN_CONTRACT: dict[str, Any] = {
    "contract": "melanoma-contract/1",
    "name": "foreign-test",
    "image": {"size": 40, "channels": "BGR", "mean": [0.5, 0.45, 0.4], "std": [0.25, 0.25, 0.3], "resize": "bilinear"},
    "metadata": [
        {
            "name": "age",
            "kind": "number",
            "field": "age",
            "offset": 50,
            "scale": 20,
            "missing": 0,
            "missing_flag": True,
            "range": [0, 110],
            "unit": "years",
            "description": "age at the visit",
        },
        {
            "name": "nevi",
            "kind": "number",
            "field": "nevus_count",
            "transform": "log1p",
            "offset": 2.0,
            "scale": 1.5,
            "missing": -1.0,
            "missing_flag": True,
            "range": [0, 500],
            "description": "number of nevi",
        },
        {
            "name": "diameter",
            "kind": "number",
            "field": "diameter_mm",
            "transform": "log",
            "missing": 0.5,
            "unit": "mm",
            "description": "lesion diameter",
        },
        {
            "name": "sex",
            "kind": "one_hot",
            "field": "sex",
            "categories": ["female", "male"],
            "aliases": {"F": "female", "M": "male", "Woman": "female"},
            "missing": "zeros",
        },
        {
            "name": "site",
            "kind": "one_hot",
            "field": "body_site",
            "categories": ["trunk", "back", "Head_Neck", "extremity"],
            # "back" is a category and an alias: the category wins
            "aliases": {"back": "trunk", "posterior torso": "back", "arm": "extremity", "head and neck": "head neck"},
            "missing": "column",
            "description": "where the lesion is",
        },
        {
            "name": "skin",
            "kind": "code",
            "field": "fitzpatrick",
            "codes": {"I": 1, "II": 2, "III": 3, "IV": 4, "V": 5, "VI": 6},
            "aliases": {"1": "I", "2": "II", "3": "III", "4": "IV", "5": "V", "6": "VI"},
            "missing": 0,
            "description": "Fitzpatrick skin type",
        },
        {
            "name": "smoking",
            "kind": "code",
            "field": "smoking",
            # "ex" is a code and an alias: the code wins
            "codes": {"never": 0, "former": 0.5, "current": 1, "ex": 0.25},
            "aliases": {"ex": "former", "ex_smoker": "former", "yes": "current", "no": "never"},
            "missing": -0.5,
        },
    ],
    "normalize": [
        {"kind": "l2", "features": ["age", "nevi"]},
        {"kind": "l2", "features": ["skin", "smoking", "diameter"]},
    ],
    "output": {"kind": "sigmoid"},
    "decision": {"threshold": 0.4},
}

# Several features reading one field (a number two ways, a category one-hot and as a code), a feature in two
# L2 groups, Pillow's resize.
SHARED_CONTRACT: dict[str, Any] = {
    "contract": "melanoma-contract/1",
    "name": "shared-fields-test",
    "image": {"size": 16, "channels": "RGB", "mean": None, "std": None, "resize": "pillow"},
    "metadata": [
        {"name": "age", "kind": "number", "field": "age", "missing": 0, "scale": 100},
        {"name": "age_log", "kind": "number", "field": "age", "transform": "log1p", "missing": 0, "missing_flag": True},
        {"name": "grade", "kind": "one_hot", "field": "grade", "categories": ["low", "high"], "missing": "column"},
        {
            "name": "grade_code",
            "kind": "code",
            "field": "grade",
            "codes": {"low": -1, "high": 1},
            "aliases": {"lo": "low"},
            "missing": 0,
        },
    ],
    "normalize": [
        {"kind": "l2", "features": ["grade", "grade_code"]},
        {"kind": "l2", "features": ["grade_code", "age"]},
    ],
    "output": {"kind": "softmax", "classes": 3, "positive": [2]},
    "decision": {"rule": "youden"},
}


def _contract_spec(data: dict[str, Any]) -> ModelSpec:
    """The ModelSpec an export of a model with contract `data` carries (image and meta layout derived)."""
    spec = ModelSpec.for_contract(Contract.from_dict(data), architecture="x", outputs=OutputContract())
    return ModelSpec.from_json(spec.to_json())  # the round trip an artifact makes


def _by_field(features: tuple[Feature, ...], **values: Any) -> dict[str, Any]:
    """A case from feature names (age=55): keyed by the case field each feature reads."""
    fields = {f.name: f.field for f in features}
    return {fields[name]: value for name, value in values.items()}


def _export_inputs(spec: ModelSpec) -> list[dict[str, Any]]:
    """Cases covering every category, alias, missing token and error path of the export's own contract."""
    features = spec.model_contract().features
    by_name = {f.name: f for f in features}
    case = lambda **values: _by_field(features, **values)  # noqa: E731
    inputs: list[dict[str, Any]] = []
    for site in by_name["site"].categories:
        inputs.append(case(age=55, sex="female", site=site))
        inputs.append(case(age="  40 ", sex="MALE", site=f" {site.upper().replace(' ', '_')} "))
    for alias in by_name["site"].aliases:
        inputs.append(case(age=70.5, sex="m", site=alias.title().replace(" ", "  ")))
    for sex in (*by_name["sex"].categories, *by_name["sex"].aliases):
        inputs.append(case(age=0, sex=sex.upper(), site=None))
    for token in spec.metadata["missing_tokens"]:
        inputs.append(case(age=token, sex=f" {token.upper()} ", site=token))
    inputs += [
        case(age=120, sex=None, site=None),
        case(age="1e1"),
        case(age="3_5"),
        case(age="nan"),
        case(age=33.333333, sex="f", site="palms soles"),
        {},
        {"unrelated_field": "ignored"},
        case(age=120.5),
        case(age=-1),
        case(age=1e6),
        case(age="inf"),
        case(age="abc"),
        case(age="5 5"),
        case(age=True),
        case(age=[55]),
        case(age={"years": 55}),
        case(sex="x"),
        case(sex="other"),
        case(sex=1),
        case(site="elbow"),
        case(site="torso/back"),
        case(site=["torso"]),
    ]
    return inputs


def _spelled(rng: np.random.Generator, name: str) -> str:
    """`name` as a person or a CSV might spell it: case, underscores for spaces, padding."""
    text = [name, name.upper(), name.title(), name.replace(" ", "_"), f"  {name}  ", name.replace(" ", "   ")]
    return str(rng.choice(text))


def _foreign_inputs(rng: np.random.Generator, count: int = 60) -> list[dict[str, Any]]:
    """FOREIGN_CONTRACT cases: chosen edge cases and refusals, then `count` random ones."""
    features = Contract.from_dict(FOREIGN_CONTRACT).features
    case = lambda **values: _by_field(features, **values)  # noqa: E731
    inputs: list[dict[str, Any]] = [
        {},
        {"unrelated_field": 5},
        case(age=0, nevi=0, diameter=1, sex="female", site="trunk", skin="I", smoking="never"),
        case(age=110, nevi=500, diameter="0.01", sex="M", site="Back", skin=" iv ", smoking="EX"),
        case(
            age=" 3_5 ", nevi="1e1", diameter=".5", sex="woman", site="posterior_torso", skin="4", smoking="ex smoker"
        ),
        case(age="+5", nevi="5.", site="HEAD_AND_NECK", smoking="Yes"),
        case(age="nan", nevi="NaN", diameter="-nan", sex="NA", site="n/a", skin="unknown", smoking="None"),
        case(skin=None, smoking="never", diameter=1),  # an L2 group whose norm is 0 stays as it is
        case(age=0, nevi=None),
        # refusals, each with core.contract's sentence
        case(age=111),
        case(age=-0.5),
        case(age="1e6"),
        case(age="abc"),
        case(age="5 years"),
        case(age=True),
        case(age=False),
        case(age=[5]),
        case(age={"years": 5}),
        case(age=[1e-05, "x", None]),
        case(nevi=501),
        case(nevi="-1"),
        case(diameter=0),
        case(diameter="-2.5"),
        case(diameter="-inf"),
        case(diameter="5 mm"),
        case(sex="x"),
        case(sex=1),
        case(sex=True),
        case(sex=["f"]),
        case(site="elbow"),
        case(site=3.5),
        case(skin="VII"),
        case(skin=3),
        case(skin="7"),
        case(smoking="sometimes"),
        case(smoking=False),
    ]
    missing = [None, "", "NA", " unknown ", "null"]
    for _ in range(count):
        values: dict[str, Any] = {}
        for f in features:
            roll = rng.random()
            if roll < 0.1:
                continue  # the field is absent from the case
            if roll < 0.25:
                values[f.name] = missing[int(rng.integers(len(missing)))]
                continue
            if f.kind == "number":
                low, high = f.range or (0.01, 30.0)
                x = float(rng.uniform(max(low, 0.01), high))
                forms = [round(x, 3), f" {x:.4f} ", x, max(1, int(x))]
                values[f.name] = forms[int(rng.integers(len(forms)))]
            else:
                names = [*(f.categories or f.codes), *f.aliases]
                values[f.name] = _spelled(rng, names[int(rng.integers(len(names)))])
        inputs.append(case(**values))
    return inputs


def _shared_inputs() -> list[dict[str, Any]]:
    """SHARED_CONTRACT cases: one field read by two features, the first feature's refusal first."""
    return [
        {},
        {"age": 40, "grade": "low"},
        {"age": "0", "grade": "HIGH"},
        {"age": 1e-300, "grade": None},
        {"age": "-1"},  # fine for age, outside the domain of log1p for age_log
        {"age": "-0.5", "grade": "lo"},  # "lo" is an alias of the code, unknown to the one-hot
        {"grade": 2},
    ]


def _encoded(encoder: ContractEncoder, spec: str, cases: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each case with core.contract's vector, or its MetadataError sentence."""
    out = []
    for case in cases:
        try:
            vec = encoder.encode(case)
        except MetadataError as exc:
            out.append({"spec": spec, "input": case, "expected": None, "error": str(exc)})
            continue
        assert np.isfinite(vec).all(), case  # JSON has no infinities
        out.append({"spec": spec, "input": case, "expected": [float(v) for v in vec], "error": None})
    return out


def _foreign_onnx(spec: ModelSpec, path: Path) -> dict[str, np.ndarray]:
    """A tiny .onnx for `spec` (NCHW): logit = mean over each channel of `image` @ w_image + meta @ w_meta,
    probability = sigmoid(logit), with the spec embedded as export.onnx does. Returns the weights."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(SEED)
    size, k = spec.image.size, spec.meta_size
    weights = {
        "w_image": np.array([[1.5], [-2.0], [0.7]], dtype=np.float32),
        "w_meta": rng.normal(0, 0.7, size=(k, 1)).astype(np.float32),
    }
    nodes = [
        helper.make_node("GlobalAveragePool", ["image"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["flat"]),
        helper.make_node("MatMul", ["flat", "w_image"], ["from_image"]),
        helper.make_node("MatMul", ["meta", "w_meta"], ["from_meta"]),
        helper.make_node("Add", ["from_image", "from_meta"], ["logit"]),
        helper.make_node("Sigmoid", ["logit"], ["probability"]),
    ]
    graph = helper.make_graph(
        nodes,
        "foreign",
        [
            helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, size, size]),
            helper.make_tensor_value_info("meta", TensorProto.FLOAT, [1, k]),
        ],
        [
            helper.make_tensor_value_info("logit", TensorProto.FLOAT, [1, 1]),
            helper.make_tensor_value_info("probability", TensorProto.FLOAT, [1, 1]),
        ],
        initializer=[numpy_helper.from_array(v, name) for name, v in weights.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    helper.set_model_props(model, {"melanoma_spec": spec.to_json()})
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return weights


@pytest.fixture(scope="module")
def foreign_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ModelSpec, dict[str, np.ndarray]]:
    """(foreign.onnx, its spec, its weights): a model of FOREIGN_CONTRACT the page can load and run."""
    folder = tmp_path_factory.mktemp("web_demo_foreign")
    spec = _contract_spec(FOREIGN_CONTRACT)
    weights = _foreign_onnx(spec, folder / "foreign.onnx")
    return folder / "foreign.onnx", spec, weights


@pytest.fixture(scope="module")
def node_cases(
    phone_export: Path, foreign_model: tuple[Path, ModelSpec, Any], tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """cases.json + PNGs + resize outputs + foreign specs and artifact + stripped artifacts for the Node tests
    (WEB_DEMO_CASES)."""
    folder = tmp_path_factory.mktemp("web_demo_cases")
    rng = np.random.default_rng(SEED)
    spec_data = json.loads((phone_export / "spec.json").read_text(encoding="utf-8"))
    spec = ModelSpec.from_dict(spec_data)
    foreign = _contract_spec(FOREIGN_CONTRACT)
    shared = _contract_spec(SHARED_CONTRACT)
    resize = []
    for i, (name, width, height, size, alpha) in enumerate(FIXED_RESIZES):
        layout = "NCHW" if i % 2 == 0 else "NHWC"
        rect = (_side(rng, 300), _side(rng, 300))
        resize += _resize_case(folder, name, _pixels(rng, width, height, alpha), size, layout, rect)
    for i in range(RANDOM_RESIZES):  # sizes and aspect ratios nobody chose: log-uniform 1..2000 px per side
        width, height = _side(rng, 2000), _side(rng, 2000)
        size = int(rng.choice(RANDOM_SIZES))
        pixels = _pixels(rng, width, height, bool(rng.random() < 0.25))
        rect = (_side(rng, 300), _side(rng, 300))
        resize += _resize_case(folder, f"random{i}-{width}x{height}", pixels, size, ("NCHW", "NHWC")[i % 2], rect)
    meta = _encoded(spec.encoder(), "export", _export_inputs(spec))
    meta += _encoded(foreign.encoder(), "foreign", _foreign_inputs(rng))
    meta += _encoded(shared.encoder(), "shared", _shared_inputs())
    stripped = [
        {"file": _strip_tflite(phone_export, folder).name},
        {"file": _strip_onnx(phone_export, folder).name},
    ]
    shutil.copyfile(foreign_model[0], folder / foreign_model[0].name)
    cases = {
        "seed": SEED,
        "spec": spec_data,
        "specs": {"export": spec_data, "foreign": foreign.to_dict(), "shared": shared.to_dict()},
        "resize": resize,
        "meta": meta,
        "stripped": stripped,
        "foreign": {"file": foreign_model[0].name, "spec": foreign_model[1].to_dict()},
    }
    (folder / "cases.json").write_text(json.dumps(cases, indent=1, allow_nan=False), encoding="utf-8")
    return folder


def _strip_tflite(export: Path, folder: Path) -> Path:
    """A copy of the fp32 .tflite with its `melanoma_spec` Metadata entry (and nothing else) removed."""
    from ai_edge_litert.tools import flatbuffer_utils

    source = next(p for p in sorted(export.glob("*.tflite")) if p.name.count(".") == 1)
    model = flatbuffer_utils.read_model_from_bytearray(bytearray(source.read_bytes()))
    names = [m.name.decode() if isinstance(m.name, bytes) else m.name for m in model.metadata or []]
    assert "melanoma_spec" in names, names
    model.metadata = [m for m, n in zip(model.metadata, names, strict=True) if n != "melanoma_spec"]
    out = folder / f"{source.stem}.nospec.tflite"
    out.write_bytes(bytes(flatbuffer_utils.convert_object_to_bytearray(model)))
    return out


def _strip_onnx(export: Path, folder: Path) -> Path:
    """A copy of the fp32 .onnx with its `melanoma_spec` metadata_props entry removed."""
    import onnx

    source = next(p for p in sorted(export.glob("*.onnx")) if p.name.count(".") == 1)
    model = onnx.load(str(source))
    keep = [p for p in model.metadata_props if p.key != "melanoma_spec"]
    assert len(keep) < len(model.metadata_props)
    del model.metadata_props[:]
    model.metadata_props.extend(keep)
    out = folder / f"{source.stem}.nospec.onnx"
    onnx.save(model, str(out))
    return out


# ------------------------------------------------------------------------------------------ Node tests


def _parse_tap(output: str) -> tuple[dict[str, int], list[str], list[dict[str, Any]]]:
    """(counts, failures, results) from node --test's TAP output; a failure is its name, error and location."""
    counts = {k: int(v) for k, v in re.findall(r"^# (tests|pass|fail|skipped|cancelled|todo) (\d+)$", output, re.M)}
    failures = []
    lines = output.splitlines()
    for i, line in enumerate(lines):
        match = re.match(r"^\s*not ok \d+ - (.*)$", line)
        if not match:
            continue
        block = []
        for following in lines[i + 1 :]:
            if following.strip() in ("...", "stack: |-"):
                break
            if not following.strip().startswith(("---", "duration_ms:", "type:")) and following.strip():
                block.append(following.strip())
        if not any("subtestsFailed" in b for b in block):  # a suite whose tests failed: those are listed
            failures.append(f"{match.group(1)}: " + " ".join(block)[:1500])
    results = [json.loads(m) for m in re.findall(r"# web_demo_result (\{.*\})$", output, re.M)]
    return counts, failures, results


@pytest.mark.slow
def test_contract_js_matches_python_in_node(
    node_tool: None, phone_export: Path, node_cases: Path, summary: _Summary
) -> None:
    """node --test web_demo/test/ against this session's export, the odd-size resize cases (both rules) and the
    metadata cases of the export's and the foreign contracts (node_cases)."""
    files = sorted(str(p) for p in (WEB / "test").glob("*.test.mjs"))
    assert files, "no Node test files under web_demo/test/"
    env = os.environ | {"WEB_DEMO_EXPORT": str(phone_export), "WEB_DEMO_CASES": str(node_cases)}
    start = time.time()
    result = subprocess.run(
        ["node", "--test", "--test-reporter=tap", *files],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    counts, failures, results = _parse_tap(result.stdout)
    golden = [r for r in results if r["kind"] == "golden"]
    resized = [r for r in results if r["kind"] == "resize"]
    summary.lines.append(
        f"node --test: {counts.get('tests', '?')} tests, {counts.get('pass', '?')} passed, "
        f"{counts.get('fail', '?')} failed, {counts.get('skipped', '?')} skipped ({time.time() - start:.1f} s)"
    )
    if golden:
        worst = ", ".join(f"{r['name']} {r['max_abs_diff']:g}" for r in golden)
        summary.lines.append(f"contract.js image tensor max |d| per golden case: {worst}")
    for rule, against in (("pillow", "PIL"), ("bilinear", "core.images.resize_bilinear")):
        rows = [r for r in resized if r["rule"] == rule]
        if rows:
            summary.lines.append(
                f"contract.js {rule} resize vs {against} on {len(rows)} odd/random sizes (seed {SEED}): max |d| "
                f"{max(r['max_abs_diff'] for r in rows):g}, differing bytes {sum(r['differing_bytes'] for r in rows)}"
            )
    for r in (r for r in results if r["kind"] == "meta"):
        summary.lines.append(
            f"contract.js encodeMeta vs core.contract, {r['spec']} contract: {r['count']} cases, max |d| "
            f"{r['max_abs_diff']:g}, refusals word for word"
        )
    assert result.returncode == 0 and not failures, f"node --test failed ({counts}):\n" + "\n".join(
        failures or [result.stdout[-3000:], result.stderr[-3000:]]
    )
    assert counts.get("fail") == 0 and counts.get("skipped") == 0, counts
    golden_count = len(json.loads((phone_export / "golden.json").read_text())["cases"])
    assert len(golden) == golden_count, f"{len(golden)} golden results for {golden_count} cases"
    assert len(resized) == 2 * (len(FIXED_RESIZES) + RANDOM_RESIZES)  # both resize rules
    assert {r["spec"] for r in results if r["kind"] == "meta"} == {"export", "foreign", "shared"}


# ------------------------------------------------------------------------------------------ build.py


@pytest.fixture(scope="module")
def web_build(
    npm_packages: None, phone_export: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, dict[str, Any]]:
    """build.py of this session's export into a temporary dist folder (the developer's web_demo/dist untouched)."""
    out = tmp_path_factory.mktemp("web_demo_build") / "dist"
    result = subprocess.run(
        [sys.executable, str(WEB / "build.py"), "--artifacts", str(phone_export), "--out", str(out)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return out, json.loads((out / "manifest.json").read_text(encoding="utf-8"))


def test_build_rejects_bad_input_with_one_sentence(tmp_path: Path) -> None:
    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, str(WEB / "build.py"), *args], capture_output=True, text=True)

    missing = run("--artifacts", str(tmp_path / "nowhere"), "--out", str(tmp_path / "out"))
    assert missing.returncode == 2 and "python -m export.all" in missing.stderr
    assert "Traceback" not in missing.stderr and len(missing.stderr.strip().splitlines()) == 1
    (tmp_path / "export").mkdir()
    (tmp_path / "export" / "parity.json").write_text("{not json")
    broken = run("--artifacts", str(tmp_path / "export"), "--out", str(tmp_path / "out"))
    assert broken.returncode == 2 and "parity.json" in broken.stderr and "Traceback" not in broken.stderr
    unbuilt = run("--out", str(tmp_path / "empty"), "--serve", "0")
    assert unbuilt.returncode == 2 and "build first" in unbuilt.stderr
    nothing = run()
    assert nothing.returncode == 2 and "--model" in nothing.stderr


@pytest.mark.slow
def test_build_copies_what_parity_verified(web_build: tuple[Path, dict], phone_export: Path, tmp_path: Path) -> None:
    out, manifest = web_build
    parity = json.loads((phone_export / "parity.json").read_text())
    offered = {(a["format"], a["precision"]) for a in manifest["artifacts"]}
    assert {("tflite", "fp32"), ("onnx", "fp32")} <= offered
    for fmt in ("tflite", "onnx"):
        rec = parity["recommended"].get(fmt) or {}
        if rec.get("precision") and rec["precision"] != "fp32":
            assert (fmt, rec["precision"]) in offered, manifest["artifacts"]
    for a in manifest["artifacts"]:
        copied = out / a["file"]
        assert copied.read_bytes() == (phone_export / copied.name).read_bytes()
    assert (out / "models" / "golden.json").is_file()
    for _, dst in build.RUNTIME_FILES:
        assert (out / "runtime" / dst).is_file(), dst
    # An artifact that changed after parity.json recorded its hash is refused.
    tampered = tmp_path / "export"
    shutil.copytree(phone_export, tampered)
    rows = json.loads((tampered / "parity.json").read_text())
    for row in rows["rows"]:
        name = Path(row.get("file") or row.get("path") or "x").name
        if (tampered / name).is_file() and name.endswith(".onnx"):
            row["sha256"] = sha256_file(tampered / name)
    (tampered / "parity.json").write_text(json.dumps(rows))
    fp32_onnx = next(p for p in tampered.glob("*.onnx") if p.name.count(".") == 1)
    fp32_onnx.write_bytes(fp32_onnx.read_bytes() + b"\0")
    result = subprocess.run(
        [sys.executable, str(WEB / "build.py"), "--artifacts", str(tampered), "--out", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2 and "sha256" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


def _get(url: str) -> tuple[int, Any]:
    """Status and headers (case-insensitive) of a GET, the body read to the end."""
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            response.read()
            return response.status, response.headers
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers


@pytest.mark.slow
def test_server_types_headers_and_scope(web_build: tuple[Path, dict]) -> None:
    out, _ = web_build
    with bench.serving(out) as url:

        def head(path: str) -> tuple[int, Any]:
            """Status and headers (case-insensitive) of a GET, the body read to the end."""
            try:
                with urllib.request.urlopen(url + path, timeout=10) as response:
                    response.read()
                    return response.status, response.headers
            except urllib.error.HTTPError as exc:
                return exc.code, exc.headers

        status, headers = head("dist/runtime/ort/ort-wasm-simd-threaded.wasm")
        assert status == 200 and headers["Content-Type"] == "application/wasm"
        assert headers["Cross-Origin-Opener-Policy"] == "same-origin"
        assert headers["Cross-Origin-Embedder-Policy"] == "require-corp"
        assert head("src/contract.js")[1]["Content-Type"].startswith("text/javascript")
        assert head("dist/runtime/ort/ort.wasm.min.mjs")[1]["Content-Type"].startswith("text/javascript")
        assert head("")[0] == 200
        assert head("node_modules/onnxruntime-web/package.json")[0] == 404
        assert head("build.py")[0] == 404
        assert head("dist/../build.py")[0] == 404
    # --no-isolation (isolated=False): the same files, without COOP/COEP (the page then runs 1 thread)
    with bench.serving(out, isolated=False) as url:
        status, headers = _get(url + "dist/runtime/litert/wasm/litert_wasm_threaded_internal.wasm")
        assert status == 200 and headers["Content-Type"] == "application/wasm"
        assert headers["Cross-Origin-Opener-Policy"] is None and headers["Cross-Origin-Embedder-Policy"] is None


# ------------------------------------------------------------------------------------------- browser


@pytest.fixture(scope="module")
def browser_page(browser_tools: None, web_build: tuple[Path, dict]) -> Any:
    """(new_page(requests) -> page, url, manifest, browser) with the build served on localhost."""
    from playwright.sync_api import sync_playwright

    out, manifest = web_build
    with bench.serving(out) as url, sync_playwright() as pw:
        browser = bench.launch_chromium(pw)
        try:
            yield (lambda requests, query="": bench.open_page(browser, url + query, requests)), url, manifest, browser
        finally:
            browser.close()


def _assert_local(requests: list[str]) -> None:
    assert requests, "no requests recorded"
    outside = [r for r in requests if not re.match(r"^(http://127\.0\.0\.1:\d+/|data:|blob:)", r)]
    assert not outside, f"requests left localhost: {outside}"


def _entry(manifest: dict[str, Any], runtime: str, precision: str) -> dict[str, Any]:
    wanted = [
        a
        for a in manifest["artifacts"]
        if a["runtime"] == runtime and (a["precision"] == "fp32") == (precision == "fp32")
    ]
    assert wanted, (
        f"the build offers no {precision} artifact for {runtime} ({manifest['notes']}): "
        "no such artifact passed its parity gate in this export"
    )
    return wanted[0]


def _control(page: Any, field: str) -> Any:
    """The form's control for one case field (the page builds one per field from the contract)."""
    return page.locator(f"#patient-fields [data-field={json.dumps(field)}]")


def _fill(page: Any, spec: ModelSpec, metadata: dict[str, Any]) -> None:
    """Fill the form from a case's raw metadata (field -> value): a number as typed text, a category or code
    as the option the contract names it by (aliases resolved by core.contract)."""
    done = set()
    for feature in spec.model_contract().features:
        if feature.field in done:
            continue
        done.add(feature.field)
        value = metadata.get(feature.field)
        if feature.kind == "number":
            _control(page, feature.field).fill("" if value is None else str(value))
        else:
            group = feature.group_of(value)  # the category or code, "missing" when empty
            _control(page, feature.field).select_option("" if group == "missing" else group)


def _choose_image(page: Any, path: Path) -> None:
    """Set the file input and wait until the page has decoded that file."""
    page.set_input_files("#image", str(path))
    page.wait_for_function("name => window.melanomaDemo.state.image?.name === name", arg=path.name)
    page.evaluate("window.melanomaDemo.waitIdle()")


def _assess(page: Any) -> float:
    page.click("#assess")
    page.evaluate("window.melanomaDemo.waitIdle()")
    assert not page.is_visible("#error"), page.text_content("#error")
    return float(page.text_content("#probability"))


@pytest.mark.slow
@pytest.mark.parametrize("runtime", ["litert", "onnxruntime-web"])
@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_every_golden_case_through_the_page(
    browser_page: Any, phone_export: Path, runtime: str, precision: str, summary: _Summary
) -> None:
    new_page, _, manifest, _ = browser_page
    entry = _entry(manifest, runtime, precision)
    name = entry["file"].split("/")[-1]
    golden = json.loads((phone_export / "golden.json").read_text())
    parity_rows = json.loads((phone_export / "parity.json").read_text())["rows"]
    row = next(r for r in parity_rows if Path(r.get("file") or r.get("path") or "").name == name)
    spec = ModelSpec.from_json((phone_export / f"{name}.spec.json").read_text())
    bound = FP32_BOUND if precision == "fp32" else min(INT8_BOUND, row["max_abs_diff"])
    requests: list[str] = []
    page = new_page(requests)
    try:
        page.select_option("#runtime", runtime)
        page.select_option("#precision", entry["file"])
        page.evaluate("window.melanomaDemo.waitIdle()")
        assert not page.is_visible("#error"), page.text_content("#error")
        assert page.evaluate("window.melanomaDemo.state.load.file") == name
        assert page.is_visible("#banner") and "not a medical device" in page.text_content("#banner")
        diffs = []
        for case in golden["cases"]:
            _choose_image(page, phone_export / case["png"])
            _fill(page, spec, case["metadata"])
            shown = _assess(page)
            target = case["expected"]["probability"] if precision == "fp32" else case["artifacts"][name]["probability"]
            diffs.append(abs(shown - target))
            assert diffs[-1] <= bound, (
                f"{case['image_name']}: page {shown} vs {target} (|dp| {diffs[-1]:.2e} > {bound})"
            )
            label, _ = spec.outputs.decide(shown)
            assert page.text_content("#decision").startswith(label)
            assert page.text_content("#threshold") == f"{spec.outputs.threshold:.4f}"
            assert "ms inference" in page.text_content("#latency")
            assert page.is_visible("#banner")
    finally:
        page.close()
    _assert_local(requests)
    against = "PyTorch" if precision == "fp32" else "its own Python runtime"
    summary.lines.append(
        f"page {runtime} {entry['precision']}: max |dp| {max(diffs):.2e} against {against} over "
        f"{len(diffs)} golden cases (bound {bound:g})"
    )


@pytest.mark.slow
def test_an_artifact_without_spec_shows_the_clear_error(browser_page: Any, node_cases: Path) -> None:
    new_page, _, _, _ = browser_page
    requests: list[str] = []
    page = new_page(requests)
    try:
        for stripped in json.loads((node_cases / "cases.json").read_text())["stripped"]:
            page.set_input_files("#model-file", str(node_cases / stripped["file"]))
            page.evaluate("window.melanomaDemo.waitIdle()")
            assert page.is_visible("#error")
            message = page.text_content("#error")
            assert "carries no model spec" in message and "python -m export.all" in message, message
            assert page.is_disabled("#assess")
            assert page.is_visible("#banner")
    finally:
        page.close()
    _assert_local(requests)


@pytest.mark.slow
def test_the_form_follows_a_foreign_contract(
    browser_page: Any, foreign_model: tuple[Path, ModelSpec, dict[str, np.ndarray]], tmp_path: Path
) -> None:
    """A model of FOREIGN_CONTRACT opened from the device: the form shows one control per feature (a text
    input with its unit and range for a number, a select of "unknown" + the categories or codes otherwise),
    a case entered there gives core.contract's meta (the tiny model's probability says so), and a bad value
    core.contract's sentence."""
    path, spec, weights = foreign_model
    features = spec.model_contract().features
    assert len({f.field for f in features}) == len(features)  # one field each: one control each
    requests: list[str] = []
    page = browser_page[0](requests)
    try:
        page.set_input_files("#model-file", str(path))
        page.evaluate("window.melanomaDemo.waitIdle()")
        assert not page.is_visible("#error"), page.text_content("#error")
        assert page.evaluate("window.melanomaDemo.state.load.file") == path.name
        controls = page.eval_on_selector_all(
            "#patient-fields [data-field]",
            """els => els.map(e => ({
              tag: e.tagName.toLowerCase(), field: e.dataset.field, kind: e.dataset.kind,
              label: document.querySelector(`label[for="${e.id}"]`).textContent, placeholder: e.placeholder || '',
              options: e.tagName === 'SELECT' ? [...e.options].map(o => o.value) : null}))""",
        )
        assert [c["field"] for c in controls] == [f.field for f in features]
        for control, feature in zip(controls, features, strict=True):
            assert control["kind"] == feature.kind
            assert (feature.description or feature.name).lower() in control["label"].lower(), control
            if feature.kind == "number":
                assert control["tag"] == "input" and control["options"] is None
                if feature.unit:
                    assert feature.unit in control["label"], control
                if feature.range:
                    assert f"{feature.range[0]:g}-{feature.range[1]:g}" in control["placeholder"], control
            else:
                assert control["tag"] == "select"
                assert control["options"] == ["", *(feature.categories or feature.codes)], control
        # A case through the form and the model: the probability is that of core.contract's meta.
        rng = np.random.default_rng(SEED)
        Image.fromarray(_pixels(rng, 57, 31, alpha=False)).save(tmp_path / "foreign.png")
        case = {"age": "61.5", "nevus_count": "12", "diameter_mm": "4.2", "sex": "woman", "body_site": "arm",
                "fitzpatrick": "3", "smoking": "ex"}  # fmt: skip
        _choose_image(page, tmp_path / "foreign.png")
        _fill(page, spec, case)
        page.click("#assess")
        page.evaluate("window.melanomaDemo.waitIdle()")
        assert not page.is_visible("#error"), page.text_content("#error")
        shown = float(page.get_attribute("#probability", "data-value"))
        with Image.open(tmp_path / "foreign.png") as image:
            x = preprocess(to_rgb(image), spec.image, layout="NCHW").astype(np.float64)
        meta = spec.encoder().encode(case).astype(np.float64)
        logit = x.mean(axis=(1, 2)) @ weights["w_image"][:, 0] + meta @ weights["w_meta"][:, 0]
        expected = 1 / (1 + math.exp(-logit))
        assert abs(shown - expected) <= 1e-5, f"page {shown} vs Python {expected}"
        # A value the contract refuses: core.contract's sentence, word for word.
        for field, typed in (("diameter_mm", "0"), ("nevus_count", "many")):
            with pytest.raises(MetadataError) as python:
                spec.encoder().encode({**case, field: typed})
            _control(page, field).fill(typed)
            page.click("#assess")
            page.evaluate("window.melanomaDemo.waitIdle()")
            assert page.text_content("#error") == str(python.value)
            _control(page, field).fill(case[field])
    finally:
        page.close()
    _assert_local(requests)


@pytest.mark.slow
def test_bad_metadata_and_bad_image_show_errors_on_the_page(
    browser_page: Any, phone_export: Path, tmp_path: Path
) -> None:
    new_page, _, _, _ = browser_page
    golden = json.loads((phone_export / "golden.json").read_text())
    page = new_page([])
    try:
        spec = ModelSpec.from_json((phone_export / "spec.json").read_text())
        encoder = spec.encoder()
        age = next(f for f in encoder.features if f.kind == "number")
        _choose_image(page, phone_export / golden["cases"][0]["png"])
        for typed in ("250", "fifty"):
            with pytest.raises(MetadataError) as python:
                encoder.encode({age.field: typed})
            _control(page, age.field).fill(typed)
            page.click("#assess")
            page.evaluate("window.melanomaDemo.waitIdle()")
            assert page.text_content("#error") == str(python.value) and not page.is_visible("#result")
        (tmp_path / "not-an-image.png").write_bytes(b"this is text")
        page.set_input_files("#image", str(tmp_path / "not-an-image.png"))
        page.evaluate("window.melanomaDemo.waitIdle()")
        assert "could not be decoded" in page.text_content("#error")
    finally:
        page.close()


def _decoded_in_page(page: Any, path: Path) -> np.ndarray:
    """The RGB pixels the page decoded from `path` (alpha composited on white by contract.js), H x W x 3."""
    _choose_image(page, path)
    got = page.evaluate(
        """async () => {
          const {compositeOnWhite} = await import('./src/contract.js');
          const image = window.melanomaDemo.state.image;
          const rgb = compositeOnWhite(image.rgba);
          let text = '';
          for (let i = 0; i < rgb.length; i += 8192) text += String.fromCharCode(...rgb.subarray(i, i + 8192));
          return {width: image.width, height: image.height, data: btoa(text)};
        }"""
    )
    pixels = np.frombuffer(base64.b64decode(got["data"]), dtype=np.uint8)
    return pixels.reshape(got["height"], got["width"], 3)


@pytest.mark.slow
def test_the_page_decodes_png_jpeg_webp_like_python(browser_page: Any, tmp_path: Path, summary: _Summary) -> None:
    """createImageBitmap (EXIF orientation, no colour conversion, no premultiplication) + an sRGB canvas give
    load_rgb's pixels: exactly for PNG (RGB, gray, translucent RGBA) and lossless WebP, every EXIF orientation
    applied; lossy JPEG / WebP within 1 level (another decoder may round differently; measured here: 0)."""
    from core.images import load_rgb

    rng = np.random.default_rng(SEED)
    rgb = _pixels(rng, 300, 200, alpha=False)
    rgba = _pixels(rng, 300, 200, alpha=True)
    files = {"rgb.png": True, "gray.png": True, "rgba.png": True, "lossless.webp": True, "lossy.webp": False}
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    Image.fromarray(rgb[:, :, 1]).save(tmp_path / "gray.png")
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "rgba.png")
    Image.fromarray(rgb).save(tmp_path / "lossless.webp", lossless=True)
    Image.fromarray(rgb).save(tmp_path / "lossy.webp", quality=85)
    for orientation in range(1, 9):
        exif = Image.Exif()
        exif[0x0112] = orientation
        Image.fromarray(rgb).save(tmp_path / f"exif{orientation}.jpg", quality=90, exif=exif.tobytes())
        files[f"exif{orientation}.jpg"] = False
    page = browser_page[0]([])
    worst_lossy = 0
    try:
        for name, lossless in files.items():
            got = _decoded_in_page(page, tmp_path / name).astype(int)
            want = np.asarray(load_rgb(tmp_path / name)).astype(int)
            assert got.shape == want.shape, f"{name}: page decoded {got.shape}, Python {want.shape}"
            diff = int(np.abs(got - want).max())
            if lossless:
                assert diff == 0, f"{name}: the page's pixels differ from load_rgb's by up to {diff} levels"
            else:
                worst_lossy = max(worst_lossy, diff)
                assert diff <= 1, f"{name}: the page's pixels differ from load_rgb's by up to {diff} levels"
    finally:
        page.close()
    summary.lines.append(
        f"browser decode vs load_rgb: PNG / lossless WebP identical; JPEG (8 EXIF orientations) and lossy WebP "
        f"max |d| {worst_lossy} levels"
    )


@pytest.mark.slow
def test_screenshot_after_a_prediction(browser_page: Any, phone_export: Path, tmp_path: Path) -> None:
    """A phone-sized screenshot of the page with a result (also to $WEB_DEMO_SCREENSHOT, for the README)."""
    new_page = browser_page[0]
    golden = json.loads((phone_export / "golden.json").read_text())
    case = next((c for c in golden["cases"] if c["expected"]["positive"]), golden["cases"][0])
    spec = ModelSpec.from_json((phone_export / "spec.json").read_text())
    page = new_page([])
    try:
        page.select_option("#runtime", "litert")
        page.evaluate("window.melanomaDemo.waitIdle()")
        _choose_image(page, phone_export / case["png"])
        _fill(page, spec, case["metadata"])
        _assess(page)
        overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
        assert overflow <= 0, f"the page is {overflow} px wider than a phone screen"
        page.evaluate("window.scrollTo(0, 0)")
        shot = tmp_path / "screenshot.png"
        page.screenshot(path=str(shot), full_page=True)
    finally:
        page.close()
    with Image.open(shot) as image:
        assert image.width == bench.PHONE_VIEWPORT["width"] and image.height > 600
    if os.environ.get("WEB_DEMO_SCREENSHOT"):
        shutil.copyfile(shot, os.environ["WEB_DEMO_SCREENSHOT"])


def _golden_in_page(page: Any, golden: dict[str, Any], entry: dict[str, Any]) -> dict[str, Any]:
    """Every golden case through the page's loaded model (window.melanomaDemo.golden), checked by bench.parity:
    the bounds of test_every_golden_case_through_the_page (fp32 1e-4 against PyTorch, int8 1e-5 against the
    artifact's own Python runtime, never above its parity.json |dp|)."""
    checked = bench.parity(page.evaluate("window.melanomaDemo.golden()"), golden, entry)
    assert checked["cases"] == len(golden["cases"]), checked
    assert checked["ok"], f"{entry['file']}: max |dp| {checked['max_abs_diff']:.2e} > {checked['bound']:g}"
    return checked


def _threads_by_default(page: Any) -> int:
    """The page's default thread count where it is isolated: min(navigator.hardwareConcurrency, 4)."""
    cores = page.evaluate("navigator.hardwareConcurrency")
    assert cores >= 2, f"this machine's Chromium reports {cores} core(s): the threaded tests need 2 or more"
    return min(cores, 4)


@pytest.mark.slow
def test_an_isolated_page_runs_threads_and_matches_the_golden_cases(
    browser_page: Any, phone_export: Path, summary: _Summary
) -> None:
    """build.py's server (COOP/COEP) on localhost: the page is cross-origin isolated, every artifact loads on
    N = min(cores, 4) WebAssembly threads (LiteRT.js's threaded build and its workers, onnxruntime-web's
    worker), says so, and its golden-case outputs stay within the bounds."""
    new_page, _, manifest, _ = browser_page
    golden = json.loads((phone_export / "golden.json").read_text())
    for entry in manifest["artifacts"]:
        name = entry["file"].split("/")[-1]
        requests: list[str] = []
        page = new_page(requests, f"?artifact={name}")
        try:
            assert not page.is_visible("#error"), page.text_content("#error")
            assert page.evaluate("window.melanomaDemo.state.load.file") == name
            assert page.evaluate("crossOriginIsolated && typeof SharedArrayBuffer === 'function'") is True
            n = _threads_by_default(page)
            compute = page.evaluate("window.melanomaDemo.state.compute")
            assert (compute["backend"], compute["threads"]) == ("wasm", n), compute
            assert page.text_content("#compute") == f"WebAssembly, {n} threads."
            assert f"WebAssembly, {n} threads." in page.text_content("#model-status")
            workers = [w.url.split("/")[-1] for w in page.workers]
            if entry["runtime"] == "litert":
                assert any(r.endswith("/litert_wasm_threaded_internal.wasm") for r in requests), requests
                assert workers.count("litert_wasm_threaded_internal.js") >= n, workers  # one per core
            else:
                assert workers.count("ort-wasm-simd-threaded.mjs") >= 1, workers  # with the main thread: n
            checked = _golden_in_page(page, golden, entry)
        finally:
            page.close()
        _assert_local(requests)
        summary.lines.append(
            f"isolated page, {entry['runtime']} {entry['precision']} on {n} threads: max |dp| "
            f"{checked['max_abs_diff']:.2e} against {checked['against']} over {checked['cases']} golden cases"
        )
    # The Compute picker sets the same query parameter (and keeps the artifact): 1 thread, no workers.
    entry = _entry(manifest, "litert", "fp32")
    page = new_page([], f"?artifact={entry['file'].split('/')[-1]}")
    try:
        with page.expect_navigation():
            page.select_option("#compute-choice", "threads=1")
        page.wait_for_function("window.melanomaDemo !== undefined")
        page.evaluate("window.melanomaDemo.ready")
        page.evaluate("window.melanomaDemo.waitIdle()")
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(page.url).query)
        assert query == {"artifact": [entry["file"].split("/")[-1]], "threads": ["1"]}, page.url
        assert page.text_content("#compute") == "WebAssembly, 1 thread (as ?threads=1 asks)."
        assert page.evaluate("window.melanomaDemo.state.compute.threads") == 1 and page.workers == []
        assert page.input_value("#compute-choice") == "threads=1"
    finally:
        page.close()


@pytest.mark.slow
def test_without_isolation_the_page_runs_one_thread_and_says_why(
    browser_page: Any, web_build: tuple[Path, dict], phone_export: Path
) -> None:
    """The same build served without COOP/COEP (build.py --no-isolation) on localhost, and with them over plain
    HTTP from a host that is not localhost (the way a phone opens the LAN address; Chromium maps the name to
    127.0.0.1): no isolation, no SharedArrayBuffer, 1 thread, no workers, the sentence saying why, and the
    golden cases still within the bounds."""
    _, _, manifest, browser = browser_page
    out, _ = web_build
    golden = json.loads((phone_export / "golden.json").read_text())
    fp32 = [_entry(manifest, runtime, "fp32") for runtime in ("litert", "onnxruntime-web")]
    no_headers = (
        "WebAssembly, 1 thread: this page is not cross-origin isolated (its server sent no COOP/COEP headers, or "
        "the browser ignored them), so the browser allows no threads."
    )
    plain_http = (
        "WebAssembly, 1 thread: this page is not cross-origin isolated (it came over plain HTTP, as on a phone "
        "opening the LAN address), so the browser allows no threads."
    )

    def check(page: Any, entry: dict[str, Any], sentence: str) -> None:
        assert not page.is_visible("#error"), page.text_content("#error")
        assert page.evaluate("window.melanomaDemo.state.load.file") == entry["file"].split("/")[-1]
        assert page.evaluate("[crossOriginIsolated, typeof SharedArrayBuffer]") == [False, "undefined"]
        compute = page.evaluate("window.melanomaDemo.state.compute")
        assert (compute["backend"], compute["threads"]) == ("wasm", 1), compute
        assert page.is_visible("#compute") and page.text_content("#compute") == sentence
        assert page.text_content("#model-status").endswith("WebAssembly, 1 thread.")
        assert page.workers == []
        _golden_in_page(page, golden, entry)

    with bench.serving(out, isolated=False) as url:
        for entry in fp32:
            requests: list[str] = []
            page = bench.open_page(browser, f"{url}?artifact={entry['file'].split('/')[-1]}", requests)
            try:
                assert page.evaluate("isSecureContext") is True  # localhost: the headers alone are missing
                check(page, entry, no_headers)
            finally:
                page.close()
            _assert_local(requests)
    host = "melanoma-phone.test"
    phone = browser.browser_type.launch(
        executable_path=bench.chromium_path(),
        args=[*bench.CHROMIUM_ARGS, f"--host-resolver-rules=MAP {host} 127.0.0.1"],
        headless=True,
    )
    try:
        with bench.serving(out) as url:  # COOP/COEP sent, but a browser honours them only in a secure context
            port = urllib.parse.urlsplit(url).port
            for entry in fp32:
                requests = []
                page = bench.open_page(
                    phone, f"http://{host}:{port}/?artifact={entry['file'].split('/')[-1]}", requests
                )
                try:
                    assert page.evaluate("isSecureContext") is False
                    check(page, entry, plain_http)
                finally:
                    page.close()
                outside = [r for r in requests if not r.startswith((f"http://{host}:{port}/", "data:", "blob:"))]
                assert not outside, f"requests left the page's server: {outside}"
    finally:
        phone.close()


@pytest.mark.slow
def test_bench_rows_for_every_runtime_precision_and_setting(
    browser_page: Any, phone_export: Path, tmp_path: Path, summary: _Summary
) -> None:
    """bench.measure: for every artifact a 1-thread row, an N-thread row (N = min(cores, 4) > 1), both within
    the golden cases' bounds, and a WebGPU row that says "not offered by this browser" (headless Chromium with
    --disable-gpu) with no timing; write_rows puts the measured ones in `rows` (what the main benchmark
    imports) and the WebGPU ones in `excluded`; the table shows them all."""
    _, url, manifest, browser = browser_page
    assert (bench.FP32_BOUND, bench.INT8_BOUND) == (FP32_BOUND, INT8_BOUND)  # the bounds of the tests above
    rows = bench.measure(browser, url, manifest, runs=10)
    out = bench.write_rows(tmp_path / bench.RESULT_FILE, rows, manifest)
    data = json.loads(out.read_text())
    fmt = {"litert": "litert-web", "onnxruntime-web": "onnxruntime-web"}
    wanted = {(fmt[a["runtime"]], a["precision"]) for a in manifest["artifacts"]}
    by_setting = {
        setting: {
            (r["format"], r["precision"]): r for r in [*data["rows"], *data["excluded"]] if r["setting"] == setting
        }
        for setting, _ in bench.SETTINGS
    }
    assert all(set(found) == wanted for found in by_setting.values()), by_setting
    assert len(data["rows"]) == 2 * len(wanted) and len(data["excluded"]) == len(wanted)
    threads = {r["threads"] for r in by_setting["N threads"].values()}
    assert len(threads) == 1 and threads.pop() > 1, by_setting["N threads"]
    for r in data["rows"]:
        assert r["status"] == "pass" and r["parity"]["ok"] and r["parity"]["cases"] >= 1, r
        assert r["backend"] == "wasm"
        assert r["runs"] == 10 and r["browser"].startswith("Chromium") and r["cross_origin_isolated"] is True
        assert 0 < r["p50_ms"] < 10_000 and 0 < r["load_ms"] < 60_000
        assert r["min_ms"] <= r["p50_ms"] <= r["max_ms"]
        assert r["compute"] == (
            "WebAssembly, 1 thread (as ?threads=1 asks)."
            if r["setting"] == "1 thread"
            else f"WebAssembly, {r['threads']} threads."
        )
    for r in by_setting["1 thread"].values():
        assert r["threads"] == 1
    for r in data["excluded"]:
        assert r["setting"] == "WebGPU" and r["status"] == bench.NOT_OFFERED and r["p50_ms"] is None, r
        assert r["compute"].startswith("WebGPU: not offered by this browser. WebAssembly, ")
    lines = bench.table(rows)
    assert len(lines) == 1 + len(rows) and sum(bench.NOT_OFFERED in line for line in lines) == len(wanted)
    for r in data["rows"]:
        summary.lines.append(
            f"bench {r['format']} {r['precision']} ({r['image_size']} px), {r['setting']} ({r['threads']}): load "
            f"{r['load_ms']:.0f} ms, p50 {r['p50_ms']:.2f} ms over {r['runs']} runs, max |dp| "
            f"{r['parity']['max_abs_diff']:.1e}, {r['browser']}"
        )


def test_bench_marks_a_row_beyond_the_bound_failed() -> None:
    """bench.parity against golden.json: within the bound passes; one case beyond it (or a case missing) fails,
    and write_rows keeps such a row out of `rows` (what the main benchmark imports) but in `excluded`."""

    def case(name: str, fp32: float, int8: float) -> dict[str, Any]:
        return {
            "image_name": name,
            "expected": {"probability": fp32},
            "artifacts": {"m.int8.tflite": {"probability": int8}},
        }

    golden = {"tolerance": {"probability_max_abs_fp32": 1e-4}, "cases": [case("a", 0.25, 0.3), case("b", 0.75, 0.7)]}
    fp32 = {"file": "models/m.tflite", "precision": "fp32", "parity": {"max_abs_diff": 3e-7}}
    int8 = {"file": "models/m.int8.tflite", "precision": "int8", "parity": {"max_abs_diff": 2e-6}}
    near = [{"name": "a", "probability": 0.25 + 5e-5}, {"name": "b", "probability": 0.75}]
    assert bench.parity(near, golden, fp32) | {"max_abs_diff": None} == {
        "cases": 2, "max_abs_diff": None, "bound": 1e-4, "against": "PyTorch", "ok": True
    }  # fmt: skip
    assert not bench.parity([{"name": "a", "probability": 0.2502}, near[1]], golden, fp32)["ok"]
    assert not bench.parity(near[:1], golden, fp32)["ok"]  # a case the page did not run
    quantized = [{"name": "a", "probability": 0.3 + 1.5e-6}, {"name": "b", "probability": 0.7}]
    assert bench.parity(quantized, golden, int8)["bound"] == 2e-6 and bench.parity(quantized, golden, int8)["ok"]
    assert not bench.parity([{"name": "a", "probability": 0.3 + 3e-6}, quantized[1]], golden, int8)["ok"]
    rows = [
        {"format": "litert-web", "precision": "fp32", "p50_ms": 2.0, "status": "pass"},
        {"format": "litert-web", "precision": "fp32", "p50_ms": 1.0, "status": "failed: max |dp| 2.00e-04 ..."},
        {"format": "litert-web", "precision": "fp32", "p50_ms": None, "status": bench.NOT_OFFERED},
    ]
    assert [bench.imported(r) for r in rows] == [True, False, False]


# ------------------------------------------------------------------------------------------ signed exports


def _linked_copy(source: Path, target: Path) -> Path:
    """A copy of an export folder made of hard links (fast, no disk); tamper only through _rewrite."""
    shutil.copytree(source, target, copy_function=os.link)
    return target


def _rewrite(path: Path, data: bytes) -> None:
    """Replace a file of a _linked_copy without touching the file it is linked to."""
    path.unlink()
    path.write_bytes(data)


def _flip_byte(path: Path) -> None:
    """One byte of `path` changed (its middle byte, xor 1)."""
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 1
    _rewrite(path, bytes(data))


def _int8_tflite(folder: Path) -> Path:
    """The int8 .tflite of an export (the page's recommended LiteRT.js artifact)."""
    return next(p for p in sorted(folder.glob("*.tflite")) if "int8" in p.name)


def _node_says(folder: Path, trust: Path | None = None) -> str:
    """web_demo/tools/verify.mjs's sentence for what the page would hold of `folder` ("verified" when it does)."""
    command = ["node", str(WEB / "tools" / "verify.mjs"), str(folder), *(["--trust", str(trust)] if trust else [])]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode in (0, 1), result.stderr[-2000:]
    return "verified" if result.returncode == 0 else result.stdout.strip()


def _tampers(signing_keys: Any) -> dict[str, Any]:
    """What happens to a copy of the signed export, by name: each a function of the copy."""
    from export.sign import sign_folder

    def rename_png(folder: Path) -> None:
        png = sorted((folder / "golden").glob("*.png"))[0]
        png.rename(png.with_name(f"renamed-{png.name}"))

    return {
        "untouched": lambda folder: None,
        "int8 .tflite byte": lambda folder: _flip_byte(_int8_tflite(folder)),
        "golden.json byte": lambda folder: _flip_byte(folder / "golden.json"),
        "golden PNG renamed": rename_png,
        "signed by the other key": lambda folder: (
            (folder / "model.sig").unlink(),
            sign_folder(folder, signing_keys.other_private),
        ),
        "model.sig deleted": lambda folder: (folder / "model.sig").unlink(),
        "model.sig not JSON": lambda folder: _rewrite(folder / "model.sig", b"this is not a signature\n"),
    }


@pytest.mark.slow
def test_provenance_js_says_what_python_says(
    node_tool: None, signed_export: Path, signing_keys: Any, tmp_path: Path, summary: _Summary
) -> None:
    """provenance.js in Node (tools/verify.mjs: the files the page would hold) against export.sign.verify_folder
    on the same copy of the signed export: the untouched one verifies, every tamper gets Python's sentence."""
    said = {}
    for i, (name, tamper) in enumerate(_tampers(signing_keys).items()):
        folder = _linked_copy(signed_export, tmp_path / f"copy{i}" / signed_export.name)
        tamper(folder)
        python, node = python_verdict(folder, signing_keys.public), _node_says(folder, signing_keys.public)
        assert node == python, f"{name}: provenance.js says {node!r}, export.sign says {python!r}"
        said[name] = python
    assert said["untouched"] == "verified"
    assert len(set(said.values())) == len(said), said  # each tamper is caught, each by its own sentence
    summary.lines.append(f"provenance.js in Node: {len(said)} signed / tampered exports, export.sign's sentence each")


@pytest.fixture(scope="module")
def signed_build(
    npm_packages: None, signed_export: Path, signing_keys: Any, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, dict[str, Any]]:
    """build.py --trust of the signed export into a temporary dist folder."""
    out = tmp_path_factory.mktemp("web_demo_signed_build") / "dist"
    command = [sys.executable, str(WEB / "build.py"), "--artifacts", str(signed_export), "--out", str(out)]
    result = subprocess.run([*command, "--trust", str(signing_keys.public)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return out, json.loads((out / "manifest.json").read_text(encoding="utf-8"))


@pytest.mark.slow
def test_build_with_trust_copies_the_signature_and_refuses_what_does_not_match(
    signed_build: tuple[Path, dict], signed_export: Path, phone_export: Path, signing_keys: Any, tmp_path: Path
) -> None:
    """--trust: model.sig, the key and each file's signed_name in the build (Node verifies the build as the page
    will); a copied file that differs from the statement is refused with Python's sentence; --trust of an unsigned
    export is refused in one sentence."""
    out, manifest = signed_build
    assert manifest["signing"] == {"signature": "models/model.sig", "trusted_key": build.TRUSTED_KEY_FILE}
    assert (out / "models" / "model.sig").read_bytes() == (signed_export / "model.sig").read_bytes()
    assert (out / build.TRUSTED_KEY_FILE).read_bytes() == signing_keys.public.read_bytes()
    copied = [*manifest["artifacts"], *manifest["golden_files"]]
    golden_files = [signed_export / "golden.json", *signed_export.glob("golden/*")]
    assert {f["signed_name"] for f in manifest["golden_files"]} == {
        p.relative_to(signed_export).as_posix() for p in golden_files
    }
    for f in copied:
        assert (out / f["file"]).read_bytes() == (signed_export / f["signed_name"]).read_bytes(), f
    assert _node_says(out) == "verified"
    # A golden image changed in the export before the build: build.py's sha256 check, Python's sentence.
    tampered = _linked_copy(signed_export, tmp_path / "tampered" / signed_export.name)
    _flip_byte(sorted((tampered / "golden").glob("*.png"))[-1])

    def run(folder: Path, target: Path) -> subprocess.CompletedProcess:
        command = [sys.executable, str(WEB / "build.py"), "--artifacts", str(folder), "--out", str(target)]
        return subprocess.run([*command, "--trust", str(signing_keys.public)], capture_output=True, text=True)

    refused = run(tampered, tmp_path / "out")
    assert refused.returncode == 2 and "Traceback" not in refused.stderr, refused.stderr
    assert refused.stderr.strip().splitlines() == [f"error: {python_verdict(tampered, signing_keys.public)}"]
    assert not (tmp_path / "out").exists()
    unsigned = run(phone_export, tmp_path / "out")
    assert unsigned.returncode == 2 and "Traceback" not in unsigned.stderr, unsigned.stderr
    assert len(unsigned.stderr.strip().splitlines()) == 1 and "model.sig" in unsigned.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_a_signed_build_runs_and_a_tampered_one_runs_nothing(
    browser_page: Any, signed_build: tuple[Path, dict], signed_export: Path, signing_keys: Any, tmp_path: Path
) -> None:
    """The page of a --trust build verifies model.sig and runs a golden case as an unsigned one does (which says
    "unsigned model"); the same build with one byte of its .tflite changed shows Python's sentence for that
    tamper and loads no model."""
    new_page, _, _, browser = browser_page
    out, manifest = signed_build
    golden = json.loads((signed_export / "golden.json").read_text())
    case = golden["cases"][0]
    spec = ModelSpec.from_json((signed_export / "spec.json").read_text())
    unsigned = new_page([])
    try:
        assert unsigned.text_content("#provenance").startswith("unsigned model")
    finally:
        unsigned.close()
    copied = out / _entry(manifest, "litert", "int8")["file"]  # what the page loads first
    original = copied.read_bytes()
    with bench.serving(out) as url:
        requests: list[str] = []
        page = bench.open_page(browser, url, requests)
        try:
            assert not page.is_visible("#error"), page.text_content("#error")
            assert page.evaluate("window.melanomaDemo.state.provenance.status") == "verified"
            assert page.evaluate("window.melanomaDemo.state.load.file") == copied.name
            assert page.text_content("#provenance").startswith("signed model")
            # The examples it offers are the verified bytes: the first one, through the form, as an upload would.
            page.wait_for_function("document.querySelectorAll('#example option').length > 1")
            page.select_option("#example", "0")
            page.wait_for_function("n => window.melanomaDemo.state.image?.name === n", arg=f"{case['image_name']}.png")
            page.evaluate("window.melanomaDemo.waitIdle()")
            _fill(page, spec, case["metadata"])
            shown = _assess(page)
            assert abs(shown - case["artifacts"][copied.name]["probability"]) <= INT8_BOUND
        finally:
            page.close()
        _assert_local(requests)
        tampered = _linked_copy(signed_export, tmp_path / "tampered" / signed_export.name)
        _flip_byte(tampered / copied.name)
        _flip_byte(copied)  # the build's copy, the same byte
        try:
            page = bench.open_page(browser, url, [])
            try:
                assert page.text_content("#error") == python_verdict(tampered, signing_keys.public)
                assert page.evaluate("window.melanomaDemo.state.model") is None
                assert page.evaluate("window.melanomaDemo.state.provenance.status") == "refused"
                assert page.is_disabled("#assess") and not page.is_visible("#result")
            finally:
                page.close()
        finally:
            copied.write_bytes(original)
