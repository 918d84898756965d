#!/usr/bin/env bash
# From a fresh machine: install what is needed, build the release binary, and run the main job
# end to end on the embedded default (jobs/quickstart.toml: 3,000 + 1,000 Fashion-MNIST images):
# build the kernel, check it, solve kernel regression, run the training dynamics and draw the
# learning curve. Everything goes to runs/quickstart/ (replaced when rerun). Extra arguments go
# to the kernel build (e.g. --threads 2).
#
# The last two lines are, always in this form (README, Tests/system/readme.sh):
#   test accuracy: 0.8610
#   learning curve: /absolute/path/runs/quickstart/learning-curve.png
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build-release.sh
ntkgram=.build/release/ntkgram
out=runs/quickstart
"$ntkgram" build jobs/quickstart.toml --force "$@"
"$ntkgram" info "$out/kernel.h5"
"$ntkgram" verify "$out/kernel.h5" --samples 100
solved="$("$ntkgram" solve "$out/kernel.h5" --ridge 1e-4 --out "$out/solution.h5" --metrics "$out/metrics.json" --force)"
echo "$solved"
"$ntkgram" dynamics "$out/kernel.h5" --times log:1:1e6:25,inf --out "$out/dynamics.h5" --force
"$ntkgram" plot "$out/dynamics.h5" --out "$out/learning-curve.png" --force
accuracy="$(sed -n 's/.*test accuracy \([0-9.]*\).*/\1/p' <<<"$solved" | tail -n 1)"
[ -n "$accuracy" ] || { echo "quickstart: the solve printed no test accuracy" >&2; exit 1; }
echo "test accuracy: $accuracy"
echo "learning curve: $PWD/$out/learning-curve.png"
