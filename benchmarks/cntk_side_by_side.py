"""Convolutional kernels: neural-tangents and ntkgram on the same images, same machine, one run.

    bash benchmarks/cntk-side-by-side.sh      (creates the venv, builds, runs this)

The network: five [Conv(3×3, SAME, W_std √2, b_std 0.1), Relu] layers on 28×28×1 Fashion-MNIST
images (pixels / 255), then GlobalAvgPool (full pixel-pair covariances) or Flatten (same-position
covariances only), then Dense(1). neural-tangents 0.6.5 runs `jax.jit(kernel_fn)` on CPU (both
cores), in float64 (x64 enabled in its own process) and float32, best of 2 after a warm-up, on
the N×N kernel of N images; ntkgram runs `ntkgram build --threads 2` of the same N×N kernel
(float64 computation; stored in the --dtype given). An entry is one (i, j) of the N×N matrix
giving both NTK and NNGP; ntkgram computes the upper triangle and mirrors it, neural-tangents
the whole matrix, and both are counted as N² entries: what a user gets per second.
"""
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.environ.get("NTKGRAM_BIN", os.path.join(ROOT, ".build", "release", "ntkgram"))
FASHION = "/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz"
# Tiles small enough that both threads stay busy to the end (a thread computes whole tiles).
TILES = {"gap": 2, "flatten": 40}
SIZES = {"gap": int(os.environ.get("BENCH_N_GAP", "12")), "flatten": int(os.environ.get("BENCH_N_FLATTEN", "600"))}


def layers(readout):
    conv = {"type": "conv", "width": 1, "filter": [3, 3], "padding": "SAME", "W_std": 2 ** 0.5, "b_std": 0.1}
    out = [conv, {"type": "relu"}] * 5
    out.append({"type": "global_avg_pool"} if readout == "gap" else {"type": "flatten"})
    return out + [{"type": "dense", "width": 1, "W_std": 2 ** 0.5, "b_std": 0.1}]


NT = r"""
import gzip, json, sys, time
import numpy as np
import jax
if sys.argv[1] == "float64":
    jax.config.update("jax_enable_x64", True)
from neural_tangents import stax
readout, n = sys.argv[2], int(sys.argv[3])
with gzip.open("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz") as f:
    x = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28, 1)[:n] / 255.0
x = x.astype(np.float64 if sys.argv[1] == "float64" else np.float32)
layers = []
for _ in range(5):
    layers += [stax.Conv(1, (3, 3), padding="SAME", W_std=np.sqrt(2), b_std=0.1), stax.Relu()]
layers.append(stax.GlobalAvgPool() if readout == "gap" else stax.Flatten())
kfn = jax.jit(stax.serial(*layers, stax.Dense(1, np.sqrt(2), 0.1))[2], static_argnames="get")
k = kfn(x, None, ("nngp", "ntk")); k.ntk.block_until_ready()
best = float("inf")
for _ in range(2):
    t = time.perf_counter(); kfn(x, None, ("nngp", "ntk")).ntk.block_until_ready(); best = min(best, time.perf_counter() - t)
np.save(sys.argv[4], np.asarray(k.ntk))
print(json.dumps({"seconds": best, "entries_per_s": n * n / best}))
"""


def neural_tangents(dtype, readout, n, out):
    r = subprocess.run([sys.executable, "-c", NT, dtype, readout, str(n), out], capture_output=True, text=True, check=True)
    return json.loads(r.stdout.strip().splitlines()[-1])


def ntkgram(dtype, readout, n, folder):
    out = os.path.join(folder, f"k-{readout}-{dtype}.h5")
    t = time.perf_counter()
    subprocess.run([BIN, "build", "--train", FASHION, "--train-limit", str(n), "--layers", json.dumps(layers(readout)),
                    "--dtype", dtype, "--tile", str(TILES[readout]), "--threads", "2", "--out", out, "--force", "--quiet"],
                   check=True)
    seconds = time.perf_counter() - t
    return {"seconds": seconds, "entries_per_s": n * n / seconds, "file": out}


def main():
    import h5py
    rows = []
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR", "/tmp")) as d:
        for readout in ("gap", "flatten"):
            n = SIZES[readout]
            for dtype in ("float64", "float32"):
                ref = os.path.join(d, f"nt-{readout}-{dtype}.npy")
                nt = neural_tangents(dtype, readout, n, ref)
                ours = ntkgram(dtype, readout, n, d)
                with h5py.File(ours["file"], "r") as f:
                    k = f["/train/ntk"][...].astype(np.float64)
                r = np.load(ref).astype(np.float64)
                off = ~np.eye(n, dtype=bool)
                err = (np.abs(k - r) / (np.abs(r) + 0.01 * np.abs(r).max()))[off].max()
                rows.append({"readout": readout, "dtype": dtype, "n": n, "nt_entries_per_s": nt["entries_per_s"],
                             "ntkgram_entries_per_s": ours["entries_per_s"], "ratio": ours["entries_per_s"] / nt["entries_per_s"],
                             "nt_ms_per_entry": 1e3 / nt["entries_per_s"], "ntkgram_ms_per_entry": 1e3 / ours["entries_per_s"],
                             "max_rel_difference_off_diagonal": float(err)})
                print(f"{readout:8s} {dtype}: N = {n}: neural-tangents {1e3 / nt['entries_per_s']:.3f} ms/entry, "
                      f"ntkgram build {1e3 / ours['entries_per_s']:.3f} ms/entry: {rows[-1]['ratio']:.2f}x "
                      f"(largest off-diagonal difference {err:.1e})", flush=True)
    if len(sys.argv) > 1:
        json.dump(rows, open(sys.argv[1], "w"), indent=1)


if __name__ == "__main__":
    main()
