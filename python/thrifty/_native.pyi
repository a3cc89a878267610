# Stub of the Rust extension module; `python -m mypy.stubtest thrifty._native` keeps it honest.
from typing import Any, final

import numpy as np
from typing_extensions import Self

__all__ = [
    "DTYPES",
    "LEVERAGE_METHODS",
    "METRICS",
    "QUANTIZATIONS",
    "REDUCE_OPS",
    "STRATEGIES",
    "TEXT_METHODS",
    "Communicator",
    "Coordinator",
    "CoordinatorSnapshot",
    "CoresetAliasTable",
    "KmeansSensitivities",
    "LewisWeights",
    "OpStats",
    "PairAverage",
    "Path",
    "PendingOp",
    "RadiusHits",
    "RegressionFit",
    "Sample",
    "SmallGainCertificate",
    "SyncReport",
    "TopK",
    "__version__",
    "coreset_kmeans_sensitivities",
    "coreset_leverage_scores",
    "coreset_lewis_weights",
    "coreset_lp_regression",
    "coreset_lp_sensitivities",
    "coreset_permutation",
    "coreset_root_leverage_scores",
    "coreset_sample",
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
    "schedule_lgreco",
    "schedule_small_gain_certificate",
    "state_hash",
    "text_to_pattern",
    "text_to_patterns",
]

__version__: str

_F64 = np.ndarray[Any, np.dtype[np.float64]]
_I64 = np.ndarray[Any, np.dtype[np.int64]]
_I32 = np.ndarray[Any, np.dtype[np.int32]]
_U32 = np.ndarray[Any, np.dtype[np.uint32]]
_Codes = np.ndarray[Any, np.dtype[np.uint8]]

# The allowed names of each string option, in the core's order.
STRATEGIES: tuple[str, ...]
METRICS: tuple[str, ...]
DTYPES: tuple[str, ...]
REDUCE_OPS: tuple[str, ...]
QUANTIZATIONS: tuple[str, ...]
TEXT_METHODS: tuple[str, ...]
LEVERAGE_METHODS: tuple[str, ...]

# thrifty.steps
@final
class Path:
    @property
    def nodes(self) -> _I64: ...
    @property
    def cost(self) -> float: ...

def optimal_path(cost: _F64, k: int, future_weight: float = 1.0, strategy: str = ...) -> Path: ...
def optimal_paths(
    cost: _F64, k_max: int, future_weight: float = 1.0, strategy: str = ...
) -> list[Path]: ...
def is_monge(cost: _F64) -> bool: ...
def jump_errors(
    starts: np.ndarray[Any, Any],
    velocities: np.ndarray[Any, Any],
    targets: np.ndarray[Any, Any],
    times: _F64,
    metric: str = ...,
) -> _F64: ...

# thrifty.collective
@final
class OpStats:
    @property
    def bytes_sent(self) -> int: ...
    @property
    def bytes_received(self) -> int: ...
    @property
    def seconds(self) -> float: ...

@final
class CoordinatorSnapshot:
    @property
    def epoch(self) -> int: ...
    @property
    def members(self) -> list[int]: ...
    @property
    def pending(self) -> list[int]: ...
    @property
    def broken(self) -> str | None: ...
    @property
    def forming(self) -> int | None: ...
    @property
    def asked(self) -> list[int]: ...

@final
class SyncReport:
    @property
    def revision(self) -> int: ...
    @property
    def fetched(self) -> list[str]: ...
    @property
    def bytes_received(self) -> int: ...
    @property
    def bytes_sent(self) -> int: ...
    @property
    def sources(self) -> list[tuple[str, int]]: ...
    @property
    def state_hash(self) -> str: ...
    @property
    def peers_out_of_date(self) -> int: ...
    @property
    def world_size(self) -> int: ...

@final
class PairAverage:
    @property
    def group(self) -> list[int]: ...
    @property
    def stats(self) -> OpStats: ...

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
    def snapshot(self) -> CoordinatorSnapshot: ...

@final
class PendingOp:
    def wait(self) -> OpStats: ...
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
        shared_memory: bool = False,
    ) -> Self: ...
    def connect(self) -> None: ...
    def update_topology(self) -> None: ...
    def shared_memory_links(self) -> int: ...
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
        op: str = ...,
        quantize: str | None = None,
        block: int = 64,
    ) -> OpStats: ...
    def all_reduce_async(
        self,
        array: np.ndarray[Any, Any],
        dtype: str,
        op: str = ...,
        quantize: str | None = None,
        block: int = 64,
    ) -> PendingOp: ...
    def broadcast(self, array: np.ndarray[Any, Any], dtype: str, root: int) -> OpStats: ...
    def all_gather(
        self, array: np.ndarray[Any, Any], dtype: str, out: np.ndarray[Any, Any]
    ) -> OpStats: ...
    def barrier(self) -> None: ...
    def all_gather_scalars(self, values: list[float]) -> list[list[float]]: ...
    def pair_average(
        self, array: np.ndarray[Any, Any], dtype: str, step: int, group_size: int = 2
    ) -> PairAverage: ...
    def sync_state(
        self, arrays: list[tuple[str, np.ndarray[Any, Any], str]], revision: int
    ) -> SyncReport: ...
    def close(self) -> None: ...

