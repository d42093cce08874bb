"""Run-length masks (hpc_mle.rle): hand-computed cases, then property tests against a plain re-statement
of v1's decoder (one Python loop over the runs, the rules as the facts state them)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hpc_mle import rle


def oracle(text: str, n: int) -> np.ndarray | None:
    """v1's decoding rules, pixel by pixel: the flat mask, or None where v1 raised."""
    tokens = text.split()
    if not tokens:
        return np.zeros(n, dtype=bool)
    try:
        values = [int(t) for t in tokens]
    except ValueError:
        return None
    starts, lengths = values[0::2], values[1::2]
    if starts != sorted(starts) or any(s <= 0 for s in starts) or any(x <= 0 for x in lengths):
        return None
    if len(starts) != len(lengths):  # NumPy broadcasting: (1,) with (0,), or (2,) with (1,)
        if len(starts) == 1:
            return np.zeros(n, dtype=bool)
        if len(lengths) != 1:
            return None
        lengths = lengths * 2
    mask = np.zeros(n, dtype=bool)
    for s, length in zip(starts, lengths, strict=True):
        if mask[s - 1:s - 1 + length].any():
            return None
        mask[s - 1:s - 1 + length] = True
    return mask


def decoded(text: str, n: int) -> np.ndarray | None:
    try:
        return rle.flat_mask(rle.parse(text, n))
    except rle.RLEError:
        return None


# ---------------------------------------------------------------- by hand


def test_column_major_by_hand():
    # 3 rows x 2 columns: pixels are numbered down the first column (1, 2, 3), then the second (4, 5, 6).
    mask = rle.column_major_mask(rle.parse("2 2 6 1", 6), height=3, width=2)
    assert mask.tolist() == [[False, False], [True, False], [True, True]]
    assert rle.encode(mask) == "2 2 6 1"
    assert rle.encode(np.zeros((3, 2, 1))) == ""
    assert rle.encode(np.ones((2, 2))) == "1 4"


@pytest.mark.parametrize("text, expected", [
    ("", []), ("   \t", []),                 # empty or blank: an empty mask
    ("5", []),                               # a lone start: empty (v1's NumPy broadcast)
    ("3 2", [2, 3]),
    ("9 5", [8, 9]),                         # cut at the image's end (10 pixels)
    ("11 3", []), ("1 1 20 5", [0]),         # wholly past the image: ignored
    ("+2 1_0", list(range(1, 10))),          # Python's int() reads these
    ("9 5 10 1", None),                      # overlap inside the image
    ("9 5 11 1", [8, 9]),                    # overlapping only past the image: v1 never saw it
    ("1 1 1 1", None),                       # the same start twice
    ("4 1 2 1", None),                       # unsorted
    ("1 2 3", [0, 1, 2, 3]),                 # odd: both starts take the one length (v1's broadcast)
    ("1 2 2", None),                         # ... which then overlap
    ("1 2 3 4 5", None),                     # odd, more than two starts
    ("0 2", None), ("2 0", None), ("-1 2", None), ("0", None),
    ("1.5 2", None), ("a b", None), ("- ", None),
])
def test_decoding_rules_by_hand(text, expected):
    got = decoded(text, 10)
    if expected is None:
        assert got is None and oracle(text, 10) is None
    else:
        assert np.flatnonzero(got).tolist() == expected
        assert np.array_equal(got, oracle(text, 10))


def test_reasons_name_the_rule():
    for text, words in (("4 1 2 1", "increasing"), ("1 2 3 4 5", "odd"), ("0 2", "positive"),
                        ("x 1", "integers"), ("1 5 3 1", "overlap"), (f"{2**63} 1", "too large"),
                        (f"1 {2**62}", "too large")):
        with pytest.raises(rle.RLEError, match=words):
            rle.parse(text, 100)
    with pytest.raises(rle.RLEError, match="expected run-length text"):
        rle.parse(float("nan"), 100)


def test_overlap_by_hand():
    a, b = rle.parse("1 4 8 2", 10), rle.parse("3 6", 10)  # {0..3, 7, 8} and {2..7}
    assert (a.size, b.size, rle.overlap(a, b)) == (6, 6, 3)
    assert rle.overlap(a, rle.parse("", 10)) == 0
    assert rle.overlap(a, a) == a.size


# ---------------------------------------------------------------- properties

pairs = st.lists(st.tuples(st.integers(-2, 40), st.integers(-1, 12)), max_size=8)


@settings(max_examples=150, deadline=None)
@given(pairs, st.booleans(), st.integers(1, 30))
def test_parse_agrees_with_v1_rules(runs, odd, n):
    values = [v for pair in runs for v in pair] + ([7] if odd else [])
    text = " ".join(map(str, values))
    got, want = decoded(text, n), oracle(text, n)
    assert (got is None) == (want is None), text
    if want is not None:
        assert np.array_equal(got, want), text


masks = st.integers(1, 6).flatmap(lambda h: st.integers(1, 6).flatmap(
    lambda w: st.lists(st.booleans(), min_size=h * w, max_size=h * w).map(lambda v: np.array(v).reshape(h, w))))


@settings(max_examples=60, deadline=None)
@given(masks, st.randoms(use_true_random=False))
def test_encode_round_trip_and_overlap_counts(mask, rnd):
    h, w = mask.shape
    runs = rle.parse(rle.encode(mask), h * w)
    assert np.array_equal(rle.column_major_mask(runs, h, w), mask)
    other = np.array([rnd.random() < 0.5 for _ in range(h * w)]).reshape(h, w)
    b = rle.parse(rle.encode(other), h * w)
    both = int((mask & other).sum())
    assert rle.overlap(runs, b) == rle.overlap(b, runs) == both  # symmetric, and the true count
    assert 0 <= both <= min(runs.size, b.size) and runs.size == int(mask.sum())


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 10**19), st.sampled_from([" ", "  ", "\t", "\n", " \r\n", "\x0b", "\x1c"])),
                max_size=8), st.sampled_from(["", "0", "00"]))
def test_any_whitespace_and_zero_padding_read_as_int_reads_them(tokens, pad):
    short = "".join(f"{pad}{v}{sep}" for v, sep in tokens)
    too_large = any(v >= rle.MAX_VALUE for v, _ in tokens)
    for text in (short, short + " " * rle.LONG_TEXT):  # the second is read in C, the first token by token
        got, want = decoded(text, 50), oracle(text, 50)
        assert (got is None) == (want is None or too_large), text
        if got is not None:
            assert np.array_equal(got, want), text


def test_long_run_lists_agree_with_v1_rules():
    rng = np.random.default_rng(0)
    for _ in range(40):
        k = int(rng.integers(700, 1200))
        starts = np.sort(rng.choice(50_000, k, replace=False)) + 1
        lengths = rng.integers(1, 5, k)
        if rng.random() < 0.5:
            lengths[rng.integers(k)] = rng.integers(-2, 1)  # a zero or negative length somewhere
        seps = rng.choice([" ", "\t", "\n", "  ", " \r\n"], 2 * k)
        text = "".join(f"{v}{sep}" for v, sep in zip(np.column_stack([starts, lengths]).ravel(), seps, strict=True))
        text += "7" if rng.random() < 0.3 else ""  # odd
        assert len(text) > rle.LONG_TEXT
        got, want = decoded(text, 60_000), oracle(text, 60_000)
        assert (got is None) == (want is None) and (got is None or np.array_equal(got, want))
