"""The one reader of `parity.json`, the record `python -m export.all` writes of what it checked.

Everything downstream of an export reads it here: the benchmark, the zoo and its report, the browser demo's
build and the Android app's asset copy. Standard library only (with core.errors and core.io, which are too),
since the apps' scripts run before any virtual environment exists.

    report = ParityReport.load(Path("dist/efficientnet_lite0"))
    row = report.recommended_row("tflite")          # the smallest .tflite that passed, or None
    path = report.verified(row)                     # its file in the folder, sha256 checked
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.errors import UserError
from core.io import sha256_file

PARITY_FILE = "parity.json"
ROW_FIELDS = ("format", "precision", "status")  # every row has these; an artifact row also `file`
STATUSES = ("reference", "pass", "fail", "not-run", "unsupported")
REEXPORT = "re-export with python -m export.all"


@dataclass(frozen=True)
class ParityReport:
    """A checked parity.json and the folder it was read from (artifact names are relative to it, so a
    moved or copied export still resolves)."""

    folder: Path
    data: dict[str, Any]

    @classmethod
    def load(cls, folder: str | Path, hint: str = "") -> ParityReport:
        """Read and check `folder`/parity.json; UserError naming what is wrong.

        Args:
            folder: the export folder.
            hint: how to make one, for the sentence when there is none (default: run export.all).
        """
        folder = Path(folder)
        path = folder / PARITY_FILE
        if folder.exists() and not folder.is_dir():
            raise UserError(f"{folder} is a file, not an export folder: give the folder python -m export.all wrote")
        if not path.is_file():
            raise UserError(f"{path} not found: {hint or 'export first with python -m export.all --model NAME'}")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise UserError(f"{path} cannot be read as JSON ({exc.__class__.__name__}): {REEXPORT}") from None
        cls._check(path, data)
        return cls(folder, data)

    @staticmethod
    def _check(path: Path, data: Any) -> None:
        if not isinstance(data, dict) or not isinstance(data.get("rows"), list) or not data["rows"]:
            raise UserError(f"{path} is not a parity report written by export.all (no rows): {REEXPORT}")
        for key in ("model", "recommended"):
            if key not in data:
                raise UserError(f"{path} has no {key!r}: it was written by an older or foreign tool; {REEXPORT}")
        for number, row in enumerate(data["rows"], start=1):
            missing = [k for k in ROW_FIELDS if not isinstance(row, dict) or k not in row]
            if missing:
                raise UserError(f"{path}, row {number}, has no {', '.join(missing)}: {REEXPORT}")
            if row["status"] not in STATUSES:
                raise UserError(f"{path}, row {number}, has an unknown status {row['status']!r}: {REEXPORT}")
            if "path" in row and "file" not in row:
                raise UserError(
                    f"{path} names its artifacts by absolute `path` (an older export.all): {REEXPORT} so that "
                    "every artifact is named relative to its folder"
                )

    @property
    def model(self) -> str:
        return str(self.data["model"])

    @property
    def rows(self) -> list[dict[str, Any]]:
        return list(self.data["rows"])

    def artifact_rows(self, fmt: str | None = None, status: str | None = None) -> list[dict[str, Any]]:
        """The rows that name an artifact of this export (not the reference), optionally of one format /
        status."""
        return [
            r
            for r in self.data["rows"]
            if r["status"] != "reference"
            and r.get("file")
            and (fmt is None or r["format"] == fmt)
            and (status is None or r["status"] == status)
        ]

    def recommended_row(self, fmt: str) -> dict[str, Any] | None:
        """The row of the artifact recommended for `fmt` (the smallest that passed), or None."""
        chosen = (self.data.get("recommended") or {}).get(fmt) or {}
        name = chosen.get("file")
        return next((r for r in self.artifact_rows(fmt, "pass") if r["file"] == name), None) if name else None

    def why_none(self, fmt: str) -> str:
        """Why `fmt` has no recommended artifact, in the report's own words."""
        chosen = (self.data.get("recommended") or {}).get(fmt)
        if chosen is None:
            return f"the export has no {fmt} artifact"
        return str(chosen.get("reason") or "none passed parity")

    def path_of(self, row: dict[str, Any]) -> Path:
        """Where the row's file is: the artifact inside the folder; the reference checkpoint where it was."""
        if not row.get("file"):
            raise UserError(f"{self.folder / PARITY_FILE}: the {row['format']} {row['precision']} row names no file")
        return Path(row["file"]) if row["status"] == "reference" else self.folder / Path(row["file"]).name

    def verified(self, row: dict[str, Any]) -> Path:
        """The row's file after checking it is there and is the very file parity checked (same sha256)."""
        path = self.path_of(row)
        if not path.exists():
            raise UserError(f"{path} is missing although {PARITY_FILE} lists it: {REEXPORT}, or restore the file")
        recorded = row.get("sha256")
        if not recorded:
            raise UserError(f"{self.folder / PARITY_FILE} records no sha256 for {path.name}: {REEXPORT}")
        if sha256_file(path) != recorded:
            raise UserError(
                f"{path} is not the file export.all checked (its sha256 differs from {PARITY_FILE}'s): "
                f"{REEXPORT} --overwrite, or restore the original file"
            )
        return path
