#!/usr/bin/env python3
"""Pictures of `ntkgram dynamics` and `ntkgram spectrum` outputs, as PNG files.

    ntkgram-plot.py [--dynamics DYN.h5] [--spectrum SPEC.h5] --out-dir DIR

Reads only the HDF5 files (numpy, h5py, matplotlib) and writes
  DIR/learning_curves.png   train/test loss and accuracy against training time (log axis),
                            the t = inf level dashed, one colour per ridge value
  DIR/eigenvalues.png       the top eigenvalues against their index (log-log)
  DIR/target_energy.png     the targets' energy on each eigenvector, and its running sum
Prints the paths written, one per line. Like every ntkgram command, it checks each picture's
path before drawing: never one of its inputs (whatever link names it), an existing file only with
--force, never a device or FIFO; a picture is written beside its path and renamed over it.
"""
import argparse
import os
import stat
import sys

import h5py
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def fail(path, problem):
    print(f"ntkgram-plot: {path}: {problem}", file=sys.stderr)
    sys.exit(1)


def read(path, group):
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        fail(path, f"cannot open as HDF5 ({e})")
    if group not in f:
        fail(path, f"has no {group} group (not an ntkgram {group.strip('/')} file)")
    return f


def same_file(a, b):
    """Whether two paths name one file (links and `..` resolved), as ntkgram's samePath."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.realpath(a) == os.path.realpath(b)


def check_outputs(outputs, inputs, force):
    """One line and exit 1 for a picture path that is an input, exists without --force, or is
    not a regular file; before anything is drawn or written."""
    for out in outputs:
        for path in inputs:
            if same_file(out, path):
                fail(out, f"is also the input {path}; refusing to replace it (choose another --out-dir)")
        try:
            mode = os.stat(out).st_mode
        except FileNotFoundError:
            continue
        if not stat.S_ISREG(mode):
            fail(out, "exists and is not a regular file: a picture is written beside its path and renamed over it (choose another --out-dir)")
        if not force:
            fail(out, "already exists (use --force to replace it)")


def save(fig, out):
    """Writes the figure beside `out` and renames it over `out`: the name only holds whole pictures."""
    folder, name = os.path.split(out)
    temporary = os.path.join(folder, f".{name}.partial-{os.getpid()}")
    try:
        fig.savefig(temporary, dpi=120, format="png")
        os.replace(temporary, out)
    except OSError as e:
        if os.path.exists(temporary):
            os.unlink(temporary)
        fail(out, f"cannot write the picture: {e.strerror or e}")
    finally:
        plt.close(fig)


def per_ridge(values, ridges):
    """Metric arrays are (T,) for one ridge value and (R, T) for several."""
    values = np.asarray(values)
    return values[None, :] if len(ridges) == 1 else values


def learning_curves(path, out_dir):
    f = read(path, "/dynamics")
    times = f["/dynamics/times"][...]
    ridges = f["/dynamics/ridges"][...]
    finite = np.isfinite(times) & (times > 0)
    if not finite.any():
        fail(path, "has no finite positive training time to draw")
    panels = [("loss", "loss ½‖f − y‖²/(N·C)"), ("accuracy", "accuracy")]
    panels = [(m, label) for m, label in panels if f"/dynamics/train/{m}" in f or f"/dynamics/test/{m}" in f]
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4.2), squeeze=False)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, (metric, label) in zip(axes[0], panels):
        for side, style in (("train", "-"), ("test", "-")):
            name = f"/dynamics/{side}/{metric}"
            if name not in f:
                continue
            values = per_ridge(f[name][...], ridges)
            for r, ridge in enumerate(ridges):
                colour = colours[(2 * r + (side == "test")) % len(colours)]
                tag = f"{side}" + (f", ridge {ridge:g}" if len(ridges) > 1 or ridge != 0 else "")
                ax.plot(times[finite], values[r][finite], style, marker="o", ms=3, color=colour, label=tag)
                if np.isinf(times[-1]):
                    level = values[r][-1]
                    drawn = values[r][finite]
                    if metric == "loss" and not level >= 1e-3 * drawn.min():
                        # A level far below the curve (the train loss at t = ∞ is 0) would only stretch the axis.
                        ax.plot([], [], ls="--", lw=1, color=colour, label=f"{tag}, t = ∞: {level:.2g}")
                    else:
                        ax.axhline(level, ls="--", lw=1, color=colour, label=f"{tag}, t = ∞")
        ax.set_xscale("log")
        if metric == "loss":
            ax.set_yscale("log")
        ax.set_xlabel(f"training time t (learning rate η = {f.attrs.get('learning_rate', 1.0):g})")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    kernel = f.attrs.get("kernel", b"ntk")
    kernel = kernel.decode() if isinstance(kernel, bytes) else kernel
    fig.suptitle(f"gradient-descent dynamics of the {kernel.upper()} ({f['/dynamics/train/predictions'].shape[-2]} training samples)")
    fig.tight_layout()
    out = os.path.join(out_dir, "learning_curves.png")
    save(fig, out)
    return [out]


def spectrum(path, out_dir):
    f = read(path, "/spectrum")
    values = f["/spectrum/eigenvalues"][...]
    index = np.arange(1, len(values) + 1)
    outs = []
    fig, ax = plt.subplots(figsize=(6, 4.2))
    positive = values > 0
    ax.loglog(index[positive], values[positive], marker="o", ms=3)
    ax.set_xlabel("index i")
    ax.set_ylabel("eigenvalue λᵢ")
    ax.set_title(f"top {len(values)} eigenvalues (trace {f.attrs['trace']:.4g}, "
                 f"largest stable η {f.attrs['max_stable_learning_rate']:.3g})", fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    out = os.path.join(out_dir, "eigenvalues.png")
    save(fig, out)
    outs.append(out)
    if "/spectrum/target_energy" in f:
        energy = f["/spectrum/target_energy"][...]
        fig, ax = plt.subplots(figsize=(6, 4.2))
        ax.semilogy(index, np.maximum(energy, 1e-300), marker="o", ms=3, ls="", label="share on eigenvector i")
        ax.semilogy(index, np.cumsum(energy), label="running sum")
        ax.set_xscale("log")
        ax.set_xlabel("index i (rate ηλᵢ/(N·C) falls with i)")
        ax.set_ylabel("‖vᵢᵀY‖² / ‖Y‖²")
        ax.set_title("targets' energy per eigen-direction", fontsize=9)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        out = os.path.join(out_dir, "target_energy.png")
        save(fig, out)
        outs.append(out)
    return outs


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dynamics", help="a file written by ntkgram dynamics")
    p.add_argument("--spectrum", help="a file written by ntkgram spectrum")
    p.add_argument("--out-dir", required=True, help="folder for the PNG files (created)")
    p.add_argument("--force", action="store_true", help="replace pictures that exist")
    a = p.parse_args()
    if not a.dynamics and not a.spectrum:
        p.error("give --dynamics, --spectrum or both")
    names = (["learning_curves.png"] if a.dynamics else []) + (["eigenvalues.png", "target_energy.png"] if a.spectrum else [])
    inputs = [x for x in (a.dynamics, a.spectrum) if x]
    check_outputs([os.path.join(a.out_dir, n) for n in names], inputs, a.force)
    try:
        os.makedirs(a.out_dir, exist_ok=True)
    except OSError as e:
        fail(a.out_dir, f"cannot create the folder: {e.strerror or e}")
    written = []
    if a.dynamics:
        written += learning_curves(a.dynamics, a.out_dir)
    if a.spectrum:
        written += spectrum(a.spectrum, a.out_dir)
    for w in written:
        print(w)


if __name__ == "__main__":
    main()
