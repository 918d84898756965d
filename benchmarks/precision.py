"""Measures ntkgram's error in float64 and float32 storage against neural-tangents (float64).

    .venv-test/bin/python benchmarks/precision.py [N]     (after scripts/test.sh or scripts/python-env.sh)

Random standard-normal rows, d = 784, the depth-3 ReLU network of the README. Prints the
maximum relative error |a − b| / (|b| + 0.01·max|K|) off and on the diagonal, against
neural-tangents and, for float32, against ntkgram's own float64 file; the diagonal is also
compared with the exact θ = 0 value (ntkgram's float64 diagonal).
"""
import os
import subprocess
import sys
import tempfile

import jax

jax.config.update("jax_enable_x64", True)
import numpy as np  # noqa: E402
from neural_tangents import stax  # noqa: E402
import h5py  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.environ.get("NTKGRAM_BIN", os.path.join(ROOT, ".build", "release", "ntkgram"))


def rel(a, b):
    return np.abs(a - b) / (np.abs(b) + 0.01 * np.abs(b).max())


def main(n=2000):
    rng = np.random.default_rng(7)
    x = rng.standard_normal((n, 784))
    layers = []
    for _ in range(3):
        layers += [stax.Dense(512, np.sqrt(2), 0.1), stax.Relu()]
    kfn = jax.jit(stax.serial(*layers, stax.Dense(1, np.sqrt(2), 0.1))[2], static_argnames="get")
    ref = kfn(x, None, ("nngp", "ntk"))
    with tempfile.TemporaryDirectory() as d:
        np.save(f"{d}/x.npy", x)
        for dtype in ("float64", "float32"):
            subprocess.run([BIN, "build", "--train", f"{d}/x.npy", "--dtype", dtype, "--out", f"{d}/{dtype}.h5", "--quiet"], check=True)
        with h5py.File(f"{d}/float64.h5") as f64, h5py.File(f"{d}/float32.h5") as f32:
            off = ~np.eye(n, dtype=bool)
            print(f"N = {n}, d = 784, depth-3 ReLU, W_std = √2, b_std = 0.1")
            for k in ("ntk", "nngp"):
                a64 = f64[f"/train/{k}"][...]
                a32 = f32[f"/train/{k}"][...].astype(np.float64)
                nt = np.asarray(getattr(ref, k))
                e = rel(a64, nt)
                print(f"{k}: float64 vs neural-tangents float64: off-diagonal {e[off].max():.2e}, diagonal {np.diag(e).max():.2e} (neural-tangents' own θ≈0 rounding)")
                e = rel(a32, a64)
                print(f"{k}: float32 vs ntkgram float64:          off-diagonal {e[off].max():.2e}, diagonal {np.diag(e).max():.2e}")


if __name__ == "__main__":
    main(*map(int, sys.argv[1:2]))
