# Two entry points, each creating .venv and installing trajflow into it:
#   make demo  - leave-one-timepoint-out benchmark on the EB data (table printed, figure written)
#   make test  - lint and the test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The CPU build of torch installs from local disk where available; any torch >= 2.1 works.
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.installed

.PHONY: install demo test lint format clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q "$(TORCH_SPEC)" || $(BIN)/python -m pip install -q torch
	$(BIN)/python -m pip install -q -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/trajflow benchmark eb --methods ot-cfm ot-mfm sb-cfm i-cfm --seeds 0 1 2 --protocol paper \
		--out results/eb_leave_one_out.csv

test: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

format: $(STAMP)
	$(BIN)/ruff format src tests benchmarks
	$(BIN)/ruff check --fix src tests benchmarks

clean:
	rm -rf $(VENV) results .pytest_cache .ruff_cache

# make docs - the documentation site (docs/), built from scratch with warnings as errors into
# docs/_build/html; installs the docs extra into the venv first.
DOCS_STAMP := $(VENV)/.installed-docs

.PHONY: docs

$(DOCS_STAMP): $(STAMP) pyproject.toml
	$(BIN)/python -m pip install -q -e ".[docs]"
	touch $(DOCS_STAMP)

docs: $(DOCS_STAMP)
	rm -rf docs/_build docs/generated
	$(BIN)/sphinx-build -W --keep-going -b html docs docs/_build/html
