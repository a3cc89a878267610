# Stub of the Rust extension module; `python -m mypy.stubtest thrifty._native` keeps it honest.
from typing import Any, final

import numpy as np
from typing_extensions import Self

__all__ = [
    "Communicator",
    "Coordinator",
    "PendingOp",
    "__version__",
    "hamming_cdist",
    "hamming_kernel",
    "hamming_pack",
    "hamming_radius",
    "hamming_topk",
    "is_monge",
    "jump_errors",
    "optimal_path",
    "optimal_paths",
    "pairing_groups",
    "state_hash",
    "text_to_pattern",
    "text_to_patterns",
]

__version__: str

_Path = tuple[np.ndarray[Any, np.dtype[np.int64]], float]

def optimal_path(
    cost: np.ndarray[Any, np.dtype[np.float64]],
    k: int,
    future_weight: float = 1.0,
    strategy: str = "auto",
) -> _Path: ...
def optimal_paths(
    cost: np.ndarray[Any, np.dtype[np.float64]],
    k_max: int,
    future_weight: float = 1.0,
    strategy: str = "auto",
) -> list[_Path]: ...
def is_monge(cost: np.ndarray[Any, np.dtype[np.float64]]) -> bool: ...
def jump_errors(
    starts: np.ndarray[Any, Any],
    velocities: np.ndarray[Any, Any],
    targets: np.ndarray[Any, Any],
    times: np.ndarray[Any, np.dtype[np.float64]],
    metric: str = "l2",
) -> np.ndarray[Any, np.dtype[np.float64]]: ...

# thrifty.collective
_Stats = tuple[int, int, float]

@final
class Coordinator:
    def __new__(
        cls,
        bind: str,
        secret: str | None = None,
        heartbeat_interval_s: float = 0.5,
        heartbeat_timeout_s: float = 5.0,
        handshake_timeout_s: float = 5.0,
        fellows: list[str] = ...,
    ) -> Self: ...
    def address(self) -> str: ...
    def close(self) -> None: ...
    def snapshot(self) -> dict[str, Any]: ...

@final
class PendingOp:
    def wait(self) -> _Stats: ...
    def done(self) -> bool: ...
    @property
    def array(self) -> Any: ...

@final
class Communicator:
    def __new__(
        cls,
        coordinator: str,
        secret: str | None = None,
        connections: int = 4,
        timeout_s: float = 60.0,
        bind_host: str = ...,
        bind_port: int = 0,
        advertise_host: str | None = None,
    ) -> Self: ...
    def connect(self) -> None: ...
    def update_topology(self) -> None: ...
    @property
    def rank(self) -> int | None: ...
    @property
    def world_size(self) -> int: ...
    @property
    def epoch(self) -> int: ...
    @property
    def id(self) -> int: ...
    def all_reduce(
        self,
        array: np.ndarray[Any, Any],
        dtype: str,
        op: str = "sum",
        quantize: str | None = None,
        block: int = 64,
    ) -> _Stats: ...
    def all_reduce_async(
        self,
        array: np.ndarray[Any, Any],
        dtype: str,
        op: str = "sum",
        quantize: str | None = None,
        block: int = 64,
    ) -> PendingOp: ...
    def broadcast(self, array: np.ndarray[Any, Any], dtype: str, root: int) -> _Stats: ...
    def all_gather(
        self, array: np.ndarray[Any, Any], dtype: str, out: np.ndarray[Any, Any]
    ) -> _Stats: ...
    def barrier(self) -> None: ...
    def all_gather_scalars(self, values: list[float]) -> list[list[float]]: ...
    def pair_average(
        self, array: np.ndarray[Any, Any], dtype: str, step: int, group_size: int = 2
    ) -> tuple[list[int], _Stats]: ...
    def sync_state(
        self, arrays: list[tuple[str, np.ndarray[Any, Any], str]], revision: int
    ) -> dict[str, Any]: ...
    def close(self) -> None: ...

def pairing_groups(world_size: int, step: int, group_size: int = 2) -> list[list[int]]: ...
def state_hash(array: np.ndarray[Any, Any], dtype: str) -> str: ...

# thrifty.hamming
_Codes = np.ndarray[Any, np.dtype[np.uint8]]

