"""CUDA kernels from ``cuda/*.cu``, compiled on first use through CuPy and cached.

The ``.cu`` files ship inside the wheel (``thrifty/_kernels``). Compilation goes through NVRTC,
which needs no GPU: :func:`compile_ptx` is what the test suite uses to prove every kernel
builds on a machine without one.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

from thrifty._extras import available, require
from thrifty.errors import DeviceError, InternalError

KERNEL_DIR = Path(__file__).resolve().parent / "_kernels"

# Options shared by the CuPy path and the NVRTC check, so both compile the same program.
NVRTC_OPTIONS = ("--std=c++17",)


def kernel_names() -> list[str]:
    """The kernel files that ship with thrifty, without the ``.cu`` suffix."""
    return sorted(p.stem for p in KERNEL_DIR.glob("*.cu"))


def kernel_source(name: str) -> str:
    path = KERNEL_DIR / f"{name}.cu"
    if not path.is_file():
        raise InternalError(f"CUDA kernel file {path} is missing from the installation")
    return path.read_text()


def compile_ptx(name: str, *, arch: str = "compute_90") -> bytes:
    """Compile ``cuda/<name>.cu`` to PTX with NVRTC. Needs the CUDA extra, not a GPU.

    Raises :class:`InternalError` with NVRTC's log when the kernel does not compile.
    """
    nvrtc = require("cuda.bindings.nvrtc")
    source = kernel_source(name).encode()

    def check(result: Any, what: str) -> Any:
        status, *rest = result
        if status != nvrtc.nvrtcResult.NVRTC_SUCCESS:
            raise InternalError(f"NVRTC {what} failed for {name}.cu: {status}")
        return rest[0] if len(rest) == 1 else rest

    program = check(nvrtc.nvrtcCreateProgram(source, f"{name}.cu".encode(), 0, [], []), "create")
    options = [o.encode() for o in (*NVRTC_OPTIONS, f"--gpu-architecture={arch}")]
    try:
        (status,) = nvrtc.nvrtcCompileProgram(program, len(options), options)
        if status != nvrtc.nvrtcResult.NVRTC_SUCCESS:
            size = check(nvrtc.nvrtcGetProgramLogSize(program), "log size")
            log = b" " * size
            check(nvrtc.nvrtcGetProgramLog(program, log), "log")
            raise InternalError(f"{name}.cu does not compile for {arch}:\n{log.decode()}")
        size = check(nvrtc.nvrtcGetPTXSize(program), "PTX size")
        ptx = b" " * size
        check(nvrtc.nvrtcGetPTX(program, ptx), "PTX")
        return bytes(ptx)
    finally:
        nvrtc.nvrtcDestroyProgram(program)


def device_available() -> bool:
    """Whether CuPy is installed and sees at least one CUDA device."""
    if not available("cupy"):
        return False
    cupy = require("cupy")
    try:
        return int(cupy.cuda.runtime.getDeviceCount()) > 0
    except Exception:  # CuPy raises its own runtime errors when no driver is present
        return False


@cache
def _module(name: str) -> Any:
    cupy = require("cupy")
    return cupy.RawModule(code=kernel_source(name), options=NVRTC_OPTIONS)


def function(name: str, kernel: str) -> Any:
    """The compiled ``kernel`` from ``cuda/<name>.cu`` as a ``cupy.RawKernel``."""
    if not device_available():
        raise DeviceError(
            f"the CUDA kernel {name}.{kernel} needs a CUDA device, and CuPy sees none"
        )
    return _module(name).get_function(kernel)
