"""MODEL_CARD.md (Hugging Face model card layout) + MODEL_CARD.html and calibration.png in every export folder.

Every figure the card states is read from the files it summarises, at the moment it is written: the
folder's `spec.json` (intended use, threshold and rule, author, license) and `parity.json` (the evaluation,
calibration, quantization and parity of every artifact), and the training run's `metrics.json` when the
model came from `python -m train` (its validation and test metrics with their CIs). Nothing is typed in.

    write_card(folder, metrics_file=run / "metrics.json")    # pipeline.export_source does this

The Markdown starts with the YAML header that the Hugging Face Hub reads (`license`, `tags`, `metrics`,
`model-index`); the HTML is the same document, self-contained, with the reliability diagram embedded.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from core.document import Document
from core.io import write_text, write_with
from core.spec import ModelSpec
from export.report import _fmt as report_fmt
from export.report import _png

CARD = "MODEL_CARD.md"
CARD_HTML = "MODEL_CARD.html"
FIGURE = "calibration.png"
OUT_OF_SCOPE = [
    "Diagnosis, or any decision on treatment or on whether to see a clinician: it is not a medical device and "
    "has no regulatory clearance.",
    "Screening people without a clinician's oversight, or replacing a biopsy.",
    "Images unlike those it was evaluated on (clinical close-ups instead of dermoscopy, other cameras, "
    "skin types, ages or body sites that the evaluation data hold few of) until it is evaluated on them.",
    "Lesions other than the melanoma-versus-benign question it was trained on.",
]


def _fmt(value: Any, spec: str = ".4f") -> str:
    """The report's cell format ("-" for a missing or NaN value), four decimals unless told."""
    return report_fmt(value, spec)


def _ci(ci: Any) -> str:
    return f"[{_fmt(ci[0])}, {_fmt(ci[1])}]" if ci and None not in ci else "-"


def _yaml(value: Any, indent: int = 0) -> list[str]:
    """A small YAML writer for the header (strings as JSON strings, which YAML reads alike)."""
    pad = " " * indent
    lines: list[str] = []
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(item, dict | list) and item:
                lines += [f"{pad}{key}:", *_yaml(item, indent + 2)]
            else:
                lines.append(f"{pad}{key}: {_scalar(item)}")
    else:
        for item in value:
            if isinstance(item, dict | list) and item:
                sub = _yaml(item, indent + 2)
                lines += [f"{pad}- {sub[0].lstrip()}", *sub[1:]]
            else:
                lines.append(f"{pad}- {_scalar(item)}")
    return lines


def _scalar(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, int | float):
        return repr(float(value)) if isinstance(value, float) else str(value)
    if isinstance(value, dict | list):
        return "{}" if isinstance(value, dict) else "[]"
    return json.dumps(str(value))


def _artifact_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in rows if r["status"] not in ("reference", "unsupported")]


def calibration_png(rows: list[dict[str, Any]]) -> bytes | None:
    """The reliability diagram of the reference and of each int8 artifact (their bins from parity.json)."""
    chosen = [r for r in rows if r.get("calibration") and (r["status"] == "reference" or "int8" in r["precision"])]
    if not chosen:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(6, 6.4), height_ratios=(3, 1), sharex=True)
    top.plot([0, 1], [0, 1], color="#999", linestyle=":", label="perfect calibration")
    for r in chosen:
        curve = r["calibration"]["curve"]
        label = "PyTorch (reference)" if r["status"] == "reference" else f"{r['format']} {r['precision']}"
        top.plot(
            [b["mean_probability"] for b in curve],
            [b["fraction"] for b in curve],
            marker="o",
            linewidth=2.2 if r["status"] == "reference" else 1.2,
            label=f"{label}: ECE {r['calibration']['ece']:.3f}",
        )
    reference = chosen[0]["calibration"]
    width = 1.0 / reference["bins"]
    bottom.bar(
        [b["low"] + width / 2 for b in reference["curve"]],
        [b["n"] for b in reference["curve"]],
        width=width * 0.9,
        color="#7a8fd6",
    )
    top.set(ylabel="observed fraction of melanomas", xlim=(0, 1), ylim=(-0.02, 1.02), title="Reliability diagram")
    top.legend(fontsize=8, loc="upper left")
    bottom.set(xlabel="predicted probability of melanoma (bin mean)", ylabel="cases (reference)")
    bottom.set_yscale("log")
    return _png(fig)


