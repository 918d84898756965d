"""The solve's memory per rank, measured (metrics.json: the kernel file's mapped pages and the
peak resident set, each on the rank where it is largest), against what `ntkgram plan` says for
the same counts, rank count, budget and kernel layout."""
import json
import re
import subprocess

import numpy as np
import pytest

from conftest import binary, ntkgram

N, FEATURES = 6000, 40
# Tiles of 512 contiguous; tiled, chunks of 1024² float32 values, 4 MiB: a whole number of the
# page cache's largest folios (2 MiB), so that a chunk maps none of its neighbours' pages.
TILE = {"contiguous": 512, "tiles": 1024}


@pytest.fixture(scope="module")
def kernel(tmp_path_factory):
    """A float32 NTK of 6,000 random samples (144 MB) with 5 classes, contiguous (`auto` at this
    size) and tiled."""
    d = tmp_path_factory.mktemp("memory")
    rng = np.random.default_rng(5)
    x = rng.standard_normal((N, FEATURES))
    np.save(d / "x.npy", x)
    np.save(d / "y.npy", rng.integers(0, 5, N).astype(np.int64))
    ntkgram("build", "--train", d / "x.npy", "--train-labels", d / "y.npy", "--dtype", "float32", "--kernels", "ntk",
            "--tile", TILE["contiguous"], "--threads", 2, "--out", d / "contiguous.h5", "--quiet")
    ntkgram("build", "--train", d / "x.npy", "--train-labels", d / "y.npy", "--dtype", "float32", "--kernels", "ntk",
            "--tile", TILE["tiles"], "--threads", 2, "--layout", "tiles", "--out", d / "tiles.h5", "--quiet")
    return d


def mib(text, label):
    """The size printed after `label` in a plan line, in bytes."""
    m = re.search(re.escape(label) + r" ([0-9.]+) (GiB|MiB)", text)
    assert m, f"no '{label}' in: {text}"
    return float(m.group(1)) * (2**30 if m.group(2) == "GiB" else 2**20)


@pytest.mark.parametrize("layout", ["contiguous", "tiles"])
@pytest.mark.parametrize("ranks", [1, 2, 3])
def test_mapped_pages_and_peak_rss_are_what_plan_says(kernel, ranks, layout):
    budget, rank = "1GiB", 100
    tile = TILE[layout]
    plan = ntkgram("plan", "--train-count", N, "--features", FEATURES, "--tile", tile, "--dtype", "float32",
                   "--kernels", "ntk", "--ranks", ranks, "--memory-budget", budget, "--rank", rank, "--columns", 5,
                   *(["--layout", layout] if layout == "tiles" else [])).stdout
    line = next(l for l in plan.splitlines() if l.startswith("solve"))
    planned_mapped, planned_peak = mib(line, "mapped pages"), mib(line, "peak RSS per rank about")
    metrics = kernel / f"m{ranks}-{layout}.json"
    r = subprocess.run(["mpirun", "--allow-run-as-root", "--oversubscribe", "-np", str(ranks), binary(), "solve", kernel / f"{layout}.h5",
                        "--rank", str(rank), "--memory-budget", budget, "--tol", "1e-2", "--metrics", metrics,
                        "--out", kernel / f"s{ranks}.h5", "--force", "--quiet"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    m = json.loads(metrics.read_text())
    assert m["streamed_tiles"] == 0 and m["cached_tiles"] > 0
    tiles_per_rank = N * N * 4 / 2 / ranks
    if layout == "contiguous":
        # Every tile is mapped, and the kernel maps the pages around them too: more than the tiles.
        assert m["mapped_kernel_bytes"] > 1.3 * tiles_per_rank
    else:
        # A tile is its chunk, 4 MiB on a 2 MiB boundary: its pages and no others. The upper
        # triangle's chunks (diagonal ones whole, edge ones padded) shared out, with one chunk
        # of imbalance.
        across = -(-N // tile)
        chunks_per_rank = across * (across + 1) / 2 * tile * tile * 4 / ranks
        assert 0.8 * chunks_per_rank <= m["mapped_kernel_bytes"] <= chunks_per_rank + tile * tile * 4
    assert abs(m["mapped_kernel_bytes"] / planned_mapped - 1) <= 0.15, (m["mapped_kernel_bytes"], planned_mapped, line)
    assert abs(m["peak_rss_bytes"] / planned_peak - 1) <= 0.15, (m["peak_rss_bytes"], planned_peak, line)
