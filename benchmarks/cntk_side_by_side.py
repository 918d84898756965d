"""Convolutional kernels at the machine's limit (issue #30): this release, the release of commit
12766b4 (before the slice executor and compute_precision) and neural-tangents, on the same
images and both cores, in one run; GFLOP/s against the cores' FMA peak measured in the same run.

    bash benchmarks/cntk-side-by-side.sh [rows.json]   (builds both releases, runs this)

Networks (every conv 3×3 SAME, W_std √2; `ntk` parameterization):
- gap5:     [Conv(b_std 0.1), Relu] × 5, GlobalAvgPool, Dense(1)   on 28×28×1 Fashion-MNIST
- flatten5: [Conv(b_std 0.1), Relu] × 5, Flatten, Dense(1)         on 28×28×1 Fashion-MNIST
            (same-position covariances only)
- myrtle10: `--preset myrtle10` ([Conv(b_std 0), Relu] × 3, AvgPool 2×2/2, × 3, AvgPool, × 3,
            GlobalAvgPool, Dense(1)) on synthetic 32×32×3 images: numpy
            `default_rng(0).integers(0, 256, (N, 32, 32, 3), uint8) / 255` stored as float32 .npy
            (ntkgram reads float .npy only; there is no CIFAR on this machine).

Timing. Every ntkgram figure is `ntkgram build --threads 2` of the N×N train kernel (NTK + NNGP,
float64 storage, `--quiet`), process start to fsynced file, at two sizes N1 < N2 with the two
releases alternated, each build BENCH_REPEATS (2) times and the best time kept; the rate is the difference: (N2² − N1²) entries over t(N2) − t(N1), which
removes the fixed costs (process start, data, the reference self-pair each build computes up
front, the file). An entry is one (i, j) of the N×N kernel (ntkgram computes the upper triangle
and mirrors it; both programs are counted N² entries, as before). neural-tangents 0.6.5 runs
`jax.jit(kernel_fn)` on the whole N×N batch on both cores (its fastest here: batching only adds
passes), float64, best of 2 after a warm-up.

Per network and precision, beside ms per entry:
- ns per pixel pair per layer: the wall time of both threads over (pairs computed × pixel
  pairs), pairs computed = (N2(N2+1) − N1(N1+1))/2 (the upper triangle), pixel pairs per image
  pair = Σ over the conv layers of (H·W)² of the layer's grid (gap5: 5·784² = 3,073,280;
  myrtle10: 3·1024² + 3·256² + 3·64² = 3,354,624) — every relative offset's valid positions,
  what the slice executor computes (its slices' margins not counted); flatten5 computes the
  offset 0 only, so its "pixel pairs" are Σ H·W = 5·784 = 3,920 same-position pairs.
- GFLOP/s from FLOPS_PER_PIXEL_PAIR operations per pixel pair and conv layer (below), against
  the FMA peak of both threads measured by `ntkgram bench --fma-peak --threads 2` at the start
  of the run (measured again at the end and printed beside it, as a check on the host's load). A float32 stage counts against the float32 peak; a
  precision's peak for a network is the pixel-pair-weighted harmonic mean over its stages.
"""
import json
import os
import re
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.environ.get("NTKGRAM_BIN", os.path.join(ROOT, ".build", "release", "ntkgram"))
OLD_BIN = os.environ.get("OLD_NTKGRAM_BIN")
OLD_COMMIT = os.environ.get("OLD_COMMIT", "12766b4")
FASHION = "/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz"
THREADS = 2

# Operations per pixel pair and conv layer of the slice executor (ConvolutionalSlices.swift,
# `taps3x3` + `LaneWeights.apply` + `ReLUSliceMap`; Recursion.swift `ABReLUPair.pair`,
# `vectorAtan2`, `atanReduced`). Every +, −, ×, max, min, negation, division and square root is 1;
# a fused multiply-add 2; a compare-and-select 1.
FLOP_TABLE = {
    "9-tap stencil on Σ and Θ (9 + 9 loads summed; counted 18 adds as the issue does)": 18,
    "weights: Σ, Θ × 1/taps (2), w²Σ + b² (2), Σ′ + w²Θ (2)": 6,
    "ABReLUPair.pair outside atan2: qi·qj − s² (3), max (1), √ (1), even − angular·θ (2), angular·r + dot·s (3)": 10,
    "vectorAtan2: |y|, |x| (4), min, max (2), tan(π/8)·m (1), 2 × (select + add) (4), guarded division (2), "
    "octant add + select (2), 3 × (quadrant subtract or negate + select) (6)": 21,
    "atanReduced: z² (1), P: 4 FMAs (8), Q: add + 4 FMAs (9), z·P (1), ÷Q (1)": 20,
    "Θ′ = Θ·Σ̇ (1)": 1,
}
FLOPS_PER_PIXEL_PAIR = sum(FLOP_TABLE.values())   # 76
NT_GPU_HOURS_MYRTLE10 = 508   # neural-tangents' reported V100 GPU-hours, Myrtle-10 NTK, CIFAR-10 50k + 10k

