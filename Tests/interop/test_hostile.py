"""Hostile input: CSV dialects, absurd sizes, a tampered solve checkpoint.

Each bad input gets one line naming the file or flag and a non-zero exit; each fault in a
checkpoint is reported and recovered from, never trusted.
"""
import os
import signal
import subprocess
import time

import h5py
import numpy as np
import pytest

from conftest import binary, fill_up, ntkgram, tmpfs

ROWS = np.array([[0.5, -1.25, 2.0], [3.0, 0.0, -0.75], [1.5, 2.5, -3.5], [0.25, -0.5, 1.0]])


def kernel_of(path, tmp_path, name):
    out = tmp_path / f"{name}.h5"
    ntkgram("build", "--train", path, "--depth", 2, "--dtype", "float64", "--out", out, "--quiet")
    return h5py.File(out, "r")["/train/ntk"][...]


@pytest.fixture
def reference(tmp_path):
    np.save(tmp_path / "x.npy", ROWS)
    return kernel_of(tmp_path / "x.npy", tmp_path, "npy")


def write(path, text):
    with open(path, "wb") as f:
        f.write(text.encode("utf-8"))
    return path


def csv_lines(rows, quote=False):
    fmt = (lambda v: f'"{v!r}"') if quote else repr
    return [",".join(fmt(float(v)) for v in r) for r in rows]


@pytest.mark.parametrize("dialect", ["crlf", "quoted", "bom-header", "crlf-header-blank-lines"])
def test_csv_dialects_give_the_same_kernel(reference, tmp_path, dialect):
    if dialect == "crlf":
        text = "\r\n".join(csv_lines(ROWS)) + "\r\n"
    elif dialect == "quoted":
        text = "\n".join(csv_lines(ROWS, quote=True)) + "\n"
    elif dialect == "bom-header":
        text = "\ufeffa,b,c\n" + "\n".join(csv_lines(ROWS)) + "\n"
    else:
        text = '"a","b","c"\r\n\r\n' + "\r\n".join(csv_lines(ROWS)) + "\r\n\r\n"
    path = write(tmp_path / f"{dialect}.csv", text)
    assert np.array_equal(kernel_of(path, tmp_path, dialect), reference)


def test_csv_first_row_typo_is_an_error_not_a_header(tmp_path):
    lines = csv_lines(ROWS)
    lines[0] = lines[0].replace("2.0", "2.0x")
    path = write(tmp_path / "typo.csv", "\n".join(lines) + "\n")
    r = ntkgram("build", "--train", path, "--out", tmp_path / "k.h5", check=False)
    assert r.returncode != 0
    assert "typo.csv" in r.stderr and "line 1" in r.stderr and "2.0x" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "k.h5").exists()


@pytest.mark.parametrize("budget", ["1e30", "1e300GiB", "9e18", "nan", "-1GiB", "inf"])
def test_absurd_memory_budgets_are_one_line(tmp_path, budget):
    np.save(tmp_path / "x.npy", ROWS)
    np.save(tmp_path / "y.npy", np.array([0, 1, 0, 1]))
    ntkgram("build", "--train", tmp_path / "x.npy", "--train-labels", tmp_path / "y.npy", "--out", tmp_path / "k.h5", "--quiet")
    for command in ("solve", "dynamics", "spectrum"):
        extra = {"solve": [], "dynamics": ["--times", "1,inf"], "spectrum": ["--top", "1"]}[command]
        r = ntkgram(command, tmp_path / "k.h5", *extra, f"--memory-budget={budget}", "--out", tmp_path / "o.h5", check=False)
        assert r.returncode == 2, (command, budget, r.stderr)
        assert budget in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert not (tmp_path / "o.h5").exists()


