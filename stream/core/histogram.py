"""Binnings frozen from a reference, and vectorised counting of values into their bins.

Two kinds, each with a trailing *missing* bucket:

- :class:`NumericBinning`: inner edges ``e1 < ... < ek`` give ``k + 1`` right-closed bins
  ``(-inf, e1], (e1, e2], ..., (ek, +inf)``. The outer bins are open, so values beyond the
  reference's range still land somewhere. Edges are reference quantiles.
- :class:`CategoricalBinning`: the reference's top-K categories, then ``other`` (anything
  not in the top K, including never-seen values), then missing.

A value of the wrong type (a string in a numeric feature, a number in a categorical one)
is not binned: :meth:`index` gives it the index :attr:`size` (one past the missing
bucket) and :meth:`count_all` reports it as a *type mismatch*. ``stream.core.columns``
turns raw feature values into the inputs these methods take.

>>> b = NumericBinning.from_values(np.arange(1.0, 101.0), n_bins=4)
>>> b.edges.tolist()
[25.75, 50.5, 75.25]
>>> b.count(np.array([1.0, 30.0, 99.0, 1e9, np.nan])).tolist()
[1, 1, 0, 2, 1]
>>> c = CategoricalBinning.from_values(["a", "a", "b", None], max_categories=1)
>>> c.categories, c.count(["a", "b", "z", None]).tolist()
(('a',), [1, 2, 1])
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from itertools import pairwise, repeat
from typing import Any, cast

import numpy as np
import numpy.typing as npt

__all__ = [
    "Binning",
    "CategoricalBinning",
    "NumericBinning",
    "NumericBinnings",
    "as_category",
    "binning_from_snapshot",
    "count_index",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

_F64 = np.dtype(np.float64)
_FLOAT_MAX = float(np.finfo(np.float64).max)
#: :meth:`NumericBinning.index` compares every value with every edge when there are at
#: most this many edges (beyond, a binary search's log2 steps win) ...
_COMPARE_MAX_EDGES = 48
#: ... and at least this many values (below, numpy's per-call overhead dominates).
_COMPARE_MIN_VALUES = 256
#: Values compared at a time, so the (k + 2) x n boolean temporary stays small.
_COMPARE_CHUNK = 1 << 16
#: :class:`NumericBinnings` stacks the rows of batches of at most this many values;
#: beyond, numpy's 3-d broadcast gets slower than one comparison per row (measured).
_STACK_MAX_VALUES = 1024


class NumericBinning:
    """Quantile bins over numbers, with open outer bins and a missing bucket (``NaN``)."""

    kind = "numeric"

    def __init__(self, edges: Sequence[float] | FloatArray) -> None:
        e = np.array(edges, dtype=np.float64)  # a copy, frozen below
        if e.ndim != 1 or (e.size and (not np.all(np.isfinite(e)) or np.any(e[1:] <= e[:-1]))):
            raise ValueError(f"edges must be finite and strictly increasing, got {e.tolist()}")
        e.flags.writeable = False
        self.edges: FloatArray = e
        # for the comparison path of index(): its thresholds (a column; None when there
        # are too many edges), and the bucket by number of thresholds a value is <= to
        k = int(e.size)
        self._size = k + 2
        self._thresholds: FloatArray | None = (
            np.concatenate([e, [_FLOAT_MAX, np.inf]])[:, None] if k <= _COMPARE_MAX_EDGES else None)
        self._bucket_of_count: IntArray = np.array([k + 1, k + 2, *range(k, -1, -1)], np.int64)

    @property
    def size(self) -> int:
        """Number of buckets, the missing bucket included."""
        return self._size

    @classmethod
    def from_values(cls, values: FloatArray, n_bins: int) -> NumericBinning:
        """Edges at the reference's ``1/n .. (n-1)/n`` quantiles, with ties merged.

        A constant feature gets a bin of its own value: ``(-inf, v-), (v-, v], (v, +inf)``,
        so a move in either direction shows.

        >>> NumericBinning.from_values(np.array([3.0, 3.0, 3.0]), 10).count(
        ...     np.array([2.0, 3.0, 4.0])).tolist()
        [1, 1, 1, 0]
        >>> NumericBinning.from_values(np.array([np.nan]), 10).edges.tolist()
        []
        """
        v = values[~np.isnan(values)]
        if v.size == 0:
            return cls([])
        qs = np.quantile(v, np.arange(1, n_bins) / n_bins)
        edges = np.unique(qs)
        if edges.size == 1 or v.min() == v.max():
            point = float(v[0]) if v.min() == v.max() else float(edges[0])
            edges = np.array([np.nextafter(point, -np.inf), point])
        return cls(edges)

    def index(self, values: FloatArray) -> IntArray:
        """The bucket of each value: ``NaN`` (missing) goes to the missing bucket, the
        last; ``+inf`` marks a value of the wrong type and gets :attr:`size`.

        A 1-D float64 array of at least ``_COMPARE_MIN_VALUES`` values (a batch), with at
        most ``_COMPARE_MAX_EDGES`` edges, is binned without a binary search, whose
        branches mispredict on noisy data: each value is compared with every threshold of
        ``t = (e1, ..., ek, M, +inf)``, ``M`` the largest finite float, and the number
        ``s`` of thresholds it is ``<=`` to gives its bucket through a table:

        - finite or ``-inf``: ``s = #{j : x <= e_j} + 2``, bucket ``k + 2 - s``, which is
          ``#{j : e_j < x}``, what ``searchsorted(side="left")`` gives;
        - ``NaN`` compares false with everything: ``s = 0``, bucket ``k + 1`` (missing);
        - ``+inf`` is ``<=`` to ``+inf`` only: ``s = 1``, bucket ``k + 2`` (mismatch).

        Other inputs take :meth:`index_searchsorted`; both give the same indices.

        >>> b = NumericBinning([1.0, 2.0])
        >>> x = np.array([-np.inf, 1.0, 1.5, 2.0, 3.0, np.nan, np.inf] * 40)  # 280 values
        >>> b.index(x)[:7].tolist()
        [0, 0, 1, 1, 2, 3, 4]
        """
        thresholds = self._thresholds
        if (thresholds is None or type(values) is not np.ndarray or values.ndim != 1
                or values.dtype != _F64 or values.size < _COMPARE_MIN_VALUES):
            return self.index_searchsorted(values)
        table = self._bucket_of_count
        if values.size <= _COMPARE_CHUNK:
            # (k + 2) x n booleans, summed down the rows in uint8 (k + 2 <= 50 fits)
            le = np.less_equal(values, thresholds).view(np.uint8)
            return cast(IntArray, table.take(np.add.reduce(le, axis=0, dtype=np.uint8)))
        out = np.empty(values.size, np.int64)
        for a in range(0, values.size, _COMPARE_CHUNK):  # bounds the temporary
            le = np.less_equal(values[a:a + _COMPARE_CHUNK], thresholds).view(np.uint8)
            table.take(np.add.reduce(le, axis=0, dtype=np.uint8), out=out[a:a + _COMPARE_CHUNK])
        return out

    def index_searchsorted(self, values: FloatArray) -> IntArray:
        """:meth:`index` by binary search (``np.searchsorted``), for any input: the
        reference implementation, and the path for short or non-float64 inputs.

        >>> NumericBinning([1.0, 2.0]).index_searchsorted([0.5, 2.5, np.nan]).tolist()
        [0, 2, 3]
        """
        idx = np.searchsorted(self.edges, values, side="left").astype(np.int64, copy=False)
        if not np.isfinite(values).all():  # rare: skip two masks in the common case
            idx[np.isnan(values)] = self.size - 1
            idx[np.isposinf(values)] = self.size
        return idx

    def count(self, values: FloatArray) -> IntArray:
        """Counts per bucket (length :attr:`size`), type mismatches left out."""
        return count_index(self.index(values), self.size)[0]

    def snapshot(self) -> dict[str, Any]:
        return {"type": "numeric", "edges": self.edges.tolist()}

    def labels(self) -> list[str]:
        """Human-readable bucket names, for reports.

        >>> NumericBinning([1.0, 2.0]).labels()
        ['(-inf, 1]', '(1, 2]', '(2, +inf)', 'missing']
        """
        e = [f"{x:g}" for x in self.edges]
        if not e:
            return ["(-inf, +inf)", "missing"]
        inner = [f"({a}, {b}]" for a, b in pairwise(e)]
        return [f"(-inf, {e[0]}]", *inner, f"({e[-1]}, +inf)", "missing"]


class NumericBinnings:
    """Several numeric binnings applied at once to a batch: row ``i`` of a
    ``(series x values)`` matrix is binned by ``binnings[i]``, exactly as
    :meth:`NumericBinning.index` would, in a handful of numpy calls for all the rows
    instead of a handful per row (a monitor bins every numeric feature of every batch;
    per-call overhead was most of the cost).

    The rows' thresholds (see :meth:`NumericBinning.index`) are stacked into one matrix,
    padded with ``NaN``, which no value is ``<=`` to, so padding leaves every count as it
    was; each row keeps its own count-to-bucket table.

    >>> bs = NumericBinnings([NumericBinning([1.0, 2.0]), NumericBinning([0.0])])
    >>> bs.index(np.array([[0.5, 1.5, 9.0, np.nan], [-1.0, 1.0, np.inf, 0.0]])).tolist()
    [[0, 1, 2, 3], [0, 1, 3, 0]]
    """

    def __init__(self, binnings: Sequence[NumericBinning]) -> None:
        self.binnings = tuple(binnings)
        k = [b.edges.size for b in self.binnings]
        self._count_width = max(k, default=-2) + 3  # the widest row's size + 1
        self._stacked = bool(k) and max(k) <= _COMPARE_MAX_EDGES
        if not self._stacked:
            return
        width = max(k) + 2
        thresholds = np.full((len(k), width), np.nan)
        tables = np.zeros((len(k), width + 1), np.int64)
        for i, b in enumerate(self.binnings):
            assert b._thresholds is not None
            thresholds[i, :k[i] + 2] = b._thresholds[:, 0]
            tables[i, :k[i] + 3] = b._bucket_of_count
        self._thresholds: FloatArray = thresholds[:, :, None]
        self._tables: IntArray = tables.ravel()
        # row i's buckets, then its mismatch index, in a slice of width + 1 (the widest
        # row's size + 1), for index()'s table and count_index()'s bincount alike
        self._offsets: IntArray = (np.arange(len(k), dtype=np.int64) * (width + 1))[:, None]

    def count_index(self, idx: IntArray) -> IntArray:
        """Per row of an :meth:`index` matrix, its bucket counts then its type mismatches,
        in one ``bincount``: row ``i`` of the result holds ``binnings[i].size`` counts,
        then the mismatch count (zero-padded to the widest row). The same numbers as
        :func:`count_index` row by row.

        >>> bs = NumericBinnings([NumericBinning([1.0]), NumericBinning([0.0, 5.0])])
        >>> bs.count_index(np.array([[0, 1, 1, 3], [0, 2, 3, 4]])).tolist()
        [[1, 2, 0, 1, 0], [1, 0, 1, 1, 1]]
        """
        rows, width = len(self.binnings), self._count_width
        if not self._stacked:
            out = np.zeros((rows, width), np.int64)
            for i, (b, row) in enumerate(zip(self.binnings, idx, strict=True)):
                out[i, :b.size + 1] = np.bincount(row, minlength=b.size + 1)
            return out
        flat = (idx + self._offsets).ravel()
        return np.bincount(flat, minlength=rows * width).reshape(rows, width)

    def index(self, matrix: FloatArray) -> IntArray:
        """The bucket of each value, row by row (a ``(series x values)`` int64 matrix).

        Batches of up to ``_STACK_MAX_VALUES`` values take the stacked comparison; longer
        ones are binned row by row, where numpy's broadcasting is faster
        (``bench/psi_cost.py``)."""
        rows = len(self.binnings)
        if matrix.ndim != 2 or matrix.shape[0] != rows:
            raise ValueError(f"expected a ({rows} x n) matrix, got shape {matrix.shape}")
        n = matrix.shape[1]
        if not rows or not n:
            return np.empty((rows, n), np.int64)
        if not self._stacked or n > _STACK_MAX_VALUES or matrix.dtype != _F64:
            return np.stack([b.index(row) for b, row in zip(self.binnings, matrix, strict=True)])
        le = np.less_equal(matrix[:, None, :], self._thresholds).view(np.uint8)
        return cast(IntArray, self._tables.take(
            np.add.reduce(le, axis=1, dtype=np.uint8) + self._offsets))


def as_category(value: Any) -> str | None:
    """The category string of a categorical value; ``None`` when it is not one.

    Strings stay as they are, booleans become ``"true"``/``"false"``.

    >>> as_category("DE"), as_category(True), as_category(3)
    ('DE', 'true', None)
    """
    t = type(value)
    if t is str:
        return value  # type: ignore[no-any-return]
    if t is bool:
        return "true" if value else "false"
    return None


_STRINGS_OR_NONE = frozenset({str, type(None)})
_BOOLS_OR_NONE = frozenset({bool, type(None)})


class CategoricalBinning:
    """Top-K reference categories, an ``other`` bucket and a missing bucket."""

    kind = "categorical"

    def __init__(self, categories: Sequence[str]) -> None:
        self.categories: tuple[str, ...] = tuple(categories)
        if len(set(self.categories)) != len(self.categories):
            raise ValueError(f"categories must be distinct, got {self.categories}")
        self._index = {c: i for i, c in enumerate(self.categories)}
        self._lookup: dict[str | None, int] = {c: i for i, c in enumerate(self.categories)}
        self._lookup[None] = len(self.categories) + 1
        # booleans are the categories "true" and "false" (``as_category``)
        other = len(self.categories)
        self._bool_lookup: dict[bool | None, int] = {
            True: self._index.get("true", other), False: self._index.get("false", other),
            None: len(self.categories) + 1}

    @property
    def size(self) -> int:
        return len(self.categories) + 2

    @classmethod
    def from_values(cls, values: Sequence[str | None], max_categories: int) -> CategoricalBinning:
        """The ``max_categories`` most frequent values (ties broken by name)."""
        counts = Counter(v for v in values if v is not None)
        top = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:max_categories]
        return cls([c for c, _ in top])

    def index(self, values: Sequence[Any]) -> IntArray:
        """The bucket of each value: ``None`` is missing, a category string (see
        :func:`as_category`) its category or ``other``, anything else (a type mismatch)
        gets :attr:`size`."""
        other, missing, mismatch = len(self.categories), len(self.categories) + 1, self.size
        if _STRINGS_OR_NONE.issuperset(map(type, values)):
            # the common case, at C speed: strings and missing values only
            return np.fromiter(map(self._lookup.get, values, repeat(other)), dtype=np.int64,
                               count=len(values))
        if _BOOLS_OR_NONE.issuperset(map(type, values)):  # a boolean label, at C speed
            return np.fromiter(map(self._bool_lookup.__getitem__, values), dtype=np.int64,
                               count=len(values))
        get = self._index.get
        return np.fromiter(
            (
                missing if v is None
                else get(v, other) if type(v) is str
                else mismatch if type(v) is not bool
                else get("true" if v else "false", other)
                for v in values
            ),
            dtype=np.int64,
            count=len(values),
        )

    def count(self, values: Sequence[Any]) -> IntArray:
        """Counts per bucket (length :attr:`size`), type mismatches left out."""
        return count_index(self.index(values), self.size)[0]

    def snapshot(self) -> dict[str, Any]:
        return {"type": "categorical", "categories": list(self.categories)}

    def labels(self) -> list[str]:
        return [*self.categories, "other", "missing"]


Binning = NumericBinning | CategoricalBinning


def count_index(idx: IntArray, size: int) -> tuple[IntArray, int]:
    """Bucket counts (length ``size``) and the number of type mismatches (index ``size``).

    >>> counts, mismatches = count_index(np.array([0, 2, 2, 3]), 3)
    >>> counts.tolist(), mismatches
    ([1, 0, 2], 1)
    """
    full = np.bincount(idx, minlength=size + 1)
    return full[:size], int(full[size])


def binning_from_snapshot(data: dict[str, Any]) -> Binning:
    """Rebuild a binning from its :meth:`snapshot`."""
    if data.get("type") == "numeric":
        return NumericBinning(data["edges"])
    if data.get("type") == "categorical":
        return CategoricalBinning(data["categories"])
    raise ValueError(f"unknown binning type {data.get('type')!r}")
