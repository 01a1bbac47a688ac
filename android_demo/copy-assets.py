#!/usr/bin/env python3
"""Copy an export's recommended .tflite, its spec and its golden vectors into the Android app's assets.

    python3 android_demo/copy-assets.py dist/efficientnet_lite0            # what `make android-assets` runs
    python3 android_demo/copy-assets.py dist/efficientnet_lite0 --precision fp32
    python3 android_demo/copy-assets.py dist/efficientnet_lite0 --trust keys/signing_key.pub   # pin the key

Reads `parity.json` of the export folder (written by `python -m export.all`), takes the .tflite it recommends
(the smallest one that passed its parity gate; `--precision` picks another that passed), refuses it when its
sha256 differs from the one parity.json recorded, and writes into android_demo/app/src/main/assets/:
  model.tflite             the artifact (the app reads its embedded spec and runs it with LiteRT)
  model.tflite.spec.json   its sidecar spec (the app checks the embedded spec against it)
  model.json               which artifact this is (file name, precision, sha256), for the instrumented test
  golden.json, golden/     the golden vectors the instrumented test replays on a device
  model.sig                the export's signature, when it is signed (python -m export.sign)
  signing_key.pub          with --trust: the public key the app pins; while it is there the app verifies
                           model.sig and every file above against it before it runs anything, and refuses
                           an unsigned model (--no-trust removes it)
With a signature the files copied are also checked against the signed sha256s (the signature itself is
checked by the app: the standard library has no ECDSA).
Standard library only (core.io, core.errors and core.parity_file, which it shares, are too): it runs before any
virtual environment exists.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository, for core.io
from core.errors import UserError, run_cli
from core.io import check_folder_path, replace, sha256_file
from core.parity_file import ParityReport
from core.signed_files import differences, pem_key_hint, read_unverified

HERE = Path(__file__).resolve().parent
DEFAULT_DEST = HERE / "app" / "src" / "main" / "assets"

# The asset names the app loads (app/src/main/kotlin/.../ModelAssets.kt); a test keeps the two in step.
MODEL_ASSET = "model.tflite"
SPEC_ASSET = "model.tflite.spec.json"
MANIFEST_ASSET = "model.json"
GOLDEN_ASSET = "golden.json"
GOLDEN_DIR_ASSET = "golden"
SIGNATURE_ASSET = "model.sig"
TRUSTED_KEY_ASSET = "signing_key.pub"


def _read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path} is missing: run `python -m export.all` for this model first") from None
    except (OSError, ValueError) as exc:
        raise UserError(f"{what} {path} cannot be read ({exc}): export the model again") from None


def choose_artifact(report: ParityReport, precision: str | None) -> tuple[Path, str]:
    """(the artifact inside the export folder, sha256 checked against parity.json; its precision)."""
    if precision is None:
        chosen = report.recommended_row("tflite")
        if chosen is None:
            raise UserError(
                f"no .tflite to copy from {report.folder} ({report.why_none('tflite')}): fix the export or pass "
                "--precision"
            )
    else:
        passed = report.artifact_rows("tflite", "pass")
        chosen = next((r for r in passed if r["precision"] == precision), None)
        if chosen is None:
            available = ", ".join(sorted(str(r["precision"]) for r in passed)) or "none"
            raise UserError(
                f"no .tflite of precision {precision!r} passed parity in {report.folder} (passed: {available})"
            )
    return report.verified(chosen), str(chosen["precision"])


def collect(folder: Path, precision: str | None) -> tuple[dict[str, Path], dict[str, Any]]:
    """The files to copy (asset name -> source) and the manifest, after every check."""
    if not folder.is_dir():
        raise UserError(f"{folder} is not an export folder: run `python -m export.all --model <name>` first")
    report = ParityReport.load(folder, hint="run `python -m export.all` for this model first")
    artifact, artifact_precision = choose_artifact(report, precision)
    sidecar = artifact.with_name(artifact.name + ".spec.json")
    if not sidecar.is_file():
        raise UserError(f"{sidecar} is missing: export the model again (every artifact gets a .spec.json)")
    golden = _read_json(folder / "golden.json", "golden vectors")
    cases = golden.get("cases") if isinstance(golden, dict) else None
    if not cases:
        raise UserError(f"{folder / 'golden.json'} has no cases: run export.all with --golden N (N > 0)")
    files = {MODEL_ASSET: artifact, SPEC_ASSET: sidecar, GOLDEN_ASSET: folder / "golden.json"}
    for case in cases:
        png = folder / case["png"]
        if not png.is_file():
            raise UserError(f"{png} is missing although golden.json lists it: export the model again")
        files[f"{GOLDEN_DIR_ASSET}/{png.name}"] = png
    manifest = {
        "model": report.model,
        "artifact": artifact.name,
        "precision": artifact_precision,
        "sha256": sha256_file(artifact),
        "sha256_checked_against_parity": True,
        "source": str(folder.resolve()),
    }
    return files, manifest


def check_signed(folder: Path, files: dict[str, Path], manifest: dict[str, Any], trust: Path | None) -> None:
    """What the standard library can check of the export's model.sig before it is copied: its key hint against
    the trusted key, and the sha256 of every file copied against the signed one (the app checks the signature)."""
    trusted_hint = None
    if trust is not None:
        trusted_hint = pem_key_hint(trust.read_text(encoding="ascii", errors="replace"))
        if trusted_hint is None:
            raise UserError(f"the trusted key {trust} is not a PEM EC public key (no PUBLIC KEY block): give the .pub")
    signed = read_unverified(folder / SIGNATURE_ASSET, trusted_hint)
    held = {source.relative_to(folder).as_posix(): source for source in files.values()}
    problem = differences(signed, held, held)
    if problem:
        raise UserError(problem)
    manifest["signed"] = True


def install(
    files: dict[str, Path], manifest: dict[str, Any], dest: Path, trust: Path | None = None, untrust: bool = False
) -> None:
    """Write everything into a staging folder, then swap it into `dest` (old model files never half-replaced).
    A model.sig in `files` replaces the old one, which is removed otherwise; `trust` replaces the pinned key,
    `untrust` removes it, and neither keeps it."""
    check_folder_path(dest, "--dest")
    dest.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".assets-", dir=dest))
    try:
        for name, source in files.items():
            target = staging / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
        (staging / MANIFEST_ASSET).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        if trust is not None:
            shutil.copyfile(trust, staging / TRUSTED_KEY_ASSET)
        # Each asset replaced whole (core.io.replace swaps a folder, never merges); the assets folder may hold
        # the app's other assets, so it is not swapped itself. The signature goes last and the key after it:
        # an app built in between sees an old pin and a new signature, which it refuses, never the reverse.
        for name in (GOLDEN_DIR_ASSET, MODEL_ASSET, SPEC_ASSET, GOLDEN_ASSET, MANIFEST_ASSET, SIGNATURE_ASSET):
            if (staging / name).exists():
                replace(staging / name, dest / name)
            elif name == SIGNATURE_ASSET:
                (dest / name).unlink(missing_ok=True)
        if trust is not None:
            replace(staging / TRUSTED_KEY_ASSET, dest / TRUSTED_KEY_ASSET)
        elif untrust:
            (dest / TRUSTED_KEY_ASSET).unlink(missing_ok=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    """Entry point (under core.errors.run_cli: a refusal is one sentence on stderr and exit status 2)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("export", type=Path, help="the export folder, e.g. dist/efficientnet_lite0")
    parser.add_argument("--dest", type=Path, default=DEFAULT_DEST, help=f"assets folder (default: {DEFAULT_DEST})")
    parser.add_argument("--precision", help="copy the .tflite of this precision (fp32, int8, ...) instead")
    parser.add_argument(
        "--trust",
        type=Path,
        help=f"pin this public key (PEM) as {TRUSTED_KEY_ASSET}: the app then runs signed models only",
    )
    parser.add_argument("--no-trust", action="store_true", help=f"remove a pinned {TRUSTED_KEY_ASSET} from --dest")
    args = parser.parse_args(argv)
    if args.trust and args.no_trust:
        raise UserError("give --trust KEY.pub or --no-trust, not both")
    if args.trust and not args.trust.is_file():
        raise UserError(f"the trusted key {args.trust} is not a PEM EC public key (no such file)")
    files, manifest = collect(args.export, args.precision)
    signed = (args.export / SIGNATURE_ASSET).is_file()
    pinned = args.trust is not None or ((args.dest / TRUSTED_KEY_ASSET).is_file() and not args.no_trust)
    if signed:  # against the key the app will pin: the new one, or the one already in its assets
        check_signed(args.export, files, manifest, args.trust or (args.dest / TRUSTED_KEY_ASSET if pinned else None))
        files[SIGNATURE_ASSET] = args.export / SIGNATURE_ASSET
    elif pinned:
        pin = args.trust or args.dest / TRUSTED_KEY_ASSET
        raise UserError(
            f"no signature: {SIGNATURE_ASSET} is missing, and a trusted key requires a signed model (the app pins "
            f"{pin}): sign the export with python -m export.sign, or pass --no-trust to run unsigned models"
        )
    install(files, manifest, args.dest, args.trust, args.no_trust)
    print(f"copied {manifest['artifact']} ({manifest['precision']}, sha256 matches parity.json) as {MODEL_ASSET}")
    golden = sum(name.startswith(f"{GOLDEN_DIR_ASSET}/") for name in files)
    print(f"copied its spec, golden.json and {golden} golden PNGs into {args.dest}")
    if signed:
        key = f"pinned {TRUSTED_KEY_ASSET}" if pinned else "no pinned key: add one with --trust KEY.pub"
        print(f"copied {SIGNATURE_ASSET} (files match the signed sha256s; {key})")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
