# mnist_batch: every target installs what it needs into .venv first.
#   make demo   train on the bundled sample, score a folder of PNGs with Beam, write Parquet + report
#   make test   run the test suite (what CI runs)
#   make lint   ruff check + format check
#   make bench  benchmarks (figures recorded in docs/benchmarks.md)
#   make test-spark  optional: Spark reads the run store (installs OpenJDK 17 and pyspark)

PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
OUT    ?= out/demo
PYTEST_ARGS ?=
# Quiet TensorFlow's C++ start-up chatter (INFO lines); warnings and errors still show.
export TF_CPP_MIN_LOG_LEVEL ?= 1

.PHONY: install demo test test-spark lint format bench bench-train bench-score bench-history bench-fashion bench-monitor clean

install: $(STAMP)

$(STAMP): requirements.txt setup.py
	@$(PYTHON) -c 'import sys; v = sys.version_info[:2]; sys.exit(0 if v == (3, 11) else "mnist_batch needs Python 3.11, found %d.%d (set PYTHON=/path/to/python3.11)" % v)'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip setuptools wheel
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $@

demo: $(STAMP)
	$(PY) -m mnist_batch data info sample
	$(PY) -m mnist_batch train --dataset sample --model cnn --run-dir $(OUT)/run --export $(OUT)/models/cnn.keras --progress epoch
	$(PY) -m mnist_batch data export-images sample --split test --out $(OUT)/test_images --overwrite
	$(PY) -m mnist_batch score --model $(OUT)/models/cnn.keras --input $(OUT)/test_images --output $(OUT)/scored --overwrite
	$(PY) -m mnist_batch report $(OUT)/scored
	@echo
	@echo "Outputs:"
	@echo "  model + model card:           $(OUT)/models/cnn.keras, $(OUT)/models/cnn.card.json"
	@echo "  training run (curves, log):   $(OUT)/run/learning_curve.png, $(OUT)/run/history.csv"
	@echo "  held-out test split as PNGs:  $(OUT)/test_images/<label>/<index>.png"
	@echo "  Beam scoring outputs:         $(OUT)/scored/{predictions,errors,confusion,per_class}/ (Parquet), $(OUT)/scored/summary.json"
	@echo "  report:                       $(OUT)/scored/report.html (+ PNG plots beside it)"

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

# Optional: Spark as a reader of the run store (OpenJDK 17 from Debian, pyspark from PyPI).
test-spark: $(STAMP)
	@command -v java > /dev/null || (apt-get update -qq && apt-get install -y -qq openjdk-17-jre-headless)
	$(PY) -m pip install --quiet 'pyspark>=3.5,<5'
	$(PY) -m pytest tests/test_spark_reader.py $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

bench: bench-train bench-score bench-history bench-monitor

bench-train: $(STAMP)
	$(PY) benchmarks/bench_train.py

bench-score: $(STAMP)
	$(PY) benchmarks/bench_score.py

bench-history: $(STAMP)
	$(PY) benchmarks/bench_history.py

bench-fashion: $(STAMP)
	$(PY) benchmarks/bench_fashion.py

bench-monitor: $(STAMP)
	$(PY) benchmarks/bench_monitor.py

clean:
	rm -rf $(VENV) out build dist *.egg-info .pytest_cache .ruff_cache
