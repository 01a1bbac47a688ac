"""Build and serve the browser demo: copy an export's phone artifacts and the runtimes' wasm files into
web_demo/dist/, then serve web_demo/ on this machine (or the local network, for a phone).

    python web_demo/build.py --model efficientnet_lite0 --serve          # dist/efficientnet_lite0/ -> localhost:8000
    python web_demo/build.py --model efficientnet_lite0 --serve 8080 --lan   # a phone on the same network
    python web_demo/build.py --artifacts path/to/export --out /tmp/webdist   # build only, anywhere
    python web_demo/build.py --out /tmp/webdist --serve 0                     # serve a build (0: any free port)
    python web_demo/build.py --model efficientnet_lite0 --trust KEY.pub --serve   # a signed export, checked
    python web_demo/build.py --out /tmp/webdist --serve 0 --no-isolation     # no COOP/COEP: 1 thread, as on a phone

What it copies (from the folder `python -m export.all` wrote, read through its parity.json):
- per format (.tflite for LiteRT.js, .onnx for onnxruntime-web): the fp32 artifact and the recommended
  smaller one (int8) when one passed its parity gate; an artifact whose sha256 differs from the one parity.json
  recorded is refused;
- golden.json and golden/*.png (the page offers them as examples);
- the wasm runtimes from web_demo/node_modules (`npm ci` installs them): nothing is fetched from a CDN. Their
  multi-threaded and WebGPU builds come too; the page picks one (WebAssembly threads when it is cross-origin
  isolated, which this server's COOP/COEP headers make it on localhost; WebGPU only with ?backend=webgpu).
It writes dist/manifest.json, which the page reads to list what it can run, with each copied file's
`signed_name` (its name in the export folder, the name a signed statement gives it).

With `--trust KEY.pub` (a signed export: `python -m export.sign`, docs/signing.md) it also copies the export's
model.sig and the key, as signing_key.pub; the page then verifies the signature with WebCrypto and the bytes
of every file it runs or offers against the signed statement before it loads a model, and runs nothing when
a check fails. Here the build refuses an unsigned export and a copied file whose sha256 is not the one the
statement lists (the same sentences; it cannot check the ECDSA signature itself: that is the page's job).

Standard library only (core.io, which it shares, is too), so that it runs before anything else is installed.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import datetime as _dt
import functools
import json
import os
import posixpath
import re
import shutil
import socket
import sys
import urllib.parse
from collections.abc import Sequence
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository, for core.io
from core.errors import UserError, run_cli
from core.io import claim_output_folder, exclusive, staged_folder
from core.parity_file import ParityReport
from core.signed_files import differences, pem_key_hint, read_unverified

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "dist"
NODE_MODULES = HERE / "node_modules"
INSTALL_RUNTIMES = "cd web_demo && npm ci"
FORMATS = {"tflite": "litert", "onnx": "onnxruntime-web"}  # artifact format -> the page's runtime
# (source under node_modules, destination under dist/runtime/): what the page loads, nothing more.
RUNTIME_FILES = (
    ("@litertjs/core/dist/index.js", "litert/core.js"),
    ("@litertjs/wasm-utils/dist/index.js", "litert/wasm-utils.js"),
    ("@litertjs/core/wasm/litert_wasm_internal.js", "litert/wasm/litert_wasm_internal.js"),
    ("@litertjs/core/wasm/litert_wasm_internal.wasm", "litert/wasm/litert_wasm_internal.wasm"),
    ("@litertjs/core/wasm/litert_wasm_compat_internal.js", "litert/wasm/litert_wasm_compat_internal.js"),
    ("@litertjs/core/wasm/litert_wasm_compat_internal.wasm", "litert/wasm/litert_wasm_compat_internal.wasm"),
    # LiteRT.js's multi-threaded build: loaded (with its workers, from the same .js) when the page is isolated
    ("@litertjs/core/wasm/litert_wasm_threaded_internal.js", "litert/wasm/litert_wasm_threaded_internal.js"),
    ("@litertjs/core/wasm/litert_wasm_threaded_internal.wasm", "litert/wasm/litert_wasm_threaded_internal.wasm"),
    ("onnxruntime-web/dist/ort.wasm.min.mjs", "ort/ort.wasm.min.mjs"),
    ("onnxruntime-web/dist/ort-wasm-simd-threaded.mjs", "ort/ort-wasm-simd-threaded.mjs"),
    ("onnxruntime-web/dist/ort-wasm-simd-threaded.wasm", "ort/ort-wasm-simd-threaded.wasm"),
    # onnxruntime-web's WebGPU build: fetched only with ?backend=webgpu in a browser that offers WebGPU
    ("onnxruntime-web/dist/ort.webgpu.min.mjs", "ort/ort.webgpu.min.mjs"),
    ("onnxruntime-web/dist/ort-wasm-simd-threaded.asyncify.mjs", "ort/ort-wasm-simd-threaded.asyncify.mjs"),
    ("onnxruntime-web/dist/ort-wasm-simd-threaded.asyncify.wasm", "ort/ort-wasm-simd-threaded.asyncify.wasm"),
)
RUNTIME_PACKAGES = {"litert": "@litertjs/core", "onnxruntime-web": "onnxruntime-web"}
MIME_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".wasm": "application/wasm",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".webp": "image/webp",
    ".svg": "image/svg+xml",
    ".md": "text/markdown; charset=utf-8",
    ".tflite": "application/octet-stream",
    ".onnx": "application/octet-stream",
}
# Served folders of web_demo/ (anything else, node_modules included, is not served: the page must run from
# its own files and dist/).
SERVED = ("index.html", "src", "dist", "screenshot.png", "README.md")
SIGNATURE_FILE = "model.sig"  # in an export folder and in the build's models/
TRUSTED_KEY_FILE = "signing_key.pub"  # the key --trust names, in the build
# what a build folder holds (anything else is refused)
BUILD_ENTRIES = ("models", "runtime", "manifest.json", TRUSTED_KEY_FILE)
# The DER of the OIDs id-ecPublicKey and prime256v1: an EC P-256 SubjectPublicKeyInfo holds both.
EC_PUBLIC_KEY_OID = bytes.fromhex("06072a8648ce3d0201")
P256_OID = bytes.fromhex("06082a8648ce3d030107")
PEM_PUBLIC_KEY = re.compile(r"-----BEGIN PUBLIC KEY-----([A-Za-z0-9+/=\s]*)-----END PUBLIC KEY-----")
GOLDEN_PNG = re.compile(r"^golden/[^/]+\.png$")  # the signed golden images a phone checks for removal


def choose_artifacts(report: ParityReport) -> tuple[list[dict[str, Any]], list[str]]:
    """The artifacts the page offers: per format the fp32 one and the recommended smaller one.

    Returns (entries, notes): each entry has format, runtime, precision, source path, recommended flag and
    the parity numbers; notes say in words what is not offered and why.
    """
    entries: list[dict[str, Any]] = []
    notes: list[str] = []
    for fmt, runtime in FORMATS.items():
        fmt_rows = report.artifact_rows(fmt)
        if not fmt_rows:
            notes.append(f"no .{fmt} artifact in this export: re-export with --formats including {fmt}")
            continue
        rec_row = report.recommended_row(fmt)
        fp32 = next((r for r in fmt_rows if r["precision"] == "fp32"), None)
        picks = []
        if fp32 is None:
            notes.append(f"no fp32 .{fmt} artifact in this export")
        elif fp32["status"] != "pass":
            why = fp32.get("reason") or fp32["status"]
            notes.append(f"the fp32 .{fmt} artifact did not pass its parity gate ({why})")
        else:
            picks.append(fp32)
        if rec_row is not None and rec_row["precision"] != "fp32":
            picks.append(rec_row)
        else:
            notes.append(f"no smaller .{fmt} artifact (int8) passed its parity gate: the page offers fp32 only")
        for row in picks:
            source = report.verified(row)
            entries.append(
                {
                    "format": fmt,
                    "runtime": runtime,
                    "precision": row["precision"],
                    "source": source,
                    "recommended": rec_row is not None and source.name == rec_row["file"],
                    "size_mb": round(source.stat().st_size / 1e6, 3),
                    "parity": {k: row.get(k) for k in ("status", "max_abs_diff", "auroc_delta", "flips")},
                }
            )
    if not entries:
        raise UserError(
            f"{report.folder} has no .tflite or .onnx artifact that passed its parity gate: "
            "export with `python -m export.all --formats onnx,tflite` first"
        )
    return entries, notes


def read_trusted_key(path: Path) -> bytes:
    """The text of the key --trust names, when it looks like a PEM EC P-256 public key (the page checks it
    for real with WebCrypto; the standard library cannot).

    Raises:
        UserError: docs/signing.md's sentence for a bad key.
    """

    def bad(detail: str) -> UserError:
        return UserError(f"the trusted key {path} is not a PEM EC public key ({detail})")

    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise bad("no such file") from None
    except OSError as exc:
        raise bad(f"it cannot be read: {exc.strerror}") from None
    if b"PRIVATE KEY" in data[:200]:
        raise bad("a private key: give its .pub")
    block = PEM_PUBLIC_KEY.search(data.decode("ascii", errors="replace"))
    if block is None:
        raise bad("no PUBLIC KEY block")
    try:
        der = base64.b64decode("".join(block.group(1).split()), validate=True)
    except (binascii.Error, ValueError):
        raise bad("its PUBLIC KEY block is not base64") from None
    if EC_PUBLIC_KEY_OID not in der or P256_OID not in der:
        raise bad("not a P-256 key")
    return data


def signed_statement(folder: Path, trusted_pem: bytes | None = None) -> dict[str, str]:
    """The file digests `folder`/model.sig lists, read but not verified (only the page can), after its key hint
    is compared with the trusted key's (`trusted_pem`, when given).

    Raises:
        UserError: the export is unsigned, names another key, or its model.sig is not a signed model statement.
    """
    path = folder / SIGNATURE_FILE
    if not path.is_file():
        raise UserError(
            f"no signature: {SIGNATURE_FILE} is missing, and a trusted key requires a signed model (in {folder}): "
            f"sign it with `python -m export.sign {folder} --key KEY.pem`, or build without --trust"
        )
    trusted_hint = pem_key_hint(trusted_pem.decode("ascii", errors="replace")) if trusted_pem is not None else None
    return read_unverified(path, trusted_hint)


def check_signed_files(signed: dict[str, str], held: dict[str, Path], required: Sequence[str]) -> None:
    """The files the build copies against the signed digests, as the page checks them (provenance.js
    checkFiles): changed, then removed (a required name or a signed golden/*.png not held), then added.

    Raises:
        UserError: the first sentence, with " (and N more)" when others differ too.
    """
    problem = differences(signed, held, {*required, *(n for n in signed if GOLDEN_PNG.match(n))})
    if problem:
        raise UserError(problem)


def _package_version(package: str) -> str:
    try:
        return json.loads((NODE_MODULES / package / "package.json").read_text(encoding="utf-8"))["version"]
    except (OSError, ValueError, KeyError):
        return "?"


def check_runtimes() -> None:
    """Refuse to build when the npm packages are not installed."""
    missing = [src for src, _ in RUNTIME_FILES if not (NODE_MODULES / src).is_file()]
    if missing:
        raise UserError(
            f"web_demo/node_modules/{missing[0]} is missing: install the runtimes with `{INSTALL_RUNTIMES}`"
        )


def build(folder: Path, out: Path, trust: Path | None = None) -> dict[str, Any]:
    """Copy the artifacts of the export in `folder` and the runtimes into `out`; returns the manifest.

    With `trust` (a PEM public key), the export must be signed: its model.sig and the key go into the build
    for the page to verify, and every copied file must have the sha256 the signed statement lists.

    The build is written into a staging folder beside `out` and swapped in at the end, so a failed build
    leaves the previous one intact.
    """
    folder = folder.resolve()
    report = ParityReport.load(
        folder, hint="export the model first with `python -m export.all --model NAME` (or point --artifacts at it)"
    )
    entries, notes = choose_artifacts(report)
    key = read_trusted_key(trust) if trust is not None else None
    statement = signed_statement(folder, key) if trust is not None else None
    check_runtimes()
    if out.resolve() == folder or folder in out.resolve().parents or out.resolve() in folder.parents:
        raise UserError(f"--out {out} is or holds the export it reads ({folder}): build into another folder")
    out = claim_output_folder(out, lambda entry: entry.name in BUILD_ENTRIES, "a web demo build", overwrite=True)
    with exclusive(out, "web demo build"), staged_folder(out) as staging:
        (staging / "models").mkdir()
        artifacts = []
        for e in entries:
            name = e["source"].name
            shutil.copy2(e["source"], staging / "models" / name)
            copied = {"file": f"models/{name}", "signed_name": name}
            artifacts.append({k: v for k, v in e.items() if k != "source"} | copied)
        golden = None
        golden_files = []  # golden.json and its images: {file in the build, signed_name in the export}
        if (folder / "golden.json").is_file():
            shutil.copy2(folder / "golden.json", staging / "models" / "golden.json")
            golden_files.append({"file": "models/golden.json", "signed_name": "golden.json"})
            if (folder / "golden").is_dir():
                shutil.copytree(folder / "golden", staging / "models" / "golden")
                for path in sorted(p for p in (staging / "models" / "golden").rglob("*") if p.is_file()):
                    relative = path.relative_to(staging / "models").as_posix()
                    golden_files.append({"file": f"models/{relative}", "signed_name": relative})
            golden = "models/golden.json"
        signing = None
        if statement is not None and key is not None:
            held = {f["signed_name"]: staging / f["file"] for f in (*artifacts, *golden_files)}
            check_signed_files(statement, held, [a["signed_name"] for a in artifacts])
            shutil.copy2(folder / SIGNATURE_FILE, staging / "models" / SIGNATURE_FILE)
            (staging / TRUSTED_KEY_FILE).write_bytes(key)
            signing = {"signature": f"models/{SIGNATURE_FILE}", "trusted_key": TRUSTED_KEY_FILE}
        for src, dst in RUNTIME_FILES:
            target = staging / "runtime" / dst
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(NODE_MODULES / src, target)
        manifest = {
            "model": report.model,
            "built_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            "source": folder.name,
            "threshold": report.data.get("threshold"),
            "artifacts": artifacts,
            "golden": golden,
            "golden_files": golden_files,
            "signing": signing,
            "notes": notes,
            "runtimes": {
                "litert": {
                    "package": "@litertjs/core",
                    "version": _package_version("@litertjs/core"),
                    "module": "runtime/litert/core.js",
                    "wasm": "runtime/litert/wasm/",
                },
                "onnxruntime-web": {
                    "package": "onnxruntime-web",
                    "version": _package_version("onnxruntime-web"),
                    "module": "runtime/ort/ort.wasm.min.mjs",
                    "webgpu_module": "runtime/ort/ort.webgpu.min.mjs",
                    "wasm": "runtime/ort/",
                },
            },
        }
        (staging / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest


class DemoHandler(SimpleHTTPRequestHandler):
    """Serves web_demo/ with /dist/ mapped to the build folder, correct MIME types and cross-origin isolation
    (COOP same-origin + COEP require-corp, which give the page SharedArrayBuffer and so WebAssembly threads on
    https or localhost; `isolated = False` leaves them out, as --no-isolation does)."""

    dist: Path = DEFAULT_OUT
    quiet: bool = True
    isolated: bool = True
    extensions_map = MIME_TYPES

    def translate_path(self, path: str) -> str:
        """Map a URL path to a file: /dist/... -> the build folder, a few page files, nothing else."""
        clean = posixpath.normpath(urllib.parse.unquote(path.split("?", 1)[0].split("#", 1)[0]))
        parts = [p for p in clean.split("/") if p and p not in (".", "..")]
        if parts and parts[0] == "dist":
            return str(self.dist.joinpath(*parts[1:]))
        if parts and parts[0] not in SERVED:
            return str(HERE / "__not_served__")
        return str(Path(self.directory).joinpath(*parts))

    def end_headers(self) -> None:
        if self.isolated:
            self.send_header("Cross-Origin-Opener-Policy", "same-origin")
            self.send_header("Cross-Origin-Embedder-Policy", "require-corp")
        self.send_header("Cross-Origin-Resource-Policy", "same-origin")
        self.send_header("Cache-Control", "no-cache")
        super().end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        if not self.quiet:
            super().log_message(format, *args)


def _lan_address() -> str:
    """This machine's address on the local network (a UDP socket's source address; nothing is sent)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("10.255.255.255", 1))
            return s.getsockname()[0]
        except OSError:
            return "127.0.0.1"


def make_server(
    out: Path, port: int = 8000, lan: bool = False, quiet: bool = True, isolated: bool = True
) -> ThreadingHTTPServer:
    """An HTTP server for web_demo/ with /dist/ served from the build in `out` (not started yet); without
    `isolated`, without the COOP/COEP headers (the page then runs 1 thread and says why).

    Raises:
        UserError: `out` holds no build, or the port cannot be bound.
    """
    if not (out / "manifest.json").is_file():
        raise UserError(f"{out / 'manifest.json'} not found: build first with `python web_demo/build.py --model NAME`")
    handler = functools.partial(
        type("Handler", (DemoHandler,), {"dist": out.resolve(), "quiet": quiet, "isolated": isolated}),
        directory=str(HERE),
    )
    host = "0.0.0.0" if lan else "127.0.0.1"
    try:
        return ThreadingHTTPServer((host, port), handler)
    except OSError as exc:
        raise UserError(
            f"cannot listen on {host}:{port} ({exc.strerror}): choose another port with --serve PORT"
        ) from None


def serve(out: Path, port: int, lan: bool, quiet: bool = True, isolated: bool = True) -> None:
    """Serve web_demo/ (with /dist/ from `out`) until interrupted."""
    server = make_server(out, port, lan, quiet, isolated)
    bound = server.server_address[1]
    print(f"Serving the web demo at http://127.0.0.1:{bound}/ (Ctrl-C to stop)", flush=True)
    if not isolated:
        print("without COOP/COEP headers: the page is not cross-origin isolated and runs 1 thread", flush=True)
    if lan:
        print(
            f"On a phone on the same network open http://{_lan_address()}:{bound}/ "
            "(plain http: the page still runs, on 1 WebAssembly thread, since it is not cross-origin isolated there)",
            flush=True,
        )
        if (out / TRUSTED_KEY_FILE).is_file():
            print(
                "note: this build checks a signature, and browsers offer WebCrypto only over https or on "
                "localhost: over the plain-http LAN address the page refuses to run the model (serve it over "
                "https, e.g. behind a reverse proxy, or build without --trust)",
                flush=True,
            )
    with server:
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            print("stopped", flush=True)


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a port number, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"a port number 0-65535, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The command line (see the module docstring)."""
    p = argparse.ArgumentParser(
        prog="python web_demo/build.py",
        description="Copy an export's .tflite/.onnx artifacts and the wasm runtimes into web_demo/dist, "
        "then serve the page.",
    )
    p.add_argument("--model", help="model name: reads dist/<model>/ (where python -m export.all wrote it)")
    p.add_argument("--artifacts", help="the export folder to read instead of dist/<model>/")
    p.add_argument("--out", default=str(DEFAULT_OUT), help="build folder, served as /dist/ (default web_demo/dist)")
    p.add_argument(
        "--serve", nargs="?", const=8000, type=_port, default=None, metavar="PORT", help="then serve (default 8000)"
    )
    p.add_argument(
        "--trust",
        metavar="KEY.pub",
        help="a signed export's public key (PEM): the page verifies model.sig and every file it runs against it",
    )
    p.add_argument("--lan", action="store_true", help="listen on all interfaces so a phone on the network can open it")
    p.add_argument(
        "--no-isolation",
        action="store_true",
        help="serve without the COOP/COEP headers (no WebAssembly threads: what a phone over plain http gets)",
    )
    p.add_argument("--verbose", action="store_true", help="log every request while serving")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point (under core.errors.run_cli: a UserError is one sentence and exit status 2)."""
    args = build_parser().parse_args(argv)
    out = Path(args.out)
    if args.model or args.artifacts:
        folder = Path(args.artifacts) if args.artifacts else Path("dist") / args.model
        if not folder.is_dir():
            raise UserError(
                f"{folder} is not a folder: export first with "
                f"`python -m export.all --model {args.model or 'NAME'}` or give --artifacts DIR"
            )
        manifest = build(folder, out, Path(args.trust) if args.trust else None)
        offered = ", ".join(f"{a['format']} {a['precision']}" for a in manifest["artifacts"])
        signed = f", signed (the page verifies {SIGNATURE_FILE} with {args.trust})" if manifest["signing"] else ""
        print(f"Built {out} for {manifest['model']}: {offered}{signed}")
        for note in manifest["notes"]:
            print(f"note: {note}")
    elif args.trust:
        raise UserError("--trust applies to a build: give --model NAME (or --artifacts DIR) with it")
    elif args.serve is None:
        raise UserError("nothing to do: give --model NAME (or --artifacts DIR) to build, and/or --serve to serve")
    if args.serve is not None:
        serve(out, args.serve, args.lan, quiet=not args.verbose, isolated=not args.no_isolation)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(run_cli(main))