def pairing_groups(world_size: int, step: int, group_size: int = 2) -> list[list[int]]: ...
def state_hash(array: np.ndarray[Any, Any], dtype: str) -> str: ...

# thrifty.hamming
@final
class TopK:
    @property
    def distances(self) -> _I32: ...
    @property
    def indices(self) -> _I64: ...

@final
class RadiusHits:
    @property
    def offsets(self) -> _I64: ...
    @property
    def indices(self) -> _I64: ...
    @property
    def distances(self) -> _I32: ...

def text_to_pattern(
    text: _U32,
    pattern: _U32,
    method: str = ...,
    k: int | None = None,
    eps: float | None = None,
    seed: int = 0,
) -> _I32: ...
def text_to_patterns(
    text: _U32,
    patterns: list[_U32],
    method: str = ...,
    k: int | None = None,
    eps: float | None = None,
    seed: int = 0,
) -> list[_I32]: ...
def hamming_pack(bits: _Codes) -> _Codes: ...
def hamming_cdist(a: _Codes, b: _Codes) -> _I32: ...
def hamming_topk(queries: _Codes, db: _Codes, k: int) -> TopK: ...
def hamming_radius(queries: _Codes, db: _Codes, r: int) -> RadiusHits: ...
def hamming_kernel() -> str: ...

# thrifty.coreset
@final
class LewisWeights:
    @property
    def weights(self) -> _F64: ...
    @property
    def residual(self) -> float: ...
    @property
    def iterations(self) -> int: ...

@final
class KmeansSensitivities:
    @property
    def sensitivities(self) -> _F64: ...
    @property
    def seeds(self) -> _I64: ...
    @property
    def assignment(self) -> _I64: ...

@final
class RegressionFit:
    @property
    def x(self) -> _F64: ...
    @property
    def cost(self) -> float: ...
    @property
    def iterations(self) -> int: ...

@final
class Sample:
    @property
    def indices(self) -> _I64: ...
    @property
    def weights(self) -> _F64: ...
    @property
    def threshold(self) -> float | None: ...

def coreset_leverage_scores(
    a: _F64, method: str = ..., seed: int = 0, eps: float = 0.5
) -> _F64: ...
def coreset_root_leverage_scores(a: _F64) -> _F64: ...
def coreset_lewis_weights(
    a: _F64, p: float, iters: int = 1000, tol: float = 1e-06
) -> LewisWeights: ...
def coreset_lp_sensitivities(a: _F64, p: float, iters: int = 1000, tol: float = 1e-06) -> _F64: ...
def coreset_kmeans_sensitivities(x: _F64, k: int, seed: int = 0) -> KmeansSensitivities: ...
def coreset_lp_regression(
    a: _F64,
    b: _F64,
    p: float,
    weights: _F64 | None = None,
    iters: int = 100,
    tol: float = 1e-10,
) -> RegressionFit: ...

@final
class CoresetAliasTable:
    def __new__(cls, scores: _F64) -> Self: ...
    def draw(self, m: int, seed: int = 0) -> _I64: ...

def coreset_sample(scores: _F64, m: int, replace: bool = True, seed: int = 0) -> Sample: ...
def coreset_permutation(
    n: int, seed: int = 0, salt: int = 0
) -> np.ndarray[Any, np.dtype[np.uint32]] | np.ndarray[Any, np.dtype[np.uint64]]: ...

# thrifty.schedule
@final
class SmallGainCertificate:
    @property
    def weights(self) -> _F64: ...
    @property
    def margin(self) -> float: ...
    @property
    def lipschitz_weighted(self) -> float: ...
    @property
    def small_gain(self) -> float: ...
    @property
    def step(self) -> float: ...
    @property
    def rate(self) -> float: ...
    @property
    def max_step_euler(self) -> float: ...
    @property
    def max_step_rk4(self) -> float: ...
    @property
    def certified(self) -> bool: ...
    @property
    def reason(self) -> str: ...

def schedule_lgreco(
    errors: _F64, sizes: _F64, budget: float, buckets: int | None = None
) -> _I64: ...
def schedule_small_gain_certificate(
    mu: _F64, coupling: _F64, lipschitz: _F64, per_block: bool
) -> SmallGainCertificate: ...
