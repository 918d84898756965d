"""Image preprocessing (issue #30): regularized ZCA whitening (`preprocess = "zca"`,
`zca_strength`) against the formula in numpy and neural-tangents' kernels of the whitened data,
horizontal-flip augmentation (`augment = "flip"`) against an explicitly mirrored data file,
`build --against` of both, and what they refuse."""
import json
import os
import subprocess

import h5py
import numpy as np
import pytest

from conftest import binary, checksum64, nt_layer_list, ntkgram, relative_error

SHAPE = (6, 6, 2)  # H, W, C: d = 72 features
N, M = 14, 5

CONV = [
    {"type": "conv", "width": 8, "filter": [3, 3], "padding": "SAME", "W_std": 1.4, "b_std": 0.1}, {"type": "relu"},
    {"type": "conv", "width": 8, "filter": [2, 2], "padding": "VALID", "W_std": 1.3, "b_std": 0.2}, {"type": "relu"},
    {"type": "global_avg_pool"}, {"type": "dense", "width": 1, "W_std": 1.1, "b_std": 0.05}]
FC = [
    {"type": "flatten"}, {"type": "dense", "width": 512, "W_std": 1.4, "b_std": 0.1}, {"type": "relu"},
    {"type": "dense", "width": 512, "W_std": 1.3, "b_std": 0.2}, {"type": "erf"},
    {"type": "dense", "width": 1, "W_std": 1.1, "b_std": 0.05}]


def zca_fit(x, eps):
    """μ and W of the training images `x` (n × H × W × C), the definition of Lee et al. 2020."""
    X = x.reshape(len(x), -1)
    n, d = X.shape
    mu = X.mean(axis=0)
    cov = (X - mu).T @ (X - mu) / n
    lam, v = np.linalg.eigh(cov + eps * np.trace(cov) / d * np.eye(d))
    return mu, (v / np.sqrt(lam)) @ v.T, cov


def whiten(x, mu, w):
    return ((x.reshape(len(x), -1) - mu) @ w).reshape(x.shape)


def data(tmp_path, seed=0):
    rng = np.random.default_rng(seed)
    # Correlated pixels (a smooth field plus noise), as images have.
    base = rng.standard_normal((N + M, 1, 1, SHAPE[2])) + 0.3 * rng.standard_normal((N + M, *SHAPE))
    x, t = base[:N] * 2 + 0.5, base[N:] * 2 + 0.5
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "t.npy", t)
    np.save(tmp_path / "y.npy", np.arange(N, dtype=np.int64) % 3)
    return x, t


def build(tmp_path, out, *args):
    ntkgram("build", "--train", tmp_path / "x.npy", "--test", tmp_path / "t.npy", "--dtype", "float64", "--tile", 4,
            *args, "--out", tmp_path / out, "--quiet")
    return tmp_path / out


def same_bytes(a, b, names):
    with h5py.File(a, "r") as fa, h5py.File(b, "r") as fb:
        for name in names:
            x, y = fa[name][...], fb[name][...]
            assert x.dtype == y.dtype and x.shape == y.shape and x.tobytes() == y.tobytes(), name


def one_line_failure(*args):
    r = ntkgram(*args, check=False)
    assert r.returncode != 0, r.stdout
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ntkgram: error: "), r.stderr
    return lines[0]


