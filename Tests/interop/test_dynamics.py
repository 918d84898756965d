"""`ntkgram dynamics` and `ntkgram spectrum` against neural-tangents and numpy.

A float64 kernel of 2,000 Fashion-MNIST training images and 300 test images (the depth-3 ReLU
network of jobs/fashion-mnist-10k.toml): train and test outputs at 20 times from early training
to t = inf must match neural-tangents' `gradient_descent_mse_ensemble` mean and
`gradient_descent_mse` (zero initial outputs) to 1e-8 relative, for the NTK and the NNGP, with
and without a ridge; the top 50 eigenpairs must match `numpy.linalg.eigh`.
"""
import gzip
import json
import os
import subprocess

import h5py
import jax.numpy as jnp
import numpy as np
import pytest
from neural_tangents import predict

from conftest import ROOT, binary, nt_kernel_fn, ntkgram

FMNIST = "/usr/share/datasets/fashion-mnist"
N_TRAIN, N_TEST, CLASSES = 2000, 300, 10
LEARNING_RATE = 3.0
# 19 log-spaced times spanning early training (loss barely moved) to nearly converged, and inf.
TIMES = "log:10:1e7:19,inf"


def idx(name, count):
    with gzip.open(os.path.join(FMNIST, name)) as f:
        data = np.frombuffer(f.read(), dtype=np.uint8)
    if name.endswith("labels-idx1-ubyte.gz"):
        return data[8:8 + count].astype(np.int64)
    return data[16:16 + count * 784].reshape(count, 784).astype(np.float64) / 255.0


@pytest.fixture(scope="module")
def kernel(tmp_path_factory):
    d = tmp_path_factory.mktemp("dynamics")
    x, y = idx("train-images-idx3-ubyte.gz", N_TRAIN), idx("train-labels-idx1-ubyte.gz", N_TRAIN)
    xt, yt = idx("t10k-images-idx3-ubyte.gz", N_TEST), idx("t10k-labels-idx1-ubyte.gz", N_TEST)
    for name, a in (("x", x), ("y", y), ("xt", xt), ("yt", yt)):
        np.save(d / f"{name}.npy", a)
    ntkgram("build", "--train", d / "x.npy", "--train-labels", d / "y.npy", "--test", d / "xt.npy",
            "--test-labels", d / "yt.npy", "--depth", 3, "--activation", "relu", "--W-std", np.sqrt(2), "--b-std", 0.1,
            "--dtype", "float64", "--tile", 512, "--out", d / "k.h5", "--quiet")
    return {"dir": d, "path": d / "k.h5", "x": x, "y": y, "xt": xt, "yt": yt}


def times_of(f):
    return f["/dynamics/times"][...]


def dense_outputs(k, k_td, y, times, ridge):
    """Train outputs (I − exp(−η·t·(K + ρI)/(N·C)))·y and test outputs K*·(K + ρI)⁻¹·(…)·y for
    every t, by a dense eigendecomposition."""
    n = k.shape[0]
    w, v = np.linalg.eigh(k + ridge * np.trace(k) / n * np.eye(n))
    g = v.T @ y
    phi = [-np.expm1(-LEARNING_RATE * t * np.maximum(w, 0) / y.size) for t in times]
    return (np.stack([v @ (p[:, None] * g) for p in phi]), np.stack([k_td @ (v @ ((p / w)[:, None] * g)) for p in phi]))


def relative(a, b):
    return np.linalg.norm(a - b) / np.linalg.norm(b)


