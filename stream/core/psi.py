r"""Population Stability Index between a reference histogram and a current one.

.. math::

    \mathrm{PSI} = \sum_i (q_i - p_i) \ln \frac{q_i}{p_i}, \qquad
    p_i = \frac{r_i + \alpha}{n + \alpha B}, \quad q_i = \frac{c_i + \alpha}{m + \alpha B}

where ``r`` and ``c`` are the reference and current counts per bucket (missing bucket
included: a change in the missing rate is a change in distribution), ``n`` and ``m`` their
totals, and ``B`` the number of buckets that are non-empty in either histogram. Buckets
empty on both sides carry no information and are left out.

**Smoothing.** An empty bucket on one side makes the raw PSI infinite, so every tool
smooths. We add a pseudo-count ``alpha`` (default 0.5, the Jeffreys / Krichevsky-Trofimov
prior) to every bucket of both histograms, rather than replacing zeros by a fixed
epsilon (Evidently's 1e-4, Frouros' ~2e-308):

- a fixed epsilon makes the PSI of an emptied bin depend on the epsilon, not on the data
  (``ln(0.1 / 1e-4) = 6.9`` against ``ln(0.1 / 2e-308) = 707``);
- a pseudo-count is scale-aware: its effect is ``alpha / n``, so it vanishes as windows
  grow, and it is the posterior mean of the bucket probability under a Jeffreys prior;
- it is the choice of Fiddler (``+1``), the only tool in our survey that documents one.

**Noise.** With no drift at all, PSI is not zero: for large windows it is about
``(1/n + 1/m) * chi2(B - 1)``, with mean ``(B - 1)(1/n + 1/m)``. :func:`psi_noise_floor`
returns that mean; window reports carry it so a threshold can be judged against it.

>>> psi([50, 50], [50, 50])
0.0
>>> round(psi([90, 10], [50, 50]), 4)
0.8531
>>> round(psi([100, 0], [99, 1], smoothing=0.5), 4)
0.011
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

__all__ = ["psi", "psi_noise_floor"]

Counts = Sequence[int] | npt.NDArray[np.int64]


def psi(reference: Counts, current: Counts, smoothing: float = 0.5) -> float:
    """PSI of ``current`` against ``reference`` counts (same buckets, same order).

    Raises ``ValueError`` for mismatched lengths, negative counts, an empty side, or a
    smoothing that is not positive.

    >>> psi([1, 2], [1, 2, 3])
    Traceback (most recent call last):
    ...
    ValueError: reference has 2 buckets but current has 3; both must come from the same binning
    >>> psi([0, 0], [1, 1])
    Traceback (most recent call last):
    ...
    ValueError: the reference histogram is empty; PSI needs at least one value on each side
    """
    # Histograms have a dozen buckets: plain floats beat numpy's per-call overhead here
    # (about 5x, measured in bench/psi_cost.py).
    r = reference.tolist() if isinstance(reference, np.ndarray) else list(reference)
    c = current.tolist() if isinstance(current, np.ndarray) else list(current)
    if len(r) != len(c) or (r and isinstance(r[0], list)):
        raise ValueError(
            f"reference has {len(r)} buckets but current has {len(c)}; "
            "both must come from the same binning"
        )
    if not smoothing > 0:  # also refuses NaN
        raise ValueError(f"smoothing must be > 0, got {smoothing}")
    if r and (min(r) < 0 or min(c) < 0):
        raise ValueError("counts must be non-negative")
    n, m = sum(r), sum(c)
    if n == 0:
        raise ValueError("the reference histogram is empty; PSI needs at least one value on each side")
    if m == 0:
        raise ValueError("the current histogram is empty; PSI needs at least one value on each side")
    # Leave out the buckets empty on both sides. There is usually at most one (the
    # missing bucket, when the reference has no missing value): found at C speed.
    zeros = r.count(0)
    if zeros == 1:
        i = r.index(0)
        if c[i] == 0:
            del r[i], c[i]
    elif zeros and 0 in c:
        kept = [(ri, ci) for ri, ci in zip(r, c, strict=True) if ri > 0 or ci > 0]
        r, c = [ri for ri, _ in kept], [ci for _, ci in kept]
    b = len(r)
    dn, dm = n + smoothing * b, m + smoothing * b
    log = math.log
    value = 0.0
    for ri, ci in zip(r, c, strict=True):
        p = (ri + smoothing) / dn
        q = (ci + smoothing) / dm
        value += (q - p) * log(q / p)
    return max(value, 0.0)


def psi_noise_floor(n_reference: int, n_current: int, n_buckets: int) -> float:
    """Expected PSI between two samples of the *same* distribution: ``(B-1)(1/n + 1/m)``.

    >>> round(psi_noise_floor(10_000, 1_000, 11), 4)
    0.011
    """
    if n_reference <= 0 or n_current <= 0 or n_buckets < 2:
        return 0.0
    return (n_buckets - 1) * (1.0 / n_reference + 1.0 / n_current)
