"""Hostile bounds: diverging training, mismatched test targets, absurd widths and filters,
huge time lists, LAPACK failures and list values that are not plain decimals.

Each is one line naming the file or flag, the problem and the remedy, a non-zero exit, and
nothing written; what can run runs within bounds.
"""
import os
import shutil
import subprocess

import h5py
import numpy as np
import pytest

from conftest import binary, ntkgram, nt_layer_list, relative_error


def one_line(r):
    """Exactly one error line (progress and messages of a run that started may precede it)."""
    errors = [l for l in r.stderr.strip().splitlines() if l.startswith("ntkgram:")]
    return len(errors) == 1 and errors[0].startswith("ntkgram: error: ") and r.stderr.strip().endswith(errors[0])


def no_lapack_internals(r):
    return "LAPACK" not in r.stderr and "info " not in r.stderr


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("bounds")
    rng = np.random.default_rng(7)
    x, t = rng.normal(size=(60, 8)), rng.normal(size=(20, 8))
    np.save(d / "x.npy", x)
    np.save(d / "t.npy", t)
    np.save(d / "y.npy", (x[:, 0] > 0).astype(np.int64))
    np.save(d / "yt.npy", (t[:, 0] > 0).astype(np.int64))
    np.save(d / "targets.npy", rng.normal(size=(60, 2)))
    np.save(d / "test_targets.npy", rng.normal(size=(20, 2)))
    ntkgram("build", "--train", d / "x.npy", "--test", d / "t.npy", "--train-labels", d / "y.npy",
            "--test-labels", d / "yt.npy", "--dtype", "float64", "--out", d / "k.h5", "--quiet")
    return d


# --- Finding 6: a diverging training stops at the first non-finite step ----------------------

TRAIN = ["--depth", 1, "--width", 16, "--readout-width", 2]


@pytest.mark.parametrize("rate", ["1e6", "1e3", "1e12"])
def test_a_diverging_training_stops_at_its_step_and_writes_nothing(data, tmp_path, rate):
    out = tmp_path / "t.h5"
    r = ntkgram("train", "--train", data / "x.npy", "--train-labels", data / "y.npy", "--test", data / "t.npy",
                "--test-labels", data / "yt.npy", *TRAIN, "--learning-rate", rate, "--times", "0,5,50,200",
                "--metrics", tmp_path / "m.json", "--out", out, check=False)
    assert r.returncode == 1, r.stderr
    assert one_line(r) and "diverged at step" in r.stderr and "smaller --learning-rate" in r.stderr, r.stderr
    assert "accuracy" not in r.stdout and not out.exists() and not (tmp_path / "m.json").exists()


def test_a_stable_training_still_runs_and_is_finite(data, tmp_path):
    out = tmp_path / "t.h5"
    ntkgram("train", "--train", data / "x.npy", "--train-labels", data / "y.npy", *TRAIN, "--learning-rate", "0.5",
            "--times", "0,5,50", "--out", out, "--quiet")
    with h5py.File(out, "r") as f:
        assert np.isfinite(f["/train/outputs"][...]).all() and np.isfinite(f["/train/loss"][...]).all()


