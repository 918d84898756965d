"""Files written by h5py: ntkgram reads their datasets and attributes."""
import h5py
import numpy as np

from conftest import ntkgram


def test_info_and_dataset_source_from_h5py(tmp_path):
    rng = np.random.default_rng(9)
    with h5py.File(tmp_path / "data.h5", "w") as f:
        f["/samples/x"] = rng.standard_normal((40, 6)).astype(np.float32)
        f["/samples/y"] = rng.integers(0, 3, 40)
        f.attrs["note"] = "written by h5py"       # variable-length UTF-8 string
        f.attrs["count"] = 40
    r = ntkgram("info", tmp_path / "data.h5")
    assert "@note = written by h5py" in r.stdout and "@count = 40" in r.stdout
    ntkgram("build", "--train", f"{tmp_path / 'data.h5'}:/samples/x", "--train-labels", f"{tmp_path / 'data.h5'}:/samples/y",
            "--dtype", "float64", "--out", tmp_path / "k.h5", "--quiet")
    with h5py.File(tmp_path / "k.h5") as k, h5py.File(tmp_path / "data.h5") as d:
        assert k["/train/ntk"].shape == (40, 40)
        assert np.array_equal(k["/train/labels"][...], d["/samples/y"][...])
