"""What the commands trust of the files they read (issue 29, findings 3-5): a training kernel's
recorded settings (`build --against`, `verify`, `predict`), the stored tile and label checksums
(`solve`, `dynamics`, `spectrum`, `predict`), and a solution's α (`predict`). Each file is
tampered with h5py; the command must stop in one line naming the file and what does not match,
and the untampered files must keep giving the same numbers."""
import json
import shutil
import subprocess

import h5py
import numpy as np
import pytest

from conftest import binary, checksum64, ntkgram

TILE = 32


def rechecksum(path):
    """Rewrites /tiles/checksums from the stored values (what a tamperer who knows the format
    would do, and how a cross kernel of other values is made consistent here)."""
    with h5py.File(path, "r+") as f:
        n, m, b = int(f.attrs["N"]), int(f.attrs["M"]), int(f.attrs["tile"])
        kernels = f["/tiles/checksums"].attrs["kernels"].split(",")
        cross = "against_fingerprint" in f.attrs
        tiles = [] if cross else [("train", i, j) for i in range(0, n, b) for j in range(i, n, b)]
        tiles += [("test", i, j) for i in range(0, m, b) for j in range(0, n, b)]
        words = f["/tiles/checksums"][...]
        for t, (block, i, j) in enumerate(tiles):
            for k, kernel in enumerate(kernels):
                h = checksum64(np.ascontiguousarray(f[f"/{block}/{kernel}"][i:i + b, j:j + b]).tobytes())
                words[t, k] = [h >> 32, h & 0xFFFFFFFF]
        f["/tiles/checksums"][...] = words


def one_line_failure(*args, contains=()):
    r = ntkgram(*args, check=False)
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    line = lines[0]
    assert line.startswith("ntkgram: error: "), line
    for part in contains:
        assert part in line, (part, line)
    return line


def copy(src, dst):
    shutil.copyfile(src, dst)
    return dst


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("integrity")
    rng = np.random.default_rng(29)
    x = rng.normal(size=(90, 12)) * 3 + 1
    t = rng.normal(size=(30, 12)) * 3 + 1
    np.save(d / "x.npy", x)
    np.save(d / "t.npy", t)
    np.save(d / "y.npy", rng.integers(0, 4, size=90))
    np.save(d / "ty.npy", rng.integers(0, 4, size=30))
    train = ["--train", d / "x.npy", "--train-labels", d / "y.npy", "--preprocess", "standardize", "--tile", TILE]
    test = ["--test", d / "t.npy", "--test-labels", d / "ty.npy"]
    # A training kernel alone, a cross kernel against it, a full build (both layouts, float64).
    ntkgram("build", *train, "--out", d / "k.h5", "--quiet")
    ntkgram("build", "--against", d / "k.h5", *test, "--out", d / "c.h5", "--quiet")
    for layout in ("contiguous", "tiles"):
        ntkgram(*build_full(d, layout), "--out", d / f"full-{layout}.h5", "--quiet")
    ntkgram("solve", d / "k.h5", "--ridge", "1e-3", "--tol", "1e-10", "--out", d / "s.h5", "--quiet")
    ntkgram("solve", d / "full-contiguous.h5", "--ridge", "1e-3", "--tol", "1e-10", "--out", d / "sf.h5", "--quiet")
    return d


# Finding 3: build --against, verify and predict trust the training kernel's settings.

@pytest.mark.parametrize("recorded", [True, False], ids=["with-preprocess-checksum", "older-file"])
@pytest.mark.parametrize("dataset", ["/preprocess/mean", "/preprocess/std"])
def test_against_refuses_modified_statistics(data, tmp_path, dataset, recorded):
    k = copy(data / "k.h5", tmp_path / "k.h5")
    with h5py.File(k, "r+") as f:
        f[dataset][3] = f[dataset][3] + 0.05
        if not recorded and "preprocess_checksum" in f.attrs:
            del f.attrs["preprocess_checksum"]
    one_line_failure("build", "--against", k, "--test", data / "t.npy", "--out", tmp_path / "c.h5",
                     contains=("k.h5", dataset))
    assert not (tmp_path / "c.h5").exists()
    # The same file, its statistics restored, builds the cross kernel byte for byte as before.
    with h5py.File(k, "r+") as f, h5py.File(data / "k.h5", "r") as g:
        f[dataset][...] = g[dataset][...]
    ntkgram("build", "--against", k, "--test", data / "t.npy", "--test-labels", data / "ty.npy", "--out", tmp_path / "c.h5", "--quiet")
    with h5py.File(tmp_path / "c.h5", "r") as a, h5py.File(data / "c.h5", "r") as b:
        for name in ("/test/ntk", "/test/nngp"):
            assert a[name][...].tobytes() == b[name][...].tobytes()


