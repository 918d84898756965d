"""The finite-width study of docs/finite-width.md, end to end with the ntkgram binary.

On the first N Fashion-MNIST training images (default 1,000; N_TEST test images for the test
outputs), a fully-connected ReLU network [Dense(w), ReLU] × 2 + Dense(10) (W_std = √2,
b_std = 0.1, NTK parameterization):

  (a) the relative Frobenius distance ‖Θ̂_w − Θ‖/‖Θ‖ between the empirical NTK of a network of
      width w (3 seeds) and the analytic NTK, against w, with the fitted log-log slope per seed;
  (b) for several widths, the network trained by full-batch gradient descent (`ntkgram train`)
      against `ntkgram dynamics` from the network's own initial outputs, over the analytic kernel
      (the infinite-width prediction) and over the network's own empirical kernel at
      initialisation (the linearised network): test outputs along training;
  (c) how far the empirical NTK moves from initialisation to the end of training, against w.

Writes every figure to OUT/results.json, the plots to IMG/finite-width-*.png, and prints the
tables of docs/finite-width.md. Usage:
  benchmarks/finite_width.py [--out runs/finite-width] [--img docs/img] [--quick]
"""
import argparse
import json
import os
import subprocess
import sys
import time

import h5py
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.environ.get("NTKGRAM_BIN", os.path.join(HERE, ".build", "release", "ntkgram"))
FMNIST = "/usr/share/datasets/fashion-mnist"

ap = argparse.ArgumentParser()
ap.add_argument("--out", default=os.path.join(HERE, "runs", "finite-width"))
ap.add_argument("--img", default=os.path.join(HERE, "docs", "img"))
ap.add_argument("--n", type=int, default=1000)
ap.add_argument("--n-test", type=int, default=500)
ap.add_argument("--widths", default="64,128,256,512,1024,2048,4096,8192")
ap.add_argument("--seeds", default="0,1,2")
ap.add_argument("--train-widths", default="64,128,256,512,1024,2048")
ap.add_argument("--steps", type=int, default=256)
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--quick", action="store_true", help="a small version (smoke test of the script)")
args = ap.parse_args()
if args.quick:
    args.n, args.n_test, args.widths, args.seeds, args.train_widths, args.steps = 200, 100, "64,256,1024", "0,1", "64,512", 32
widths = [int(w) for w in args.widths.split(",")]
seeds = [int(s) for s in args.seeds.split(",")]
train_widths = [int(w) for w in args.train_widths.split(",")]
os.makedirs(args.out, exist_ok=True)
os.makedirs(args.img, exist_ok=True)
CLASSES = 10

DATA = ["--train", f"{FMNIST}/train-images-idx3-ubyte.gz", "--train-labels", f"{FMNIST}/train-labels-idx1-ubyte.gz",
        "--train-limit", str(args.n), "--test", f"{FMNIST}/t10k-images-idx3-ubyte.gz",
        "--test-labels", f"{FMNIST}/t10k-labels-idx1-ubyte.gz", "--test-limit", str(args.n_test)]
NET = ["--depth", "2", "--activation", "relu", "--W-std", str(np.sqrt(2)), "--b-std", "0.1", "--readout-width", str(CLASSES)]


def run(*cmd):
    t = time.perf_counter()
    r = subprocess.run([BIN, *map(str, cmd)], capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"ntkgram {' '.join(map(str, cmd))}: {r.stderr.strip()}")
    return time.perf_counter() - t


def path(name):
    return os.path.join(args.out, name)


def build(name, *extra):
    if not os.path.exists(path(name)):
        run("build", *DATA, *NET, "--dtype", "float64", "--threads", args.threads, "--out", path(name), "--quiet", *extra)
    return h5py.File(path(name), "r")


