"""The kernel file as other languages read it, and what a build writes to make it.

- A C program (libhdf5, the usual `H5T_C_S1` variable-length string idiom) and an R script
  (hdf5r) read every dataset and attribute of kernel files exactly as h5py does: values to
  the bit, the 64-bit tile checksums included (stored as 32-bit word pairs that no reader
  clips), strings as `str`.
- The checksums are those of the tiles' bytes (recomputed here from the algorithm's
  description in docs/file-format.md), and the doc names every dataset and attribute.
- Every kernel byte is written once: the bytes a whole build writes (`wchar` of its process
  tree, mpirun included) stay within 1.05x the file it produces, on 1 and 2 ranks, and a
  resume after kill -9 writes only the missing tiles.
"""
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from conftest import binary, checksum64, ntkgram

ROOT = Path(__file__).resolve().parents[2]
READERS = Path(__file__).resolve().parent / "readers"


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("format")
    rng = np.random.default_rng(5)
    np.save(d / "x.npy", rng.normal(size=(45, 6)))
    np.save(d / "t.npy", rng.normal(size=(11, 6)))
    np.save(d / "y.npy", rng.integers(0, 3, size=45))
    np.save(d / "ty.npy", rng.integers(0, 3, size=11))
    common = ["--train", d / "x.npy", "--test", d / "t.npy", "--train-labels", d / "y.npy", "--test-labels", d / "ty.npy"]
    # float32 with ragged tiles (odd byte counts for the checksums' tail), standardize statistics.
    ntkgram("build", *common, "--preprocess", "standardize", "--tile", 7, "--out", d / "analytic.h5", "--quiet")
    # A concrete network: /params and /initial_outputs too, float64.
    ntkgram("build", *common, "--depth", 2, "--width", 5, "--empirical", "--seed", 3, "--readout-width", 2,
            "--dtype", "float64", "--tile", 16, "--out", d / "empirical.h5", "--quiet")
    # The tiled layout (HDF5 1.10 format, chunks of one tile with padded edges), float32.
    ntkgram("build", *common, "--tile", 8, "--layout", "tiles", "--out", d / "tiled.h5", "--quiet")
    return d


def h5py_lines(path):
    """The reference: the dump format of readers/dump.c, from h5py."""
    lines = []

    def value_text(v):
        if isinstance(v, str):
            return "s " + v
        assert not isinstance(v, bytes), "strings must come back as str (variable-length UTF-8)"
        a = np.asarray(v)
        if a.dtype.kind == "f":
            return "f " + " ".join(f"{b:016x}" for b in a.astype(np.float64).ravel().view(np.uint64).tolist())
        assert a.dtype.kind in "iu", a.dtype
        return "i " + " ".join(str(int(x)) for x in a.ravel().tolist())

    def attributes(obj, name):
        for key in sorted(obj.attrs.keys()):
            lines.append(f"A {name} {key} {value_text(obj.attrs[key])}")

    with h5py.File(path, "r") as f:
        attributes(f, "/")

        def visit(name, obj):
            attributes(obj, "/" + name)
            if isinstance(obj, h5py.Dataset):
                lines.append(f"D /{name} {','.join(map(str, obj.shape))} {value_text(obj[...])}")

        f.visititems(visit)
    return sorted(lines)


def reader_lines(command):
    r = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    return sorted(line.strip() for line in r.stdout.splitlines() if line.strip())


@pytest.fixture(scope="module")
def c_reader(tmp_path_factory):
    folder = tmp_path_factory.mktemp("c")
    exe = folder / "dump"
    # In its own folder: h5cc leaves the object file in the working directory.
    subprocess.run(["h5cc", "-Wall", "-o", exe, READERS / "dump.c"], check=True, capture_output=True, cwd=folder)
    return exe


@pytest.mark.parametrize("name", ["analytic.h5", "empirical.h5", "tiled.h5"])
def test_c_reads_every_dataset_and_attribute_exactly(files, c_reader, name):
    expected = h5py_lines(files / name)
    assert any(line.startswith("D /tiles/checksums") for line in expected)
    assert reader_lines([c_reader, files / name]) == expected


