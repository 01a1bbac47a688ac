"""The Kotlin port (android_demo/core) held against the Python reference, on the JVM.

Builds :core and its JUnit tests once per session with Debian's kotlinc (android_demo/build-core.sh), writes
what the JUnit cross-checks read (PIL resize, cv2-rule resize and decoding outputs on odd sizes, Python's
metadata encodings and refusals under the export's contract and under a foreign contract with every feature
kind, Python's refusals of broken contracts, .tflite variants; edits of a real model.sig, and asset folders that
copy-assets.py made from `signed_export`, untouched and tampered, each with the verdict of Python's verifier
export/sign.py), runs the JUnit suite once against them and against `phone_export` (golden.json, the golden PNGs,
the real .tflite / .onnx files), and reports one pytest test per JUnit class. Then runs
`android_demo/bin/preprocess` on images it has never seen and on bad input. The JUnit counts and the golden
result appear in pytest's terminal summary.

Skips with the install line when the JVM toolchain is absent, unless CI=true (then it fails).
What this cannot prove (LiteRT on a phone) is the instrumented test in android_demo/app/src/androidTest.
"""

from __future__ import annotations

import base64
import copy
import importlib.util
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tomllib
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from core.contract import Contract, ContractError
from core.images import load_rgb, pass_order, preprocess, resize_bilinear, resize_rgb, to_float
from core.io import sha256_file
from core.metadata import MetadataError
from core.spec import BILINEAR_RESIZE, ImageContract, ModelSpec, OutputContract
from tests.conftest import python_verdict

ROOT = Path(__file__).resolve().parents[1]
ANDROID = ROOT / "android_demo"
INSTALL = "sudo apt-get install -y kotlin junit4 libgoogle-gson-java"
JAVA_LIBS = Path(os.environ.get("JAVA_LIBS", "/usr/share/java"))
JARS = ("gson.jar", "kotlin-stdlib.jar", "junit4.jar", "hamcrest-core.jar")
# One 8-bit level: v / 255 and (v + 1) / 255 in float32 may differ by 1/255 plus a float32 rounding.
IMAGE_BOUND = 1.0 / 255 + 1e-6
# One pytest test per JUnit class (android_demo/core/src/test: TEST_CLASSES in JsonReportRunner.kt).
JUNIT_CLASSES = (
    "ResizeTest",
    "DecodeTest",
    "MetadataTest",
    "SpecTest",
    "GoldenTest",
    "ClassifierTest",
    "ProvenanceTest",
    "AcceleratorTest",
)

# (input width, input height, [(output width, output height), ...]): odd sizes, both aspect ratios, upscaling,
# sizes where Pillow 13 runs the vertical pass first and where it runs the horizontal one first, several S.
RESIZE_SIZES = [
    (1, 1, [(32, 32), (1, 1)]),
    (3, 500, [(64, 64), (7, 7)]),
    (500, 3, [(64, 64)]),
    (4000, 3000, [(224, 224), (64, 64)]),
    (3000, 4000, [(224, 224)]),
    (1200, 4000, [(224, 224)]),  # a large photo that Pillow 13 resizes vertically first
    (641, 480, [(64, 64), (128, 128)]),
    (480, 641, [(64, 64), (33, 90)]),
    (20, 30, [(64, 64), (224, 224)]),
    (100, 1000, [(64, 64)]),
    (1000, 100, [(64, 64)]),
    (110, 121, [(100, 100)]),
    (110, 120, [(100, 100)]),
    (64, 64, [(64, 64)]),
    (64, 300, [(64, 64)]),
    (300, 64, [(64, 64)]),
    (257, 1023, [(31, 17), (300, 40)]),
    (50, 10, [(32, 32)]),
]
EXIF_ORIENTATION = 0x0112


def _toolchain_missing() -> str | None:
    """What of the JVM toolchain is absent, None when all of it is there."""
    for tool in ("kotlinc", "java"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    for jar in JARS:
        if not (JAVA_LIBS / jar).is_file():
            return f"{JAVA_LIBS / jar} is missing"
    return None


def _need_toolchain() -> None:
    missing = _toolchain_missing()
    if missing is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"{missing}, and CI must run the Kotlin tests: install the JVM toolchain with: {INSTALL}")
    pytest.skip(f"{missing}: install the JVM toolchain with: {INSTALL}")


def _env(build: Path) -> dict[str, str]:
    return {**os.environ, "MELANOMA_CORE_BUILD": str(build), "JAVA_LIBS": str(JAVA_LIBS)}


