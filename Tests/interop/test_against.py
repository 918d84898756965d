"""build --against: the cross kernel of new data against a stored training kernel, without
rebuilding the training kernel; predict on it; what it refuses."""
import os
import shutil
import subprocess

import h5py
import numpy as np
import pytest

from conftest import binary, ntkgram

FM = "/usr/share/datasets/fashion-mnist"
TRAIN = f"{FM}/train-images-idx3-ubyte.gz"
TRAIN_LABELS = f"{FM}/train-labels-idx1-ubyte.gz"
TEST = f"{FM}/t10k-images-idx3-ubyte.gz"
TEST_LABELS = f"{FM}/t10k-labels-idx1-ubyte.gz"


def mpirun(ranks, *args):
    cmd = ["mpirun", "--oversubscribe", "-np", str(ranks), binary(), *map(str, args)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return r


def same_datasets(a, b, names):
    with h5py.File(a, "r") as fa, h5py.File(b, "r") as fb:
        for name in names:
            x, y = fa[name][...], fb[name][...]
            assert x.dtype == y.dtype and x.shape == y.shape and x.tobytes() == y.tobytes(), name


@pytest.mark.parametrize("preprocess", ["scale", "standardize"])
def test_against_equals_full_build_on_1_and_2_ranks(tmp_path, preprocess):
    common = ["--train", TRAIN, "--train-labels", TRAIN_LABELS, "--train-limit", 700, "--preprocess", preprocess, "--tile", 128]
    ntkgram("build", *common, "--test", TEST, "--test-labels", TEST_LABELS, "--test-limit", 230,
            "--out", tmp_path / "full.h5", "--quiet")
    # The training kernel alone (another test set), then the new data against it.
    ntkgram("build", *common, "--out", tmp_path / "train.h5", "--quiet")
    new = ["--test", TEST, "--test-labels", TEST_LABELS, "--test-limit", 230]
    ntkgram("build", "--against", tmp_path / "train.h5", *new, "--out", tmp_path / "a1.h5", "--quiet")
    mpirun(2, "build", "--against", tmp_path / "train.h5", *new, "--out", tmp_path / "a2.h5", "--quiet")
    for a in ("a1.h5", "a2.h5"):
        same_datasets(tmp_path / "full.h5", tmp_path / a, ["/test/ntk", "/test/nngp", "/test/labels"])
        with h5py.File(tmp_path / a, "r") as f, h5py.File(tmp_path / "train.h5", "r") as t:
            assert "/train/ntk" not in f and "/train/nngp" not in f
            assert f.attrs["against_fingerprint"] == t.attrs["fingerprint"]
            assert f.attrs["train_fingerprint"] == t.attrs["train_fingerprint"]
            if preprocess == "standardize":
                assert np.array_equal(f["/preprocess/mean"][...], t["/preprocess/mean"][...])
    r = ntkgram("verify", tmp_path / "a2.h5", "--samples", 40)
    assert "verified" in r.stdout
    # The solve of the full build's training kernel, applied to the cross kernel: the same
    # predictions, exactly.
    ntkgram("solve", tmp_path / "full.h5", "--ridge", "1e-3", "--tol", "1e-8", "--out", tmp_path / "sol.h5", "--quiet")
    ntkgram("predict", tmp_path / "sol.h5", tmp_path / "a1.h5", "--out", tmp_path / "p.h5")
    with h5py.File(tmp_path / "sol.h5", "r") as s, h5py.File(tmp_path / "p.h5", "r") as p:
        assert s["/test/predictions"][...].tobytes() == p["/predictions"][...].tobytes()


def test_against_only_the_kernels_asked_for(tmp_path):
    ntkgram("build", "--train", TRAIN, "--train-limit", 300, "--tile", 100, "--out", tmp_path / "train.h5", "--quiet")
    ntkgram("build", "--against", tmp_path / "train.h5", "--test", TEST, "--test-limit", 50, "--kernels", "nngp",
            "--out", tmp_path / "nngp.h5", "--quiet")
    ntkgram("build", "--against", tmp_path / "train.h5", "--test", TEST, "--test-limit", 50,
            "--out", tmp_path / "both.h5", "--quiet")
    with h5py.File(tmp_path / "nngp.h5", "r") as f:
        assert list(f["/test"].keys()) == ["nngp"] and f.attrs["kernels"] == "nngp"
    same_datasets(tmp_path / "nngp.h5", tmp_path / "both.h5", ["/test/nngp"])
    assert "verified" in ntkgram("verify", tmp_path / "nngp.h5", "--samples", 20).stdout


def one_line_failure(*args):
    r = ntkgram(*args, check=False)
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    return lines[0]


def test_against_refuses_what_does_not_belong(tmp_path):
    rng = np.random.default_rng(3)
    np.save(tmp_path / "x.npy", rng.standard_normal((90, 12)))
    np.save(tmp_path / "t.npy", rng.standard_normal((20, 12)))
    np.save(tmp_path / "wide.npy", rng.standard_normal((20, 13)))
    ntkgram("build", "--train", tmp_path / "x.npy", "--tile", 32, "--out", tmp_path / "k.h5", "--quiet")
    ntkgram("build", "--train", tmp_path / "x.npy", "--activation", "erf", "--tile", 32, "--out", tmp_path / "erf.h5", "--quiet")
    # The training file moved: given with --train, it is found by content.
    shutil.move(tmp_path / "x.npy", tmp_path / "moved.npy")
    msg = one_line_failure("build", "--against", tmp_path / "k.h5", "--test", tmp_path / "t.npy", "--out", tmp_path / "o.h5")
    assert "x.npy" in msg and "no such file" in msg
    ntkgram("build", "--against", tmp_path / "k.h5", "--train", tmp_path / "moved.npy", "--test", tmp_path / "t.npy",
            "--out", tmp_path / "o.h5", "--quiet")
    # A changed training file is refused.
    x = np.load(tmp_path / "moved.npy")
    x[5, 3] += 1e-9
    np.save(tmp_path / "changed.npy", x)
    msg = one_line_failure("build", "--against", tmp_path / "k.h5", "--train", tmp_path / "changed.npy", "--test",
                           tmp_path / "t.npy", "--out", tmp_path / "c.h5")
    assert "changed.npy" in msg and "is not the training data of" in msg
    # Another feature count.
    msg = one_line_failure("build", "--against", tmp_path / "k.h5", "--train", tmp_path / "moved.npy", "--test",
                           tmp_path / "wide.npy", "--out", tmp_path / "w.h5")
    assert "wide.npy" in msg and "13 features" in msg
    # A kernel file that records no training data checksum (written by another tool, or older).
    shutil.copy(tmp_path / "k.h5", tmp_path / "bare.h5")
    with h5py.File(tmp_path / "bare.h5", "a") as f:
        del f.attrs["train_data_checksum"]
    msg = one_line_failure("build", "--against", tmp_path / "bare.h5", "--test", tmp_path / "t.npy", "--out", tmp_path / "b.h5")
    assert "bare.h5" in msg and "train_data_checksum" in msg
    # The network comes from the kernel file: network flags are refused.
    msg = one_line_failure("build", "--against", tmp_path / "k.h5", "--depth", 2, "--test", tmp_path / "t.npy", "--out", tmp_path / "d.h5")
    assert "--depth cannot be combined with --against" in msg
    # predict refuses a cross kernel of another training kernel.
    ntkgram("build", "--against", tmp_path / "erf.h5", "--train", tmp_path / "moved.npy", "--test", tmp_path / "t.npy",
            "--out", tmp_path / "erf-t.h5", "--quiet")
    np.save(tmp_path / "y.npy", rng.standard_normal((90, 2)))
    ntkgram("solve", tmp_path / "k.h5", "--targets", tmp_path / "y.npy", "--out", tmp_path / "sol.h5", "--quiet")
    msg = one_line_failure("predict", tmp_path / "sol.h5", tmp_path / "erf-t.h5", "--out", tmp_path / "p.h5")
    assert "erf-t.h5" in msg and "another training kernel" in msg
    assert not os.path.exists(tmp_path / "p.h5")
    ntkgram("predict", tmp_path / "sol.h5", tmp_path / "o.h5", "--out", tmp_path / "p.h5")
    # A solution of the NTK applied to the NNGP would mix two kernels.
    msg = one_line_failure("predict", tmp_path / "sol.h5", tmp_path / "o.h5", "--kernel-name", "nngp", "--out", tmp_path / "q.h5")
    assert "sol.h5" in msg and "ntk" in msg and "nngp" in msg
