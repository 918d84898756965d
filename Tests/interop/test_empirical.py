"""Empirical kernels, `ntkgram train` and `dynamics --initial-outputs` against neural-tangents and JAX.

From the weights stored in a kernel file (`/params/<k>/W`, `/params/<k>/b`), neural-tangents'
`empirical_ntk_fn` on the same stax network must reproduce the stored empirical NTK to 1e-10
relative (depths 1–4, every activation, both parameterizations, with and without bias); the
empirical NNGP is the readout layer's feature Gram (W_std²/n · φ·φ′ + b_std²) and the stored
initial outputs are `apply_fn`'s. One step of `train` must be the step `jax.grad` gives on the
same weights, and `dynamics --initial-outputs` must follow the trained network more closely as
the width grows.
"""
import json
import os
import subprocess

import h5py
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from neural_tangents import empirical_ntk_fn, stax

from conftest import binary, ntkgram

ACTIVATIONS = {"relu": stax.Relu, "erf": stax.Erf, "abs": stax.Abs, "identity": stax.Identity}


def stax_network(f):
    """The stax network and its parameters as stored in an ntkgram file (kernel or train output)."""
    layers = json.loads(text(f.attrs["network"]))
    stack, params = [], []
    for k, layer in enumerate(layers):
        t = layer["type"]
        if t == "dense":
            b_std = None if layer["b_std"] == "none" else layer["b_std"]
            stack.append(stax.Dense(layer["width"], W_std=layer["W_std"], b_std=b_std, parameterization=layer["parameterization"]))
            W = jnp.asarray(f[f"params/{k}/W"][...])
            b = jnp.asarray(f[f"params/{k}/b"][...]) if f"params/{k}/b" in f else None
            params.append((W, b))
        elif t == "flatten":
            stack.append(stax.Flatten())
            params.append(())
        elif t == "leaky_relu":
            stack.append(stax.LeakyRelu(layer["slope"]))
            params.append(())
        else:
            stack.append(ACTIVATIONS[t]())
            params.append(())
    return layers, stack, params


def text(value):
    return value.decode() if isinstance(value, bytes) else str(value)


def rel(a, b):
    return float(np.abs(np.asarray(a) - np.asarray(b)).max() / np.abs(np.asarray(b)).max())


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("empirical")
    r = np.random.default_rng(7)
    x, xt = r.normal(size=(37, 11)), r.normal(size=(9, 11))
    y, yt = r.integers(0, 3, size=37), r.integers(0, 3, size=9)
    for name, a in (("x", x), ("xt", xt), ("y", y), ("yt", yt)):
        np.save(d / f"{name}.npy", a)
    return d, x, xt, y, yt


# (depth, activation, parameterization, b_std, readout width): every depth 1–4, every
# activation, both parameterizations, with and without a bias, one and several outputs.
CASES = [
    (1, "relu", "ntk", "0.1", 1),
    (2, "erf", "standard", "none", 3),
    (3, "abs", "ntk", "none", 2),
    (4, "leaky_relu", "standard", "0.3", 1),
    (2, "identity", "ntk", "0.5", 4),
    (3, "relu", "standard", "0.1", 3),
    (1, "erf", "ntk", "none", 2),
    (2, "leaky_relu", "ntk", "none", 3),
    (4, "abs", "standard", "0.2", 2),
]


