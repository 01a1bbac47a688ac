#!/usr/bin/env python3
"""Copy an export's recommended .tflite, its spec and its golden vectors into the Android app's assets.

    python3 android_demo/copy-assets.py dist/efficientnet_lite0            # what `make android-assets` runs
    python3 android_demo/copy-assets.py dist/efficientnet_lite0 --precision fp32

Reads `parity.json` of the export folder (written by `python -m export.all`), takes the .tflite it recommends
(the smallest one that passed its parity gate; `--precision` picks another that passed), refuses it when its
sha256 differs from the one parity.json recorded, and writes into android_demo/app/src/main/assets/:
  model.tflite             the artifact (the app reads its embedded spec and runs it with LiteRT)
  model.tflite.spec.json   its sidecar spec (the app checks the embedded spec against it)
  model.json               which artifact this is (file name, precision, sha256), for the instrumented test
  golden.json, golden/     the golden vectors the instrumented test replays on a device
Standard library only (core.io, which it shares, is too): it runs before any virtual environment exists.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository, for core.io
from core.io import sha256_file

HERE = Path(__file__).resolve().parent
DEFAULT_DEST = HERE / "app" / "src" / "main" / "assets"

# The asset names the app loads (app/src/main/kotlin/.../ModelAssets.kt); a test keeps the two in step.
MODEL_ASSET = "model.tflite"
SPEC_ASSET = "model.tflite.spec.json"
MANIFEST_ASSET = "model.json"
GOLDEN_ASSET = "golden.json"
GOLDEN_DIR_ASSET = "golden"


class AssetError(Exception):
    """A problem the user can fix; its message is one sentence."""


def _read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise AssetError(f"{path} is missing: run `python -m export.all` for this model first") from None
    except (OSError, ValueError) as exc:
        raise AssetError(f"{what} {path} cannot be read ({exc}): export the model again") from None


def file_name(entry: dict[str, Any]) -> str | None:
    """The artifact's file name in a parity.json row or recommendation: `file`, or the name of an older `path`."""
    if entry.get("file"):
        return str(entry["file"])
    return Path(str(entry["path"])).name if entry.get("path") else None


def choose_artifact(folder: Path, parity: dict[str, Any], precision: str | None) -> tuple[Path, str, str | None]:
    """(artifact path inside `folder`, its precision, the sha256 parity.json recorded or None)."""
    rows = [r for r in parity.get("rows", []) if isinstance(r, dict) and r.get("format") == "tflite"]
    if precision is None:
        chosen = (parity.get("recommended") or {}).get("tflite") or {}
        if not file_name(chosen):
            reason = chosen.get("reason", "parity.json recommends no .tflite")
            raise AssetError(f"no .tflite to copy from {folder} ({reason}): fix the export or pass --precision")
    else:
        passed = [r for r in rows if r.get("status") == "pass"]
        matches = [r for r in passed if r.get("precision") == precision]
        if not matches:
            available = ", ".join(sorted(str(r.get("precision")) for r in passed)) or "none"
            raise AssetError(f"no .tflite of precision {precision!r} passed parity in {folder} (passed: {available})")
        chosen = matches[0]
    # Beside parity.json, whatever the folder was called at export time.
    artifact = folder / str(file_name(chosen))
    if not artifact.is_file():
        raise AssetError(f"{artifact} is missing although parity.json lists it: export the model again")
    recorded = chosen.get("sha256")
    if recorded is None:
        for row in rows:
            if file_name(row) == artifact.name and row.get("sha256"):
                recorded = row["sha256"]
    return artifact, str(chosen.get("precision") or "fp32"), recorded


def collect(folder: Path, precision: str | None) -> tuple[dict[str, Path], dict[str, Any]]:
    """The files to copy (asset name -> source) and the manifest, after every check."""
    if not folder.is_dir():
        raise AssetError(f"{folder} is not an export folder: run `python -m export.all --model <name>` first")
    parity = _read_json(folder / "parity.json", "parity report")
    if not isinstance(parity, dict):
        raise AssetError(f"{folder / 'parity.json'} is not a parity report: export the model again")
    artifact, artifact_precision, recorded = choose_artifact(folder, parity, precision)
    actual = sha256_file(artifact)
    if recorded is not None and recorded != actual:
        raise AssetError(
            f"{artifact.name} has sha256 {actual[:12]}... but parity.json recorded {str(recorded)[:12]}...: "
            "the file changed after its parity check, so export the model again"
        )
    sidecar = artifact.with_name(artifact.name + ".spec.json")
    if not sidecar.is_file():
        raise AssetError(f"{sidecar} is missing: export the model again (every artifact gets a .spec.json)")
    golden = _read_json(folder / "golden.json", "golden vectors")
    cases = golden.get("cases") if isinstance(golden, dict) else None
    if not cases:
        raise AssetError(f"{folder / 'golden.json'} has no cases: run export.all with --golden N (N > 0)")
    files = {MODEL_ASSET: artifact, SPEC_ASSET: sidecar, GOLDEN_ASSET: folder / "golden.json"}
    for case in cases:
        png = folder / case["png"]
        if not png.is_file():
            raise AssetError(f"{png} is missing although golden.json lists it: export the model again")
        files[f"{GOLDEN_DIR_ASSET}/{png.name}"] = png
    manifest = {
        "model": parity.get("model"),
        "artifact": artifact.name,
        "precision": artifact_precision,
        "sha256": actual,
        "sha256_checked_against_parity": recorded is not None,
        "source": str(folder.resolve()),
    }
    return files, manifest


def install(files: dict[str, Path], manifest: dict[str, Any], dest: Path) -> None:
    """Write everything into a staging folder, then swap it into `dest` (old model files never half-replaced)."""
    dest.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".assets-", dir=dest))
    try:
        for name, source in files.items():
            target = staging / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
        (staging / MANIFEST_ASSET).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        old_golden = dest / GOLDEN_DIR_ASSET
        if old_golden.exists():
            shutil.rmtree(old_golden)
        os.replace(staging / GOLDEN_DIR_ASSET, old_golden)
        for name in (MODEL_ASSET, SPEC_ASSET, GOLDEN_ASSET, MANIFEST_ASSET):
            os.replace(staging / name, dest / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status (0 copied, 2 refused with one sentence on stderr)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("export", type=Path, help="the export folder, e.g. dist/efficientnet_lite0")
    parser.add_argument("--dest", type=Path, default=DEFAULT_DEST, help=f"assets folder (default: {DEFAULT_DEST})")
    parser.add_argument("--precision", help="copy the .tflite of this precision (fp32, int8, ...) instead")
    args = parser.parse_args(argv)
    try:
        files, manifest = collect(args.export, args.precision)
        install(files, manifest, args.dest)
    except AssetError as exc:
        print(f"copy-assets: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"copy-assets: error: cannot write the assets ({exc}): check {args.dest}", file=sys.stderr)
        return 2
    checked = "matches parity.json" if manifest["sha256_checked_against_parity"] else "not recorded in parity.json"
    print(f"copied {manifest['artifact']} ({manifest['precision']}, sha256 {checked}) as {MODEL_ASSET}")
    print(f"copied its spec, golden.json and {len(files) - 3} golden PNGs into {args.dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
