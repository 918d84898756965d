#!/usr/bin/env bash
# The finite-width study of docs/finite-width.md: empirical against analytic NTK over widths and
# seeds, trained networks against dynamics, and how far training moves the kernel, on 1,000
# Fashion-MNIST images. Figures: runs/finite-width/results.json; plots: docs/img/finite-width-*.png.
#   benchmarks/finite-width.sh [--quick] [other benchmarks/finite_width.py flags]
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
venv="$(bash "$here/scripts/python-env.sh")"
exec "$venv/bin/python" "$here/benchmarks/finite_width.py" "$@"
