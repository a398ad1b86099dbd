# mnist_batch: every target installs what it needs into .venv first.
#   make demo   train on the bundled sample, score a folder of PNGs with Beam, write Parquet + report
#   make test   run the test suite (what CI runs)
#   make test-fast  the fast tier, about a minute: tests not marked slow (no CLI or runner process, no training
#               but the cached tiny model); run it on every edit, make test before a commit
#   make lint   ruff check + format check
#   make bench  benchmarks (figures recorded in docs/benchmarks.md)
#   make test-slim  the scoring-only install (pip install ., no TensorFlow) in its own venv, and its tests
#   make test-spark  optional: Spark reads the run store (installs OpenJDK 17 and pyspark)
#   make test-schedulers  optional: a real Airflow runs the DAG (installs Airflow into .cache/airflow/venv)
#   make cluster-up / cluster-down  a Flink cluster + Beam job server on loopback (deploy/README.md, "Flink")
#   make test-cluster  the tests against that cluster (tests/cluster/; make cluster-up first)
#   make s3-up / s3-down  an S3-compatible server (VersityGW) on loopback; s3-up prints the AWS_ variables to set
#   make test-s3  the tests against a real S3-compatible server (each run starts its own; built on first use)

PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
OUT    ?= out/demo
MODEL  := $(OUT)/models/cnn.keras
PYTEST_ARGS ?=
# `make demo RETRAIN=1` retrains even when the model is newer than everything it is made from.
RETRAIN ?=
# What the demo model is made from: a change to any of these retrains it on the next `make demo`.
TRAIN_INPUTS := $(STAMP) $(wildcard mnist_batch/training/*.py mnist_batch/data/*.py mnist_batch/data/assets/*.npz) \
	mnist_batch/config.py mnist_batch/preprocess.py mnist_batch/model_card.py mnist_batch/constants.py \
	mnist_batch/synthetic.py mnist_batch/trust.py
# TensorFlow and Beam log noise: the CLI filters it (mnist_batch/cli/logs.py); --verbose shows all.

.PHONY: bench-million install demo FORCE test test-fast test-slim datasets test-spark test-schedulers cluster-up cluster-down test-cluster s3-up s3-down test-s3 lint format bench bench-train bench-score bench-runtimes bench-history bench-fashion bench-monitor bench-replace clean

install: $(STAMP)

$(STAMP): requirements.txt setup.py
	@$(PYTHON) -c 'import sys; v = sys.version_info[:2]; sys.exit(0 if v == (3, 11) else "mnist_batch needs Python 3.11, found %d.%d (set PYTHON=/path/to/python3.11)" % v)'
	$(PYTHON) -m venv $(VENV)
	@echo "installing TensorFlow, Apache Beam and the dev tools into $(VENV) (about 2 minutes, 2.6 GB) ..."
	@$(PY) scripts/pip_progress.py $(VENV)/pip-tools.log --upgrade pip setuptools wheel
	@$(PY) scripts/pip_progress.py $(VENV)/pip-install.log -e '.[dev,train]'
	@touch $@
	@echo "installed; run commands as $(VENV)/bin/mnist-batch, or put mnist-batch on the PATH: source $(VENV)/bin/activate"

demo: $(STAMP)
	$(PY) -m mnist_batch data info sample
	@if [ -z "$(RETRAIN)" ] && $(MAKE) --no-print-directory -q $(MODEL); then \
	  echo "model up to date: $(MODEL) (newer than the code and data it is made from; make demo RETRAIN=1 retrains)"; \
	else $(MAKE) --no-print-directory $(MODEL) RETRAIN=$(RETRAIN); fi
	$(PY) -m mnist_batch data export-images sample --split test --out $(OUT)/test_images --overwrite
	$(PY) -m mnist_batch score --model $(OUT)/models/cnn.keras --input $(OUT)/test_images --output $(OUT)/scored --overwrite
	$(PY) -m mnist_batch report $(OUT)/scored
	$(PY) -m mnist_batch evaluate --model $(MODEL) --dataset sample --output $(OUT)/trust --trust --overwrite --no-report
	@echo
	@echo "Outputs:"
	@echo "  model + model card:           $(OUT)/models/cnn.keras, $(OUT)/models/cnn.card.json"
	@echo "  fast CPU runtime (LiteRT):    $(OUT)/models/cnn.tflite (scoring's default; agreement with Keras in the card)"
	@echo "  training run (curves, log):   $(OUT)/run/learning_curve.png, $(OUT)/run/history.csv"
	@echo "  held-out test split as PNGs:  $(OUT)/test_images/<label>/<index>.png"
	@echo "  scoring outputs:              $(OUT)/scored/{predictions,errors,confusion,per_class}/ (Parquet), $(OUT)/scored/summary.json"
	@echo "  report:                       $(OUT)/scored/report.html (+ PNG plots beside it)"
	@echo "  trust report (not a digit):   $(OUT)/trust/trust.md, $(OUT)/trust/trust.png"
	@echo
	@echo "Next: source $(VENV)/bin/activate (puts mnist-batch on the PATH; or run $(VENV)/bin/mnist-batch),"
	@echo "then try the README's commands, e.g.  mnist-batch predict $(OUT)/test_images/7/01401.png --model $(MODEL)"

# The demo model; remade when it is older than what it is made from (or with RETRAIN=1).
$(MODEL): $(TRAIN_INPUTS) $(if $(RETRAIN),FORCE)
	$(PY) -m mnist_batch train --dataset sample --model cnn --run-dir $(OUT)/run --export $(MODEL) --progress epoch

FORCE:

# One pytest worker process per core (pytest-xdist), each taking whole test files (module fixtures are
# built once per file): the suite is mostly single-threaded Python (Beam, subprocesses), so a second
# worker fills the second core. TEST_WORKERS=0 runs it in one process (for --pdb, or reading one log).
TEST_WORKERS ?= auto
test: $(STAMP) datasets
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

# The fast tier: every test not marked `slow`. Such a test starts no CLI, pipeline or runner process
# (tests/conftest.py fails one that does) and trains nothing but the tiny model cached in .cache/test-models.
FAST_MARKERS := not slow and not cluster and not s3 and not slim
test-fast: $(STAMP)
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile -m "$(FAST_MARKERS)" $(PYTEST_ARGS)

# Real Fashion-MNIST from Debian's dataset-fashion-mnist, for the tests that use it (they skip, saying
# why, where it cannot be installed: not root, no apt-get). Best effort: never fails the target.
FASHION_DIR := /usr/share/datasets/fashion-mnist
datasets:
	@if [ -f $(FASHION_DIR)/t10k-labels-idx1-ubyte.gz ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get > /dev/null; then \
	  echo "installing Debian's dataset-fashion-mnist (real Fashion-MNIST, used by some tests) ..."; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist) > $(VENV)/apt-datasets.log 2>&1 \
	    && echo "  installed: $(FASHION_DIR)" \
	    || echo "  could not install it (log: $(VENV)/apt-datasets.log); the tests that need it skip"; \
	else echo "$(FASHION_DIR) missing and apt-get unavailable (or not root): the tests that need it skip"; fi

# The scoring-only install (issue 35): `pip install .` (no TensorFlow) into its own virtualenv, then the
# tests that run its console script (tests/test_slim_install.py). Rebuilt when the package changes.
SLIM_VENV ?= .cache/slim/venv
$(SLIM_VENV)/.installed: requirements.txt setup.py $(shell find mnist_batch -name '*.py' -o -name '*.npz')
	rm -rf $(SLIM_VENV) build
	$(PYTHON) -m venv $(SLIM_VENV)
	@echo "installing the scoring-only package (pip install ., no TensorFlow) into $(SLIM_VENV) (~30 s, ~590 MB) ..."
	$(SLIM_VENV)/bin/pip install --quiet --upgrade pip
	$(SLIM_VENV)/bin/pip install --quiet .
	@touch $@

test-slim: $(STAMP) $(SLIM_VENV)/.installed
	MNIST_BATCH_SLIM_PYTHON=$(abspath $(SLIM_VENV))/bin/python $(PY) -m pytest -m slim tests/test_slim_install.py $(PYTEST_ARGS)

# Optional: Spark as a reader of the run store (OpenJDK 17 from Debian, pyspark from PyPI).
test-spark: $(STAMP)
	@command -v java > /dev/null || (apt-get update -qq && apt-get install -y -qq openjdk-17-jre-headless)
	$(PY) -m pip install --quiet 'pyspark>=3.5,<5'
	$(PY) -m pytest tests/test_spark_reader.py $(PYTEST_ARGS)

# Optional: a real Airflow runs deploy/airflow's DAG (`airflow dags test`, SQLite, no webserver) through the
# cases of tests/test_airflow_dag.py. Airflow lives in its own virtualenv, never in $(VENV); its versions are
# pinned by deploy/airflow/airflow-lock.txt (what ran here; Airflow's constraints file is on GitHub).
AIRFLOW_VENV ?= .cache/airflow/venv
AIRFLOW_LOCK := deploy/airflow/airflow-lock.txt
AIRFLOW_PACKAGES := apache-airflow==3.3.2 apache-airflow-providers-apache-beam==6.3.1 apache-airflow-providers-google==22.8.0
$(AIRFLOW_VENV)/.installed: $(AIRFLOW_LOCK)
	$(PYTHON) -m venv $(AIRFLOW_VENV)
	@echo "installing Airflow and the Beam and Google providers into $(AIRFLOW_VENV) (5-8 minutes, ~280 packages) ..."
	$(AIRFLOW_VENV)/bin/pip install --quiet --upgrade pip
	$(AIRFLOW_VENV)/bin/pip install --quiet -c $(AIRFLOW_LOCK) $(AIRFLOW_PACKAGES)
	@touch $@

test-schedulers: $(STAMP) $(AIRFLOW_VENV)/.installed
	MNIST_BATCH_AIRFLOW=$(abspath $(AIRFLOW_VENV))/bin/airflow $(PY) -m pytest tests/test_airflow_dag.py $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

bench: bench-train bench-score bench-history bench-monitor bench-replace

bench-train: $(STAMP)
	$(PY) benchmarks/bench_train.py

# Scoring cost per image: (a) TF loop, (a') LiteRT loop, (b) mnist-batch score; the demo's cnn + a small CNN.
bench-score: $(STAMP) $(MODEL)
	$(PY) benchmarks/bench_score.py --cnn-model $(MODEL)

# Which CPU runtime: model-only speed and agreement with Keras (pip install onnxruntime openvino tf2onnx onnx for all).
bench-runtimes: $(STAMP) $(MODEL)
	$(PY) benchmarks/bench_runtimes.py --model $(MODEL)

bench-history: $(STAMP)
	$(PY) benchmarks/bench_history.py

# A million files a night (issues 24, 36): score (in process for local files) vs the hand-written LiteRT loop, and vs
# two such loops side by side on half the files each, at 50k/200k/1M files, the costs alone measured between runs
# (~25 min, ~3 GB of hard links under .cache/bm), and +10,000 new files over a 1,000,000-file history.
bench-million: $(STAMP) $(MODEL)
	$(PY) benchmarks/bench_score.py --cnn-model $(MODEL) --files 50000,200000,1000000 --models cnn \
	    --modes fast_loop,two_loops,score --work .cache/bm
	$(PY) benchmarks/bench_incremental.py --model $(MODEL) --work .cache/bi

# What a reader sees while a committed run is replaced (pyarrow, DuckDB, Polars reader loops).
bench-replace: $(STAMP)
	$(PY) benchmarks/bench_replace.py

bench-fashion: $(STAMP)
	$(PY) benchmarks/bench_fashion.py

bench-monitor: $(STAMP)
	$(PY) benchmarks/bench_monitor.py

clean:
	rm -rf $(VENV) out build dist *.egg-info .pytest_cache .ruff_cache

# A Flink 1.19 session cluster on loopback: JobManager, Beam's Flink job server, and 2 worker hosts
# (Linux namespaces: a TaskManager + an SDK worker pool each, Python installed from the project's
# wheel, the checkout hidden: they share nothing with the launcher but the bucket); jars from Maven
# Central on first use (.cache/flink/). The hosts get this environment's AWS_* variables (make s3-up
# prints them). Prints the `runner options: ...` to add to `mnist-batch score`.
cluster-up: $(STAMP)
	deploy/flink/cluster.sh up

cluster-down:
	deploy/flink/cluster.sh down

# Against the running cluster and the bucket of make s3-up (fails, saying so, when either is not up);
# `make test` does not collect these.
test-cluster: $(STAMP)
	$(PY) -m pytest tests/cluster -m cluster $(PYTEST_ARGS)

# An S3-compatible server (VersityGW, Apache-2.0) on 127.0.0.1:9766, bucket s3://mnist-batch, data in
# .cache/s3/data; built from the Go module proxy on first use (.cache/s3/bin). s3-up ends by printing
# the `export AWS_...=...` lines to set (deploy/README.md, "Object stores").
s3-up:
	@deploy/s3/server.sh up

s3-down:
	@deploy/s3/server.sh down

# The tests marked s3 (tests/s3_server.py starts a server of their own on a free port, stops it after).
test-s3: $(STAMP)
	$(PY) -m pytest -m s3 $(PYTEST_ARGS)
