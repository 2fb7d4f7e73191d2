"""Model-quality metrics (``stream/core/quality.py``): the same numbers as scikit-learn on
the same pairs (to 1e-9), ``None`` where a metric is undefined, per-pair errors, and the
window accumulator's bound and exact JSON snapshot."""

from __future__ import annotations

import json
import math
from itertools import pairwise
from typing import Any

import numpy as np
import pytest
from sklearn import metrics as skm
from sklearn.exceptions import UndefinedMetricWarning

from stream.core.quality import (
    QualityWindow,
    binary_metrics,
    multiclass_metrics,
    prediction_errors,
    regression_metrics,
    window_metrics,
)
from stream.errors import SnapshotError

TOL = 1e-9
EPS = float(np.finfo(np.float64).eps)
SIZES = (1, 2, 3, 7, 20, 101, 600)


def assert_close(ours: float | None, theirs: float, what: str = "") -> None:
    assert ours is not None, what
    assert not math.isnan(ours), what
    assert math.isclose(ours, theirs, rel_tol=TOL, abs_tol=TOL), f"{what}: {ours!r} != {theirs!r}"


def assert_no_nan(result: dict[str, float | None]) -> None:
    for key, value in result.items():
        assert value is None or math.isfinite(value), f"{key}={value!r}"


def sk_binary(y: np.ndarray, pred: np.ndarray, score: np.ndarray | None) -> dict[str, float | None]:
    out: dict[str, float | None] = {
        "accuracy": skm.accuracy_score(y, pred),
        "precision": skm.precision_score(y, pred, zero_division=0),
        "recall": skm.recall_score(y, pred, zero_division=0),
        "f1": skm.f1_score(y, pred, zero_division=0),
        "roc_auc": None, "log_loss": None, "brier": None,
    }
    if score is not None:
        if 0 < y.sum() < y.size:
            out["roc_auc"] = skm.roc_auc_score(y, score)
        out["log_loss"] = skm.log_loss(y, score, labels=[0, 1])
        out["brier"] = skm.brier_score_loss(y, score, pos_label=1)
    return out


def assert_matches_sklearn(ours: dict[str, float | None], theirs: dict[str, float | None],
                           n: int, what: str) -> None:
    assert ours["n"] == n
    assert_no_nan(ours)
    for key, value in theirs.items():
        if value is None:
            assert ours[key] is None, f"{what} {key}: {ours[key]!r}, expected None"
        else:
            assert_close(ours[key], float(value), f"{what} {key}")


def scores(kind: str, rng: np.random.Generator, n: int) -> np.ndarray:
    if kind == "uniform":
        return rng.random(n)
    if kind == "rounded":  # heavy ties
        return np.round(rng.random(n), 1)
    if kind == "same":
        return np.full(n, 0.3)
    if kind == "extreme":  # exact 0 and 1 exercise log loss clipping
        return rng.choice([0.0, 1.0, 1e-17, 1.0 - 1e-17, 0.5, 0.25], n)
    if kind == "skewed":
        return rng.beta(0.3, 3.0, n)
    raise AssertionError(kind)


SCORE_KINDS = ("uniform", "rounded", "same", "extreme", "skewed")


@pytest.mark.parametrize("seed", range(16))
def test_binary_matches_sklearn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = SIZES[seed % len(SIZES)] if seed < len(SIZES) else int(rng.integers(1, 400))
    for kind in SCORE_KINDS:
        y = (rng.random(n) < rng.uniform(0.05, 0.95)).astype(int)
        s = scores(kind, rng, n)
        threshold = float(rng.choice([0.5, 0.3, 0.7]))
        derived = (s >= threshold).astype(int)
        ours = binary_metrics(y, score=s, threshold=threshold)
        assert_matches_sklearn(ours, sk_binary(y, derived, s), n, f"{kind} derived")
        given = np.where(rng.random(n) < 0.3, 1 - derived, derived)
        ours = binary_metrics(y, y_pred=given, score=s, threshold=threshold)
        assert_matches_sklearn(ours, sk_binary(y, given, s), n, f"{kind} given")
        no_score = binary_metrics(y, y_pred=given)
        assert {k: no_score[k] for k in ("roc_auc", "log_loss", "brier")} == dict.fromkeys(
            ("roc_auc", "log_loss", "brier"))
        assert {k: no_score[k] for k in ("accuracy", "precision", "recall", "f1", "n")} == {
            k: ours[k] for k in ("accuracy", "precision", "recall", "f1", "n")}


