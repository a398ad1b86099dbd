#!/usr/bin/env bash
# Installs mnist_batch on a scoring worker from the project's built wheel, nothing from a checkout:
# what a worker image build runs (deploy/Dockerfile) and what `make cluster-up` runs once for the
# Python environment of its emulated worker hosts (deploy/flink/cluster.sh).
#
#   deploy/worker/install.sh WHEEL [VENV]     WHEEL: dist/mnist_batch-*.whl (pip wheel --no-deps .)
#                                             VENV: a new virtualenv there (else the current python)
#   EXTRAS=aws (default) | gcp | aws,gcp ...  the extras (a scoring worker needs no `train`: no TensorFlow)
#
# Ends by printing the installed versions, read from the installed package (never the checkout).
set -euo pipefail
wheel=${1:?usage: $0 WHEEL [VENV]}
venv=${2:-}
extras=${EXTRAS:-aws}
python=${PYTHON:-python3}
[ -f "$wheel" ] || { echo "install.sh: no wheel at $wheel" >&2; exit 1; }
if [ -n "$venv" ]; then
  rm -rf "$venv"
  "$python" -m venv "$venv"
  python=$(realpath "$venv")/bin/python
  "$python" -m pip install --quiet --upgrade pip
fi
"$python" -m pip install --quiet "$(realpath "$wheel")[$extras]"
cd /  # import what is installed, not a checkout in the working directory
"$python" -c 'import apache_beam, mnist_batch; print(f"installed mnist-batch {mnist_batch.__version__} (apache-beam {apache_beam.__version__}) in {mnist_batch.__file__.rsplit(chr(47), 2)[0]}")'
