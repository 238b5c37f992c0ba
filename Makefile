# StockPulse Stream. Two commands on a fresh machine: `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: venv demo test unit integration lint stack-up stack-down stack-status topics bench clean wasm wasm-update \
	browser chaos

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

# Headless Chromium for the browser tests (WASM module, dashboard): Debian's package, installed when missing
# and we are root; otherwise those tests skip and say how to install it.
browser:
	@if ! command -v chromium >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing chromium (Debian package) for the browser tests"; \
	    (apt-get install -y -q --no-install-recommends chromium >/dev/null 2>&1 || \
	     (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q --no-install-recommends chromium >/dev/null 2>&1)) \
	    || echo "could not install chromium: the browser tests will skip"; \
	  else echo "chromium missing and not root: the browser tests will skip (apt-get install -y chromium)"; fi; \
	fi

# The WASM module is committed; `make wasm` rebuilds it and fails if it differs from the committed bytes.
wasm: venv
	$(BIN)/python wasm/build.py --check

wasm-update: venv
	$(BIN)/python wasm/build.py --update

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

unit: venv
	$(BIN)/pytest -m "not integration" $(PYTEST_ARGS)

integration: stack-up
	$(BIN)/pytest -m integration $(PYTEST_ARGS)

test: lint stack-up browser wasm
	$(BIN)/stockpulse schemas check
	$(BIN)/pytest $(PYTEST_ARGS)

# The chaos suite at full strength: every fault, STOCKPULSE_CHAOS_ROUNDS times (make test runs one round).
chaos: stack-up
	STOCKPULSE_CHAOS_ROUNDS=$${STOCKPULSE_CHAOS_ROUNDS:-3} $(BIN)/pytest tests/chaos -s $(PYTEST_ARGS)

bench: stack-up
	$(BIN)/stockpulse bench all

clean: stack-down
	rm -rf .stack .mypy_cache .ruff_cache .pytest_cache
