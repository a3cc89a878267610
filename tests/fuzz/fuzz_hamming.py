"""Fuzz entries of thrifty.hamming: text distances, packed codes, search and the index."""

from __future__ import annotations

import os
import tempfile
from typing import Any

import fuzz_references as ref
import numpy as np
from fuzz_core import Case, Mismatch, entry, expect
from fuzz_values import (
    POWERS_OF_TWO,
    chance,
    choice,
    integer,
    pick,
    real,
    relayout,
    seed,
    size,
    spoil,
)

from thrifty import hamming

METHODS = ("auto", "naive", "fft", "abrahamson", "kangaroo", "approx")
# Blocks of the naive and kangaroo scans, the RMQ and Abrahamson's scan, FFT lengths.
TEXT_BOUNDARIES = (*POWERS_OF_TWO, 32, 64, 4096, 4097)
# Code widths with their own popcount kernels (4, 8, 16 words), the byte-sum limit (31
# words), the blocked-width limit (4096 bytes) and the odd tails in between.
WIDTHS = (1, 2, 3, 7, 8, 9, 15, 16, 17, 24, 31, 32, 33, 63, 64, 65, 127, 128, 129, 248, 249)
# Database blocks (256), query blocks (32, 256).
ROWS = (1, 2, 31, 32, 33, 255, 256, 257)


def _symbols(rng: np.random.Generator, length: int, alphabet: int) -> np.ndarray[Any, Any]:
    if alphabet <= 0:
        return rng.integers(0, 2**32, size=length, dtype=np.uint64)
    return rng.integers(0, alphabet, size=length).astype(np.uint64)


def _as_input(rng: np.random.Generator, symbols: np.ndarray[Any, Any], kind: str) -> Any:
    if kind == "bytes":
        return bytes(symbols.astype(np.uint8).tolist())
    if kind == "str":
        return "".join(chr(int(s)) for s in symbols)
    dtypes = [np.uint32, np.int64, np.uint64]
    top = int(symbols.max()) if symbols.size else 0
    if top < 128:
        dtypes += [np.int8, np.uint8, np.int16]
    if top < 2**31:
        dtypes += [np.int32]
    value, _ = relayout(rng, symbols.astype(pick(rng, dtypes)))
    return value


def _text_case(rng: np.random.Generator) -> tuple[Any, Any, np.ndarray[Any, Any], list[Any]]:
    """(text input, text symbols, hostility labels) with patterns drawn by the caller."""
    kind = str(pick(rng, ("array", "array", "array", "bytes", "str")))
    alphabet = int(pick(rng, (1, 2, 4, 26, 255, 0 if kind == "array" else 255, 70000)))
    if kind == "bytes":
        alphabet = min(alphabet, 256) or 256
    if kind == "str":
        alphabet = min(alphabet, 0xD800) or 0xD800
    n = size(rng, 1, 5000 if chance(rng, 0.05) else 300, TEXT_BOUNDARIES)
    text = _symbols(rng, n, alphabet)
    return kind, alphabet, text, []


