"""`[kernel] compute_precision` / `--compute-precision` of the convolutional kernels (issue #30):
float32 and mixed builds against the float64 build (Myrtle-5 on Fashion-MNIST, a deep erf
network in the ordered phase), the same bytes over tiles, threads, rank counts and a killed
build resumed on another rank count, `verify`, the fingerprint and the file's attribute,
`build --against`, and what is refused."""
import gzip
import json
import os
import signal
import subprocess
import time

import h5py
import numpy as np
import pytest

from conftest import binary, checksum64, ntkgram, relative_error

FM = "/usr/share/datasets/fashion-mnist"
TRAIN = f"{FM}/train-images-idx3-ubyte.gz"
PRECISIONS = ["float64", "float32", "mixed"]
# Off-diagonal bounds of the brief (relative_error: |a − b| / (|b| + 0.01·max|b|)).
BOUND = {"float32": 1e-5, "mixed": 1e-6}


def conv(width, filt, **kw):
    return {"type": "conv", "width": width, "filter": filt, **kw}


# Two stages (an avg_pool between them), so that mixed is float32 in the first one.
SMALL = [conv(2, [3, 3], padding="SAME", W_std=1.4, b_std=0.1), {"type": "relu"},
         {"type": "avg_pool", "window": [2, 2], "strides": [2, 2]},
         conv(2, [3, 2], padding="SAME", W_std=1.3, b_std=0.2), {"type": "erf"},
         {"type": "global_avg_pool"}, {"type": "dense", "width": 1}]

# Ordered phase: W_std = 1, b_std = 1; 10 conv + erf, a pooling, 10 conv + erf (depth 20).
DEEP_ERF = ([l for _ in range(10) for l in (conv(1, [3, 3], padding="SAME", W_std=1.0, b_std=1.0), {"type": "erf"})]
            + [{"type": "avg_pool", "window": [2, 2], "strides": [2, 2]}]
            + [l for _ in range(10) for l in (conv(1, [3, 3], padding="SAME", W_std=1.0, b_std=1.0), {"type": "erf"})]
            + [{"type": "global_avg_pool"}, {"type": "dense", "width": 1, "W_std": 1.0, "b_std": 1.0}])


def fashion_mnist(count):
    """The first `count` Fashion-MNIST training images / 255, N × 28 × 28."""
    with gzip.open(TRAIN, "rb") as f:
        raw = f.read(16 + 784 * count)
    return np.frombuffer(raw[16:], dtype=np.uint8).reshape(count, 28, 28).astype(np.float64) / 255


