"""Seeded fuzzing of every input the commands read: mutated NPY, IDX (plain and gzip), CSV, TOML
and HDF5 files (data and kernels, in the 1.8 format ntkgram writes and in the earliest format,
h5py's default), and random flag values. No case may trap, segfault, hang or flood: the exit status is 0, 1 or 2,
stderr has at most a few lines, and each run ends within its time limit.

The seed is fixed, so a failure reproduces; NTKGRAM_FUZZ_SEED and NTKGRAM_FUZZ_CASES change
the seed and the number of cases per family.
"""
import gzip
import os
import random
import shutil
import subprocess

import h5py
import numpy as np
import pytest

from conftest import binary, ntkgram

SEED = int(os.environ.get("NTKGRAM_FUZZ_SEED", "20261202"))
CASES = int(os.environ.get("NTKGRAM_FUZZ_CASES", "500"))
WEIRD_NUMBERS = ["0", "-1", "1", "nan", "inf", "-inf", "1e308", "1e-308", "9223372036854775807", "9223372036854775808",
                 "-9223372036854775808", "4294967296", "1e19", "0x10", "", " ", "1,2", "abc", "1e999", "65536", "2147483648"]


def run(args, timeout=30):
    try:
        r = subprocess.run([binary(), *map(str, args)], capture_output=True, text=True, timeout=timeout,
                           errors="replace", env={**os.environ, "OMPI_MCA_plm": "isolated"})
    except subprocess.TimeoutExpired:
        raise AssertionError(f"hung (> {timeout} s): ntkgram {' '.join(map(str, args))}")
    lines = r.stderr.strip().splitlines()
    assert r.returncode in (0, 1, 2), f"exit {r.returncode} for ntkgram {' '.join(map(str, args))}: {r.stderr[-2000:]}"
    bad = [l for l in lines if not l.startswith(("progress:", "ntkgram: warning:"))]
    assert len(bad) <= 3, f"{len(lines)} lines for ntkgram {' '.join(map(str, args))}: {r.stderr[:2000]}"
    return r


