"""ntkgram's kernel files, read with h5py, against neural-tangents 0.6.5 in float64."""
import json

import h5py
import numpy as np
import pytest

from conftest import nt_kernel_fn, nt_layer_list, ntkgram, relative_error


def off_diagonal(a):
    return a[~np.eye(a.shape[0], dtype=bool)]


@pytest.fixture(scope="module")
def data_2000(tmp_path_factory):
    d = tmp_path_factory.mktemp("nt2000")
    rng = np.random.default_rng(2000)
    x = rng.standard_normal((2000, 784))
    t = rng.standard_normal((300, 784))
    np.save(d / "x.npy", x)
    np.save(d / "t.npy", t)
    args = ["--train", d / "x.npy", "--test", d / "t.npy", "--depth", 3, "--activation", "relu",
            "--W-std", "1.4142135623730951", "--b-std", "0.1", "--parameterization", "ntk", "--quiet"]
    ntkgram("build", *args, "--dtype", "float64", "--out", d / "k64.h5")
    ntkgram("build", *args, "--dtype", "float32", "--out", d / "k32.h5")
    kfn = nt_kernel_fn(3, "relu", np.sqrt(2), 0.1)
    ref_train = kfn(x, None, ("nngp", "ntk"))
    ref_test = kfn(t, x, ("nngp", "ntk"))
    return d, ref_train, ref_test


@pytest.mark.parametrize("kernel", ["ntk", "nngp"])
def test_float64_matches_neural_tangents(data_2000, kernel):
    d, ref_train, ref_test = data_2000
    with h5py.File(d / "k64.h5", "r") as f:
        ours = f[f"/train/{kernel}"][...]
        cross = f[f"/test/{kernel}"][...]
        assert ours.dtype == np.float64 and ours.shape == (2000, 2000)
        assert cross.shape == (300, 2000)
    ref = np.asarray(getattr(ref_train, kernel))
    assert off_diagonal(relative_error(ours, ref)).max() <= 1e-12
    assert relative_error(cross, np.asarray(getattr(ref_test, kernel))).max() <= 1e-12
    assert np.array_equal(ours, ours.T)


@pytest.mark.parametrize("kernel", ["ntk", "nngp"])
def test_float32_error_against_float64(data_2000, kernel):
    d, _, _ = data_2000
    with h5py.File(d / "k64.h5", "r") as f64, h5py.File(d / "k32.h5", "r") as f32:
        a = f32[f"/train/{kernel}"][...]
        b = f64[f"/train/{kernel}"][...]
        assert a.dtype == np.float32
        err = relative_error(a.astype(np.float64), b)
        assert off_diagonal(err).max() <= 1e-5
        assert np.diag(err).max() <= 1e-6
        cross = relative_error(f32[f"/test/{kernel}"][...].astype(np.float64), f64[f"/test/{kernel}"][...])
        assert cross.max() <= 1e-5


@pytest.mark.parametrize("depth,activation,W_std,b_std,parameterization", [
    (2, "erf", 1.5, "0.2", "ntk"),
    (2, "relu", 1.2, "none", "standard"),
    (3, "abs", 1.0, "0.3", "ntk"),
    (1, "identity", 0.9, "0.4", "standard"),
])
def test_other_networks_match(tmp_path, depth, activation, W_std, b_std, parameterization):
    rng = np.random.default_rng(depth * 31 + len(activation))
    x = rng.standard_normal((150, 40)) * 0.7
    t = rng.standard_normal((20, 40))
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "t.npy", t.astype(np.float32))
    ntkgram("build", "--train", tmp_path / "x.npy", "--test", tmp_path / "t.npy", "--depth", depth,
            "--activation", activation, f"--W-std={W_std}", "--b-std", b_std,
            "--parameterization", parameterization, "--width", 64, "--dtype", "float64", "--tile", 37,
            "--out", tmp_path / "k.h5", "--quiet")
    kfn = nt_kernel_fn(depth, activation, W_std, None if b_std == "none" else float(b_std), parameterization, 64)
    ref_train = kfn(x, None, ("nngp", "ntk"))
    ref_test = kfn(t.astype(np.float32).astype(np.float64), x, ("nngp", "ntk"))
    with h5py.File(tmp_path / "k.h5", "r") as f:
        for kernel in ("ntk", "nngp"):
            assert off_diagonal(relative_error(f[f"/train/{kernel}"][...], np.asarray(getattr(ref_train, kernel)))).max() <= 1e-12
            assert relative_error(f[f"/test/{kernel}"][...], np.asarray(getattr(ref_test, kernel))).max() <= 1e-12


