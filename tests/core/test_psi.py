"""PSI (``stream/core/psi.py``): the smoothed formula on hand-computable histograms, its
properties, its errors, and its noise floor under no drift.

Expected values come from the formula of the module docstring written out again here with
``math.log``, or from closed forms derived by hand; never from running ``psi`` itself.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from stream.core.histogram import NumericBinning
from stream.core.psi import psi, psi_noise_floor


def psi_by_hand(reference: list[int], current: list[int], alpha: float = 0.5) -> float:
    """PSI = sum (q_i - p_i) ln(q_i / p_i), p_i = (r_i + a) / (n + a B), q_i likewise,
    over the B buckets non-empty on at least one side."""
    kept = [(r, c) for r, c in zip(reference, current, strict=True) if r or c]
    b = len(kept)
    n = sum(reference)
    m = sum(current)
    total = 0.0
    for r, c in kept:
        p = (r + alpha) / (n + alpha * b)
        q = (c + alpha) / (m + alpha * b)
        total += (q - p) * math.log(q / p)
    return total


def two_bucket_closed_form(r1: int, r2: int, c1: int, c2: int, alpha: float) -> float:
    """Two buckets, equal totals N:
    PSI = (c1 - r1) / (N + 2a) * ln((c1 + a)(r2 + a) / ((r1 + a)(c2 + a)))."""
    assert r1 + r2 == c1 + c2
    d = r1 + r2 + 2 * alpha
    return (c1 - r1) / d * math.log((c1 + alpha) * (r2 + alpha) / ((r1 + alpha) * (c2 + alpha)))


@pytest.mark.parametrize(
    ("reference", "current", "alpha", "expected"),
    [
        # p = (90.5, 10.5)/101, q = (50.5, 50.5)/101: PSI = 40/101 * ln(90.5 / 10.5)
        ([90, 10], [50, 50], 0.5, 40 / 101 * math.log(90.5 / 10.5)),
        # p = (100.5, 0.5)/101, q = (99.5, 1.5)/101: PSI = 1/101 * ln(1.5 * 100.5 / (0.5 * 99.5))
        ([100, 0], [99, 1], 0.5, 1 / 101 * math.log(1.5 * 100.5 / (0.5 * 99.5))),
        # smoothing 1 (Fiddler's +1): p = (31, 11)/42, q = (11, 31)/42
        ([30, 10], [10, 30], 1.0, 40 / 42 * math.log(31 / 11)),
        ([7, 3], [2, 8], 0.25, two_bucket_closed_form(7, 3, 2, 8, 0.25)),
    ],
    ids=["90-10_vs_50-50", "emptied_bucket", "alpha_1", "closed_form"],
)
def test_psi_hand_computed(reference, current, alpha, expected):
    assert psi(reference, current, smoothing=alpha) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize(
    ("reference", "current", "alpha"),
    [
        ([10, 20, 30, 40], [40, 30, 20, 10], 0.5),
        ([1000, 1, 0, 3], [5, 900, 2, 0], 0.5),
        ([5, 0, 5, 0, 5], [0, 5, 5, 5, 0], 0.1),
        ([3, 4, 5], [30, 40, 50], 2.0),  # same shape, 10x the events
        ([120, 30, 7, 0, 1], [100, 45, 3, 2, 0], 0.5),  # unequal totals
    ],
)
def test_psi_matches_the_formula_written_out(reference, current, alpha):
    assert psi(reference, current, smoothing=alpha) == pytest.approx(
        psi_by_hand(reference, current, alpha), rel=1e-12, abs=1e-15
    )


def test_psi_accepts_numpy_counts():
    r, c = np.array([90, 10], dtype=np.int64), np.array([50, 50], dtype=np.int64)
    assert psi(r, c) == pytest.approx(40 / 101 * math.log(90.5 / 10.5), rel=1e-12)


@pytest.mark.parametrize(
    "counts",
    [[50, 50], [1, 0, 0, 7], [1000, 3, 0, 0, 12], [1], [0, 0, 5]],
)
def test_identical_histograms_give_zero(counts):
    assert psi(counts, counts) == 0.0


@pytest.mark.parametrize(
    ("reference", "scale"),
    [([10, 20, 70], 3), ([1, 2, 3, 4], 25)],
)
def test_same_proportions_without_smoothing_effect(reference, scale):
    """Scaled counts have the same shape; the only PSI left is from the pseudo-count, which
    the formula gives exactly."""
    current = [x * scale for x in reference]
    got = psi(reference, current)
    assert got == pytest.approx(psi_by_hand(reference, current), rel=1e-12)
    assert 0 < got < 0.01


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ([90, 10], [50, 50]),
        ([10, 20, 30, 40], [40, 30, 20, 10]),
        ([100, 0, 0], [0, 50, 50]),
        ([1, 2, 3, 0, 94], [30, 30, 20, 20, 0]),
    ],
)
def test_psi_is_symmetric_when_totals_are_equal(a, b):
    assert sum(a) == sum(b)
    assert psi(a, b) == pytest.approx(psi(b, a), rel=1e-12)


@pytest.mark.parametrize(
    ("reference", "current"),
    [
        ([100, 0], [50, 50]),  # a bucket fills
        ([50, 50], [100, 0]),  # a bucket empties
        ([500, 300, 200], [0, 600, 400]),
    ],
)
def test_smoothing_bounds_psi_of_an_emptied_bucket(reference, current):
    values = [psi(reference, current, smoothing=a) for a in (0.01, 0.1, 0.5, 1.0, 5.0)]
    assert all(math.isfinite(v) and v > 0 for v in values)
    # More smoothing pulls both histograms towards uniform: strictly smaller PSI.
    assert values == sorted(values, reverse=True)
    assert len(set(values)) == len(values)
    for a, v in zip((0.01, 0.1, 0.5, 1.0, 5.0), values, strict=True):
        assert v == pytest.approx(psi_by_hand(reference, current, a), rel=1e-12)


@pytest.mark.parametrize(
    ("reference", "current", "compact_reference", "compact_current"),
    [
        ([10, 0, 20], [15, 0, 15], [10, 20], [15, 15]),
        ([0, 0, 5, 5, 0], [0, 0, 1, 9, 0], [5, 5], [1, 9]),
        ([3, 0, 0, 0, 0, 0, 7], [0, 0, 0, 0, 0, 0, 10], [3, 7], [0, 10]),
    ],
)
def test_buckets_empty_on_both_sides_do_not_count(
    reference, current, compact_reference, compact_current
):
    """B counts only buckets non-empty somewhere, so all-zero buckets change nothing."""
    assert psi(reference, current) == psi(compact_reference, compact_current)
    assert psi(reference, current) == pytest.approx(
        psi_by_hand(compact_reference, compact_current), rel=1e-12
    )


@pytest.mark.parametrize(
    ("reference", "current", "smoothing", "message"),
    [
        ([1, 2], [1, 2, 3], 0.5, "reference has 2 buckets but current has 3"),
        ([1, 2, 3], [1], 0.5, "both must come from the same binning"),
        ([[1, 2]], [[1, 2]], 0.5, "same binning"),
        ([1, -1], [1, 1], 0.5, "counts must be non-negative"),
        ([1, 1], [3, -2], 0.5, "counts must be non-negative"),
        ([0, 0], [1, 1], 0.5, "the reference histogram is empty"),
        ([1, 1], [0, 0], 0.5, "the current histogram is empty"),
        ([], [], 0.5, "histogram is empty"),
        ([1, 1], [1, 1], 0.0, "smoothing must be > 0, got 0.0"),
        ([1, 1], [1, 1], -0.5, "smoothing must be > 0, got -0.5"),
    ],
)
def test_psi_errors(reference, current, smoothing, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        psi(reference, current, smoothing=smoothing)


@pytest.mark.parametrize("seed", range(5))
def test_psi_equals_the_formula_exactly_on_random_histograms(seed: int) -> None:
    """psi() leaves out buckets empty on both sides with a shortcut for the usual case (at
    most one such bucket); on random histograms with none, one or many of them, and
    zeros on one side only, it gives psi_by_hand's value to the last bit (same
    operations, same order)."""
    rng = np.random.default_rng(seed)
    for _ in range(400):
        k = int(rng.integers(1, 15))
        r = rng.choice([0, 0, 0, 1, 2, 7, 50, 1000], size=k)
        c = rng.choice([0, 0, 0, 1, 3, 9, 80], size=k)
        if rng.random() < 0.3:
            r[-1] = c[-1] = 0  # the missing bucket of a clean reference and window
        if r.sum() == 0 or c.sum() == 0:
            continue
        alpha = float(rng.choice([0.5, 1.0, 0.1, 2.0]))
        expected = psi_by_hand(r.tolist(), c.tolist(), alpha)
        assert psi(r, c, smoothing=alpha) == expected
        assert psi(r.tolist(), c.tolist(), smoothing=alpha) == expected
        assert psi(tuple(r.tolist()), c, smoothing=alpha) == expected


def test_psi_does_not_modify_its_inputs() -> None:
    r, c = [5, 0, 3, 0], [2, 0, 0, 4]
    psi(r, c)
    assert (r, c) == ([5, 0, 3, 0], [2, 0, 0, 4])


def test_psi_rejects_nan_smoothing():
    with pytest.raises(ValueError, match="smoothing must be > 0"):
        psi([1, 1], [1, 2], smoothing=float("nan"))


@pytest.mark.parametrize(
    ("n", "m", "b", "expected"),
    [
        (10_000, 1_000, 11, 10 * (1 / 10_000 + 1 / 1_000)),
        (500, 500, 2, 1 / 500 + 1 / 500),
        (0, 100, 10, 0.0),
        (100, 0, 10, 0.0),
        (100, 100, 1, 0.0),
    ],
)
def test_psi_noise_floor_formula(n, m, b, expected):
    assert psi_noise_floor(n, m, b) == pytest.approx(expected, rel=1e-12)


def test_mean_psi_of_same_distribution_is_near_the_noise_floor():
    """Two samples of one distribution: PSI ~ (1/n + 1/m) chi2(B - 1), whose mean is the
    noise floor. 50 trials put the sample mean within a few percent; allow 30%."""
    rng = np.random.default_rng(20240611)
    binning = NumericBinning(np.linspace(-1.6, 1.6, 9))  # 10 value bins (+ missing)
    n = m = 20_000
    trials = 50
    values = [
        psi(binning.count(rng.normal(size=n)), binning.count(rng.normal(size=m)))
        for _ in range(trials)
    ]
    floor = psi_noise_floor(n, m, 10)  # the missing bucket is empty on both sides
    assert floor == pytest.approx(9 * 2 / 20_000)
    assert abs(np.mean(values) - floor) <= 0.3 * floor
    # and a real shift stands far above it
    shifted = psi(binning.count(rng.normal(size=n)), binning.count(rng.normal(0.2, 1.0, size=m)))
    assert shifted > 10 * floor
