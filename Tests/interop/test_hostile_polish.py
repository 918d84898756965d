"""The smaller findings of the hostile trial (issue 29, item 15): messages that name what the user
gave (a weights file, a preset, a layer list's missing readout, a dataset's wrong type), the
progress of `train`, what an interrupted `train` or `dynamics` says, `verify` of data that did
not move, and one exit status (2) for every invalid layer list wherever it is found.
"""
import json
import os
import pty
import select
import shutil
import signal
import subprocess
import time

import h5py
import numpy as np
import pytest

from conftest import binary, ntkgram


def one_line(r):
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("ntkgram: error: "), r.stderr
    return lines[0]


@pytest.fixture
def flat(tmp_path):
    np.save(tmp_path / "x.npy", np.random.default_rng(0).normal(size=(12, 5)))
    return tmp_path / "x.npy"


def weights(tmp_path, flat, name="e.h5", **kw):
    """A kernel file of a concrete network (its /params): width 8, 3 outputs."""
    out = tmp_path / name
    ntkgram("build", "--train", flat, "--empirical", "--seed", 0, "--width", 8, "--readout-width", 3, "--out", out, "--quiet")
    return out


def edited(src, dst, edit, network=True):
    shutil.copy(src, dst)
    with h5py.File(dst, "r+") as f:
        edit(f)
        if not network:
            for key in list(f.attrs):
                del f.attrs[key]
    return dst


def replace(f, name, value):
    del f[name]
    f[name] = value


# --- a weights file that overflows names itself, the dataset and the layer -------------------

@pytest.mark.parametrize("position,tensor", [(0, "W"), (2, "W"), (2, "b"), (6, "W")])
def test_params_that_overflow_name_the_params_file_and_layer(tmp_path, flat, position, tensor):
    e = weights(tmp_path, flat)
    name = f"/params/{position}/{tensor}"
    p = edited(e, tmp_path / "big.h5", lambda f: replace(f, name, f[name][...] * 1e200))
    for command in (["build", "--out", tmp_path / "k.h5"], ["train", "--times", "0,1", "--out", tmp_path / "t.h5"]):
        args = [command[0], "--train", flat, "--params", p, "--width", 8, "--readout-width", 3, *command[1:]]
        if command[0] == "train":
            args += ["--targets", tmp_path / "y.npy"]
            np.save(tmp_path / "y.npy", np.zeros((12, 3)))
        r = ntkgram(*args, check=False)
        assert r.returncode == 1, r.stderr
        line = one_line(r)
        assert line.startswith(f"ntkgram: error: {p}: "), line
        assert name in line and f"kernel.layers[{position}]" in line, line
        assert "the data (" not in line and "W_std" not in line, line
    assert not (tmp_path / "k.h5").exists() and not (tmp_path / "t.h5").exists()


def test_overflow_blames_w_std_or_the_data_when_they_are_the_cause(tmp_path, flat):
    # Weights of a usable size (a file written by another program: no network attribute) with a
    # huge W_std: the layer's W_std is named, not the file.
    e = weights(tmp_path, flat)
    plain = edited(e, tmp_path / "plain.h5", lambda f: None, network=False)
    r = ntkgram("build", "--train", flat, "--params", plain, "--width", 8, "--readout-width", 3, "--W-std", "1e200",
                "--out", tmp_path / "k.h5", check=False)
    line = one_line(r)
    assert r.returncode == 1 and "W_std 1e+200" in line and "kernel.layers[" in line and f"{plain}:" not in line, line
    # The analytic kernel with a huge b_std: named too.
    r = ntkgram("build", "--train", flat, "--b-std", "1e300", "--out", tmp_path / "k.h5", check=False)
    line = one_line(r)
    assert r.returncode == 1 and "b_std 1e+300" in line, line
    # Data of 1e200 with the usable weights: the data is the cause.
    np.save(tmp_path / "huge.npy", np.load(flat) * 1e200)
    r = ntkgram("build", "--train", tmp_path / "huge.npy", "--params", plain, "--width", 8, "--readout-width", 3,
                "--out", tmp_path / "k.h5", check=False)
    line = one_line(r)
    assert r.returncode == 1 and line.startswith(f"ntkgram: error: {tmp_path / 'huge.npy'}: ") and "the data" in line, line
    assert f"{plain}" not in line and "W_std" not in line, line