@pytest.fixture(scope="session")
def core_build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """:core (with the preprocess CLI) and its JUnit tests compiled into a fresh folder, once per session."""
    _need_toolchain()
    build = tmp_path_factory.mktemp("android_core_build")
    result = subprocess.run(
        [str(ANDROID / "build-core.sh"), "--tests"], env=_env(build), capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, f"build-core.sh failed:\n{result.stdout}\n{result.stderr[-6000:]}"
    return build


# ---------------------------------------------------------------------------------------------------- inputs


def _noise(rng: np.random.Generator, width: int, height: int, channels: int = 3) -> np.ndarray:
    """Noise on a gradient: every rounding of the resampler shows, and the image is not symmetric."""
    yy, xx = np.mgrid[:height, :width]
    base = (xx * 255 // max(width - 1, 1) + yy * 97 // max(height - 1, 1))[..., None] % 256
    noise = rng.integers(0, 256, (height, width, channels))
    return ((base + noise) % 256).astype(np.uint8)


def write_resize_cases(out: Path, rng: np.random.Generator) -> list[dict[str, Any]]:
    """PNG inputs and PIL 13 outputs (uint8 RGB, and float32 tensors for square outputs) for RESIZE_SIZES."""
    cases = []
    (out / "resize").mkdir()
    for i, (w, h, outputs) in enumerate(RESIZE_SIZES):
        png = f"resize/in{i}_{w}x{h}.png"
        Image.fromarray(_noise(rng, w, h)).save(out / png, compress_level=1)
        image = load_rgb(out / png)
        for j, (ow, oh) in enumerate(outputs):
            name = f"{w}x{h}->{ow}x{oh}"
            square = ow == oh
            resized = resize_rgb(image, ow) if square else image.resize((ow, oh), Image.Resampling.BILINEAR)
            rgb = f"resize/out{i}_{j}.rgb"
            (out / rgb).write_bytes(np.asarray(resized, dtype=np.uint8).tobytes())
            case = {"name": name, "png": png, "in_w": w, "in_h": h, "out_w": ow, "out_h": oh}
            case.update({"order": pass_order(w, h, ow, oh), "rgb": rgb, "float": None, "layout": None})
            if square:
                layout = ("NHWC", "NCHW")[j % 2]
                tensor = preprocess(image, ImageContract(size=ow, layout=layout))
                case["float"] = f"resize/out{i}_{j}.f32"
                case["layout"] = layout
                (out / case["float"]).write_bytes(tensor.astype("<f4").tobytes())
            cases.append(case)
    return cases


# (input width, input height, [(output width, output height), ...]) for the cv2 INTER_LINEAR rule; random sizes
# (upscaling, downscaling, non-square sources, one axis up and the other down) are added per session.
BILINEAR_SIZES = [
    (1, 1, [(16, 16), (1, 1)]),
    (3, 500, [(64, 64), (7, 3)]),
    (500, 3, [(64, 64)]),
    (4000, 3000, [(224, 224)]),
    (641, 480, [(64, 64), (33, 90)]),
    (20, 30, [(64, 64), (224, 224)]),
    (64, 64, [(64, 64), (32, 32)]),
    (2, 2, [(5, 7)]),
]


def bilinear_image(size: int, layout: str) -> ImageContract:
    """The image contract of a spec whose contract asks for `"resize": "bilinear"` (core/spec.py: image_contract)."""
    return ImageContract(
        size=size, layout=layout, antialias=False, resize_library=BILINEAR_RESIZE, resize_library_version=""
    )


def write_bilinear_cases(out: Path, rng: np.random.Generator) -> list[dict[str, Any]]:
    """PNG inputs and core.images.resize_bilinear outputs (uint8 RGB; float32 tensors of `preprocess` with antialias
    false for square outputs) for BILINEAR_SIZES and random sizes."""
    sizes = list(BILINEAR_SIZES)
    for _ in range(8):
        w, h = (int(v) for v in rng.integers(1, 700, 2))
        outputs = [(int(rng.integers(1, 300)), int(rng.integers(1, 300)))]
        square = int(rng.integers(16, 260))
        sizes.append((w, h, [*outputs, (square, square)]))
    cases = []
    (out / "bilinear").mkdir()
    for i, (w, h, outputs) in enumerate(sizes):
        png = f"bilinear/in{i}_{w}x{h}.png"
        Image.fromarray(_noise(rng, w, h)).save(out / png, compress_level=1)
        image = load_rgb(out / png)
        for j, (ow, oh) in enumerate(outputs):
            resized = resize_bilinear(np.asarray(image), ow, oh)
            rgb = f"bilinear/out{i}_{j}.rgb"
            (out / rgb).write_bytes(resized.tobytes())
            case = {"name": f"{w}x{h}->{ow}x{oh}", "png": png, "in_w": w, "in_h": h, "out_w": ow, "out_h": oh}
            case.update({"rgb": rgb, "float": None, "layout": None})
            if ow == oh:
                layout = ("NHWC", "NCHW")[j % 2]
                tensor = preprocess(image, bilinear_image(ow, layout))
                assert np.array_equal(tensor, to_float(resized, layout))
                case["float"] = f"bilinear/out{i}_{j}.f32"
                case["layout"] = layout
                (out / case["float"]).write_bytes(tensor.astype("<f4").tobytes())
            cases.append(case)
    return cases


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def raw_png(samples: np.ndarray, bit_depth: int, color_type: int) -> bytes:
    """A PNG PIL cannot write itself (16-bit colour, 4-bit gray): samples [H, W, C] as unsigned integers."""
    height, width = samples.shape[:2]
    if bit_depth == 16:
        rows = samples.astype(">u2").reshape(height, -1).view(np.uint8)
    elif bit_depth == 8:
        rows = samples.astype(np.uint8).reshape(height, -1)
    else:  # pack 1/2/4-bit gray samples, most significant first, rows padded to a byte
        per_byte = 8 // bit_depth
        flat = samples.reshape(height, width).astype(np.uint8)
        padded = np.zeros((height, -(-width // per_byte) * per_byte), np.uint8)
        padded[:, :width] = flat
        groups = padded.reshape(height, -1, per_byte)
        rows = np.zeros(groups.shape[:2], np.uint8)
        for k in range(per_byte):
            rows |= groups[:, :, k] << (8 - bit_depth * (k + 1))
    raw = b"".join(b"\x00" + row.tobytes() for row in rows)
    header = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    chunks = _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", zlib.compress(raw)) + _png_chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + chunks


def write_decode_cases(out: Path, rng: np.random.Generator) -> list[dict[str, Any]]:
    """Image files of every mode PIL decodes differently, each with PIL's load_rgb pixels as the expected ones."""
    (out / "decode").mkdir()
    files: list[tuple[str, float]] = []  # (file, bound on the mean |d| in levels)

    def save(name: str, image: Image.Image, bound: float = 0.0, **kwargs: Any) -> None:
        image.save(out / "decode" / name, **kwargs)
        files.append((f"decode/{name}", bound))

    rgb = Image.fromarray(_noise(rng, 37, 23))
    for orientation in range(1, 9):
        exif = Image.Exif()
        exif[EXIF_ORIENTATION] = orientation
        save(f"exif{orientation}.png", rgb, exif=exif.tobytes())
    rgba = _noise(rng, 256, 5, 4)
    rgba[:, :, 3] = np.arange(256)[None, :]  # every alpha value, 0 (white) to 255 (unchanged)
    save("rgba.png", Image.fromarray(rgba, "RGBA"))
    save("la.png", Image.fromarray(rgba[:, :, 2:], "LA"))
    save("gray.png", Image.fromarray(rgba[:, :, 0], "L"))
    save("gray_trns.png", Image.fromarray(rgba[:, :, 0], "L"), transparency=int(rgba[0, 7, 0]))
    save("bilevel.png", Image.fromarray(rgba[:, :, 0] > 127))
    palette = Image.fromarray(rgba[:, :, :3]).quantize(16)
    save("palette.png", palette, transparency=bytes([0, 64, 128, 255] * 4))
    save("gray16.png", Image.fromarray((rng.integers(0, 65536, (9, 300))).astype(np.uint16)))
    for name, samples, depth, kind in (
        ("rgb16.png", rng.integers(0, 65536, (7, 40, 3)), 16, 2),
        ("rgba16.png", rng.integers(0, 65536, (7, 40, 4)), 16, 6),
        ("gray4.png", rng.integers(0, 16, (5, 33, 1)), 4, 0),
    ):
        (out / "decode" / name).write_bytes(raw_png(samples, depth, kind))
        files.append((f"decode/{name}", 0.0))
    # JPEG decoders (ImageIO's libjpeg 6b, PIL's libjpeg-turbo) may round differently: orientation and the
    # gray path are what these check, with a loose bound; the golden cases ship as PNG for this reason.
    photo = Image.fromarray(_noise(rng, 64, 40) // 4 + 96)
    for orientation in (6, 8):
        exif = Image.Exif()
        exif[EXIF_ORIENTATION] = orientation
        save(f"exif{orientation}.jpg", photo, bound=1.0, exif=exif.tobytes(), quality=95)
    save("gray.jpg", photo.convert("L"), bound=1.0, quality=95)
    cases = []
    for file, bound in files:
        pixels = np.asarray(load_rgb(out / file), dtype=np.uint8)
        rgb_file = file + ".rgb"
        (out / rgb_file).write_bytes(pixels.tobytes())
        cases.append(
            {
                "name": Path(file).name,
                "file": file,
                "width": pixels.shape[1],
                "height": pixels.shape[0],
                "rgb": rgb_file,
                "max_mean_abs": bound,
            }
        )
    return cases


AGES: list[Any] = [None, "", " ", "nan", "NaN", "unknown", "N/A", "55", " 55 ", "55.5", "1e1", "1_0", "-1", "121"]
AGES += ["120", "0", "abc", "55f", "0x10", "inf", "-inf", "-nan", 0, 0.5, 37.25, 120, 120.0001, -0.0, 1000, 45.1234567]
AGES += [True, [55], {"years": 55}]
SEXES: list[Any] = [None, "", "male", "FEMALE", " m ", "F", "unknown", "other", "N/A", "ma le", "female\t", 1, False]
SITES: list[Any] = [None, "", "torso", "anterior_torso", "Head  Neck", "head/neck", "palms/soles", "PALMS SOLES"]
SITES += ["UPPER EXTREMITY", "mouth", "oral genital", "oral_genital", "lateral torso", "posterior torso ", "null"]
SITES += ["lower\textremity", "head and neck", "scalp", 3.5, ["torso"]]

# A model trained elsewhere, as its contract states it: every feature kind (number with log1p + missing flag +
# range, log, plain; one-hot with aliases and missing "zeros", where an alias shares a category's name; code with
# aliases, where an alias shares a code's name; one field read by a one-hot and a code), two L2 groups (one of them
# all zeros for some cases), a BGR model with its own mean / std, the cv2 resize rule and a softmax head.
FOREIGN_CONTRACT: dict[str, Any] = {
    "contract": "melanoma-contract/1",
    "name": "foreign_every_kind",
    "image": {"size": 24, "channels": "BGR", "mean": [0.5, 0.4, 0.3], "std": [0.25, 0.2, 0.2], "resize": "bilinear"},
    "metadata": [
        {
            "name": "lesions",
            "kind": "number",
            "field": "n_lesions",
            "transform": "log1p",
            "offset": 1.5,
            "scale": 0.75,
            "missing": -1,
            "missing_flag": True,
            "range": [0, 500],
            "unit": "naevi",
            "description": "number of naevi",
        },
        {
            "name": "dose",
            "kind": "number",
            "field": "uv_dose",
            "transform": "log",
            "missing": 0.0,
            "description": "UV dose",
        },
        {"name": "count", "kind": "number", "field": "n_images", "missing": 0},
        {
            "name": "skin",
            "kind": "one_hot",
            "field": "fitzpatrick",
            "categories": ["I", "II", "III", "IV", "V", "VI", "Pale"],
            "aliases": {"1": "I", "2": "ii", "type_3": "III", "pale": "iii", "light": "Pale"},
            "missing": "zeros",
        },
        {
            "name": "history",
            "kind": "code",
            "field": "family_history",
            "codes": {"no": 0, "yes": 1, "Unsure": 0.5, "y": 0.75},
            "aliases": {"n": "no", "y": "yes", "dont know": "unsure"},
            "missing": -0.5,
            "description": "melanoma in the family",
        },
        {
            "name": "sex",
            "kind": "one_hot",
            "field": "sex",
            "categories": ["male", "female"],
            "aliases": {"m": "male"},
            "missing": "column",
        },
        {"name": "sex_code", "kind": "code", "field": "sex", "codes": {"male": 1, "female": 2}, "missing": 0},
    ],
    "normalize": [
        {"kind": "l2", "features": ["count", "history", "skin"]},
        {"kind": "l2", "features": ["dose", "sex_code"]},
    ],
    "output": {"kind": "softmax", "classes": 3, "positive": [1, 2]},
    "decision": {"rule": "youden"},
    "tta": ["hflip", "vflip"],
}
FOREIGN_VALUES: dict[str, list[Any]] = {
    "n_lesions": [
        None,
        "",
        "nan",
        "unknown",
        0,
        "0",
        3,
        "3.5",
        499.9,
        500,
        501,
        -1,
        "-0.5",
        "1e2",
        " 12 ",
        True,
        False,
        "abc",
        "3,5",
        [3],
        {"n": 3},
        "inf",
        "1_000",
        0.25,
    ],
    "uv_dose": [None, 1, "2.5", 1e-300, 0, "0", -1, "-inf", 1e300, 7.25, "NaN", "x", False, "0.001"],
    "n_images": [None, 0, 1, 2.5, -3, "1e308", "7", [1], "seven", 1e-5],
    "fitzpatrick": [
        None,
        "",
        "I",
        "i",
        " iv ",
        "VI",
        "1",
        "2",
        "Type_3",
        "type 3",
        "pale",
        "PALE ",
        "light",
        "VII",
        "ii i",
        3,
        True,
        "None",
        "n/a",
    ],
    "family_history": [None, "no", "Yes", "y", "Y ", "n", "unsure", "Dont_Know", "maybe", 1, 0.5, "NULL"],
    "sex": [None, "male", "F", "M", "female", "x", 2],
}


def _outcome(encoder: Any, case: dict[str, Any]) -> dict[str, Any]:
    """A case with Python's encoding, or its error sentence when it refuses the case."""
    item: dict[str, Any] = {"case": case, "meta": None, "error": None}
    try:
        item["meta"] = [float(v) for v in encoder.encode(case)]
    except MetadataError as exc:
        item["error"] = str(exc)
    return item


def write_metadata_cases(spec: ModelSpec, rng: np.random.Generator, count: int = 400) -> list[dict[str, Any]]:
    """(age, sex, site) combinations as cases of the spec's contract fields, with Python's encoding or refusal."""
    encoder = spec.encoder()
    field = {f["name"]: f["field"] for f in spec.contract["metadata"]}
    combos = [(a, "male", "torso") for a in AGES] + [(40, s, None) for s in SEXES] + [(None, None, t) for t in SITES]
    for _ in range(count):
        combos.append((AGES[rng.integers(len(AGES))], SEXES[rng.integers(len(SEXES))], SITES[rng.integers(len(SITES))]))
    return [_outcome(encoder, {field["age"]: a, field["sex"]: s, field["site"]: t}) for a, s, t in combos]


def foreign_spec() -> ModelSpec:
    """The spec Python derives for FOREIGN_CONTRACT (as `ModelSpec.for_contract` makes it for any model), read back
    from its JSON as every reader of an artifact gets it. NOTE: `to_json` sorts keys, so the embedded contract lists
    aliases and codes alphabetically, and the accepted values in a refusal follow that order on both sides."""
    spec = ModelSpec.for_contract(Contract.from_dict(FOREIGN_CONTRACT), architecture="x", outputs=OutputContract())
    return ModelSpec.from_json(spec.to_json())


def write_foreign_cases(spec: ModelSpec, rng: np.random.Generator, count: int = 300) -> list[dict[str, Any]]:
    """Each FOREIGN_VALUES value alone (the other fields absent), then random combinations of any values (most of
    them refused) and of the values Python accepts (each field present with probability 0.85)."""
    encoder = spec.encoder()
    alone = [_outcome(encoder, {f: v}) for f, values in FOREIGN_VALUES.items() for v in values]
    accepted: dict[str, list[Any]] = {f: [] for f in FOREIGN_VALUES}
    for item in alone:
        if item["error"] is None:
            ((field, value),) = item["case"].items()
            accepted[field].append(value)
    cases = []
    for pool in (FOREIGN_VALUES, accepted):
        for _ in range(count):
            cases.append({f: values[rng.integers(len(values))] for f, values in pool.items() if rng.random() < 0.85})
    return alone + [_outcome(encoder, case) for case in cases]


def _broken(edit: Any) -> dict[str, Any]:
    contract = copy.deepcopy(FOREIGN_CONTRACT)
    edit(contract)
    return contract


def _set(path: str, value: Any) -> Any:
    """An edit that sets (value given) or removes (value DELETE) the field at the dotted path; [i] indexes lists."""

    def edit(contract: dict[str, Any]) -> None:
        keys = [int(k) if k.isdigit() else k for k in re.split(r"[.\[\]]+", path.strip("]")) if k]
        parent: Any = contract
        for key in keys[:-1]:
            parent = parent[key]
        if value is DELETE:
            del parent[keys[-1]]
        else:
            parent[keys[-1]] = value

    return edit


DELETE = object()
BROKEN_CONTRACTS: list[Any] = [
    lambda c: c.clear(),
    _set("name", DELETE),
    _set("colour", "red"),
    _set("contract", "melanoma-contract/2"),
    _set("name", ""),
    _set("name", 5),
    _set("image", "x"),
    _set("image.size", 15),
    _set("image.size", 16.0),
    _set("image.size", True),
    _set("image.size", 3000),
    _set("image.channels", "rgb"),
    _set("image.mean", None),
    _set("image.mean", [0.5, 0.4]),
    _set("image.std", [0.2, 0, 0.2]),
    _set("image.mean", ["a", 0.4, 0.3]),
    _set("image.resize", "nearest"),
    _set("image.crop", 0.9),
    _set("metadata", {}),
    _set("metadata[0]", 5),
    _set("metadata[0].kind", "text"),
    _set("metadata[0].kind", DELETE),
    _set("metadata[0].name", DELETE),
    _set("metadata[0].description", 5),
    _set("metadata[0].unit", 3),
    _set("metadata[0].transform", "sqrt"),
    _set("metadata[0].missing_flag", "yes"),
    _set("metadata[0].field", ""),
    _set("metadata[0].missing", "x"),
    _set("metadata[0].missing", DELETE),
    _set("metadata[0].offset", None),
    _set("metadata[0].scale", -1),
    _set("metadata[0].range", [1]),
    _set("metadata[0].range", [1, "a"]),
    _set("metadata[0].range", [5, 5]),
    _set("metadata[0].bands", []),
    _set("metadata[0].colour", 1),
    _set("metadata[0].categories", ["a"]),
    _set("metadata[3].categories", []),
    _set("metadata[3].categories", ["a", " A"]),
    _set("metadata[3].categories", [1]),
    _set("metadata[3].missing", "none"),
    _set("metadata[3].aliases", []),
    _set("metadata[3].aliases", {"x": "nope"}),
    _set("metadata[3].aliases", {"x": 5}),
    _set("metadata[3].offset", 1),
    _set("metadata[4].codes", {}),
    _set("metadata[4].codes", {"a": "1"}),
    _set("metadata[4].codes", []),
    _set("metadata[4].missing", "column"),
    _set("metadata[4].aliases", {"maybe": "perhaps"}),
    _set("metadata[4].transform", "log"),
    _set("metadata[6].name", "sex"),
    _set("normalize[0].kind", "l1"),
    _set("normalize[0].features", []),
    _set("normalize[0].features", ["nope"]),
    _set("normalize[0].features", "count"),
    _set("normalize[1]", "group"),
    _set("normalize[0].features", DELETE),
    _set("normalize", {"a": 1}),
    _set("normalize", "ab"),
    _set("output", "sigmoid"),
    _set("output", {"kind": "sigmoid", "classes": 2}),
    _set("output.classes", 1),
    _set("output.classes", 2.0),
    _set("output.positive", []),
    _set("output.positive", [3]),
    _set("output.positive", [0, 1, 2]),
    _set("output.positive", [True]),
    _set("output.kind", "logits"),
    _set("decision", {"threshold": 1.5}),
    _set("decision", {"threshold": "0.5"}),
    _set("decision", {"threshold": 0.5, "rule": "youden"}),
    _set("decision", {"rule": "f1"}),
    _set("decision", {"rule": "sensitivity"}),
    _set("decision", {"rule": "sensitivity", "target": 1.0}),
    _set("decision", {"rule": "youden", "target": 0.9}),
    _set("decision", []),
    _set("tta", ["rotate"]),
    _set("tta", "hflip"),
]


def write_broken_contracts() -> list[dict[str, Any]]:
    """Broken variants of FOREIGN_CONTRACT, each with the sentence Python's parser refuses it with."""
    cases = []
    for edit in BROKEN_CONTRACTS:
        contract = _broken(edit)
        with pytest.raises(ContractError) as refused:
            Contract.from_dict(contract)
        cases.append({"contract": contract, "error": str(refused.value)})
    return cases


def write_tflite_variants(out: Path, tflite: Path) -> dict[str, str]:
    """The real .tflite with its spec moved out of the flatbuffer (Buffer offset/size), and without any spec."""
    from ai_edge_litert.tools import flatbuffer_utils

    from export.common import SPEC_KEY

    def entry_name(entry: Any) -> str:
        return entry.name.decode() if isinstance(entry.name, bytes) else entry.name

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(tflite.read_bytes()))
    entry = next(m for m in model.metadata if entry_name(m) == SPEC_KEY)
    buffer = model.buffers[entry.buffer]
    spec_bytes = bytes(bytearray(buffer.data))
    buffer.data = None
    buffer.offset, buffer.size = 2, len(spec_bytes)  # placeholder: the length of the flatbuffer stays the same
    first = bytes(flatbuffer_utils.convert_object_to_bytearray(model))
    buffer.offset = -(-len(first) // 16) * 16
    second = bytes(flatbuffer_utils.convert_object_to_bytearray(model))
    assert len(second) == len(first)
    (out / "offset_spec.tflite").write_bytes(second + b"\0" * (buffer.offset - len(second)) + spec_bytes)
    model.metadata = [m for m in model.metadata if entry_name(m) != SPEC_KEY]
    (out / "no_spec.tflite").write_bytes(bytes(flatbuffer_utils.convert_object_to_bytearray(model)))
    shutil.copyfile(tflite.with_name(tflite.name + ".spec.json"), out / "offset_spec.tflite.spec.json")
    from export import runners  # the Python reader must find a spec stored by offset too

    assert runners.read_spec(out / "offset_spec.tflite").to_json() == runners.read_spec(tflite).to_json()
    return {"offset": "offset_spec.tflite", "sidecar": "offset_spec.tflite.spec.json", "no_spec": "no_spec.tflite"}


def fp32_tflite(export: Path) -> Path:
    """The fp32 .tflite of an export folder."""
    return next(p for p in sorted(export.glob("*.tflite")) if ".int8" not in p.name and ".fp16" not in p.name)


def write_cases(out: Path, export: Path, seed: int = 0) -> Path:
    """Everything the JUnit cross-checks read, with manifest.json listing it; returns `out`."""
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    tflite = fp32_tflite(export)
    spec_file = tflite.with_name(tflite.name + ".spec.json")
    shutil.copyfile(spec_file, out / "metadata_spec.json")
    foreign = foreign_spec()
    (out / "foreign_spec.json").write_text(foreign.to_json(), encoding="utf-8")
    manifest = {
        "resize": write_resize_cases(out, rng),
        "bilinear": write_bilinear_cases(out, rng),
        "decode": write_decode_cases(out, rng),
        "metadata": [
            {"spec": "metadata_spec.json", "cases": write_metadata_cases(ModelSpec.load(spec_file), rng)},
            {"spec": "foreign_spec.json", "cases": write_foreign_cases(foreign, rng)},
        ],
        "contracts": write_broken_contracts(),
        "tflite": write_tflite_variants(out, tflite),
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1), encoding="utf-8")
    return out


# ----------------------------------------------------------------------------------------- signed exports

# What is done to a signed asset folder (as copy-assets.py writes it) and, for Python's sentence, to a copy of
# the export folder: the same change to the same file, under its name there.
SIGNING_TAMPERS = (
    "untouched",
    "model byte flipped",
    "spec byte flipped",
    "golden.json byte flipped",
    "golden PNG renamed",
    "signed by the other key",
    "signed by the other key, no key hint",
    "signature deleted",
    "signature truncated",
)


def _flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def _tamper(folder: Path, tamper: str, names: dict[str, str], other_signature: Path) -> None:
    """Applies `tamper` to `folder`, whose files `names` names (model, spec, golden, png, sig)."""
    flips = {"model byte flipped": "model", "spec byte flipped": "spec", "golden.json byte flipped": "golden"}
    signature = folder / names["sig"]
    if tamper in flips:
        _flip_byte(folder / names[flips[tamper]])
    elif tamper == "golden PNG renamed":
        png = folder / names["png"]
        png.rename(png.with_name(png.stem + "-renamed.png"))
    elif tamper == "signed by the other key":
        shutil.copyfile(other_signature, signature)
    elif tamper == "signed by the other key, no key hint":  # the signature check alone must refuse it
        bundle = json.loads(other_signature.read_text())
        del bundle["verificationMaterial"]["publicKey"]["hint"]
        signature.write_text(json.dumps(bundle))
    elif tamper == "signature deleted":
        signature.unlink()
    elif tamper == "signature truncated":
        signature.write_bytes(signature.read_bytes()[: signature.stat().st_size // 2])
    else:
        assert tamper == "untouched", f"unknown tamper {tamper!r}"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _edit_statement(edit: Any) -> Any:
    """A bundle edit that changes the decoded statement (the signature then no longer matches it)."""

    def apply(bundle: dict[str, Any]) -> None:
        envelope = bundle["dsseEnvelope"]
        statement = json.loads(base64.b64decode(envelope["payload"]))
        edit(statement)
        envelope["payload"] = _b64(json.dumps(statement).encode())

    return apply


def _resource(i: int, key: str, value: Any) -> Any:
    return _edit_statement(lambda s: s["predicate"]["resources"][i].__setitem__(key, value))


def _upper_digests(statement: dict[str, Any]) -> None:
    for resource in statement["predicate"]["resources"]:
        resource["digest"] = resource["digest"].upper()
    statement["subject"][0]["digest"]["sha256"] = statement["subject"][0]["digest"]["sha256"].upper()


# Edits of a real model.sig (its JSON; a bytes -> bytes function for what is not JSON), each judged by Python's
# verify_bundle: every malformed detail, the key hint, the signature.
BUNDLE_EDITS: dict[str, Any] = {
    "untouched": lambda b: None,
    "truncated": lambda raw: raw[: len(raw) // 2],
    "not UTF-8": lambda raw: b"\xff" + raw,
    "a list": lambda raw: b"[1]",
    "media type": lambda b: b.__setitem__("mediaType", "application/json"),
    "no envelope": lambda b: b.pop("dsseEnvelope"),
    "payload type": lambda b: b["dsseEnvelope"].__setitem__("payloadType", "application/json"),
    "no signatures": lambda b: b["dsseEnvelope"].pop("signatures"),
    "zero signatures": lambda b: b["dsseEnvelope"].__setitem__("signatures", []),
    "two signatures": lambda b: b["dsseEnvelope"]["signatures"].append(b["dsseEnvelope"]["signatures"][0]),
    "signature not text": lambda b: b["dsseEnvelope"]["signatures"][0].__setitem__("sig", 5),
    "signature not base64": lambda b: b["dsseEnvelope"]["signatures"][0].__setitem__("sig", "MEU*"),
    "signature unpadded": lambda b: b["dsseEnvelope"]["signatures"][0].__setitem__("sig", "MEUC"[:3]),
    "signature not DER": lambda b: b["dsseEnvelope"]["signatures"][0].__setitem__("sig", _b64(bytes(64))),
    "no payload": lambda b: b["dsseEnvelope"].pop("payload"),
    "payload not base64": lambda b: b["dsseEnvelope"].__setitem__("payload", "e*J9"),
    "payload padded twice": lambda b: b["dsseEnvelope"].__setitem__("payload", "eyJ9=="),  # Python reads '{"}'
    "payload not JSON": lambda b: b["dsseEnvelope"].__setitem__("payload", _b64(b"not json")),
    "statement type": _edit_statement(lambda s: s.__setitem__("_type", "https://in-toto.io/Statement/v0.1")),
    "predicate type": _edit_statement(lambda s: s.__setitem__("predicateType", "x")),
    "two subjects": _edit_statement(lambda s: s["subject"].append(s["subject"][0])),
    "subject without digest": _edit_statement(lambda s: s["subject"][0].pop("digest")),
    "no predicate": _edit_statement(lambda s: s.pop("predicate")),
    "shard serialization": _edit_statement(lambda s: s["predicate"]["serialization"].__setitem__("method", "shards")),
    "ignore_paths null": _edit_statement(lambda s: s["predicate"]["serialization"].__setitem__("ignore_paths", None)),
    "no ignore_paths": _edit_statement(lambda s: s["predicate"]["serialization"].pop("ignore_paths")),
    "resource without name": _edit_statement(lambda s: s["predicate"]["resources"][0].pop("name")),
    "resource not an object": _edit_statement(lambda s: s["predicate"]["resources"].__setitem__(0, "x")),
    "sha512 resource": _resource(0, "algorithm", "sha512"),
    "short digest": _resource(0, "digest", "ab"),
    "digest not hex": _resource(0, "digest", "g" * 64),
    "root digest": _resource(0, "digest", "0" * 64),
    "upper-case digests": _edit_statement(_upper_digests),
    "no key hint": lambda b: b["verificationMaterial"]["publicKey"].pop("hint"),
    "no verification material": lambda b: b.pop("verificationMaterial"),
    "another key's hint": lambda b: b["verificationMaterial"]["publicKey"].__setitem__("hint", "ab" * 32),
    "signature of another payload": lambda b: b["dsseEnvelope"].__setitem__(
        "payload", _b64(base64.b64decode(b["dsseEnvelope"]["payload"]) + b" ")
    ),
}
RAW_EDITS = ("truncated", "not UTF-8", "a list")


def write_bundle_cases(out: Path, signature: Path, trust: Path) -> list[dict[str, str]]:
    """BUNDLE_EDITS applied to `signature`, each with Python's verdict (verify_bundle with the key `trust`)."""
    from export.sign import SignatureError, read_trusted_key, verify_bundle

    key = read_trusted_key(trust)
    (out / "bundles").mkdir()
    cases = []
    for i, (name, edit) in enumerate(BUNDLE_EDITS.items()):
        raw = signature.read_bytes()
        if name in RAW_EDITS:
            data = edit(raw)
        else:
            bundle = json.loads(raw)
            edit(bundle)
            data = json.dumps(bundle).encode()
        try:
            verify_bundle(data, key)
            expected = "verified"
        except SignatureError as exc:
            expected = str(exc)
        (out / f"bundles/{i}.sig").write_bytes(data)
        cases.append({"name": name, "file": f"bundles/{i}.sig", "expected": expected})
    return cases


def write_signing_cases(out: Path, signed_export: Path, keys: Any) -> list[dict[str, Any]]:
    """Asset folders made by copy-assets.py from the signed export (`--trust` the signing key), each tampered as
    SIGNING_TAMPERS says, the same tampers on copies of the export folder, and one asset folder without a pinned
    key; each with Python's verdict on the tampered export (verify_folder). Writes out/manifest.json for
    ProvenanceTest; returns the cases."""
    from export.sign import sign_folder

    copy_assets = _load_copy_assets()
    out.mkdir(parents=True)
    (out / "keys").mkdir()
    shutil.copyfile(keys.public, out / "keys/ours.pub")
    shutil.copyfile(keys.other_public, out / "keys/theirs.pub")
    other = out / "other_signed"
    shutil.copytree(signed_export, other)
    sign_folder(other, keys.other_private)
    other_signature = other / copy_assets.SIGNATURE_ASSET

    def run_copy_assets(dest: Path, *flags: str | Path) -> None:
        command = [sys.executable, str(ANDROID / "copy-assets.py"), str(signed_export), "--dest", str(dest)]
        result = subprocess.run([*command, *map(str, flags)], capture_output=True, text=True, check=False)
        assert result.returncode == 0, f"copy-assets.py {' '.join(map(str, flags))}: {result.stderr}"
        assert (dest / copy_assets.SIGNATURE_ASSET).read_bytes() == (signed_export / "model.sig").read_bytes()

    base = out / "assets_base"
    run_copy_assets(base, "--trust", keys.public)
    assert (base / copy_assets.TRUSTED_KEY_ASSET).read_bytes() == keys.public.read_bytes()
    artifact = json.loads((base / copy_assets.MANIFEST_ASSET).read_text())["artifact"]
    png = sorted((base / copy_assets.GOLDEN_DIR_ASSET).glob("*.png"))[0].name
    golden_png = f"{copy_assets.GOLDEN_DIR_ASSET}/{png}"
    asset_names = {"model": copy_assets.MODEL_ASSET, "spec": copy_assets.SPEC_ASSET, "golden": copy_assets.GOLDEN_ASSET}
    asset_names.update({"png": golden_png, "sig": copy_assets.SIGNATURE_ASSET})
    export_names = {"model": artifact, "spec": f"{artifact}.spec.json", "golden": "golden.json"}
    export_names.update({"png": f"golden/{png}", "sig": "model.sig"})
    cases = []
    for i, tamper in enumerate(SIGNING_TAMPERS):
        export_copy = out / f"export{i}"
        shutil.copytree(signed_export, export_copy)
        _tamper(export_copy, tamper, export_names, other_signature)
        expected = python_verdict(export_copy, out / "keys/ours.pub")
        assert (expected == "verified") == (tamper == "untouched"), (tamper, expected)
        assets = out / f"assets{i}"
        shutil.copytree(base, assets)
        _tamper(assets, tamper, asset_names, other_signature)
        cases.append({"name": tamper, "kind": "assets", "folder": assets.name, "key": None, "expected": expected})
        cases.append(
            {"name": tamper, "kind": "folder", "folder": export_copy.name, "key": "keys/ours.pub", "expected": expected}
        )
    # copy-assets.py without --trust: model.sig is copied, no key is pinned, and the app runs the model unsigned.
    run_copy_assets(out / "assets_unpinned")
    assert not (out / "assets_unpinned" / copy_assets.TRUSTED_KEY_ASSET).exists()
    cases.append(
        {"name": "no pinned key", "kind": "assets", "folder": "assets_unpinned", "key": None, "expected": "unsigned"}
    )
    hint = json.loads((signed_export / "model.sig").read_text())["verificationMaterial"]["publicKey"]["hint"]
    ours = sha256_file(out / "keys/ours.pub")
    assert hint == ours, "model-signing's key hint is the sha256 of the .pub file export.sign writes"
    manifest = {
        "bundles": write_bundle_cases(out, signed_export / "model.sig", out / "keys/ours.pub"),
        "assets": {
            "model": copy_assets.MODEL_ASSET,
            "spec": copy_assets.SPEC_ASSET,
            "manifest": copy_assets.MANIFEST_ASSET,
            "golden": copy_assets.GOLDEN_ASSET,
            "golden_dir": copy_assets.GOLDEN_DIR_ASSET,
            "signature": copy_assets.SIGNATURE_ASSET,
            "trusted_key": copy_assets.TRUSTED_KEY_ASSET,
        },
        "keys": [
            {"pem": "keys/ours.pub", "hint": ours},
            {"pem": "keys/theirs.pub", "hint": sha256_file(out / "keys/theirs.pub")},
        ],
        "cases": cases,
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1), encoding="utf-8")
    return cases


# ------------------------------------------------------------------------------------------------ the JUnit run


class _Summary:
    """Prints the JUnit counts and the golden result in pytest's terminal summary."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if self.lines:
            terminalreporter.section("android_demo :core on the JVM (JUnit)")
            for line in self.lines:
                terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def junit_report(
    core_build: Path,
    phone_export: Path,
    signed_export: Path,
    signing_keys: Any,
    tmp_path_factory: pytest.TempPathFactory,
    pytestconfig: pytest.Config,
) -> dict[str, Any]:
    """Runs the whole JUnit suite once against the session's inputs; its JSON report plus the golden and
    signature summaries."""
    cases = write_cases(tmp_path_factory.mktemp("android_cases"), phone_export)
    write_signing_cases(cases / "signing", signed_export, signing_keys)
    report_dir = tmp_path_factory.mktemp("android_report")
    classpath = [core_build / "melanoma-core.jar", core_build / "melanoma-core-tests.jar"]
    classpath += [JAVA_LIBS / jar for jar in JARS]
    command = ["java", "-Xmx2g", "-Djava.awt.headless=true", f"-Dmelanoma.cases={cases}"]
    command += [f"-Dmelanoma.export={phone_export}", f"-Dmelanoma.report={report_dir}"]
    command += ["-cp", os.pathsep.join(map(str, classpath)), "com.melanomaexport.core.JsonReportRunnerKt"]
    command.append(str(report_dir / "junit.json"))
    result = subprocess.run(command, capture_output=True, text=True, check=False, timeout=600)
    assert (report_dir / "junit.json").is_file(), f"the JUnit runner wrote no report:\n{result.stderr[-6000:]}"
    report = json.loads((report_dir / "junit.json").read_text())
    golden_file = report_dir / "golden.json"
    report["golden"] = json.loads(golden_file.read_text()) if golden_file.is_file() else None
    signing = [report_dir / "signing_bundles.json", report_dir / "signing.json"]
    report["signing"] = [c for f in signing if f.is_file() for c in json.loads(f.read_text())]
    summary = _Summary()
    passed = sum(t["status"] == "passed" for t in report["tests"])
    summary.lines.append(
        f"JUnit: {report['run']} tests run, {passed} passed, {report['failed']} failed, {report['skipped']} skipped "
        f"({', '.join(JUNIT_CLASSES)})"
    )
    golden = report["golden"]
    if golden:
        per_case = ", ".join(f"{c['case']} {c['max_abs_diff']:g}" for c in golden["per_case"])
        exact = all(c["max_abs_diff"] == 0 for c in golden["per_case"])
        summary.lines.append(
            f"golden ({golden['model']}): {golden['cases']} cases, image max |d| = {golden['max_abs_diff']:g} "
            f"({'bit-identical' if exact else 'NOT bit-identical'}; bound {golden['bound']:.6f}); per case: {per_case}"
        )
    if report["signing"]:
        kinds = {k: sum(c["kind"] == k for c in report["signing"]) for k in ("bundle", "assets", "folder")}
        agree = sum(c["kotlin"] == c["python"] for c in report["signing"])
        refused = sum(c["python"] not in ("verified", "unsigned") for c in report["signing"])
        summary.lines.append(
            f"signatures: Kotlin's verdict is Python's on {agree} of {len(report['signing'])} cases "
            f"({kinds['bundle']} model.sig edits, {kinds['assets']} asset folders, {kinds['folder']} export folders; "
            f"{refused} refusals, each the same sentence)"
        )
    pytestconfig.pluginmanager.register(summary, "android-core-summary")
    return report


@pytest.mark.slow
@pytest.mark.parametrize("junit_class", JUNIT_CLASSES)
def test_junit_class(junit_class: str, junit_report: dict[str, Any], record_property: Any) -> None:
    """Every JUnit test of the class passed (none skipped: this session supplies every input)."""
    tests = [t for t in junit_report["tests"] if t["class"] == junit_class]
    assert tests, f"JUnit ran no test of {junit_class}: is it listed in TEST_CLASSES (JsonReportRunner.kt)?"
    passed = sum(t["status"] == "passed" for t in tests)
    record_property("junit_tests", len(tests))
    record_property("junit_passed", passed)
    problems = [f"{t['name']} {t['status']}: {t['message']}" for t in tests if t["status"] != "passed"]
    assert not problems, f"{junit_class}: {len(problems)} of {len(tests)} JUnit tests failed:\n" + "\n".join(problems)


def test_every_junit_class_is_reported() -> None:
    """A new Kotlin test class is run and reported: TEST_CLASSES and this file list exactly the test files."""
    files = {p.stem for p in (ANDROID / "core/src/test/kotlin").rglob("*Test.kt")}
    runner = (ANDROID / "core/src/test/kotlin/com/melanomaexport/core/JsonReportRunner.kt").read_text()
    listed = re.findall(r"(\w+Test)::class\.java", runner)
    assert set(JUNIT_CLASSES) == files == set(listed), (JUNIT_CLASSES, files, listed)


@pytest.mark.slow
def test_golden_cases_bit_identical(junit_report: dict[str, Any], phone_export: Path, record_property: Any) -> None:
    """Every golden case's image tensor is bit-identical to Python's (the bound is 1/255; with lossless PNG input
    and an exact port there is no legitimate cause for any difference), and its `meta`, encoded from golden.json's
    case (field -> raw value) by the spec's contract, within 1e-6 of Python's."""
    golden = junit_report["golden"]
    assert golden, "GoldenTest wrote no report (see test_junit_class[GoldenTest])"
    expected_cases = len(json.loads((phone_export / "golden.json").read_text())["cases"])
    assert golden["cases"] == expected_cases == len(golden["per_case"])
    record_property("golden_cases", golden["cases"])
    record_property("golden_max_abs_diff", golden["max_abs_diff"])
    assert golden["max_abs_diff"] <= IMAGE_BOUND
    assert all(c["max_abs_diff"] == 0 and c["meta_max_abs_diff"] <= 1e-6 for c in golden["per_case"]), golden[
        "per_case"
    ]


# ----------------------------------------------------------------------------------------- the preprocess CLI


def _preprocess(build: Path, *args: str | Path) -> subprocess.CompletedProcess[str]:
    command = [str(ANDROID / "bin" / "preprocess"), *map(str, args)]
    return subprocess.run(command, env=_env(build), capture_output=True, text=True, check=False, timeout=300)


@pytest.mark.slow
def test_preprocess_matches_python_on_unseen_images(
    core_build: Path, phone_export: Path, tmp_path: Path, record_property: Any
) -> None:
    """Random sizes, aspect ratios and modes, four specs (the .tflite's NHWC one, the .onnx sidecar's NCHW one, a
    224 px variant, and the foreign every-kind contract's, resized by the cv2 rule): `image` bit-identical to
    Python's preprocess, `meta` (from --meta FIELD=VALUE) within 1e-6 of the contract's encoder."""
    rng = np.random.default_rng(2024)
    tflite = fp32_tflite(phone_export)
    onnx_sidecar = next(phone_export.glob("*.onnx.spec.json"))
    big = json.loads(onnx_sidecar.read_text())
    big["image"]["size"] = big["contract"]["image"]["size"] = 224
    big_spec = tmp_path / "size224.spec.json"
    big_spec.write_text(json.dumps(big))
    foreign = tmp_path / "foreign.spec.json"
    foreign.write_text(foreign_spec().to_json())
    specs: list[tuple[Path, ModelSpec]] = [
        (tflite, ModelSpec.load(tflite.with_name(tflite.name + ".spec.json"))),
        (onnx_sidecar, ModelSpec.load(onnx_sidecar)),
        (big_spec, ModelSpec.load(big_spec)),
        (foreign, ModelSpec.load(foreign)),
    ]
    sizes = [(1, 1), (2, 999), (999, 2), (4, 4)] + [tuple(int(v) for v in rng.integers(1, 1500, 2)) for _ in range(8)]
    modes = ["RGB", "RGBA", "L", "P", "LA"]
    worst = 0.0
    for i, (w, h) in enumerate(sizes):
        mode = modes[i % len(modes)]
        pixels = _noise(rng, w, h, 4)
        image = Image.fromarray(pixels, "RGBA").convert(mode) if mode != "P" else Image.fromarray(pixels[..., :3])
        if mode == "P":
            image = image.quantize(64)
        png = tmp_path / f"unseen{i}.png"
        image.save(png)
        spec_path, spec = specs[i % len(specs)]
        case = _cli_case(spec, i)
        flags: list[str | Path] = ["--spec", spec_path, "--image", png, "--out", tmp_path / f"out{i}.json"]
        for field, value in case.items():
            flags += ["--meta", f"{field}={value}"]
        result = _preprocess(core_build, *flags)
        assert result.returncode == 0, f"{w}x{h} {mode}: {result.stderr}"
        out = json.loads((tmp_path / f"out{i}.json").read_text())
        expected = preprocess(load_rgb(png), spec.image)
        assert out["image"]["layout"] == spec.image.layout
        assert out["image"]["shape"] == [1, *expected.shape]
        got = np.asarray(out["image"]["data"], dtype=np.float64).astype(np.float32).reshape(expected.shape)
        diff = float(np.abs(got - expected).max())
        worst = max(worst, diff)
        assert diff <= IMAGE_BOUND, f"{w}x{h} {mode}: max |d| {diff}"
        assert np.array_equal(got, expected), f"{w}x{h} {mode} -> {spec.image.size}: not bit-identical (max {diff})"
        meta = np.asarray(out["meta"], dtype=np.float64)
        reference = spec.encoder().encode(case).astype(np.float64)
        assert meta.shape == reference.shape and np.abs(meta - reference).max() <= 1e-6, (case, meta, reference)
        assert out["meta_entries"] == spec.metadata["entries"]
    record_property("preprocess_cases", len(sizes))
    record_property("preprocess_max_abs_diff", worst)


def _cli_case(spec: ModelSpec, i: int) -> dict[str, str]:
    """Case i for the command line: text values for some of the spec's fields (the others left out = missing)."""
    choices = {
        "age_approx": ["63", "7.5", "0", " 41 "],
        "sex": ["female", "M", "unknown", ""],
        "anatom_site_general_challenge": ["torso", "anterior torso", "Palms_Soles", "head/neck", "n/a"],
        "n_lesions": ["3", "0", "499.5"],
        "uv_dose": ["2.5", "1e-3"],
        "n_images": ["0", "12"],
        "fitzpatrick": ["1", "PALE", "v"],
        "family_history": ["y", "Dont know", "no"],
    }
    case = {}
    for k, field in enumerate(spec.metadata["fields"]):
        values = choices[field]
        if (i + k) % 4:  # every fourth field left out
            case[field] = values[(i + k) % len(values)]
    return case


@pytest.fixture(scope="module")
def bad_inputs(phone_export: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Files for the refusals: a malformed spec, a non-spec, a spec of schema 1, a model without spec, a text file
    named .png."""
    folder = tmp_path_factory.mktemp("bad_inputs")
    (folder / "malformed.spec.json").write_text('{"schema": "melanoma-model-spec", ')
    (folder / "other.json").write_text(json.dumps({"schema": "something-else"}))
    (folder / "notes.png").write_text("not an image")
    (folder / "notes.tflite").write_text("not a model")
    write_tflite_variants(folder, fp32_tflite(phone_export))
    tflite = fp32_tflite(phone_export)
    old = json.loads(tflite.with_name(tflite.name + ".spec.json").read_text())
    (folder / "v1.spec.json").write_text(json.dumps({**old, "schema_version": 1}))
    Image.fromarray(np.zeros((5, 5, 3), np.uint8)).save(folder / "ok.png")
    return {"folder": folder, "export": phone_export, "tflite": fp32_tflite(phone_export)}


BAD_CASES = {  # name: (arguments, with {folder}/{tflite}/{onnx_sidecar} filled in; words the sentence must hold)
    "no options": ([], "no options given"),
    "missing spec file": (["--spec", "{folder}/absent.spec.json", "--image", "{folder}/ok.png"], "does not exist"),
    "malformed spec": (["--spec", "{folder}/malformed.spec.json", "--image", "{folder}/ok.png"], "not valid JSON"),
    "not a spec": (["--spec", "{folder}/other.json", "--image", "{folder}/ok.png"], "not a model spec"),
    "tflite without spec": (
        ["--spec", "{folder}/no_spec.tflite", "--image", "{folder}/ok.png"],
        "carries no model spec",
    ),
    "text named tflite": (["--spec", "{folder}/notes.tflite", "--image", "{folder}/ok.png"], "not a TFLite model"),
    "sidecar mismatch": (
        ["--spec", "{tflite}", "--sidecar", "{onnx_sidecar}", "--image", "{folder}/ok.png"],
        "differs from",
    ),
    "unknown site": (
        ["--spec", "{tflite}", "--image", "{folder}/ok.png", "--meta", "anatom_site_general_challenge=elbow"],
        'unknown site "elbow": use one of "head/neck"',
    ),
    "unknown sex": (["--spec", "{tflite}", "--image", "{folder}/ok.png", "--meta", "sex=x"], 'unknown sex "x"'),
    "negative age": (
        ["--spec", "{tflite}", "--image", "{folder}/ok.png", "--meta", "age_approx=-4"],
        "age -4 is outside 0-120 years: fix or blank it",
    ),
    "absurd age": (
        ["--spec", "{tflite}", "--image", "{folder}/ok.png", "--meta", "age_approx=430"],
        "age 430 is outside",
    ),
    "age not a number": (
        ["--spec", "{tflite}", "--image", "{folder}/ok.png", "--meta", "age_approx=fifty"],
        'age "fifty" is not a number: give a number or leave it empty',
    ),
    "unknown field": (
        ["--spec", "{tflite}", "--image", "{folder}/ok.png", "--meta", "age=50"],
        'the model reads no field "age" (its fields are age_approx, sex, anatom_site_general_challenge)',
    ),
    "meta without a field": (
        ["--spec", "{tflite}", "--image", "{folder}/ok.png", "--meta", "50"],
        "is not FIELD=VALUE",
    ),
    "field given twice": (
        ["--spec", "{tflite}", "--image", "{folder}/ok.png", "--meta", "sex=male", "--meta", "sex=female"],
        'gives the field "sex" twice',
    ),
    "old spec version": (["--spec", "{folder}/v1.spec.json", "--image", "{folder}/ok.png"], "this app reads version 2"),
    "missing image": (["--spec", "{tflite}", "--image", "{folder}/absent.png"], "does not exist"),
    "image not an image": (["--spec", "{tflite}", "--image", "{folder}/notes.png"], "not an image"),
    "image flag left out": (["--spec", "{tflite}"], "--image is required"),
    "unknown option": (["--spec", "{tflite}", "--image", "{folder}/ok.png", "--colour", "red"], "unknown option"),
    "option without value": (["--spec", "{tflite}", "--image"], "needs a value"),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(BAD_CASES))
def test_preprocess_refuses_bad_input_in_one_sentence(core_build: Path, bad_inputs: dict[str, Path], name: str) -> None:
    """Bad input: non-zero exit, nothing on stdout, one line on stderr naming the problem, no stack trace."""
    args, words = BAD_CASES[name]
    onnx_sidecar = next(bad_inputs["export"].glob("*.onnx.spec.json"))
    fill = {"folder": bad_inputs["folder"], "tflite": bad_inputs["tflite"], "onnx_sidecar": onnx_sidecar}
    result = _preprocess(core_build, *(a.format(**fill) for a in args))
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert result.stdout == ""
    assert len(lines) == 1 and lines[0].startswith("preprocess: error: "), result.stderr
    assert words in lines[0], lines[0]
    assert "Exception" not in lines[0] and "\tat " not in result.stderr


@pytest.mark.slow
def test_wrapper_builds_the_jar_when_missing(core_build: Path, tmp_path: Path) -> None:
    """`bin/preprocess` in a fresh build folder compiles :core first, then runs (here: --help)."""
    result = _preprocess(tmp_path / "fresh", "--help")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "usage: preprocess --spec" in result.stdout
    assert (tmp_path / "fresh" / "melanoma-core.jar").is_file()


# ------------------------------------------------------------------------- the Gradle project and the assets


def _load_copy_assets() -> Any:
    spec = importlib.util.spec_from_file_location("copy_assets", ANDROID / "copy-assets.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _kotlin_constants(path: Path) -> dict[str, str]:
    return dict(re.findall(r'const val (\w+) = "([^"]*)"', path.read_text()))


def _catalog_alias(reference: str) -> str:
    """`libs.androidx.core.ktx` -> `androidx-core-ktx` (Gradle maps -, _ and . in an alias to the same accessor)."""
    return reference.replace(".", "-")


def _normalise(alias: str) -> str:
    return re.sub(r"[-_.]", "-", alias)


def test_gradle_project_consistent_with_the_tree() -> None:
    """Modules in settings exist with build files; :core's source folders exist and import no android.*; every
    catalog reference in the build files names an entry of libs.versions.toml, and every version.ref a version;
    the LiteRT pin is 2.x; the app loads the asset names copy-assets.py writes; no fake Gradle wrapper jar."""
    settings = (ANDROID / "settings.gradle.kts").read_text()
    modules = re.findall(r'"(:[\w-]+)"', " ".join(re.findall(r"include\(([^)]*)\)", settings)))
    assert set(modules) == {":core", ":app"}, modules
    build_files = [ANDROID / "build.gradle.kts"]
    for module in modules:
        build = ANDROID / module[1:] / "build.gradle.kts"
        assert build.is_file(), f"{module} is included in settings.gradle.kts but {build} is missing"
        build_files.append(build)
    core_build = (ANDROID / "core/build.gradle.kts").read_text()
    source_dirs = ["src/main/kotlin", "src/cli/kotlin", "src/test/kotlin"]
    for folder in source_dirs + re.findall(r'srcDir\("([^"]+)"\)', core_build):
        assert list((ANDROID / "core" / folder).rglob("*.kt")), f":core has no Kotlin sources in {folder}"
    for source in (ANDROID / "core/src").rglob("*.kt"):
        assert not re.search(r"^import android", source.read_text(), re.M), f"{source} imports android.*"
    assert "android" not in re.search(r"plugins \{(.*?)\}", core_build, re.S).group(1)
    app_build = (ANDROID / "app/build.gradle.kts").read_text()
    assert 'project(":core")' in app_build
    assert re.search(r"minSdk = 24\b", app_build)
    assert 'namespace = "com.melanomaexport.demo"' in app_build

    catalog = tomllib.loads((ANDROID / "gradle/libs.versions.toml").read_text())
    versions, libraries, plugins = catalog["versions"], catalog["libraries"], catalog["plugins"]
    for kind, table in (("library", libraries), ("plugin", plugins)):
        for alias, entry in table.items():
            ref = entry.get("version", {}).get("ref") if isinstance(entry.get("version"), dict) else None
            ref = ref or entry.get("version.ref")
            if ref is not None:
                assert ref in versions, f"{kind} {alias} refers to version {ref!r}, absent from [versions]"
    assert str(versions["litert"]).startswith("2."), versions["litert"]
    assert libraries["litert"]["module"] == "com.google.ai.edge.litert:litert"
    library_aliases = {_normalise(a) for a in libraries}
    plugin_aliases = {_normalise(a) for a in plugins}
    for build in build_files:
        text = re.sub(r"//.*", "", build.read_text())  # comments may name the catalog file itself
        for ref in re.findall(r"\blibs\.plugins\.([\w.]+)", text):
            assert _catalog_alias(ref) in plugin_aliases, f"{build.name}: libs.plugins.{ref} is not in the catalog"
        for ref in re.findall(r"\blibs\.versions\.([\w.]+)", text):
            assert _catalog_alias(ref) in {_normalise(v) for v in versions}, f"{build.name}: libs.versions.{ref}"
        for ref in re.findall(r"\blibs\.(?!plugins\.|versions\.)([\w.]+)", text):
            assert _catalog_alias(ref) in library_aliases, f"{build.name}: libs.{ref} is not in the catalog"

    copy_assets = _load_copy_assets()
    app_constants = _kotlin_constants(ANDROID / "app/src/main/kotlin/com/melanomaexport/demo/ModelAssets.kt")
    names = ("MODEL_ASSET", "SPEC_ASSET", "MANIFEST_ASSET", "GOLDEN_ASSET", "GOLDEN_DIR_ASSET")
    for name in (*names, "SIGNATURE_ASSET", "TRUSTED_KEY_ASSET"):
        assert app_constants[name] == getattr(copy_assets, name), f"{name}: app and copy-assets.py disagree"
    demo = ANDROID / "app/src"
    loader = (demo / "main/kotlin/com/melanomaexport/demo/LiteRtClassifier.kt").read_text()
    assert "readAsset(context, MODEL_ASSET)" in loader and "readTextAsset(context, SPEC_ASSET)" in loader
    replay = (demo / "androidTest/kotlin/com/melanomaexport/demo/GoldenReplayTest.kt").read_text()
    assert "GOLDEN_ASSET)" in replay and "MANIFEST_ASSET)" in replay and "LiteRtClassifier.fromAssets" in replay
    assert "verifyModelAssets(context)" in replay
    # The app verifies the signature (when a key is pinned) before it creates the classifier.
    model = (demo / "main/kotlin/com/melanomaexport/demo/AssessViewModel.kt").read_text()
    verify, load = model.find("verifyModelAssets("), model.find("LiteRtClassifier.fromAssets(")
    assert 0 <= verify < load, "AssessViewModel must call verifyModelAssets before LiteRtClassifier.fromAssets"
    wrapper = ANDROID / "gradle/wrapper"
    assert (wrapper / "gradle-wrapper.properties").is_file()
    assert not (wrapper / "gradle-wrapper.jar").exists(), "no wrapper jar can be made here: do not commit a fake one"
    ignored = (ANDROID / ".gitignore").read_text().split()
    assert "/app/src/main/assets/" in ignored and "/build/" in ignored


def test_app_wires_the_accelerator_setting() -> None:
    """The app side of :core's AcceleratorTest, which no build here compiles: every :core Hardware maps onto LiteRT's
    Accelerator of the same name; the classifier asks LiteRT's Environment what it has and compiles through
    chooseAccelerator (the CPU fallback); the view model stores the setting and loads the model with it; the
    result card shows runLine; GoldenReplayTest replays on GPU and NPU, skipped by Assume when they did not run."""
    demo = ANDROID / "app/src"
    core = (ANDROID / "core/src/main/kotlin/com/melanomaexport/core/Accelerator.kt").read_text()
    hardware = re.findall(r"^\s+(\w+)[,;]$", re.search(r"enum class Hardware \{(.*?)\n\n", core, re.S).group(1), re.M)
    assert hardware == ["CPU", "GPU", "NPU"], hardware
    loader = (demo / "main/kotlin/com/melanomaexport/demo/LiteRtClassifier.kt").read_text()
    for name in hardware:
        assert f"Hardware.{name} -> Accelerator.{name}" in loader and f"Accelerator.{name} -> Hardware.{name}" in loader
    assert "env.getAvailableAccelerators()" in loader and "chooseAccelerator(requested, available)" in loader
    assert "CompiledModel.create(context.assets, MODEL_ASSET, options, env)" in loader
    model = (demo / "main/kotlin/com/melanomaexport/demo/AssessViewModel.kt").read_text()
    assert "getSharedPreferences(SETTINGS" in model and "Hardware.fromSetting(" in model
    assert "LiteRtClassifier.fromAssets(app, requested)" in model and "putString(ACCELERATOR_SETTING" in model
    screen = (demo / "main/kotlin/com/melanomaexport/demo/AssessScreen.kt").read_text()
    assert "runLine(ranOn, result.latencyMillis)" in screen and "choice?.fallback" in screen
    replay = (demo / "androidTest/kotlin/com/melanomaexport/demo/GoldenReplayTest.kt").read_text()
    assert "replayOn(Hardware.GPU)" in replay and "replayOn(Hardware.NPU)" in replay
    assert "assumeTrue(choice.fallback" in replay and "probabilityBound(ran," in replay


@pytest.mark.slow
def test_copy_assets_installs_what_the_app_loads(phone_export: Path, tmp_path: Path) -> None:
    """copy-assets.py copies the recommended .tflite, its sidecar, golden.json and PNGs under the app's names;
    refuses a changed artifact (sha256 against parity.json), an unknown precision and a missing folder."""
    copy_assets = _load_copy_assets()
    script = [sys.executable, str(ANDROID / "copy-assets.py")]
    dest = tmp_path / "assets"
    result = subprocess.run([*script, str(phone_export), "--dest", str(dest)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    parity = json.loads((phone_export / "parity.json").read_text())
    recommended = phone_export / parity["recommended"]["tflite"]["file"]
    assert (dest / copy_assets.MODEL_ASSET).read_bytes() == recommended.read_bytes()
    sidecar = recommended.with_name(recommended.name + ".spec.json")
    assert (dest / copy_assets.SPEC_ASSET).read_text() == sidecar.read_text()
    golden = json.loads((dest / copy_assets.GOLDEN_ASSET).read_text())
    for case in golden["cases"]:
        assert (dest / case["png"]).read_bytes() == (phone_export / case["png"]).read_bytes()
    manifest = json.loads((dest / copy_assets.MANIFEST_ASSET).read_text())
    assert manifest["artifact"] == recommended.name and manifest["sha256"] == sha256_file(recommended)
    assert not [p for p in dest.iterdir() if p.name.startswith(".assets-")], "the staging folder is left behind"

    # The sha256 parity.json records: the export's own passes; a file changed since then is refused, whether
    # the sha256 sits in the recommendation or only in the artifact's row (as older reports had it).
    export = tmp_path / "export"
    shutil.copytree(phone_export, export, ignore=shutil.ignore_patterns("*.onnx", "*.onnx.spec.json"))
    ok = subprocess.run([*script, str(export), "--dest", str(tmp_path / "a2")], capture_output=True, text=True)
    assert ok.returncode == 0 and "matches parity.json" in ok.stdout, (ok.stdout, ok.stderr)
    with (export / recommended.name).open("ab") as f:
        f.write(b"\0")
    refused = subprocess.run([*script, str(export), "--dest", str(tmp_path / "a3")], capture_output=True, text=True)
    assert refused.returncode == 2 and "sha256" in refused.stderr and len(refused.stderr.splitlines()) == 1
    assert not (tmp_path / "a3" / copy_assets.MODEL_ASSET).exists()
    recorded = parity["recommended"]["tflite"].pop("sha256")
    for row in parity["rows"]:
        row["sha256"] = recorded if row.get("file") == recommended.name else row.get("sha256")
    (export / "parity.json").write_text(json.dumps(parity))
    refused = subprocess.run([*script, str(export), "--dest", str(tmp_path / "a3")], capture_output=True, text=True)
    assert refused.returncode == 2 and "sha256" in refused.stderr, refused.stderr
    for argv, words in (
        ([str(tmp_path / "absent")], "is not an export folder"),
        ([str(phone_export), "--precision", "fp64"], "no .tflite of precision 'fp64'"),
    ):
        bad = subprocess.run([*script, *argv, "--dest", str(tmp_path / "a4")], capture_output=True, text=True)
        assert bad.returncode == 2 and words in bad.stderr and len(bad.stderr.splitlines()) == 1, bad.stderr


def test_raw_png_writer_round_trips(tmp_path: Path) -> None:
    """The raw PNG writer used for 16-bit and 4-bit inputs writes what PIL reads back (so those cases test the
    Kotlin decoder, not this writer)."""
    rng = np.random.default_rng(5)
    samples = rng.integers(0, 16, (3, 11, 1))
    (tmp_path / "g4.png").write_bytes(raw_png(samples, 4, 0))
    assert np.array_equal(np.asarray(Image.open(tmp_path / "g4.png")), (samples[..., 0] * 17).astype(np.uint8))
    rgb16 = rng.integers(0, 65536, (2, 5, 3))
    (tmp_path / "c16.png").write_bytes(raw_png(rgb16, 16, 2))
    assert np.array_equal(np.asarray(Image.open(tmp_path / "c16.png").convert("RGB")), (rgb16 >> 8).astype(np.uint8))
