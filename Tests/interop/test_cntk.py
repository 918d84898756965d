"""Convolutional kernels (CNTK, CNN-GP) built by ntkgram against neural-tangents 0.6.5 in
float64, on shapes the fixtures do not cover: H ≠ W, 3 channels, strides 2, VALID and SAME,
pooling with padding and normalize_edges, CIRCULAR, erf and leaky ReLU, the standard
parameterization, global average pooling and flatten readouts."""
import json

import h5py
import numpy as np
import pytest

from conftest import nt_layer_list, ntkgram, relative_error


def conv(width, filt, **kw):
    return {"type": "conv", "width": width, "filter": filt, **kw}


NETWORKS = {
    "hw_c3_stride2_valid_gap": [
        conv(8, [3, 2], strides=[2, 1], padding="VALID", W_std=1.4, b_std=0.1), {"type": "relu"},
        conv(8, [2, 3], padding="SAME", W_std=1.3, b_std=0.2), {"type": "relu"},
        {"type": "global_avg_pool"}, {"type": "dense", "width": 1, "W_std": 1.1, "b_std": 0.05}],
    "pool_same_normalize_erf_standard": [
        conv(4, [3, 3], padding="SAME", W_std=1.5, b_std=0.1, parameterization="standard"), {"type": "erf"},
        {"type": "avg_pool", "window": [3, 2], "strides": [2, 2], "padding": "SAME", "normalize_edges": True},
        conv(6, [2, 2], padding="VALID", W_std=1.2, b_std="none", parameterization="standard"), {"type": "leaky_relu", "slope": 0.1},
        {"type": "flatten"}, {"type": "dense", "width": 1, "W_std": 1.0, "b_std": 0.1, "parameterization": "standard"}],
    "pool_same_no_normalize": [
        conv(4, [3, 3], padding="SAME", W_std=1.4, b_std=0.1), {"type": "relu"},
        {"type": "avg_pool", "window": [2, 3], "padding": "SAME"},
        {"type": "global_avg_pool"}, {"type": "dense", "width": 1, "W_std": 1.0, "b_std": 0.0}],
    "circular_flatten_diagonal": [
        conv(4, [3, 3], padding="CIRCULAR", W_std=1.4, b_std=0.1), {"type": "abs"},
        conv(4, [3, 1], strides=[2, 2], padding="SAME", W_std=1.2, b_std=0.3), {"type": "relu"},
        {"type": "flatten"}, {"type": "dense", "width": 16, "W_std": 1.3, "b_std": 0.1}, {"type": "erf"},
        {"type": "dense", "width": 1, "W_std": 1.0, "b_std": 0.0}],
    "circular_pool": [
        conv(4, [2, 2], padding="CIRCULAR", W_std=1.4, b_std=0.1), {"type": "relu"},
        {"type": "avg_pool", "window": [2, 2], "strides": [1, 2], "padding": "CIRCULAR"},
        {"type": "global_avg_pool"}, {"type": "dense", "width": 1}],
}


