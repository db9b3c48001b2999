# make up     start everything locally (embedded Postgres + Temporal dev server + worker + API)
#             e.g. make up ARGS="--clock simulated --port 8001"
# make test   run the test suite (ARGS are passed to pytest)
# make lint   ruff check, ruff format --check, mypy
# make fuzz   10,000+ generated requests against a full `minju up --clock simulated`
#             e.g. make fuzz ARGS="--requests 50000" or ARGS="--url http://127.0.0.1:8000"
# make bench  the benchmarks (bench/), each figure beside a baseline measured in the same run
#             e.g. make bench ARGS="ballots --seconds 20"; installs Debian's wrk when it can
#
# The virtualenv is created in .venv on first use and the project (re)installed into it
# whenever pyproject.toml is newer than .venv/.installed.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
ARGS ?=

.PHONY: up test lint install fuzz bench

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -e '.[dev]'
	@# byte-compiled once, also where PYTHONDONTWRITEBYTECODE is set: the workflow sandbox
	@# imports a workflow's modules afresh for every run it starts (a cold case, a replay)
	$(BIN)/python -m compileall -q minju workflows activities api models rulebooks >/dev/null
	touch $(STAMP)

install: $(STAMP)

up: $(STAMP)
	$(BIN)/minju up $(ARGS)

test: $(STAMP)
	$(BIN)/pytest -q $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy .

fuzz: $(STAMP)
	$(BIN)/python -m fuzz $(ARGS)

bench: $(STAMP)
	@command -v wrk >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
		&& timeout 300 apt-get install -y --no-install-recommends wrk >/dev/null 2>&1; } \
		|| echo "wrk is not installed: HTTP load comes from an async client instead"
	$(BIN)/python -m bench $(ARGS)
