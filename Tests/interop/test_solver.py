"""ntkgram solve against dense Cholesky solves (scipy), across solvers, preconditioners,
ridges, rank counts, a kill -9, and bad input."""
import json
import os
import signal
import subprocess
import time

import h5py
import numpy as np
import pytest
import scipy.linalg as sl

from conftest import binary, ntkgram


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """A float64 kernel of 600 train / 150 test samples with 4 classes."""
    d = tmp_path_factory.mktemp("solve")
    rng = np.random.default_rng(11)
    x = rng.standard_normal((600, 30))
    t = rng.standard_normal((150, 30))
    w = rng.standard_normal((30, 4))
    np.save(d / "x.npy", x)
    np.save(d / "t.npy", t)
    np.save(d / "y.npy", np.argmax(x @ w, 1).astype(np.int64))
    np.save(d / "yt.npy", np.argmax(t @ w, 1).astype(np.int64))
    ntkgram("build", "--train", d / "x.npy", "--train-labels", d / "y.npy", "--test", d / "t.npy",
            "--test-labels", d / "yt.npy", "--dtype", "float64", "--tile", 128, "--out", d / "k.h5", "--quiet")
    with h5py.File(d / "k.h5") as f:
        k = f["/train/ntk"][...]
        kt = f["/test/ntk"][...]
        y = f["/train/labels"][...]
        yt = f["/test/labels"][...]
    return d, k, kt, y, yt


def dense_alpha(k, targets, lam):
    return sl.cho_solve(sl.cho_factor(k + lam * np.eye(k.shape[0])), targets)


@pytest.mark.parametrize("solver", ["cg", "block-cg"])
@pytest.mark.parametrize("preconditioner", ["rpcholesky", "nystrom", "jacobi", "none"])
def test_matches_dense_cholesky(small, solver, preconditioner):
    d, k, kt, y, yt = small
    out = d / f"sol-{solver}-{preconditioner}.h5"
    ntkgram("solve", d / "k.h5", "--ridge", "1e-2,1e-1", "--tol", "1e-12", "--solver", solver,
            "--preconditioner", preconditioner, "--rank", 100, "--out", out, "--metrics", d / "m.json",
            "--quiet", "--force", "--max-iter", 3000)
    onehot = np.eye(4)[y]
    with h5py.File(out) as f:
        alpha, lams, pred, true_res = f["/alpha"][...], f["/ridge"][...], f["/test/predictions"][...], f["/true_residuals"][...]
        assert alpha.shape == (2, 600, 4) and pred.shape == (2, 150, 4)
    metrics = json.load(open(d / "m.json"))
    assert np.allclose(lams, np.array([1e-2, 1e-1]) * np.trace(k) / 600, rtol=1e-14)
    for r, lam in enumerate(lams):
        ref = dense_alpha(k, onehot, lam)
        assert np.abs(alpha[r] - ref).max() / np.abs(ref).max() <= 1e-8
        res = np.linalg.norm(onehot - (k + lam * np.eye(600)) @ alpha[r], axis=0) / np.linalg.norm(onehot, axis=0)
        assert np.allclose(true_res[r], res, rtol=1e-3, atol=1e-15)
        assert metrics["results"][r]["worst_true_residual"] == pytest.approx(res.max(), rel=1e-3, abs=1e-15)
        assert np.allclose(pred[r], kt @ ref, rtol=1e-7, atol=1e-9 * np.abs(kt @ ref).max())
        accuracy = (np.argmax(kt @ ref, 1) == yt).mean()
        assert metrics["results"][r]["accuracy"] == pytest.approx(accuracy)


