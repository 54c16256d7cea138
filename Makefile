# Two commands do everything: `make demo` and `make test`. Each sets up what it needs, once.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
DATA_STAMP := data/.verified

.PHONY: demo test test-fast test-newest lint data setup clean-runs results

# The GPU machine's stack (Python 3.12; torch 2.11, jax 0.11, no tensorflow-datasets), run from the tree as there
PY312       ?= $(firstword $(wildcard $(HOME)/.pyenv/versions/3.12*/bin/python3.12) $(shell command -v python3.12))
NEWEST_VENV := .venv-newest
NEWEST_STAMP := $(NEWEST_VENV)/.installed

setup: $(STAMP) $(DATA_STAMP)

$(STAMP): pyproject.toml requirements-lock.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first and pinned: this machine serves 2.14.1 from local disk; the lock pins the rest
	$(PY) -m pip install -q -c requirements-lock.txt torch torchvision
	$(PY) -m pip install -q -c requirements-lock.txt -e '.[dev]'
	touch $(STAMP)

$(DATA_STAMP): $(STAMP)
	bash scripts/setup_data.sh $(PY)
	mkdir -p data && touch $(DATA_STAMP)

data: $(DATA_STAMP)

test: setup
	$(PY) -m pytest -q

# The quick tier (under 90 s here): everything not marked e2e (subprocesses, training runs, full-size parity)
test-fast: setup
	$(PY) -m pytest -q -m "not e2e"

$(NEWEST_STAMP): requirements-newest.txt
	test -x $(NEWEST_VENV)/bin/python || $(PY312) -m venv $(NEWEST_VENV)
	$(NEWEST_VENV)/bin/python -m pip install -q --upgrade pip
	$(NEWEST_VENV)/bin/python -m pip install -q -r requirements-newest.txt
	touch $(NEWEST_STAMP)

# Not part of .ci/run: the suite with the GPU machine's package versions, on the CPU
test-newest: $(NEWEST_STAMP) $(DATA_STAMP)
	PYTHONPATH=$(CURDIR) $(NEWEST_VENV)/bin/python -m pytest -q -p no:cacheprovider

lint: setup
	$(VENV)/bin/ruff check .

demo: setup
	bash scripts/demo.sh $(PY)

# The experiments grid (about 1.5 h on 2 cores; resumable) and docs/RESULTS.md
results: setup
	$(PY) -m experiments.run --protocol cpu

clean-runs:
	rm -rf runs/demo