def mutate(data: bytes, rng: random.Random) -> bytes:
    b = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        kind = rng.randrange(5)
        if kind == 0 and b:  # flip a byte
            i = rng.randrange(len(b))
            b[i] ^= 1 << rng.randrange(8)
        elif kind == 1 and b:  # truncate
            del b[rng.randrange(len(b)):]
        elif kind == 2:  # insert random bytes
            i = rng.randrange(len(b) + 1)
            b[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
        elif kind == 3 and b:  # overwrite with a weird token
            i = rng.randrange(len(b))
            tok = rng.choice(WEIRD_NUMBERS).encode()
            b[i:i + len(tok)] = tok
        elif b:  # duplicate a slice
            i = rng.randrange(len(b))
            j = min(len(b), i + rng.randint(1, 64))
            b[i:i] = b[i:j]
    return bytes(b)


@pytest.fixture(scope="module")
def seeds(tmp_path_factory):
    d = tmp_path_factory.mktemp("fuzz")
    rng = np.random.default_rng(1)
    x = rng.normal(size=(12, 5))
    np.save(d / "x.npy", x)
    np.save(d / "y.npy", rng.integers(0, 3, size=12))
    np.save(d / "img.npy", rng.normal(size=(6, 4, 4, 1)))
    # IDX as Fashion-MNIST ships it: images (magic 0x0803, uint8, 12 × 4 × 4) and labels (0x0801).
    images = rng.integers(0, 256, size=(12, 4, 4), dtype=np.uint8)
    (d / "x.idx").write_bytes(bytes([0, 0, 8, 3]) + b"".join(int(v).to_bytes(4, "big") for v in images.shape) + images.tobytes())
    (d / "y.idx").write_bytes(bytes([0, 0, 8, 1]) + (12).to_bytes(4, "big") + rng.integers(0, 10, size=12, dtype=np.uint8).tobytes())
    (d / "x.idx.gz").write_bytes(gzip.compress((d / "x.idx").read_bytes(), mtime=0))
    with open(d / "x.csv", "w") as f:
        f.write("a,b,c,d,e\n" + "\n".join(",".join(repr(float(v)) for v in row) for row in x) + "\n")
    with open(d / "job.toml", "w") as f:
        f.write(f'[data]\ntrain = "{d}/x.npy"\ntrain_labels = "{d}/y.npy"\n'
                f'[kernel]\ndepth = 2\nactivation = "relu"\nW_std = 1.5\nb_std = 0.1\n'
                f'[build]\ntile = 4\ndtype = "float64"\nout = "{d}/job.h5"\n')
    ntkgram("build", "--train", d / "x.npy", "--train-labels", d / "y.npy", "--test", d / "x.npy", "--test-labels", d / "y.npy",
            "--tile", 4, "--dtype", "float64", "--out", d / "k.h5", "--quiet")
    # The same kernels tiled (HDF5 1.10 format, chunks side by side with padded edges).
    ntkgram("build", "--train", d / "x.npy", "--train-labels", d / "y.npy", "--test", d / "x.npy", "--test-labels", d / "y.npy",
            "--tile", 5, "--dtype", "float64", "--layout", "tiles", "--out", d / "kt.h5", "--quiet")
    # Data as h5py writes it by default: HDF5's earliest format, whose metadata has no checksums
    # (contiguous, chunked + gzip, float32 in a group, integer labels, a string attribute).
    with h5py.File(d / "x.h5", "w") as f:
        f["x"] = x
        f.create_dataset("c", data=x, chunks=(4, 5), compression="gzip")
        f.create_group("g")["x"] = x.astype(np.float32)
        f["y"] = rng.integers(0, 3, size=12)
        f.attrs["note"] = "fuzz seed"
    # The kernel file rewritten in the earliest format, as format-1 kernel files were.
    with h5py.File(d / "k.h5", "r") as src, h5py.File(d / "k-old.h5", "w", libver="earliest") as dst:
        for name in src:
            src.copy(src[name], dst, name)
        for key, value in src.attrs.items():
            dst.attrs[key] = value
    return d


def test_mutated_data_files(seeds, tmp_path):
    rng = random.Random(SEED)
    sources = {name: (seeds / name).read_bytes() for name in ("x.npy", "img.npy", "x.csv", "y.npy", "x.idx", "y.idx", "x.idx.gz")}
    # The unmutated seeds build: the cases below start from valid files.
    run(["build", "--train", seeds / "x.idx.gz", "--train-labels", seeds / "y.idx", "--tile", 5, "--out", tmp_path / "idx.h5", "--quiet"])
    assert (tmp_path / "idx.h5").exists()
    for case in range(CASES):
        name = rng.choice(sorted(sources))
        path = tmp_path / f"m{case}{name[name.index('.'):]}"
        data = sources[name]
        if name.endswith(".gz") and rng.random() < 0.5:  # a valid gzip stream of mutated IDX bytes
            data = gzip.compress(mutate(gzip.decompress(data), rng), mtime=0)
        else:
            data = mutate(data, rng)
        path.write_bytes(data)
        out = tmp_path / f"o{case}.h5"
        if name.startswith("y."):
            run(["build", "--train", seeds / "x.npy", "--train-labels", path, "--out", out, "--quiet"])
        else:
            run(["build", "--train", path, "--depth", 1, "--tile", 5, "--out", out, "--quiet"])
        out.unlink(missing_ok=True)


def flip_bytes(original, rng):
    data = bytearray(original)
    for _ in range(rng.randint(1, 8)):
        data[rng.randrange(len(data))] = rng.randrange(256)
    if rng.random() < 0.2:
        data = data[:rng.randrange(len(data))]
    return bytes(data)


def test_mutated_hdf5_data_files(seeds, tmp_path):
    """HDF5 inputs in the format h5py writes by default (no metadata checksums): libhdf5 itself
    crashes or loops on some damage, so such files are first opened by a child process."""
    rng = random.Random(SEED + 4)
    original = (seeds / "x.h5").read_bytes()
    run(["build", "--train", f"{seeds / 'x.h5'}:/c", "--train-labels", f"{seeds / 'x.h5'}:/y", "--out", tmp_path / "ok.h5", "--quiet"])
    assert (tmp_path / "ok.h5").exists()
    for case in range(CASES):
        path = tmp_path / f"d{case}.h5"
        path.write_bytes(flip_bytes(original, rng))
        dataset = rng.choice(["x", "c", "g/x"])
        out = tmp_path / f"o{case}.h5"
        run(["build", "--train", f"{path}:/{dataset}", "--train-labels", f"{path}:/y", "--depth", 1, "--out", out, "--quiet"])
        out.unlink(missing_ok=True)
        path.unlink()


def test_mutated_old_format_kernel_files(seeds, tmp_path):
    rng = random.Random(SEED + 5)
    original = (seeds / "k-old.h5").read_bytes()
    run(["verify", seeds / "k-old.h5", "--samples", 3])
    for case in range(max(1, CASES // 3)):
        path = tmp_path / f"k{case}.h5"
        path.write_bytes(flip_bytes(original, rng))
        out = tmp_path / f"s{case}.h5"
        for args in (["info", path], ["verify", path, "--samples", 3], ["solve", path, "--out", out, "--quiet", "--force"],
                     ["spectrum", path, "--top", 2, "--out", out, "--quiet", "--force"]):
            run(args)
        path.unlink()


def test_mutated_job_files(seeds, tmp_path):
    rng = random.Random(SEED + 1)
    job = (seeds / "job.toml").read_text()
    lines = job.splitlines()
    for case in range(CASES):
        mutated = list(lines)
        for _ in range(rng.randint(1, 3)):
            i = rng.randrange(len(mutated))
            if "=" in mutated[i] and rng.random() < 0.7:
                key = mutated[i].split("=")[0].strip()
                value = rng.choice(WEIRD_NUMBERS + ['"x"', '"relu"', "[1, 2]", "true", '"../nope"', "{a = 1}", '""'])
                mutated[i] = f"{key} = {value}"
            else:
                mutated[i] = mutate(mutated[i].encode(), rng).decode("utf-8", "replace")
        text = "\n".join(mutated).replace(str(seeds / "job.h5"), str(tmp_path / f"j{case}.h5"))
        path = tmp_path / f"job{case}.toml"
        path.write_text(text)
        command = rng.choice(["build", "plan"])
        args = [command, path] + (["--ranks", rng.choice(["1", "2", "4096", "0", "-3", "1e9"])] if command == "plan" else ["--quiet"])
        run(args)


@pytest.mark.parametrize("seed_file", ["k.h5", "kt.h5"])
def test_mutated_kernel_files(seeds, tmp_path, seed_file):
    rng = random.Random(SEED + 2)
    original = (seeds / seed_file).read_bytes()
    for case in range(max(1, CASES // 3)):
        path = tmp_path / f"k{case}.h5"
        data = bytearray(original)
        for _ in range(rng.randint(1, 8)):
            i = rng.randrange(len(data))
            data[i] = rng.randrange(256)
        if rng.random() < 0.2:
            data = data[:rng.randrange(len(data))]
        path.write_bytes(bytes(data))
        out = tmp_path / f"s{case}.h5"
        for args in (["info", path], ["verify", path, "--samples", 3], ["solve", path, "--out", out, "--quiet", "--force"],
                     ["dynamics", path, "--times", "1,inf", "--ridge", "1e-3", "--out", out, "--quiet", "--force"],
                     ["spectrum", path, "--top", 2, "--out", out, "--quiet", "--force"]):
            run(args)


def test_random_flag_values(seeds, tmp_path):
    rng = random.Random(SEED + 3)
    k = seeds / "k.h5"
    commands = {
        "build": (["--train", seeds / "x.npy", "--out", tmp_path / "b.h5", "--force", "--quiet"],
                  ["--tile", "--depth", "--W-std", "--b-std", "--train-limit", "--threads", "--input-shape", "--slope", "--width"]),
        "solve": ([k, "--out", tmp_path / "s.h5", "--force", "--quiet"],
                  ["--ridge", "--tol", "--max-iter", "--rank", "--memory-budget", "--checkpoint-every"]),
        "dynamics": ([k, "--out", tmp_path / "d.h5", "--force", "--quiet"],
                     ["--times", "--learning-rate", "--ridge", "--tol", "--max-iter", "--memory-budget"]),
        "spectrum": ([k, "--out", tmp_path / "p.h5", "--force", "--quiet"],
                     ["--top", "--block", "--tol", "--max-iter", "--learning-rate", "--seed", "--memory-budget"]),
    }
    for case in range(CASES):
        command = rng.choice(sorted(commands))
        base, flags = commands[command]
        args = [command, *base]
        if command == "dynamics":
            args += ["--times", "1,inf"]
        for flag in rng.sample(flags, rng.randint(1, 2)):
            args.append(f"{flag}={rng.choice(WEIRD_NUMBERS + ['log:1:10:3', '1,2,3', '3,2', '4GiB', '1e30GiB'])}")
        run(args, timeout=60)
