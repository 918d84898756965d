"""Measures the error of the convolutional kernels' `--compute-precision float32` and `mixed`
against the float64 build (docs/precision.md, "Convolutional kernels: compute_precision").

    .venv-test/bin/python benchmarks/conv-precision.py [N] [THREADS]   (default N = 100, THREADS = 2)

Three networks, each built three times (float64 storage, so that only the computation differs):
- Myrtle-5 (`--preset myrtle5`: [conv 3×3, relu] × 2, pool, × 1, pool, × 1, global average
  pool) on the first N Fashion-MNIST training images (28 × 28, / 255);
- a deep erf network in the ordered phase (W_std = 1, b_std = 1): [conv 3×3 SAME, erf] × 10,
  avg_pool 2×2/2, [conv 3×3 SAME, erf] × 10, global average pool, dense; on the first N
  Fashion-MNIST images averaged 2×2 to 14 × 14;
- the same depth with ReLU (W_std = √2, b_std = 0), whose correlations grow towards 1 with
  depth: the nearly parallel pairs where q·q′ − Σ² cancels (worst in float32).
Prints, per kernel, the largest off-diagonal relative error |a − b| / (|b| + 0.01·max|K|)
against float64 (and the median), whether the diagonals (self-pairs) are bit-identical, and the
wall time of each build (a rough figure: THREADS threads, whatever else the machine runs).
"""
import gzip
import json
import os
import subprocess
import sys
import tempfile
import time

import h5py
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.environ.get("NTKGRAM_BIN", os.path.join(ROOT, ".build", "release", "ntkgram"))
TRAIN = "/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz"


def rel(a, b):
    return np.abs(a - b) / (np.abs(b) + 0.01 * np.abs(b).max())


def conv_erf():
    return [{"type": "conv", "width": 1, "filter": [3, 3], "padding": "SAME", "W_std": 1.0, "b_std": 1.0}, {"type": "erf"}]


def conv_relu():
    return [{"type": "conv", "width": 1, "filter": [3, 3], "padding": "SAME", "W_std": 2 ** 0.5, "b_std": 0.0}, {"type": "relu"}]


POOL = [{"type": "avg_pool", "window": [2, 2], "strides": [2, 2]}]
DEEP_ERF = conv_erf() * 10 + POOL + conv_erf() * 10 + [{"type": "global_avg_pool"}, {"type": "dense", "width": 1, "W_std": 1.0, "b_std": 1.0}]
DEEP_RELU = conv_relu() * 10 + POOL + conv_relu() * 10 + [{"type": "global_avg_pool"}, {"type": "dense", "width": 1, "W_std": 2 ** 0.5, "b_std": 0.0}]


def main(n=100, threads=2):
    with gzip.open(TRAIN) as f:
        images = np.frombuffer(f.read(16 + 784 * n), np.uint8, offset=16).reshape(n, 28, 28) / 255.0
    with tempfile.TemporaryDirectory() as d:
        np.save(f"{d}/fm14.npy", images.reshape(n, 14, 2, 14, 2).mean(axis=(2, 4))[..., None])
        cases = {
            f"Myrtle-5, {n} Fashion-MNIST images 28×28": ["--train", TRAIN, "--train-limit", str(n), "--preset", "myrtle5"],
            f"deep erf (20 conv + erf, W_std = b_std = 1, pool after 10), {n} images 14×14":
                ["--train", f"{d}/fm14.npy", "--layers", json.dumps(DEEP_ERF)],
            f"deep ReLU (20 conv + relu, W_std = √2, b_std = 0, pool after 10), {n} images 14×14":
                ["--train", f"{d}/fm14.npy", "--layers", json.dumps(DEEP_RELU)],
        }
        print("max (median) off-diagonal relative error |a − b| / (|b| + 0.01·max|K|) against the float64 build")
        for name, args in cases.items():
            print(f"-- {name}")
            files, seconds = {}, {}
            for p in ("float64", "float32", "mixed"):
                out = f"{d}/{p}.h5"
                start = time.perf_counter()
                subprocess.run([BIN, "build", *args, "--dtype", "float64", "--compute-precision", p, "--threads", str(threads),
                                "--tile", "32", "--out", out, "--quiet", "--force"], check=True)
                seconds[p] = time.perf_counter() - start
                files[p] = h5py.File(out, "r")
            off = ~np.eye(n, dtype=bool)
            for p in ("float32", "mixed"):
                parts = []
                for k in ("ntk", "nngp"):
                    a, b = files[p][f"/train/{k}"][...], files["float64"][f"/train/{k}"][...]
                    assert np.isfinite(a).all(), (p, k)
                    e = rel(a, b)[off]
                    same = np.diag(a).tobytes() == np.diag(b).tobytes()
                    parts.append(f"{k} {e.max():.2e} ({np.median(e):.1e}), diagonal {'identical' if same else 'DIFFERS'}")
                print(f"{p:8s} {'; '.join(parts)}; {seconds[p]:.1f} s (float64 {seconds['float64']:.1f} s)")
            for f in files.values():
                f.close()


if __name__ == "__main__":
    main(*map(int, sys.argv[1:3]))
