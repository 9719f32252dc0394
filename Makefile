# Every target creates .venv when it is missing and installs the project into it
# idempotently (re-installed only when pyproject.toml changes).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.lmforge-installed

.PHONY: quickstart test test-slow bench lint clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

quickstart: $(STAMP)
	$(VENV)/bin/lmforge quickstart

test: $(STAMP)
	$(PY) -m pytest -q --durations=15

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow --durations=15

bench: $(STAMP)
	@set -e; for b in bench/*.py; do echo "== $$b"; $(PY) $$b; done

lint: $(STAMP)
	$(VENV)/bin/ruff check .

clean:
	rm -rf runs/quickstart .pytest_cache