def _header(spec: ModelSpec, summary: dict[str, Any], metrics: dict[str, Any] | None) -> str:
    provenance = spec.provenance or {}
    reference = summary["rows"][0]
    formats = sorted({r["format"] for r in _artifact_rows(summary["rows"])})
    results = [
        {"type": "roc_auc", "value": round(reference["auroc"], 4), "name": "AUROC (export's evaluation split)"},
        {"type": "ece", "value": round(reference["calibration"]["ece"], 4), "name": "expected calibration error"},
    ]
    if metrics and metrics.get("test"):
        results.insert(0, {"type": "roc_auc", "value": round(metrics["test"]["auroc"], 4), "name": "test AUROC"})
    header = {
        "license": provenance.get("license") or "unknown",
        "library_name": "melanoma-export",
        "pipeline_tag": "image-classification",
        "tags": ["melanoma", "dermatology", "skin-lesion", "medical-imaging", "research-only", *formats],
        "metrics": ["roc_auc", "ece"],
        "model-index": [
            {
                "name": spec.name,
                "results": [
                    {
                        "task": {"type": "image-classification", "name": "melanoma vs benign"},
                        "dataset": {"name": str(summary.get("data", "?")), "type": "dermoscopy"},
                        "metrics": results,
                    }
                ],
            }
        ],
    }
    return "\n".join(["---", *_yaml(header), "---", ""])