@pytest.mark.parametrize("depth,activation,parameterization,b_std,readout", CASES)
def test_empirical_ntk_matches_neural_tangents(data, depth, activation, parameterization, b_std, readout):
    d, x, xt, _, _ = data
    out = d / f"k-{depth}-{activation}-{parameterization}-{b_std}-{readout}.h5"
    ntkgram("build", "--train", d / "x.npy", "--test", d / "xt.npy", "--preprocess", "none", "--empirical", "--seed", depth,
            "--depth", depth, "--width", 40 + 3 * depth, "--readout-width", readout, "--activation", activation,
            "--leaky-slope", 0.2, "--W-std", 1.3, "--b-std", b_std, "--parameterization", parameterization,
            "--dtype", "float64", "--tile", 8, "--out", out, "--quiet")
    with h5py.File(out, "r") as f:
        layers, stack, params = stax_network(f)
        init_fn, apply_fn, _ = stax.serial(*stack)
        # The stored weights have the shapes stax's init_fn gives (its dense bias is 1 × out).
        _, init_params = init_fn(jax.random.PRNGKey(0), (-1, x.shape[1]))
        for (W, b), p0 in zip([p for p in params if p != ()], [p for p in init_params if p != ()]):
            assert W.shape == p0[0].shape
            assert (b is None) == (p0[1] is None) and (b is None or b.size == p0[1].size)
        ntk_fn = jax.jit(empirical_ntk_fn(apply_fn, trace_axes=(-1,), implementation=1))
        assert rel(f["train/ntk"][...], ntk_fn(x, None, params)) <= 1e-10
        assert rel(f["test/ntk"][...], ntk_fn(xt, x, params)) <= 1e-10
        # The other implementations agree too (they contract the same Jacobians differently).
        assert rel(f["test/ntk"][...], empirical_ntk_fn(apply_fn, trace_axes=(-1,), implementation=2)(xt, x, params)) <= 1e-10
        # The NNGP is the readout's feature Gram.
        _, features_fn, _ = stax.serial(*stack[:-1])
        phi, phit = features_fn(params[:-1], x), features_fn(params[:-1], xt)
        top = layers[-1]
        bias = 0.0 if top["b_std"] == "none" else top["b_std"] ** 2
        nngp = top["W_std"] ** 2 / phi.shape[1] * phit @ phi.T + bias
        assert rel(f["test/nngp"][...], nngp) <= 1e-10
        assert rel(f["initial_outputs/train"][...], apply_fn(params, x)) <= 1e-10
        assert rel(f["initial_outputs/test"][...], apply_fn(params, xt)) <= 1e-10
        assert text(f.attrs["empirical"]) == "true" and f.attrs["seed"] == depth


def test_layer_list_with_consecutive_dense_layers(data, tmp_path):
    d, x, xt, _, _ = data
    layers = [{"type": "flatten"}, {"type": "dense", "width": 30, "W_std": 1.1, "b_std": 0.2},
              {"type": "dense", "width": 20, "W_std": 1.4, "parameterization": "standard"}, {"type": "erf"},
              {"type": "dense", "width": 2, "W_std": 0.9, "b_std": 0.05}]
    ntkgram("build", "--train", d / "x.npy", "--test", d / "xt.npy", "--preprocess", "none", "--empirical", "--seed", 11,
            "--layers", json.dumps(layers), "--dtype", "float64", "--out", tmp_path / "k.h5", "--quiet")
    with h5py.File(tmp_path / "k.h5", "r") as f:
        assert sorted(f["params"].keys()) == ["1", "2", "4"]
        _, stack, params = stax_network(f)
        _, apply_fn, _ = stax.serial(*stack)
        assert rel(f["train/ntk"][...], empirical_ntk_fn(apply_fn, trace_axes=(-1,))(x, None, params)) <= 1e-10


def test_drawn_weights_have_the_stax_scaling(data, tmp_path):
    """Unit Gaussians under the NTK parameterization, W_std/√n and b_std under the standard one;
    a different seed gives different weights, the same seed the same ones."""
    d, *_ = data
    common = ("--train", d / "x.npy", "--preprocess", "none", "--empirical", "--depth", 1, "--width", 4000,
              "--W-std", 2.0, "--b-std", 0.5, "--dtype", "float64", "--quiet")
    ntkgram("build", *common, "--seed", 1, "--out", tmp_path / "a.h5")
    ntkgram("build", *common, "--seed", 2, "--out", tmp_path / "b.h5")
    ntkgram("build", *common, "--seed", 1, "--parameterization", "standard", "--out", tmp_path / "c.h5")
    with h5py.File(tmp_path / "a.h5", "r") as a, h5py.File(tmp_path / "b.h5", "r") as b, h5py.File(tmp_path / "c.h5", "r") as c:
        W = a["params/0/W"][...]
        assert W.shape == (11, 4000)
        assert abs(W.mean()) < 0.02 and abs(W.std() - 1) < 0.02
        assert abs(np.mean(W ** 4) - 3) < 0.15  # Gaussian kurtosis
        assert np.abs(np.corrcoef(W[:, :-1].ravel(), W[:, 1:].ravel())[0, 1]) < 0.02
        assert not np.allclose(W, b["params/0/W"][...])
        Ws, bs = c["params/0/W"][...], c["params/0/b"][...]
        assert np.allclose(Ws, W * 2.0 / np.sqrt(11), rtol=0, atol=1e-15)  # same draws, stax's standard scaling
        assert np.allclose(bs, a["params/0/b"][...] * 0.5, rtol=0, atol=1e-15)