def solve_until_checkpoint(kernel, out):
    """Starts a long solve, kills it with SIGKILL once its checkpoint exists."""
    state = str(out) + ".solve-state.h5"
    args = [binary(), "solve", kernel, "--solver", "cg", "--preconditioner", "none", "--tol", "1e-13", "--ridge", "1e-6",
            "--checkpoint-every", "1", "--max-iter", "100000", "--out", out]
    p = subprocess.Popen(list(map(str, args)), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 60
    while not os.path.exists(state) and p.poll() is None and time.time() < deadline:
        time.sleep(0.005)
    time.sleep(0.05)
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert os.path.exists(state), "the solve finished before it could be killed"
    return args, state


@pytest.mark.parametrize("fault", ["perturbed", "nan", "truncated"])
def test_tampered_solve_checkpoint_is_reported_and_not_trusted(tmp_path, fault):
    rng = np.random.default_rng(3)
    np.save(tmp_path / "x.npy", rng.normal(size=(600, 20)))
    np.save(tmp_path / "y.npy", rng.integers(0, 4, size=600))
    kernel = tmp_path / "k.h5"
    ntkgram("build", "--train", tmp_path / "x.npy", "--train-labels", tmp_path / "y.npy", "--dtype", "float64",
            "--out", kernel, "--quiet")
    clean = tmp_path / "clean.h5"
    args, state = solve_until_checkpoint(kernel, tmp_path / "s.h5")
    clean_args = [a if a != str(tmp_path / "s.h5") else str(clean) for a in map(str, args)]
    r = subprocess.run(clean_args, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    if fault == "truncated":
        size = os.path.getsize(state)
        with open(state, "r+b") as f:
            f.truncate(size // 2)
    else:
        with h5py.File(state, "r+") as f:
            x = f["/system0/x"]
            v = x[...]
            v[5, 1] = np.nan if fault == "nan" else v[5, 1] + 1e-3
            x[...] = v
    r = subprocess.run(list(map(str, args)), capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "checkpoint is ignored" in r.stderr and "solve-state.h5" in r.stderr, r.stderr
    assert "resuming" not in r.stderr
    # Started over: the same α as the uninterrupted solve, and no NaN anywhere.
    a, b = h5py.File(tmp_path / "s.h5", "r")["/alpha"][...], h5py.File(clean, "r")["/alpha"][...]
    assert np.all(np.isfinite(a)) and np.array_equal(a, b)
    assert not os.path.exists(state)


def test_intact_checkpoint_resumes(tmp_path):
    rng = np.random.default_rng(4)
    np.save(tmp_path / "x.npy", rng.normal(size=(600, 20)))
    np.save(tmp_path / "y.npy", rng.integers(0, 4, size=600))
    kernel = tmp_path / "k.h5"
    ntkgram("build", "--train", tmp_path / "x.npy", "--train-labels", tmp_path / "y.npy", "--dtype", "float64",
            "--out", kernel, "--quiet")
    args, state = solve_until_checkpoint(kernel, tmp_path / "s.h5")
    r = subprocess.run(list(map(str, args)), capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "resuming the solve at iteration" in r.stderr and "ignored" not in r.stderr


def test_a_success_removes_partials_of_dead_runs(tmp_path):
    np.save(tmp_path / "x.npy", ROWS)
    dead = tmp_path / ".k.h5.partial-4194305"  # above Linux's largest pid: no such process
    alive = tmp_path / f".k.h5.partial-{os.getpid()}"
    other = tmp_path / ".other.h5.partial-4194305"
    for f in (dead, alive, other):
        f.write_bytes(b"left by a killed run")
    ntkgram("build", "--train", tmp_path / "x.npy", "--out", tmp_path / "k.h5", "--quiet")
    assert not dead.exists()
    assert alive.exists() and other.exists()


def test_two_builds_of_the_same_output_do_not_both_run(tmp_path):
    rng = np.random.default_rng(5)
    np.save(tmp_path / "x.npy", rng.normal(size=(6000, 100)))
    args = ["build", "--train", tmp_path / "x.npy", "--depth", 12, "--dtype", "float64", "--tile", 256,
            "--out", tmp_path / "k.h5", "--checkpoints", tmp_path / "tiles", "--quiet"]
    first = subprocess.Popen([binary(), *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while time.time() < deadline and first.poll() is None and not any(
            n.startswith("tile-") for n in (os.listdir(tmp_path / "tiles") if (tmp_path / "tiles").exists() else [])):
        time.sleep(0.01)
    assert first.poll() is None, "the first build ended before the second could start"
    second = ntkgram(*args, "--force", check=False)
    assert second.returncode != 0
    assert "in use by another ntkgram run" in second.stderr and f"process {first.pid} on" in second.stderr, second.stderr
    assert len(second.stderr.strip().splitlines()) == 1
    # A killed holder leaves nothing stuck: the lock goes with the process, the rerun resumes.
    first.send_signal(signal.SIGKILL)
    first.wait()
    r = ntkgram(*args, check=False)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "k.h5").exists()
    assert not [n for n in os.listdir(tmp_path) if n.endswith(".lock")]


def test_a_full_disk_is_said_before_the_compute(tmp_path):
    """A fixed-size filesystem (tmpfs, 3 MiB; the tests run as root) too small for the kernel."""
    np.save(tmp_path / "x.npy", np.random.default_rng(6).normal(size=(800, 5)))
    small = tmp_path / "small"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3M", "tmpfs", str(small)], check=True)
    try:
        for checkpoints in (tmp_path / "ck", small / "ck"):
            r = ntkgram("build", "--train", tmp_path / "x.npy", "--dtype", "float64", "--out", small / "k.h5",
                        "--checkpoints", checkpoints, check=False)
            assert r.returncode == 1, r.stderr
            assert len(r.stderr.strip().splitlines()) == 1, r.stderr
            assert "k.h5" in r.stderr and "needs about" in r.stderr and "its filesystem has 3.0 MiB" in r.stderr, r.stderr
            assert not [n for n in os.listdir(small) if n.startswith(".k.h5") or n == "k.h5"]
            assert not checkpoints.exists()  # made by the refused run, so removed with it
    finally:
        subprocess.run(["umount", str(small)], check=True)


def test_verify_tells_moved_data_from_changed_data(tmp_path):
    rng = np.random.default_rng(8)
    np.save(tmp_path / "x.npy", rng.normal(size=(40, 6)))
    np.save(tmp_path / "xt.npy", rng.normal(size=(9, 6)))
    ntkgram("build", "--train", tmp_path / "x.npy", "--test", tmp_path / "xt.npy", "--out", tmp_path / "k.h5", "--quiet")
    moved = tmp_path / "moved"
    moved.mkdir()
    for name in ("x.npy", "xt.npy"):
        (moved / name).write_bytes((tmp_path / name).read_bytes())
    r = ntkgram("verify", tmp_path / "k.h5", "--train", moved / "x.npy", "--test", moved / "xt.npy", "--samples", 10)
    assert "training data matches" in r.stdout and "fingerprint" in r.stdout
    changed = np.load(tmp_path / "x.npy")
    changed[7, 3] += 1e-9
    np.save(moved / "x.npy", changed)
    r = ntkgram("verify", tmp_path / "k.h5", "--train", moved / "x.npy", "--samples", 10, check=False)
    assert r.returncode == 1 and "training data" in r.stderr and "differs" in r.stderr and "x.npy" in r.stderr
    changed_test = np.load(tmp_path / "xt.npy")
    changed_test[2, 1] = 5.0
    np.save(moved / "xt.npy", changed_test)
    r = ntkgram("verify", tmp_path / "k.h5", "--test", moved / "xt.npy", "--samples", 10, check=False)
    # The test data has its own recorded checksum (format 2): named as such, not as a fingerprint mismatch.
    assert r.returncode == 1 and "test data" in r.stderr and "differs" in r.stderr and "xt.npy" in r.stderr
    r = ntkgram("verify", tmp_path / "k.h5", "--samples", 10**9, check=False)
    assert r.returncode == 2 and "--samples" in r.stderr


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupted_build_says_what_is_kept_and_resumes(tmp_path, sig):
    np.save(tmp_path / "x.npy", np.random.default_rng(4).normal(size=(1200, 300)))
    out, tiles = tmp_path / "k.h5", tmp_path / "k.tiles"
    args = [binary(), "build", "--train", tmp_path / "x.npy", "--dtype", "float64", "--tile", 40, "--out", out, "--quiet"]
    p = subprocess.Popen(list(map(str, args)), stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while p.poll() is None and time.time() < deadline:
        if tiles.exists() and len([n for n in os.listdir(tiles) if n.endswith(".done")]) >= 5:
            p.send_signal(sig)
            break
        time.sleep(0.01)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 128 + sig, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "interrupted" in lines[0] and "rerun the same command to resume" in lines[0], err
    assert str(tmp_path / ".k.h5.partial") in lines[0] and not out.exists()
    ntkgram(*args[1:])  # the resume (checked: exit 0)
    assert not (tmp_path / ".k.h5.partial").exists()
    clean = tmp_path / "clean.h5"
    ntkgram(*args[1:-3], "--out", clean, "--quiet")
    assert clean.read_bytes() == out.read_bytes()


def test_ctrl_c_to_a_multi_rank_build_says_what_is_kept_and_resumes(tmp_path):
    """A terminal's Ctrl-C (SIGINT to the whole foreground process group) during a 2-rank build
    launched by cluster/local.sh: one line saying how many tiles are kept and how to resume,
    although mpirun drops the ranks' output once interrupted; a rerun on 1 rank resumes."""
    np.save(tmp_path / "x.npy", np.random.default_rng(5).normal(size=(5000, 200)))
    job = tmp_path / "job.toml"
    job.write_text('[data]\ntrain = "x.npy"\n[kernel]\ndepth = 3\n'
                   '[build]\ntile = 40\ndtype = "float64"\nout = "k.h5"\ncheckpoints = "k.tiles"\n')
    tiles = tmp_path / "k.tiles"
    env = dict(os.environ, NTKGRAM_BIN=binary(), OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    local = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "cluster", "local.sh")
    p = subprocess.Popen(["bash", local, str(job), "2", "--", "--quiet"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, env=env, start_new_session=True)
    deadline = time.time() + 120
    while p.poll() is None and time.time() < deadline:
        if tiles.exists() and len([n for n in os.listdir(tiles) if n.endswith(".done")]) >= 20:
            os.killpg(p.pid, signal.SIGINT)
            break
        time.sleep(0.01)
    _, err = p.communicate(timeout=60)
    assert p.returncode != 0, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("ntkgram: error: ") and "rerun the same command" in lines[0], err
    # Rank 0 counts the records when it has the time (mpirun SIGKILLs the ranks a second after
    # its SIGTERM); on a loaded machine it may only have written its early line, or nothing
    # (then the script says so). Each names what is kept.
    if "at least" in lines[0]:
        kept = int(lines[0].split("at least ")[1].split()[0])
        records = len([n for n in os.listdir(tiles) if n.endswith(".done")])
        assert 20 <= kept <= records and f"tiles are checkpointed in {tiles};" in lines[0], err
    else:
        assert f"the tiles finished so far are checkpointed in {tiles};" in lines[0] or "every finished tile stays checkpointed" in lines[0], err
    assert not (tmp_path / "k.h5").exists()
    r = subprocess.run(["bash", local, str(job), "1", "--", "--quiet"], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    assert not tiles.exists() and not [n for n in os.listdir(tmp_path) if n.startswith(".k.h5")]
    ntkgram("build", job, "--out", tmp_path / "clean.h5", "--checkpoints", tmp_path / "clean.tiles", "--quiet")
    assert (tmp_path / "clean.h5").read_bytes() == (tmp_path / "k.h5").read_bytes()


def test_verify_shows_its_progress(tmp_path):
    """verify reports both long passes (every tile read, then the entries recomputed), each from
    0 to its total; --quiet silences it and keeps the verdict."""
    np.save(tmp_path / "x.npy", np.random.default_rng(9).normal(size=(300, 7)))
    ntkgram("build", "--train", tmp_path / "x.npy", "--tile", 64, "--out", tmp_path / "k.h5", "--quiet")
    r = ntkgram("verify", tmp_path / "k.h5", "--samples", 500)
    lines = [line for line in r.stderr.splitlines() if line.startswith("progress:")]
    assert any("0/15 tiles checked" in line for line in lines) and any("15/15 tiles checked" in line for line in lines), r.stderr
    assert any("0/500 entries recomputed" in line for line in lines), r.stderr
    assert lines[-1].startswith("progress: 100.0%") and "500/500 entries recomputed" in lines[-1], r.stderr
    assert "k.h5: verified" in r.stdout
    q = ntkgram("verify", tmp_path / "k.h5", "--samples", 500, "--quiet")
    assert q.stderr == "" and "k.h5: verified" in q.stdout


@pytest.fixture
def small_disk(tmp_path):
    with tmpfs(tmp_path / "small", "60M") as small:
        yield small


def test_a_disk_that_fills_during_a_build_is_one_line_and_resumes(tmp_path, small_disk):
    """Another process fills the filesystem while tiles are computed: the kernel file's space is
    reserved, so what fails is a tile record, and the build says so in one line with the system's
    reason; with space freed, the rerun resumes to the bytes of an uninterrupted build."""
    np.save(tmp_path / "x.npy", np.random.default_rng(10).normal(size=(1500, 300)))
    args = ["build", "--train", tmp_path / "x.npy", "--dtype", "float64", "--tile", 20, "--quiet"]
    out, tiles = small_disk / "k.h5", small_disk / "k.tiles"
    p = subprocess.Popen([binary(), *map(str, args), "--out", str(out), "--checkpoints", str(tiles)],
                         stderr=subprocess.PIPE, text=True)
    while p.poll() is None:
        if tiles.exists() and len([n for n in os.listdir(tiles) if n.endswith(".done")]) >= 20:
            fill_up(small_disk)
            break
        time.sleep(0.002)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 1, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "No space left on device" in lines[0] and str(tiles) in lines[0], err
    assert not out.exists()
    os.unlink(small_disk / "fill")
    r = ntkgram(*args[:-1], "--out", out, "--checkpoints", tiles)
    assert "resuming:" in r.stderr, r.stderr
    ntkgram(*args, "--out", tmp_path / "clean.h5")
    assert out.read_bytes() == (tmp_path / "clean.h5").read_bytes()
    assert sorted(os.listdir(small_disk)) == ["k.h5"]


def test_outputs_on_a_full_disk_are_one_line_and_replace_nothing(tmp_path, small_disk):
    """solve, predict, dynamics and spectrum writing to a full filesystem: one line with the
    system's reason, no partial file left, and an output being replaced (--force) intact."""
    rng = np.random.default_rng(11)
    np.save(tmp_path / "x.npy", rng.normal(size=(200, 6)))
    np.save(tmp_path / "xt.npy", rng.normal(size=(30, 6)))
    np.save(tmp_path / "y.npy", rng.normal(size=(200, 2)))
    k = tmp_path / "k.h5"
    ntkgram("build", "--train", tmp_path / "x.npy", "--test", tmp_path / "xt.npy", "--dtype", "float64", "--out", k, "--quiet")
    ntkgram("solve", k, "--targets", tmp_path / "y.npy", "--out", tmp_path / "s.h5", "--quiet")
    commands = {
        "solve": ["solve", k, "--targets", tmp_path / "y.npy", "--quiet"],
        "predict": ["predict", tmp_path / "s.h5", k],
        "dynamics": ["dynamics", k, "--targets", tmp_path / "y.npy", "--times", "1,10", "--quiet"],
        "spectrum": ["spectrum", k, "--top", 3, "--quiet"],
    }
    for name, args in commands.items():
        ntkgram(*args, "--out", small_disk / f"{name}.h5")
    before = {name: (small_disk / f"{name}.h5").read_bytes() for name in commands}
    fill_up(small_disk)
    for name, args in commands.items():
        for target, force in ((small_disk / f"new-{name}.h5", []), (small_disk / f"{name}.h5", ["--force"])):
            r = ntkgram(*args, "--out", target, *force, check=False)
            assert r.returncode == 1, (name, r.stderr)
            lines = r.stderr.strip().splitlines()
            # dynamics sizes its output before any work: a full disk is then said up front.
            said = "No space left on device" in lines[0] or (name == "dynamics" and "free" in lines[0] and "needs about" in lines[0])
            assert len(lines) == 1 and said and str(small_disk) in lines[0], (name, r.stderr)
            assert sorted(os.listdir(small_disk)) == sorted([f"{c}.h5" for c in commands] + ["fill"]), (name, os.listdir(small_disk))
    assert {name: (small_disk / f"{name}.h5").read_bytes() for name in commands} == before


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("budget", ["1GiB", "300KiB"])
def test_a_kernel_with_a_nan_or_cut_short_is_one_line_for_solve(tmp_path, dtype, budget):
    """The solve reads its tiles in place (mapped) when they fit the budget and streams them
    when they do not: a NaN anywhere in either, or a file cut short, is one line naming the file."""
    rng = np.random.default_rng(3)
    np.save(tmp_path / "x.npy", rng.standard_normal((300, 6)))
    np.save(tmp_path / "y.npy", rng.integers(0, 3, 300))
    k = tmp_path / "k.h5"
    ntkgram("build", "--train", tmp_path / "x.npy", "--train-labels", tmp_path / "y.npy", "--dtype", dtype, "--tile", 64,
            "--kernels", "ntk", "--out", k, "--quiet")
    ok = subprocess.run([binary(), "solve", k, "--memory-budget", budget, "--out", tmp_path / "ok.h5", "--quiet"],
                        capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    with h5py.File(k, "r") as f:
        offset, size = f["/train/ntk"].id.get_offset(), f["/train/ntk"].dtype.itemsize
    # The solve reads upper tiles: one NaN in an off-diagonal tile, one in a diagonal tile.
    for (i, j) in [(7, 250), (130, 131)]:
        bad = tmp_path / f"bad-{i}-{j}.h5"
        data = bytearray(k.read_bytes())
        at = offset + (i * 300 + j) * size
        data[at:at + size] = np.array([np.nan], dtype=dtype).tobytes()
        bad.write_bytes(bytes(data))
        r = subprocess.run([binary(), "solve", bad, "--memory-budget", budget, "--out", tmp_path / f"s-{i}.h5", "--quiet"],
                           capture_output=True, text=True)
        lines = [l for l in r.stderr.splitlines() if l.strip() and not l.startswith(("---", "Primary", "a non-zero", "the job", "  "))]
        assert r.returncode == 1, r.stderr
        assert len(lines) == 1 and str(bad) in lines[0] and "NaN or infinite" in lines[0], r.stderr
        assert not (tmp_path / f"s-{i}.h5").exists()
    cut = tmp_path / "cut.h5"
    cut.write_bytes(k.read_bytes()[: offset + 150 * 300 * size])
    r = subprocess.run([binary(), "solve", cut, "--memory-budget", budget, "--out", tmp_path / "s-cut.h5", "--quiet"],
                       capture_output=True, text=True)
    assert r.returncode in (1, 2), r.stderr
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and str(cut) in lines[0], r.stderr
    assert not (tmp_path / "s-cut.h5").exists()
