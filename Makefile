# Two-command quick start:  `make demo`  and  `make test`.  Each does its own set-up.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.aekit-installed

.PHONY: setup demo test test-quick test-floors lint bench clean

$(STAMP): pyproject.toml constraints.txt
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first, from the pinned CPU wheel; then the package (its torch range is already satisfied)
	$(BIN)/pip install -q -c constraints.txt torch==2.13.0
	$(BIN)/pip install -q -c constraints.txt -e ".[test]"
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/aekit demo --out runs/demo

test: $(STAMP)
	$(BIN)/python -m pytest

# everything but the tests marked slow (pyproject.toml): under 3 minutes on 2 CPU cores; CI runs `make test`
test-quick: $(STAMP)
	$(BIN)/python -m pytest -m "not slow"

# the quick tests in a separate venv (build/venv-floors) with every dependency at its pyproject.toml floor
# (torch excepted: constraints.txt's CPU wheel); see scripts/test_floors.sh
test-floors:
	PY=$(PY) scripts/test_floors.sh

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks scripts
	$(BIN)/mypy  # files and settings: [tool.mypy] in pyproject.toml

bench: $(STAMP)
	$(BIN)/python benchmarks/bench.py train --out BENCHMARKS-local.md

clean:
	rm -rf $(VENV) runs build *.egg-info
