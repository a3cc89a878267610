"""Run by `make wheel-check` inside a clean virtual environment holding only the wheel.

It fails on a packaging mistake: a missing kernel, stub or marker file, or an extension that
does not import.
"""

from __future__ import annotations

import pathlib

import numpy as np

import thrifty
from thrifty import _cuda, collective, steps

root = pathlib.Path(thrifty.__file__).parent
missing = [name for name in ("py.typed", "_native.pyi") if not (root / name).is_file()]
assert not missing, f"missing from the wheel: {missing}"
assert "steps" in _cuda.kernel_names(), f"no CUDA kernels in {_cuda.KERNEL_DIR}"
assert _cuda.kernel_source("steps").strip(), "steps.cu is empty"
assert steps.optimal_path(np.triu(np.ones((5, 5)), 1), 2).tolist()[0] == 0
coordinator = collective.Coordinator(secret="wheel")
with collective.Communicator(coordinator, secret="wheel", bind_host="127.0.0.1") as comm:
    comm.connect()
    comm.update_topology()
    x = np.arange(4, dtype=np.float32)
    comm.all_reduce(x, quantize="int8")
    assert comm.world_size == 1
    assert x.tolist() == [0.0, 1.0, 2.0, 3.0]
coordinator.close()
print(f"wheel OK: thrifty {thrifty.__version__} at {root}")
