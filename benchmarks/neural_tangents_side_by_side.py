"""neural-tangents and ntkgram on the same job, same machine, one run: the ratio of entries/s.

    bash benchmarks/side-by-side.sh           (creates the venv, builds, runs this)

The job: FC ReLU, depth 3, W_std √2, b_std 0.1, the first 4,096 Fashion-MNIST images
(pixels / 255, d = 784), the train kernel NTK + NNGP (an entry = one (i, j) of the N×N matrix
giving both). neural-tangents 0.6.5 runs `jax.jit(kernel_fn)` on CPU, in float32 and in
float64 (x64 enabled in its own process), best of 3 after a warm-up; ntkgram runs
`ntkgram bench --json --threads <cores>` (dot products in the storage precision, as neural-tangents computes
everything in it; the recursion is float64 in both).
"""
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.environ.get("NTKGRAM_BIN", os.path.join(ROOT, ".build", "release", "ntkgram"))
N = int(os.environ.get("BENCH_N", "4096"))

NT = r"""
import gzip, json, sys, time
import numpy as np
import jax
if sys.argv[1] == "float64":
    jax.config.update("jax_enable_x64", True)
from neural_tangents import stax
n = int(sys.argv[2])
with gzip.open("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz") as f:
    x = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 784)[:n] / 255.0
x = x.astype(np.float64 if sys.argv[1] == "float64" else np.float32)
layers = []
for _ in range(3):
    layers += [stax.Dense(512, np.sqrt(2), 0.1), stax.Relu()]
kfn = jax.jit(stax.serial(*layers, stax.Dense(1, np.sqrt(2), 0.1))[2], static_argnames="get")
kfn(x, None, ("nngp", "ntk")).ntk.block_until_ready()
best = float("inf")
for _ in range(3):
    t = time.perf_counter(); kfn(x, None, ("nngp", "ntk")).ntk.block_until_ready(); best = min(best, time.perf_counter() - t)
print(json.dumps({"seconds": best, "entries_per_s": n * n / best}))
"""


def main():
    rows = []
    for dtype in ("float32", "float64"):
        nt = json.loads(subprocess.run([sys.executable, "-c", NT, dtype, str(N)], check=True, capture_output=True, text=True).stdout)
        ours = json.loads(subprocess.run([BIN, "bench", "--json", "--dtype", dtype, "--samples", str(N), "--dir", "/tmp",
                                          "--threads", str(os.cpu_count())],
                                         check=True, capture_output=True, text=True).stdout)
        compute_only = ours["entries_per_s"]
        with_io = N * N / (ours["compute_s"] + ours["io_s"])
        rows.append((dtype, nt["entries_per_s"], compute_only, with_io, ours["build_over_blas"]))
    print(f"N = {N}, d = 784, FC ReLU depth 3, NTK + NNGP; entries/s (higher is better)")
    print(f"both on every core ({os.cpu_count()}): XLA's threads, ntkgram bench --threads {os.cpu_count()}")
    print(f"{'dtype':8} {'neural-tangents':>16} {'ntkgram':>12} {'ratio':>6} {'ntkgram+I/O':>12} {'ratio':>6} {'build/BLAS':>10}")
    for dtype, nt, ours, io, blas in rows:
        print(f"{dtype:8} {nt:16.3g} {ours:12.3g} {ours / nt:6.2f} {io:12.3g} {io / nt:6.2f} {blas:10.2f}")


if __name__ == "__main__":
    main()
