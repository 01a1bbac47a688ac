"""Load time and median latency of every artifact the page offers, in headless Chromium on this machine, under
each compute setting the page has, with the golden cases' parity checked for every row.

    python web_demo/bench.py --model efficientnet_lite0         # rows -> dist/<model>/benchmark_web.json
    python web_demo/bench.py --artifacts path/to/export --out rows.json --runs 20

For each artifact the page lists (LiteRT.js .tflite, onnxruntime-web .onnx; fp32 and the recommended int8) and
each setting (SETTINGS: WebAssembly with 1 thread, with the page's default N = min(cores, 4) threads, and
WebGPU) it opens a fresh page on the cross-origin-isolated localhost server (so the load time includes the
runtime's wasm start-up), waits for the model, runs every golden case through it (window.melanomaDemo.golden:
the page's own decode and encoding) and compares the probabilities with golden.json under the same bounds as
tests/test_web_demo.py (fp32: golden.json's bound against PyTorch, 1e-4; int8: 1e-5 against the artifact's own
Python runtime, and no more than its parity.json |dp|), then times `runs` inferences after 3 warm-up runs
through the page's own benchmark (window.melanomaDemo.bench), the same code path as the Assess button.

Each row says what it ran on (`threads`, `backend`, the page's `compute` sentence) and its `status`: "pass",
"failed: ..." (outputs beyond the bound: the numbers are kept but the row is not imported, and WebGPU stays
off by default) or "not offered by this browser" (WebGPU in headless Chromium without a GPU: no timing). It
writes JSON the main benchmark can import (`rows`: the measured rows that passed; `excluded`: the others;
`format` is `litert-web` or `onnxruntime-web`) and prints a table:

    {"rows": [{"format": "litert-web", "precision": "fp32", "setting": "1 thread", "threads": 1,
               "backend": "wasm", "load_ms": ..., "p50_ms": ..., "runs": 20, "status": "pass",
               "parity": {"max_abs_diff": ..., "bound": 0.0001, ...}, "browser": "Chromium 156...", ...}],
     "excluded": [{"format": "litert-web", "setting": "WebGPU", "status": "not offered by this browser", ...}]}

Needs Debian's chromium (`sudo apt-get install -y chromium`), the Python package playwright (in the dev
extras) and the page's runtimes (`cd web_demo && npm ci`). Playwright never downloads a browser here.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import importlib.util
import json
import os
import platform
import shutil
import sys
import tempfile
import threading
import urllib.parse
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository, for core
from core.errors import run_cli
from core.io import check_folder_path, write_json

HERE = Path(__file__).resolve().parent
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
INSTALL_CHROMIUM = "sudo apt-get install -y chromium nodejs npm"
CHROMIUM_ARGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
)
GPU_ARGS = (*(a for a in CHROMIUM_ARGS if a != "--disable-gpu"), "--enable-unsafe-webgpu")  # --gpu: untried here
PHONE_VIEWPORT = {"width": 390, "height": 844}  # a typical phone in CSS pixels
RESULT_FILE = "benchmark_web.json"
# (name, the page's query string): the compute settings each artifact is measured under (web_demo/src/runtimes.js
# reads them). The default is N = min(cores, 4) threads on a cross-origin-isolated page.
SETTINGS = (("1 thread", "threads=1"), ("N threads", ""), ("WebGPU", "backend=webgpu"))
# The parity bounds of tests/test_web_demo.py: an fp32 artifact against PyTorch (golden.json's
# tolerance.probability_max_abs_fp32, this when it has none); an int8 one against its own Python runtime
# (golden.json's `artifacts` entry), and never more than its parity.json max |dp|.
FP32_BOUND = 1e-4
INT8_BOUND = 1e-5
NOT_OFFERED = "not offered by this browser"
WEBGPU_NOT_OFFERED = "WebGPU: not offered by this browser."  # runtimes.js's sentence


def load_build_module() -> Any:
    """web_demo/build.py as a module (web_demo/ is not a package; its name must not shadow pypa `build`)."""
    spec = importlib.util.spec_from_file_location("web_demo_build", HERE / "build.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("web_demo_build", module)
    spec.loader.exec_module(module)
    return module


def chromium_path() -> str | None:
    """The Chromium executable to drive: $CHROMIUM, /usr/bin/chromium, or `chromium` on PATH."""
    for candidate in (CHROMIUM, shutil.which("chromium"), shutil.which("chromium-browser")):
        if candidate and Path(candidate).is_file():
            return candidate
    return None


def launch_chromium(playwright: Any, gpu: bool = False, extra_args: Sequence[str] = ()) -> Any:
    """Start the system's headless Chromium with a fresh profile (Playwright makes one per launch); with `gpu`,
    without --disable-gpu and with --enable-unsafe-webgpu, so that WebGPU may be offered where there is a GPU."""
    executable = chromium_path()
    if executable is None:
        raise RuntimeError(f"Chromium is not installed: {INSTALL_CHROMIUM}")
    args = [*(GPU_ARGS if gpu else CHROMIUM_ARGS), *extra_args]
    return playwright.chromium.launch(executable_path=executable, args=args, headless=True)


@contextlib.contextmanager
def serving(out: Path, isolated: bool = True) -> Iterator[str]:
    """Serve web_demo/ with /dist/ from the build in `out` on a free localhost port; yields the page URL.
    Without `isolated`, without the COOP/COEP headers (the page then runs 1 thread)."""
    server = load_build_module().make_server(out, port=0, isolated=isolated)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def open_page(browser: Any, url: str, requests: list[str] | None = None) -> Any:
    """A new phone-sized page at `url`, recording every request URL into `requests`, ready for use."""
    page = browser.new_page(viewport=PHONE_VIEWPORT)
    if requests is not None:
        page.on("request", lambda r: requests.append(r.url))
    page.goto(url)
    page.wait_for_function("window.melanomaDemo !== undefined")
    page.evaluate("window.melanomaDemo.ready")
    page.evaluate("window.melanomaDemo.waitIdle()")
    return page


def read_golden(url: str, manifest: dict[str, Any]) -> dict[str, Any] | None:
    """The build's golden.json, from the server at `url` (None when the build has none)."""
    if not manifest.get("golden"):
        return None
    with urllib.request.urlopen(urllib.parse.urljoin(url, "dist/" + manifest["golden"]), timeout=30) as response:
        return json.loads(response.read())


