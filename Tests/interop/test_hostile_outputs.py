"""Every file a command writes — its output, --metrics, --log-json — is checked before any work:
not one of the command's inputs, not another of its outputs, existing only with --force, never
a device or FIFO renamed over; a name the file system takes is taken; a full disk is one line.
(docs/reliability.md, "Output paths".)
"""
import hashlib
import json
import os
import stat
import subprocess
import threading
import time

import numpy as np
import pytest

from conftest import binary, fill_up, ntkgram, tmpfs


def digest(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def one_line_error(r):
    assert r.returncode == 1, (r.returncode, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ntkgram: error: "), r.stderr
    return lines[0]


@pytest.fixture
def small(tmp_path):
    """Data, a kernel, a solution and a job file: the inputs every case may name."""
    rng = np.random.default_rng(31)
    np.save(tmp_path / "x.npy", rng.normal(size=(40, 5)))
    np.save(tmp_path / "t.npy", rng.normal(size=(10, 5)))
    np.save(tmp_path / "y.npy", rng.normal(size=(40, 2)))
    np.save(tmp_path / "labels.npy", rng.integers(0, 3, size=40).astype(np.int64))
    (tmp_path / "job.toml").write_text('[data]\ntrain = "x.npy"\n[build]\nout = "jk.h5"\n')
    ntkgram("build", "--train", tmp_path / "x.npy", "--test", tmp_path / "t.npy", "--dtype", "float64",
            "--out", tmp_path / "k.h5", "--quiet")
    ntkgram("solve", tmp_path / "k.h5", "--targets", tmp_path / "y.npy", "--out", tmp_path / "s.h5", "--quiet")
    return tmp_path


def commands(d):
    """One invocation per command that writes files, without its output flags."""
    return {
        "build": ["build", "--train", d / "x.npy", "--test", d / "t.npy", "--quiet"],
        "solve": ["solve", d / "k.h5", "--targets", d / "y.npy", "--quiet"],
        "dynamics": ["dynamics", d / "k.h5", "--targets", d / "y.npy", "--times", "1,10", "--quiet"],
        "spectrum": ["spectrum", d / "k.h5", "--top", 2, "--quiet"],
        "train": ["train", "--train", d / "x.npy", "--train-labels", d / "labels.npy", "--depth", 1, "--width", 8, "--readout-width", 3,
                  "--times", 2, "--learning-rate", 0.1, "--quiet"],
    }


def test_the_log_and_metrics_never_replace_an_input(small):
    d = small
    inputs = ["x.npy", "t.npy", "y.npy", "k.h5", "s.h5", "job.toml", "labels.npy"]
    before = {p: digest(d / p) for p in inputs}
    cases = []
    for name, args in commands(d).items():
        victims = {"build": ["x.npy", "t.npy"], "solve": ["k.h5", "y.npy"], "dynamics": ["k.h5", "y.npy"],
                   "spectrum": ["k.h5"], "train": ["x.npy", "labels.npy"]}[name]
        for victim in victims:
            for flag in ["--log-json", "--metrics"] if name != "build" else ["--log-json"]:
                cases.append([*args, "--out", d / f"new-{name}.h5", flag, d / victim, "--force"])
    cases.append(["build", d / "job.toml", "--log-json", d / "job.toml", "--force", "--quiet"])
    cases.append(["build", "--train", d / "x.npy", "--out", d / "new.h5", "--log-json", d / "new.h5"])
    cases.append(["solve", d / "k.h5", "--targets", d / "y.npy", "--out", d / "n.h5", "--metrics", d / "n.h5", "--force"])
    cases.append(["solve", d / "k.h5", "--targets", d / "y.npy", "--out", d / "n.h5", "--metrics", d / "m.json",
                  "--log-json", d / "m.json"])
    for args in cases:
        r = ntkgram(*args, check=False)
        line = one_line_error(r)
        assert "refusing" in line or "is both" in line, (args, line)
    assert {p: digest(d / p) for p in inputs} == before
    assert not [n for n in os.listdir(d) if n.startswith("new") or n.startswith("n.h5")]


def test_an_existing_metrics_or_log_needs_force(small):
    d = small
    for name, args in commands(d).items():
        for flag in ["--metrics", "--log-json"] if name != "build" else ["--log-json"]:
            old = d / f"old-{name}{flag}"
            old.write_text("keep me")
            r = ntkgram(*args, "--out", d / f"o-{name}{flag}.h5", flag, old, check=False)
            line = one_line_error(r)
            assert "already exists" in line and "--force" in line, line
            assert old.read_text() == "keep me"
            assert not (d / f"o-{name}{flag}.h5").exists()
            ntkgram(*args, "--out", d / f"o-{name}{flag}.h5", flag, old, "--force")
            text = old.read_text()
            assert "keep me" not in text
            if flag == "--metrics":
                json.loads(text)
            else:
                assert all(json.loads(line)["event"] for line in text.splitlines())


def device(path, major=1, minor=3):
    """A character device node equal to /dev/null (the tests run as root)."""
    os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(major, minor))
    return path


def test_devices_and_fifos_are_never_renamed_over(small):
    d = small
    null = device(d / "null")
    fifo = d / "fifo"
    os.mkfifo(fifo)
    for name, args in commands(d).items():
        for node in (null, fifo):
            for force in ([], ["--force"]):
                r = ntkgram(*args, "--out", node, *force, check=False)
                line = one_line_error(r)
                assert "not a regular file" in line and "--force" not in line, line
    # Text outputs are written in place: the node stays what it was.
    for name, args in commands(d).items():
        extra = ["--metrics", null] if name != "build" else []
        ntkgram(*args, "--out", d / f"dev-{name}.h5", "--log-json", null, *extra)
    assert stat.S_ISCHR(os.stat(null).st_mode) and os.stat(null).st_rdev == os.makedev(1, 3)
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)