def network_w_std(value):
    layers = json.loads(value)
    layers[0]["W_std"] = layers[0].get("W_std", 1.0) * 1.1
    return json.dumps(layers)


@pytest.mark.parametrize("attribute,change", [
    ("network", network_w_std),
    ("preprocess", lambda v: "scale"),
    ("gram_precision", lambda v: "float32" if v == "float64" else "float64"),
    ("train_fingerprint", lambda v: "0123456789abcdef"),
])
def test_against_refuses_modified_spec_attributes(data, tmp_path, attribute, change):
    k = copy(data / "k.h5", tmp_path / "k.h5")
    with h5py.File(k, "r+") as f:
        f.attrs[attribute] = change(f.attrs[attribute])
    one_line_failure("build", "--against", k, "--test", data / "t.npy", "--out", tmp_path / "c.h5",
                     contains=("k.h5", "train_fingerprint"))
    # verify of the modified training kernel fails too.
    r = ntkgram("verify", k, "--samples", 10, check=False)
    assert r.returncode != 0 and "verified" not in r.stdout and "k.h5" in r.stderr, (r.stdout, r.stderr)


def cross_kernel_of_modified_statistics(data, tmp_path):
    """The cross kernel an unchecked `build --against` made from a training kernel whose
    /preprocess/mean had 0.05 added: its values computed with those statistics (a full build of
    the data standardised with them), its tile checksums consistent, no preprocess_checksum."""
    with h5py.File(data / "k.h5", "r") as f:
        mean, std = f["/preprocess/mean"][...] + 0.05, f["/preprocess/std"][...]
    np.save(tmp_path / "xs.npy", (np.load(data / "x.npy") - mean) / std)
    np.save(tmp_path / "ts.npy", (np.load(data / "t.npy") - mean) / std)
    ntkgram("build", "--train", tmp_path / "xs.npy", "--test", tmp_path / "ts.npy", "--preprocess", "none",
            "--tile", TILE, "--out", tmp_path / "wrong.h5", "--quiet")
    bad = copy(data / "c.h5", tmp_path / "bad.h5")
    with h5py.File(bad, "r+") as f, h5py.File(tmp_path / "wrong.h5", "r") as w:
        f["/preprocess/mean"][...] = mean
        if "preprocess_checksum" in f.attrs:
            del f.attrs["preprocess_checksum"]
        for name in ("/test/ntk", "/test/nngp"):
            f[name][...] = w[name][...]
    rechecksum(bad)
    return bad


def test_verify_and_predict_refuse_a_cross_kernel_of_modified_statistics(data, tmp_path):
    bad = cross_kernel_of_modified_statistics(data, tmp_path)
    r = ntkgram("verify", bad, "--samples", 40, check=False)
    assert r.returncode != 0 and "verified" not in r.stdout, (r.stdout, r.stderr)
    assert "bad.h5" in r.stderr and "/preprocess/mean" in r.stderr, r.stderr
    one_line_failure("predict", data / "s.h5", bad, "--out", tmp_path / "p.h5", contains=("bad.h5", "/preprocess/mean"))
    assert not (tmp_path / "p.h5").exists()
    # The untampered cross kernel verifies and predicts.
    assert "verified" in ntkgram("verify", data / "c.h5", "--samples", 40).stdout
    ntkgram("predict", data / "s.h5", data / "c.h5", "--out", tmp_path / "p.h5")