@pytest.mark.parametrize("name", ["analytic.h5", "empirical.h5", "tiled.h5"])
def test_r_hdf5r_reads_every_dataset_and_attribute_exactly(files, name):
    assert reader_lines(["Rscript", READERS / "dump.R", files / name]) == h5py_lines(files / name)


@pytest.mark.parametrize("name", ["analytic.h5", "empirical.h5", "tiled.h5"])
def test_stored_checksums_are_the_tiles_checksums(files, name):
    with h5py.File(files / name, "r") as f:
        n, m, tile = int(f.attrs["N"]), int(f.attrs["M"]), int(f.attrs["tile"])
        kernels = f.attrs["kernels"].split(",")
        words = f["/tiles/checksums"][...].astype(np.uint64)
        sums = (words[..., 0] << np.uint64(32)) | words[..., 1]
        # Tiles in TilePlan order: the upper triangle of the train grid row by row, then the test grid.
        tiles = [("train", i, j) for i in range(0, n, tile) for j in range(i, n, tile)]
        tiles += [("test", i, j) for i in range(0, m, tile) for j in range(0, n, tile)]
        assert sums.shape == (len(tiles), len(kernels))
        for t, (block, i, j) in enumerate(tiles):
            for k, kernel in enumerate(kernels):
                values = f[f"/{block}/{kernel}"][i:i + tile, j:j + tile]
                assert checksum64(np.ascontiguousarray(values).tobytes()) == int(sums[t, k]), (t, kernel)


def test_file_format_doc_names_every_dataset_and_attribute(files):
    doc = (ROOT / "docs" / "file-format.md").read_text()
    named = set(re.findall(r"`([^`]+)`", doc))
    for name in ("analytic.h5", "empirical.h5", "tiled.h5"):
        with h5py.File(files / name, "r") as f:
            items = set(f.attrs.keys())

            def visit(path, obj):
                generic = re.sub(r"/\d+/", "/<k>/", "/" + path)
                if isinstance(obj, h5py.Dataset):
                    items.add(generic)
                items.update(obj.attrs.keys())

            f.visititems(visit)
        missing = sorted(i for i in items if i not in named)
        assert not missing, f"docs/file-format.md does not describe {missing}"


def wchar_of(args):
    """Bytes written (`wchar`) by a command and every process it started, and its exit code."""
    script = '"$@" >/dev/null 2>&1; rc=$?; grep ^wchar: /proc/$$/io; exit $rc'
    r = subprocess.run(["bash", "-c", script, "wchar", *map(str, args)], capture_output=True, text=True, timeout=600)
    return int(r.stdout.split()[-1]), r.returncode


def test_the_tiled_layout_holds_the_contiguous_values(files):
    """Same job, both layouts: every kernel value identical; the tiled kernels are HDF5 chunks of
    one tile (clamped to the matrix) that h5py reads like any dataset."""
    common = {}
    with h5py.File(files / "tiled.h5", "r") as t:
        assert t.attrs["layout"] == "tiles" and int(t.attrs["format_version"]) == 3
        for name in ("/train/ntk", "/train/nngp", "/test/ntk", "/test/nngp"):
            assert t[name].chunks == (8, 8) and t[name].compression is None
            common[name] = t[name][...]
    ntkgram("build", "--train", files / "x.npy", "--test", files / "t.npy", "--train-labels", files / "y.npy",
            "--test-labels", files / "ty.npy", "--tile", 8, "--layout", "contiguous", "--out", files / "contiguous.h5", "--quiet")
    with h5py.File(files / "contiguous.h5", "r") as c:
        assert c.attrs["layout"] == "contiguous" and c["/train/ntk"].chunks is None
        for name, values in common.items():
            assert np.array_equal(c[name][...], values), name
    subprocess.run([binary(), "verify", files / "tiled.h5"], check=True, capture_output=True)


