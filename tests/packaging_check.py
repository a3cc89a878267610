"""Run by `make wheel-check` inside a clean virtual environment holding only the wheel.

It fails on a packaging mistake: a missing kernel, stub or marker file, an extension that
does not import, or a demo, workload, benchmark driver or test harness shipped in the wheel
(they live in the source repository's examples/, benches/ and tests/). Without a checkout,
``thrifty demo`` must exit with status 2 and say how to get one.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import io
import os
import pathlib
import re
import tempfile

import numpy as np

import thrifty
from thrifty import _cuda, cli, collective, steps

root = pathlib.Path(thrifty.__file__).parent
missing = [name for name in ("py.typed", "_native.pyi") if not (root / name).is_file()]
assert not missing, f"missing from the wheel: {missing}"

# Every file of the distribution, not only the package: a stray top-level folder counts too.
source_only = re.compile(r"(^|_)(demos?|workloads?|bench(es)?|chaos|examples?)(_|$)")
shipped = [str(f) for f in importlib.metadata.files("thrifty") or [] if f.suffix == ".py"]
assert shipped, "the wheel's RECORD lists no Python file"
stray = [
    f
    for f in shipped
    if any(source_only.search(part) for part in pathlib.PurePath(f).with_suffix("").parts)
]
assert not stray, f"demos, workloads, benchmarks or harnesses in the wheel: {stray}"

with tempfile.TemporaryDirectory() as elsewhere:
    here = os.getcwd()
    os.chdir(elsewhere)  # no checkout in it or above it
    os.environ.pop("THRIFTY_EXAMPLES", None)
    error = io.StringIO()
    try:
        with contextlib.redirect_stderr(error):
            status = cli.main(["demo", "steps", "--quick"])
    finally:
        os.chdir(here)
assert status == 2, f"thrifty demo without a checkout exited {status}"
assert "clone the repository" in error.getvalue(), error.getvalue()
assert "make demo" in error.getvalue(), error.getvalue()
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
