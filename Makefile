# The two commands a newcomer needs: `make demo` and `make test`. Each sets itself up first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup demo test test-fast lint format clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

## Train EfficientNet-Lite0 (offline ImageNet weights) on the embedded SYNTHETIC set, export it to every
## format and precision with parity checks, then benchmark every artifact against PyTorch eager.
demo: setup
	$(PY) -m train --model efficientnet_lite0 --epochs 2 --image-size 128
	$(PY) -m export.all --model efficientnet_lite0 --precision fp32,fp16,int8 || echo "some artifacts failed their parity gate: see the report"
	$(PY) -m benchmark --model efficientnet_lite0
	@echo "reports: dist/efficientnet_lite0/export_report.md and dist/efficientnet_lite0/benchmark.html"

## Lint, then the whole test suite (slow tests included).
test: setup
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m pytest

test-fast: setup
	$(PY) -m pytest -m "not slow"

lint: setup
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: setup
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