@pytest.mark.parametrize("layout", ["contiguous", "tiles"])
@pytest.mark.parametrize("ranks", [1, 2])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_build_writes_each_kernel_byte_once(tmp_path, ranks, dtype, layout):
    np.save(tmp_path / "x.npy", np.random.default_rng(ranks).normal(size=(900, 20)))
    np.save(tmp_path / "t.npy", np.random.default_rng(9).normal(size=(150, 20)))
    out = tmp_path / "k.h5"
    written, rc = wchar_of(["mpirun", "--oversubscribe", "-np", ranks, binary(), "build", "--train", tmp_path / "x.npy",
                            "--test", tmp_path / "t.npy", "--dtype", dtype, "--tile", 100, "--layout", layout,
                            "--out", out, "--quiet"])
    assert rc == 0
    size = out.stat().st_size
    assert written <= 1.05 * size, f"{written} bytes written for a {size}-byte file ({written / size:.3f}x)"
    assert written >= 0.9 * size  # the measurement sees the ranks' writes


@pytest.mark.parametrize("layout", ["contiguous", "tiles"])
def test_a_resume_writes_only_the_missing_tiles(tmp_path, layout):
    np.save(tmp_path / "x.npy", np.random.default_rng(3).normal(size=(1500, 400)))
    out, tiles = tmp_path / "k.h5", tmp_path / "k.tiles"
    args = [binary(), "build", "--train", tmp_path / "x.npy", "--dtype", "float64", "--tile", 50, "--layout", layout,
            "--out", out, "--quiet"]
    p = subprocess.Popen(list(map(str, args)))
    deadline = time.time() + 120
    while p.poll() is None and time.time() < deadline:
        if tiles.exists() and len([n for n in os.listdir(tiles) if n.endswith(".done")]) >= 100:
            p.send_signal(signal.SIGKILL)
            break
        time.sleep(0.01)
    p.wait()
    assert p.returncode == -signal.SIGKILL and not out.exists()
    done = len([n for n in os.listdir(tiles) if n.endswith(".done")])
    total = 30 * 31 // 2
    assert 100 <= done < total
    written, rc = wchar_of(args)
    assert rc == 0
    # A full tile is 50 x 50 x 8 bytes per kernel, twice (upper and mirror) off the diagonal.
    missing_upper_bound = (total - done) * 50 * 50 * 8 * 2 * 2
    assert written <= 1.05 * missing_upper_bound, f"the resume wrote {written} bytes for {total - done} missing tiles"
    clean = tmp_path / "clean.h5"
    ntkgram(*args[1:-3], "--out", clean, "--quiet")
    assert clean.read_bytes() == out.read_bytes()


