"""Shared helpers: the ntkgram binary, neural-tangents networks in float64."""
import contextlib
import errno
import os
import subprocess

import jax

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_platform_name", "cpu")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from neural_tangents import stax  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def binary():
    path = os.environ.get("NTKGRAM_BIN", os.path.join(ROOT, ".build", "release", "ntkgram"))
    if not os.path.exists(path):
        raise RuntimeError(f"ntkgram binary not found at {path}: run scripts/build-release.sh")
    return path


def ntkgram(*args, check=True, timeout=None):
    """Runs the binary; `timeout` (seconds) guards a test against a runaway, it times nothing."""
    r = subprocess.run([binary(), *map(str, args)], capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise AssertionError(f"ntkgram {' '.join(map(str, args))} failed: {r.stderr}")
    return r


@contextlib.contextmanager
def tmpfs(folder, size):
    """A filesystem of a fixed size at `folder` (tmpfs without huge pages, so each record takes
    one page; the tests run as root), unmounted afterwards."""
    folder.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},huge=never", "tmpfs", str(folder)], check=True)
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


def fill_up(folder):
    """Writes a file until the filesystem is full, to its last byte. Unbuffered: a buffered file
    would raise ENOSPC again when closed, flushing what its last write left behind."""
    fd = os.open(folder / "fill", os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        block = 65536
        while block > 0:
            try:
                if os.write(fd, b"\0" * block) < block:
                    block //= 2
            except OSError as e:
                if e.errno != errno.ENOSPC:
                    raise
                block //= 2
    finally:
        os.close(fd)


def checksum64(data: bytes) -> int:
    """The file's tile checksum, from its description in docs/file-format.md (FNV-1a over
    little-endian 8-byte words, the tail and length, then a final mix)."""
    mask = (1 << 64) - 1
    h = 0xCBF29CE484222325
    prime = 0x00000100000001B3
    words = len(data) // 8
    for w in np.frombuffer(data[: 8 * words], dtype="<u8").tolist():
        h = ((h ^ w) * prime) & mask
    tail = int.from_bytes(data[8 * words:], "little")
    h = ((h ^ tail ^ ((len(data) << 56) & mask)) * prime) & mask
    h ^= h >> 33
    h = (h * 0xFF51AFD7ED558CCD) & mask
    h ^= h >> 33
    return h


def nt_kernel_fn(depth, activation, W_std, b_std, parameterization="ntk", width=512):
    act = {"relu": stax.Relu(), "erf": stax.Erf(), "abs": stax.Abs(), "identity": stax.Identity()}[activation]
    layers = []
    for _ in range(depth):
        layers += [stax.Dense(width, W_std, b_std, parameterization=parameterization), act]
    _, _, kernel_fn = stax.serial(*layers, stax.Dense(1, W_std, b_std, parameterization=parameterization))
    return jax.jit(kernel_fn, static_argnames="get")


def nt_layer_list(layers):
    """A jit-compiled neural-tangents kernel_fn of an ntkgram layer list (the `network` JSON)."""
    out = []
    for layer in layers:
        t = layer["type"]
        b = layer.get("b_std", None)
        b = None if b == "none" else b
        p = layer.get("parameterization", "ntk")
        if t == "dense":
            out.append(stax.Dense(layer["width"], layer.get("W_std", 1.0), b, parameterization=p))
        elif t == "conv":
            out.append(stax.Conv(layer["width"], tuple(layer["filter"]), strides=tuple(layer.get("strides", [1, 1])),
                                 padding=layer.get("padding", "VALID"), W_std=layer.get("W_std", 1.0), b_std=b, parameterization=p))
        elif t == "avg_pool":
            out.append(stax.AvgPool(tuple(layer["window"]), strides=tuple(layer.get("strides", [1, 1])),
                                    padding=layer.get("padding", "VALID"), normalize_edges=layer.get("normalize_edges", False)))
        elif t == "global_avg_pool":
            out.append(stax.GlobalAvgPool())
        elif t == "flatten":
            out.append(stax.Flatten())
        elif t == "leaky_relu":
            out.append(stax.LeakyRelu(layer["slope"]))
        else:
            out.append({"relu": stax.Relu(), "erf": stax.Erf(), "abs": stax.Abs(), "identity": stax.Identity()}[t])
    return jax.jit(stax.serial(*out)[2], static_argnames="get")


def relative_error(ours, ref):
    """|a − b| / (|b| + 0.01·max|K|), the project's measure."""
    return np.abs(ours - ref) / (np.abs(ref) + 0.01 * np.abs(ref).max())


@pytest.fixture
def workdir(tmp_path):
    return tmp_path
