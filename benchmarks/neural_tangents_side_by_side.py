"""neural-tangents and ntkgram on the same job, same machine, one run: the ratio of entries/s.

    bash benchmarks/side-by-side.sh           (creates the venv, builds, runs this)

The job: FC ReLU, depth 3, W_std √2, b_std 0.1, the first 10,000 Fashion-MNIST images
(`BENCH_N` to change the count; pixels / 255, d = 784), the train kernel NTK + NNGP (an entry = one (i, j) of the N×N matrix
giving both), and again the NTK alone on both sides (`get="ntk"`; `build --kernels ntk`).
neural-tangents 0.6.5 runs `jax.jit(kernel_fn)` on CPU, in float32 and in float64 (x64 enabled
in its own process), best of 3 after a warm-up. ntkgram runs `ntkgram bench --json --threads
<cores>` (dot products in the storage precision, as neural-tangents computes everything in it;
the recursion is float64 in both), and the whole `ntkgram build`, best of 3 as well (each a new
process writing a new file, in the layout `--layout auto` picks for it: tiles from 256 MiB per
kernel, so at N = 10,000 in both precisions).
"""
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.environ.get("NTKGRAM_BIN", os.path.join(ROOT, ".build", "release", "ntkgram"))
N = int(os.environ.get("BENCH_N", "10000"))
FASHION = "/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz"

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
out = {}
for name, get in (("both", ("nngp", "ntk")), ("ntk", "ntk")):
    def run():
        k = kfn(x, None, get)
        (k.ntk if name == "both" else k).block_until_ready()
    run()
    best = float("inf")
    for _ in range(3):
        t = time.perf_counter(); run(); best = min(best, time.perf_counter() - t)
    out[name] = {"seconds": best, "entries_per_s": n * n / best}
print(json.dumps(out))
"""


def whole_build(dtype, threads, kernels):
    """`ntkgram build` of the same job, wall seconds from process start to the fsynced, renamed
    kernel file (reading the images, every tile written once with its record, the file synced):
    best of 3 whole builds, each a new process writing a new file, as neural-tangents' figure is
    its best of 3."""
    best = float("inf")
    for _ in range(3):
        with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR", "/tmp")) as d:
            t = time.perf_counter()
            subprocess.run([BIN, "build", "--train", FASHION, "--train-limit", str(N), "--dtype", dtype, "--gram-precision", dtype,
                            "--threads", str(threads), "--kernels", kernels, "--out", os.path.join(d, "k.h5"), "--quiet"],
                           check=True, capture_output=True, text=True)
            best = min(best, time.perf_counter() - t)
    return best


def main():
    cores = os.cpu_count()
    rows = []
    for dtype in ("float32", "float64"):
        nt = json.loads(subprocess.run([sys.executable, "-c", NT, dtype, str(N)], check=True, capture_output=True, text=True).stdout)
        ours = json.loads(subprocess.run([BIN, "bench", "--json", "--dtype", dtype, "--samples", str(N), "--dir", "/tmp",
                                          "--threads", str(cores), "--solver-samples", "0"],
                                         check=True, capture_output=True, text=True).stdout)
        build = whole_build(dtype, cores, "ntk,nngp")
        build_ntk = whole_build(dtype, cores, "ntk")
        blas = min(ours["blas_gram_s"], ours["blas_syrk_s"])
        rows.append((dtype, nt["both"]["entries_per_s"], ours["entries_per_s"], N * N / build, ours["compute_s"] / blas, build / blas,
                     nt["ntk"]["entries_per_s"], N * N / build_ntk))
    print(f"N = {N}, d = 784, FC ReLU depth 3, NTK + NNGP; entries/s (higher is better)")
    print(f"all on every core ({cores}): XLA's threads, ntkgram bench/build --threads {cores}, OpenBLAS on {cores} threads")
    print(f"{'dtype':8} {'neural-tangents':>16} {'ntkgram':>10} {'ratio':>6} {'whole build':>12} {'ratio':>6} "
          f"{'compute/BLAS':>12} {'build/BLAS':>10} {'nt, NTK only':>13} {'build, NTK only':>16} {'ratio':>6}")
    for dtype, nt, ours, build, cb, bb, nt1, build1 in rows:
        print(f"{dtype:8} {nt:16.3g} {ours:10.3g} {ours / nt:6.2f} {build:12.3g} {build / nt:6.2f} {cb:12.2f} {bb:10.2f}"
              f" {nt1:13.3g} {build1:16.3g} {build1 / nt1:6.2f}")
    print("ntkgram: the compute (dot products + recursion, no I/O); whole build: `ntkgram build` from process start to the")
    print("fsynced kernel file (every tile and its mirror written once), best of 3 like neural-tangents' figures;")
    print("BLAS: the faster of OpenBLAS gemm and syrk for X·Xᵀ.")
    print("NTK only: neural-tangents' kernel_fn(x, None, 'ntk') against `ntkgram build --kernels ntk` (half the bytes written).")


if __name__ == "__main__":
    main()
