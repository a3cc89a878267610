"""Text-to-pattern distances: every method against a NumPy reference, inputs and errors."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import thrifty
from thrifty import hamming
from thrifty.hamming._inputs import symbols

EXACT = ["auto", "naive", "fft", "abrahamson"]
U32_MAX = 2**32 - 1


def reference(text: np.ndarray, pattern: np.ndarray) -> np.ndarray:
    windows = np.lib.stride_tricks.sliding_window_view(text, len(pattern))
    return (windows != pattern).sum(axis=1).astype(np.int32)


def bounded(distances: np.ndarray, k: int) -> np.ndarray:
    return np.minimum(distances, k + 1)


@st.composite
def text_and_pattern(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray]:
    """Tiny alphabets (many matches) and huge 32-bit symbols, m from 1 to n."""
    if draw(st.booleans()):
        palette = np.arange(draw(st.integers(1, 4)), dtype=np.uint32)
    else:
        extremes = [0, 1, 2**31, U32_MAX]
        drawn = draw(st.lists(st.integers(0, U32_MAX), min_size=1, max_size=6))
        palette = np.array(sorted(set(drawn + extremes[: draw(st.integers(0, 4))])), np.uint32)
    n = draw(st.integers(1, 160))
    m = draw(st.integers(1, n))
    text = palette[draw(st.lists(st.integers(0, len(palette) - 1), min_size=n, max_size=n))]
    pattern = palette[draw(st.lists(st.integers(0, len(palette) - 1), min_size=m, max_size=m))]
    # Some patterns are cut from the text, so that exact occurrences show up.
    if draw(st.booleans()):
        start = draw(st.integers(0, n - m))
        pattern = text[start : start + m].copy()
    return text.astype(np.uint32), pattern.astype(np.uint32)


def _scrambled(n: int, m: int) -> tuple[np.ndarray, np.ndarray]:
    text = (np.arange(n, dtype=np.uint64) * 2654435761 % 2**32 >> 29).astype(np.uint32)
    return text, text[n // 3 : n // 3 + m][::-1].copy()


def _regression_cases() -> list[tuple[np.ndarray, np.ndarray]]:
    cycle = np.tile([1, 2, 1, 3], 500)
    cases = [(np.full(1000, 5), np.full(3, 5)), (cycle, cycle[7:107])]
    return cases + [_scrambled(n, m) for n, m in [(512, 6), (1813, 98), (4096, 100), (4098, 162)]]


@pytest.mark.parametrize("case", _regression_cases(), ids=lambda c: f"n{len(c[0])}-m{len(c[1])}")
def test_sizes_whose_fft_blocks_left_tasks_empty(case: tuple[np.ndarray, np.ndarray]) -> None:
    # These sizes cut the FFT blocks into fewer tasks than the thread pool asked for, and the
    # task past the last block panicked (InternalError: capacity overflow).
    text, pattern = case
    expected = reference(text, pattern)
    for method in [*EXACT, "kangaroo"]:
        k = len(pattern) if method == "kangaroo" else None
        got = hamming.text_to_pattern(text, pattern, method=method, k=k)  # type: ignore[arg-type]
        np.testing.assert_array_equal(got, expected, err_msg=method)


@settings(max_examples=150, deadline=None)
@given(case=text_and_pattern())
def test_exact_methods_equal_the_reference(case: tuple[np.ndarray, np.ndarray]) -> None:
    text, pattern = case
    expected = reference(text, pattern)
    for method in EXACT:
        got = hamming.text_to_pattern(text, pattern, method=method)  # type: ignore[arg-type]
        assert got.dtype == np.int32
        np.testing.assert_array_equal(got, expected, err_msg=method)


@settings(max_examples=150, deadline=None)
@given(case=text_and_pattern(), k_offset=st.integers(-3, 3), data=st.data())
def test_k_bounded_distances_cap_at_k_plus_one(
    case: tuple[np.ndarray, np.ndarray], k_offset: int, data: st.DataObject
) -> None:
    text, pattern = case
    k = max(0, data.draw(st.integers(0, len(pattern))) + k_offset)
    expected = bounded(reference(text, pattern), k)
    for method in [*EXACT, "kangaroo"]:
        got = hamming.text_to_pattern(text, pattern, k=k, method=method)  # type: ignore[arg-type]
        np.testing.assert_array_equal(got, expected, err_msg=method)


@settings(max_examples=100, deadline=None)
@given(case=text_and_pattern(), eps=st.sampled_from([0.1, 0.5, 0.9]), seed=st.integers(0, 99))
def test_approx_never_overestimates(
    case: tuple[np.ndarray, np.ndarray], eps: float, seed: int
) -> None:
    text, pattern = case
    exact = reference(text, pattern)
    got = hamming.text_to_pattern(text, pattern, eps=eps, method="approx", seed=seed)
    assert got.shape == exact.shape
    assert (got <= exact).all()
    assert (got >= 0).all()
    capped = hamming.text_to_pattern(text, pattern, eps=eps, k=2, method="approx", seed=seed)
    np.testing.assert_array_equal(capped, np.minimum(got, 3))


def test_approx_meets_its_guarantee_over_200_seeds() -> None:
    # (1 - eps) d <= d' <= d per position with probability >= 1 - 1/(4n), and at every
    # position at once with probability >= 3/4.
    rng = np.random.default_rng(7)
    n, m, eps = 1500, 60, 0.5
    text = rng.integers(0, 1000, n).astype(np.uint32)
    pattern = text[100 : 100 + m].copy()
    pattern[rng.choice(m, 20, replace=False)] = rng.integers(1000, 2000, 20)
    exact = reference(text, pattern)
    failures = 0
    all_good = 0
    for seed in range(200):
        got = hamming.text_to_pattern(text, pattern, eps=eps, method="approx", seed=seed)
        assert (got <= exact).all()
        bad = int((got < (1 - eps) * exact).sum())
        failures += bad
        all_good += bad == 0
    positions = 200 * exact.size
    assert failures <= positions / (4 * n)
    assert all_good >= 0.75 * 200


def test_approx_is_deterministic_in_its_seed() -> None:
    rng = np.random.default_rng(1)
    text = rng.integers(0, 50, 3000).astype(np.uint32)
    pattern = rng.integers(0, 50, 40).astype(np.uint32)
    one = hamming.text_to_pattern(text, pattern, eps=0.3, method="approx", seed=5)
    two = hamming.text_to_pattern(text, pattern, eps=0.3, method="approx", seed=5)
    default = hamming.text_to_pattern(text, pattern, eps=0.3, method="approx")
    zero = hamming.text_to_pattern(text, pattern, eps=0.3, method="approx", seed=0)
    np.testing.assert_array_equal(one, two)
    np.testing.assert_array_equal(default, zero)


def test_auto_with_eps_stays_within_the_guarantee() -> None:
    rng = np.random.default_rng(2)
    text = rng.integers(0, 5000, 20000).astype(np.uint32)
    pattern = rng.integers(0, 5000, 2000).astype(np.uint32)
    exact = reference(text, pattern)
    got = hamming.text_to_pattern(text, pattern, eps=0.5)
    assert (got <= exact).all()
    assert (got >= 0.5 * exact).mean() >= 1 - 1 / (4 * text.size) - 1e-3


@settings(max_examples=40, deadline=None)
@given(case=text_and_pattern(), data=st.data())
def test_many_patterns_equal_one_at_a_time(
    case: tuple[np.ndarray, np.ndarray], data: st.DataObject
) -> None:
    text, first = case
    lengths = data.draw(st.lists(st.integers(1, text.size), min_size=0, max_size=4))
    patterns = [first] + [text[:m][::-1].copy() for m in lengths]
    k = data.draw(st.none() | st.integers(0, 5))
    methods = ["auto", "naive", "fft", "abrahamson"] + (["kangaroo"] if k is not None else [])
    for method in methods:
        together = hamming.text_to_patterns(text, patterns, k=k, method=method)  # type: ignore[arg-type]
        assert len(together) == len(patterns)
        for pattern, got in zip(patterns, together, strict=True):
            expected = reference(text, pattern)
            np.testing.assert_array_equal(got, expected if k is None else bounded(expected, k))


def test_patterns_may_be_a_2d_array() -> None:
    text = np.array([1, 2, 1, 2, 1], np.uint32)
    got = hamming.text_to_patterns(text, np.array([[1, 2], [2, 2]], np.uint32))
    assert [d.tolist() for d in got] == [[0, 2, 0, 2], [1, 1, 1, 1]]
    assert hamming.text_to_patterns(text, []) == []


def test_m_equals_n_and_m_equals_one() -> None:
    assert hamming.text_to_pattern("abc", "abd").tolist() == [1]
    assert hamming.text_to_pattern("abca", "a").tolist() == [0, 1, 1, 0]


def test_bytes_str_and_integer_inputs_agree() -> None:
    expected = [0, 4, 3, 3, 3, 3, 4, 0]
    assert hamming.text_to_pattern(b"abracadabra", b"abra").tolist() == expected
    assert hamming.text_to_pattern(bytearray(b"abracadabra"), b"abra").tolist() == expected
    assert hamming.text_to_pattern("abracadabra", "abra").tolist() == expected
    codes = np.frombuffer(b"abracadabra", np.uint8)
    for dtype in [np.uint8, np.int8, np.uint16, np.int16, np.int32, np.uint32, np.int64, np.uint64]:
        text = codes.astype(dtype)
        got = hamming.text_to_pattern(text, text[:4])
        assert got.tolist() == expected, dtype
    assert hamming.text_to_pattern(codes.tolist(), codes[:4].tolist()).tolist() == expected


def test_str_uses_code_points_beyond_the_bmp_and_lone_surrogates() -> None:
    text = "a\U0001f600b\ud800"
    np.testing.assert_array_equal(symbols(text, "text"), [97, 0x1F600, 98, 0xD800])
    assert hamming.text_to_pattern(text, "\U0001f600").tolist() == [1, 0, 1, 1]
    # One symbol per code point, not per UTF-8 byte.
    assert hamming.text_to_pattern("é€", "€").tolist() == [1, 0]


def test_uint32_arrays_are_used_without_copying() -> None:
    text = np.arange(10, dtype=np.uint32)
    assert np.shares_memory(symbols(text, "text"), text)


def test_torch_tensors_are_accepted() -> None:
    torch = pytest.importorskip("torch")
    text = torch.tensor([3, 1, 3, 1, 3])
    assert hamming.text_to_pattern(text, torch.tensor([3, 1])).tolist() == [0, 2, 0, 2]
    big = torch.tensor([2**32 - 1, 0], dtype=torch.int64)
    assert hamming.text_to_pattern(big, big[:1]).tolist() == [0, 1]


@pytest.mark.parametrize(
    ("text", "pattern", "argument", "error"),
    [
        (b"abc", b"", "pattern", thrifty.InvalidArgumentError),
        ("abc", "", "pattern", thrifty.InvalidArgumentError),
        (b"ab", b"abc", "pattern", thrifty.ShapeError),
        (b"abc", "ab", "pattern", thrifty.DTypeError),
        ("abc", np.array([97], np.uint32), "pattern", thrifty.DTypeError),
        (np.array([1, -1]), np.array([1]), "text", thrifty.InvalidArgumentError),
        (np.array([1, 2]), np.array([2**32]), "pattern", thrifty.InvalidArgumentError),
        (np.array([1.0, 2.0]), np.array([1.0]), "text", thrifty.DTypeError),
        (np.array([True, False]), np.array([True]), "text", thrifty.DTypeError),
        (np.zeros((2, 2), np.uint32), np.array([1], np.uint32), "text", thrifty.ShapeError),
        (np.zeros(3, np.uint32), np.zeros((1, 1), np.uint32), "pattern", thrifty.ShapeError),
    ],
)
def test_bad_inputs_name_the_argument(
    text: object, pattern: object, argument: str, error: type[Exception]
) -> None:
    with pytest.raises(error) as caught:
        hamming.text_to_pattern(text, pattern)
    assert caught.value.argument == argument  # type: ignore[attr-defined]
    assert argument in str(caught.value)


def test_pattern_longer_than_text_says_so() -> None:
    with pytest.raises(thrifty.ShapeError, match="longer than the text: 3 symbols against 2"):
        hamming.text_to_pattern(b"ab", b"abc")


@pytest.mark.parametrize(
    ("options", "argument"),
    [
        ({"method": "quantum"}, "method"),
        ({"method": "kangaroo"}, "k"),
        ({"method": "approx"}, "eps"),
        ({"eps": 0.0}, "eps"),
        ({"eps": 1.0}, "eps"),
        ({"eps": "small"}, "eps"),
        ({"k": -1}, "k"),
        ({"k": 2**32}, "k"),
        ({"k": 1.5}, "k"),
        ({"seed": -1}, "seed"),
        ({"seed": 2**64}, "seed"),
    ],
)
def test_bad_options_name_the_argument(options: dict[str, object], argument: str) -> None:
    with pytest.raises(thrifty.InvalidArgumentError) as caught:
        hamming.text_to_pattern(b"abcabc", b"ab", **options)  # type: ignore[arg-type]
    assert caught.value.argument == argument


def test_bad_pattern_in_a_list_names_patterns() -> None:
    with pytest.raises(thrifty.InvalidArgumentError) as caught:
        hamming.text_to_patterns(b"abc", [b"a", b""])
    assert caught.value.argument == "patterns"
    with pytest.raises(thrifty.DTypeError, match="patterns must be a list"):
        hamming.text_to_patterns(b"abc", b"ab")  # type: ignore[arg-type]


def test_gpu_text_is_refused_clearly() -> None:
    class FakeCupy:
        __module__ = "cupy._core.core"

    with pytest.raises(thrifty.DeviceError, match="text is on a GPU"):
        hamming.text_to_pattern(FakeCupy(), b"a")
