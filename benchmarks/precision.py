"""Measures ntkgram's error in float64 and float32 storage, and with float32 dot products, against
neural-tangents (float64) and ntkgram's own float64 file.

    .venv-test/bin/python benchmarks/precision.py [N]     (after scripts/test.sh or scripts/python-env.sh)

Random standard-normal rows and Fashion-MNIST images, d = 784, the depth-3 ReLU network of the
README. Prints the
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


def fashion(n):
    import gzip
    with gzip.open("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz") as f:
        return np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 784)[:n] / 255.0


def main(n=2000):
    layers = []
    for _ in range(3):
        layers += [stax.Dense(512, np.sqrt(2), 0.1), stax.Relu()]
    kfn = jax.jit(stax.serial(*layers, stax.Dense(1, np.sqrt(2), 0.1))[2], static_argnames="get")
    builds = {"float64": ["--dtype", "float64"], "float32": ["--dtype", "float32"],
              "float32 + float32 dots": ["--dtype", "float32", "--gram-precision", "float32"]}
    print(f"N = {n}, d = 784, depth-3 ReLU, W_std = √2, b_std = 0.1; max relative error |a − b| / (|b| + 0.01·max|K|)")
    for name, x in (("random N(0, 1) rows", np.random.default_rng(7).standard_normal((n, 784))), ("Fashion-MNIST / 255", fashion(n))):
        ref = kfn(x, None, ("nngp", "ntk"))
        print(f"-- {name}")
        with tempfile.TemporaryDirectory() as d:
            np.save(f"{d}/x.npy", x)
            for b, flags in builds.items():
                subprocess.run([BIN, "build", "--train", f"{d}/x.npy", *flags, "--preprocess", "none", "--out", f"{d}/{b}.h5", "--quiet"],
                               check=True)
            off = ~np.eye(n, dtype=bool)
            files = {b: h5py.File(f"{d}/{b}.h5") for b in builds}
            for k in ("ntk", "nngp"):
                a64 = files["float64"][f"/train/{k}"][...]
                nt = np.asarray(getattr(ref, k))
                e = rel(a64, nt)
                print(f"{k}: float64 vs neural-tangents float64: off-diagonal {e[off].max():.2e}, diagonal {np.diag(e).max():.2e}"
                      " (neural-tangents' own θ≈0 rounding)")
                for b in ("float32", "float32 + float32 dots"):
                    e = rel(files[b][f"/train/{k}"][...].astype(np.float64), a64)
                    print(f"{k}: {b:22} vs float64: off-diagonal {e[off].max():.2e}, diagonal {np.diag(e).max():.2e}")
            for f in files.values():
                f.close()


if __name__ == "__main__":
    main(*map(int, sys.argv[1:2]))
