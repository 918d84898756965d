#!/usr/bin/env bash
# Creates (once) the Python environment of the interoperability tests and examples:
# numpy, h5py, scikit-learn, pytest, matplotlib (the plotting companion), Pillow (reads ntkgram plot's PNGs back), and neural-tangents 0.6.5 with the JAX it was released
# against (0.4.30), as the independent reference. Prints the venv's folder.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
venv="${NTKGRAM_VENV:-$here/.venv-test}"
stamp="$venv/.ntkgram-requirements-3"
if [ ! -f "$stamp" ]; then
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install -q --disable-pip-version-check \
    "numpy<2" h5py scikit-learn pytest "matplotlib<3.10" pillow "jax[cpu]==0.4.30" "jaxlib==0.4.30" "neural-tangents==0.6.5" >&2
  touch "$stamp"
fi
echo "$venv"