@pytest.mark.skipif(shutil.which("mpirun") is None, reason="needs mpirun")
def test_a_diverging_training_stops_on_every_rank(data, tmp_path):
    out = tmp_path / "t.h5"
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    r = subprocess.run(["mpirun", "--allow-run-as-root", "--oversubscribe", "-np", "2", binary(), "train",
                        "--train", str(data / "x.npy"), "--train-labels", str(data / "y.npy"), *map(str, TRAIN),
                        "--learning-rate", "1e6", "--times", "0,50", "--out", str(out), "--quiet"],
                       capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode != 0
    assert r.stderr.count("diverged at step") == 1, r.stderr
    assert not out.exists()


# --- Finding 7: test targets with the wrong number of rows --------------------------------------

@pytest.mark.parametrize("rows", [7, 21, 1])
def test_test_targets_with_the_wrong_row_count_are_one_line(data, tmp_path, rows):
    bad = tmp_path / "bad.npy"
    np.save(bad, np.random.default_rng(rows).normal(size=(rows, 2)))
    for command in (["solve"], ["dynamics", "--times", "1,inf"]):
        out = tmp_path / f"{command[0]}.h5"
        r = ntkgram(command[0], data / "k.h5", *command[1:], "--targets", data / "targets.npy", "--test-targets", bad,
                    "--out", out, check=False)
        assert r.returncode == 1 and one_line(r), r.stderr
        assert "bad.npy" in r.stderr and f"{rows} test target rows" in r.stderr and "20 test samples" in r.stderr
        assert not out.exists()
    out = tmp_path / "train.h5"
    r = ntkgram("train", "--train", data / "x.npy", "--test", data / "t.npy", "--targets", data / "targets.npy",
                "--test-targets", bad, *TRAIN, "--times", "0,1", "--out", out, check=False)
    assert r.returncode != 0 and one_line(r) and "bad.npy" in r.stderr and not out.exists(), r.stderr


def test_test_targets_need_targets_and_a_test_kernel(data, tmp_path):
    r = ntkgram("solve", data / "k.h5", "--test-targets", data / "test_targets.npy", "--out", tmp_path / "s.h5", check=False)
    assert r.returncode != 0 and one_line(r) and "--test-targets needs --targets" in r.stderr
    ntkgram("build", "--train", data / "x.npy", "--dtype", "float64", "--out", tmp_path / "notest.h5", "--quiet")
    r = ntkgram("dynamics", tmp_path / "notest.h5", "--times", "1", "--targets", data / "targets.npy",
                "--test-targets", data / "test_targets.npy", "--out", tmp_path / "d.h5", check=False)
    assert r.returncode != 0 and one_line(r) and "no /test/ntk" in r.stderr and not (tmp_path / "d.h5").exists()


def test_right_test_targets_give_a_test_mse(data, tmp_path):
    r = ntkgram("solve", data / "k.h5", "--targets", data / "targets.npy", "--test-targets", data / "test_targets.npy",
                "--out", tmp_path / "s.h5", "--metrics", tmp_path / "m.json")
    import json
    m = json.load(open(tmp_path / "m.json"))["results"][0]
    with h5py.File(tmp_path / "s.h5", "r") as f:
        p = f["/test/predictions"][...]
    assert m["mse"] == pytest.approx(np.mean((p - np.load(data / "test_targets.npy")) ** 2), rel=1e-12)


# --- Finding 8: empirical widths far beyond the machine ----------------------------------------

@pytest.mark.parametrize("width,depth", [(100000, 3), (2 ** 40, 1), (2 ** 40, 3), (1000000, 2)])
def test_absurd_empirical_widths_are_one_line(data, tmp_path, width, depth):
    out = tmp_path / "e.h5"
    r = ntkgram("build", "--train", data / "x.npy", "--empirical", "--width", width, "--depth", depth,
                "--out", out, check=False, timeout=600)
    assert r.returncode in (1, 2) and one_line(r), r.stderr
    assert str(width) in r.stderr and ("B" in r.stderr or "absurdly" in r.stderr), r.stderr
    assert not out.exists()
    r = ntkgram("train", "--train", data / "x.npy", "--train-labels", data / "y.npy", "--width", width, "--depth", depth,
                "--readout-width", 2, "--times", "0,1", "--out", out, check=False)
    assert r.returncode in (1, 2) and one_line(r) and str(width) in r.stderr, r.stderr
    assert not out.exists()


def test_plan_counts_the_weights_of_an_empirical_network(data):
    r = ntkgram("plan", "--ranks", 1, "--train-count", 60, "--features", 8, "--empirical", "--width", 100000, "--depth", 3)
    line = next(l for l in r.stdout.splitlines() if l.startswith("memory per rank"))
    value, unit = line.split(":")[1].split()[:2]
    gib = float(value) * {"GiB": 1, "TiB": 1024, "PiB": 1024 ** 2}[unit]
    # Two 100000×100000 hidden layers: 2·10^10 parameters, two copies of 8 bytes.
    assert gib > 290, line
    assert "weights" in line


# --- Finding 10: a SAME filter far larger than the image ---------------------------------------

def conv_layers(filter_, padding="SAME", pool=False):
    layers = [{"type": "conv", "width": 4, "filter": filter_, "padding": padding, "W_std": 1.3, "b_std": 0.2},
              {"type": "relu"}]
    layers += [{"type": "global_avg_pool"}] if pool else [{"type": "flatten"}]
    return layers + [{"type": "dense", "width": 1, "W_std": 1.1, "b_std": 0.1}]


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    d = tmp_path_factory.mktemp("images")
    x = np.random.default_rng(3).normal(size=(6, 5, 5, 2))
    np.save(d / "x.npy", x)
    return d, x


@pytest.mark.parametrize("filter_,pool", [([15, 15], False), ([15, 9], True), ([40, 3], True)])
def test_a_same_filter_larger_than_the_image_matches_neural_tangents(images, tmp_path, filter_, pool):
    import json
    d, x = images
    layers = conv_layers(filter_, pool=pool)
    out = tmp_path / "k.h5"
    ntkgram("build", "--train", d / "x.npy", "--layers", json.dumps(layers), "--preprocess", "none",
            "--dtype", "float64", "--out", out, "--quiet")
    with h5py.File(out, "r") as f:
        ours = f["/train/ntk"][...]
    ref = np.asarray(nt_layer_list(layers)(x, x, get="ntk"))
    # test_cntk's tolerances: off the diagonal as exact as float64 allows; self-pairs take the
    # exact θ = 0 forms where neural-tangents' arccos loses digits.
    off = ~np.eye(len(x), dtype=bool)
    assert relative_error(ours, ref)[off].max() <= 1e-12
    assert np.abs(np.diag(ours) - np.diag(ref)).max() / np.abs(np.diag(ref)).max() <= 1e-6
    r = ntkgram("verify", out, "--samples", 10)
    assert r.returncode == 0


def test_a_huge_same_filter_is_bounded_in_build_plan_and_verify(images, tmp_path):
    import json
    d, _ = images
    out = tmp_path / "k.h5"
    huge, small = conv_layers([4000, 4000], pool=True), conv_layers([9, 9], pool=True)
    # A runaway would meet the timeouts (a guard against a hang, not a timing).
    for args in (["build", "--train", d / "x.npy", "--layers", json.dumps(huge), "--dtype", "float64", "--out", out, "--quiet"],
                 ["verify", out, "--samples", 20]):
        r = subprocess.run([binary(), *map(str, args)], capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stderr

    def flops(layers):
        r = ntkgram("plan", "--ranks", 1, "--train-count", 6, "--input-shape", "5,5,2", "--layers", json.dumps(layers))
        line = next(l for l in r.stdout.splitlines() if l.startswith("network:"))
        return float(line.split(";")[1].split()[0])

    # On 5×5 images at most 2·5 − 1 = 9 taps per axis can see the image: the plan counts those.
    assert flops(huge) == flops(small)


def test_a_huge_same_pooling_window_is_verified_in_bounded_work(images, tmp_path):
    """An avg_pool window far wider than the image: the build skips the taps that only see
    padding, and verify's reference sums over the taps inside the image only (it used to loop
    over every pair of taps: hours per entry on 16×16 images)."""
    import json
    d, _ = images
    x = np.random.default_rng(5).normal(size=(4, 16, 16, 1))
    np.save(tmp_path / "x16.npy", x)
    layers = [{"type": "conv", "width": 4, "filter": [3, 3], "padding": "SAME", "W_std": 1.3, "b_std": 0.2}, {"type": "relu"},
              {"type": "avg_pool", "window": [1048576, 1048576], "padding": "SAME"}, {"type": "relu"},
              {"type": "flatten"}, {"type": "dense", "width": 1, "W_std": 1.1, "b_std": 0.1}]
    out = tmp_path / "p.h5"
    for args in (["build", "--train", tmp_path / "x16.npy", "--layers", json.dumps(layers), "--dtype", "float64", "--out", out, "--quiet"],
                 ["verify", out, "--samples", 6]):
        r = subprocess.run([binary(), *map(str, args)], capture_output=True, text=True, timeout=900)
        assert r.returncode == 0, r.stderr
    assert "verified" in r.stdout


@pytest.mark.parametrize("filter_", [[6, 3], [3, 40], [1000000, 1000000]])
def test_a_circular_filter_wider_than_the_image_is_one_line(images, tmp_path, filter_):
    import json
    d, _ = images
    r = ntkgram("build", "--train", d / "x.npy", "--layers", json.dumps(conv_layers(filter_, padding="CIRCULAR")),
                "--out", tmp_path / "k.h5", check=False)
    assert r.returncode != 0 and one_line(r) and "CIRCULAR" in r.stderr and "5×5" in r.stderr, r.stderr
    assert not (tmp_path / "k.h5").exists()


# --- Finding 11: many training times ------------------------------------------------------------

def test_many_times_print_a_summary_and_nothing_with_quiet(data, tmp_path):
    r = ntkgram("dynamics", data / "k.h5", "--times", "log:1:1e8:2000", "--out", tmp_path / "d.h5", "--quiet")
    assert "t = " not in r.stdout and len(r.stdout.strip().splitlines()) == 1, r.stdout
    with h5py.File(tmp_path / "d.h5", "r") as f:
        assert f["/dynamics/train/loss"].shape == (2000,)
    r = ntkgram("dynamics", data / "k.h5", "--times", "log:1:1e8:2000", "--out", tmp_path / "d2.h5")
    assert 2 < len(r.stdout.strip().splitlines()) <= 20 and "2000" in r.stdout
    assert "on disk" in r.stderr and "in memory" in r.stderr  # the estimate, up front (its dense work from a minute on)
    r = ntkgram("dynamics", data / "k.h5", "--times", "1,10,100", "--out", tmp_path / "d3.h5", "--quiet")
    assert "t = " not in r.stdout
    r = ntkgram("dynamics", data / "k.h5", "--times", "1,10,100", "--out", tmp_path / "d4.h5")
    assert r.stdout.count("t = ") == 3


def test_outputs_beyond_the_machine_are_refused_up_front(data, tmp_path):
    memory = next(int(l.split()[1]) * 1024 for l in open("/proc/meminfo") if l.startswith("MemTotal:"))
    # 100,000 times × R ridges × 2 columns on 60 + 20 samples hold 8·R·2·10^5·(7·60 + 2·20) bytes.
    ridges = int(memory / (8 * 2e5 * 460)) + 2
    values = ",".join(f"{1e-6 * (i + 1):g}" for i in range(ridges))
    r = ntkgram("dynamics", data / "k.h5", "--targets", data / "targets.npy", "--times", "log:1:1e8:100000",
                "--ridge", values, "--out", tmp_path / "d.h5", check=False, timeout=600)
    assert r.returncode != 0 and one_line(r) and "--times" in r.stderr and "memory" in r.stderr, r.stderr
    assert not (tmp_path / "d.h5").exists()


# --- Finding 13: LAPACK's failures as problems and remedies -------------------------------------

def test_a_semi_definite_kernel_with_a_tiny_ridge_names_the_file_and_the_ridge(data, tmp_path):
    k = tmp_path / "linear.h5"
    ntkgram("build", "--train", data / "x.npy", "--train-labels", data / "y.npy", "--depth", 1, "--activation", "identity",
            "--b-std", "none", "--dtype", "float64", "--out", k, "--quiet")
    for ridge in ("1e-20", "1e-30"):
        r = ntkgram("solve", k, "--ridge", ridge, "--out", tmp_path / "s.h5", check=False)
        assert r.returncode == 1 and one_line(r) and no_lapack_internals(r), r.stderr
        assert "linear.h5" in r.stderr and "positive definite" in r.stderr and "--ridge" in r.stderr
        assert not (tmp_path / "s.h5").exists()


@pytest.mark.parametrize("columns", [61, 70, 200])
def test_more_target_columns_than_samples(data, tmp_path, columns):
    y = tmp_path / "wide.npy"
    np.save(y, np.random.default_rng(columns).normal(size=(60, columns)))
    r = ntkgram("solve", data / "k.h5", "--targets", y, "--out", tmp_path / "s.h5", check=False)
    assert r.returncode != 0 and one_line(r) and no_lapack_internals(r) and "--solver cg" in r.stderr, r.stderr
    ntkgram("solve", data / "k.h5", "--targets", y, "--solver", "cg", "--out", tmp_path / "s.h5", "--quiet")


@pytest.mark.parametrize("scale", [1e300, 1e200, 1e150])
def test_targets_too_large_to_square_are_one_line_everywhere(data, tmp_path, scale):
    y = tmp_path / "huge.npy"
    np.save(y, np.random.default_rng(1).normal(size=(60, 2)) * scale)
    for command in (["solve"], ["dynamics", "--times", "1,inf"], ["spectrum", "--top", 3]):
        out = tmp_path / f"{command[0]}.h5"
        r = ntkgram(command[0], data / "k.h5", *command[1:], "--targets", y, "--out", out, check=False)
        assert r.returncode != 0 and one_line(r) and no_lapack_internals(r), r.stderr
        assert "huge.npy" in r.stderr and "scale" in r.stderr and "nan" not in r.stdout.lower()
        assert not out.exists()


def test_large_but_squarable_targets_still_solve(data, tmp_path):
    y = tmp_path / "large.npy"
    base = np.load(data / "targets.npy")
    np.save(y, base * 1e100)
    ntkgram("solve", data / "k.h5", "--targets", y, "--out", tmp_path / "s.h5", "--quiet")
    ntkgram("solve", data / "k.h5", "--targets", data / "targets.npy", "--out", tmp_path / "s1.h5", "--quiet")
    with h5py.File(tmp_path / "s.h5", "r") as f, h5py.File(tmp_path / "s1.h5", "r") as g:
        assert np.allclose(f["/alpha"][...] / 1e100, g["/alpha"][...], rtol=1e-5, atol=1e-9)


# --- Finding 15: times and ridges are plain decimals, each given once ---------------------------

@pytest.mark.parametrize("command,flags,needle", [
    ("dynamics", ["--times", "-5"], "--times"),
    ("dynamics", ["--times", "-5,10"], "--times"),
    ("dynamics", ["--times", "0x10"], "--times"),
    ("dynamics", ["--times", "1,0x10"], "--times"),
    ("dynamics", ["--times", "log:0x1:10:5"], "--times"),
    ("dynamics", ["--times", "5,5"], "given twice"),
    ("dynamics", ["--times", "1,inf,inf"], "given twice"),
    ("dynamics", ["--times", "1", "--ridge", "-1"], "--ridge"),
    ("dynamics", ["--times", "1", "--ridge", "0x10"], "--ridge"),
    ("dynamics", ["--times", "1", "--ridge", "0,1e-3,0.001"], "given twice"),
    ("dynamics", ["--times", "1", "--learning-rate", "-1"], "--learning-rate"),
    ("solve", ["--ridge", "-1e-3"], "--ridge"),
    ("solve", ["--ridge", "1e-3,0x1p-3"], "--ridge"),
    ("solve", ["--ridge", "1e-4,1e-4"], "given twice"),
])
def test_list_values_are_decimals_given_once(data, tmp_path, command, flags, needle):
    out = tmp_path / "o.h5"
    r = ntkgram(command, data / "k.h5", *flags, "--out", out, check=False)
    assert r.returncode == 2 and one_line(r) and needle in r.stderr, r.stderr
    assert "Missing value" not in r.stderr and not out.exists()


@pytest.mark.parametrize("times,needle", [("5,5", "given twice"), ("-5", "--times"), ("0x10", "--times"), ("0,3,3", "given twice")])
def test_train_times_are_decimals_given_once(data, tmp_path, times, needle):
    r = ntkgram("train", "--train", data / "x.npy", "--train-labels", data / "y.npy", *TRAIN, "--times", times,
                "--out", tmp_path / "t.h5", check=False)
    assert r.returncode == 2 and one_line(r) and needle in r.stderr and "Missing value" not in r.stderr, r.stderr
    assert not (tmp_path / "t.h5").exists()


def test_train_targets_too_large_to_square_are_not_called_a_divergence(data, tmp_path):
    y = tmp_path / "huge.npy"
    np.save(y, np.random.default_rng(2).normal(size=(60, 2)) * 1e200)
    r = ntkgram("train", "--train", data / "x.npy", "--targets", y, *TRAIN, "--times", "0,5", "--out", tmp_path / "t.h5",
                check=False)
    assert r.returncode == 1 and one_line(r) and "huge.npy" in r.stderr and "scale" in r.stderr, r.stderr
    assert "diverged" not in r.stderr and not (tmp_path / "t.h5").exists()


def test_train_records_beyond_the_machine_are_refused_before_the_first_step(data, tmp_path):
    memory = next(int(l.split()[1]) * 1024 for l in open("/proc/meminfo") if l.startswith("MemTotal:"))
    # Every recorded step holds 60 × k outputs twice (8 bytes each): choose k beyond the memory.
    k = int(memory / (2 * 8 * 60 * 50000)) + 1  # at least ~58,000 distinct steps below
    np.save(tmp_path / "wide.npy", np.random.default_rng(4).normal(size=(60, k)))
    r = ntkgram("train", "--train", data / "x.npy", "--targets", tmp_path / "wide.npy", "--depth", 1, "--width", 4,
                "--readout-width", k, "--times", "log:1:1e8:100000", "--out", tmp_path / "t.h5", check=False, timeout=600)
    assert r.returncode == 1 and one_line(r) and "recorded steps" in r.stderr and "--times" in r.stderr, r.stderr
    assert not (tmp_path / "t.h5").exists()


def test_targets_too_small_to_square_are_not_called_zero(data, tmp_path):
    targets = np.load(data / "targets.npy")
    np.save(tmp_path / "tiny.npy", np.full_like(targets, 1e-300))
    r = ntkgram("dynamics", data / "k.h5", "--targets", tmp_path / "tiny.npy", "--times", "1,10", "--out", tmp_path / "d.h5", check=False)
    assert r.returncode != 0 and one_line(r) and "too small to square" in r.stderr and "tiny.npy" in r.stderr, r.stderr
    np.save(tmp_path / "zero.npy", np.zeros_like(targets))
    r = ntkgram("dynamics", data / "k.h5", "--targets", tmp_path / "zero.npy", "--times", "1,10", "--out", tmp_path / "d.h5", check=False)
    assert r.returncode != 0 and one_line(r) and "all zero" in r.stderr, r.stderr