def parity(outputs: list[dict[str, Any]], golden: dict[str, Any], artifact: dict[str, Any]) -> dict[str, Any]:
    """The page's golden-case probabilities against golden.json: fp32 against PyTorch's (`expected`), any other
    precision against the artifact's own Python runtime (`artifacts[name]`); `ok` when within the bound."""
    name = artifact["file"].split("/")[-1]
    fp32 = artifact["precision"] == "fp32"
    if fp32:
        bound = float((golden.get("tolerance") or {}).get("probability_max_abs_fp32") or FP32_BOUND)
    else:
        recorded = (artifact.get("parity") or {}).get("max_abs_diff")
        bound = min(INT8_BOUND, recorded) if recorded else INT8_BOUND
    by_image = {c["image_name"]: c for c in golden["cases"]}
    diffs = []
    for out in outputs:
        case = by_image[out["name"]]
        want = case["expected"]["probability"] if fp32 else case["artifacts"][name]["probability"]
        diffs.append(abs(float(out["probability"]) - float(want)))
    worst = max(diffs) if diffs else None
    return {
        "cases": len(diffs),
        "max_abs_diff": worst,
        "bound": bound,
        "against": "PyTorch" if fp32 else "its own Python runtime",
        "ok": bool(diffs) and len(diffs) == len(golden["cases"]) and worst <= bound,
    }


def measure(
    browser: Any,
    url: str,
    manifest: dict[str, Any],
    runs: int = 20,
    settings: Sequence[tuple[str, str]] = SETTINGS,
) -> list[dict[str, Any]]:
    """One row per artifact in the manifest and compute setting: load time in a fresh page, the golden cases'
    parity, then the median of `runs` runs; a setting the browser does not offer (WebGPU) gets a row with its
    status and no timing. Every row has `status`: "pass", "failed: ..." or "not offered by this browser"."""
    rows = []
    version = browser.version
    golden = read_golden(url, manifest)
    for artifact in manifest["artifacts"]:
        name = artifact["file"].split("/")[-1]
        for setting, query in settings:
            page = open_page(browser, f"{url}?artifact={name}" + (f"&{query}" if query else ""))
            try:
                error = page.text_content("#error") if page.is_visible("#error") else ""
                loaded = page.evaluate("window.melanomaDemo.state.load && window.melanomaDemo.state.load.file")
                if error or loaded != name:
                    raise RuntimeError(f"the page did not load {name} ({setting}): {error or 'no error shown'}")
                compute = page.evaluate("window.melanomaDemo.state.compute")
                asked = urllib.parse.parse_qs(query).get("backend", ["wasm"])[0]
                if asked == "webgpu" and compute["backend"] != "webgpu":
                    why = compute.get("webgpu") or WEBGPU_NOT_OFFERED
                    rows.append(
                        {
                            "format": "litert-web" if artifact["runtime"] == "litert" else "onnxruntime-web",
                            "precision": artifact["precision"],
                            "model": manifest.get("model"),
                            "artifact": name,
                            "setting": setting,
                            "backend": "webgpu",
                            "threads": None,
                            "compute": compute["sentence"],
                            "status": NOT_OFFERED if why == WEBGPU_NOT_OFFERED else why,
                            "p50_ms": None,
                            "browser": f"Chromium {version} (headless)",
                        }
                    )
                    continue
                checked = parity(page.evaluate("window.melanomaDemo.golden()"), golden, artifact) if golden else None
                row = page.evaluate("runs => window.melanomaDemo.bench({runs})", runs)
            finally:
                page.close()
            row["setting"] = setting
            row["browser"] = f"Chromium {version} (headless)"
            row["parity"] = checked
            if checked is None:
                row["status"] = "pass (unchecked: the build has no golden.json)"
            elif checked["ok"]:
                row["status"] = "pass"
            else:
                row["status"] = (
                    f"failed: max |dp| {checked['max_abs_diff']:.2e} against {checked['against']} over "
                    f"{checked['cases']} golden cases, beyond {checked['bound']:g}"
                )
            rows.append(row)
    return rows


