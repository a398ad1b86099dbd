# mnist_batch: every target installs what it needs into .venv first.
#   make demo   train on the bundled sample, score a folder of PNGs with Beam, write Parquet + report
#   make test   run the test suite (what CI runs)
#   make lint   ruff check + format check
#   make bench  benchmarks (figures recorded in docs/benchmarks.md)

PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
OUT    ?= out/demo
PYTEST_ARGS ?=

.PHONY: install demo test lint format bench clean

install: $(STAMP)

$(STAMP): requirements.txt setup.py
	@$(PYTHON) -c 'import sys; v = sys.version_info[:2]; sys.exit(0 if v == (3, 11) else "mnist_batch needs Python 3.11, found %d.%d (set PYTHON=/path/to/python3.11)" % v)'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip setuptools wheel
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $@

demo: $(STAMP)
	$(PY) -m mnist_batch data info sample
	$(PY) -m mnist_batch data export-images sample --split test --out $(OUT)/test_images --overwrite
	@echo
	@echo "Outputs:"
	@echo "  held-out test split as PNG files: $(OUT)/test_images/<label>/<index>.png"
	@echo "  (training, Beam scoring and the report join this demo as they land: see README 'Status')"

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

bench: $(STAMP)
	$(PY) benchmarks/run_all.py

clean:
	rm -rf $(VENV) out build dist *.egg-info .pytest_cache .ruff_cache
