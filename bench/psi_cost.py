"""Cost of PSI per window, three ways, on the same data in the same run.

- ``ours``: the monitor's incremental path. Bin edges and reference counts are frozen
  once (``NumericBinning``); each window's values are binned once, batch by batch, all
  features of a batch in one call as the monitor does (``NumericBinnings.index`` on the
  batch's stacked columns, then its ``count_index``), counts accumulated, and
  ``psi()`` runs on the counts when the window closes. ``psi_share`` is the part of its
  cost spent in ``psi()`` itself (the rest is binning). The script checks that the
  stacked binning gives the same indices as the binary search
  (``NumericBinning.index_searchsorted``) on every batch (``index_identical`` in the
  output). Not timed here, as they are not PSI: the monitor's per-batch conversion of
  raw values and its out-of-range flags.
- ``recompute``: what a batch tool does every window, from raw values: reference quantile
  edges with ``np.quantile``, ``np.histogram`` of the reference and of the window, PSI with
  the same pseudo-count formula (an independent numpy implementation).
- ``evidently``: Evidently's PSI stattest, called per numeric column on the reference and
  current pandas DataFrames. Evidently >= 0.7 bins a numeric column with more than 20
  distinct values by Sturges' rule over reference + current, so its bins (and its values)
  differ from ours; only its cost is compared. Its API takes no frozen reference, so
  every call re-bins the reference too; that is its cost per window. The DataFrames are
  built once, before timing; the column look-ups left in the timing are about 0.3% of
  it. Skipped, with the error, if it cannot be imported (it is in the ``bench`` extra:
  ``pip install -e '.[bench]'``).

Before timing, the script asserts that ``ours`` and ``recompute`` agree within 1e-9 on
every (window, feature) given the same edges (``agree`` in the output), and that
``index`` and ``index_searchsorted`` give identical indices on every batch.

Prints one JSON object. Quote the ratios, not absolute times: machines are shared.

    python bench/psi_cost.py            # reference 10,000, windows of 1,000, 20 features, 50 windows
    python bench/psi_cost.py --smoke    # 2 features, 3 windows, for CI
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import orjson

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from stream.core.histogram import NumericBinning, NumericBinnings, count_index  # noqa: E402
from stream.core.psi import psi  # noqa: E402

FloatArray = np.ndarray[Any, np.dtype[np.float64]]
AGREE_TOLERANCE = 1e-9


def make_data(features: int, reference: int, window: int, windows: int,
              seed: int) -> tuple[list[FloatArray], list[list[FloatArray]]]:
    """Reference values per feature and window values per (window, feature).

    Features alternate normal, lognormal and uniform distributions; the second half of
    the windows is shifted (by 0.3 scale units) so PSI values span no drift and drift.
    """
    rng = np.random.default_rng(seed)

    def draw(f: int, n: int, shift: float) -> FloatArray:
        kind = f % 3
        if kind == 0:
            return rng.normal(shift, 1.0, n)
        if kind == 1:
            return rng.lognormal(shift, 0.5, n)
        return rng.uniform(0.0 + shift, 1.0 + shift, n)

    ref = [draw(f, reference, 0.0) for f in range(features)]
    cur = [[draw(f, window, 0.3 if w >= windows // 2 else 0.0) for f in range(features)]
           for w in range(windows)]
    return ref, cur


# -- ours: frozen bins, counts accumulated, psi() on counts ------------------------------


def freeze(ref: list[FloatArray], n_bins: int) -> list[tuple[NumericBinning, np.ndarray[Any, Any]]]:
    """What the reference profile holds: a binning and reference counts per feature."""
    out = []
    for values in ref:
        b = NumericBinning.from_values(values, n_bins)
        counts, _ = count_index(b.index(values), b.size)
        out.append((b, counts))
    return out


def ours_window(frozen: list[tuple[NumericBinning, np.ndarray[Any, Any]]],
                stacked: NumericBinnings, window: FloatArray, batch: int,
                smoothing: float) -> list[float]:
    """As the monitor does: each batch's numeric columns binned and counted at once
    (``NumericBinnings.index`` and ``count_index``, one call each for all features),
    counts accumulated, then ``psi()`` per feature."""
    acc = None
    for a in range(0, window.shape[1], batch):
        counts = stacked.count_index(stacked.index(window[:, a:a + batch]))
        acc = counts if acc is None else acc + counts
    assert acc is not None
    return [psi(ref_counts, row[:binning.size], smoothing)
            for row, (binning, ref_counts) in zip(acc, frozen, strict=True)]


# -- numpy recompute: everything from raw values, every window ----------------------------


def recompute_edges(ref: FloatArray, n_bins: int) -> FloatArray:
    return np.unique(np.quantile(ref, np.arange(1, n_bins) / n_bins))


def recompute_psi(ref: FloatArray, cur: FloatArray, n_bins: int, smoothing: float) -> float:
    inner = recompute_edges(ref, n_bins)
    bins = np.concatenate(([-np.inf], inner, [np.inf]))
    r = np.histogram(ref, bins)[0].astype(np.float64)
    c = np.histogram(cur, bins)[0].astype(np.float64)
    keep = (r > 0) | (c > 0)
    r, c = r[keep], c[keep]
    b = r.size
    p = (r + smoothing) / (r.sum() + smoothing * b)
    q = (c + smoothing) / (c.sum() + smoothing * b)
    return max(float(np.sum((q - p) * np.log(q / p))), 0.0)


def recompute_window(ref: list[FloatArray], window: list[FloatArray], n_bins: int,
                     smoothing: float) -> list[float]:
    return [recompute_psi(r, c, n_bins, smoothing) for r, c in zip(ref, window, strict=True)]


# -- Evidently ----------------------------------------------------------------------------


def load_evidently() -> dict[str, Any]:
    """Evidently's PSI stattest, or why it is unavailable."""
    try:
        # untyped third-party packages (no stubs): Any to mypy
        import evidently  # type: ignore[import-untyped, unused-ignore]
        import pandas as pd  # type: ignore[import-untyped, unused-ignore]
        try:
            from evidently.legacy.calculations.stattests import (  # type: ignore[import-untyped, unused-ignore]
                psi_stat_test,
            )
            from evidently.legacy.core import ColumnType  # type: ignore[import-untyped, unused-ignore]
            api = "evidently.legacy.calculations.stattests.psi_stat_test"
        except ImportError:
            from evidently.calculations.stattests import (  # type: ignore[import-untyped, no-redef, unused-ignore]
                psi_stat_test,
            )
            from evidently.core import ColumnType  # type: ignore[import-untyped, no-redef, unused-ignore]
            api = "evidently.calculations.stattests.psi_stat_test"
    except Exception as exc:  # any import failure is reported, never faked
        return {"available": False, "error": f"{type(exc).__name__}: {exc}"}
    return {"available": True, "version": evidently.__version__, "pandas_version": pd.__version__,
            "api": api, "pd": pd, "stattest": psi_stat_test, "numerical": ColumnType.Numerical}