# --- a string where weights are expected -------------------------------------------------------

@pytest.mark.parametrize("name,value,expected", [
    ("/params/0/W", "hello", "5 × 8"),
    ("/params/2/W", "not weights", "8 × 8"),
    ("/params/0/b", "no bias", "8 values"),
    ("/params/6/W", np.array([b"a", b"b"]), "8 × 3"),
])
def test_params_of_the_wrong_type_say_so(tmp_path, flat, name, value, expected):
    e = weights(tmp_path, flat)
    p = edited(e, tmp_path / "typed.h5", lambda f: replace(f, name, value))
    r = ntkgram("build", "--train", flat, "--params", p, "--width", 8, "--readout-width", 3, "--out", tmp_path / "k.h5", check=False)
    assert r.returncode == 1, r.stderr
    line = one_line(r)
    assert line.startswith(f"ntkgram: error: {p}: {name} has the wrong type: string"), line
    assert "float32 or float64" in line and expected in line and "shape []" not in line, line


def test_params_that_are_groups_or_records_say_so(tmp_path, flat):
    e = weights(tmp_path, flat)
    cases = {
        "group": (lambda f: (f.__delitem__("/params/0/W"), f.create_group("/params/0/W")), "/params/0/W is a group"),
        "compound": (lambda f: replace(f, "/params/2/W", np.zeros((8, 8), dtype=[("a", "f8"), ("b", "i4")])),
                     "/params/2/W has the wrong type: compound of shape [8, 8]"),
    }
    for name, (edit, expected) in cases.items():
        p = edited(e, tmp_path / f"{name}.h5", edit)
        r = ntkgram("build", "--train", flat, "--params", p, "--width", 8, "--readout-width", 3, "--out", tmp_path / "k.h5", check=False)
        assert r.returncode == 1, r.stderr
        line = one_line(r)
        assert line.startswith(f"ntkgram: error: {p}: {expected}") and "float32 or float64" in line, line


# --- presets on images too small for them ------------------------------------------------------

@pytest.mark.parametrize("preset", ["myrtle5", "myrtle7", "myrtle10"])
@pytest.mark.parametrize("size", [(3, 3), (2, 9), (9, 1)])
def test_a_preset_on_small_images_names_itself_the_size_and_the_smallest(tmp_path, preset, size):
    np.save(tmp_path / "img.npy", np.random.default_rng(1).normal(size=(3, *size, 2)))
    r = ntkgram("build", "--train", tmp_path / "img.npy", "--preset", preset, "--out", tmp_path / "k.h5", check=False)
    assert r.returncode == 2, r.stderr
    line = one_line(r)
    assert preset in line and f"{size[0]}×{size[1]}" in line and "at least 4×4" in line, line
    assert "kernel.layers[" not in line, line
    job = tmp_path / "job.toml"
    job.write_text(f'[data]\ntrain = "img.npy"\n[kernel]\npreset = "{preset}"\n[build]\nout = "k.h5"\n')
    for args in (["build", job], ["plan", job, "--ranks", 1]):
        r = ntkgram(*args, check=False)
        assert r.returncode == 2, r.stderr
        line = one_line(r)
        assert line.startswith(f"ntkgram: error: {job}: preset {preset}") and "at least 4×4" in line, line
        assert "kernel.layers[" not in line, line
    assert not (tmp_path / "k.h5").exists()


def test_a_preset_takes_the_smallest_images_it_names(tmp_path):
    np.save(tmp_path / "img.npy", np.random.default_rng(2).normal(size=(2, 4, 4, 1)))
    ntkgram("build", "--train", tmp_path / "img.npy", "--preset", "myrtle5", "--out", tmp_path / "k.h5", "--quiet")
    np.save(tmp_path / "flat.npy", np.random.default_rng(2).normal(size=(2, 16)))
    r = ntkgram("build", "--train", tmp_path / "flat.npy", "--preset", "myrtle5", "--out", tmp_path / "f.h5", check=False)
    line = one_line(r)
    assert r.returncode == 2 and "myrtle5" in line and "--input-shape" in line and "kernel.layers[" not in line, line
    # What a preset cannot do on images of its size is said without the layers it never showed.
    r = ntkgram("build", "--train", tmp_path / "img.npy", "--preset", "myrtle7", "--empirical", "--out", tmp_path / "f.h5", check=False)
    line = one_line(r)
    assert r.returncode == 2 and "myrtle7" in line and "not implemented" in line and "kernel.layers[" not in line, line