@pytest.mark.parametrize("attribute,change", [
    ("network", network_w_std),
    ("preprocess", lambda v: "unit_norm"),
])
def test_predict_refuses_a_cross_kernel_whose_records_changed(data, tmp_path, attribute, change):
    c = copy(data / "c.h5", tmp_path / "c.h5")
    with h5py.File(c, "r+") as f:
        f.attrs[attribute] = change(f.attrs[attribute])
    one_line_failure("predict", data / "s.h5", c, "--out", tmp_path / "p.h5", contains=("c.h5", "train_fingerprint"))
    r = ntkgram("verify", c, "--samples", 10, check=False)
    assert r.returncode != 0 and "verified" not in r.stdout


# Finding 4: solve, dynamics, spectrum and predict check the tiles and labels they read.

def change_entry(path, i, j, how):
    with h5py.File(path, "r+") as f:
        d = f["/train/ntk"]
        for (a, b) in {(i, j), (j, i)}:
            v = np.array(d[a, b])
            d[a, b] = how(v)


def relative(v):
    return v * (1 + 1e-4)


def exponent_flip(v):
    bits = v.view(np.uint64) ^ np.uint64(1 << 56)
    return bits.view(np.float64)


def build_full(data, layout):
    """The build command of full-<layout>.h5, without --out."""
    return ["build", "--train", data / "x.npy", "--train-labels", data / "y.npy", "--preprocess", "standardize",
            "--tile", TILE, "--test", data / "t.npy", "--test-labels", data / "ty.npy", "--dtype", "float64",
            "--layout", layout]


COMMANDS = {
    "solve": lambda k, out: ["solve", k, "--ridge", "1e-3", "--out", out],
    "solve-streamed": lambda k, out: ["solve", k, "--ridge", "1e-3", "--memory-budget", "200KiB", "--preconditioner", "jacobi", "--out", out],
    "dynamics": lambda k, out: ["dynamics", k, "--times", "1,100", "--out", out],
    "spectrum": lambda k, out: ["spectrum", k, "--top", 3, "--out", out],
}


@pytest.mark.parametrize("layout", ["contiguous", "tiles"])
@pytest.mark.parametrize("how", [relative, exponent_flip], ids=["changed-entry", "exponent-flip"])
@pytest.mark.parametrize("command", list(COMMANDS))
def test_a_changed_kernel_entry_is_refused(data, tmp_path, layout, how, command):
    k = copy(data / f"full-{layout}.h5", tmp_path / "k.h5")
    change_entry(k, 37, 70, how)
    one_line_failure(*COMMANDS[command](k, tmp_path / "out.h5"),
                     contains=("k.h5", "/train/ntk", "tile 4 ", "does not match its stored checksum", "--repair"))
    assert not (tmp_path / "out.h5").exists()
    # The remedy works: --repair mends it, and the command runs.
    ntkgram(*build_full(data, layout), "--out", k, "--repair", "--quiet")
    with open(k, "rb") as a, open(data / f"full-{layout}.h5", "rb") as b:
        assert a.read() == b.read()
    ntkgram(*COMMANDS[command](k, tmp_path / "out.h5"), "--quiet")


def test_two_ranks_refuse_a_changed_entry(data, tmp_path):
    k = copy(data / "full-tiles.h5", tmp_path / "k.h5")
    change_entry(k, 80, 85, relative)
    cmd = ["mpirun", "--allow-run-as-root", "--oversubscribe", "-np", "2", binary(),
           "solve", k, "--ridge", "1e-3", "--out", tmp_path / "s.h5", "--quiet"]
    r = subprocess.run(list(map(str, cmd)), capture_output=True, text=True)
    assert r.returncode != 0 and "k.h5" in r.stderr and "/train/ntk" in r.stderr and "--repair" in r.stderr, r.stderr
    assert not (tmp_path / "s.h5").exists()


