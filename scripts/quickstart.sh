#!/usr/bin/env bash
# From a fresh machine: install what is needed, build the release binary, and run the
# embedded default job (jobs/quickstart.toml: 3,000 + 1,000 Fashion-MNIST images).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build-release.sh
.build/release/ntkgram build jobs/quickstart.toml --force "$@"
.build/release/ntkgram info runs/quickstart/kernel.h5
.build/release/ntkgram verify runs/quickstart/kernel.h5 --samples 100