def test_regression_targets_and_mse(small, tmp_path):
    d, k, kt, _, _ = small
    rng = np.random.default_rng(3)
    targets = rng.standard_normal((600, 2))
    test_targets = rng.standard_normal((150, 2))
    np.save(tmp_path / "targets.npy", targets)
    np.save(tmp_path / "test_targets.npy", test_targets)
    ntkgram("solve", d / "k.h5", "--targets", tmp_path / "targets.npy", "--test-targets", tmp_path / "test_targets.npy",
            "--ridge", "0.5", "--ridge-absolute", "--tol", "1e-12", "--out", tmp_path / "s.h5", "--metrics", tmp_path / "m.json", "--quiet")
    ref = dense_alpha(k, targets, 0.5)
    with h5py.File(tmp_path / "s.h5") as f:
        assert np.abs(f["/alpha"][...] - ref).max() / np.abs(ref).max() <= 1e-8
    mse = ((kt @ ref - test_targets) ** 2).mean()
    m = json.load(open(tmp_path / "m.json"))["results"][0]
    assert m["mse"] == pytest.approx(mse, rel=1e-6) and m["rmse"] == pytest.approx(np.sqrt(mse), rel=1e-6)


def mpirun(ranks, *args):
    return subprocess.run(["mpirun", "--allow-run-as-root", "--oversubscribe", "-np", str(ranks), binary(), *map(str, args)],
                          capture_output=True, text=True)


def test_one_and_two_ranks_agree(small):
    d, *_ = small
    for ranks in (1, 2, 3):
        r = mpirun(ranks, "solve", d / "k.h5", "--ridge", "1e-3", "--tol", "1e-12", "--out", d / f"r{ranks}.h5",
                   "--quiet", "--force", "--memory-budget", "200KiB")
        assert r.returncode == 0, r.stderr
    with h5py.File(d / "r1.h5") as a, h5py.File(d / "r2.h5") as b:
        a1, a2 = a["/alpha"][...], b["/alpha"][...]
        assert np.abs(a1 - a2).max() / np.abs(a1).max() <= 1e-10
        assert np.array_equal(np.argmax(a["/test/predictions"][...], 1), np.argmax(b["/test/predictions"][...], 1))
        assert int(b.attrs["ranks"]) == 2
    with h5py.File(d / "r1.h5") as a, h5py.File(d / "r3.h5") as c:
        assert np.abs(a["/alpha"][...] - c["/alpha"][...]).max() / np.abs(a["/alpha"][...]).max() <= 1e-10


def test_nngp_kernel_matches_dense(small, tmp_path):
    d, *_ = small
    with h5py.File(d / "k.h5") as f:
        k = f["/train/nngp"][...]
        y = f["/train/labels"][...]
    ntkgram("solve", d / "k.h5", "--kernel-name", "nngp", "--ridge", "1e-2", "--tol", "1e-12", "--encoding", "centered",
            "--out", tmp_path / "s.h5", "--quiet")
    targets = np.where(np.eye(4)[y] > 0, 0.9, -0.1)
    ref = dense_alpha(k, targets, 1e-2 * np.trace(k) / k.shape[0])
    with h5py.File(tmp_path / "s.h5") as f:
        assert np.abs(f["/alpha"][...] - ref).max() / np.abs(ref).max() <= 1e-8