def test_a_fifo_is_written_in_place_when_read_and_refused_without_a_reader(small):
    d = small
    fifo = d / "metrics.fifo"
    os.mkfifo(fifo)
    # Without a reader: refused, not blocking (a block would meet the timeout: a hang guard).
    r = subprocess.run([binary(), "solve", str(d / "k.h5"), "--targets", str(d / "y.npy"), "--out", str(d / "f.h5"),
                        "--log-json", str(fifo), "--quiet"], capture_output=True, text=True, timeout=120)
    line = one_line_error(r)
    assert "no reader" in line, line
    assert not (d / "f.h5").exists()
    # With a reader: the metrics arrive through it.
    got = []
    reader = threading.Thread(target=lambda: got.append(open(fifo).read()))
    reader.start()
    time.sleep(0.2)
    ntkgram("solve", d / "k.h5", "--targets", d / "y.npy", "--out", d / "f.h5", "--metrics", fifo, "--quiet")
    reader.join(timeout=60)
    assert isinstance(json.loads(got[0]), dict)
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)


def test_an_empty_output_path_is_refused_before_any_work(small, tmp_path):
    d = small
    work = tmp_path / "cwd"
    work.mkdir()
    for name, args in commands(d).items():
        for flag in ["--out", "--metrics", "--log-json"] if name != "build" else ["--out", "--log-json"]:
            extra = ["--out", d / f"e-{name}.h5"] if flag != "--out" else []
            r = subprocess.run([binary(), *map(str, args), *map(str, extra), flag, ""], capture_output=True, text=True, cwd=work)
            assert r.returncode != 0 and len(r.stderr.strip().splitlines()) == 1, r.stderr
            assert "empty" in r.stderr, r.stderr
    assert os.listdir(work) == []
    assert not [n for n in os.listdir(d) if n.startswith("e-") or n.startswith(".") or n.endswith(".tiles")]
    r = ntkgram("predict", d / "s.h5", d / "k.h5", "--out", "", check=False)
    assert r.returncode != 0 and "empty" in r.stderr


