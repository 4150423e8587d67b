# medfl — run `make help` for the targets.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
EXAMPLE ?= examples/heart-disease/experiment.yaml
export FLWR_TELEMETRY_ENABLED := 0

.DEFAULT_GOAL := help
.PHONY: help install run transfer-example test test-fast lint format bench clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-17s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev]'
	@touch $@

install: $(STAMP) ## create .venv with the pinned dependencies (CPU PyTorch) if missing

run: $(STAMP) ## run the heart-disease example on the bundled UCI data (4 hospitals)
	$(VENV)/bin/medfl run $(EXAMPLE)

transfer-example: $(STAMP) ## the transfer-learning example: two hospitals train, two others start from it
	MEDFL=$(VENV)/bin/medfl bash examples/transfer-learning/run.sh

test: $(STAMP) ## run the whole test suite (Flower/Ray tests included)
	$(PY) -m pytest

test-fast: $(STAMP) ## the suite without the slow tests (Ray; the deployment's processes)
	$(PY) -m pytest -m "not ray and not deploy"

lint: $(STAMP) ## ruff (format + lint), mypy and the import-layer contracts
	$(VENV)/bin/ruff format --check medfl tests bench
	$(VENV)/bin/ruff check medfl tests bench
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

format: $(STAMP) ## reformat the code with ruff
	$(VENV)/bin/ruff format medfl tests bench
	$(VENV)/bin/ruff check --fix medfl tests bench

bench: $(STAMP) ## benchmarks: FLamby accuracy, engine and deployment speed, transfer learning
	bash bench/run_all.sh

clean: ## remove caches and runs/ (keeps .venv)
	rm -rf runs examples/transfer-learning/source-run .pytest_cache .mypy_cache .ruff_cache