def test_roc_auc_equals_pairwise_count_with_ties() -> None:
    """An independent oracle: the share of (positive, negative) pairs ordered right, a tie
    counting one half."""
    rng = np.random.default_rng(5)
    for _ in range(30):
        n = int(rng.integers(2, 60))
        y = rng.integers(0, 2, n)
        y[0], y[1] = 0, 1
        s = np.round(rng.random(n), 1)
        pos, neg = s[y == 1][:, None], s[y == 0][None, :]
        expected = float(np.mean((pos > neg) + 0.5 * (pos == neg)))
        auc = binary_metrics(y, score=s)["roc_auc"]
        assert_close(auc, expected)
        assert_close(auc, skm.roc_auc_score(y, s))


def test_roc_auc_all_same_scores_is_one_half_and_single_class_is_none() -> None:
    assert binary_metrics([0, 1, 1, 0, 1], score=[0.4] * 5)["roc_auc"] == 0.5
    assert binary_metrics([0, 1], score=[0.0, 0.0])["roc_auc"] == 0.5
    assert binary_metrics([0, 1], score=[0.9, 0.1])["roc_auc"] == 0.0
    assert binary_metrics([0, 1], score=[0.1, 0.9])["roc_auc"] == 1.0
    for y in ([1, 1, 1], [0, 0, 0], [1]):
        s = np.linspace(0.0, 1.0, len(y))
        m = binary_metrics(y, score=s)
        assert m["roc_auc"] is None
        assert_matches_sklearn(m, sk_binary(np.array(y), (s >= 0.5).astype(int), s), len(y), str(y))
    with pytest.warns(UndefinedMetricWarning):  # what None stands for (NaN in sklearn 1.9)
        assert math.isnan(skm.roc_auc_score([1, 1, 1], [0.1, 0.2, 0.3]))


def test_log_loss_clips_extreme_scores_like_sklearn() -> None:
    m = binary_metrics([1, 0], score=[0.0, 1.0])
    assert_close(m["log_loss"], -math.log(EPS))
    assert_close(m["log_loss"], skm.log_loss([1, 0], [0.0, 1.0], labels=[0, 1]))
    perfect = binary_metrics([1, 0], score=[1.0, 0.0])["log_loss"]
    assert_close(perfect, skm.log_loss([1, 0], [1.0, 0.0], labels=[0, 1]))
    assert perfect is not None and 0.0 < perfect < 1e-15  # clipped at 1 - eps, not 0
    # a score just inside eps is clipped too, on the side sklearn clips it (1 - s, then clip)
    for s in (1e-300, 5e-17, 1.0 - 5e-17, 0.5):
        for y in (0, 1):
            assert_close(binary_metrics([y], score=[s])["log_loss"],
                         skm.log_loss([y], [s], labels=[0, 1]), f"y={y} s={s}")


def test_zero_division_gives_zero_like_sklearn() -> None:
    y, pred = np.array([0, 0, 0]), np.array([0, 0, 0])
    m = binary_metrics(y, y_pred=pred)
    assert (m["precision"], m["recall"], m["f1"], m["accuracy"]) == (0.0, 0.0, 0.0, 1.0)
    assert_matches_sklearn(m, sk_binary(y, pred, None), 3, "all negative")
    y, pred = np.array([1, 1, 0]), np.array([0, 0, 0])
    assert_matches_sklearn(binary_metrics(y, y_pred=pred), sk_binary(y, pred, None), 3, "none predicted")


def test_empty_window_is_all_none() -> None:
    assert binary_metrics([], score=[]) == {
        "accuracy": None, "precision": None, "recall": None, "f1": None,
        "roc_auc": None, "log_loss": None, "brier": None, "n": 0}
    assert multiclass_metrics([], []) == {"accuracy": None, "macro_f1": None, "n": 0}
    assert regression_metrics([], []) == {"mae": None, "rmse": None, "r2": None, "n": 0}


