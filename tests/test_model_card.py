"""MODEL_CARD.md / .html and calibration.png: in every export, their figures read from the files they summarise."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import yaml

from tests.conftest import PHONE_EXPORT_LICENSE


def _header(card: str) -> dict:
    assert card.startswith("---\n"), card[:80]
    return yaml.safe_load(card.split("---\n")[1])


@pytest.mark.slow
def test_every_export_has_a_model_card_stating_its_files_figures(phone_export: Path, tiny_run: Path) -> None:
    card = (phone_export / "MODEL_CARD.md").read_text()
    summary = json.loads((phone_export / "parity.json").read_text())
    metrics = json.loads((tiny_run / "metrics.json").read_text())
    header = _header(card)
    assert header["license"] == PHONE_EXPORT_LICENSE
    assert {"melanoma", "onnx", "tflite"} <= set(header["tags"])
    (result,) = header["model-index"][0]["results"]
    stated = {m["name"]: m["value"] for m in result["metrics"]}
    assert stated["test AUROC"] == round(metrics["test"]["auroc"], 4)
    reference = summary["rows"][0]
    assert stated["expected calibration error"] == round(reference["calibration"]["ece"], 4)
    for heading in ("Intended use", "Out-of-scope use", "Training data", "Evaluation data", "Metrics"):
        assert f"## {heading}" in card
    for heading in ("Subgroup results", "Calibration", "Decision threshold", "Quantization and parity per artifact"):
        assert f"## {heading}" in card
    assert "Not a medical device" in card and "## Limitations" in card
    assert f"**{reference['calibration']['ece']:.4f}**" in card
    assert f"{metrics['test']['auroc']:.4f}" in card and f"{metrics['val']['auroc']:.4f}" in card
    spec = json.loads((phone_export / "spec.json").read_text())
    assert f"**{spec['outputs']['threshold']:.6g}**" in card and spec["outputs"]["threshold_rule"] in card
    int8 = [r for r in summary["rows"] if r["precision"] == "int8" and r.get("calibration")]
    assert int8, "the phone export has int8 rows with their calibration"
    for r in summary["rows"][1:]:
        if r.get("calibration"):
            assert f"| `{r['file']}` | {r['format']} | {r['precision']} | {r['status']} |" in card
            assert f"{r['calibration']['ece']:.4f}" in card
    assert (phone_export / "calibration.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_a_number_changed_in_metrics_json_or_parity_json_shows_in_the_card(
    phone_export: Path, tiny_run: Path, tmp_path: Path
) -> None:
    from export.model_card import write_card

    folder = tmp_path / "export"
    shutil.copytree(phone_export, folder)
    metrics = json.loads((tiny_run / "metrics.json").read_text())
    metrics["test"]["auroc"] = 0.4321
    metrics["val"]["sensitivity"] = 0.1234
    (tmp_path / "metrics.json").write_text(json.dumps(metrics))
    summary = json.loads((folder / "parity.json").read_text())
    summary["rows"][0]["calibration"]["ece"] = 0.0777
    (folder / "parity.json").write_text(json.dumps(summary))
    write_card(folder, tmp_path / "metrics.json")
    card = (folder / "MODEL_CARD.md").read_text()
    assert "0.4321" in card and "0.1234" in card and "**0.0777**" in card
    stated = {m["name"]: m["value"] for m in _header(card)["model-index"][0]["results"][0]["metrics"]}
    assert stated["test AUROC"] == 0.4321 and stated["expected calibration error"] == 0.0777
    assert "0.4321" in (folder / "MODEL_CARD.html").read_text()


@pytest.mark.slow
def test_the_card_renders_in_a_browser(phone_export: Path) -> None:
    chromium = shutil.which("chromium")
    if chromium is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed, and CI must render the model card: sudo apt-get install chromium")
        pytest.skip("chromium is not installed: sudo apt-get install -y chromium")
    from playwright.sync_api import sync_playwright

    args = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"]
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=[*args, "--no-first-run"], headless=True)
        try:
            page = browser.new_page()
            page.goto((phone_export / "MODEL_CARD.html").as_uri())
            assert page.locator("h1").inner_text().startswith("Model card:")
            assert page.locator("h2").count() >= 10
            assert page.locator("table").count() >= 3
            width = page.evaluate("document.querySelector('img').naturalWidth")
            assert width > 100, "calibration.png is embedded and decodes"
        finally:
            browser.close()