@pytest.mark.parametrize("where", ["value", "padding"])
def test_a_flipped_byte_in_a_tiled_kernel_is_found_by_verify_and_mended_by_repair(tmp_path, where):
    """In a tiled file, a byte is a value's or an edge chunk's padding (which no value covers,
    but which the build wrote as zeros): either flipped, verify fails naming the tile, and
    build --repair rewrites that tile alone, back to the original bytes."""
    np.save(tmp_path / "x.npy", np.random.default_rng(12).normal(size=(150, 5)))
    out = tmp_path / "k.h5"
    args = ["build", "--train", tmp_path / "x.npy", "--tile", 64, "--layout", "tiles", "--out", out]
    ntkgram(*args, "--quiet")
    original = out.read_bytes()
    with h5py.File(out, "r") as f:
        chunk = f["/train/ntk"].id.get_chunk_info_by_coord((128, 0))  # rows 128..149 (22 of 64), a mirror
        itemsize = f["/train/ntk"].dtype.itemsize
    row = 3 if where == "value" else 40
    at = chunk.byte_offset + (row * 64 + 5) * itemsize + 1
    data = bytearray(original)
    data[at] ^= 0x08
    out.write_bytes(bytes(data))
    r = subprocess.run([binary(), "verify", out], capture_output=True, text=True)
    assert r.returncode != 0 and "[0..<64] × [128..<150]" in r.stderr, r.stderr  # the mirror of this upper tile
    r = subprocess.run([binary(), *map(str, args), "--repair"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "1 damaged tiles to recompute" in r.stderr, r.stderr
    assert out.read_bytes() == original
    subprocess.run([binary(), "verify", out], check=True, capture_output=True)


def test_verify_names_data_that_moved_and_records_paths_as_given(tmp_path):
    rng = np.random.default_rng(8)
    np.save(tmp_path / "x.npy", rng.normal(size=(30, 4)))
    np.save(tmp_path / "t.npy", rng.normal(size=(7, 4)))
    # Relative paths, as given, from the data's folder.
    subprocess.run([binary(), "build", "--train", "x.npy", "--test", "t.npy", "--out", "k.h5", "--quiet"], cwd=tmp_path, check=True)
    with h5py.File(tmp_path / "k.h5", "r") as f:
        assert f.attrs["train_source_given"] == "x.npy" and f.attrs["train_source"] == str(tmp_path / "x.npy")
        assert len(f.attrs["test_data_checksum"]) == 16
    (tmp_path / "moved").mkdir()
    for name in ("x.npy", "t.npy"):
        (tmp_path / name).rename(tmp_path / "moved" / name)
    r = ntkgram("verify", tmp_path / "k.h5", check=False)
    assert r.returncode != 0 and "moved or deleted" in r.stderr and "--train" in r.stderr, r.stderr
    r = ntkgram("verify", tmp_path / "k.h5", "--train", tmp_path / "moved" / "x.npy", check=False)
    assert r.returncode != 0 and "moved or deleted" in r.stderr and "--test" in r.stderr, r.stderr
    r = ntkgram("verify", tmp_path / "k.h5", "--train", tmp_path / "moved" / "x.npy", "--test", tmp_path / "moved" / "t.npy")
    assert "moved: now at" in r.stdout, r.stdout
    # Changed, not moved: other values at the recorded place.
    changed = np.load(tmp_path / "moved" / "t.npy")
    changed[3, 1] += 1e-9
    np.save(tmp_path / "t.npy", changed)
    (tmp_path / "moved" / "x.npy").rename(tmp_path / "x.npy")
    r = ntkgram("verify", tmp_path / "k.h5", check=False)
    assert r.returncode != 0 and "test data" in r.stderr and "differs from the data the kernel was built from" in r.stderr, r.stderr


def test_verify_checks_labels_in_the_file_and_at_their_source(tmp_path):
    rng = np.random.default_rng(12)
    np.save(tmp_path / "x.npy", rng.normal(size=(25, 4)))
    np.save(tmp_path / "y.npy", rng.integers(0, 4, size=25))
    np.save(tmp_path / "t.npy", rng.normal(size=(6, 4)))
    np.save(tmp_path / "ty.npy", rng.integers(0, 4, size=6))
    # CSV with its labels in a column, too: verify must drop that column again.
    rows = np.hstack([rng.integers(0, 3, size=(6, 1)), rng.normal(size=(6, 4))])
    (tmp_path / "c.csv").write_text("\n".join(",".join(map(repr, map(float, r))) for r in rows) + "\n")
    ntkgram("build", "--train", tmp_path / "x.npy", "--train-labels", tmp_path / "y.npy", "--test", tmp_path / "c.csv",
            "--test-label-column", 0, "--out", tmp_path / "k.h5", "--quiet")
    r = ntkgram("verify", tmp_path / "k.h5", "--samples", 20)
    assert "/train/labels matches its recorded checksum" in r.stdout and "train labels read from their source match" in r.stdout
    assert "test labels read from their source match" in r.stdout, r.stdout
    with h5py.File(tmp_path / "k.h5", "r") as f:
        assert f.attrs["train_labels_source_given"] == str(tmp_path / "y.npy") and f.attrs["test_label_column"] == 0
    # A label changed at its source.
    y = np.load(tmp_path / "y.npy")
    y[4] += 1
    np.save(tmp_path / "y.npy", y)
    r = ntkgram("verify", tmp_path / "k.h5", "--samples", 5, check=False)
    assert r.returncode == 1 and "train labels now read from" in r.stderr and "y.npy" in r.stderr, r.stderr
    y[4] -= 1
    np.save(tmp_path / "y.npy", y)
    # A label changed in the file.
    with h5py.File(tmp_path / "k.h5", "r+") as f:
        f["/train/labels"][3] += 1
    r = ntkgram("verify", tmp_path / "k.h5", "--samples", 5, check=False)
    assert r.returncode == 1 and "/train/labels does not match its recorded checksum" in r.stderr, r.stderr
