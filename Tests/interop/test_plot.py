"""`ntkgram plot`: the learning curves of a `dynamics` file as a PNG drawn without Python.

The picture is read back by Pillow (an independent PNG decoder): the size asked for, RGB, the
curves' colours present (one per set and ridge value), and a different picture for different
data. Every path check of the other commands holds: an existing picture only with --force, never
the input (by any name), one line for a file that is not a dynamics file, nothing left behind.
"""
import os

import h5py
import numpy as np
import pytest
from PIL import Image

from conftest import ntkgram

FMNIST = "/usr/share/datasets/fashion-mnist"
# matplotlib's tab10 colours, the ones `ntkgram plot` gives train/test of ridge 0, then ridge 1.
BLUE, ORANGE, GREEN, RED = (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("plot")
    ntkgram("build", "--train", f"{FMNIST}/train-images-idx3-ubyte.gz", "--train-labels", f"{FMNIST}/train-labels-idx1-ubyte.gz",
            "--train-limit", 300, "--test", f"{FMNIST}/t10k-images-idx3-ubyte.gz", "--test-labels",
            f"{FMNIST}/t10k-labels-idx1-ubyte.gz", "--test-limit", 100, "--out", d / "kernel.h5", "--quiet")
    ntkgram("dynamics", d / "kernel.h5", "--times", "log:1:1e5:12,inf", "--out", d / "one.h5", "--quiet")
    ntkgram("dynamics", d / "kernel.h5", "--times", "0,log:1:1e5:12,inf", "--ridge", "0,1e-2", "--out", d / "two.h5", "--quiet")
    np.save(d / "y.npy", np.linspace(-1, 1, 300)[:, None])
    np.save(d / "yt.npy", np.linspace(-1, 1, 100)[:, None])
    ntkgram("dynamics", d / "kernel.h5", "--times", "log:1:1e4:8", "--targets", d / "y.npy", "--test-targets", d / "yt.npy",
            "--out", d / "regression.h5", "--quiet")
    ntkgram("dynamics", d / "kernel.h5", "--times", "0,inf", "--out", d / "no-time.h5", "--quiet")
    return d


def colours(path):
    with Image.open(path) as im:
        im.load()
        assert im.format == "PNG" and im.mode == "RGB"
        return im.size, {c for _, c in im.getcolors(maxcolors=1 << 20)}


def one_line_failure(r, *words, status=1):
    assert r.returncode == status, (r.returncode, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ntkgram: error: "), r.stderr
    for w in words:
        assert str(w) in lines[0], (w, lines[0])


def leftovers(folder):
    return [n for n in os.listdir(folder) if ".partial" in n]


def test_a_readable_png_with_a_curve_per_set_and_ridge(files):
    out = files / "one.png"
    r = ntkgram("plot", files / "one.h5", "--out", out)
    assert r.stdout.strip() == f"wrote {out}"
    size, seen = colours(out)
    assert size == (1400, 560)
    assert {BLUE, ORANGE} <= seen and GREEN not in seen and RED not in seen
    assert len(seen) > 20  # antialiased lines and text, not a flat picture
    ntkgram("plot", files / "two.h5", "--out", files / "two.png", "--width", 900, "--height", 400)
    size, seen = colours(files / "two.png")
    assert size == (900, 400) and {BLUE, ORANGE, GREEN, RED} <= seen
    # Regression targets (loss only, one panel) draw too.
    ntkgram("plot", files / "regression.h5", "--out", files / "regression.png")
    assert {BLUE, ORANGE} <= colours(files / "regression.png")[1]
    assert (files / "one.png").read_bytes() != (files / "regression.png").read_bytes()
    assert not leftovers(files)


def test_the_picture_follows_the_data(files, tmp_path):
    """The same file draws the same bytes; changing the test accuracy changes the picture."""
    ntkgram("plot", files / "one.h5", "--out", tmp_path / "a.png")
    ntkgram("plot", files / "one.h5", "--out", tmp_path / "b.png")
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()
    changed = tmp_path / "changed.h5"
    changed.write_bytes((files / "one.h5").read_bytes())
    with h5py.File(changed, "r+") as f:
        f["/dynamics/test/accuracy"][...] = f["/dynamics/test/accuracy"][...] * 0.5
    ntkgram("plot", changed, "--out", tmp_path / "c.png")
    assert (tmp_path / "c.png").read_bytes() != (tmp_path / "a.png").read_bytes()


def test_an_existing_picture_is_replaced_only_with_force(files, tmp_path):
    out = tmp_path / "curve.png"
    out.write_bytes(b"precious")
    r = ntkgram("plot", files / "one.h5", "--out", out, check=False)
    one_line_failure(r, out, "already exists", "--force")
    assert out.read_bytes() == b"precious"
    ntkgram("plot", files / "one.h5", "--out", out, "--force")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not leftovers(tmp_path)


def test_the_input_is_never_overwritten(files, tmp_path):
    source = tmp_path / "dyn.h5"
    source.write_bytes((files / "one.h5").read_bytes())
    before = source.read_bytes()
    os.link(source, tmp_path / "hard.h5")
    os.symlink(source, tmp_path / "soft.h5")
    os.mkdir(tmp_path / "sub")
    for out in (source, tmp_path / "hard.h5", tmp_path / "soft.h5", tmp_path / "sub" / ".." / "dyn.h5"):
        for force in ([], ["--force"]):
            r = ntkgram("plot", source, "--out", out, *force, check=False)
            one_line_failure(r, "the dynamics file", "refusing")
            assert source.read_bytes() == before
    assert not leftovers(tmp_path)


def test_bad_inputs_and_outputs_are_one_line_and_write_nothing(files, tmp_path):
    out = tmp_path / "p.png"
    # A kernel file, not a dynamics file; a file that is not HDF5; a missing file.
    one_line_failure(ntkgram("plot", files / "kernel.h5", "--out", out, check=False), "kernel.h5", "ntkgram dynamics")
    (tmp_path / "text.h5").write_text("not hdf5")
    one_line_failure(ntkgram("plot", tmp_path / "text.h5", "--out", out, check=False), "text.h5")
    one_line_failure(ntkgram("plot", tmp_path / "missing.h5", "--out", out, check=False), "missing.h5")
    # Only t = 0 and t = inf: nothing to draw on a log time axis.
    one_line_failure(ntkgram("plot", files / "no-time.h5", "--out", out, check=False), "no-time.h5", "training time")
    # A metric of the wrong shape.
    bad = tmp_path / "bad.h5"
    bad.write_bytes((files / "one.h5").read_bytes())
    with h5py.File(bad, "r+") as f:
        del f["/dynamics/test/loss"]
        f["/dynamics/test/loss"] = np.zeros(3)
    one_line_failure(ntkgram("plot", bad, "--out", out, check=False), "bad.h5", "/dynamics/test/loss")
    # A missing output folder, a folder as output.
    one_line_failure(ntkgram("plot", files / "one.h5", "--out", tmp_path / "no" / "p.png", check=False), "does not exist")
    one_line_failure(ntkgram("plot", files / "one.h5", "--out", tmp_path, "--force", check=False), "is a folder")
    # Sizes out of range are usage errors.
    one_line_failure(ntkgram("plot", files / "one.h5", "--out", out, "--width", 10, check=False), "--width", status=2)
    one_line_failure(ntkgram("plot", files / "one.h5", "--out", out, "--height", 100000, check=False), "--height", status=2)
    assert not out.exists() and not leftovers(tmp_path)


@pytest.mark.parametrize("case", ["nan-loss", "huge-accuracy", "inf-loss", "zero-loss", "one-time", "wide-times", "tiny-spread"])
def test_hostile_values_draw_or_fail_in_one_line(files, tmp_path, case):
    """Values a damaged or edited file may hold never trap, hang or flood: a picture or one line."""
    path = tmp_path / f"{case}.h5"
    path.write_bytes((files / "two.h5").read_bytes())
    with h5py.File(path, "r+") as f:
        loss, accuracy, times = f["/dynamics/train/loss"], f["/dynamics/test/accuracy"], f["/dynamics/times"]
        if case == "nan-loss":
            loss[...] = np.nan
        elif case == "huge-accuracy":
            a = accuracy[...]
            a[0, 1], a[1, 2] = 1.7e308, -1.7e308
            accuracy[...] = a
        elif case == "inf-loss":
            loss[...] = np.where(np.arange(loss.shape[1]) % 2 == 0, np.inf, -np.inf)
        elif case == "zero-loss":
            loss[...] = 0
        elif case == "one-time":
            t = times[...]
            t[2:] = np.inf
            t[0] = 0
            times[...] = t
        elif case == "wide-times":
            times[...] = np.concatenate([[0], np.logspace(-300, 300, times.shape[0] - 2), [np.inf]])
        elif case == "tiny-spread":
            accuracy[...] = 1e16 + np.arange(accuracy.size).reshape(accuracy.shape) * 2.0
    r = ntkgram("plot", path, "--out", tmp_path / "p.png", check=False)
    assert r.returncode in (0, 1), r.stderr
    if r.returncode == 0:
        assert colours(tmp_path / "p.png")[0] == (1400, 560)
    else:
        one_line_failure(r, path.name)
    assert not leftovers(tmp_path)