@pytest.mark.parametrize("get", ["ntk", "nngp"])
@pytest.mark.parametrize("ridge", [0.0, 1e-3])
def test_matches_neural_tangents(kernel, get, ridge):
    out = kernel["dir"] / f"dyn-{get}-{ridge}.h5"
    ntkgram("dynamics", kernel["path"], "--kernel-name", get, "--times", TIMES, "--learning-rate", LEARNING_RATE,
            "--ridge", ridge, "--tol", 1e-12, "--out", out, "--metrics", str(out) + ".json", "--quiet")
    f = h5py.File(out, "r")
    t = times_of(f)
    assert len(t) == 20 and np.isinf(t[-1])
    train = f["/dynamics/train/predictions"][...]
    test = f["/dynamics/test/predictions"][...]
    assert train.shape == (20, N_TRAIN, CLASSES) and test.shape == (20, N_TEST, CLASSES)
    assert f.attrs["converged"] == 1

    y = np.eye(CLASSES)[kernel["y"]]
    k = h5py.File(kernel["path"], "r")
    k_dd, k_td = k[f"/train/{get}"][...], k[f"/test/{get}"][...]

    # gradient_descent_mse over the stored kernel, zero initial outputs.
    fn = predict.gradient_descent_mse(jnp.asarray(k_dd), jnp.asarray(y), learning_rate=LEARNING_RATE, diag_reg=ridge)
    finite = t[:-1]
    ref_train, ref_test = fn(finite, 0.0, 0.0, jnp.asarray(k_td))
    for i in range(len(finite)):
        assert relative(train[i], np.asarray(ref_train[i])) <= 1e-8, (get, ridge, finite[i])
        assert relative(test[i], np.asarray(ref_test[i])) <= 1e-8, (get, ridge, finite[i])
    inf_train, inf_test = fn(None, 0.0, 0.0, jnp.asarray(k_td))
    assert relative(train[-1], np.asarray(inf_train)) <= 1e-8
    assert relative(test[-1], np.asarray(inf_test)) <= 1e-8

    # The ensemble mean, with neural-tangents computing the kernel itself from the images. Its
    # kernel differs from ours on the diagonal by its own rounding at θ = 0 (about 4e-8 relative,
    # docs/precision.md); where the dynamics amplify that beyond 1e-8, the bound is twice what the
    # exact dynamics of the two kernels differ by (dense eigendecompositions of both).
    kernel_fn = nt_kernel_fn(3, "relu", np.sqrt(2), 0.1)
    ens = predict.gradient_descent_mse_ensemble(kernel_fn, jnp.asarray(kernel["x"]), jnp.asarray(y),
                                                learning_rate=LEARNING_RATE, diag_reg=ridge)
    nt_dd = np.asarray(kernel_fn(jnp.asarray(kernel["x"]), None, get))
    own = dense_outputs(k_dd, k_td, y, finite, ridge)
    theirs = dense_outputs(nt_dd, k_td, y, finite, ridge)
    mean_test = np.asarray(ens(finite, jnp.asarray(kernel["xt"]), get))
    mean_train = np.asarray(ens(finite, None, get))
    for i in range(len(finite)):
        bound_train = max(1e-8, 2 * relative(own[0][i], theirs[0][i]))
        bound_test = max(1e-8, 2 * relative(own[1][i], theirs[1][i]))
        assert relative(test[i], mean_test[i]) <= bound_test, (get, ridge, finite[i], bound_test)
        assert relative(train[i], mean_train[i]) <= bound_train, (get, ridge, finite[i], bound_train)
    reg = lambda k: k + ridge * np.trace(k) / N_TRAIN * np.eye(N_TRAIN)  # noqa: E731
    drift = relative(k_td @ np.linalg.solve(reg(k_dd), y), k_td @ np.linalg.solve(reg(nt_dd), y))
    assert relative(test[-1], np.asarray(ens(None, jnp.asarray(kernel["xt"]), get))) <= max(1e-8, 2 * drift)

    # Metrics in the file and the JSON agree with the predictions.
    m = json.load(open(str(out) + ".json"))
    assert len(m["points"]) == 20 and m["points"][-1]["time"] == "inf"
    acc = np.mean(np.argmax(test, axis=2) == kernel["yt"][None, :], axis=1)
    loss = 0.5 * np.mean((train - y[None]) ** 2, axis=(1, 2))
    assert np.allclose(f["/dynamics/test/accuracy"][...], acc)
    assert np.allclose(f["/dynamics/train/loss"][...], loss, rtol=1e-12, atol=1e-300)
    assert np.allclose([p["test_accuracy"] for p in m["points"]], acc)
    assert all(p["error_estimate"] <= 1e-12 for p in m["points"])