@pytest.mark.parametrize("name,layers", [("conv", CONV), ("fc", FC)])
def test_zca_kernel_is_neural_tangents_on_the_whitened_data(tmp_path, name, layers):
    x, t = data(tmp_path)
    k = build(tmp_path, "k.h5", "--layers", json.dumps(layers), "--preprocess", "zca", "--zca-strength", 0.1)
    mu, w, _ = zca_fit(x, 0.1)
    xw, tw = whiten(x, mu, w), whiten(t, mu, w)
    kfn = nt_layer_list(layers)
    ref_train, ref_test = kfn(xw, None, ("nngp", "ntk")), kfn(tw, xw, ("nngp", "ntk"))
    off = ~np.eye(N, dtype=bool)
    with h5py.File(k, "r") as f:
        assert f.attrs["preprocess"] == "zca" and f.attrs["zca_strength"] == 0.1
        assert list(f.attrs["input_shape"]) == list(SHAPE)
        # The stored transform is the formula's.
        assert np.abs(f["/preprocess/mean"][...] - mu).max() <= 1e-14 * np.abs(mu).max()
        stored = f["/preprocess/zca"][...]
        assert stored.shape == (72, 72) and np.array_equal(stored, stored.T)
        assert np.abs(stored - w).max() <= 1e-10 * np.abs(w).max()
        for kernel in ("ntk", "nngp"):
            ours, ref = f[f"/train/{kernel}"][...], np.asarray(getattr(ref_train, kernel))
            assert relative_error(ours, ref)[off].max() <= 1e-10, kernel
            # Self-pairs: neural-tangents carries ~√ε rounding there (test_cntk.py); ours are exact.
            assert np.abs(np.diag(ours) - np.diag(ref)).max() <= 1e-6 * np.abs(np.diag(ref)).max()
            assert relative_error(f[f"/test/{kernel}"][...], np.asarray(getattr(ref_test, kernel))).max() <= 1e-10, kernel
    assert "verified" in ntkgram("verify", k, "--samples", 20).stdout