def mpirun(ranks, *args):
    r = subprocess.run(["mpirun", "--oversubscribe", "-np", str(ranks), binary(), *map(str, args)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return r


def datasets(path, names=("/train/ntk", "/train/nngp")):
    with h5py.File(path, "r") as f:
        return {n: f[n][...] for n in names if n in f}


def one_line_failure(*args):
    r = ntkgram(*args, check=False)
    assert r.returncode != 0, r.stdout
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    return lines[0]


def measure(path64, path):
    """Largest off-diagonal error of each training kernel of `path` against `path64`, after
    checking that it is finite and that the diagonals are the same bits."""
    a, b = datasets(path64), datasets(path)
    worst = {}
    for name, ref in a.items():
        ours = b[name]
        assert np.isfinite(ours).all(), name
        # Self-pairs are computed in prepare, in float64 in every mode: the same bits.
        assert np.diag(ours).tobytes() == np.diag(ref).tobytes(), name
        off = ~np.eye(len(ref), dtype=bool)
        worst[name] = float(relative_error(ours, ref)[off].max())
    return worst


def write_fm14(path, count):
    """Fashion-MNIST images averaged 2×2 to 14×14 (N × 14 × 14 × 1)."""
    x = fashion_mnist(count).reshape(count, 14, 2, 14, 2).mean(axis=(2, 4))[..., None]
    np.save(path, x)


CASES = {
    # Myrtle-5 on the first 24 Fashion-MNIST training images (28 × 28), train kernel.
    "myrtle5-fashion-mnist": lambda tmp: ["--train", TRAIN, "--train-limit", 24, "--preset", "myrtle5"],
    # The deep erf network on 24 Fashion-MNIST images averaged to 14 × 14.
    "deep-erf-ordered": lambda tmp: (write_fm14(tmp / "fm14.npy", 24),
                                     ["--train", tmp / "fm14.npy", "--layers", json.dumps(DEEP_ERF)])[1],
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_float32_and_mixed_against_float64(tmp_path, case):
    args = CASES[case](tmp_path)
    for p in PRECISIONS:
        ntkgram("build", *args, "--dtype", "float64", "--tile", 16, "--threads", 2, "--compute-precision", p,
                "--out", tmp_path / f"{p}.h5", "--quiet")
    measured = {p: measure(tmp_path / "float64.h5", tmp_path / f"{p}.h5") for p in ("float32", "mixed")}
    print(f"{case}: {json.dumps(measured)}")
    # mixed is float32 before the last pooling only: not float64, and (on these two networks)
    # closer to it than float32.
    assert datasets(tmp_path / "mixed.h5")["/train/ntk"].tobytes() != datasets(tmp_path / "float64.h5")["/train/ntk"].tobytes()
    for n, e in measured["mixed"].items():
        assert e <= measured["float32"][n], n
    failures = [f"{p} {n}: {e:.3g} > {BOUND[p]:g}" for p, errs in measured.items() for n, e in errs.items() if e > BOUND[p]]
    assert not failures, failures


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    d = tmp_path_factory.mktemp("small")
    rng = np.random.default_rng(11)
    np.save(d / "x.npy", rng.standard_normal((26, 9, 8, 2)))
    np.save(d / "t.npy", rng.standard_normal((7, 9, 8, 2)))
    return d


def small_args(d, precision):
    return ["--train", d / "x.npy", "--test", d / "t.npy", "--layers", json.dumps(SMALL), "--dtype", "float64",
            "--compute-precision", precision]


@pytest.mark.parametrize("precision", PRECISIONS)
def test_same_bytes_over_tiles_threads_and_ranks(small, tmp_path, precision):
    args = small_args(small, precision)
    names = ("/train/ntk", "/train/nngp", "/test/ntk", "/test/nngp")
    ntkgram("build", *args, "--tile", 4, "--threads", 1, "--out", tmp_path / "base.h5", "--quiet")
    ref = datasets(tmp_path / "base.h5", names)
    runs = [("t7-threads2", None, ["--tile", 7, "--threads", 2]),
            ("np1", 1, ["--tile", 5]),
            ("np2", 2, ["--tile", 3]),
            ("np3", 3, ["--tile", 4, "--threads", 2])]
    for label, ranks, extra in runs:
        out = tmp_path / f"{label}.h5"
        if ranks is None:
            ntkgram("build", *args, *extra, "--out", out, "--quiet")
        else:
            mpirun(ranks, "build", *args, *extra, "--out", out, "--quiet")
        got = datasets(out, names)
        for n in names:
            assert got[n].tobytes() == ref[n].tobytes(), (label, n)
        with h5py.File(out, "r") as f:
            assert f.attrs["compute_precision"] == precision


def test_float32_killed_under_mpirun_resumes_on_another_rank_count(tmp_path):
    rng = np.random.default_rng(8)
    np.save(tmp_path / "x.npy", rng.standard_normal((60, 12, 11, 1)))
    args = ["build", "--train", tmp_path / "x.npy", "--layers", json.dumps(SMALL), "--dtype", "float64", "--tile", 3,
            "--compute-precision", "float32"]
    ntkgram(*args, "--out", tmp_path / "straight.h5", "--quiet")
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
        time.sleep(0.01)
    p.communicate(timeout=120)
    assert killed and p.returncode != 0 and not out.exists()
    # Resume on three ranks: the same bytes as the uninterrupted build.
    r = mpirun(3, *args, "--out", out)
    assert "reused" in r.stderr
    a, b = datasets(tmp_path / "straight.h5"), datasets(out)
    for n in a:
        assert a[n].tobytes() == b[n].tobytes(), n
    assert "verified" in ntkgram("verify", out, "--samples", 20).stdout


def rechecksum(path):
    """Rewrites /tiles/checksums from the stored values (as test_hostile_integrity.py does): a
    tampered file whose checksums agree, so that only the recomputed entries can catch it."""
    with h5py.File(path, "r+") as f:
        n, m, b = int(f.attrs["N"]), int(f.attrs["M"]), int(f.attrs["tile"])
        kernels = f["/tiles/checksums"].attrs["kernels"].split(",")
        tiles = [("train", i, j) for i in range(0, n, b) for j in range(i, n, b)]
        tiles += [("test", i, j) for i in range(0, m, b) for j in range(0, n, b)]
        words = f["/tiles/checksums"][...]
        for t, (block, i, j) in enumerate(tiles):
            for k, kernel in enumerate(kernels):
                h = checksum64(np.ascontiguousarray(f[f"/{block}/{kernel}"][i:i + b, j:j + b]).tobytes())
                words[t, k] = [h >> 32, h & 0xFFFFFFFF]
        f["/tiles/checksums"][...] = words


@pytest.mark.parametrize("precision", ["float32", "mixed"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_verify_passes_and_catches_tampering(small, tmp_path, precision, dtype):
    args = small_args(small, precision)
    args[args.index("--dtype") + 1] = dtype
    ntkgram("build", *args, "--tile", 8, "--out", tmp_path / "k.h5", "--quiet")
    r = ntkgram("verify", tmp_path / "k.h5", "--samples", 80)
    assert "verified" in r.stdout
    # One entry changed: its tile's checksum.
    with h5py.File(tmp_path / "k.h5", "r") as f:
        original = f["/train/ntk"][...]
    with h5py.File(tmp_path / "k.h5", "r+") as f:
        f["/train/ntk"][5, 7] = f["/train/ntk"][5, 7] * (1 + 1e-6)
    r = ntkgram("verify", tmp_path / "k.h5", "--samples", 0, check=False)
    assert r.returncode != 0 and "checksum" in r.stderr, r.stderr
    # Every off-diagonal train entry 1e-3 off, checksums rewritten: the recomputed entries
    # (scalar float64 reference, tolerance 1e-4 for these precisions) catch it.
    with h5py.File(tmp_path / "k.h5", "r+") as f:
        off = ~np.eye(len(original), dtype=bool)
        f["/train/ntk"][...] = np.where(off, original * (1 + 1e-3), original).astype(original.dtype)
    rechecksum(tmp_path / "k.h5")
    r = ntkgram("verify", tmp_path / "k.h5", "--samples", 40, check=False)
    assert r.returncode != 0 and "/train/ntk" in r.stderr and "relative error" in r.stderr, r.stderr


def test_fingerprint_attribute_and_against(small, tmp_path):
    prints = {}
    for p in [None, *PRECISIONS]:
        args = small_args(small, p or "float64")
        if p is None:
            i = args.index("--compute-precision")
            del args[i:i + 2]
        out = tmp_path / f"{p}.h5"
        ntkgram("build", *args, "--tile", 8, "--out", out, "--quiet")
        with h5py.File(out, "r") as f:
            prints[p] = f.attrs["fingerprint"]
            assert f.attrs["compute_precision"] == (p or "float64")
    # float64 keeps the fingerprint it has without the key; the others each have their own.
    assert prints[None] == prints["float64"]
    assert len({prints["float64"], prints["float32"], prints["mixed"]}) == 3
    # The same key in a job file: the same fingerprint as the flag.
    (tmp_path / "job.toml").write_text(
        f'[data]\ntrain = "{small / "x.npy"}"\ntest = "{small / "t.npy"}"\n[kernel]\ncompute_precision = "float32"\n'
        f'[build]\ntile = 8\ndtype = "float64"\nout = "job.h5"\n')
    ntkgram("build", tmp_path / "job.toml", "--layers", json.dumps(SMALL), "--quiet")
    with h5py.File(tmp_path / "job.h5", "r") as f:
        assert f.attrs["fingerprint"] == prints["float32"]
    # build --against takes the precision from the stored file: the full build's cross kernel.
    for p in ("float32", "mixed"):
        args = small_args(small, p)
        i = args.index("--test")
        del args[i:i + 2]
        ntkgram("build", *args, "--tile", 8, "--out", tmp_path / f"train-{p}.h5", "--quiet")
        ntkgram("build", "--against", tmp_path / f"train-{p}.h5", "--test", small / "t.npy", "--out", tmp_path / f"a-{p}.h5",
                "--quiet")
        full = datasets(tmp_path / f"{p}.h5", ("/test/ntk", "/test/nngp"))
        cross = datasets(tmp_path / f"a-{p}.h5", ("/test/ntk", "/test/nngp"))
        for n in full:
            assert full[n].tobytes() == cross[n].tobytes(), (p, n)
        with h5py.File(tmp_path / f"a-{p}.h5", "r") as f:
            assert f.attrs["compute_precision"] == p
        assert "verified" in ntkgram("verify", tmp_path / f"a-{p}.h5", "--samples", 10).stdout
        msg = one_line_failure("build", "--against", tmp_path / f"train-{p}.h5", "--test", small / "t.npy",
                               "--compute-precision", "float64", "--out", tmp_path / "no.h5")
        assert "--compute-precision cannot be combined with --against" in msg


def test_bad_input_is_one_line_and_writes_nothing(small, tmp_path):
    rng = np.random.default_rng(2)
    np.save(tmp_path / "rows.npy", rng.standard_normal((10, 12)))
    np.save(tmp_path / "img.npy", rng.standard_normal((10, 5, 4, 1)))
    before = set(os.listdir(tmp_path))
    out = tmp_path / "o.h5"
    msg = one_line_failure("build", "--train", tmp_path / "img.npy", "--layers", json.dumps(SMALL),
                           "--compute-precision", "float16", "--out", out)
    assert "--compute-precision" in msg and "float16" in msg and "float32" in msg, msg
    (tmp_path / "bad.toml").write_text('[data]\ntrain = "img.npy"\n[kernel]\ncompute_precision = "x"\n[build]\nout = "o.h5"\n')
    msg = one_line_failure("build", tmp_path / "bad.toml", "--layers", json.dumps(SMALL))
    assert "bad.toml" in msg and "compute_precision" in msg and "'x'" in msg, msg
    # Not a convolutional network: fully connected, or empirical.
    msg = one_line_failure("build", "--train", tmp_path / "rows.npy", "--compute-precision", "float32", "--out", out)
    assert "compute_precision" in msg and "convolutional" in msg and "fully-connected" in msg, msg
    # (Empirical kernels take dense networks only; a convolutional one is refused for that first.)
    msg = one_line_failure("build", "--train", tmp_path / "rows.npy", "--empirical", "--seed", 1, "--width", 8,
                           "--compute-precision", "float32", "--out", out)
    assert "compute_precision" in msg and "empirical kernels compute in float64" in msg, msg
    # Circular windows compute in float64 only.
    circular = [conv(2, [3, 3], padding="CIRCULAR", W_std=1.4, b_std=0.1), {"type": "relu"},
                {"type": "global_avg_pool"}, {"type": "dense", "width": 1}]
    for p in ("float32", "mixed"):
        msg = one_line_failure("build", "--train", tmp_path / "img.npy", "--layers", json.dumps(circular),
                               "--compute-precision", p, "--out", out)
        assert p in msg and "CIRCULAR" in msg, msg
    (tmp_path / "bad.toml").unlink()
    assert set(os.listdir(tmp_path)) == before
