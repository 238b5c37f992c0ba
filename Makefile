# StockPulse Stream. Two commands on a fresh machine: `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: venv demo test unit integration lint stack-up stack-down stack-status topics bench clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -U pip setuptools wheel
	$(BIN)/pip install -q --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

stack-up: venv
	$(BIN)/stockpulse stack up

stack-down:
	@if [ -x $(BIN)/stockpulse ]; then $(BIN)/stockpulse stack down; fi

stack-status: venv
	$(BIN)/stockpulse stack status

topics: stack-up
	$(BIN)/stockpulse topics create

demo: topics
	$(BIN)/stockpulse demo

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

unit: venv
	$(BIN)/pytest -m "not integration" $(PYTEST_ARGS)

integration: stack-up
	$(BIN)/pytest -m integration $(PYTEST_ARGS)

test: lint stack-up
	$(BIN)/stockpulse schemas check
	$(BIN)/pytest $(PYTEST_ARGS)

bench: stack-up
	$(BIN)/stockpulse bench all

clean: stack-down
	rm -rf .stack .mypy_cache .ruff_cache .pytest_cache