def test_same_bytes_on_ranks_tiles_and_threads(data, tmp_path):
    d, *_ = data
    common = ["--train", d / "x.npy", "--test", d / "xt.npy", "--preprocess", "none", "--empirical", "--seed", 3,
              "--depth", 2, "--width", 50, "--readout-width", 3, "--dtype", "float64", "--quiet"]
    ntkgram("build", *common, "--tile", 37, "--out", tmp_path / "one.h5")
    ntkgram("build", *common, "--tile", 5, "--threads", 2, "--out", tmp_path / "threads.h5")
    subprocess.run(["mpirun", "--oversubscribe", "-np", "3", binary(), "build", *map(str, common), "--tile", "7",
                    "--out", str(tmp_path / "three.h5")], check=True, capture_output=True)
    with h5py.File(tmp_path / "one.h5", "r") as a:
        for other in ("threads.h5", "three.h5"):
            with h5py.File(tmp_path / other, "r") as b:
                for name in ("train/ntk", "train/nngp", "test/ntk", "test/nngp", "initial_outputs/train", "params/2/W"):
                    assert np.array_equal(a[name][...], b[name][...]), (other, name)
    assert "verified" in ntkgram("verify", tmp_path / "three.h5").stdout
    # Enough rows for several blocks of the forward/backward passes, so the threads share them.
    np.save(tmp_path / "x600.npy", np.random.default_rng(3).normal(size=(600, 11)))
    many = ["--train", tmp_path / "x600.npy", "--preprocess", "none", "--empirical", "--seed", 3, "--depth", 2, "--width", 20,
            "--readout-width", 2, "--dtype", "float64", "--tile", 256, "--quiet"]
    ntkgram("build", *many, "--out", tmp_path / "t1.h5")
    ntkgram("build", *many, "--threads", 2, "--out", tmp_path / "t2.h5")
    with h5py.File(tmp_path / "t1.h5", "r") as a, h5py.File(tmp_path / "t2.h5", "r") as b:
        assert np.array_equal(a["train/ntk"][...], b["train/ntk"][...])


def test_params_round_trip_and_refusals(data, tmp_path):
    d, *_ = data
    common = ["--train", d / "x.npy", "--test", d / "xt.npy", "--preprocess", "none", "--depth", 2, "--width", 30,
              "--readout-width", 2, "--dtype", "float64", "--quiet"]
    ntkgram("build", *common, "--empirical", "--seed", 9, "--out", tmp_path / "seed.h5")
    ntkgram("build", *common, "--params", tmp_path / "seed.h5", "--out", tmp_path / "given.h5")
    with h5py.File(tmp_path / "seed.h5", "r") as a, h5py.File(tmp_path / "given.h5", "r") as b:
        assert np.array_equal(a["train/ntk"][...], b["train/ntk"][...])
        assert b.attrs["seed"] == -1 and text(b.attrs["parameters_source"]).endswith("seed.h5")
        assert a.attrs["parameters_checksum"] == b.attrs["parameters_checksum"]
    # The parameters of another network (another width): one line, non-zero exit, no file.
    r = ntkgram("build", "--train", d / "x.npy", "--preprocess", "none", "--depth", 2, "--width", 31, "--readout-width", 2,
                "--params", tmp_path / "seed.h5", "--out", tmp_path / "other.h5", check=False)
    assert r.returncode != 0 and "seed.h5" in r.stderr and "another network" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and not os.path.exists(tmp_path / "other.h5")
    # A hand-written params file whose shapes do not fit the layer list.
    with h5py.File(tmp_path / "bad.h5", "w") as f:
        f["params/0/W"] = np.zeros((11, 30))
        f["params/0/b"] = np.zeros(30)
        f["params/2/W"] = np.zeros((29, 30))
        f["params/2/b"] = np.zeros(30)
        f["params/4/W"] = np.zeros((30, 2))
        f["params/4/b"] = np.zeros(2)
    r = ntkgram("build", *common, "--params", tmp_path / "bad.h5", "--out", tmp_path / "bad-k.h5", check=False)
    assert r.returncode != 0 and "bad.h5" in r.stderr and "29×30" in r.stderr and "30×30" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and not os.path.exists(tmp_path / "bad-k.h5")
    # A layer that is not dense cannot have parameters.
    with h5py.File(tmp_path / "bad.h5", "a") as f:
        del f["params/2/W"]
        f["params/2/W"] = np.zeros((30, 30))
        f["params/1/W"] = np.zeros((30, 30))
    r = ntkgram("build", *common, "--params", tmp_path / "bad.h5", "--out", tmp_path / "bad-k.h5", check=False)
    assert r.returncode != 0 and "params/1" in r.stderr and "not a dense layer" in r.stderr
    # A kernel file whose weights were changed after the build is refused by verify.
    import shutil
    shutil.copy(tmp_path / "seed.h5", tmp_path / "tampered.h5")
    with h5py.File(tmp_path / "tampered.h5", "a") as f:
        f["params/2/W"][0, 0] += 1e-3
    r = ntkgram("verify", tmp_path / "tampered.h5", check=False)
    assert r.returncode != 0 and "modified" in r.stderr
    # Cross kernels against an empirical training kernel use its weights.
    ntkgram("build", "--against", tmp_path / "seed.h5", "--test", d / "xt.npy", "--dtype", "float64",
            "--out", tmp_path / "cross.h5", "--quiet")
    with h5py.File(tmp_path / "seed.h5", "r") as a, h5py.File(tmp_path / "cross.h5", "r") as b:
        assert np.array_equal(a["test/ntk"][...], b["test/ntk"][...])
        assert np.array_equal(a["initial_outputs/test"][...], b["initial_outputs/test"][...])