CONV = {"type": "conv", "width": 1, "filter": [3, 3], "padding": "SAME", "W_std": 2 ** 0.5, "b_std": 0.1}
DENSE = {"type": "dense", "width": 1, "W_std": 2 ** 0.5, "b_std": 0.1}
NETWORKS = {
    # stages: (H·W of the grid, conv layers) per stage between poolings; same_position: offset 0 only.
    "gap5": {"layers": [CONV, {"type": "relu"}] * 5 + [{"type": "global_avg_pool"}, DENSE], "data": "fashion",
             "stages": [(784, 5)], "same_position": False},
    "flatten5": {"layers": [CONV, {"type": "relu"}] * 5 + [{"type": "flatten"}, DENSE], "data": "fashion",
                 "stages": [(784, 5)], "same_position": True},
    "myrtle10": {"preset": "myrtle10", "data": "synthetic32", "stages": [(1024, 3), (256, 3), (64, 3)], "same_position": False},
}
SIZES = {  # (N1, N2, tile): N2 large enough that the difference is seconds of work on both releases
    "gap5": tuple(int(v) for v in os.environ.get("BENCH_GAP", "6,24,2").split(",")),
    "flatten5": tuple(int(v) for v in os.environ.get("BENCH_FLATTEN", "200,900,40").split(",")),
    "myrtle10": tuple(int(v) for v in os.environ.get("BENCH_MYRTLE", "4,20,2").split(",")),
}
# Builds of each size and release, alternated; the best time of each is kept.
REPEATS = int(os.environ.get("BENCH_REPEATS", "2"))
NT_N = int(os.environ.get("BENCH_N_NT", "12"))
# (network, release, compute precision): the old release has none (float64).
CASES = [
    ("gap5", "float64"), ("gap5", "float32"), ("gap5", "mixed"),
    ("flatten5", "float64"),
    ("myrtle10", "float64"), ("myrtle10", "float32"), ("myrtle10", "mixed"),
]


def pixel_pairs(net):
    s = NETWORKS[net]
    return [(hw if s["same_position"] else hw * hw) * layers for hw, layers in s["stages"]]


def effective_peak(net, precision, peak):
    """Peak GFLOP/s for a network in a precision: float32 stages against the float32 peak."""
    pp = pixel_pairs(net)
    last = len(pp) - 1
    def p(i):
        f32 = precision == "float32" or (precision == "mixed" and i < last)
        return peak["float32_gflops"] if f32 else peak["float64_gflops"]
    return sum(pp) / sum(x / p(i) for i, x in enumerate(pp))


NT = r"""
import gzip, json, sys, time
import numpy as np
import jax
jax.config.update("jax_enable_x64", True)
from neural_tangents import stax
n = int(sys.argv[1])
with gzip.open("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz") as f:
    x = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28, 1)[:n] / 255.0
layers = []
for _ in range(5):
    layers += [stax.Conv(1, (3, 3), padding="SAME", W_std=np.sqrt(2), b_std=0.1), stax.Relu()]
layers.append(stax.GlobalAvgPool())
kfn = jax.jit(stax.serial(*layers, stax.Dense(1, np.sqrt(2), 0.1))[2], static_argnames="get")
k = kfn(x, None, ("nngp", "ntk")); k.ntk.block_until_ready()
best = float("inf")
for _ in range(2):
    t = time.perf_counter(); kfn(x, None, ("nngp", "ntk")).ntk.block_until_ready(); best = min(best, time.perf_counter() - t)
np.save(sys.argv[2], np.asarray(k.ntk))
print(json.dumps({"seconds": best, "entries_per_s": n * n / best}))
"""


def fma_peak(binary):
    r = subprocess.run([binary, "bench", "--fma-peak", "--threads", str(THREADS), "--json"], capture_output=True, text=True, check=True)
    return json.loads(r.stdout)


def build(binary, net, precision, n, tile, data, out):
    s = NETWORKS[net]
    cmd = [binary, "build", "--train", data, "--train-limit", str(n), "--dtype", "float64", "--tile", str(tile),
           "--threads", str(THREADS), "--out", out, "--force", "--quiet"]
    cmd += ["--preset", s["preset"]] if "preset" in s else ["--layers", json.dumps(s["layers"])]
    if precision is not None:
        cmd += ["--compute-precision", precision]
    t = time.perf_counter()
    subprocess.run(cmd, check=True)
    return time.perf_counter() - t