@pytest.mark.parametrize("length", [249, 252, 255])
def test_legal_long_names_are_taken(small, length):
    d = small
    name = lambda c, ext="": c * (length - len(ext)) + ext  # noqa: E731
    kernel = d / name("k", ".h5")
    ntkgram("build", "--train", d / "x.npy", "--test", d / "t.npy", "--dtype", "float64", "--out", kernel,
            "--log-json", d / name("l"), "--quiet")
    assert kernel.exists() and (d / name("l")).exists()
    sol = d / name("s")
    ntkgram("solve", kernel, "--targets", d / "y.npy", "--out", sol, "--metrics", d / name("m"), "--quiet")
    ntkgram("predict", sol, kernel, "--out", d / name("p"))
    ntkgram("dynamics", kernel, "--targets", d / "y.npy", "--times", "1", "--out", d / name("d"), "--quiet")
    # The same solve as a short name: the same solution.
    ntkgram("solve", kernel, "--targets", d / "y.npy", "--out", d / "short.h5", "--quiet")
    import h5py
    with h5py.File(sol) as a, h5py.File(d / "short.h5") as b:
        assert np.array_equal(a["/alpha"][...], b["/alpha"][...])
    # Nothing derived is left behind (locks, partial files, checkpoints).
    assert not [n for n in os.listdir(d) if n.startswith(".") or n.endswith(".tiles")], os.listdir(d)
    r = ntkgram("solve", kernel, "--targets", d / "y.npy", "--out", d / ("s" * 256), check=False)
    assert "longer than the file system's 255" in one_line_error(r)


@pytest.fixture
def tiny_disk(tmp_path):
    with tmpfs(tmp_path / "tiny", "1M") as tiny:
        yield tiny


def test_a_log_or_metrics_on_a_full_disk_is_one_line_not_a_trap(small, tiny_disk):
    d = small
    fill_up(tiny_disk)
    for name, args in commands(d).items():
        r = ntkgram(*args, "--out", d / f"full-{name}.h5", "--log-json", tiny_disk / f"{name}.jsonl", check=False)
        assert r.returncode == 1, (name, r.returncode, r.stderr)
        errors = [l for l in r.stderr.splitlines() if l.startswith("ntkgram: error:")]
        assert len(errors) == 1 and "No space left on device" in errors[0] and "JSON log" in errors[0], r.stderr
        assert (d / f"full-{name}.h5").exists()  # the command's own output is written
        if name == "build":
            continue
        r = ntkgram(*args, "--out", d / f"full2-{name}.h5", "--metrics", tiny_disk / f"{name}.json", check=False)
        line = one_line_error(r)
        assert "No space left on device" in line and "metrics" in line, line
        assert not [n for n in os.listdir(tiny_disk) if n.startswith(".")]