def jax_step(f_initial, x, y, eta):
    """One gradient-descent step of ½·mean((f − y)²) by jax.grad on the stored initial weights."""
    layers, stack, _ = stax_network(f_initial)
    _, apply_fn, _ = stax.serial(*stack)
    params = []
    for k, layer in enumerate(layers):
        if layer["type"] == "dense":
            W = jnp.asarray(f_initial[f"initial_params/{k}/W"][...])
            b = jnp.asarray(f_initial[f"initial_params/{k}/b"][...]) if f"initial_params/{k}/b" in f_initial else None
            params.append((W, b))
        else:
            params.append(())
    loss = lambda p: 0.5 * jnp.mean((apply_fn(p, x) - y) ** 2)
    grads = jax.grad(loss)(params)
    return params, jax.tree_util.tree_map(lambda p, g: p - eta * g, params, grads)


@pytest.mark.parametrize("depth,activation,parameterization,b_std", [(1, "erf", "ntk", "0.2"), (3, "relu", "standard", "none"),
                                                                     (2, "leaky_relu", "ntk", "none"), (4, "abs", "standard", "0.1")])
def test_one_training_step_is_the_jax_step(data, tmp_path, depth, activation, parameterization, b_std):
    d, x, _, y, _ = data
    eta = 0.7
    ntkgram("train", "--train", d / "x.npy", "--train-labels", d / "y.npy", "--preprocess", "none", "--seed", 4,
            "--depth", depth, "--width", 33, "--readout-width", 3, "--activation", activation, "--leaky-slope", 0.1,
            "--parameterization", parameterization, "--b-std", b_std, "--learning-rate", eta, "--times", "0,1",
            "--out", tmp_path / "t.h5", "--quiet")
    onehot = (y[:, None] == np.arange(3)[None, :]).astype(np.float64)
    with h5py.File(tmp_path / "t.h5", "r") as f:
        before, after = jax_step(f, x, onehot, eta)
        layers = json.loads(text(f.attrs["network"]))
        for k, layer in enumerate(layers):
            if layer["type"] != "dense":
                continue
            for name, i in (("W", 0), ("b", 1)):
                if after[k][i] is None:
                    continue
                ours = f[f"params/{k}/{name}"][...]
                assert rel(ours, after[k][i]) <= 1e-12
                # The update itself, not just the weights it changes slightly.
                assert rel(ours - before[k][i], after[k][i] - before[k][i]) <= 1e-10
        assert f["times"][...].tolist() == [0, 1]
        assert rel(f["train/outputs"][0], f["initial_outputs/train"][...]) == 0


