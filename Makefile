# Two commands do everything: `make demo` and `make test`. Each sets up what it needs, once.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
DATA_STAMP := data/.verified

.PHONY: demo test lint data setup clean-runs results

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

lint: setup
	$(VENV)/bin/ruff check .

demo: setup
	bash scripts/demo.sh $(PY)

# The experiments grid (about 1.5 h on 2 cores; resumable) and docs/RESULTS.md
results: setup
	$(PY) -m compare.experiments --protocol cpu

clean-runs:
	rm -rf runs/demo
