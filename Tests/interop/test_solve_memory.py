"""The solve's memory per rank, measured (metrics.json: the kernel file's mapped pages and the
peak resident set, each on the rank where it is largest), against what `ntkgram plan` says for
the same counts, rank count and budget."""
import json
import re
import subprocess

import numpy as np
import pytest

from conftest import binary, ntkgram

N, FEATURES, TILE = 6000, 40, 512


@pytest.fixture(scope="module")
def kernel(tmp_path_factory):
    """A float32 NTK of 6,000 random samples in tiles of 512 (144 MB), with 5 classes."""
    d = tmp_path_factory.mktemp("memory")
    rng = np.random.default_rng(5)
    x = rng.standard_normal((N, FEATURES))
    np.save(d / "x.npy", x)
    np.save(d / "y.npy", rng.integers(0, 5, N).astype(np.int64))
    ntkgram("build", "--train", d / "x.npy", "--train-labels", d / "y.npy", "--dtype", "float32", "--kernels", "ntk",
            "--tile", TILE, "--threads", 2, "--out", d / "k.h5", "--quiet")
    return d


def mib(text, label):
    """The size printed after `label` in a plan line, in bytes."""
    m = re.search(re.escape(label) + r" ([0-9.]+) (GiB|MiB)", text)
    assert m, f"no '{label}' in: {text}"
    return float(m.group(1)) * (2**30 if m.group(2) == "GiB" else 2**20)


@pytest.mark.parametrize("ranks", [1, 2, 3])
def test_mapped_pages_and_peak_rss_are_what_plan_says(kernel, ranks):
    budget, rank = "1GiB", 100
    plan = ntkgram("plan", "--train-count", N, "--features", FEATURES, "--tile", TILE, "--dtype", "float32",
                   "--kernels", "ntk", "--ranks", ranks, "--memory-budget", budget, "--rank", rank, "--columns", 5).stdout
    line = next(l for l in plan.splitlines() if l.startswith("solve"))
    planned_mapped, planned_peak = mib(line, "mapped pages"), mib(line, "peak RSS per rank about")
    metrics = kernel / f"m{ranks}.json"
    r = subprocess.run(["mpirun", "--allow-run-as-root", "--oversubscribe", "-np", str(ranks), binary(), "solve", kernel / "k.h5",
                        "--rank", str(rank), "--memory-budget", budget, "--tol", "1e-2", "--metrics", metrics,
                        "--out", kernel / f"s{ranks}.h5", "--force", "--quiet"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    m = json.loads(metrics.read_text())
    assert m["streamed_tiles"] == 0 and m["cached_tiles"] > 0
    # Every tile is mapped, and the kernel maps the pages around them too: more than the tiles.
    tiles_per_rank = N * N * 4 / 2 / ranks
    assert m["mapped_kernel_bytes"] > tiles_per_rank
    assert abs(m["mapped_kernel_bytes"] / planned_mapped - 1) <= 0.15, (m["mapped_kernel_bytes"], planned_mapped, line)
    assert abs(m["peak_rss_bytes"] / planned_peak - 1) <= 0.15, (m["peak_rss_bytes"], planned_peak, line)