def test_training_on_two_ranks_and_the_dynamics_of_one_network(data, tmp_path):
    """Data-parallel training takes the same steps; dynamics from the network's own initial
    outputs over its empirical kernel follows the trained network, more closely when wider."""
    d, *_ = data
    gaps = {}
    for width in (64, 2048):
        common = ["--train", d / "x.npy", "--train-labels", d / "y.npy", "--test", d / "xt.npy", "--test-labels", d / "yt.npy",
                  "--preprocess", "none", "--seed", 5, "--depth", 2, "--width", width, "--readout-width", 3]
        ntkgram("train", *common, "--learning-rate", 1.0, "--times", "0,5,20,60", "--out", tmp_path / f"t{width}.h5", "--quiet")
        ntkgram("build", *common, "--empirical", "--dtype", "float64", "--out", tmp_path / f"k{width}.h5", "--quiet")
        ntkgram("dynamics", tmp_path / f"k{width}.h5", "--learning-rate", 1.0, "--times", "0,5,20,60",
                "--initial-outputs", tmp_path / f"k{width}.h5", "--out", tmp_path / f"d{width}.h5", "--quiet")
        with h5py.File(tmp_path / f"t{width}.h5", "r") as t, h5py.File(tmp_path / f"d{width}.h5", "r") as g:
            trained, predicted = t["test/outputs"][...], g["dynamics/test/predictions"][...]
            assert np.array_equal(trained[0], predicted[0])  # t = 0: both are f₀
            assert t["train/loss"][-1] < 0.5 * t["train/loss"][0]  # it trains
            gaps[width] = max(np.linalg.norm(trained[i] - predicted[i]) / np.linalg.norm(trained[i] - trained[0]) for i in (1, 2, 3))
    assert gaps[2048] < 0.1 and gaps[2048] < gaps[64] / 3, gaps
    # Two ranks: the same steps up to the order of the gradient sums.
    r = subprocess.run(["mpirun", "--oversubscribe", "-np", "2", binary(), "train", *map(str, common), "--learning-rate", "1.0",
                        "--times", "0,5,20,60", "--out", str(tmp_path / "t2.h5"), "--quiet"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    with h5py.File(tmp_path / "t2048.h5", "r") as a, h5py.File(tmp_path / "t2.h5", "r") as b:
        assert rel(b["test/outputs"][...], a["test/outputs"][...]) <= 1e-10
        assert rel(b["params/4/W"][...], a["params/4/W"][...]) <= 1e-10
        assert b.attrs["ranks"] == 2


def test_training_refusals(data, tmp_path):
    d, *_ = data
    common = ["--train", d / "x.npy", "--train-labels", d / "y.npy", "--preprocess", "none", "--depth", 1, "--width", 8]
    r = ntkgram("train", *common, "--times", "0,3", "--out", tmp_path / "t.h5", check=False)
    assert r.returncode != 0 and "readout" in r.stderr and "3 column" in r.stderr
    r = ntkgram("train", *common, "--readout-width", 3, "--times", "5,2", "--out", tmp_path / "t.h5", check=False)
    assert r.returncode != 0 and "increasing" in r.stderr
    r = ntkgram("train", *common, "--readout-width", 3, "--times", "inf", "--out", tmp_path / "t.h5", check=False)
    assert r.returncode != 0 and "whole numbers" in r.stderr
    r = ntkgram("train", *common, "--readout-width", 3, "--times", "1", "--test-targets", d / "y.npy", "--out", tmp_path / "t.h5",
                check=False)
    assert r.returncode != 0 and "--test-targets needs --targets" in r.stderr and not os.path.exists(tmp_path / "t.h5")
    # dynamics --initial-outputs of a network with another number of outputs than target columns.
    ntkgram("build", *common, "--readout-width", 2, "--empirical", "--dtype", "float64", "--out", tmp_path / "k.h5", "--quiet")
    r = ntkgram("dynamics", tmp_path / "k.h5", "--times", "1", "--initial-outputs", tmp_path / "k.h5", "--out", tmp_path / "d.h5",
                check=False)
    assert r.returncode != 0 and "readout width" in r.stderr and not os.path.exists(tmp_path / "d.h5")
    # Initial outputs for another test set (5 rows where the kernel has 9): named, not a crash.
    more = ["--test", d / "xt.npy", "--readout-width", 3, "--empirical", "--dtype", "float64", "--quiet"]
    ntkgram("build", *common, *more, "--out", tmp_path / "k9.h5")
    ntkgram("build", *common, *more, "--test-limit", 5, "--out", tmp_path / "k5.h5")
    r = ntkgram("dynamics", tmp_path / "k9.h5", "--times", "1", "--initial-outputs", tmp_path / "k5.h5", "--out", tmp_path / "d.h5",
                check=False)
    assert r.returncode != 0 and "5 rows" in r.stderr and "9 test samples" in r.stderr and not os.path.exists(tmp_path / "d.h5")
    # A convolutional network has no empirical kernel yet: said plainly.
    r = ntkgram("build", "--train", d / "x.npy", "--preprocess", "none", "--input-shape", "1,11,1", "--empirical",
                "--layers", '[{"type":"conv","width":4,"filter":[1,3]},{"type":"flatten"},{"type":"dense","width":1}]',
                "--out", tmp_path / "c.h5", check=False)
    assert r.returncode != 0 and "convolutional" in r.stderr and "not implemented" in r.stderr


def test_job_file_keys(data, tmp_path):
    """[kernel] empirical, seed and readout_width in a job file are the flags of the same name."""
    d, *_ = data
    (tmp_path / "job.toml").write_text(f"""
[data]
train = "{d / 'x.npy'}"
preprocess = "none"
[kernel]
depth = 2
width = 20
readout_width = 2
empirical = true
seed = 6
[build]
dtype = "float64"
out = "{tmp_path / 'job.h5'}"
""")
    ntkgram("build", tmp_path / "job.toml", "--quiet")
    ntkgram("build", "--train", d / "x.npy", "--preprocess", "none", "--depth", 2, "--width", 20, "--readout-width", 2,
            "--empirical", "--seed", 6, "--dtype", "float64", "--out", tmp_path / "flags.h5", "--quiet")
    with h5py.File(tmp_path / "job.h5", "r") as a, h5py.File(tmp_path / "flags.h5", "r") as b:
        assert np.array_equal(a["train/ntk"][...], b["train/ntk"][...])
        assert a["params/4/W"].shape == (20, 2)
    # seed without empirical is a mistake worth naming.
    r = ntkgram("build", "--train", d / "x.npy", "--seed", 3, "--out", tmp_path / "s.h5", check=False)
    assert r.returncode != 0 and "seed" in r.stderr and "--empirical" in r.stderr


def test_dynamics_of_one_network_against_neural_tangents(data, tmp_path):
    """`dynamics --initial-outputs` is neural-tangents' gradient_descent_mse with fx_train_0 and
    fx_test_0 (the network's own outputs), over the network's empirical NTK, at every time."""
    from neural_tangents import predict

    d, _, _, y, _ = data
    ntkgram("build", "--train", d / "x.npy", "--train-labels", d / "y.npy", "--test", d / "xt.npy", "--preprocess", "none",
            "--empirical", "--seed", 2, "--depth", 2, "--width", 64, "--readout-width", 3, "--dtype", "float64",
            "--out", tmp_path / "k.h5", "--quiet")
    times = [0.0, 3.0, 30.0, 300.0, 3000.0]
    for ridge in ("0", "1e-2"):
        ntkgram("dynamics", tmp_path / "k.h5", "--learning-rate", 2.0, "--times", ",".join(map(str, times)), "--ridge", ridge,
                "--initial-outputs", tmp_path / "k.h5", "--out", tmp_path / f"d{ridge}.h5", "--force", "--quiet")
        with h5py.File(tmp_path / "k.h5", "r") as k, h5py.File(tmp_path / f"d{ridge}.h5", "r") as g:
            k_dd, k_td = k["train/ntk"][...], k["test/ntk"][...]
            f0, f0t = k["initial_outputs/train"][...], k["initial_outputs/test"][...]
            onehot = (y[:, None] == np.arange(3)[None, :]).astype(np.float64)
            # Both scale the ridge by trace/N (neural-tangents' diag_reg_absolute_scale=False).
            fn = predict.gradient_descent_mse(jnp.asarray(k_dd), jnp.asarray(onehot), learning_rate=2.0, diag_reg=float(ridge))
            ref_train, ref_test = fn(np.asarray(times), jnp.asarray(f0), jnp.asarray(f0t), jnp.asarray(k_td))
            ours_train, ours_test = g["dynamics/train/predictions"][...], g["dynamics/test/predictions"][...]
            for i in range(len(times)):
                assert rel(ours_train[i], ref_train[i]) <= 1e-8, (ridge, times[i])
                assert rel(ours_test[i], ref_test[i]) <= 1e-8, (ridge, times[i])
            assert np.array_equal(ours_test[0], f0t)