def test_a_resumed_build_continues_its_log(tmp_path):
    """A build stopped part-way and rerun with the same command (no --force) continues its
    existing event log: both runs' events are in it."""
    np.save(tmp_path / "x.npy", np.random.default_rng(32).normal(size=(1200, 200)))
    out, tiles, log = tmp_path / "k.h5", tmp_path / "k.tiles", tmp_path / "build.jsonl"
    args = [binary(), "build", "--train", str(tmp_path / "x.npy"), "--dtype", "float64", "--tile", "40",
            "--out", str(out), "--log-json", str(log), "--quiet"]
    p = subprocess.Popen(args, stderr=subprocess.PIPE, text=True)
    while p.poll() is None:
        if tiles.exists() and len([n for n in os.listdir(tiles) if n.endswith(".done")]) >= 10:
            p.kill()
            break
        time.sleep(0.002)
    p.communicate(timeout=60)
    assert not out.exists() and tiles.exists(), "the build ended before it could be stopped"
    first = log.read_text().splitlines()
    r = subprocess.run(args, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    lines = log.read_text().splitlines()
    assert lines[:len(first)] == first and len(lines) > len(first)
    resumed = [json.loads(l) for l in lines[len(first):] if json.loads(l)["event"] == "resume"]
    assert resumed and resumed[0]["reused"] >= 10, lines[len(first):]
    # Without a checkpoint folder, the same log is an existing file: --force is needed.
    r = subprocess.run(args[:-1] + ["--out", str(tmp_path / "k2.h5")], capture_output=True, text=True)
    assert r.returncode == 1 and "already exists" in r.stderr, r.stderr


def test_ntkgram_plot_checks_its_pictures_like_the_commands(small):
    """scripts/ntkgram-plot.py: a picture that is its input (through a link), or exists without
    --force, is one line and replaces nothing."""
    import sys
    from conftest import ROOT
    d = small
    ntkgram("dynamics", d / "k.h5", "--targets", d / "y.npy", "--times", "1,10,inf", "--out", d / "dyn.h5", "--quiet")
    plot = [sys.executable, os.path.join(ROOT, "scripts", "ntkgram-plot.py"), "--dynamics", str(d / "dyn.h5")]
    (d / "pics").mkdir()
    os.symlink(d / "dyn.h5", d / "pics" / "learning_curves.png")
    before = digest(d / "dyn.h5")
    for force in ([], ["--force"]):
        r = subprocess.run(plot + ["--out-dir", str(d / "pics"), *force], capture_output=True, text=True)
        assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1 and "refusing" in r.stderr, r.stderr
    assert digest(d / "dyn.h5") == before
    r = subprocess.run(plot + ["--out-dir", str(d / "new")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    png = d / "new" / "learning_curves.png"
    first = png.read_bytes()
    r = subprocess.run(plot + ["--out-dir", str(d / "new")], capture_output=True, text=True)
    assert r.returncode == 1 and "already exists" in r.stderr and png.read_bytes() == first
    r = subprocess.run(plot + ["--out-dir", str(d / "new"), "--force"], capture_output=True, text=True)
    assert r.returncode == 0 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(os.listdir(d / "new")) == ["learning_curves.png"]


def test_an_output_that_is_a_link_is_replaced_at_its_target(small):
    """--force onto a symbolic link replaces the file it names and keeps the link (a link into
    /dev or /proc, such as /dev/stdout redirected to a file, is never renamed over)."""
    d = small
    (d / "real").mkdir()
    (d / "real" / "m.json").write_text("old")
    os.symlink(d / "real" / "m.json", d / "m-link.json")
    (d / "real" / "s.h5").write_text("old")
    os.symlink(d / "real" / "s.h5", d / "s-link.h5")
    ntkgram("solve", d / "k.h5", "--targets", d / "y.npy", "--out", d / "s-link.h5", "--metrics", d / "m-link.json",
            "--force", "--quiet")
    assert os.path.islink(d / "m-link.json") and os.path.islink(d / "s-link.h5")
    assert isinstance(json.loads((d / "real" / "m.json").read_text()), dict)
    assert (d / "real" / "s.h5").read_bytes()[:8] == b"\x89HDF\r\n\x1a\n"
    assert sorted(os.listdir(d / "real")) == ["m.json", "s.h5"]


def test_every_rank_checks_the_log_before_rank_0_makes_it(small):
    """Under mpirun only rank 0 writes --log-json, and it makes the file only once every rank
    has checked the outputs: a later rank never finds the new log and refuses it as existing."""
    d = small
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    for run in range(4):
        r = subprocess.run(["mpirun", "--oversubscribe", "-np", "3", binary(), "build", "--train", str(d / "x.npy"),
                            "--out", str(d / f"mpi{run}.h5"), "--log-json", str(d / f"mpi{run}.jsonl"), "--quiet"],
                           capture_output=True, text=True, env=env, timeout=300)
        assert r.returncode == 0, r.stderr
        assert any(json.loads(line)["event"] == "done" for line in (d / f"mpi{run}.jsonl").read_text().splitlines())
