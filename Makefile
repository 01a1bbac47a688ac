# The two commands a newcomer needs: `make demo` and `make test`. Each sets itself up first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
MODEL ?= efficientnet_lite0

.PHONY: setup witness signing phone-tools web-deps demo test test-fast lint format study-quick zoo android-core android-assets web web-bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

## TensorFlow's tf.lite, the second runtime that witnesses every .tflite (export/witness.py), in its own
## environment: imported beside torch it crashes torch's triton (coremltools imports it when installed).
WITNESS_VENV ?= .venv-witness
WITNESS_STAMP := $(WITNESS_VENV)/.installed
$(WITNESS_STAMP):
	$(PYTHON) -m venv $(WITNESS_VENV)
	$(WITNESS_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(WITNESS_VENV)/bin/python -m pip install --quiet tensorflow-cpu==2.21.0
	touch $(WITNESS_STAMP)

witness: $(WITNESS_STAMP)

## model-signing, the reference of the signature format export.sign writes, in its own environment: it cannot
## share one with litert-torch (typing-extensions). The tests hold every signature to its verifier.
SIGNING_VENV ?= .venv-signing
SIGNING_STAMP := $(SIGNING_VENV)/.installed
$(SIGNING_STAMP):
	$(PYTHON) -m venv $(SIGNING_VENV)
	$(SIGNING_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(SIGNING_VENV)/bin/python -m pip install --quiet model-signing==1.1.1 pyopenssl==26.4.0
	touch $(SIGNING_STAMP)

signing: $(SIGNING_STAMP)

## The browser demo's pinned runtimes (npm ci), when Node.js is here; its tests say what to install otherwise.
web_demo/node_modules/.package-lock.json: web_demo/package-lock.json
	@if command -v npm >/dev/null 2>&1; then cd web_demo && npm ci --no-audit --no-fund --loglevel=error; \
	else echo "npm not found: the web_demo tests will skip (install: sudo apt-get install -y nodejs npm)"; fi

web-deps: web_demo/node_modules/.package-lock.json

## Train EfficientNet-Lite0 (offline ImageNet weights) on the embedded SYNTHETIC set, export it to every
## format and precision with parity checks (replacing an earlier demo export), then benchmark every artifact.
demo: setup witness
	$(PY) -m train --model efficientnet_lite0 --epochs 2 --image-size 128
	$(PY) -m export.all --model efficientnet_lite0 --precision fp32,fp16,int8 --overwrite
	$(PY) -m benchmark --model efficientnet_lite0
	@echo "reports: dist/efficientnet_lite0/export_report.html and dist/efficientnet_lite0/benchmark.html"

## Debian's kotlinc, junit4, gson, chromium, Node.js and npm for the phone-side tests: installed when missing
## and this machine allows it (root or passwordless sudo, apt-get); otherwise the command to run is printed.
phone-tools:
	@scripts/phone-tools.sh

## Lint, then the whole test suite (slow tests, the Kotlin JVM tests and the browser tests included).
test: phone-tools setup witness signing web-deps
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m pytest

test-fast: setup witness signing
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

## The card's backbones at 224 px: train briefly, export every format and precision, benchmark, one report
## (dist/zoo/zoo.html). Not part of demo: about an hour here.
zoo: setup
	$(PY) -m benchmark.zoo

## Compile the Android app's Kotlin :core module and android_demo/bin/preprocess (Debian's kotlinc).
android-core:
	android_demo/build-core.sh

## Copy dist/$(MODEL)'s recommended .tflite, its spec and golden vectors (and model.sig) into the Android app's
## assets; TRUST=keys/signing_key.pub pins that key: the app then runs only models signed with it.
android-assets:
	$(PYTHON) android_demo/copy-assets.py dist/$(MODEL) $(if $(TRUST),--trust $(TRUST))

## Serve the browser demo of an exported model: make web MODEL=efficientnet_lite0 [PORT=8000] [LAN=1 for a phone]
## [TRUST=keys/signing_key.pub: the page then runs only models signed with that key (export.sign)]
web: setup web-deps
	$(PY) web_demo/build.py --model $(MODEL) --serve $(or $(PORT),8000) $(if $(LAN),--lan) $(if $(TRUST),--trust $(TRUST))

## Load time and p50 latency of the page's artifacts in headless Chromium, WebAssembly with 1 thread and with
## N = min(cores, 4) threads, and WebGPU when offered ([GPU=1]: Chromium without --disable-gpu), each row with
## the golden cases' parity; prints a table, writes dist/$(MODEL)/benchmark_web.json
web-bench: setup web-deps
	$(PY) web_demo/bench.py --model $(MODEL) $(if $(GPU),--gpu)

clean:
	rm -rf $(VENV) $(WITNESS_VENV) $(SIGNING_VENV) .pytest_cache .ruff_cache android_demo/build web_demo/node_modules web_demo/dist
