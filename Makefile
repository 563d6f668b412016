# Newsflow: `make demo` runs the whole pipeline locally; `make test` runs every test.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
UV_VERSION := 0.13.8
export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := $(VENV)

.PHONY: install demo test lint typecheck unit integration api stack-up stack-down stack-status clean

install: $(VENV)/.installed ## Create .venv with the project and its locked dependencies

# Bytecode is compiled once here: where PYTHONDONTWRITEBYTECODE is set (many CI machines and
# images) every process would otherwise compile each module it imports, about 0.5 s of CPU for
# a worker or `newsflow extract`, as the Docker image already avoids (UV_COMPILE_BYTECODE).
$(VENV)/.installed: pyproject.toml uv.lock
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@test -x $(BIN)/uv || { $(BIN)/python -m pip --version >/dev/null 2>&1 || $(BIN)/python -m ensurepip --upgrade >/dev/null; \
	  $(BIN)/python -m pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)"; }
	$(BIN)/uv sync --frozen --compile-bytecode --python $(BIN)/python
	@touch $@

demo: install ## Start the stack, run the outlets' DAGs, search for the seed story
	$(BIN)/newsflow demo

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-cache

typecheck: install
	$(BIN)/mypy

test: lint typecheck ## Lint, type-check, then all tests (starts Kafka, Elasticsearch, Airflow)
	$(BIN)/pytest

unit: install
	$(BIN)/pytest tests/unit

api: install ## Serve the search API and page on 127.0.0.1:8000 (needs keys or NEWSFLOW_API_AUTH=off)
	$(BIN)/newsflow api

stack-up: install
	$(BIN)/newsflow stack up

stack-down: install
	$(BIN)/newsflow stack down

stack-status: install
	$(BIN)/newsflow stack status

clean: install ## Stop the stack and delete its data
	$(BIN)/newsflow stack down --purge
	rm -rf .run
