# Two commands on a fresh machine: `make run` serves on SQLite, `make test` runs everything.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test lint typecheck bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(VENV)/.installed $@

# LangGraph, for the engine bench and the LangGraph-oracle tests, and OpenTelemetry, for the
# trace tests (CI installs both; without them those tests skip with the reason).
$(VENV)/.installed-bench: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev,bench,otel]'
	touch $(VENV)/.installed $(VENV)/.installed-dev $@

run: $(VENV)/.installed
	$(BIN)/graphflow serve --host $(HOST) --port $(PORT)

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(VENV)/.installed-dev
	$(BIN)/mypy

test: lint typecheck
	$(BIN)/python -m pytest

bench: $(VENV)/.installed-bench
	$(BIN)/python bench/engine_bench.py
	$(BIN)/python bench/service_bench.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache graphflow.db*
