"""neural-tangents' empirical NTK of a stax network on Fashion-MNIST images, timed (jit, float64).

Usage: empirical_nt.py N DEPTH WIDTH OUTPUTS IMPLEMENTATION [BATCH]
Prints one JSON line: seconds of the first call (compile + run) and of the second (run only),
entries per second of the second, and whether it ran (an out-of-memory or failure is reported,
not hidden). IMPLEMENTATION is neural-tangents' NtkImplementation value: 1 Jacobian contraction,
2 NTK-vector products, 3 structured derivatives. BATCH > 0 wraps the kernel in nt.batch.
"""
import gzip
import json
import sys
import time

import jax

jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import neural_tangents as nt  # noqa: E402
from neural_tangents import stax  # noqa: E402

n, depth, width, outputs, implementation = map(int, sys.argv[1:6])
batch = int(sys.argv[6]) if len(sys.argv) > 6 else 0
with gzip.open("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz") as f:
    x = np.frombuffer(f.read(), dtype=np.uint8)[16:16 + n * 784].reshape(n, 784).astype(np.float64) / 255.0
layers = []
for _ in range(depth):
    layers += [stax.Dense(width, W_std=np.sqrt(2), b_std=0.1), stax.Relu()]
init_fn, apply_fn, _ = stax.serial(*layers, stax.Dense(outputs, W_std=np.sqrt(2), b_std=0.1))
_, params = init_fn(jax.random.PRNGKey(0), (-1, 784))
fn = nt.empirical_ntk_fn(apply_fn, trace_axes=(-1,), implementation=implementation)
if batch:
    fn = nt.batch(fn, batch_size=batch, store_on_device=False)
else:
    fn = jax.jit(fn)
x = jnp.asarray(x)
result = {"n": n, "depth": depth, "width": width, "outputs": outputs, "implementation": implementation, "batch": batch,
          "jax": jax.__version__, "neural_tangents": nt.__version__}
try:
    t = time.perf_counter()
    np.asarray(fn(x, None, params))
    result["first_s"] = time.perf_counter() - t
    t = time.perf_counter()
    k = np.asarray(fn(x, None, params))
    result["second_s"] = time.perf_counter() - t
    result["entries_per_s"] = n * n / result["second_s"]
    result["ok"] = True
    result["trace"] = float(np.trace(k))
except Exception as e:  # noqa: BLE001 - reported, not hidden
    result["ok"] = False
    result["error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"
print(json.dumps(result))
