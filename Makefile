# Two commands for a newcomer: `make run` (set up, then dvc repro on the bundled digits) and `make test`.
VENV ?= .venv
PYTHON ?= python3
BIN := $(abspath $(VENV))/bin
export PATH := $(BIN):$(PATH)

.PHONY: setup run test test-fast bench ui

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch first and pinned: an unpinned torch would pull a CUDA build of several GB onto a CPU machine
	$(BIN)/python -m pip install --quiet -c constraints.txt torch
	# the distribution was called carbon-budget-pipeline and installed a top-level `pipeline`: gone from old venvs too
	# (before installing: both own the `carbon-budget` script)
	$(BIN)/python -m pip uninstall --quiet --yes carbon-budget-pipeline 2>/dev/null || true
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[pipeline,lightning,transformers,dev,docs]'
	touch $@

setup: $(VENV)/.installed

run: setup
	dvc repro

# Two processes share the machine for most tests (one test file each at a time, so module fixtures stay put);
# the tests that measure this machine's speed or power then run alone.
test: setup
	python -m pytest -n 2 --dist loadfile -m "not serial"
	python -m pytest -p no:xdist -m serial

# The unit loop: everything but real `dvc repro` runs, servers and machine measurements (under a minute here).
test-fast: setup
	python -m pytest -n 2 -m "not integration and not serial"

bench: setup
	python -m benchmarks.pipeline_overhead
	python -m benchmarks.budget_callbacks

ui: setup
	mlflow ui --backend-store-uri sqlite:///mlflow.db --host 127.0.0.1 --port 5000