def text_to_pattern(
    text: np.ndarray[Any, np.dtype[np.uint32]],
    pattern: np.ndarray[Any, np.dtype[np.uint32]],
    method: str = "auto",
    k: int | None = None,
    eps: float | None = None,
    seed: int = 0,
) -> np.ndarray[Any, np.dtype[np.int32]]: ...
def text_to_patterns(
    text: np.ndarray[Any, np.dtype[np.uint32]],
    patterns: list[np.ndarray[Any, np.dtype[np.uint32]]],
    method: str = "auto",
    k: int | None = None,
    eps: float | None = None,
    seed: int = 0,
) -> list[np.ndarray[Any, np.dtype[np.int32]]]: ...
def hamming_pack(bits: np.ndarray[Any, np.dtype[np.uint8]]) -> _Codes: ...
def hamming_cdist(a: _Codes, b: _Codes) -> np.ndarray[Any, np.dtype[np.int32]]: ...
def hamming_topk(
    queries: _Codes, db: _Codes, k: int
) -> tuple[np.ndarray[Any, np.dtype[np.int32]], np.ndarray[Any, np.dtype[np.int64]]]: ...
def hamming_radius(
    queries: _Codes, db: _Codes, r: int
) -> tuple[
    np.ndarray[Any, np.dtype[np.int64]],
    np.ndarray[Any, np.dtype[np.int64]],
    np.ndarray[Any, np.dtype[np.int32]],
]: ...
def hamming_kernel() -> str: ...

__all__ += [
    "coreset_kmeans_sensitivities",
    "coreset_leverage_scores",
    "coreset_lewis_weights",
    "coreset_lp_regression",
    "coreset_lp_sensitivities",
    "coreset_root_leverage_scores",
]

_F64 = np.ndarray[Any, np.dtype[np.float64]]
_I64 = np.ndarray[Any, np.dtype[np.int64]]

def coreset_leverage_scores(
    a: _F64, method: str = "qr", seed: int = 0, eps: float = 0.5
) -> _F64: ...
def coreset_root_leverage_scores(a: _F64) -> _F64: ...
def coreset_lewis_weights(
    a: _F64, p: float, iters: int = 1000, tol: float = 1e-06
) -> tuple[_F64, float, int]: ...
def coreset_lp_sensitivities(a: _F64, p: float, iters: int = 1000, tol: float = 1e-06) -> _F64: ...
def coreset_kmeans_sensitivities(x: _F64, k: int, seed: int = 0) -> tuple[_F64, _I64, _I64]: ...
def coreset_lp_regression(
    a: _F64,
    b: _F64,
    p: float,
    weights: _F64 | None = None,
    iters: int = 100,
    tol: float = 1e-10,
) -> tuple[_F64, float, int]: ...

__all__ += ["CoresetAliasTable", "coreset_permutation", "coreset_sample"]

@final
class CoresetAliasTable:
    def __new__(cls, scores: np.ndarray[Any, np.dtype[np.float64]]) -> Self: ...
    def draw(self, m: int, seed: int = 0) -> np.ndarray[Any, np.dtype[np.int64]]: ...

def coreset_sample(
    scores: np.ndarray[Any, np.dtype[np.float64]],
    m: int,
    replace: bool = True,
    seed: int = 0,
) -> tuple[
    np.ndarray[Any, np.dtype[np.int64]],
    np.ndarray[Any, np.dtype[np.float64]],
    float | None,
]: ...
def coreset_permutation(
    n: int, seed: int = 0, salt: int = 0
) -> np.ndarray[Any, np.dtype[np.uint32]] | np.ndarray[Any, np.dtype[np.uint64]]: ...

# --- schedule: lgreco and small-gain ---
__all__ += ["schedule_lgreco", "schedule_small_gain_certificate"]

def schedule_lgreco(
    errors: np.ndarray[Any, np.dtype[np.float64]],
    sizes: np.ndarray[Any, np.dtype[np.float64]],
    budget: float,
    buckets: int | None = None,
) -> np.ndarray[Any, np.dtype[np.int64]]: ...
def schedule_small_gain_certificate(
    mu: np.ndarray[Any, np.dtype[np.float64]],
    coupling: np.ndarray[Any, np.dtype[np.float64]],
    lipschitz: np.ndarray[Any, np.dtype[np.float64]],
    per_block: bool,
) -> tuple[
    np.ndarray[Any, np.dtype[np.float64]],
    float,
    float,
    float,
    float,
    float,
    float,
    float,
    bool,
    str,
]: ...