@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_convolutional_matches_neural_tangents(tmp_path, name):
    layers = NETWORKS[name]
    rng = np.random.default_rng(len(name))
    x = rng.standard_normal((9, 7, 5, 3))
    t = rng.standard_normal((4, 7, 5, 3))
    x[3] = x[1]  # a duplicate image: the exact self-pair values
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "t.npy", t)
    ntkgram("build", "--train", tmp_path / "x.npy", "--test", tmp_path / "t.npy", "--layers", json.dumps(layers),
            "--dtype", "float64", "--tile", 4, "--out", tmp_path / "k.h5", "--quiet")
    kfn = nt_layer_list(layers)
    ref_train = kfn(x, None, ("nngp", "ntk"))
    ref_test = kfn(t, x, ("nngp", "ntk"))
    off = ~np.eye(9, dtype=bool)
    off[1, 3] = off[3, 1] = False
    with h5py.File(tmp_path / "k.h5", "r") as f:
        assert list(f.attrs["input_shape"]) == [7, 5, 3]
        for kernel in ("ntk", "nngp"):
            ours = f[f"/train/{kernel}"][...]
            ref = np.asarray(getattr(ref_train, kernel))
            assert relative_error(ours, ref)[off].max() <= 1e-12, kernel
            # Self-pairs: neural-tangents carries ~√ε rounding there; ours are exact (θ = 0).
            assert np.abs(np.diag(ours) - np.diag(ref)).max() / np.abs(np.diag(ref)).max() <= 1e-6
            assert ours[1, 3] == ours[1, 1] == ours[3, 3]
            assert np.array_equal(ours, ours.T)
            assert relative_error(f[f"/test/{kernel}"][...], np.asarray(getattr(ref_test, kernel))).max() <= 1e-12
    assert "verified" in ntkgram("verify", tmp_path / "k.h5", "--samples", 30).stdout
    # float32 storage: the float64 values rounded once (computation is float64 either way).
    ntkgram("build", "--train", tmp_path / "x.npy", "--test", tmp_path / "t.npy", "--layers", json.dumps(layers),
            "--dtype", "float32", "--tile", 5, "--out", tmp_path / "k32.h5", "--quiet")
    with h5py.File(tmp_path / "k.h5", "r") as f64, h5py.File(tmp_path / "k32.h5", "r") as f32:
        for name in ("/train/ntk", "/train/nngp", "/test/ntk", "/test/nngp"):
            a, b = f32[name][...], f64[name][...]
            assert a.dtype == np.float32 and np.array_equal(a, b.astype(np.float32))
            assert relative_error(a.astype(np.float64), b).max() <= 1e-6
    info = ntkgram("info", tmp_path / "k.h5").stdout
    assert ("full pixel-pair" in info) == any(l["type"] in ("avg_pool", "global_avg_pool") for l in layers)


def test_cntk_killed_build_resumes_to_the_same_bytes_and_verify_catches_tampering(tmp_path):
    import os
    import signal
    import subprocess
    import time

    from conftest import binary

    rng = np.random.default_rng(8)
    np.save(tmp_path / "x.npy", rng.standard_normal((48, 12, 11, 1)))
    layers = json.dumps([
        conv(2, [3, 3], padding="SAME", W_std=1.4, b_std=0.1), {"type": "relu"},
        {"type": "avg_pool", "window": [2, 2], "strides": [2, 2]}, conv(2, [3, 3], padding="SAME", W_std=1.4, b_std=0.1),
        {"type": "relu"}, {"type": "global_avg_pool"}, {"type": "dense", "width": 1}])
    args = ["build", "--train", tmp_path / "x.npy", "--layers", layers, "--dtype", "float64", "--tile", 3]
    ntkgram(*args, "--out", tmp_path / "straight.h5", "--quiet")
    # Two ranks, one killed with SIGKILL once some tiles are checkpointed.
    out, tiles = tmp_path / "k.h5", tmp_path / "k.tiles"
    p = subprocess.Popen(["mpirun", "--oversubscribe", "-np", "2", binary(), *map(str, args), "--out", str(out), "--quiet"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    killed = False
    deadline = time.time() + 120
    while p.poll() is None and time.time() < deadline:
        done = [n for n in os.listdir(tiles) if n.startswith("tile-")] if tiles.exists() else []
        if len(done) >= 6:
            ranks = subprocess.run(["pgrep", "-P", str(p.pid), "ntkgram"], capture_output=True, text=True).stdout.split()
            if ranks:
                os.kill(int(ranks[-1]), signal.SIGKILL)
                killed = True
                break
        time.sleep(0.02)
    p.communicate(timeout=120)
    assert killed and p.returncode != 0 and not out.exists()
    # Resume on one rank: the same bytes as the uninterrupted build.
    r = ntkgram(*args, "--out", out)
    assert "reused" in r.stderr
    with h5py.File(tmp_path / "straight.h5", "r") as a, h5py.File(out, "r") as b:
        for name in ("/train/ntk", "/train/nngp"):
            assert a[name][...].tobytes() == b[name][...].tobytes()
    assert "verified" in ntkgram("verify", out, "--samples", 20).stdout
    with h5py.File(out, "a") as f:
        f["/train/ntk"][5, 7] += 1e-9
    r = ntkgram("verify", out, "--samples", 0, check=False)
    assert r.returncode != 0 and "checksum" in r.stderr
