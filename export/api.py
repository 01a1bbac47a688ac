"""The export as a function, for notebooks: a model trained anywhere, its contract, an evaluation set.

    from export.api import export_model
    summary = export_model(model, "my-effnet.contract.json", ("eval.csv", "images/"), out="dist/my-effnet",
                           formats="onnx,tflite,executorch", precisions="fp32,int8")
    summary["recommended"]["tflite"]          # the artifact to ship, per format (parity.json's content)

It runs exactly what `python -m export.all --module ... --contract ... --eval-csv ... --eval-images ...` runs
(the same staged output folder, gates, reports and golden vectors) and raises core.errors.UserError with one
sentence where the command would print it. A model that exists only in memory has no file to rebuild it from,
so `python -m benchmark` times its artifacts without a PyTorch row.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from torch import nn

from core.contract import Contract
from core.errors import UserError


def export_model(
    model: nn.Module,
    contract: Contract | dict[str, Any] | str | Path,
    evaluation: tuple[str | Path, str | Path] | pd.DataFrame,
    out: str | Path,
    formats: str | Sequence[str] = "all",
    precisions: str | Sequence[str] = "fp32",
    golden: int = 4,
    calibration_size: int = 128,
    overwrite: bool = False,
    verbose: bool = False,
    gates: dict[str, Any] | None = None,
    sign_key: str | Path | None = None,
    author: str | None = None,
    license: str | None = None,
) -> dict[str, Any]:
    """Export `model` to `formats` x `precisions` in `out` with parity checks; returns parity.json's content.

    Args:
        model: the nn.Module as its own code builds it (`model(image, meta)` on the contract's inputs).
        contract: a Contract, its JSON data, or the path of its file.
        evaluation: (CSV, image folder) as `--eval-csv` / `--eval-images` take them, or a table already read
            by core.eval_csv.read_evaluation_csv (a `path` column per case).
        out: the export folder (an earlier export there is replaced only with `overwrite`).
        formats, precisions: as `--formats` / `--precision` take them (comma-separated text or a list).
        gates: the --gate-* values by name (auroc_drop, flips, subgroup_drop, min_subgroup_class).
        sign_key: an EC private key (PEM) to sign the finished folder with, as `--sign-key` does.
        author, license: stated in the .tflite metadata and MODEL_CARD.md, as `--author` / `--license` are.
    """
    from core.eval_csv import read_evaluation_csv
    from export.all import Job, about, chosen_gates, run_job
    from export.formats import parse_formats
    from export.precision import parse_precisions
    from export.sources import contract_source

    if not isinstance(model, nn.Module):
        raise UserError(f"export_model takes a torch nn.Module, got a {type(model).__name__}")
    if isinstance(contract, Contract):
        parsed = contract
    elif isinstance(contract, dict):
        parsed = Contract.from_dict(contract)
    else:
        parsed = Contract.load(contract)
    if isinstance(evaluation, pd.DataFrame):
        needed = ["image_name", "target", "path", *parsed.encoder().fields]
        absent = [c for c in needed if c not in evaluation]
        if absent:
            raise UserError(
                f"the evaluation table has no column {absent[0]!r}: give (CSV, image folder), or a table read by "
                "core.eval_csv.read_evaluation_csv"
            )
        table, name = evaluation, f"a table of {len(evaluation)} cases"
        if "patient_id" not in table:
            table = table.assign(patient_id="")
    else:
        csv, images = (Path(p) for p in evaluation)
        table, name = read_evaluation_csv(csv, images, parsed), f"{csv.name} ({{n}} cases)"
        name = name.format(n=len(table))
    origin = {"kind": "memory", "evaluation": name}
    size_mb = sum(p.numel() * p.element_size() for p in model.parameters()) / 1e6

    def build(console: Any) -> Any:
        return contract_source(model, parsed, table, origin, None, None, console.say)

    join = ",".join
    fmt = parse_formats(formats if isinstance(formats, str) else join(formats))
    prec = parse_precisions(precisions if isinstance(precisions, str) else join(precisions))
    job = Job(build, Path(out), size_mb)
    known = ("auroc_drop", "flips", "subgroup_drop", "min_subgroup_class")
    unknown = sorted(set(gates or {}) - set(known))
    if unknown:
        raise UserError(f"gates has no {unknown[0]!r}: give any of {', '.join(known)}")
    for key, value in (gates or {}).items():
        kinds = (int,) if key == "min_subgroup_class" else (int, float, str) if key == "flips" else (int, float)
        if value is not None and (isinstance(value, bool) or not isinstance(value, kinds)):
            raise UserError(f"gates[{key!r}] is a {type(value).__name__}: give a number (flips also takes '2%')")
    chosen = chosen_gates(**(gates or {}))
    run_job(
        job,
        fmt,
        prec,
        golden,
        calibration_size,
        overwrite,
        False,
        verbose,
        overwrite_flag="overwrite=True",
        gates=chosen,
        sign_key=Path(sign_key) if sign_key is not None else None,
        about=about(author, license),
    )
    from core.parity_file import ParityReport

    return ParityReport.load(Path(out)).data