def document(spec: ModelSpec, summary: dict[str, Any], metrics: dict[str, Any] | None, metrics_name: str) -> Document:
    """The card as a Document (see the module docstring)."""
    provenance = spec.provenance or {}
    reference = summary["rows"][0]
    doc = Document(f"Model card: {spec.name}")
    doc.paragraph(
        "**Not a medical device.** Research and engineering use only; it must not be used to diagnose, to decide "
        "on treatment, or to reassure anyone about a lesion."
    )
    doc.heading("Model details").bullets(
        [
            f"Architecture: {spec.architecture}; inputs `image` ({spec.image.size} x {spec.image.size} RGB) and "
            f"`meta` ({spec.meta_size} values from {', '.join(spec.metadata.get('fields', [])) or 'no fields'})",
            f"Author: {provenance.get('author') or 'not stated (export.all --author)'}; license: "
            f"{provenance.get('license') or 'not stated (export.all --license)'}",
            f"Version {spec.version}, weights sha256 `{spec.weights_sha256[:16]}`, created {spec.created_at}, "
            f"code version {spec.code_version}",
        ]
    )
    doc.heading("Intended use").paragraph(str(provenance.get("intended_use") or "Not stated."))
    doc.heading("Out-of-scope use").bullets(OUT_OF_SCOPE)
    data = provenance.get("data") or {}
    training = [f"{data.get('name', '?')}: {data.get('description', 'no description recorded')}"]
    if metrics:
        info = metrics.get("data", {})
        training.append(
            f"{info.get('images', '?')} images, {info.get('malignant', '?')} melanomas; split "
            f"{info.get('split_rule', '?')}"
        )
        for part, counts in (info.get("splits") or {}).items():
            training.append(f"{part}: {counts.get('images')} images, {counts.get('malignant')} melanomas")
    else:
        training.append("Trained outside this toolkit: see the model's own documentation for its training data.")
    if data.get("synthetic") or (metrics and metrics.get("data", {}).get("synthetic")):
        training.append("**Synthetic images**: procedurally generated lesions, not photographs of patients.")
    doc.heading("Training data").bullets(training)
    doc.heading("Evaluation data").paragraph(
        f"{summary['n']} cases ({summary['n_positive']} melanomas) of {summary.get('data', '?')}, held out from "
        "training: every artifact below was judged on them against the PyTorch model."
    )
    doc.heading("Metrics")
    table = [
        [
            "export's evaluation split (PyTorch)",
            summary["n"],
            _fmt(reference["auroc"]),
            _ci(reference.get("auroc_ci95")),
            _fmt(reference.get("auprc")),
            _ci(reference.get("auprc_ci95")),
            "-",
            "-",
        ]
    ]
    for split in ("val", "test"):
        m = (metrics or {}).get(split)
        if m:
            table.append(
                [
                    f"training run, {split}",
                    m.get("n"),
                    _fmt(m.get("auroc")),
                    _ci(m.get("auroc_ci95")),
                    _fmt(m.get("auprc")),
                    _ci(m.get("auprc_ci95")),
                    _fmt(m.get("sensitivity")),
                    _fmt(m.get("specificity")),
                ]
            )
    headers = ["evaluated on", "cases", "AUROC", "AUROC 95% CI", "AUPRC", "AUPRC 95% CI"]
    doc.table([*headers, "sensitivity", "specificity"], table)
    doc.paragraph(
        "CIs are percentile bootstraps over cases (1,000 resamples). "
        + (f"Training-run figures from `{metrics_name}`." if metrics else "No training-run metrics: trained elsewhere.")
    )
    doc.heading("Subgroup results")
    groups: dict[str, dict[str, Any]] = {}
    for r in summary["rows"]:
        for g in r.get("subgroups") or []:
            groups.setdefault(g["group"], g)
    if groups:
        doc.table(
            ["subgroup", "cases", "melanomas", "AUROC (PyTorch)"],
            [[name, g["n"], g["n_positive"], _fmt(g["auroc_reference"])] for name, g in sorted(groups.items())],
        )
    else:
        doc.paragraph("No subgroup of the evaluation split has enough melanomas and benign cases to be judged.")
    doc.heading("Calibration")
    doc.paragraph(
        f"Probability = {spec.outputs.probability}, temperature {spec.outputs.temperature:g}. Expected calibration "
        f"error (ECE, {reference['calibration']['bins']} equal-width bins) of the reference on the evaluation "
        f"split: **{reference['calibration']['ece']:.4f}** (largest bin gap {reference['calibration']['mce']:.4f})."
    )
    doc.image(FIGURE, "Reliability diagram: the reference and each int8 artifact")
    doc.heading("Decision threshold").paragraph(
        f"Positive when probability >= **{spec.outputs.threshold:.6g}**: {spec.outputs.threshold_rule}."
        + "".join(
            f" Alternative `{name}`: {_fmt(t.get('value'), '.6g')} ({t.get('rule')})."
            for name, t in spec.outputs.thresholds.items()
            if t.get("value") != spec.outputs.threshold
        )
    )
    rows = []
    for r in _artifact_rows(summary["rows"]):
        rows.append(
            [
                f"`{r['file']}`" if r.get("file") else "-",
                r["format"],
                r["precision"],
                r["status"],
                _fmt(r.get("auroc_delta"), "+.5f"),
                _fmt(r.get("flips"), "d"),
                _fmt((r.get("calibration") or {}).get("ece")),
                _fmt(r.get("float_modules"), "d"),
                _fmt(r.get("activation_bits"), "d"),
            ]
        )
    doc.heading("Quantization and parity per artifact")
    headers = ["artifact", "format", "precision", "status", "dAUROC", "flips", "ECE", "float modules", "act. bits"]
    doc.table(headers, rows, status_column="status")
    doc.paragraph("Full figures, gates and the int8 search: `export_report.html` and `parity.json`.")
    limitations = [
        f"Evaluated on {summary['n']} cases; small subgroups carry wide uncertainty.",
        "Parity was measured on the machine that exported; `not-run` rows were converted but not run there.",
        "Metadata the model was trained with must be encoded exactly as the embedded contract says; "
        "missing values have their own encoding.",
    ]
    if data.get("synthetic") or (metrics and metrics.get("data", {}).get("synthetic")):
        limitations.insert(0, "Trained and evaluated on synthetic images: its figures say nothing about patients.")
    doc.heading("Limitations").bullets(limitations)
    return doc


def write_card(folder: Path, metrics_file: Path | None = None) -> Path:
    """MODEL_CARD.md, MODEL_CARD.html and calibration.png in `folder`, from its spec.json and parity.json and
    `metrics_file` (a training run's metrics.json) when given and present."""
    spec = ModelSpec.load(folder / "spec.json")
    summary = json.loads((folder / "parity.json").read_text(encoding="utf-8"))
    metrics = None
    if metrics_file is not None and metrics_file.is_file():
        metrics = json.loads(metrics_file.read_text(encoding="utf-8"))
    figure = calibration_png(summary["rows"])
    if figure is not None:
        write_with(folder / FIGURE, lambda tmp: tmp.write_bytes(figure))
    doc = document(spec, summary, metrics, str(metrics_file) if metrics else "")
    write_text(folder / CARD, _header(spec, summary, metrics) + doc.markdown())
    write_text(folder / CARD_HTML, doc.html(images={FIGURE: figure} if figure else None))
    return folder / CARD