def test_kill_and_resume(tmp_path):
    rng = np.random.default_rng(5)
    # Large enough (162 iterations, about a second) that the kill lands mid-solve.
    np.save(tmp_path / "x.npy", rng.standard_normal((3000, 20)))
    np.save(tmp_path / "y.npy", rng.integers(0, 3, 3000))
    ntkgram("build", "--train", tmp_path / "x.npy", "--train-labels", tmp_path / "y.npy", "--dtype", "float64",
            "--out", tmp_path / "k.h5", "--quiet")
    args = ["solve", tmp_path / "k.h5", "--preconditioner", "none", "--solver", "cg", "--ridge", "1e-6", "--tol", "1e-10",
            "--checkpoint-every", 5, "--max-iter", 5000, "--quiet"]
    ntkgram(*args, "--out", tmp_path / "clean.h5")
    p = subprocess.Popen([binary(), *map(str, args), "--out", tmp_path / "s.h5"])
    state = tmp_path / "s.h5.solve-state.h5"
    deadline = time.time() + 120
    while time.time() < deadline and p.poll() is None and not state.exists():
        time.sleep(0.01)
    assert state.exists(), "no checkpoint appeared"
    time.sleep(0.05)
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert not (tmp_path / "s.h5").exists()
    r = subprocess.run([binary(), *map(str, args[:-1]), "--out", tmp_path / "s.h5"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "resuming the solve at iteration" in r.stderr
    with h5py.File(tmp_path / "clean.h5") as a, h5py.File(tmp_path / "s.h5") as b:
        assert np.abs(a["/alpha"][...] - b["/alpha"][...]).max() <= 1e-12 * np.abs(a["/alpha"][...]).max()
    assert not state.exists()


def bad(*args):
    r = subprocess.run([binary(), *map(str, args)], capture_output=True, text=True)
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    return r.returncode, lines


def test_bad_input(small, tmp_path):
    d, *_ = small
    rng = np.random.default_rng(1)
    np.save(tmp_path / "x.npy", rng.standard_normal((50, 5)))
    ntkgram("build", "--train", tmp_path / "x.npy", "--dtype", "float64", "--out", tmp_path / "nolabels.h5", "--quiet")
    code, lines = bad("solve", tmp_path / "nolabels.h5", "--out", tmp_path / "o.h5")
    assert code != 0 and len(lines) == 1 and "no /train/labels" in lines[0] and "nolabels.h5" in lines[0]
    np.save(tmp_path / "short.npy", np.zeros((10, 2)))
    code, lines = bad("solve", d / "k.h5", "--targets", tmp_path / "short.npy", "--out", tmp_path / "o.h5")
    assert code != 0 and len(lines) == 1 and "short.npy" in lines[0] and "10 target rows" in lines[0]
    with h5py.File(tmp_path / "nan.h5", "w") as f:
        with h5py.File(d / "k.h5") as g:
            for key in g.attrs:
                f.attrs[key] = g.attrs[key]
            k = g["/train/ntk"][...]
            f["/train/labels"] = g["/train/labels"][...]
        k[5, 7] = np.nan
        f["/train/ntk"] = k
    code, lines = bad("solve", tmp_path / "nan.h5", "--out", tmp_path / "o.h5")
    assert code != 0 and len(lines) == 1 and "NaN" in lines[0] and "nan.h5" in lines[0]
    for args, text in [(["--ridge", "0"], "ridge must be a positive finite number"),
                       (["--ridge=-1e-3"], "ridge must be a positive finite number"),
                       (["--ridge", "inf"], "ridge must be a positive finite number (got inf)"),
                       (["--preconditioner", "ilu"], "unknown preconditioner 'ilu'")]:
        code, lines = bad("solve", d / "k.h5", *args, "--out", tmp_path / "o.h5")
        assert code != 0 and len(lines) == 1 and text in lines[0], lines
    assert not (tmp_path / "o.h5").exists()


def test_predict_reproduces_solve_predictions(small, tmp_path):
    d, k, kt, y, yt = small
    ntkgram("solve", d / "k.h5", "--ridge", "1e-3,1e-2", "--tol", "1e-10", "--out", tmp_path / "s.h5", "--quiet")
    r = ntkgram("predict", tmp_path / "s.h5", d / "k.h5", "--out", tmp_path / "p.h5")
    with h5py.File(tmp_path / "s.h5") as s, h5py.File(tmp_path / "p.h5") as p:
        assert np.allclose(s["/test/predictions"][...], p["/predictions"][...], rtol=1e-12, atol=1e-12)
        for i in range(2):
            accuracy = (np.argmax(p["/predictions"][i], 1) == yt).mean()
            assert f"ridge #{i}: test accuracy {accuracy:.4f}" in r.stdout
