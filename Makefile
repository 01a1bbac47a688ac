# The two commands a newcomer needs: `make demo` and `make test`. Each sets itself up first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
MODEL ?= efficientnet_lite0

.PHONY: setup demo test test-fast lint format study-quick android-core android-assets clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

## Train EfficientNet-Lite0 (offline ImageNet weights) on the embedded SYNTHETIC set, export it to every
## format and precision with parity checks (replacing an earlier demo export), then benchmark every artifact.
demo: setup
	$(PY) -m train --model efficientnet_lite0 --epochs 2 --image-size 128
	$(PY) -m export.all --model efficientnet_lite0 --precision fp32,fp16,int8 --overwrite
	$(PY) -m benchmark --model efficientnet_lite0
	@echo "reports: dist/efficientnet_lite0/export_report.html and dist/efficientnet_lite0/benchmark.html"

## Lint, then the whole test suite (slow tests, the Kotlin JVM tests and the browser tests included).
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

## The paper's study on the embedded set, offline (Table 1, Figures 3 and 4 in studies/quick/).
study-quick: setup
	$(PY) -m train.study --out studies/quick

## Compile the Android app's Kotlin :core module and android_demo/bin/preprocess (Debian's kotlinc).
android-core:
	android_demo/build-core.sh

## Copy dist/$(MODEL)'s recommended .tflite, its spec and golden vectors into the Android app's assets.
android-assets:
	$(PYTHON) android_demo/copy-assets.py dist/$(MODEL)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache android_demo/build
