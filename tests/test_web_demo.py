"""web_demo: contract.js against the Python reference in Node, and the page end to end in headless Chromium.

- Node (`node --test web_demo/test/`): every golden case of an export written in this session (image tensor
  bit-identical, meta equal, decision), PIL resizes of odd sizes and random images this file writes, metadata
  inputs encoded by core.metadata, artifacts whose spec entry was removed.
- Chromium (Debian's, driven by Playwright; nothing downloads a browser): every golden case through the real
  page (file input, form, Assess) with LiteRT.js and onnxruntime-web, fp32 and the recommended int8; the clear
  error for an artifact without a spec; no request leaving localhost; a screenshot; load and p50 latency.

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
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from core.images import pass_order, preprocess, resize_rgb, to_rgb
from core.io import sha256_file
from core.metadata import MetadataError
from core.spec import ImageContract, ModelSpec
from tests.conftest import ROOT

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


def _resize_case(folder: Path, name: str, pixels: np.ndarray, size: int, layout: str) -> dict[str, Any]:
    height, width = pixels.shape[:2]
    png = f"{name}.png"
    Image.fromarray(pixels, mode="RGBA" if pixels.shape[2] == 4 else "RGB").save(folder / png, compress_level=1)
    with Image.open(folder / png) as image:
        image.load()
        rgb = to_rgb(image)
    resized = np.asarray(resize_rgb(rgb, size), dtype=np.uint8)
    tensor = preprocess(rgb, ImageContract(size=size, layout=layout)).astype("<f4")
    (folder / f"{name}.rgb").write_bytes(resized.tobytes())
    (folder / f"{name}.f32").write_bytes(tensor.tobytes())
    return {
        "name": name,
        "png": png,
        "width": width,
        "height": height,
        "alpha": pixels.shape[2] == 4,
        "size": size,
        "layout": layout,
        "order": pass_order(width, height, size, size),
        "rgb": f"{name}.rgb",
        "tensor": f"{name}.f32",
    }


def _meta_inputs(spec: ModelSpec) -> list[dict[str, Any]]:
    """Patients covering every category, alias, missing token and error path of the spec's contract."""
    m = spec.metadata
    inputs: list[dict[str, Any]] = []
    for site in m["site"]["categories"]:
        inputs.append({"age": 55, "sex": "female", "site": site})
        inputs.append({"age": "  40 ", "sex": "MALE", "site": f" {site.upper().replace(' ', '_')} "})
    for alias in m["site"]["aliases"]:
        inputs.append({"age": 70.5, "sex": "m", "site": alias.title().replace(" ", "  ")})
    for sex in (*m["sex"]["categories"], *m["sex"]["aliases"]):
        inputs.append({"age": 0, "sex": sex.upper(), "site": None})
    for token in m["missing_tokens"]:
        inputs.append({"age": token, "sex": f" {token.upper()} ", "site": token})
    inputs += [
        {"age": 120, "sex": None, "site": None},
        {"age": "1e1", "sex": None, "site": None},
        {"age": "3_5", "sex": None, "site": None},
        {"age": "nan", "sex": None, "site": None},
        {"age": 33.333333, "sex": "f", "site": "palms soles"},
        {},
        {"age": 120.5},
        {"age": -1},
        {"age": 1e6},
        {"age": "inf"},
        {"age": "abc"},
        {"age": "5 5"},
        {"sex": "x"},
        {"sex": "other"},
        {"site": "elbow"},
        {"site": "torso/back"},
    ]
    return inputs


