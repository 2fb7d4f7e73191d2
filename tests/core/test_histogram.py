"""Binnings (``stream/core/histogram.py``): numeric quantile bins and their edge cases,
categorical top-K, the missing and type-mismatch conventions, and snapshots."""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Callable
from typing import Any, NoReturn

import numpy as np
import numpy.typing as npt
import pytest

from stream.core.histogram import (
    CategoricalBinning,
    NumericBinning,
    NumericBinnings,
    as_category,
    binning_from_snapshot,
    count_index,
)

NAN, INF = float("nan"), float("inf")
FloatArray = npt.NDArray[np.float64]


def bucket_by_hand(edges: list[float], x: float) -> int:
    """Right-closed bins (-inf, e1], (e1, e2], ..., (ek, +inf); NaN -> k + 1; +inf -> k + 2."""
    k = len(edges)
    if math.isnan(x):
        return k + 1
    if x == INF:
        return k + 2
    for i, e in enumerate(edges):
        if x <= e:
            return i
    return k


# -- numeric -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("edges", "x", "bucket"),
    [
        ([1.0, 2.0], 1.0, 0),  # equal to an edge: the lower (right-closed) bin
        ([1.0, 2.0], 2.0, 1),
        ([1.0, 2.0], math.nextafter(1.0, INF), 1),
        ([1.0, 2.0], math.nextafter(2.0, INF), 2),
        ([1.0, 2.0], 0.999, 0),
        ([1.0, 2.0], -1e300, 0),  # far below the reference: open lower bin
        ([1.0, 2.0], 1e300, 2),  # far above: open upper bin
        ([1.0, 2.0], -INF, 0),
        ([1.0, 2.0], NAN, 3),  # missing: the last bucket
        ([1.0, 2.0], INF, 4),  # type mismatch marker: index == size
        ([], 5.0, 0),
        ([], NAN, 1),
        ([], INF, 2),
    ],
)
def test_numeric_index(edges, x, bucket):
    b = NumericBinning(edges)
    assert b.size == len(edges) + 2
    assert b.index(np.array([x])).tolist() == [bucket]
    assert bucket == bucket_by_hand(edges, x)


def test_numeric_count_leaves_type_mismatches_out():
    b = NumericBinning([0.0, 10.0])
    values = np.array([-5.0, 0.0, 3.0, 10.0, 11.0, NAN, NAN, INF, INF, INF])
    # (-inf,0]: -5, 0 | (0,10]: 3, 10 | (10,inf): 11 | missing: 2 NaN; 3 +inf not counted
    assert b.count(values).tolist() == [2, 2, 1, 2]
    counts, mismatch = count_index(b.index(values), b.size)
    assert counts.tolist() == [2, 2, 1, 2]
    assert mismatch == 3


@pytest.mark.parametrize(
    "values",
    [
        [1.0] * 50 + [2.0] * 30 + [3.0] * 20,
        [0.0] * 95 + [1.0] * 5,  # every quantile ties at 0
        [5.0] * 9 + [7.0],
        list(np.repeat(np.arange(4.0), [1, 60, 1, 38])),
        [1.0, 1.0, 2.0, 2.0] * 25 + [NAN] * 7,
    ],
    ids=["three_values", "mostly_zero", "nine_fives", "lumpy", "ties_and_nan"],
)
@pytest.mark.parametrize("n_bins", [2, 4, 10])
def test_ties_give_unique_edges_and_consistent_counts(values, n_bins):
    arr = np.array(values)
    b = NumericBinning.from_values(arr, n_bins)
    edges = b.edges.tolist()
    assert all(a < c for a, c in itertools.pairwise(edges))
    assert len(edges) <= max(n_bins - 1, 2)
    counts = b.count(arr)
    assert counts.sum() == arr.size
    expected = [0] * b.size
    for x in values:
        expected[bucket_by_hand(edges, x)] += 1
    assert counts.tolist() == expected
    assert counts[-1] == int(np.isnan(arr).sum())
    # ties merged, but the data still spreads over more than one bin
    assert np.count_nonzero(counts[:-1]) >= 2


def test_quantile_edges_of_a_uniform_grid():
    # 1..100: the q-quantile (linear interpolation) is 1 + 99 q
    b = NumericBinning.from_values(np.arange(1.0, 101.0), 4)
    assert b.edges.tolist() == pytest.approx([1 + 99 * 0.25, 1 + 99 * 0.5, 1 + 99 * 0.75])
    assert b.count(np.arange(1.0, 101.0)).tolist() == [25, 25, 25, 25, 0]


