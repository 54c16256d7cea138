# Two commands do everything: `make demo` and `make test`. Each sets up what it needs, once.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
DATA_STAMP := data/.verified

.PHONY: demo test test-fast test-newest lint data setup onnx-flax clean-runs results results-trained

# The GPU machine's stack (Python 3.12; torch 2.11, jax 0.11, no tensorflow-datasets), run from the tree as there
PY312       ?= $(firstword $(wildcard $(HOME)/.pyenv/versions/3.12*/bin/python3.12) $(shell command -v python3.12))
NEWEST_VENV := .venv-newest
NEWEST_STAMP := $(NEWEST_VENV)/.installed

setup: $(STAMP) $(DATA_STAMP)

$(STAMP): pyproject.toml requirements-lock.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first, at the locked release (pip takes a local copy of it where the machine has one)
	$(PY) -m pip install -q -c requirements-lock.txt torch torchvision
	$(PY) -m pip install -q -c requirements-lock.txt -e '.[dev]'
	$(MAKE) --no-print-directory onnx-flax
	touch $(STAMP)

# The flax ONNX export (compare.parity --onnx both). jax2onnx's package metadata pins orbax-checkpoint below this
# project's and pulls equinox, dm-pix, netron, huggingface-hub and orbax-export, none of which it imports for
# NiN: it is installed without its declared dependencies (the two it needs, onnx and onnx-ir, come with this
# project's own).
onnx-flax:
	$(PY) -m pip install -q --no-deps -c requirements-lock.txt jax2onnx

$(DATA_STAMP): $(STAMP)
	bash scripts/setup_data.sh $(PY)
	mkdir -p data && touch $(DATA_STAMP)

data: $(DATA_STAMP)

# Two workers (pytest-xdist; an idle one takes tests queued for the other): the suite is mostly single-threaded
# start-up, imports and compiles
test: setup
	$(PY) -m pytest -q -n 2 --dist worksteal

# The quick tier (under 90 s on 2 cores): everything not marked e2e (subprocesses, training runs, full-size parity)
test-fast: setup
	$(PY) -m pytest -q -n 2 --dist worksteal -m "not e2e"

$(NEWEST_STAMP): requirements-newest.txt
	test -x $(NEWEST_VENV)/bin/python || $(PY312) -m venv $(NEWEST_VENV)
	$(NEWEST_VENV)/bin/python -m pip install -q --upgrade pip
	$(NEWEST_VENV)/bin/python -m pip install -q -r requirements-newest.txt
	touch $(NEWEST_STAMP)

# Not part of .ci/run: the suite with the GPU machine's package versions, on the CPU
test-newest: $(NEWEST_STAMP) $(DATA_STAMP)
	PYTHONPATH=$(CURDIR) $(NEWEST_VENV)/bin/python -m pytest -q -n 2 --dist worksteal -p no:cacheprovider

lint: setup
	$(VENV)/bin/ruff check .

demo: setup
	bash scripts/demo.sh $(PY)

# The experiments grids behind docs/RESULTS.md (resumable: run again to continue)
results: setup
	$(PY) -m experiments.run --protocol cpu

results-trained: setup
	$(PY) -m experiments.run --protocol trained

clean-runs:
	rm -rf runs/demo