@pytest.mark.parametrize("command", ["solve", "predict"])
def test_a_changed_cross_kernel_entry_is_refused(data, tmp_path, command):
    k = copy(data / "full-contiguous.h5", tmp_path / "k.h5")
    with h5py.File(k, "r+") as f:
        f["/test/ntk"][20, 50] = f["/test/ntk"][20, 50] * 1.001
    args = ["solve", k, "--ridge", "1e-3", "--quiet"] if command == "solve" else ["predict", data / "sf.h5", k]
    one_line_failure(*args, "--out", tmp_path / "o.h5", contains=("k.h5", "/test/ntk", "tile 7 ", "--repair"))
    # A cross kernel of build --against likewise (its checksums hold the test tiles only).
    c = copy(data / "c.h5", tmp_path / "c.h5")
    with h5py.File(c, "r+") as f:
        f["/test/ntk"][29, 89] = np.float32(f["/test/ntk"][29, 89]) * np.float32(1.001)
    one_line_failure("predict", data / "s.h5", c, "--out", tmp_path / "o.h5", contains=("c.h5", "/test/ntk", "tile 2 ", "--repair"))


@pytest.mark.parametrize("command", ["solve", "dynamics", "spectrum"])
@pytest.mark.parametrize("split", ["train", "test"])
def test_a_flipped_label_bit_is_refused(data, tmp_path, command, split):
    k = copy(data / "full-contiguous.h5", tmp_path / "k.h5")
    with h5py.File(k, "r+") as f:
        labels = f[f"/{split}/labels"][...]
        labels[7] ^= 1 << 3
        f[f"/{split}/labels"][...] = labels
    one_line_failure(*COMMANDS[command](k, tmp_path / "out.h5"), contains=("k.h5", f"/{split}/labels", "recorded checksum", "--repair"))
    assert not (tmp_path / "out.h5").exists()
    # The remedy: --repair writes the labels again from their source, the file as built.
    ntkgram(*build_full(data, "contiguous"), "--out", k, "--repair", "--quiet")
    with open(k, "rb") as a, open(data / "full-contiguous.h5", "rb") as b:
        assert a.read() == b.read()
    ntkgram(*COMMANDS[command](k, tmp_path / "out.h5"), "--quiet")


def test_predict_refuses_flipped_test_labels(data, tmp_path):
    c = copy(data / "c.h5", tmp_path / "c.h5")
    with h5py.File(c, "r+") as f:
        labels = f["/test/labels"][...]
        labels[0] ^= 1 << 40
        f["/test/labels"][...] = labels
    one_line_failure("predict", data / "s.h5", c, "--out", tmp_path / "p.h5", contains=("c.h5", "/test/labels"))


def test_untampered_files_give_the_same_numbers(data, tmp_path):
    # Mapped, kept or streamed tiles, either layout: the same α, equal to a dense solve.
    alphas = []
    for layout in ("contiguous", "tiles"):
        for budget in ([], ["--memory-budget", "200KiB", "--preconditioner", "jacobi"]):
            ntkgram("solve", data / f"full-{layout}.h5", "--ridge", "1e-3", "--tol", "1e-12", *budget,
                    "--out", tmp_path / "s.h5", "--force", "--quiet")
            with h5py.File(tmp_path / "s.h5", "r") as s:
                alphas.append(s["/alpha"][...])
    with h5py.File(data / "full-contiguous.h5", "r") as f:
        k = f["/train/ntk"][...]
        labels = f["/train/labels"][...]
    classes = np.unique(labels)
    y = (labels[:, None] == classes[None, :]).astype(float)
    lam = 1e-3 * np.trace(k) / k.shape[0]
    dense = np.linalg.solve(k + lam * np.eye(k.shape[0]), y)
    for a in alphas:
        assert np.allclose(a, dense, rtol=1e-6, atol=1e-8 * np.abs(dense).max())
    # predict on the solved file's own cross kernel gives solve's test predictions, bit for bit.
    ntkgram("predict", data / "sf.h5", data / "full-contiguous.h5", "--out", tmp_path / "p.h5")
    with h5py.File(data / "sf.h5", "r") as s, h5py.File(tmp_path / "p.h5", "r") as p:
        assert s["/test/predictions"][...].tobytes() == p["/predictions"][...].tobytes()
    for command in ("dynamics", "spectrum"):
        ntkgram(*COMMANDS[command](data / "full-tiles.h5", tmp_path / f"{command}.h5"), "--quiet")