@pytest.mark.parametrize("constant", [3.0, -1.5, 0.0, 1e6, 7.25])
def test_constant_feature_gets_a_bin_of_its_own(constant):
    b = NumericBinning.from_values(np.full(40, constant), 10)
    below = math.nextafter(constant, -INF)
    above = math.nextafter(constant, INF)
    probe = np.array([constant - 1.0, below, constant, above, constant + 1.0, NAN])
    idx = b.index(probe).tolist()
    assert idx[2] == 1  # the constant itself: its own bin
    assert idx[0] == idx[1] == 0  # anything lower
    assert idx[3] == idx[4] == 2  # anything higher
    assert idx[5] == b.size - 1 == 3
    assert b.count(np.full(40, constant)).tolist() == [0, 40, 0, 0]


def test_constant_feature_with_nan_still_gets_its_bin():
    b = NumericBinning.from_values(np.array([2.0, NAN, 2.0, 2.0]), 10)
    assert b.count(np.array([1.0, 2.0, 3.0, NAN])).tolist() == [1, 1, 1, 1]


@pytest.mark.parametrize("values", [[NAN], [NAN] * 10, []])
def test_all_nan_reference_gives_one_open_bin(values):
    b = NumericBinning.from_values(np.array(values, dtype=np.float64), 10)
    assert b.edges.tolist() == []
    assert b.size == 2
    assert b.labels() == ["(-inf, +inf)", "missing"]
    assert b.count(np.array([-1e9, 0.0, 1e9, NAN])).tolist() == [3, 1]


@pytest.mark.parametrize(
    ("reference", "probe", "bucket"),
    [
        (np.arange(10.0), -100.0, 0),
        (np.arange(10.0), 100.0, "last"),
        (np.linspace(-1, 1, 50), 2.0, "last"),
        (np.linspace(-1, 1, 50), -2.0, 0),
    ],
)
def test_values_beyond_reference_range_go_to_the_open_outer_bins(reference, probe, bucket):
    b = NumericBinning.from_values(reference, 5)
    want = b.size - 2 if bucket == "last" else bucket
    assert b.index(np.array([probe])).tolist() == [want]
    assert b.labels()[want].startswith("(-inf") or b.labels()[want].endswith("+inf)")


@pytest.mark.parametrize(
    ("edges", "labels"),
    [
        ([1.0, 2.0], ["(-inf, 1]", "(1, 2]", "(2, +inf)", "missing"]),
        ([0.5], ["(-inf, 0.5]", "(0.5, +inf)", "missing"]),
    ],
)
def test_numeric_labels(edges, labels):
    b = NumericBinning(edges)
    assert b.labels() == labels
    assert len(b.labels()) == b.size


@pytest.mark.parametrize(
    "edges",
    [[2.0, 1.0], [1.0, 1.0], [0.0, NAN], [0.0, INF], [-INF, 0.0], [[1.0, 2.0]], 1.0],
    ids=["decreasing", "repeated", "nan", "inf", "-inf", "2d", "scalar"],
)
def test_invalid_edges_raise(edges):
    with pytest.raises(ValueError, match="edges must be finite and strictly increasing"):
        NumericBinning(edges)


# -- the comparison path of NumericBinning.index -------------------------------------
# index() bins batches of float64 values by comparing them with every edge; shorter or
# other inputs take index_searchsorted(). Both must agree with bucket_by_hand everywhere.

DMAX = float(np.finfo(np.float64).max)
TINY = 5e-324  # the smallest subnormal


def hand_index(edges: list[float], values: FloatArray) -> list[int]:
    return [bucket_by_hand(edges, x) for x in values.tolist()]


def tricky_values(edges: FloatArray, rng: np.random.Generator, n: int) -> FloatArray:
    """Values on and next to every edge, non-finite values, signed zeros, subnormals and
    extremes, mixed with draws around the edges; shuffled."""
    special = [NAN, INF, -INF, 0.0, -0.0, TINY, -TINY, 1e-310, -1e-310, DMAX, -DMAX, 1e308]
    with np.errstate(over="ignore"):  # next to +-DMAX is +-inf
        near = np.concatenate([edges, np.nextafter(edges, INF), np.nextafter(edges, -INF)])
        spread = float(edges[-1] - edges[0]) if edges.size > 1 else 1.0
        centre = float(edges.mean()) if edges.size else 0.0
    if not (math.isfinite(spread) and math.isfinite(centre)):
        spread, centre = 1.0, 0.0
    draws = rng.normal(centre, spread, size=max(n - near.size - len(special), 0))
    values = np.concatenate([near, special * 3, draws])
    rng.shuffle(values)
    return values


