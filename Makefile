# Meridian: the two commands a newcomer needs.
#   make run    start the tracker on its embedded default (in-memory store, no Kafka)
#   make test   install everything the tests need, then run the whole suite
PYTHON ?= python3
VENV   ?= .venv
PORT   ?= 6969
BIN    := $(VENV)/bin

.PHONY: run test lint deps venv test-venv system-deps kafka-jars clean

run: venv
	$(BIN)/meridian serve --port $(PORT)

test: deps lint
	$(BIN)/python -m pytest -p no:cacheprovider $(PYTEST_ARGS)

lint: test-venv
	$(BIN)/ruff check services tests
	$(BIN)/mypy services/core

deps: test-venv system-deps kafka-jars

venv: $(VENV)/.runtime
$(VENV)/.runtime: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e .
	touch $@

test-venv: $(VENV)/.test
$(VENV)/.test: pyproject.toml $(VENV)/.runtime
	$(BIN)/pip install -q -e '.[test]'
	touch $@

system-deps:
	tools/install-system-deps.sh

kafka-jars:
	@if [ -x tools/kafka/kafka-fetch.sh ]; then tools/kafka/kafka-fetch.sh; fi

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