@pytest.fixture(scope="module")
def node_cases(phone_export: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """cases.json + PNGs + PIL outputs + stripped artifacts for the Node tests (WEB_DEMO_CASES)."""
    folder = tmp_path_factory.mktemp("web_demo_cases")
    rng = np.random.default_rng(SEED)
    spec_data = json.loads((phone_export / "spec.json").read_text(encoding="utf-8"))
    spec = ModelSpec.from_dict(spec_data)
    resize = []
    for i, (name, width, height, size, alpha) in enumerate(FIXED_RESIZES):
        layout = "NCHW" if i % 2 == 0 else "NHWC"
        resize.append(_resize_case(folder, name, _pixels(rng, width, height, alpha), size, layout))
    for i in range(16):  # sizes and aspect ratios nobody chose: log-uniform 1..2000 px per side
        width, height = (round(math.exp(rng.uniform(0, math.log(2000)))) for _ in range(2))
        size = int(rng.choice(RANDOM_SIZES))
        pixels = _pixels(rng, width, height, bool(rng.random() < 0.25))
        resize.append(_resize_case(folder, f"random{i}-{width}x{height}", pixels, size, ("NCHW", "NHWC")[i % 2]))
    encoder = spec.encoder()
    meta = []
    for patient in _meta_inputs(spec):
        try:
            vec = encoder.encode(patient.get("age"), patient.get("sex"), patient.get("site"))
            meta.append({"input": patient, "expected": [float(v) for v in vec], "error": None})
        except MetadataError as exc:
            meta.append({"input": patient, "expected": None, "error": str(exc)})
    stripped = [
        {"file": _strip_tflite(phone_export, folder).name},
        {"file": _strip_onnx(phone_export, folder).name},
    ]
    cases = {"seed": SEED, "spec": spec_data, "resize": resize, "meta": meta, "stripped": stripped}
    (folder / "cases.json").write_text(json.dumps(cases, indent=1), encoding="utf-8")
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
    """node --test web_demo/test/ against this session's export and the odd-size PIL cases."""
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
    if resized:
        summary.lines.append(
            f"contract.js vs PIL on {len(resized)} odd/random sizes (seed {SEED}): max |d| "
            f"{max(r['max_abs_diff'] for r in resized):g}, differing bytes {sum(r['differing_bytes'] for r in resized)}"
        )
    assert result.returncode == 0 and not failures, f"node --test failed ({counts}):\n" + "\n".join(
        failures or [result.stdout[-3000:], result.stderr[-3000:]]
    )
    assert counts.get("fail") == 0 and counts.get("skipped") == 0, counts
    golden_count = len(json.loads((phone_export / "golden.json").read_text())["cases"])
    assert len(golden) == golden_count, f"{len(golden)} golden results for {golden_count} cases"
    assert len(resized) == len(FIXED_RESIZES) + 16


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


def _fill(page: Any, encoder: Any, metadata: dict[str, Any]) -> None:
    """Fill the form from a golden case's raw metadata (categories as the spec names them)."""
    age = metadata.get("age")
    page.fill("#age", "" if age is None else str(age))
    page.select_option("#sex", encoder.canonical_sex(metadata.get("sex")) or "")
    page.select_option("#site", encoder.canonical_site(metadata.get("site")) or "")


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
    encoder = spec.encoder()
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
            _fill(page, encoder, case["metadata"])
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
def test_bad_metadata_and_bad_image_show_errors_on_the_page(
    browser_page: Any, phone_export: Path, tmp_path: Path
) -> None:
    new_page, _, _, _ = browser_page
    golden = json.loads((phone_export / "golden.json").read_text())
    page = new_page([])
    try:
        _choose_image(page, phone_export / golden["cases"][0]["png"])
        page.fill("#age", "250")
        page.click("#assess")
        page.evaluate("window.melanomaDemo.waitIdle()")
        assert "outside" in page.text_content("#error") and not page.is_visible("#result")
        page.fill("#age", "fifty")
        page.click("#assess")
        page.evaluate("window.melanomaDemo.waitIdle()")
        assert "not a number" in page.text_content("#error")
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
        _fill(page, spec.encoder(), case["metadata"])
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


@pytest.mark.slow
def test_bench_rows_for_every_runtime_and_precision(
    browser_page: Any, phone_export: Path, tmp_path: Path, summary: _Summary
) -> None:
    _, url, manifest, browser = browser_page
    rows = bench.measure(browser, url, manifest, runs=20)
    out = bench.write_rows(tmp_path / bench.RESULT_FILE, rows, manifest)
    data = json.loads(out.read_text())
    assert {(r["format"], r["precision"]) for r in data["rows"]} == {
        ("litert-web" if a["runtime"] == "litert" else "onnxruntime-web", a["precision"]) for a in manifest["artifacts"]
    }
    for r in data["rows"]:
        assert r["runs"] == 20 and r["threads"] == 1 and r["browser"].startswith("Chromium")
        assert 0 < r["p50_ms"] < 10_000 and 0 < r["load_ms"] < 60_000
        assert r["min_ms"] <= r["p50_ms"] <= r["max_ms"]
        summary.lines.append(
            f"bench {r['format']} {r['precision']} ({r['image_size']} px): load {r['load_ms']:.0f} ms, "
            f"p50 {r['p50_ms']:.2f} ms over {r['runs']} runs, 1 thread, {r['browser']}"
        )