def test_binary_input_checks() -> None:
    with pytest.raises(ValueError, match="0/1"):
        binary_metrics([0, 2], y_pred=[0, 1])
    with pytest.raises(ValueError, match="0/1"):
        binary_metrics([0, 1], y_pred=["a", "b"])
    with pytest.raises(ValueError, match="lengths differ"):
        binary_metrics([0, 1, 1], score=[0.1, 0.2])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        binary_metrics([0, 1], score=[0.1, 1.2])
    with pytest.raises(ValueError, match="finite"):
        binary_metrics([0, 1], score=[0.1, float("nan")])
    with pytest.raises(ValueError, match="need y_pred"):
        binary_metrics([0, 1])
    # bools and floats 0.0/1.0 are 0/1 labels
    assert binary_metrics([True, False], y_pred=[1.0, 0.0])["accuracy"] == 1.0


@pytest.mark.parametrize("seed", range(12))
def test_multiclass_matches_sklearn(seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    n = SIZES[seed % len(SIZES)]
    classes = np.array(["cat", "dog", "eel", "fox", "gnu"])
    y = classes[rng.integers(0, 3, n)]
    pred = np.where(rng.random(n) < 0.6, y, classes[rng.integers(0, 5, n)])
    pred[0] = "zebra"  # a class seen only in predictions
    for yt, yp in ((y, pred), (list(y), list(pred)), (y.astype(object), pred.astype(object)),
                   (rng.integers(0, 4, n), rng.integers(1, 6, n))):
        ours = multiclass_metrics(yt, yp)
        assert ours["n"] == n
        assert_close(ours["accuracy"], skm.accuracy_score(yt, yp), "accuracy")
        assert_close(ours["macro_f1"], skm.f1_score(yt, yp, average="macro", zero_division=0), "f1")


def test_multiclass_labels_keep_their_type_and_need_not_sort() -> None:
    # 1 and "1" are different labels (np.asarray would make both "1")
    assert multiclass_metrics([1, "1"], ["1", 1])["accuracy"] == 0.0
    assert multiclass_metrics(np.array([1, 2]), np.array(["1", "2"])) == {
        "accuracy": 0.0, "macro_f1": 0.0, "n": 2}
    assert prediction_errors("multiclass", np.array([1, 2]), y_pred=np.array(["1", "2"])).tolist() == [1, 1]
    # None and str do not sort together: compare with sklearn on a renaming to strings
    y = ["a", None, "b", None, "a", ("t", 1)]
    p = [None, None, "b", "a", "c", ("t", 1)]
    rename = {"a": "a", None: "none", "b": "b", "c": "c", ("t", 1): "tuple"}
    ours = multiclass_metrics(y, p)
    sy, sp = [rename[v] for v in y], [rename[v] for v in p]
    assert_close(ours["accuracy"], skm.accuracy_score(sy, sp))
    assert_close(ours["macro_f1"], skm.f1_score(sy, sp, average="macro", zero_division=0))


@pytest.mark.parametrize("seed", range(12))
def test_regression_matches_sklearn(seed: int) -> None:
    rng = np.random.default_rng(200 + seed)
    n = SIZES[seed % len(SIZES)] + 1
    y = rng.normal(rng.uniform(-100, 100), rng.uniform(0.01, 50), n)
    if seed % 3 == 0:
        y = np.round(y)  # ties in the target
    pred = y + rng.normal(0.0, rng.uniform(0.01, 80), n)
    ours = regression_metrics(y, pred)
    assert ours["n"] == n
    assert_close(ours["mae"], skm.mean_absolute_error(y, pred), "mae")
    assert_close(ours["rmse"], skm.root_mean_squared_error(y, pred), "rmse")
    assert_close(ours["r2"], skm.r2_score(y, pred), "r2")
    assert_close(regression_metrics(list(y), list(pred))["r2"], skm.r2_score(y, pred), "r2 list")


def test_regression_r2_undefined_is_none() -> None:
    for y, p in (([3.0, 3.0, 3.0], [3.0, 2.0, 4.0]), ([0.1] * 7, [0.1] * 7), ([5.0], [4.0])):
        m = regression_metrics(y, p)
        assert m["r2"] is None
        assert_no_nan(m)
        assert_close(m["mae"], skm.mean_absolute_error(y, p))
        assert_close(m["rmse"], skm.root_mean_squared_error(y, p))
    with pytest.raises(ValueError, match="finite"):
        regression_metrics([1.0, float("inf")], [1.0, 2.0])


def test_prediction_errors() -> None:
    y = np.array([0, 1, 1, 0])
    s = np.array([0.6, 0.9, 0.5, 0.1])
    assert prediction_errors("binary", y, score=s).tolist() == [1.0, 0.0, 0.0, 0.0]
    assert prediction_errors("binary", y, score=s, threshold=0.55).tolist() == [1.0, 0.0, 1.0, 0.0]
    # a given y_pred wins over the score
    assert prediction_errors("binary", y, y_pred=[0, 0, 1, 1], score=s).tolist() == [0.0, 1.0, 0.0, 1.0]
    errs = prediction_errors("multiclass", ["a", "b", "c"], y_pred=["a", "c", "c"])
    assert errs.dtype == np.float64 and errs.tolist() == [0.0, 1.0, 0.0]
    assert prediction_errors("regression", [1.0, -2.0], y_pred=[3.5, -1.0]).tolist() == [2.5, 1.0]
    # consistent with the window metrics
    rng = np.random.default_rng(3)
    y, p = rng.normal(size=50), rng.normal(size=50)
    assert_close(float(prediction_errors("regression", y, y_pred=p).mean()),
                 skm.mean_absolute_error(y, p))
    yb, sb = rng.integers(0, 2, 50), rng.random(50)
    assert_close(1.0 - float(prediction_errors("binary", yb, score=sb).mean()),
                 skm.accuracy_score(yb, sb >= 0.5))
    with pytest.raises(ValueError):
        prediction_errors("binary", y)
    with pytest.raises(ValueError):
        prediction_errors("regression", [1.0], score=[0.5])
    with pytest.raises(ValueError, match="task"):
        prediction_errors("ranking", [1.0], y_pred=[1.0])  # type: ignore[arg-type]


def test_window_metrics_dispatches() -> None:
    assert window_metrics("binary", [0, 1], score=[0.2, 0.7]) == binary_metrics([0, 1], score=[0.2, 0.7])
    assert window_metrics("multiclass", ["a"], y_pred=["b"]) == multiclass_metrics(["a"], ["b"])
    assert window_metrics("regression", [1.0, 2.0], y_pred=[1.0, 1.0]) == regression_metrics(
        [1.0, 2.0], [1.0, 1.0])
    with pytest.raises(ValueError, match="binary tasks only"):
        window_metrics("multiclass", ["a"], y_pred=["a"], score=[0.5])
    with pytest.raises(ValueError, match="need y_pred"):
        window_metrics("regression", [1.0])
    with pytest.raises(ValueError, match="task"):
        window_metrics("bogus", [1.0], y_pred=[1.0])  # type: ignore[arg-type]


def filled_binary_window(max_pairs: int = 1000) -> tuple[QualityWindow, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(9)
    y = rng.integers(0, 2, 300)
    s = np.round(rng.random(300), 2) + 0.0
    s[:3] = [0.1 + 0.2, 1.0 / 3.0, 0.0]  # floats with long reprs
    lat = rng.exponential(30.0, 300)
    w = QualityWindow(max_pairs=max_pairs)
    for a, b in pairwise((0, 1, 50, 50, 170, 300)):  # includes an empty batch
        w.add(y[a:b], score=s[a:b], latency_seconds=lat[a:b] if a >= 50 else None)
    return w, y, s, lat


def test_window_metrics_equal_the_functions_on_all_pairs() -> None:
    w, y, s, lat = filled_binary_window()
    assert w.n == 300 and w.overflow == 0
    assert w.metrics("binary", threshold=0.4) == binary_metrics(y, score=s, threshold=0.4)
    q = w.latency_quantiles()
    assert q == {"p50": float(np.percentile(lat[50:], 50)), "p95": float(np.percentile(lat[50:], 95))}


def test_window_overflow_is_counted_and_first_pairs_kept() -> None:
    w = QualityWindow(max_pairs=5)
    assert w.add([1.0, 2.0, 3.0], y_pred=[1.0, 2.0, 2.0]) == 3
    assert w.add([4.0, 5.0, 6.0, 7.0], y_pred=[4.0, 5.0, 0.0, 0.0]) == 2
    assert (w.n, w.overflow) == (5, 2)
    assert w.add([8.0], y_pred=[8.0]) == 0
    assert (w.n, w.overflow) == (5, 3)
    assert w.metrics("regression") == regression_metrics([1, 2, 3, 4, 5], [1, 2, 2, 4, 5])
    snap = w.snapshot()
    assert snap["overflow"] == 3 and len(snap["y_true"]) == 5


def test_window_empty_and_column_checks() -> None:
    w = QualityWindow(max_pairs=10)
    assert w.metrics("binary")["accuracy"] is None
    assert w.metrics("regression") == {"mae": None, "rmse": None, "r2": None, "n": 0}
    assert w.latency_quantiles() == {"p50": None, "p95": None}
    w.add(["a", "b"], y_pred=["a", "a"])
    with pytest.raises(ValueError, match="same columns"):
        w.add(["a"], y_pred=["a"], score=[0.5])
    with pytest.raises(ValueError, match="same columns"):
        w.add(["a"])
    with pytest.raises(ValueError, match="labels must be"):
        w.add([("a", 1)], y_pred=["a"])
    with pytest.raises(ValueError, match="finite"):
        w.add(["a"], y_pred=["a"], latency_seconds=[float("nan")])
    assert w.n == 2  # rejected batches leave nothing behind
    with pytest.raises(ValueError):
        QualityWindow(max_pairs=0)


def test_window_mixed_label_batches_stay_distinct() -> None:
    w = QualityWindow()
    w.add([1, 2], y_pred=[1, 1])
    w.add(["1", "2"], y_pred=["1", 2])
    assert w.metrics("multiclass")["accuracy"] == 0.5
    assert QualityWindow.restore(json.loads(json.dumps(w.snapshot()))).metrics("multiclass") == \
        w.metrics("multiclass")


def json_round_trip(w: QualityWindow) -> QualityWindow:
    return QualityWindow.restore(json.loads(json.dumps(w.snapshot(), allow_nan=False)))


def test_snapshot_round_trip_is_exact() -> None:
    w, *_ = filled_binary_window(max_pairs=250)
    assert w.overflow == 50
    w2 = json_round_trip(w)
    assert w2.snapshot() == w.snapshot()
    assert w2.snapshot()["score"][:2] == [0.1 + 0.2, 1.0 / 3.0]
    assert (w2.n, w2.overflow, w2.max_pairs) == (250, 50, 250)
    assert w2.metrics("binary") == w.metrics("binary")
    assert w2.latency_quantiles() == w.latency_quantiles()
    # the restored window goes on where the original was
    w.add([1], score=[0.5])
    w2.add([1], score=[0.5])
    assert w2.snapshot() == w.snapshot()

    m = QualityWindow(max_pairs=4)
    m.add(["x", "y"], y_pred=["x", "x"])
    m.add(np.array([True, False], dtype=object), y_pred=[True, True])
    m2 = json_round_trip(m)
    assert m2.snapshot() == m.snapshot()
    assert m2.metrics("multiclass") == m.metrics("multiclass")

    r = QualityWindow()
    r.add(np.array([1.5, -0.0, 1e-300]), y_pred=[2, 0, 1], latency_seconds=[0.25, 1.0, 3.0])
    r2 = json_round_trip(r)
    assert r2.snapshot() == r.snapshot()
    assert r2.metrics("regression") == r.metrics("regression")

    empty = QualityWindow(max_pairs=7)
    assert json_round_trip(empty).snapshot() == empty.snapshot()


def test_restore_rejects_wrong_or_corrupt_snapshots() -> None:
    w, *_ = filled_binary_window()
    snap = w.snapshot()
    for bad in ({**snap, "kind": "adwin"}, {**snap, "version": 2}, {}):
        with pytest.raises(SnapshotError, match="not a quality window snapshot"):
            QualityWindow.restore(bad)
    corrupt: list[dict[str, Any]] = [
        {k: v for k, v in snap.items() if k != "y_true"},
        {**snap, "score": snap["score"][:-1]},
        {**snap, "max_pairs": 10},
        {**snap, "score": [2.0] * len(snap["score"])},
        {**snap, "y_true": [[1]] * len(snap["y_true"])},
    ]
    for bad in corrupt:
        with pytest.raises(SnapshotError, match="corrupt"):
            QualityWindow.restore(bad)