def test_attributes_readable_by_h5py(data_2000):
    d, _, _ = data_2000
    with h5py.File(d / "k64.h5", "r") as f:
        a = f.attrs
        assert int(a["N"]) == 2000 and int(a["M"]) == 300
        # Variable-length UTF-8 strings: h5py gives str.
        assert a["dtype"] == "float64" and a["architecture"] == "fully_connected"
        assert int(a["format_version"]) == 2 and a["layout"] == "contiguous"
        layers = json.loads(a["network"])
        assert [layer["type"] for layer in layers] == ["dense", "relu"] * 3 + ["dense"]
        assert layers[0]["W_std"] == np.sqrt(2) and layers[0]["b_std"] == 0.1 and layers[-1]["width"] == 1
        assert list(a["input_shape"]) == [784]
        # Checksums as (high, low) 32-bit words: no reader clips them.
        assert f["/tiles/checksums"].shape[1:] == (2, 2) and f["/tiles/checksums"].dtype == np.uint32
        assert f["/test/ntk"].attrs["axes"] == "test sample, train sample"
        assert f["/train/nngp"].attrs["axes"] == "train sample, train sample"


# A heterogeneous layer list: per-layer W_std, b_std, width and parameterization, two dense
# layers in a row, three activations, and neural-tangents' default W_std = 1 / b_std = None.
LAYERS = [
    {"type": "dense", "width": 64, "W_std": 1.5, "b_std": 0.1},
    {"type": "erf"},
    {"type": "dense", "width": 32, "W_std": 1.2, "b_std": "none", "parameterization": "standard"},
    {"type": "relu"},
    {"type": "dense", "width": 48, "W_std": 1.1, "b_std": 0.05},
    {"type": "dense", "width": 16, "W_std": 1.3, "b_std": 0.0, "parameterization": "standard"},
    {"type": "leaky_relu", "slope": 0.2},
    {"type": "dense", "width": 8},
    {"type": "abs"},
    {"type": "dense", "width": 1, "W_std": 0.9, "b_std": 0.2, "parameterization": "standard"},
]


def test_layer_list_matches_neural_tangents(tmp_path):
    rng = np.random.default_rng(77)
    x = rng.standard_normal((130, 30))
    t = rng.standard_normal((17, 30))
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "t.npy", t)
    ntkgram("build", "--train", tmp_path / "x.npy", "--test", tmp_path / "t.npy", "--layers", json.dumps(LAYERS),
            "--dtype", "float64", "--tile", 29, "--out", tmp_path / "k.h5", "--quiet")
    kfn = nt_layer_list(LAYERS)
    ref_train = kfn(x, None, ("nngp", "ntk"))
    ref_test = kfn(t, x, ("nngp", "ntk"))
    with h5py.File(tmp_path / "k.h5", "r") as f:
        for kernel in ("ntk", "nngp"):
            assert off_diagonal(relative_error(f[f"/train/{kernel}"][...], np.asarray(getattr(ref_train, kernel)))).max() <= 1e-12
            assert relative_error(f[f"/test/{kernel}"][...], np.asarray(getattr(ref_test, kernel))).max() <= 1e-12
        stored = json.loads(f.attrs["network"])
    # Every parameter explicit in the stored list; its defaults are stax's.
    assert stored[7] == {"type": "dense", "width": 8, "W_std": 1.0, "b_std": "none", "parameterization": "ntk"}
    assert [layer["type"] for layer in stored] == [layer["type"] for layer in LAYERS]
    # The stored list builds the same kernel again.
    ntkgram("build", "--train", tmp_path / "x.npy", "--test", tmp_path / "t.npy", "--layers", json.dumps(stored),
            "--dtype", "float64", "--tile", 64, "--out", tmp_path / "again.h5", "--quiet")
    with h5py.File(tmp_path / "k.h5", "r") as a, h5py.File(tmp_path / "again.h5", "r") as b:
        assert a.attrs["fingerprint"] != b.attrs["fingerprint"]  # another tile size
        for name in ("/train/ntk", "/train/nngp", "/test/ntk", "/test/nngp"):
            assert np.array_equal(a[name][...], b[name][...])


def test_images_keep_their_shape_and_dense_sees_them_flat(tmp_path):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((60, 6, 5, 2))
    np.save(tmp_path / "x.npy", x)
    layers = [{"type": "flatten"}, {"type": "dense", "width": 32, "W_std": 1.4, "b_std": 0.1}, {"type": "relu"},
              {"type": "dense", "width": 1, "W_std": 1.4, "b_std": 0.1}]
    job = tmp_path / "job.toml"
    job.write_text('[data]\ntrain = "x.npy"\n[kernel]\n' + "".join(
        "[[kernel.layers]]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in layer.items()) for layer in layers) +
        '[build]\nout = "k.h5"\ndtype = "float64"\n')
    ntkgram("build", job, "--quiet")
    ref = nt_layer_list(layers)(x, None, ("nngp", "ntk"))
    with h5py.File(tmp_path / "k.h5", "r") as f:
        assert list(f.attrs["input_shape"]) == [6, 5, 2]
        assert json.loads(f.attrs["network"])[0] == {"type": "flatten"}
        for kernel in ("ntk", "nngp"):
            assert off_diagonal(relative_error(f[f"/train/{kernel}"][...], np.asarray(getattr(ref, kernel)))).max() <= 1e-12
    # `ntkgram info` prints the same list, one layer a line.
    info = ntkgram("info", tmp_path / "k.h5").stdout
    assert "input shape: 6×5×2" in info
    for k, layer in enumerate(json.loads(h5py.File(tmp_path / "k.h5", "r").attrs["network"])):
        assert f"  {k} {layer['type']}" in info
