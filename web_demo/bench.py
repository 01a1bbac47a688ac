"""Load time and median latency of every artifact the page offers, in headless Chromium on this machine.

    python web_demo/bench.py --model efficientnet_lite0         # rows -> dist/<model>/benchmark_web.json
    python web_demo/bench.py --artifacts path/to/export --out rows.json --runs 20

For each artifact the page lists (LiteRT.js .tflite, onnxruntime-web .onnx; fp32 and the recommended int8) it
opens a fresh page (so the load time includes the runtime's wasm start-up), waits for the model, then times
`runs` inferences after 3 warm-up runs through the page's own benchmark (window.melanomaDemo.bench): the same
code path as the Assess button, single-threaded WebAssembly. It writes JSON rows the main benchmark can
import (`format` is `litert-web` or `onnxruntime-web`):

    {"rows": [{"format": "litert-web", "precision": "fp32", "load_ms": ..., "p50_ms": ..., "runs": 20,
               "threads": 1, "browser": "Chromium 156...", ...}], ...}

Needs Debian's chromium (`sudo apt-get install -y chromium`), the Python package playwright (in the dev
extras) and the page's runtimes (`cd web_demo && npm ci`). Playwright never downloads a browser here.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import importlib.util
import os
import platform
import shutil
import sys
import tempfile
import threading
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
PHONE_VIEWPORT = {"width": 390, "height": 844}  # a typical phone in CSS pixels
RESULT_FILE = "benchmark_web.json"


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


def launch_chromium(playwright: Any) -> Any:
    """Start the system's headless Chromium with a fresh profile (Playwright makes one per launch)."""
    executable = chromium_path()
    if executable is None:
        raise RuntimeError(f"Chromium is not installed: {INSTALL_CHROMIUM}")
    return playwright.chromium.launch(executable_path=executable, args=list(CHROMIUM_ARGS), headless=True)


@contextlib.contextmanager
def serving(out: Path) -> Iterator[str]:
    """Serve web_demo/ with /dist/ from the build in `out` on a free localhost port; yields the page URL."""
    server = load_build_module().make_server(out, port=0)
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


def measure(browser: Any, url: str, manifest: dict[str, Any], runs: int = 20) -> list[dict[str, Any]]:
    """One row per artifact in the manifest: load time in a fresh page, then the median of `runs` runs."""
    rows = []
    version = browser.version
    for artifact in manifest["artifacts"]:
        name = artifact["file"].split("/")[-1]
        page = open_page(browser, f"{url}?artifact={name}")
        try:
            error = page.text_content("#error") if page.is_visible("#error") else ""
            loaded = page.evaluate("window.melanomaDemo.state.load && window.melanomaDemo.state.load.file")
            if error or loaded != name:
                raise RuntimeError(f"the page did not load {name}: {error or 'no error shown'}")
            row = page.evaluate("runs => window.melanomaDemo.bench({runs})", runs)
        finally:
            page.close()
        row["browser"] = f"Chromium {version} (headless)"
        rows.append(row)
    return rows


def write_rows(path: Path, rows: list[dict[str, Any]], manifest: dict[str, Any]) -> Path:
    """Write the rows (atomically) with where and how they were measured."""
    data = {
        "kind": "web-benchmark",
        "model": manifest.get("model"),
        "measured_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count()},
        "note": "headless desktop Chromium with a phone-sized viewport; single-threaded WebAssembly; not a phone",
        "rows": rows,
    }
    check_folder_path(path.parent, "the --out file's folder")
    return write_json(path, data)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    p = argparse.ArgumentParser(prog="python web_demo/bench.py", description=__doc__.splitlines()[0])
    p.add_argument("--model", help="model name: reads dist/<model>/ (where python -m export.all wrote it)")
    p.add_argument("--artifacts", help="the export folder to read instead of dist/<model>/")
    p.add_argument("--out", help=f"rows file (default <export folder>/{RESULT_FILE})")
    p.add_argument("--runs", type=int, default=20, help="timed runs per artifact (after 3 warm-up runs)")
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
            browser = launch_chromium(pw)
            try:
                rows = measure(browser, url, manifest, runs=args.runs)
            finally:
                browser.close()
    out = write_rows(Path(args.out) if args.out else folder / RESULT_FILE, rows, manifest)
    for r in rows:
        print(f"{r['format']:16s} {r['precision']:13s} load {r['load_ms']:8.1f} ms   p50 {r['p50_ms']:7.2f} ms")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
