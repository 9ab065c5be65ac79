# edge-bridge: `make run` shows the whole system, `make test` runs every test.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint format bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

run:
	scripts/system-deps.sh run
	$(MAKE) --no-print-directory $(STAMP)
	$(BIN)/edge-bridge demo

test:
	scripts/system-deps.sh test
	$(MAKE) --no-print-directory $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	node --test tests/js/
	$(BIN)/pytest

lint:
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format:
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench:
	$(BIN)/python bench/sse_fanout.py
	$(BIN)/python bench/ingest.py

clean:
	rm -rf $(VENV) data test-artifacts .pytest_cache .ruff_cache