def rel_fro(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


results = {"n": args.n, "n_test": args.n_test, "network": "[Dense(w), ReLU] x 2 + Dense(10), W_std = sqrt(2), b_std = 0.1, NTK parameterization"}
t_start = time.perf_counter()

# The analytic (infinite-width) kernels.
analytic = build("analytic.h5")
theta = analytic["train/ntk"][...]
nngp = analytic["train/nngp"][...]

# (a) Empirical against analytic NTK, over widths and seeds.
distance = {s: [] for s in seeds}
distance_nngp = {s: [] for s in seeds}
for s in seeds:
    for w in widths:
        with build(f"empirical-w{w}-s{s}.h5", "--empirical", "--seed", s, "--width", w) as f:
            distance[s].append(rel_fro(f["train/ntk"][...], theta))
            distance_nngp[s].append(rel_fro(f["train/nngp"][...], nngp))
        print(f"(a) width {w} seed {s}: NTK distance {distance[s][-1]:.4g}, NNGP distance {distance_nngp[s][-1]:.4g}", flush=True)
slopes = [float(np.polyfit(np.log(widths), np.log(distance[s]), 1)[0]) for s in seeds]
slopes_nngp = [float(np.polyfit(np.log(widths), np.log(distance_nngp[s]), 1)[0]) for s in seeds]
results["a"] = {"widths": widths, "seeds": seeds, "ntk_distance": {str(s): distance[s] for s in seeds},
                "nngp_distance": {str(s): distance_nngp[s] for s in seeds},
                "ntk_slope": slopes, "ntk_slope_mean": float(np.mean(slopes)), "ntk_slope_std": float(np.std(slopes, ddof=1)),
                "nngp_slope": slopes_nngp, "nngp_slope_mean": float(np.mean(slopes_nngp)),
                "nngp_slope_std": float(np.std(slopes_nngp, ddof=1))}

# (b) Training against the dynamics of the same network. Learning rate: a quarter of the largest
# stable one, 2·N·C/λ_max(Θ) (the analytic kernel's; the finite networks' are within a few %).
lam_max = float(np.linalg.eigvalsh(theta)[-1])
eta = 0.25 * 2 * args.n * CLASSES / lam_max
steps = sorted(set([0] + [int(round(v)) for v in np.geomspace(1, args.steps, 9)]))
times = ",".join(map(str, steps))
results["b"] = {"lambda_max": lam_max, "learning_rate": eta, "steps": steps, "widths": train_widths, "runs": {}}
gaps_inf, gaps_lin, gaps_disc = {}, {}, {}
for w in train_widths:
    trained = path(f"train-w{w}.h5")
    if not os.path.exists(trained):
        seconds = run("train", *DATA, *NET, "--seed", 0, "--width", w, "--learning-rate", eta, "--times", times,
                      "--threads", args.threads, "--out", trained, "--quiet")
    else:
        seconds = None
    build(f"empirical-w{w}-s0.h5", "--empirical", "--seed", 0, "--width", w).close()
    for kernel, name in ((path("analytic.h5"), f"dynamics-analytic-w{w}.h5"), (path(f"empirical-w{w}-s0.h5"), f"dynamics-empirical-w{w}.h5")):
        if not os.path.exists(path(name)):
            run("dynamics", kernel, "--learning-rate", eta, "--times", times, "--initial-outputs", trained,
                "--out", path(name), "--quiet")
    with h5py.File(trained, "r") as t, h5py.File(path(f"dynamics-analytic-w{w}.h5"), "r") as da, \
            h5py.File(path(f"dynamics-empirical-w{w}.h5"), "r") as de:
        net = t["test/outputs"][...]
        inf = da["dynamics/test/predictions"][...]
        lin = de["dynamics/test/predictions"][...]
        change = [np.linalg.norm(net[i] - net[0]) for i in range(len(steps))]
        gi = [float(np.linalg.norm(net[i] - inf[i]) / change[i]) if i else 0.0 for i in range(len(steps))]
        gl = [float(np.linalg.norm(net[i] - lin[i]) / change[i]) if i else 0.0 for i in range(len(steps))]
        # The same linearised network in discrete time (s steps of η, as train takes them), by
        # numpy: f*_s = f*_0 + Θ*·Θ⁻¹·(I − (I − aΘ)^s)·(y − f₀), a = η/(N·C). What remains
        # between it and the trained network is the network's non-linearity alone.
        with h5py.File(path(f"empirical-w{w}-s0.h5"), "r") as e:
            k_dd, k_td = e["train/ntk"][...], e["test/ntk"][...]
            f0, f0t = e["initial_outputs/train"][...], e["initial_outputs/test"][...]
            labels = e["train/labels"][...]
        y = (labels[:, None] == np.arange(CLASSES)[None, :]).astype(np.float64)
        lam, vec = np.linalg.eigh(k_dd)
        a = eta / (args.n * CLASSES)
        coefficients = vec.T @ (y - f0)
        disc = []
        for s in steps:
            filt = np.where(lam > 1e-12 * lam[-1], (1 - (1 - a * lam) ** s) / np.maximum(lam, 1e-300), a * s)
            disc.append(f0t + k_td @ (vec @ (filt[:, None] * coefficients)))
        gd = [float(np.linalg.norm(net[i] - disc[i]) / change[i]) if i else 0.0 for i in range(len(steps))]
        gaps_inf[w], gaps_lin[w] = gi, gl
        gaps_disc[w] = gd
        results["b"]["runs"][str(w)] = {
            "train_seconds": seconds, "gap_analytic": gi, "gap_linearised": gl, "gap_linearised_discrete": gd,
            "net_test_accuracy": t["test/accuracy"][...].tolist(), "analytic_test_accuracy": da["dynamics/test/accuracy"][...].tolist(),
            "linearised_test_accuracy": de["dynamics/test/accuracy"][...].tolist(),
            "net_test_loss": t["test/loss"][...].tolist(), "analytic_test_loss": da["dynamics/test/loss"][...].tolist(),
            "net_train_loss": t["train/loss"][...].tolist()}
    print(f"(b) width {w}: final gap to the analytic dynamics {gi[-1]:.4g}, to the linearised network {gl[-1]:.4g} "
          f"(discrete time {gd[-1]:.4g})", flush=True)

# (c) How far the empirical NTK moves during training.
movement = []
for w in train_widths:
    with build(f"empirical-w{w}-s0.h5", "--empirical", "--seed", 0, "--width", w) as f0, \
            build(f"empirical-trained-w{w}.h5", "--params", path(f"train-w{w}.h5"), "--width", w) as f1:
        movement.append(rel_fro(f1["train/ntk"][...], f0["train/ntk"][...]))
    print(f"(c) width {w}: the NTK moved {movement[-1]:.4g}", flush=True)
movement_slope = float(np.polyfit(np.log(train_widths), np.log(movement), 1)[0])
results["c"] = {"widths": train_widths, "ntk_movement": movement, "slope": movement_slope}
results["seconds"] = time.perf_counter() - t_start
with open(path("results.json"), "w") as f:
    json.dump(results, f, indent=2)

# Plots.
fig, ax = plt.subplots(figsize=(5.5, 4))
for s in seeds:
    ax.loglog(widths, distance[s], "o-", alpha=0.8, label=f"NTK, seed {s} (slope {slopes[seeds.index(s)]:.3f})")
for s in seeds:
    ax.loglog(widths, distance_nngp[s], "s--", alpha=0.5, label=f"NNGP, seed {s}" if s == seeds[0] else None, color="gray")
ax.loglog(widths, distance[seeds[0]][0] * (np.array(widths) / widths[0]) ** -0.5, "k:", label="width$^{-1/2}$")
ax.set_xlabel("width"); ax.set_ylabel("‖empirical − analytic‖ / ‖analytic‖")
ax.set_title(f"(a) empirical vs analytic kernel, {args.n} images"); ax.legend(fontsize=7)
fig.tight_layout(); fig.savefig(os.path.join(args.img, "finite-width-distance.png"), dpi=120)

fig, axes = plt.subplots(1, 3, figsize=(14, 4), sharey=True)
for w in train_widths:
    axes[0].loglog(steps[1:], gaps_inf[w][1:], "o-", label=f"width {w}")
    axes[1].loglog(steps[1:], gaps_lin[w][1:], "o-", label=f"width {w}")
    axes[2].loglog(steps[1:], gaps_disc[w][1:], "o-", label=f"width {w}")
axes[0].set_title("(b) vs dynamics over the analytic NTK", fontsize=9)
axes[1].set_title("vs dynamics over its own initial NTK", fontsize=9)
axes[2].set_title("vs its linearisation in discrete time (numpy)", fontsize=9)
for a in axes:
    a.set_xlabel("gradient-descent step"); a.legend(fontsize=7)
axes[0].set_ylabel("‖f_net − f_dynamics‖ / ‖f_net − f₀‖ (test)")
fig.tight_layout(); fig.savefig(os.path.join(args.img, "finite-width-dynamics.png"), dpi=120)

fig, ax = plt.subplots(figsize=(5.5, 4))
ax.loglog(train_widths, movement, "o-", label=f"measured (slope {movement_slope:.3f})")
ax.loglog(train_widths, movement[0] * (np.array(train_widths) / train_widths[0]) ** -0.5, "k:", label="width$^{-1/2}$")
ax.set_xlabel("width"); ax.set_ylabel("‖Θ̂_end − Θ̂_0‖ / ‖Θ̂_0‖")
ax.set_title(f"(c) how far training moves the NTK ({args.steps} steps)"); ax.legend(fontsize=8)
fig.tight_layout(); fig.savefig(os.path.join(args.img, "finite-width-movement.png"), dpi=120)

# Tables.
print("\n(a) relative Frobenius distance to the analytic NTK")
print("| width | " + " | ".join(f"seed {s}" for s in seeds) + " | NNGP (seed 0) |")
print("|---|" + "---|" * (len(seeds) + 1))
for i, w in enumerate(widths):
    print(f"| {w} | " + " | ".join(f"{distance[s][i]:.4f}" for s in seeds) + f" | {distance_nngp[seeds[0]][i]:.4f} |")
print(f"NTK slope {np.mean(slopes):.3f} ± {np.std(slopes, ddof=1):.3f} (seeds: {', '.join(f'{v:.3f}' for v in slopes)}); "
      f"NNGP slope {np.mean(slopes_nngp):.3f} ± {np.std(slopes_nngp, ddof=1):.3f}")
print(f"\n(b) learning rate {eta:.4g} (λ_max {lam_max:.6g}), steps {steps}")
print("gaps ‖f_net − f_pred‖/‖f_net − f₀‖ on the test outputs at steps " + ", ".join(map(str, steps[1::2])))
print("| width | analytic dynamics | own-kernel dynamics | own-kernel, discrete time | net test acc | analytic dynamics test acc |")
print("|---|---|---|---|---|---|")
for w in train_widths:
    r = results["b"]["runs"][str(w)]
    print(f"| {w} | " + ", ".join(f"{v:.3f}" for v in gaps_inf[w][1::2]) + " | " + ", ".join(f"{v:.3f}" for v in gaps_lin[w][1::2]) +
          " | " + ", ".join(f"{v:.3f}" for v in gaps_disc[w][1::2]) +
          f" | {r['net_test_accuracy'][-1]:.3f} | {r['analytic_test_accuracy'][-1]:.3f} |")
for name, gaps in (("analytic", gaps_inf), ("own kernel", gaps_lin), ("discrete", gaps_disc)):
    slope = float(np.polyfit(np.log(train_widths), np.log([gaps[w][-1] for w in train_widths]), 1)[0])
    results["b"][f"final_gap_slope_{name.replace(' ', '_')}"] = slope
    print(f"final-step gap against width, log-log slope ({name}): {slope:.3f}")
print("\n(c) NTK movement over training")
print("| width | " + " | ".join(map(str, train_widths)) + " |")
print("|---|" + "---|" * len(train_widths))
print("| ‖Θ̂_end − Θ̂_0‖/‖Θ̂_0‖ | " + " | ".join(f"{v:.4f}" for v in movement) + " |")
print(f"slope {movement_slope:.3f}; total {results['seconds']:.0f} s")
with open(path("results.json"), "w") as f:
    json.dump(results, f, indent=2)