def test_whitened_training_data_has_the_regularized_covariance(tmp_path):
    """By hand: with Σ = V Λ Vᵀ and δ = ε·tr(Σ)/d, the whitened training rows have covariance
    W Σ W = V diag(λ / (λ + δ)) Vᵀ, mean zero; with ε → 0 (and Σ of full rank) the identity."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((40, 3, 3, 2)) @ rng.standard_normal((2, 2)) + 1.0  # n = 40 > d = 18: full rank
    np.save(tmp_path / "x.npy", x)
    for eps in (0.5, 0.0):
        ntkgram("build", "--train", tmp_path / "x.npy", "--preprocess", "zca", "--zca-strength", eps, "--dtype", "float64",
                "--out", tmp_path / f"k{eps}.h5", "--quiet")
        with h5py.File(tmp_path / f"k{eps}.h5", "r") as f:
            mu, w = f["/preprocess/mean"][...], f["/preprocess/zca"][...]
        X = x.reshape(40, -1)
        xw = (X - mu) @ w
        cov = (X - X.mean(0)).T @ (X - X.mean(0)) / 40
        lam, v = np.linalg.eigh(cov)
        delta = eps * np.trace(cov) / 18
        expected = (v * (lam / (lam + delta))) @ v.T
        assert np.abs(xw.mean(axis=0)).max() <= 1e-12
        assert np.abs(xw.T @ xw / 40 - expected).max() <= 1e-10
        if eps == 0:
            assert np.abs(xw.T @ xw / 40 - np.eye(18)).max() <= 1e-10


def test_zca_scales_integer_pixels_first(tmp_path):
    """IDX bytes: whitened after ÷255, like scale; the kernel of the scaled, whitened data."""
    rng = np.random.default_rng(2)
    pixels = rng.integers(0, 256, size=(12, 5, 5), dtype=np.uint8)
    with open(tmp_path / "x.idx", "wb") as f:
        f.write(bytes([0, 0, 0x08, 3]) + np.array(pixels.shape, dtype=">i4").tobytes() + pixels.tobytes())
    ntkgram("build", "--train", tmp_path / "x.idx", "--preprocess", "zca", "--dtype", "float64", "--layers", json.dumps(FC),
            "--out", tmp_path / "k.h5", "--quiet")
    x = pixels.reshape(12, 5, 5, 1).astype(np.float64) / 255
    mu, w, _ = zca_fit(x, 0.1)  # the default strength
    ref = nt_layer_list(FC)(whiten(x, mu, w), None, "ntk")
    with h5py.File(tmp_path / "k.h5", "r") as f:
        assert f.attrs["zca_strength"] == 0.1
        assert np.abs(f["/preprocess/mean"][...] - mu).max() <= 1e-14
        ours = f["/train/ntk"][...]
    off = ~np.eye(12, dtype=bool)
    assert relative_error(ours, np.asarray(ref))[off].max() <= 1e-10


def test_zca_strength_is_in_the_fingerprint(tmp_path):
    data(tmp_path)
    a = build(tmp_path, "a.h5", "--preprocess", "zca", "--zca-strength", 0.1)
    b = build(tmp_path, "b.h5", "--preprocess", "zca", "--zca-strength", 0.2)
    c = build(tmp_path, "c.h5", "--preprocess", "zca")  # the default, 0.1
    with h5py.File(a, "r") as fa, h5py.File(b, "r") as fb, h5py.File(c, "r") as fc:
        assert fa.attrs["fingerprint"] != fb.attrs["fingerprint"]
        assert fa.attrs["train_fingerprint"] != fb.attrs["train_fingerprint"]
        assert fa.attrs["preprocess_checksum"] != fb.attrs["preprocess_checksum"]
        assert not np.allclose(fa["/train/ntk"][...], fb["/train/ntk"][...], rtol=1e-6, atol=0)
        assert fa.attrs["fingerprint"] == fc.attrs["fingerprint"]
        assert fa["/train/ntk"][...].tobytes() == fc["/train/ntk"][...].tobytes()
        # preprocess_checksum as docs/file-format.md describes it for zca.
        mean, w = fa["/preprocess/mean"][...], fa["/preprocess/zca"][...]
        words = np.array([checksum64(mean.astype("<f8").tobytes()), len(mean), checksum64(w.astype("<f8").tobytes()), w.size],
                         dtype="<u8").tobytes()
        assert fa.attrs["preprocess_checksum"] == f"{checksum64(words):016x}"
    # The strength is part of the identity that build --against checks.
    with h5py.File(b, "r+") as f:
        f.attrs["zca_strength"] = 0.1
    msg = one_line_failure("build", "--against", b, "--test", tmp_path / "t.npy", "--out", tmp_path / "o.h5")
    assert "b.h5" in msg and "train_fingerprint" in msg
    assert not os.path.exists(tmp_path / "o.h5")


def test_against_zca_and_flip_is_the_full_build_byte_for_byte(tmp_path):
    x, t = data(tmp_path)
    common = ["--layers", json.dumps(CONV), "--preprocess", "zca", "--zca-strength", 0.05, "--augment", "flip",
              "--train-labels", tmp_path / "y.npy"]
    full = build(tmp_path, "full.h5", *common)
    ntkgram("build", "--train", tmp_path / "x.npy", *common, "--dtype", "float64", "--tile", 4,
            "--out", tmp_path / "train.h5", "--quiet")
    np.save(tmp_path / "t2.npy", t[::-1].copy())
    ntkgram("build", "--against", tmp_path / "train.h5", "--test", tmp_path / "t.npy", "--out", tmp_path / "cross.h5", "--quiet")
    same_bytes(full, tmp_path / "cross.h5", ["/test/ntk", "/test/nngp", "/preprocess/mean", "/preprocess/zca"])
    with h5py.File(tmp_path / "cross.h5", "r") as f, h5py.File(tmp_path / "train.h5", "r") as g:
        assert f.attrs["augment"] == "flip" and f.attrs["zca_strength"] == 0.05
        assert f.attrs["N"] == 2 * N and f.attrs["train_fingerprint"] == g.attrs["train_fingerprint"]
        assert f.attrs["preprocess_checksum"] == g.attrs["preprocess_checksum"]
    # Other new data: its own rows of the same cross kernel, whatever the order.
    ntkgram("build", "--against", tmp_path / "train.h5", "--test", tmp_path / "t2.npy", "--out", tmp_path / "cross2.h5", "--quiet")
    with h5py.File(full, "r") as f, h5py.File(tmp_path / "cross2.h5", "r") as g:
        assert f["/test/ntk"][...][::-1].tobytes() == g["/test/ntk"][...].tobytes()
    assert "verified" in ntkgram("verify", tmp_path / "cross.h5", "--samples", 10).stdout
    # A solution of the full build predicts the cross kernel exactly as its own test set.
    ntkgram("solve", full, "--ridge", "1e-3", "--tol", "1e-10", "--out", tmp_path / "sol.h5", "--quiet")
    ntkgram("predict", tmp_path / "sol.h5", tmp_path / "cross.h5", "--out", tmp_path / "p.h5")
    with h5py.File(tmp_path / "sol.h5", "r") as s, h5py.File(tmp_path / "p.h5", "r") as p:
        assert s["/test/predictions"][...].tobytes() == p["/predictions"][...].tobytes()
    # A modified whitening matrix is refused: against preprocess_checksum, and without it (an
    # older file, or the checksum removed too) against the whitening of the training data.
    with h5py.File(tmp_path / "train.h5", "r+") as f:
        f["/preprocess/zca"][3, 4] += 1e-3
    for recorded in (True, False):
        if not recorded:
            with h5py.File(tmp_path / "train.h5", "r+") as f:
                del f.attrs["preprocess_checksum"]
        msg = one_line_failure("build", "--against", tmp_path / "train.h5", "--test", tmp_path / "t.npy", "--out", tmp_path / "bad.h5")
        assert "train.h5" in msg and "/preprocess/zca" in msg
        assert not os.path.exists(tmp_path / "bad.h5")
    r = ntkgram("verify", tmp_path / "train.h5", "--samples", 5, check=False)
    assert r.returncode != 0 and "/preprocess/zca" in r.stderr


def test_zca_bytes_do_not_depend_on_ranks_or_threads(tmp_path):
    data(tmp_path)
    one = build(tmp_path, "one.h5", "--preprocess", "zca", "--augment", "flip")
    build(tmp_path, "threads.h5", "--preprocess", "zca", "--augment", "flip", "--threads", 2)
    args = ["build", "--train", tmp_path / "x.npy", "--test", tmp_path / "t.npy", "--dtype", "float64", "--tile", 4,
            "--preprocess", "zca", "--augment", "flip", "--out", tmp_path / "two.h5", "--quiet"]
    r = subprocess.run(["mpirun", "--oversubscribe", "-np", "2", binary(), *map(str, args)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    for other in ("threads.h5", "two.h5"):
        assert open(one, "rb").read() == open(tmp_path / other, "rb").read(), other


def test_flip_appends_the_mirrored_training_images(tmp_path):
    x, t = data(tmp_path)
    y = np.load(tmp_path / "y.npy")
    for pre in ("scale", "zca"):
        flipped = build(tmp_path, f"flip-{pre}.h5", "--augment", "flip", "--train-labels", tmp_path / "y.npy",
                        "--preprocess", pre, "--layers", json.dumps(CONV))
        np.save(tmp_path / "mirrored.npy", np.concatenate([x, x[:, :, ::-1, :]]))
        np.save(tmp_path / "y2.npy", np.concatenate([y, y]))
        ntkgram("build", "--train", tmp_path / "mirrored.npy", "--train-labels", tmp_path / "y2.npy", "--test", tmp_path / "t.npy",
                "--dtype", "float64", "--tile", 4, "--preprocess", pre, "--layers", json.dumps(CONV),
                "--out", tmp_path / f"explicit-{pre}.h5", "--quiet")
        with h5py.File(flipped, "r") as f:
            assert f.attrs["N"] == 2 * N and f.attrs["M"] == M and f.attrs["augment"] == "flip"
            assert f["/train/ntk"].shape == (2 * N, 2 * N) and f["/test/ntk"].shape == (M, 2 * N)
            assert list(f["/train/labels"][...]) == list(y) + list(y)
        # zca fitted on the augmented set: the same statistics as the mirrored file's.
        names = ["/train/ntk", "/train/nngp", "/test/ntk", "/test/nngp", "/train/labels"]
        same_bytes(flipped, tmp_path / f"explicit-{pre}.h5", names + (["/preprocess/mean", "/preprocess/zca"] if pre == "zca" else []))
        with h5py.File(flipped, "r") as f, h5py.File(tmp_path / f"explicit-{pre}.h5", "r") as g:
            assert f.attrs["fingerprint"] != g.attrs["fingerprint"]  # the augmentation is part of the identity
        assert "verified" in ntkgram("verify", flipped, "--samples", 10).stdout
    # The limit first, then the flip.
    build(tmp_path, "limited.h5", "--augment", "flip", "--train-limit", 5)
    np.save(tmp_path / "mirrored5.npy", np.concatenate([x[:5], x[:5, :, ::-1, :]]))
    ntkgram("build", "--train", tmp_path / "mirrored5.npy", "--test", tmp_path / "t.npy", "--dtype", "float64", "--tile", 4,
            "--out", tmp_path / "explicit5.h5", "--quiet")
    same_bytes(tmp_path / "limited.h5", tmp_path / "explicit5.h5", ["/train/ntk", "/test/ntk"])
    # Flat rows given an image shape by --input-shape are mirrored as images.
    np.save(tmp_path / "flat.npy", x.reshape(N, -1))
    ntkgram("build", "--train", tmp_path / "flat.npy", "--input-shape", "6,6,2", "--augment", "flip", "--dtype", "float64",
            "--out", tmp_path / "flat.h5", "--quiet")
    ntkgram("build", "--train", tmp_path / "mirrored.npy", "--dtype", "float64", "--out", tmp_path / "flat-explicit.h5", "--quiet")
    same_bytes(tmp_path / "flat.h5", tmp_path / "flat-explicit.h5", ["/train/ntk"])


def test_bad_input_is_one_line_and_writes_nothing(tmp_path):
    data(tmp_path)
    np.save(tmp_path / "rows.npy", np.random.default_rng(1).standard_normal((10, 12)))
    before = set(os.listdir(tmp_path))
    out = tmp_path / "o.h5"
    base = ["build", "--train", tmp_path / "x.npy", "--out", out]
    cases = [
        (["--augment", "rotate"], ("--augment", "rotate", "none, flip")),
        (["--preprocess", "zca", "--zca-strength", -0.1], ("--zca-strength", "at least 0")),
        (["--preprocess", "zca", "--zca-strength", "nan"], ("--zca-strength", "finite")),
        (["--preprocess", "zca", "--zca-strength", "inf"], ("--zca-strength", "finite")),
        (["--zca-strength", 0.1], ("--zca-strength", "zca")),
        (["--preprocess", "standardize", "--zca-strength", 0.1], ("--zca-strength", "zca")),
        # ε = 0 on fewer samples (14) than features (72): Σ singular, W would be infinite.
        (["--preprocess", "zca", "--zca-strength", 0], ("x.npy", "singular", "zca_strength > 0")),
    ]
    for extra, parts in cases:
        msg = one_line_failure(*base, *extra)
        for p in parts:
            assert p in msg, (p, msg)
    msg = one_line_failure("build", "--train", tmp_path / "rows.npy", "--augment", "flip", "--out", out)
    assert "rows.npy" in msg and "flip" in msg and "images" in msg
    # The same from a job file, which the message names.
    for body, parts in [('preprocess = "zca"\nzca_strength = -1.0', ("bad.toml", "zca_strength", "at least 0")),
                        ('augment = "mirror"', ("bad.toml", "augment", "mirror")),
                        ('zca_strength = 0.5', ("bad.toml", "zca_strength", "zca"))]:
        (tmp_path / "bad.toml").write_text(f'[data]\ntrain = "x.npy"\n{body}\n[build]\nout = "o.h5"\n')
        msg = one_line_failure("build", tmp_path / "bad.toml")
        for p in parts:
            assert p in msg, (p, msg)
    (tmp_path / "bad.toml").unlink()
    # --against takes both from the stored kernel.
    ntkgram("build", "--train", tmp_path / "x.npy", "--out", tmp_path / "k.h5", "--quiet")
    for flag, value in [("--zca-strength", 0.1), ("--augment", "flip")]:
        msg = one_line_failure("build", "--against", tmp_path / "k.h5", "--test", tmp_path / "t.npy", flag, value, "--out", out)
        assert f"{flag} cannot be combined with --against" in msg
    assert set(os.listdir(tmp_path)) == before | {"k.h5"}
