# cgpt task runner. `make pipeline` and `make test` each set up the venv first (idempotent);
# `make test` lints (ruff) before it runs the tests.
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
# On a machine without the local CPU wheel, a CPU-only torch avoids a multi-GB CUDA download:
#   make setup TORCH_INDEX=https://download.pytorch.org/whl/cpu
TORCH_INDEX ?=

.PHONY: setup pipeline family flow family-flow sweep lint test test-fast bench

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "torch==2.13.0" $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(BIN)/python -m pip install -q -e ".[test,crosscheck]"
	touch $@

# The single model (export and what it needs): a bare `dvc repro` is the same, the family being its own
# DVC project (family/dvc.yaml).
pipeline: setup
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/dvc repro export
	$(BIN)/cgpt summary

# The model family (params.yaml `family:`, docs/family.md): its own DVC project in family/ (a subrepo).
# The corpus comes from the root project (`dvc repro clean`), then the family tokenizes it its own way,
# trains and evaluates every member and fits the law. `cd family && dvc status` etc. show the family.
family: setup
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/dvc repro clean
	cd family && PATH="$(CURDIR)/$(BIN):$$PATH" $(CURDIR)/$(BIN)/dvc repro scaling
	cat family/scaling/table.md

flow: setup
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python flows/pipeline.py

family-flow: setup
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python flows/family.py

# the µP sweep on the proxy, the transfer check, and family.mup in params.yaml (docs/mup.md)
sweep: setup
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/dvc repro clean
	cd family && PATH="$(CURDIR)/$(BIN):$$PATH" $(CURDIR)/$(BIN)/dvc repro tokenize
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python flows/mup_sweep.py

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# Tests in tiers (tests/unit/<room>/ mirrors cgpt/, tests/e2e/ runs the real pipeline): `make test` runs
# them all after the linters (CI), `make test-fast` the tests not marked slow (unit tiers, ~2 minutes).
# Two pytest workers (pytest-xdist), a test file per worker at a time: most of an end-to-end test is
# one-core work (interpreter start-up, imports, DVC), so two run side by side (13 vs 20 minutes).
PYTEST_WORKERS ?= 2

test: lint
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist loadfile

test-fast: setup
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist loadfile -m "not slow" tests/unit

bench: setup
	$(BIN)/python benchmarks/model_throughput.py
	$(BIN)/python benchmarks/tokenize_throughput.py
	$(BIN)/python benchmarks/clean_throughput.py
	$(BIN)/python benchmarks/train_throughput.py
	$(BIN)/python benchmarks/family_threads.py