# --- a layer list without a readout ------------------------------------------------------------

@pytest.mark.parametrize("layers,data", [
    ([{"type": "conv", "filter": [2, 2], "width": 4}], "img"),
    ([{"type": "conv", "filter": [2, 2], "width": 4}, {"type": "relu"}, {"type": "avg_pool", "window": [2, 2]}], "img"),
    ([{"type": "flatten"}], "flat"),
])
def test_a_layer_list_without_a_readout_says_what_is_needed(tmp_path, flat, layers, data):
    np.save(tmp_path / "img.npy", np.random.default_rng(3).normal(size=(3, 5, 5, 1)))
    source = tmp_path / "img.npy" if data == "img" else flat
    for extra in ([], ["--empirical"]):
        r = ntkgram("build", "--train", source, "--layers", json.dumps(layers), *extra, "--out", tmp_path / "k.h5", check=False)
        assert r.returncode == 2, r.stderr
        line = one_line(r)
        assert "--layers: " in line and "readout" in line and "dense" in line, line
        if data == "img" and not extra:
            assert "flatten" in line and "global_avg_pool" in line, line
        assert "has no dense layer\n" not in r.stderr and not line.endswith("has no dense layer"), line


# --- one exit status for invalid layer lists ---------------------------------------------------

CONV_ON_FLAT = [{"type": "conv", "filter": [2, 2], "width": 4}, {"type": "relu"}, {"type": "flatten"}, {"type": "dense", "width": 1}]
UNKNOWN_TYPE = [{"type": "dense", "width": 4}, {"type": "softmax"}, {"type": "dense", "width": 1}]
WINDOW_TOO_LARGE = [{"type": "conv", "filter": [9, 9], "width": 4}, {"type": "flatten"}, {"type": "dense", "width": 1}]


def toml_layers(layers):
    out = ""
    for layer in layers:
        out += "[[kernel.layers]]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in layer.items())
    return out


@pytest.mark.parametrize("layers", [CONV_ON_FLAT, UNKNOWN_TYPE, WINDOW_TOO_LARGE], ids=["conv-on-flat", "unknown-type", "window"])
def test_invalid_layer_lists_exit_2_wherever_they_are_found(tmp_path, flat, layers):
    np.save(tmp_path / "img.npy", np.random.default_rng(4).normal(size=(3, 5, 5, 1)))
    data = tmp_path / ("x.npy" if layers is not WINDOW_TOO_LARGE else "img.npy")
    (tmp_path / "layers.json").write_text(json.dumps(layers))
    job = tmp_path / "job.toml"
    job.write_text(f'[data]\ntrain = "{data.name}"\n[build]\nout = "k.h5"\n' + toml_layers(layers))
    runs = {
        "job file": ["build", job],
        "--layers JSON": ["build", "--train", data, "--layers", json.dumps(layers), "--out", tmp_path / "k.h5"],
        "--layers file": ["build", "--train", data, "--layers", tmp_path / "layers.json", "--out", tmp_path / "k.h5"],
        "plan": ["plan", job, "--ranks", 2],
        "train": ["train", job, "--times", "0,1", "--targets", tmp_path / "y.npy", "--out", tmp_path / "t.h5"],
    }
    np.save(tmp_path / "y.npy", np.zeros((12, 1)))
    for what, args in runs.items():
        r = ntkgram(*args, check=False)
        assert r.returncode == 2, f"{what}: {r.stderr}"
        line = one_line(r)
        assert "kernel.layers[" in line or "layer list" in line, f"{what}: {line}"
    assert not (tmp_path / "k.h5").exists() and not (tmp_path / "t.h5").exists()


