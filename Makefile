# Shortcuts for ./run.sh and ./test.sh (the README's two commands, which need no make).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: run test lint format bench clean

run:
	./run.sh

test:
	./test.sh

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