def _pattern(rng: np.random.Generator, text: np.ndarray[Any, Any], alphabet: int) -> Any:
    n = text.size
    m = size(rng, 1, n, (1, 2, n // 2, n // 2 + 1, n - 1, n, *POWERS_OF_TWO))
    if chance(rng, 0.5):
        start = int(rng.integers(0, n - m + 1))
        pattern = text[start : start + m].copy()
        flips = rng.random(m) < rng.random() * 0.3
        pattern[flips] = _symbols(rng, int(flips.sum()), alphabet)
        return pattern
    return _symbols(rng, m, alphabet)


def _options(rng: np.random.Generator, m_max: int) -> tuple[dict[str, Any], bool | None, str]:
    kwargs: dict[str, Any] = {}
    valid: bool | None = True
    labels = []
    method, ok, label = choice(rng, METHODS)
    kwargs["method"], labels = method, [label]
    valid = ok
    named = method if isinstance(method, str) else ""
    if chance(rng, 0.5) or named == "kangaroo":
        k, ok, label = integer(
            rng, 0, 2**32 - 1, typical=int(rng.integers(0, m_max + 2)), optional=True
        )
        kwargs["k"] = k
        labels.append("k " + label)
        valid = _and(valid, ok)
    if chance(rng, 0.3) or named == "approx":
        eps, ok, label = real(
            rng, 0.0, 1.0, low_open=True, high_open=True, typical=(0.05, 0.95), optional=True
        )
        kwargs["eps"] = eps
        labels.append("eps " + label)
        valid = _and(valid, ok)
    if chance(rng, 0.3):
        value, ok, label = seed(rng, optional=True)
        kwargs["seed"] = value
        labels.append("seed " + label)
        valid = _and(valid, ok)
    if named == "kangaroo" and kwargs.get("k") is None:
        valid = _and(valid, False)
    if named == "approx" and kwargs.get("eps") is None:
        valid = _and(valid, False)
    return kwargs, valid, ", ".join(labels)


def _and(a: bool | None, b: bool | None) -> bool | None:
    if a is False or b is False:
        return False
    if a is None or b is None:
        return None
    return True


def _check_distances(
    out: Any, exact: np.ndarray[Any, Any], kwargs: dict[str, Any], what: str
) -> None:
    expect(isinstance(out, np.ndarray), f"{what}: not an ndarray but {type(out).__name__}")
    expect(out.dtype == np.int32, f"{what}: dtype {out.dtype}, not int32")
    expect(out.shape == exact.shape, f"{what}: shape {out.shape}, expected {exact.shape}")
    k = kwargs.get("k")
    bounded = exact if k is None else np.minimum(exact, int(k) + 1)
    method = kwargs.get("method")
    if method == "approx" or (method == "auto" and kwargs.get("eps") is not None):
        expect((out >= 0).all() and (out <= bounded).all(), f"{what}: approx above exact")
        return
    bad = np.flatnonzero(out != bounded)
    expect(
        bad.size == 0,
        f"{what}: differs from the naive count at {bad[:5].tolist()}: "
        f"{out[bad[:5]].tolist()} vs {bounded[bad[:5]].tolist()}",
    )


@entry("hamming.text_to_pattern", fast_calls=150, weight=3.0)
def text_to_pattern(rng: np.random.Generator) -> Case:
    kind, alphabet, text, _ = _text_case(rng)
    pattern = _pattern(rng, text, alphabet)
    kwargs, valid, label = _options(rng, pattern.size)
    text_in, pattern_in = _as_input(rng, text, kind), _as_input(rng, pattern, kind)
    if chance(rng, 0.15):
        which = int(rng.integers(2))
        source = text if which == 0 else pattern
        spoiled, ok, why = spoil(rng, source.astype(np.int64), finite=True, kinds="iu")
        if which == 0:
            text_in = spoiled
        else:
            pattern_in = spoiled
        kind = "array"
        label += f"; {'text' if which == 0 else 'pattern'} {why}"
        valid = None if ok is not False or isinstance(spoiled, (str, bytes)) else False
    exact = ref.hamming_distances(text, pattern)
    if valid is not True:
        return Case(hamming.text_to_pattern, (text_in, pattern_in), kwargs, valid, label=label)

    def check(out: Any) -> None:
        _check_distances(out, exact, kwargs, "text_to_pattern")

    return Case(hamming.text_to_pattern, (text_in, pattern_in), kwargs, True, check, label)


@entry("hamming.text_to_patterns", fast_calls=60, weight=2.0)
def text_to_patterns(rng: np.random.Generator) -> Case:
    kind, alphabet, text, _ = _text_case(rng)
    count = size(rng, 0, 6)
    patterns = [_pattern(rng, text, alphabet) for _ in range(count)]
    kwargs, valid, label = _options(rng, max([p.size for p in patterns], default=1))
    inputs: Any = [_as_input(rng, p, kind) for p in patterns]
    text_in = _as_input(rng, text, kind)
    if kind == "array" and count and chance(rng, 0.2):
        m = patterns[0].size
        patterns = [p[:m] for p in patterns if p.size >= m]
        inputs = np.stack(patterns).astype(np.int64)
        label += "; patterns as a 2-D array"
    elif chance(rng, 0.1):
        inputs = pick(rng, ("abc", b"abc", None, 5, np.array([1, 2, 3])))
        label += f"; patterns {inputs!r}"
        valid = False if not isinstance(inputs, np.ndarray) else None
    exact = [ref.hamming_distances(text, p) for p in patterns]
    if valid is not True:
        return Case(hamming.text_to_patterns, (text_in, inputs), kwargs, valid, label=label)

    def check(out: Any) -> None:
        expect(isinstance(out, list), f"not a list but {type(out).__name__}")
        expect(len(out) == len(exact), f"{len(out)} results for {len(exact)} patterns")
        for i, (got, want) in enumerate(zip(out, exact, strict=True)):
            _check_distances(got, want, kwargs, f"pattern {i}")

    return Case(hamming.text_to_patterns, (text_in, inputs), kwargs, True, check, label)


def _bits(rng: np.random.Generator, rows: int, dims: int) -> np.ndarray[Any, Any]:
    density = float(pick(rng, (0.0, 0.1, 0.5, 0.9, 1.0)))
    return rng.random((rows, dims)) < density


def _codes(rng: np.random.Generator, rows: int, width: int) -> np.ndarray[Any, Any]:
    if chance(rng, 0.2):
        # Few distinct codes, so that ties and duplicates are common.
        palette = rng.integers(0, 256, size=(3, width), dtype=np.uint8)
        return palette[rng.integers(0, 3, size=rows)]
    return rng.integers(0, 256, size=(rows, width), dtype=np.uint8)


def _code_pair(rng: np.random.Generator) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    width = int(pick(rng, WIDTHS)) if chance(rng, 0.6) else size(rng, 1, 40)
    if chance(rng, 0.02):
        width = int(pick(rng, (4095, 4096, 4097)))
    budget = max(1, 200_000 // width)
    na = min(size(rng, 0, 40, ROWS), budget)
    nb = min(size(rng, 0, 300, ROWS), max(1, budget // max(na, 1)))
    if chance(rng, 0.02):
        na, nb, width = 3, int(pick(rng, (4095, 4096, 4097))), int(pick(rng, (1, 8, 9)))
    return _codes(rng, na, width), _codes(rng, nb, width)


def _code_input(
    rng: np.random.Generator, codes: np.ndarray[Any, Any]
) -> tuple[Any, bool | None, str]:
    if chance(rng, 0.12):
        bad, ok, label = spoil(rng, codes, finite=True, kinds="u")
        if isinstance(bad, np.ndarray) and bad.dtype != np.uint8:
            ok = False
        return bad, ok, label
    value, label = relayout(rng, codes, lists=False)
    return value, True, label


@entry("hamming.pack", fast_calls=60)
def pack(rng: np.random.Generator) -> Case:
    rows = size(rng, 0, 40, ROWS)
    dims = size(rng, 1, 70, (1, 7, 8, 9, 15, 16, 17, 63, 64, 65, 255, 256, 257))
    bits = _bits(rng, rows, dims)
    expected = np.packbits(bits, axis=1)
    dtype = pick(rng, (np.bool_, np.uint8, np.int64, np.int8, np.uint64))
    values = bits.astype(dtype)
    if dtype != np.bool_ and chance(rng, 0.3):
        values = values * pick(
            rng, (3, 255 if dtype == np.uint8 else -7 if dtype != np.uint64 else 9)
        )
    if chance(rng, 0.15):
        bad, ok, label = spoil(rng, values, kinds="biu")
        return Case(hamming.pack, (bad,), valid=ok, label=label)
    value, label = relayout(rng, values)

    def check(out: Any) -> None:
        expect(isinstance(out, np.ndarray) and out.dtype == np.uint8, "not uint8 codes")
        expect(np.array_equal(out, expected), f"pack differs from numpy.packbits: {out[:2]}")

    return Case(hamming.pack, (value,), valid=True, check=check, label=f"{dtype}, {label}")


@entry("hamming.cdist", fast_calls=80, weight=2.0)
def cdist(rng: np.random.Generator) -> Case:
    a, b = _code_pair(rng)
    a_in, a_ok, a_label = _code_input(rng, a)
    b_in, b_ok, b_label = _code_input(rng, b)
    valid = _and(a_ok, b_ok)
    label = f"a {a.shape} {a_label}; b {b.shape} {b_label}"
    if valid is not True:
        return Case(hamming.cdist, (a_in, b_in), valid=valid, label=label)
    expected = ref.cdist(a, b)

    def check(out: Any) -> None:
        expect(out.dtype == np.int32 and out.shape == expected.shape, f"{out.dtype} {out.shape}")
        expect(np.array_equal(out, expected), "cdist differs from the popcount reference")

    return Case(hamming.cdist, (a_in, b_in), valid=True, check=check, label=label)


@entry("hamming.topk", fast_calls=80, weight=2.0)
def topk(rng: np.random.Generator) -> Case:
    q, db = _code_pair(rng)
    q_in, q_ok, q_label = _code_input(rng, q)
    db_in, db_ok, db_label = _code_input(rng, db)
    k, k_ok, k_label = integer(rng, 1, None, typical=int(rng.integers(1, 10)))
    valid = _and(_and(q_ok, db_ok), k_ok)
    label = f"queries {q.shape} {q_label}; db {db.shape} {db_label}; k {k_label}"
    if valid is not True:
        return Case(hamming.topk, (q_in, db_in, k), valid=valid, label=label)
    distances, indices = ref.topk(ref.cdist(q, db), int(k))

    def check(out: Any) -> None:
        got_d, got_i = out
        expect(got_d.dtype == np.int32 and got_i.dtype == np.int64, "dtypes")
        expect(np.array_equal(got_d, distances), "topk distances differ")
        expect(np.array_equal(got_i, indices), "topk indices differ (ties by index)")

    return Case(hamming.topk, (q_in, db_in, k), valid=True, check=check, label=label)


def _radius_case(rng: np.random.Generator, function: Any, csr: bool) -> Case:
    q, db = _code_pair(rng)
    q_in, q_ok, q_label = _code_input(rng, q)
    db_in, db_ok, db_label = _code_input(rng, db)
    r, r_ok, r_label = integer(rng, 0, 2**31 - 1, typical=int(rng.integers(0, 8 * q.shape[1] + 2)))
    valid = _and(_and(q_ok, db_ok), r_ok)
    label = f"queries {q.shape} {q_label}; db {db.shape} {db_label}; r {r_label}"
    if valid is not True:
        return Case(function, (q_in, db_in, r), valid=valid, label=label)
    offsets, indices, distances = ref.radius_csr(ref.cdist(q, db), int(r))

    def check(out: Any) -> None:
        if csr:
            got_o, got_i, got_d = out
            expect(np.array_equal(got_o, offsets), "offsets differ")
            expect(np.array_equal(got_i, indices), "indices differ")
            expect(np.array_equal(got_d, distances), "distances differ")
            return
        expect(len(out) == q.shape[0], f"{len(out)} rows for {q.shape[0]} queries")
        for row, (got_i, got_d) in enumerate(out):
            lo, hi = offsets[row], offsets[row + 1]
            expect(np.array_equal(got_i, indices[lo:hi]), f"row {row} indices differ")
            expect(np.array_equal(got_d, distances[lo:hi]), f"row {row} distances differ")

    return Case(function, (q_in, db_in, r), valid=True, check=check, label=label)


@entry("hamming.radius", fast_calls=50)
def radius(rng: np.random.Generator) -> Case:
    return _radius_case(rng, hamming.radius, csr=False)


@entry("hamming.radius_csr", fast_calls=50)
def radius_csr(rng: np.random.Generator) -> Case:
    return _radius_case(rng, hamming.radius_csr, csr=True)


@entry("hamming.near_duplicates", fast_calls=50)
def near_duplicates(rng: np.random.Generator) -> Case:
    width = int(pick(rng, WIDTHS[:12]))
    n = size(rng, 0, 300, ROWS)
    codes = _codes(rng, n, width)
    codes_in, ok, label = _code_input(rng, codes)
    r, r_ok, r_label = integer(rng, 0, None, typical=int(rng.integers(0, 3)))
    valid = _and(ok, r_ok)
    label = f"codes {codes.shape} {label}; radius {r_label}"
    if valid is not True:
        return Case(hamming.near_duplicates, (codes_in, r), valid=valid, label=label)
    expected = ref.components(ref.cdist(codes, codes), int(r))

    def check(out: Any) -> None:
        expect(out == expected, f"groups differ: {out[:3]} vs {expected[:3]}")

    return Case(hamming.near_duplicates, (codes_in, r), valid=True, check=check, label=label)


@entry("hamming.simhash", fast_calls=50)
def simhash(rng: np.random.Generator) -> Case:
    n = size(rng, 0, 30)
    dim = size(rng, 1, 20)
    bits_arg, bits_ok, bits_label = integer(
        rng, 1, 2**31 - 1, typical=int(pick(rng, (1, 7, 8, 9, 64, 65))), size_like=True
    )
    seed_arg, seed_ok, seed_label = seed(rng)
    x = ref_x = rng.standard_normal((n, dim)) * pick(rng, (1.0, 1e-300, 1e300, 1e-310))
    valid = _and(bits_ok, seed_ok)
    label = f"x {x.shape}; bits {bits_label}; seed {seed_label}"
    x_in: Any = x
    if chance(rng, 0.15):
        x_in, ok, why = spoil(rng, x, finite=True, kinds="f")
        valid = _and(valid, None if ok is not False else False)
        label += f"; embeddings {why}"
    else:
        cast = x.astype(pick(rng, (np.float64, np.float64, np.float32)))
        x_in, why = relayout(rng, cast)
        ref_x = cast.astype(np.float64)
        valid = _and(valid, bool(np.isfinite(ref_x).all()))
        label += f"; embeddings {why}"
    if valid is not True:
        return Case(hamming.simhash, (x_in, bits_arg), {"seed": seed_arg}, valid, label=label)
    bits, chosen_seed = int(bits_arg), int(seed_arg)
    planes = np.random.default_rng(chosen_seed).standard_normal((dim, bits))
    expected = np.packbits(ref_x @ planes > 0, axis=1)

    def check(out: Any) -> None:
        expect(out.dtype == np.uint8 and out.shape == (n, -(-bits // 8)), f"shape {out.shape}")
        expect(np.array_equal(out, expected), "codes differ from sign(x @ hyperplanes)")

    return Case(hamming.simhash, (x_in, bits_arg), {"seed": seed_arg}, True, check, label)


@entry("hamming.popcount_kernel", fast_calls=3, weight=0.05)
def popcount_kernel(rng: np.random.Generator) -> Case:
    del rng

    def check(out: Any) -> None:
        expect(out in ("avx512-vpopcntdq", "avx2", "neon", "scalar"), f"kernel {out!r}")

    return Case(hamming.popcount_kernel, valid=True, check=check, label="no arguments")


@entry("hamming.BinaryIndex", fast_calls=40, weight=2.0)
def binary_index(rng: np.random.Generator) -> Case:
    """A random session of add/remove/search/save/load checked against a dict model."""
    width = int(pick(rng, (1, 2, 8, 9, 33)))
    plan = [
        str(pick(rng, ("add", "add", "remove", "search", "search", "save", "hostile")))
        for _ in range(size(rng, 1, 12))
    ]
    initial = _codes(rng, size(rng, 0, 20), width)
    as_bits = chance(rng, 0.2)
    seeds = rng.integers(0, 2**32, size=len(plan) + 1)

    def session() -> None:
        local = np.random.default_rng(seeds[0])
        first: Any = np.unpackbits(initial, axis=1).astype(bool) if as_bits else initial
        given_ids = None
        if chance(local, 0.3):
            given_ids = local.permutation(1000)[: len(initial)] * int(pick(local, (1, 3, 2**40)))
        index = hamming.BinaryIndex(first, ids=given_ids)
        model_ids = list(range(len(initial))) if given_ids is None else [int(i) for i in given_ids]
        model_codes = [c for c in initial]
        next_id = max(model_ids, default=-1) + 1
        for step, action in zip(plan, seeds[1:], strict=True):
            local = np.random.default_rng(action)
            if step == "add":
                new = _codes(local, size(local, 0, 8), width)
                ids = None
                if chance(local, 0.3):
                    ids = (local.permutation(50) + 2000)[: len(new)]
                    ids = [int(i) for i in ids if int(i) not in model_ids][: len(new)]
                    if len(ids) != len(new):
                        ids = None
                got = index.add(new, ids=ids)
                want = list(range(next_id, next_id + len(new))) if ids is None else ids
                expect(got.tolist() == want, f"add returned {got.tolist()}, expected {want}")
                model_ids += want
                model_codes += list(new)
                if want:
                    next_id = max(next_id, max(want) + 1)
            elif step == "remove" and model_ids:
                chosen = local.choice(model_ids, size=size(local, 0, len(model_ids)), replace=False)
                index.remove(chosen.tolist() if chance(local, 0.5) else chosen)
                keep = [i for i, m in enumerate(model_ids) if m not in set(chosen.tolist())]
                model_ids = [model_ids[i] for i in keep]
                model_codes = [model_codes[i] for i in keep]
            elif step == "search":
                queries = _codes(local, size(local, 0, 5), width)
                k = size(local, 1, 12)
                distances, ids = index.search(queries, k)
                stored = np.array(model_codes, dtype=np.uint8).reshape(-1, width)
                want_d, want_pos = ref.topk(ref.cdist(queries, stored), k)
                expect(np.array_equal(distances, want_d), "search distances differ")
                want_ids = np.array(model_ids, dtype=np.int64)[want_pos] if model_ids else want_pos
                expect(np.array_equal(ids, want_ids), "search ids differ")
            elif step == "save":
                handle, path = tempfile.mkstemp(suffix=".npz")
                os.close(handle)
                try:
                    index.save(path)
                    index = hamming.BinaryIndex.load(path)
                finally:
                    os.unlink(path)
            elif step == "hostile":
                _hostile_index_call(local, index, width)
            expect(index.ids.tolist() == model_ids, "ids differ from the model")
            expect(len(index) == len(model_ids), "len differs from the model")

    return Case(session, valid=None, label=f"width {width}, {plan}, bits={as_bits}")


def _hostile_index_call(rng: np.random.Generator, index: Any, width: int) -> None:
    """One bad call on the index: it must be refused, and leave the index unchanged."""
    import thrifty

    before_ids, before_codes = index.ids.copy(), index.codes.copy()
    calls = [
        lambda: index.add(_codes(rng, 2, width + 1)),
        lambda: index.add(_codes(rng, 2, width), ids=[1.5, 2.5]),
        lambda: index.add(_codes(rng, 2, width), ids=[-1, 3]),
        lambda: index.add(_codes(rng, 2, width), ids=[7, 7]),
        lambda: index.add(_codes(rng, 1, width), ids=[2**70]),
        lambda: index.add(_codes(rng, 1, width), ids=[None]),
        lambda: index.remove([10**9]),
        lambda: index.remove(["a"]),
        lambda: index.remove([0.5]),
        lambda: index.search(_codes(rng, 1, width), 0),
        lambda: index.search(_codes(rng, 1, width), "3"),
        lambda: index.search(_codes(rng, 1, width + 1), 3),
        lambda: index.search(np.zeros((1, width), np.float32), 3),
        lambda: hamming.BinaryIndex.load(os.devnull),
    ]
    chosen = int(rng.integers(len(calls)))
    try:
        calls[chosen]()
    except thrifty.ThriftyError as error:
        expect(not isinstance(error, thrifty.InternalError), f"InternalError: {error}")
    else:
        raise Mismatch(f"hostile index call {chosen} was accepted")
    expect(np.array_equal(index.ids, before_ids), f"hostile call {chosen} changed the ids")
    expect(np.array_equal(index.codes, before_codes), f"hostile call {chosen} changed the codes")