def test_a_kernel_files_network_given_with_layers_exits_2(tmp_path, flat):
    """The `network` attribute of a convolutional kernel file, given with --layers for flat data."""
    np.save(tmp_path / "img.npy", np.random.default_rng(5).normal(size=(3, 4, 4, 1)))
    ntkgram("build", "--train", tmp_path / "img.npy", "--layers", json.dumps(CONV_ON_FLAT), "--out", tmp_path / "c.h5", "--quiet")
    network = h5py.File(tmp_path / "c.h5", "r").attrs["network"]
    r = ntkgram("build", "--train", flat, "--layers", network, "--out", tmp_path / "k.h5", check=False)
    assert r.returncode == 2, r.stderr
    assert "--layers: kernel.layers[0] (conv)" in one_line(r)


@pytest.mark.skipif(shutil.which("mpirun") is None, reason="needs mpirun")
def test_an_invalid_layer_list_exits_2_under_mpirun(tmp_path, flat):
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    r = subprocess.run(["mpirun", "--allow-run-as-root", "--oversubscribe", "-np", "2", binary(), "build", "--train", str(flat),
                        "--layers", json.dumps(CONV_ON_FLAT), "--out", str(tmp_path / "k.h5")],
                       capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 2, r.stderr
    assert "kernel.layers[0] (conv)" in r.stderr and not (tmp_path / "k.h5").exists()


# --- verify --train with data that did not move ------------------------------------------------

def test_verify_does_not_call_data_at_its_recorded_place_moved(tmp_path):
    np.save(tmp_path / "x.npy", np.random.default_rng(6).normal(size=(10, 4)))
    np.save(tmp_path / "t.npy", np.random.default_rng(7).normal(size=(3, 4)))
    sub = tmp_path / "sub"
    sub.mkdir()
    build = subprocess.run([binary(), "build", "--train", "x.npy", "--test", "t.npy", "--out", "k.h5", "--quiet"], cwd=tmp_path,
                           capture_output=True, text=True)
    assert build.returncode == 0, build.stderr
    os.symlink(tmp_path / "x.npy", sub / "link.npy")
    for cwd, given in [(tmp_path, "x.npy"), (tmp_path, "./x.npy"), (sub, "../x.npy"), (sub, "link.npy"), (sub, str(tmp_path / "x.npy"))]:
        test = os.path.relpath(tmp_path / "t.npy", cwd)
        r = subprocess.run([binary(), "verify", os.path.relpath(tmp_path / "k.h5", cwd), "--train", given, "--test", test,
                            "--samples", "5", "--quiet"], cwd=cwd, capture_output=True, text=True)
        assert r.returncode == 0 and "verified" in r.stdout, r.stderr
        assert "moved" not in r.stdout and "not from the recorded" not in r.stdout, (given, r.stdout)
        assert "test data matches the recorded checksum" in r.stdout, r.stdout
    # A copy elsewhere, the original still in place: read from the copy, not "moved".
    shutil.copy(tmp_path / "x.npy", sub / "copy.npy")
    r = ntkgram("verify", tmp_path / "k.h5", "--train", sub / "copy.npy", "--samples", 5, "--quiet")
    assert "moved" not in r.stdout and f"not from the recorded {tmp_path / 'x.npy'}" in r.stdout, r.stdout
    # The original gone: moved.
    os.rename(tmp_path / "x.npy", sub / "moved.npy")
    r = ntkgram("verify", tmp_path / "k.h5", "--train", sub / "moved.npy", "--samples", 5, "--quiet")
    assert f"(moved: now at {sub / 'moved.npy'})" in r.stdout, r.stdout


# --- train's progress and interrupted train / dynamics -----------------------------------------

@pytest.fixture
def training(tmp_path):
    rng = np.random.default_rng(7)
    np.save(tmp_path / "tx.npy", rng.normal(size=(300, 20)))
    np.save(tmp_path / "ty.npy", rng.integers(0, 3, size=300))
    return ["--train", tmp_path / "tx.npy", "--train-labels", tmp_path / "ty.npy", "--width", 256, "--readout-width", 3,
            "--learning-rate", 0.5]


def read_terminal(args, timeout=300):
    """Runs ntkgram with stderr on a pseudo-terminal (a live bar, redrawn 4 times a second)."""
    master, slave = pty.openpty()
    p = subprocess.Popen([binary(), *map(str, args)], stdout=subprocess.PIPE, stderr=slave, text=True)
    os.close(slave)
    data = b""
    deadline = time.time() + timeout
    while time.time() < deadline:
        ready, _, _ = select.select([master], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            if not chunk:
                break
            data += chunk
        elif p.poll() is not None:
            break
    p.wait(timeout=60)
    os.close(master)
    return p.returncode, data.decode("utf-8", "replace")


def test_train_shows_progress_between_recorded_steps(tmp_path, training):
    steps = 400
    rc, err = read_terminal(["train", *training, "--times", f"0,{steps}", "--out", tmp_path / "t.h5"])
    assert rc == 0, err
    shown = set()
    for part in err.replace("\r", "\n").split("\n"):
        if f"/{steps}  train loss" in part:
            shown.add(int(part.split("step ")[1].split("/")[0]))
    between = shown - {0, steps}
    assert between, err
    # The loss shown between records is the training loss at that step: it lies between the
    # recorded ones (gradient descent with a small rate decreases it).
    with h5py.File(tmp_path / "t.h5", "r") as f:
        first, last = f["/train/loss"][...]
    for part in err.replace("\r", "\n").split("\n"):
        if f"/{steps}  train loss" in part and int(part.split("step ")[1].split("/")[0]) in between:
            loss = float(part.split("train loss ")[1].split()[0])
            assert last * 0.99 <= loss <= first * 1.01, part


def interrupt(args, cwd, when, sig, timeout=300):
    p = subprocess.Popen([binary(), *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd)
    deadline = time.time() + timeout
    while p.poll() is None and time.time() < deadline and not when():
        time.sleep(0.05)
    assert p.poll() is None, "finished before the signal"
    p.send_signal(sig)
    out, err = p.communicate(timeout=60)
    return p.returncode, out, err


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupted_train_says_what_is_lost_and_how_to_rerun(tmp_path, training, sig):
    log = tmp_path / "log.json"
    args = ["train", *training, "--times", "0,100000", "--out", tmp_path / "t.h5", "--log-json", log]

    def started():
        return log.exists() and "training" in log.read_text()
    rc, out, err = interrupt(args, tmp_path, started, sig)
    assert rc == 128 + sig, err
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith("progress:") and not line.startswith("train:")]
    assert len(lines) == 1, err
    name = "SIGINT" if sig == signal.SIGINT else "SIGTERM"
    assert lines[0].startswith(f"ntkgram: error: interrupted ({name}) at step "), err
    assert "of 100000" in lines[0] and "nothing is written" in lines[0] and "rerun the same command" in lines[0], err
    assert not (tmp_path / "t.h5").exists() and not [n for n in os.listdir(tmp_path) if n.startswith(".t.h5")]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupted_dynamics_says_what_is_lost_and_how_to_rerun(tmp_path, sig):
    rng = np.random.default_rng(8)
    np.save(tmp_path / "x.npy", rng.normal(size=(4000, 10)))
    np.save(tmp_path / "y.npy", rng.normal(size=(4000, 64)))
    ntkgram("build", "--train", tmp_path / "x.npy", "--out", tmp_path / "k.h5", "--quiet")
    log = tmp_path / "log.json"
    args = ["dynamics", tmp_path / "k.h5", "--targets", tmp_path / "y.npy", "--times", "1,10,100,inf", "--tol", "1e-14",
            "--max-iter", 100000, "--out", tmp_path / "d.h5", "--log-json", log]

    def started():
        return log.exists() and "iteration" in log.read_text()
    rc, out, err = interrupt(args, tmp_path, started, sig)
    assert rc == 128 + sig, err
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith(("progress:", "dynamics:"))]
    assert len(lines) == 1, err
    name = "SIGINT" if sig == signal.SIGINT else "SIGTERM"
    assert lines[0].startswith(f"ntkgram: error: interrupted ({name}) after at least "), err
    assert "block Lanczos steps" in lines[0] and "nothing is written" in lines[0] and "rerun the same command" in lines[0], err
    assert not (tmp_path / "d.h5").exists()