def evidently_window(ev: dict[str, Any], ref_df: Any, cur_df: Any) -> list[float]:
    test, numerical = ev["stattest"], ev["numerical"]
    return [float(test(ref_df[col], cur_df[col], numerical, None).drift_score)
            for col in ref_df.columns]


# -- timing -------------------------------------------------------------------------------


def time_all(fn: Callable[[int], object], windows: int) -> float:
    """Seconds to run ``fn`` over every window once."""
    t0 = time.perf_counter()
    for w in range(windows):
        fn(w)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reference", type=int, default=10_000, help="reference values per feature")
    parser.add_argument("--window", type=int, default=1_000, help="values per window")
    parser.add_argument("--features", type=int, default=20)
    parser.add_argument("--windows", type=int, default=50)
    parser.add_argument("--batch", type=int, default=1_000,
                        help="values binned per call on our path (a window may span batches)")
    parser.add_argument("--bins", type=int, default=10, help="quantile bins (monitor.numeric_bins)")
    parser.add_argument("--repeats", type=int, default=5,
                        help="interleaved timing rounds; the median round is reported")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--smoke", action="store_true", help="tiny run for CI")
    args = parser.parse_args()
    if args.smoke:
        args.features, args.windows, args.repeats = 2, 3, 1
    smoothing = 0.5

    ref, cur = make_data(args.features, args.reference, args.window, args.windows, args.seed)
    frozen = freeze(ref, args.bins)
    stacked = NumericBinnings([b for b, _ in frozen])
    mats = [np.stack(cur[w]) for w in range(args.windows)]  # the monitor's stacked columns

    # Agreement: same edges, same PSI.
    max_diff = 0.0
    for (binning, _), r in zip(frozen, ref, strict=True):
        assert np.array_equal(binning.edges, recompute_edges(r, args.bins)), "edges differ"
    for w in range(args.windows):
        a = ours_window(frozen, stacked, mats[w], args.batch, smoothing)
        b = recompute_window(ref, cur[w], args.bins, smoothing)
        max_diff = max(max_diff, *(abs(x - y) for x, y in zip(a, b, strict=True)))
    assert max_diff <= AGREE_TOLERANCE, f"ours and recompute differ by {max_diff}"
    for w in range(args.windows):  # the binning path timed below = the binary search
        for start in range(0, args.window, args.batch):
            idx = stacked.index(mats[w][:, start:start + args.batch])
            for (binning, _), row, values in zip(frozen, idx, cur[w], strict=True):
                assert np.array_equal(
                    row, binning.index_searchsorted(values[start:start + args.batch])), \
                    "index and index_searchsorted differ"
    psi_ours = [ours_window(frozen, stacked, mats[w], args.batch, smoothing)
                for w in range(args.windows)]

    ev = load_evidently()
    window_counts = [[b.count(v) for (b, _), v in zip(frozen, cur[w], strict=True)]
                     for w in range(args.windows)]
    runs: dict[str, Callable[[int], object]] = {
        "ours": lambda w: ours_window(frozen, stacked, mats[w], args.batch, smoothing),
        # the psi() share of ours: counts already accumulated
        "ours_psi_only": lambda w: [psi(ref_counts, c, smoothing)
                                    for (_, ref_counts), c in zip(frozen, window_counts[w], strict=True)],
        "recompute": lambda w: recompute_window(ref, cur[w], args.bins, smoothing),
    }
    psi_evidently: list[list[float]] | None = None
    if ev["available"]:
        pd = ev["pd"]
        cols = [f"f{i:02d}" for i in range(args.features)]
        ref_df = pd.DataFrame(dict(zip(cols, ref, strict=True)))
        cur_dfs = [pd.DataFrame(dict(zip(cols, cur[w], strict=True))) for w in range(args.windows)]
        psi_evidently = [evidently_window(ev, ref_df, cur_dfs[w]) for w in range(args.windows)]  # warm-up
        runs["evidently"] = lambda w: evidently_window(ev, ref_df, cur_dfs[w])

    seconds: dict[str, list[float]] = {k: [] for k in runs}
    for _ in range(args.repeats):  # interleaved, so machine noise hits all methods alike
        for name, fn in runs.items():
            seconds[name].append(time_all(fn, args.windows))
    med = {k: statistics.median(v) for k, v in seconds.items()}

    def cost(name: str) -> dict[str, float]:
        per_window = med[name] / args.windows
        return {"per_window_us": per_window * 1e6,
                "per_window_feature_us": per_window / args.features * 1e6}

    half = args.windows // 2
    result: dict[str, Any] = {
        "benchmark": "psi_cost",
        "reference_values": args.reference,
        "window_values": args.window,
        "features": args.features,
        "windows": args.windows,
        "batch": args.batch,
        "bins": args.bins,
        "repeats": args.repeats,
        "agree": True,
        "index_identical": True,
        "max_abs_diff_ours_recompute": max_diff,
        "ours": {**cost("ours"), "psi_share": med["ours_psi_only"] / med["ours"]},
        "recompute": cost("recompute"),
        "evidently": {k: v for k, v in ev.items() if k in ("available", "error", "version",
                                                           "pandas_version", "api")},
        "ratios": {"recompute_over_ours": med["recompute"] / med["ours"],
                   "evidently_over_ours": med["evidently"] / med["ours"] if "evidently" in med else None},
        "psi_mean": {
            "ours_no_drift": float(np.mean(psi_ours[:half])) if half else None,
            "ours_drift": float(np.mean(psi_ours[half:])),
            "evidently_no_drift": float(np.mean(psi_evidently[:half]))
            if psi_evidently is not None and half else None,
            "evidently_drift": float(np.mean(psi_evidently[half:])) if psi_evidently is not None else None,
        },
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "numpy": np.__version__, "platform": platform.platform()},
    }
    if ev["available"]:
        result["evidently"].update(cost("evidently"))
        result["evidently"]["bins"] = "Sturges over reference + current, recomputed per window"
    print(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())


if __name__ == "__main__":
    main()
