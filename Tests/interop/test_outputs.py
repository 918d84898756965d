"""An output that is one of the command's inputs is refused, whatever path names it (a link,
`..`, the HDF5 file of a `file.h5:/dataset` source), and the input is left as it was."""
import hashlib
import os

import numpy as np

from conftest import ntkgram


def digest(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def test_outputs_that_are_inputs_are_refused(tmp_path):
    rng = np.random.default_rng(1)
    np.save(tmp_path / "x.npy", rng.standard_normal((30, 5)))
    np.save(tmp_path / "y.npy", rng.standard_normal((30, 2)))
    ntkgram("build", "--train", tmp_path / "x.npy", "--test", tmp_path / "x.npy", "--out", tmp_path / "k.h5", "--quiet")
    ntkgram("solve", tmp_path / "k.h5", "--targets", tmp_path / "y.npy", "--out", tmp_path / "s.h5", "--quiet")
    os.mkdir(tmp_path / "sub")
    os.symlink(tmp_path / "x.npy", tmp_path / "link.npy")
    before = {p: digest(tmp_path / p) for p in ("x.npy", "y.npy", "k.h5", "s.h5")}
    cases = [
        ["build", "--train", tmp_path / "x.npy", "--out", tmp_path / "x.npy", "--force"],
        ["build", "--train", tmp_path / "x.npy", "--out", tmp_path / "sub" / ".." / "link.npy", "--force"],
        ["build", "--train", f"{tmp_path / 'k.h5'}:/train/ntk", "--out", tmp_path / "k.h5", "--force"],
        ["build", "--train", tmp_path / "x.npy", "--out", tmp_path / "o.h5", "--checkpoints", tmp_path / "x.npy"],
        ["build", "--against", tmp_path / "k.h5", "--test", tmp_path / "x.npy", "--out", tmp_path / "k.h5", "--force"],
        ["solve", tmp_path / "k.h5", "--out", tmp_path / "k.h5", "--force"],
        ["solve", tmp_path / "k.h5", "--targets", tmp_path / "y.npy", "--out", tmp_path / "y.npy", "--force"],
        ["predict", tmp_path / "s.h5", tmp_path / "k.h5", "--out", tmp_path / "s.h5", "--force"],
        ["predict", tmp_path / "s.h5", tmp_path / "k.h5", "--out", tmp_path / "k.h5", "--force"],
    ]
    for args in cases:
        r = ntkgram(*args, check=False)
        assert r.returncode != 0, args
        assert len(r.stderr.strip().splitlines()) == 1 and "refusing" in r.stderr, (args, r.stderr)
    assert {p: digest(tmp_path / p) for p in before} == before
