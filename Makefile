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

# The default suite on two processes (pytest-xdist), each test file on one of them so
# that module fixtures are built once; each process gets an equal share of the cores
# (tests/conftest.py).
test: $(STAMP)
	$(PY) -m pytest -q -n 2 --dist loadfile --durations=15

# The slow quality runs on two processes too, each taking the next test when it is free
# (worksteal): two one-thread trainings do a third more work than one two-thread
# training, and several of these runs are one-thread by design. Then the `alone` tests,
# which need the whole machine (timing, servers, several processes), one at a time.
test-slow: $(STAMP)
	$(PY) -m pytest -q -m "slow and not alone" -n 2 --dist worksteal --durations=15
	$(PY) -m pytest -q -m "slow and alone" --durations=10

# The speed benchmarks at quick sizes: under 10 minutes in all on 2 cores, also on CPUs
# where bf16 is emulated (AVX2 only), whose bf16 rows are then skipped with the reason.
# Every JSON line carries the machine (cpu, isa, isa_caps, threads). docs/benchmarks.md
# gives the full-size commands, and bench/recipes.py (hours) is run by hand.
bench: $(STAMP)
	@echo "== bench/train_throughput.py --quick"; $(PY) bench/train_throughput.py --quick
	@echo "== bench/decode.py --quick"; $(PY) bench/decode.py --quick
	@echo "== bench/word2vec.py (small corpora)"; \
	  $(PY) bench/word2vec.py --world 50000 --stdlib-tokens 500000
	@echo "== bench/recurrent.py"; $(PY) bench/recurrent.py
	@echo "== bench/prepare_memory.py --sizes 50"; $(PY) bench/prepare_memory.py --sizes 50

lint: $(STAMP)
	$(VENV)/bin/ruff check .

clean:
	rm -rf runs/quickstart .pytest_cache