def test_several_ridges_share_one_basis_and_two_ranks_agree(kernel):
    out1, out2 = kernel["dir"] / "r1.h5", kernel["dir"] / "r2.h5"
    args = ["dynamics", kernel["path"], "--times", "0,1,100,1e4,inf", "--ridge", "1e-4,1e-2", "--tol", 1e-11, "--quiet"]
    ntkgram(*args, "--out", out1)
    r = subprocess.run(["mpirun", "--allow-run-as-root", "--oversubscribe", "-np", "2", binary(), *map(str, args), "--out", out2],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    a, b = h5py.File(out1, "r"), h5py.File(out2, "r")
    assert a["/dynamics/test/predictions"].shape == (2, 5, N_TEST, CLASSES)
    assert np.allclose(a["/dynamics/test/predictions"][...], b["/dynamics/test/predictions"][...], rtol=0, atol=1e-10)
    # t = 0 is the zero function; each ridge value against a dense solve at t = inf.
    assert np.all(a["/dynamics/train/predictions"][:, 0] == 0)
    k = h5py.File(kernel["path"], "r")
    kdd, ktd = k["/train/ntk"][...], k["/test/ntk"][...]
    y = np.eye(CLASSES)[kernel["y"]]
    for r_index, rho in enumerate([1e-4, 1e-2]):
        lam = rho * np.trace(kdd) / N_TRAIN
        assert np.isclose(a["/dynamics/lambdas"][r_index], lam, rtol=1e-14)
        ref = ktd @ np.linalg.solve(kdd + lam * np.eye(N_TRAIN), y)
        assert relative(a["/dynamics/test/predictions"][r_index, -1], ref) <= 1e-9


def test_spectrum_matches_eigh(kernel):
    out = kernel["dir"] / "spec.h5"
    ntkgram("spectrum", kernel["path"], "--top", 50, "--tol", 1e-12, "--learning-rate", LEARNING_RATE, "--out", out,
            "--metrics", str(out) + ".json", "--quiet")
    s = h5py.File(out, "r")
    k = h5py.File(kernel["path"], "r")["/train/ntk"][...]
    w, v = np.linalg.eigh(k)
    w, v = w[::-1], v[:, ::-1]
    values, vectors = s["/spectrum/eigenvalues"][...], s["/spectrum/eigenvectors"][...]
    assert values.shape == (50,) and vectors.shape == (N_TRAIN, 50)
    assert np.all(np.diff(values) <= 0)
    assert np.max(np.abs(values - w[:50]) / w[:50]) <= 1e-10
    cosines = np.abs(np.sum(vectors * v[:, :50], axis=0)) / np.linalg.norm(vectors, axis=0)
    assert np.max(np.arccos(np.minimum(cosines, 1.0))) <= 1e-6
    # Trace, stable learning rate, rates and the targets' energy from the same eigenpairs.
    assert np.isclose(s.attrs["trace"], np.trace(k), rtol=1e-13)
    assert np.isclose(s.attrs["max_stable_learning_rate"], 2 * N_TRAIN * CLASSES / w[0], rtol=1e-10)
    assert np.allclose(s["/spectrum/rates"][...], LEARNING_RATE * w[:50] / (N_TRAIN * CLASSES), rtol=1e-10)
    y = np.eye(CLASSES)[h5py.File(kernel["path"], "r")["/train/labels"][...]]
    energy = np.sum((v[:, :50].T @ y) ** 2, axis=1) / np.sum(y ** 2)
    assert np.allclose(s["/spectrum/target_energy"][...], energy, rtol=1e-6, atol=1e-12)
    # The smallest Ritz value bounds λ_min from above, and is within its residual of an eigenvalue.
    theta, res = s.attrs["smallest_ritz_value"], s.attrs["smallest_ritz_residual"]
    assert theta >= w[-1] - 1e-9 * w[0]
    assert np.min(np.abs(w - theta)) <= res + 1e-9 * w[0]


def test_plots_from_a_real_run(kernel, tmp_path):
    dyn, spec = kernel["dir"] / "plot-dyn.h5", kernel["dir"] / "plot-spec.h5"
    ntkgram("dynamics", kernel["path"], "--times", "log:1:1e6:12,inf", "--ridge", "1e-3", "--out", dyn, "--quiet")
    ntkgram("spectrum", kernel["path"], "--top", 30, "--out", spec, "--quiet")
    import sys
    r = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "ntkgram-plot.py"), "--dynamics", dyn, "--spectrum", spec,
                        "--out-dir", tmp_path / "plots"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    names = sorted(os.path.basename(p) for p in r.stdout.split())
    assert names == ["eigenvalues.png", "learning_curves.png", "target_energy.png"]
    for name in names:
        data = open(tmp_path / "plots" / name, "rb").read()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    # A file that is not a dynamics file: one line naming it.
    r = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "ntkgram-plot.py"), "--dynamics", spec,
                        "--out-dir", tmp_path / "bad"], capture_output=True, text=True)
    assert r.returncode != 0 and str(spec) in r.stderr and len(r.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("flags,needle", [
    (["--times=-1,10"], "not a training time"),
    (["--times", "10,1"], "strictly increasing"),
    (["--times", "1,1"], "strictly increasing"),
    (["--times", "1,nan"], "not a time"),
    (["--times", "1,10", "--learning-rate", "0"], "--learning-rate"),
    (["--times", "1,10", "--learning-rate=-2"], "--learning-rate"),
    (["--times", "1,10", "--ridge=-1"], "--ridge"),
    (["--times", "log:10:1:5"], "START < STOP"),
])
def test_bad_arguments(kernel, tmp_path, flags, needle):
    out = tmp_path / "d.h5"
    r = ntkgram("dynamics", kernel["path"], *flags, "--out", out, check=False)
    assert r.returncode != 0
    assert needle in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not out.exists()


def test_bad_files(kernel, tmp_path):
    # No labels and no --targets.
    np.save(tmp_path / "x.npy", kernel["x"][:50])
    ntkgram("build", "--train", tmp_path / "x.npy", "--dtype", "float64", "--out", tmp_path / "nolabels.h5", "--quiet")
    r = ntkgram("dynamics", tmp_path / "nolabels.h5", "--times", "1,inf", "--out", tmp_path / "d.h5", check=False)
    assert r.returncode != 0 and "no --targets" in r.stderr and "nolabels.h5" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and not (tmp_path / "d.h5").exists()
    # NaN in the kernel: refused, nothing written, an existing output untouched.
    bad = tmp_path / "nan.h5"
    with open(kernel["path"], "rb") as src, open(bad, "wb") as dst:
        dst.write(src.read())
    with h5py.File(bad, "r+") as f:
        f["/train/ntk"][3, 700] = np.nan
        f["/train/ntk"][700, 3] = np.nan
    (tmp_path / "keep.h5").write_bytes(b"precious")
    for command in (["dynamics", "--times", "1,inf"], ["spectrum", "--top", "5"]):
        r = ntkgram(command[0], bad, *command[1:], "--out", tmp_path / "keep.h5", "--force", check=False)
        assert r.returncode != 0 and "NaN" in r.stderr and "nan.h5" in r.stderr, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1
        assert (tmp_path / "keep.h5").read_bytes() == b"precious"
    # An existing output without --force.
    r = ntkgram("spectrum", kernel["path"], "--top", 5, "--out", tmp_path / "keep.h5", check=False)
    assert r.returncode != 0 and "already exists" in r.stderr
    # More eigenpairs than samples.
    r = ntkgram("spectrum", tmp_path / "nolabels.h5", "--top", 51, "--out", tmp_path / "s.h5", check=False)
    assert r.returncode != 0 and "--top 51" in r.stderr and not (tmp_path / "s.h5").exists()
