#!/usr/bin/env bash
# The test command: installs what the tests need, builds, checks the module rules and the
# AVX-512 isolation, runs the interoperability tests (h5py, neural-tangents, scikit-learn, in a
# venv it creates), the multi-host test (network namespaces: needs root), the Slurm test (a
# private one-node cluster: needs root), the installation test, the README test (the quickstart
# and every ```sh block of README.md), and then the Swift test suite,
# which includes the real-mpirun tests (rank counts, kill -9 and resume, damaged checkpoints).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
venv="$(bash scripts/python-env.sh)"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
bash scripts/build-release.sh
swift build --build-tests
bash scripts/check-isa-isolation.sh
"$venv/bin/python" scripts/check-layering.py
NTKGRAM_BIN="$PWD/.build/release/ntkgram" "$venv/bin/python" -m pytest -q Tests/interop
bash Tests/system/multihost.sh .build/release/ntkgram "$venv/bin/python"
bash Tests/system/slurm.sh .build/release/ntkgram "$venv/bin/python"
NTKGRAM_PLOT_PYTHON="$venv/bin/python" bash Tests/system/install.sh
NTKGRAM_PLOT_PYTHON="$venv/bin/python" bash Tests/system/readme.sh
swift test
