# Everything runs from a virtual environment made here from requirements.txt (pinned), once.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install test run bench

install: $(VENV)/.installed

$(VENV)/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.txt
	$(BIN)/pip install --quiet --no-deps -e .
	touch $@

test: install
	$(BIN)/python -m pytest

run: install
	$(BIN)/python -m devstack run

bench: install
	$(BIN)/python -m devstack.bench $(BENCH_ARGS)
