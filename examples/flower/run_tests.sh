#!/usr/bin/env bash
# Builds the `nnc` Python package and runs its tests and the Flower app's tests in a venv.
#
#   examples/flower/run_tests.sh            # venv at target/py-venv (override: NNC_PY_VENV=...)
#
# Installs from PyPI: maturin (build backend), flwr[simulation]==1.42.*, scikit-learn, numpy,
# pytest; then `pip install ./crates/nnc-py` (a release build of the Rust extension) and runs
# pytest on crates/nnc-py/tests (the NNCodec cross-check runs when /opt/nncodec-ref/bin/python or
# $NNC_REFERENCE_PYTHON exists, else it is skipped) and examples/flower/tests (simulation and
# loopback deployment runs, every process started and stopped by pid).
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$repo"
venv="${NNC_PY_VENV:-$repo/target/py-venv}"
python="${PYTHON:-python3}"

if [ ! -x "$venv/bin/python" ]; then
    "$python" -m venv "$venv"
fi
"$venv/bin/python" -m pip install -q --upgrade pip
"$venv/bin/python" -m pip install -q "maturin>=1.9.4,<2" "flwr[simulation]==1.42.*" scikit-learn numpy pytest
"$venv/bin/python" -m pip install -q --force-reinstall --no-deps ./crates/nnc-py

export FLWR_TELEMETRY_ENABLED=0 FLWR_DISABLE_UPDATE_CHECK=1
"$venv/bin/python" -m pytest -q -p no:cacheprovider crates/nnc-py/tests examples/flower/tests "$@"