def plan(binary, precision, pairs_per_s=None):
    """`ntkgram plan` of Myrtle-10 on 50,000 + 10,000 CIFAR-sized images, one rank × 2 threads."""
    cmd = [binary, "plan", "--ranks", "1", "--threads", str(THREADS), "--preset", "myrtle10", "--train-count", "50000",
           "--test-count", "10000", "--input-shape", "32,32,3", "--dtype", "float32", "--compute-precision", precision]
    if pairs_per_s:
        cmd += ["--entries-per-second", f"{pairs_per_s:.6g}"]
    r = subprocess.run(cmd, capture_output=True, text=True, check=True)
    entries = float(re.search(r"\(([0-9.e+]+) kernel entries", r.stdout).group(1))
    rate = float(re.search(r"at ([0-9.e+]+) entries/s per rank", r.stdout).group(1))
    hours = entries / rate / 3600
    return {"precision": precision, "rate_from": "measured" if pairs_per_s else "plan's kernel cost",
            "entries": entries, "pairs_per_s": rate, "wall_hours": hours, "core_hours": hours * THREADS,
            "plan_line": [l for l in r.stdout.splitlines() if l.startswith("estimated wall time")][0]}


def main():
    import h5py
    assert OLD_BIN and os.path.exists(OLD_BIN), "OLD_NTKGRAM_BIN: the release of the old commit (the shell script builds it)"
    started = time.time()
    load = os.getloadavg()
    peaks = [fma_peak(BIN)]
    print(f"FMA peak, {THREADS} threads: float64 {peaks[0]['float64_gflops']:.1f} GFLOP/s, "
          f"float32 {peaks[0]['float32_gflops']:.1f} GFLOP/s (load average {load[0]:.2f})", flush=True)
    rows = []
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR", "/tmp")) as d:
        nmax = max(SIZES["myrtle10"][:2])
        synthetic = os.path.join(d, "synthetic32.npy")
        np.save(synthetic, (np.random.default_rng(0).integers(0, 256, (nmax, 32, 32, 3), dtype=np.uint8) / 255.0).astype(np.float32))
        data = {"fashion": FASHION, "synthetic32": synthetic}

        # neural-tangents, gap5 float64, on the first NT_N images.
        nt_file = os.path.join(d, "nt-gap5.npy")
        r = subprocess.run([sys.executable, "-c", NT, str(NT_N), nt_file], capture_output=True, text=True, check=True)
        nt = json.loads(r.stdout.strip().splitlines()[-1])
        print(f"neural-tangents gap5 float64, N = {NT_N}: {1e3 * nt['seconds'] / NT_N ** 2:.2f} ms/entry", flush=True)

        old_cache = {}
        for net, precision in CASES:
            n1, n2, tile = SIZES[net]
            src = data[NETWORKS[net]["data"]]
            times = {"new": {}, "old": {}}
            # The old release (float64 only) once per network, the two releases alternated.
            need_old = net not in old_cache
            for _ in range(REPEATS):
                for n in (n1, n2):
                    if need_old:
                        t = build(OLD_BIN, net, None, n, tile, src, os.path.join(d, f"old-{net}-{n}.h5"))
                        times["old"][n] = min(t, times["old"].get(n, t))
                    t = build(BIN, net, precision, n, tile, src, os.path.join(d, f"new-{net}-{precision}-{n}.h5"))
                    times["new"][n] = min(t, times["new"].get(n, t))
            if need_old:
                old_cache[net] = times["old"]
            told = old_cache[net]
            entries = n2 * n2 - n1 * n1
            pairs = (n2 * (n2 + 1) - n1 * (n1 + 1)) // 2
            dt_new = times["new"][n2] - times["new"][n1]
            dt_old = told[n2] - told[n1]
            pp = sum(pixel_pairs(net))
            peak = effective_peak(net, precision, peaks[0])
            gflops = FLOPS_PER_PIXEL_PAIR * pp * pairs / dt_new * 1e-9
            row = {"network": net, "compute_precision": precision, "n1": n1, "n2": n2, "tile": tile,
                   "seconds_new": times["new"], "seconds_old": told,
                   "ms_per_entry": 1e3 * dt_new / entries, "old_ms_per_entry": 1e3 * dt_old / entries,
                   "ratio_vs_old": dt_old / dt_new,
                   "pairs_per_s": pairs / dt_new, "old_pairs_per_s": pairs / dt_old,
                   "pixel_pairs_per_image_pair": pp,
                   "ns_per_pixel_pair_layer": dt_new / (pairs * pp) * 1e9,
                   "old_ns_per_pixel_pair_layer": dt_old / (pairs * pp) * 1e9,
                   "gflops": gflops, "old_gflops": FLOPS_PER_PIXEL_PAIR * pp * pairs / dt_old * 1e-9,
                   "peak_gflops": peak, "fraction_of_peak": gflops / peak}
            if net == "gap5":
                row["nt_ms_per_entry"] = 1e3 * nt["seconds"] / NT_N ** 2
                row["ratio_vs_nt"] = row["nt_ms_per_entry"] / row["ms_per_entry"]
                with h5py.File(os.path.join(d, f"new-{net}-{precision}-{n2}.h5"), "r") as f:
                    k = f["/train/ntk"][:NT_N, :NT_N].astype(np.float64)
                ref = np.load(nt_file).astype(np.float64)
                off = ~np.eye(NT_N, dtype=bool)
                row["max_rel_difference_vs_nt"] = float((np.abs(k - ref) / (np.abs(ref) + 0.01 * np.abs(ref).max()))[off].max())
            rows.append(row)
            print(f"{net:9s} {precision:8s} N {n1}→{n2}: {row['ms_per_entry']:.4f} ms/entry (old {row['old_ms_per_entry']:.4f}): "
                  f"{row['ratio_vs_old']:.2f}x; {row['ns_per_pixel_pair_layer']:.3f} ns/pixel pair/layer, "
                  f"{gflops:.1f} GFLOP/s = {100 * row['fraction_of_peak']:.0f}% of {peak:.0f}", flush=True)
    peaks.append(fma_peak(BIN))

    by = {(r["network"], r["compute_precision"]): r for r in rows}
    plans = [plan(BIN, "float64"), plan(BIN, "mixed")]
    for precision in ("float64", "float32", "mixed"):
        plans.append(plan(BIN, precision, by[("myrtle10", precision)]["pairs_per_s"]))

    # MARK: the table
    print()
    print(f"host: {os.cpu_count()} cores; load average at the start {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}, "
          f"at the end {os.getloadavg()[0]:.2f}; run took {(time.time() - started) / 60:.1f} min")
    print(f"FMA peak ({THREADS} threads, start / end): float64 {peaks[0]['float64_gflops']:.1f} / {peaks[1]['float64_gflops']:.1f} GFLOP/s, "
          f"float32 {peaks[0]['float32_gflops']:.1f} / {peaks[1]['float32_gflops']:.1f} GFLOP/s")
    print(f"flops per pixel pair and layer: {FLOPS_PER_PIXEL_PAIR}")
    print()
    hdr = (f"{'network':9s} {'precision':9s} {'N1→N2':>9s} {'ms/entry':>9s} {'old ms':>9s} {'vs old':>7s} {'vs NT':>7s} "
           f"{'ns/px·lay':>9s} {'old ns':>7s} {'GFLOP/s':>8s} {'of peak':>8s}")
    print(hdr)
    print("-" * len(hdr))
    for r in rows:
        vs_nt = f"{r['ratio_vs_nt']:.2f}" if "ratio_vs_nt" in r else "-"
        print(f"{r['network']:9s} {r['compute_precision']:9s} {str(r['n1']) + '→' + str(r['n2']):>9s} {r['ms_per_entry']:9.4f} "
              f"{r['old_ms_per_entry']:9.4f} {r['ratio_vs_old']:7.2f} {vs_nt:>7s} {r['ns_per_pixel_pair_layer']:9.3f} "
              f"{r['old_ns_per_pixel_pair_layer']:7.3f} {r['gflops']:8.1f} {100 * r['fraction_of_peak']:7.1f}%")
    g = by[("gap5", "float64")]
    print(f"\nneural-tangents gap5 float64 (N = {NT_N}, jit, whole batch): {g['nt_ms_per_entry']:.2f} ms/entry; "
          f"largest off-diagonal difference of this release's float64 NTK: {g['max_rel_difference_vs_nt']:.1e}")
    print(f"\nMyrtle-10, 50,000 + 10,000 images of 32×32×3 (`ntkgram plan`, 1 rank × {THREADS} threads; "
          f"neural-tangents reports {NT_GPU_HOURS_MYRTLE10} V100 GPU-hours):")
    for p in plans:
        print(f"  {p['precision']:8s} rate from {p['rate_from']:19s}: {p['pairs_per_s']:.3g} entries/s per rank, "
              f"{p['wall_hours']:.0f} h wall, {p['core_hours']:.0f} core-hours")
    if len(sys.argv) > 1:
        with open(sys.argv[1], "w") as f:
            json.dump({"old_commit": OLD_COMMIT, "threads": THREADS, "fma_peaks": peaks, "flops_per_pixel_pair": FLOPS_PER_PIXEL_PAIR,
                       "flop_table": FLOP_TABLE, "load_average_start": load, "load_average_end": os.getloadavg(),
                       "neural_tangents": {"n": NT_N, **nt}, "rows": rows, "myrtle10_plan": plans,
                       "nt_v100_gpu_hours_myrtle10": NT_GPU_HOURS_MYRTLE10}, f, indent=1)


if __name__ == "__main__":
    main()