@pytest.fixture
def no_searchsorted(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make sure the comparison path is the one tested: the binary search must not run."""

    def fail(self: NumericBinning, values: object) -> NoReturn:
        raise AssertionError("index_searchsorted was called")

    monkeypatch.setattr(NumericBinning, "index_searchsorted", fail)


@pytest.mark.parametrize("n_edges", [0, 1, 2, 3, 9, 20, 48])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_comparison_path_matches_by_hand_on_random_edges(
    n_edges: int, seed: int, no_searchsorted: None
) -> None:
    rng = np.random.default_rng([n_edges, seed])
    scale = 10.0 ** rng.integers(-300, 300)  # edges anywhere in the float range
    edges = np.unique(rng.normal(size=n_edges) * scale)
    b = NumericBinning(edges)
    values = tricky_values(edges, rng, 3000)
    got = b.index(values)
    assert got.dtype == np.int64
    assert got.tolist() == hand_index(edges.tolist(), values)


@pytest.mark.parametrize(
    "edges",
    [
        [-TINY, 0.0, TINY],  # subnormal edges around zero
        [-0.0, 1.0],  # a negative-zero edge: 0.0 and -0.0 both belong to (-inf, -0.0]
        [-DMAX, DMAX],  # the largest finite edges
        [math.nextafter(7.25, -INF), 7.25],  # a constant feature's bin
        list(np.linspace(-1.0, 1.0, 48)),  # the most edges the comparison path takes
    ],
    ids=["subnormal", "negative_zero", "extreme", "constant_bin", "max_edges"],
)
def test_comparison_path_on_edge_cases(edges: list[float], no_searchsorted: None) -> None:
    b = NumericBinning(edges)
    values = tricky_values(b.edges, np.random.default_rng(7), 1000)
    assert b.index(values).tolist() == hand_index(b.edges.tolist(), values)


def test_comparison_path_on_a_constant_feature(no_searchsorted: None) -> None:
    b = NumericBinning.from_values(np.full(100, 3.0), 10)
    probe = np.tile([2.0, math.nextafter(3.0, -INF), 3.0, math.nextafter(3.0, INF), NAN, INF], 50)
    assert b.index(probe).tolist() == [0, 0, 1, 2, 3, 4] * 50


def test_comparison_path_in_chunks() -> None:
    """More values than one chunk: several passes, the same indices."""
    rng = np.random.default_rng(11)
    edges = np.sort(rng.normal(size=9))
    b = NumericBinning(edges)
    values = rng.normal(size=2 * 65_536 + 7)
    values[rng.integers(0, values.size, 50)] = NAN
    values[rng.integers(0, values.size, 50)] = INF
    values[rng.integers(0, values.size, 50)] = edges[rng.integers(0, 9, 50)]
    got = b.index(values)
    assert got.tolist() == b.index_searchsorted(values).tolist()
    sample = rng.integers(0, values.size, 5000)
    assert got[sample].tolist() == hand_index(edges.tolist(), values[sample])


@pytest.mark.parametrize(
    "make",
    [
        lambda v: v[~(np.isfinite(v) & (np.abs(v) > 1e30))].astype(np.float32),  # other dtypes
        lambda v: v.tolist(),
        lambda v: v[:255],  # too short for the comparison path
        lambda v: v[:256],  # just long enough
        lambda v: v[::3],  # a strided view
        lambda v: v.reshape(20, -1),  # 2-D: the binary search, same shape back
        lambda v: np.ascontiguousarray(v[::-1]).astype(">f8"),  # big-endian
    ],
    ids=["float32", "list", "255", "256", "strided", "2d", "big_endian"],
)
def test_every_input_gets_the_reference_indices(make: Callable[[FloatArray], Any]) -> None:
    rng = np.random.default_rng(5)
    edges = np.sort(rng.normal(size=9)).astype(np.float32).astype(np.float64)  # float32-exact
    b = NumericBinning(edges)
    base = tricky_values(edges, rng, 1000)[:1000]
    values = make(base)
    got = b.index(values)
    flat = np.asarray(values, dtype=np.float64).ravel()
    assert np.asarray(got).ravel().tolist() == hand_index(edges.tolist(), flat)
    assert np.shape(got) == np.shape(values)


def test_more_edges_than_the_comparison_path_takes() -> None:
    edges = np.linspace(-3.0, 3.0, 49)
    b = NumericBinning(edges)
    values = tricky_values(edges, np.random.default_rng(3), 2000)
    assert b.index(values).tolist() == hand_index(edges.tolist(), values)


def test_edges_are_a_frozen_copy() -> None:
    src = np.array([1.0, 2.0, 3.0])
    b = NumericBinning(src)
    src[0] = 10.0  # the caller's array is not the binning's
    assert b.edges.tolist() == [1.0, 2.0, 3.0]
    with pytest.raises(ValueError, match="read-only"):
        b.edges[0] = 0.0
    probe = np.tile([1.0, 1.5, 10.0], 100)
    assert b.index(probe).tolist() == [0, 1, 3] * 100


# -- categorical ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "k", "categories"),
    [
        (["b", "a", "c", "b", "a"], 1, ("a",)),  # a and b tie at 2: by name
        (["b", "a", "c", "b", "a"], 2, ("a", "b")),
        (["z", "y", "x"], 2, ("x", "y")),  # all tie at 1
        (["c", "c", "c", "b", "a", "a"], 2, ("c", "a")),  # by count first
        (["a", None, None, None], 5, ("a",)),  # None is never a category
        ([None, None], 3, ()),
    ],
)
def test_top_k_with_ties_broken_by_name(values, k, categories):
    assert CategoricalBinning.from_values(values, k).categories == categories


@pytest.mark.parametrize(
    ("value", "bucket"),
    [
        ("DE", 0),
        ("FR", 1),
        ("true", 2),
        ("IT", 3),  # unseen: other
        ("", 3),
        ("de", 3),  # case matters
        (None, 4),  # missing
        (True, 2),  # booleans are the categories "true" / "false"
        (False, 3),  # "false" is not in the top K: other
        (3, 5),  # a number in a categorical feature: type mismatch (== size)
        (2.5, 5),
        (0, 5),
        ({"a": 1}, 5),
        (["DE"], 5),
    ],
)
def test_categorical_index(value, bucket):
    b = CategoricalBinning(["DE", "FR", "true"])
    assert b.size == 5
    assert b.labels() == ["DE", "FR", "true", "other", "missing"]
    assert b.index([value]).tolist() == [bucket]


def test_categorical_count_and_mismatch():
    b = CategoricalBinning(["a", "b"])
    values = ["a", "a", "b", "z", None, None, 7, 1.5, True]
    assert b.count(values).tolist() == [2, 1, 2, 2]  # True -> "true" -> other
    assert count_index(b.index(values), b.size)[1] == 2


@pytest.mark.parametrize(
    ("value", "category"),
    [("DE", "DE"), ("", ""), (True, "true"), (False, "false"), (1, None), (0.0, None),
     (None, None)],
)
def test_as_category(value, category):
    assert as_category(value) == category


def test_bools_built_from_reference_match_bool_values():
    b = CategoricalBinning.from_values(["true", "false", "true"], 5)
    assert b.categories == ("true", "false")
    assert b.index([True, False, "true", "false"]).tolist() == [0, 1, 0, 1]


def test_duplicate_categories_raise():
    with pytest.raises(ValueError, match="categories must be distinct"):
        CategoricalBinning(["a", "b", "a"])


# -- snapshots -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "binning",
    [
        NumericBinning([0.1, 0.25, 1e6]),
        NumericBinning([]),
        NumericBinning.from_values(np.array([3.0, 3.0]), 10),  # nextafter edge survives JSON
        NumericBinning.from_values(np.random.default_rng(3).normal(size=500), 10),
        CategoricalBinning(["DE", "FR", "true", "é"]),
        CategoricalBinning([]),
    ],
)
def test_snapshot_round_trip(binning):
    snap = json.loads(json.dumps(binning.snapshot()))
    back = binning_from_snapshot(snap)
    assert type(back) is type(binning)
    assert back.snapshot() == binning.snapshot()
    assert back.size == binning.size
    assert back.labels() == binning.labels()
    if isinstance(binning, NumericBinning):
        probe = np.concatenate([binning.edges, binning.edges + 1e-9, [-1e9, 1e9, NAN, INF]])
        assert back.index(probe).tolist() == binning.index(probe).tolist()
    else:
        probe = [*binning.categories, "zz", None, 1, True]
        assert back.index(probe).tolist() == binning.index(probe).tolist()


@pytest.mark.parametrize(
    ("data", "error"),
    [
        ({"type": "histogram", "edges": []}, "unknown binning type 'histogram'"),
        ({}, "unknown binning type None"),
        ({"type": "numeric", "edges": [3.0, 1.0]}, "strictly increasing"),
        ({"type": "categorical", "categories": ["a", "a"]}, "distinct"),
    ],
)
def test_bad_snapshots_raise(data, error):
    with pytest.raises(ValueError, match=error):
        binning_from_snapshot(data)


@pytest.mark.parametrize("categories", [["true", "false"], ["false"], ["a", "true"], []])
def test_boolean_columns_match_their_categories(categories):
    """A column of booleans and nulls (a boolean label) takes its own fast path; each value
    lands where its category ("true"/"false") or null puts it."""
    b = CategoricalBinning(categories)
    rng = np.random.default_rng(len(categories))
    values = [None if r < 0.2 else bool(r < 0.6) for r in rng.random(300)]
    expected = [b.size - 1 if v is None else b.index([as_category(v)]).item() for v in values]
    assert b.index(values).tolist() == expected
    assert b.index([*values, "zz"]).tolist() == [*expected, len(categories)]  # general path


@pytest.mark.parametrize("n", [0, 1, 7, 255, 256, 1000, 1024, 1025, 3000])
@pytest.mark.parametrize("edge_counts", [[10, 10, 10], [9, 1, 0, 5, 10], [3], [60, 2], [48]])
def test_stacked_numeric_binnings_match_each_binning(n, edge_counts):
    """Every row gets exactly the binary search's buckets: edges with different counts
    (NaN padding), a row beyond the comparison path's edge limit, NaN, ±inf, values on
    the edges, and batch lengths on both sides of the stacking limit."""
    rng = np.random.default_rng(n + len(edge_counts))
    binnings = [NumericBinning(np.sort(rng.choice(np.arange(-200.0, 200.0), k, replace=False)))
                for k in edge_counts]
    m = rng.normal(0, 80, (len(binnings), n))
    for i, b in enumerate(binnings):
        if b.edges.size and n:
            at = rng.integers(0, n, n // 5 + 1)
            m[i, at] = rng.choice(b.edges, at.size)
    m[rng.random(m.shape) < 0.05] = np.nan
    m[rng.random(m.shape) < 0.02] = np.inf
    m[rng.random(m.shape) < 0.02] = -np.inf
    got = NumericBinnings(binnings).index(m)
    assert got.shape == m.shape and got.dtype == np.int64
    for i, b in enumerate(binnings):
        assert got[i].tolist() == b.index_searchsorted(m[i]).tolist()


def test_stacked_numeric_binnings_check_the_shape():
    with pytest.raises(ValueError, match=r"expected a \(2 x n\) matrix, got shape \(3, 4\)"):
        NumericBinnings([NumericBinning([1.0]), NumericBinning([])]).index(np.zeros((3, 4)))


@pytest.mark.parametrize("edge_counts", [[10, 3, 0], [60, 2]])  # stacked, and row by row
def test_stacked_counts_match_count_index(edge_counts):
    rng = np.random.default_rng(len(edge_counts))
    binnings = [NumericBinning(np.sort(rng.choice(np.arange(-50.0, 50.0), k, replace=False)))
                for k in edge_counts]
    m = rng.normal(0, 30, (len(binnings), 700))
    m[rng.random(m.shape) < 0.1] = np.nan
    m[rng.random(m.shape) < 0.05] = np.inf
    stacked = NumericBinnings(binnings)
    got = stacked.count_index(stacked.index(m))
    for i, b in enumerate(binnings):
        counts, mismatches = count_index(b.index_searchsorted(m[i]), b.size)
        assert got[i, :b.size].tolist() == counts.tolist()
        assert got[i, b.size] == mismatches > 0
        assert not got[i, b.size + 1:].any()