# Finding 5: predict trusts the solution.

def test_predict_refuses_non_finite_alpha(data, tmp_path):
    s = copy(data / "s.h5", tmp_path / "s.h5")
    with h5py.File(s, "r+") as f:
        a = f["/alpha"][...]
        a[4, 1] = np.nan
        f["/alpha"][...] = a
    one_line_failure("predict", s, data / "c.h5", "--out", tmp_path / "p.h5", contains=("s.h5", "/alpha", "non-finite"))
    # Also in a solution without a checksum (written before solutions had one).
    with h5py.File(s, "r+") as f:
        if "solution_checksum" in f.attrs:
            del f.attrs["solution_checksum"]
    one_line_failure("predict", s, data / "c.h5", "--out", tmp_path / "p.h5", contains=("s.h5", "/alpha", "non-finite"))
    assert not (tmp_path / "p.h5").exists()


@pytest.mark.parametrize("edit", ["alpha", "classes", "kernel_train_fingerprint"])
def test_predict_refuses_an_edited_solution(data, tmp_path, edit):
    s = copy(data / "s.h5", tmp_path / "s.h5")
    with h5py.File(s, "r+") as f:
        if edit == "alpha":
            a = f["/alpha"][...]
            a[10, 2] *= 1.0 + 1e-9
            f["/alpha"][...] = a
        elif edit == "classes":
            c = f["/classes"][...]
            c[0], c[1] = c[1], c[0]
            f["/classes"][...] = c
        else:
            f.attrs["kernel_train_fingerprint"] = f.attrs["kernel_train_fingerprint"]  # rewritten, unchanged
            f.attrs["kernel_preprocess_checksum"] = "0" * 16
    one_line_failure("predict", s, data / "c.h5", "--out", tmp_path / "p.h5", contains=("s.h5",))


def test_a_solution_without_checksum_is_predicted_with_a_warning(data, tmp_path):
    s = copy(data / "s.h5", tmp_path / "s.h5")
    with h5py.File(s, "r+") as f:
        if "solution_checksum" in f.attrs:
            del f.attrs["solution_checksum"]
    r = ntkgram("predict", s, data / "c.h5", "--out", tmp_path / "p.h5")
    assert "warning" in r.stderr and "solution_checksum" in r.stderr, r.stderr
    ntkgram("predict", data / "s.h5", data / "c.h5", "--out", tmp_path / "q.h5")
    with h5py.File(tmp_path / "p.h5", "r") as p, h5py.File(tmp_path / "q.h5", "r") as q:
        assert p["/predictions"][...].tobytes() == q["/predictions"][...].tobytes()


def test_recorded_checksums_follow_docs_file_format(data):
    """preprocess_checksum and solution_checksum, recomputed from their description."""
    def words(*values):
        return np.array(values, dtype="<u8").tobytes()
    with h5py.File(data / "k.h5", "r") as f:
        mean, std = f["/preprocess/mean"][...], f["/preprocess/std"][...]
        expected = checksum64(words(checksum64(mean.astype("<f8").tobytes()), len(mean), checksum64(std.astype("<f8").tobytes()), len(std)))
        assert f.attrs["preprocess_checksum"] == f"{expected:016x}"
    with h5py.File(data / "s.h5", "r") as s:
        alpha, classes = s["/alpha"][...], s["/classes"][...]
        text = (f"kernel={s.attrs['kernel']}|train_fingerprint={s.attrs['kernel_train_fingerprint']}"
                f"|preprocess={s.attrs['kernel_preprocess_checksum']}")
        parts = [checksum64(alpha.astype("<f8").tobytes()), alpha.ndim, *alpha.shape,
                 1, checksum64(classes.astype("<i8").tobytes()), checksum64(text.encode())]
        assert s.attrs["solution_checksum"] == f"{checksum64(words(*parts)):016x}"
        assert s.attrs["kernel_preprocess_checksum"] == f"{expected:016x}"