def imported(row: dict[str, Any]) -> bool:
    """Whether a row goes to `rows` (what `python -m benchmark --import-web` reads): measured and within bound."""
    return row.get("p50_ms") is not None and str(row.get("status", "")).startswith("pass")


def write_rows(path: Path, rows: list[dict[str, Any]], manifest: dict[str, Any]) -> Path:
    """Write the rows (atomically) with where and how they were measured: `rows` the imported ones, `excluded`
    the others (a setting the browser does not offer, or outputs beyond the parity bound)."""
    data = {
        "kind": "web-benchmark",
        "model": manifest.get("model"),
        "measured_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count()},
        "note": "headless desktop Chromium with a phone-sized viewport on a cross-origin-isolated localhost page: "
        "WebAssembly with 1 thread and with N = min(cores, 4) threads, and WebGPU when the browser offers it; "
        "not a phone. `rows`: measured and within the golden cases' parity bound; `excluded`: the others",
        "rows": [r for r in rows if imported(r)],
        "excluded": [r for r in rows if not imported(r)],
    }
    check_folder_path(path.parent, "the --out file's folder")
    return write_json(path, data)


def table(rows: list[dict[str, Any]]) -> list[str]:
    """The rows as a small text table: runtime, precision, what it ran on, load, p50, parity, status."""

    def ran_on(r: dict[str, Any]) -> str:
        if r.get("p50_ms") is None:
            return r["setting"]
        if r.get("backend") == "webgpu":
            return "WebGPU"
        return f"wasm, {r['threads']} thread{'s' if r['threads'] != 1 else ''}"

    def dp(r: dict[str, Any]) -> str:
        p = r.get("parity")
        return f"{p['max_abs_diff']:.1e} / {p['bound']:g}" if p and p["max_abs_diff"] is not None else "-"

    head = f"{'runtime':16s} {'precision':13s} {'compute':16s} {'load ms':>8s} {'p50 ms':>8s}"
    lines = [f"{head}  {'max |dp| / bound':18s} status"]
    for r in rows:
        load = f"{r['load_ms']:8.1f}" if r.get("load_ms") is not None else f"{'-':>8s}"
        p50 = f"{r['p50_ms']:8.2f}" if r.get("p50_ms") is not None else f"{'-':>8s}"
        status = r["status"] if len(r["status"]) < 60 else r["status"][:57] + "..."
        lines.append(f"{r['format']:16s} {r['precision']:13s} {ran_on(r):16s} {load} {p50}  {dp(r):18s} {status}")
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    p = argparse.ArgumentParser(prog="python web_demo/bench.py", description=__doc__.splitlines()[0])
    p.add_argument("--model", help="model name: reads dist/<model>/ (where python -m export.all wrote it)")
    p.add_argument("--artifacts", help="the export folder to read instead of dist/<model>/")
    p.add_argument("--out", help=f"rows file (default <export folder>/{RESULT_FILE})")
    p.add_argument("--runs", type=int, default=20, help="timed runs per artifact and setting (after 3 warm-up runs)")
    p.add_argument(
        "--gpu",
        action="store_true",
        help="launch Chromium without --disable-gpu and with --enable-unsafe-webgpu, so WebGPU may be offered",
    )
    args = p.parse_args(argv)
    if not (args.model or args.artifacts):
        p.error("give --model NAME or --artifacts DIR")
    if args.runs < 1:
        p.error("--runs must be at least 1")
    folder = Path(args.artifacts) if args.artifacts else Path("dist") / args.model
    build = load_build_module()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        print("error: the Python package playwright is missing: pip install -e '.[dev]'", file=sys.stderr)
        return 2
    if chromium_path() is None:
        print(f"error: Chromium is not installed: {INSTALL_CHROMIUM}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="web-bench-") as tmp:
        manifest = build.build(folder, Path(tmp) / "dist")  # a UserError is run_cli's one sentence
        with serving(Path(tmp) / "dist") as url, sync_playwright() as pw:
            browser = launch_chromium(pw, gpu=args.gpu)
            try:
                rows = measure(browser, url, manifest, runs=args.runs)
            finally:
                browser.close()
    out = write_rows(Path(args.out) if args.out else folder / RESULT_FILE, rows, manifest)
    for line in table(rows):
        print(line)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
