"""The quality monitor (``stream/core/quality_monitor.py``): each window's metrics are
scikit-learn's on exactly that window's pairs, the join does not care about arrival order,
outputs do not depend on batching, event-time windows and late pairs, SLO / baseline /
ADWIN quality alerts, label SLIs, invalid pairs, feature rows, and exact snapshots."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from jsonschema import Draft202012Validator
from sklearn import metrics as skm

from stream.config import MonitorConfig
from stream.core.alerts import alert_id
from stream.core.columns import columns_from_events
from stream.core.events import normalize_event
from stream.core.quality_monitor import QualityMonitor, QualityOutput
from stream.errors import SnapshotError

T0 = 1_700_000_000.0  # a multiple of every window length used here
TOL = 1e-9
SCHEMA_DIR = Path(__file__).resolve().parents[2] / "schemas"
Event = dict[str, Any]
#: A label event: (event_id, label, ts).
Lab = tuple[str, Any, float]
#: ``("pred", [events])``, ``("label", [labels])`` or ``("advance", now)``.
Op = tuple[str, Any]
#: What one joined pair should be, by event id: (y_true, y_pred, score, latency).
Truth = dict[str, tuple[Any, Any, float | None, float]]

METRIC_KEYS = {
    "binary": {"accuracy", "precision", "recall", "f1", "roc_auc", "log_loss", "brier", "n"},
    "multiclass": {"accuracy", "macro_f1", "n"},
    "regression": {"mae", "rmse", "r2", "n"},
}
LABEL_KEYS = {"coverage", "latency_p50_seconds", "latency_p95_seconds", "pending_predictions",
              "early_labels", "joined", "expired_predictions", "labels_without_prediction",
              "duplicate_labels", "duplicate_predictions", "evicted_predictions", "evicted_labels",
              "invalid_pairs", "late_pairs"}


# -- events and driving ----------------------------------------------------------------


def pred(eid: str, ts: float, prediction: Any, version: str | None = "v1") -> Event:
    return normalize_event({"event_id": eid, "model": "m", "model_version": version, "ts": ts,
                            "features": {"x": 1.0}, "prediction": prediction}, "prediction")


def feature(eid: str, ts: float) -> Event:
    return normalize_event({"event_id": eid, "model": "m", "model_version": "v1", "ts": ts,
                            "features": {"x": 2.0}}, "feature")


def label_batch(labels: list[Lab]) -> dict[str, list[Any]]:
    return {"event_id": [e for e, _, _ in labels], "label": [lab for _, lab, _ in labels],
            "ts": [t for _, _, t in labels]}


def strict_json(value: Any) -> Any:
    """A JSON round trip that refuses NaN and infinities (what any consumer can read)."""
    return json.loads(json.dumps(value, allow_nan=False))


def run(qm: QualityMonitor, ops: list[Op], size: int | list[int] | None = None) -> QualityOutput:
    """Feed ``ops`` in order, each in batches of ``size`` (cycling through a list of sizes;
    ``None``: each op in one batch). Reports and alerts come back strict-JSON round-tripped."""
    sizes = [size] if isinstance(size, int) else size
    out = QualityOutput()
    turn = 0
    for kind, items in ops:
        if kind == "advance":
            out.extend(qm.advance(items))
            continue
        a = 0
        while a < len(items):
            step = len(items) if sizes is None else sizes[turn % len(sizes)]
            turn += 1
            part = items[a:a + step]
            a += step
            if kind == "pred":
                out.extend(qm.add_predictions(columns_from_events(part)))
            else:
                out.extend(qm.add_labels(label_batch(part)))
    out.reports = strict_json(out.reports)
    out.alerts = strict_json(out.alerts)
    return out


@pytest.fixture(scope="module")
def contracts() -> Any:
    """Every report validates against ``schemas/quality-report.json`` and every alert
    against ``schemas/alert.json``, as a quality alert of model ``m``."""
    validators = {}
    for name in ("quality-report", "alert"):
        schema = json.loads((SCHEMA_DIR / f"{name}.json").read_text(encoding="utf-8"))
        Draft202012Validator.check_schema(schema)
        validators[name] = Draft202012Validator(schema)

    def check(reports: list[dict[str, Any]], alerts: list[dict[str, Any]]) -> None:
        for r in reports:
            errors = [e.message for e in validators["quality-report"].iter_errors(r)]
            assert not errors, (errors, r)
            assert set(r["labels"]) == LABEL_KEYS and set(r["metrics"]) == METRIC_KEYS[r["task"]]
        for a in alerts:
            errors = [e.message for e in validators["alert"].iter_errors(a)]
            assert not errors, (errors, a)
            assert a["kind"] == "quality" and a["model"] == "m", a
            assert a["alert_id"] == alert_id("quality", "m", a["model_version"], a["feature"],
                                             a["detector"])
            assert a["ts"] == a["window"]["end"], a

    return check


def transitions(alerts: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    return [(a["detector"], a["feature"], a["transition"]) for a in alerts]


# -- 1. metrics are scikit-learn's on each window's pairs -------------------------------

CLASSES = ("ant", "bee", "cat", "dog")
THRESHOLD = 0.6  # rounded scores hit it exactly: ">=" matters


def make_stream(task: str, variant: str, seed: int, n: int) -> tuple[list[Event], list[Lab], Truth]:
    """``n`` predictions of one version and their labels (in random order), and the pair
    each label must make."""
    rng = np.random.default_rng(seed)
    events: list[Event] = []
    labels: list[Lab] = []
    truth: Truth = {}
    for i in range(n):
        eid, ts = f"e{i}", T0 + 0.5 * i
        latency = float(np.round(rng.exponential(30.0), 3))
        score: float | None = None
        if task == "binary":
            s = float(np.round(rng.random(), 1))  # heavy ties
            y = bool(rng.random() < 0.15 + 0.7 * s)
            y_true: Any = int(y)
            if variant == "given":  # the predicted label, sometimes not what the score says
                y_pred: Any = (s >= 0.5) != bool(rng.random() < 0.2)
                prediction: Any = {"label": y_pred, "score": s}
                score = s
            elif variant == "derived":
                y_pred, prediction, score = s >= THRESHOLD, {"score": s}, s
            else:  # label only: no score metrics
                y_pred = bool(rng.random() < 0.5)
                prediction = {"label": y_pred}
            y_pred = int(y_pred)
        elif task == "multiclass":
            y_true = str(rng.choice(CLASSES, p=[0.4, 0.3, 0.2, 0.1]))
            # a class that is only ever predicted ("eel") counts in the macro F1 too
            y_pred = y_true if rng.random() < 0.6 else str(rng.choice([*CLASSES, "eel"]))
            prediction = y_pred
        else:
            y = float(rng.normal(50.0, 10.0))
            y_true = round(y) if i % 5 == 0 else y  # integer labels are numbers too
            y_pred = float(y + rng.normal(0.0, 3.0))
            prediction = y_pred
        events.append(pred(eid, ts, prediction))
        # binary labels as booleans (odd seeds) or as 0/1 (even seeds)
        sent = bool(y_true) if task == "binary" and seed % 2 else y_true
        labels.append((eid, sent, ts + latency))
        truth[eid] = (y_true, y_pred, score, latency)
    order = rng.permutation(n)
    return events, [labels[k] for k in order], truth


def sk_metrics(task: str, yt: list[Any], yp: list[Any], score: list[float | None]
               ) -> dict[str, float | None]:
    if task == "binary":
        y, p = np.asarray(yt, dtype=int), np.asarray(yp, dtype=int)
        out: dict[str, float | None] = {
            "accuracy": skm.accuracy_score(y, p),
            "precision": skm.precision_score(y, p, zero_division=0),
            "recall": skm.recall_score(y, p, zero_division=0),
            "f1": skm.f1_score(y, p, zero_division=0),
            "roc_auc": None, "log_loss": None, "brier": None,
        }
        if all(s is not None for s in score):
            s = np.asarray(score, dtype=np.float64)
            if 0 < y.sum() < y.size:
                out["roc_auc"] = skm.roc_auc_score(y, s)
            out["log_loss"] = skm.log_loss(y, s, labels=[0, 1])
            out["brier"] = skm.brier_score_loss(y, s, pos_label=1)
    elif task == "multiclass":
        out = {"accuracy": skm.accuracy_score(yt, yp),
               "macro_f1": skm.f1_score(yt, yp, average="macro", zero_division=0)}
    else:
        out = {"mae": skm.mean_absolute_error(yt, yp),
               "rmse": math.sqrt(skm.mean_squared_error(yt, yp)),
               "r2": skm.r2_score(yt, yp)}
    out["n"] = len(yt)
    return out


def assert_metrics(ours: dict[str, Any], theirs: dict[str, float | None], what: str) -> None:
    assert set(ours) == set(theirs), what
    assert ours["n"] == theirs["n"], what
    for key, want in theirs.items():
        got = ours[key]
        if want is None:
            assert got is None, f"{what} {key}: {got!r}, expected None"
        else:
            assert got is not None and math.isclose(got, float(want), rel_tol=TOL, abs_tol=TOL), \
                f"{what} {key}: {got!r} != {want!r}"


def join_order(ops: list[Op]) -> list[str]:
    """The order in which pairs join (nothing expires, no duplicates): when the second of
    the prediction and its label arrives."""
    seen: set[str] = set()
    order: list[str] = []
    for kind, items in ops:
        for item in items:
            eid = item["event_id"] if kind == "pred" else item[0]
            if eid in seen:
                order.append(eid)
            seen.add(eid)
    return order


TASKS = [("binary", "given"), ("binary", "derived"), ("binary", "label_only"),
         ("multiclass", "-"), ("regression", "-")]


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize(("task", "variant"), TASKS)
def test_window_metrics_equal_sklearn_on_the_windows_pairs(task, variant, seed, contracts):
    W, n = 100, 520
    events, labels, truth = make_stream(task, variant, seed, n)
    cfg = MonitorConfig(quality_window_size=W, quality_min_pairs=10, quality_threshold=THRESHOLD)
    qm = QualityMonitor("m", cfg)
    # some labels arrive before their prediction: those join in prediction order
    ops: list[Op] = [("pred", events[:250]), ("label", labels[:200]), ("pred", events[250:]),
                     ("label", labels[200:])]
    out = run(qm, ops, size=[97, 89, 1, 250])
    assert out.joined == n and out.invalid_pairs == 0
    assert len(out.reports) == n // W
    contracts(out.reports, out.alerts)
    order, label_ts = join_order(ops), {e: t for e, _, t in labels}
    assert order != [e for e, _, _ in labels]
    for w, report in enumerate(out.reports):
        window = order[w * W:(w + 1) * W]  # windows of W pairs in join order
        yt, yp, sc, lat = zip(*(truth[e] for e in window), strict=True)
        what = f"{task}/{variant} seed {seed} window {w}"
        assert report["task"] == task and report["model"] == "m" and report["model_version"] == "v1"
        assert_metrics(report["metrics"], sk_metrics(task, list(yt), list(yp), list(sc)), what)
        assert report["window"] == {"kind": "count", "index": w, "count": W,
                                    "start": min(label_ts[e] for e in window),
                                    "end": max(label_ts[e] for e in window)}
        assert report["evaluated"] is True
        # label latency of exactly this window's pairs
        p50, p95 = np.percentile(np.asarray(lat), [50.0, 95.0])
        assert report["labels"]["latency_p50_seconds"] == pytest.approx(p50, rel=TOL, abs=1e-6)
        assert report["labels"]["latency_p95_seconds"] == pytest.approx(p95, rel=TOL, abs=1e-6)


# -- 2. order independence and batch invariance -------------------------------------------


def interleave(events: list[Event], labels: list[Lab], seed: int) -> list[Op]:
    """Predictions and labels as a random merge of the two sequences, in small runs."""
    rng = np.random.default_rng(seed)
    ops: list[Op] = []
    i = j = 0
    while i < len(events) or j < len(labels):
        take_pred = j >= len(labels) or (i < len(events) and rng.random() < 0.5)
        k = int(rng.integers(1, 30))
        if take_pred:
            ops.append(("pred", events[i:i + k]))
            i += k
        else:
            ops.append(("label", labels[j:j + k]))
            j += k
    return ops


ORDERS = ["labels_after", "labels_before", "shuffled", "interleaved"]


@pytest.mark.parametrize("order", ORDERS)
def test_every_pair_joins_whatever_the_arrival_order(order):
    """One window of all pairs: the same pairs join, hence the same metrics, in any order
    (labels before their predictions wait within ``label_grace_seconds``)."""
    n = 400
    events, shuffled, truth = make_stream("binary", "derived", 4, n)
    in_order = sorted(shuffled, key=lambda lab: int(lab[0][1:]))
    ops: list[Op] = {
        "labels_after": [("pred", events), ("label", in_order)],
        "labels_before": [("label", in_order), ("pred", events)],
        "shuffled": [("pred", events), ("label", shuffled)],
        "interleaved": interleave(events, shuffled, 5),
    }[order]
    qm = QualityMonitor("m", MonitorConfig(quality_window_size=n, quality_threshold=THRESHOLD,
                                           label_grace_seconds=600.0))
    out = run(qm, ops, size=37)
    assert out.joined == n
    c = qm.join.counters
    assert (c["joined"], qm.join.pending, qm.join.early_labels) == (n, 0, 0)
    assert c["labels_without_prediction"] == c["expired_predictions"] == 0
    (report,) = out.reports
    yt, yp, sc, _ = zip(*truth.values(), strict=True)
    assert_metrics(report["metrics"], sk_metrics("binary", list(yt), list(yp), list(sc)), order)
    assert report["labels"]["coverage"] == 1.0


def mixed_ops(seed: int = 7, blocks: int = 36, per_block: int = 40) -> list[Op]:
    """Two binary versions; good, then bad (12 blocks), then good accuracy again. Labels of
    a block arrive shuffled after the next block's predictions, some before their own
    (early); with unlabelled predictions (expire), duplicate labels, labels without a
    prediction, feature rows, predictions without the score (invalid) and non-binary
    labels (invalid)."""
    rng = np.random.default_rng(seed)
    ops: list[Op] = []
    late: list[Lab] = []
    for b in range(blocks):
        acc = 0.45 if blocks // 3 <= b < 2 * blocks // 3 else 0.95
        events: list[Event] = []
        labels: list[Lab] = []
        for j in range(per_block):
            i = b * per_block + j
            ts = T0 + i + float(rng.uniform(-2.0, 2.0))
            version = "v1" if rng.random() < 0.7 else "v2"
            s = float(np.round(rng.random(), 1))
            y = s >= 0.5
            truth: Any = y if rng.random() < acc else not y
            prediction: Any = {"label": y} if i % 97 == 50 else {"label": y, "score": s}
            events.append(pred(f"e{i}", ts, prediction, version))
            if i % 17 == 5:
                events.append(feature(f"f{i}", ts))
            if i % 89 == 3:
                truth = "unknown"
            if rng.random() < 0.9:  # the rest never get a label and expire
                labels.append((f"e{i}", truth, ts + float(rng.exponential(15.0))))
            if i % 53 == 7:
                labels.append((f"e{i}", truth, ts + 30.0))  # duplicate
            if i % 61 == 2:
                labels.append((f"x{i}", True, ts + 5.0))  # no such prediction
        order = rng.permutation(len(labels))
        labels = [labels[k] for k in order]
        cut = len(labels) // 7
        ops += [("label", labels[:cut]), ("pred", events), ("label", late)]
        late = labels[cut:]
    ops += [("label", late), ("advance", T0 + blocks * per_block + 1000.0)]
    return ops


BASE: dict[str, Any] = dict(quality_min_pairs=20, quality_baseline_windows=2, quality_slo={"accuracy": 0.8},
                            adwin_chunk=2, adwin_quiet_evaluations=2, label_ttl_seconds=200.0,
                            label_grace_seconds=100.0)
CONFIGS = {
    "count": MonitorConfig(quality_window_size=50, **BASE),
    "time": MonitorConfig(quality_window_kind="time", quality_window_seconds=60.0,
                          allowed_lateness_seconds=45.0, **BASE),
}
SPLITS: dict[str, int | list[int]] = {"1": 1, "7": 7, "64": 64, "uneven": [3, 50, 1, 17, 120]}


@pytest.fixture(scope="module")
def uninterrupted() -> dict[str, tuple[list[Op], QualityOutput]]:
    out = {}
    for name, cfg in CONFIGS.items():
        ops = mixed_ops()
        out[name] = (ops, run(QualityMonitor("m", cfg), ops))
    return out


@pytest.mark.parametrize("config", list(CONFIGS))
def test_mixed_stream_exercises_the_monitor(config, uninterrupted, contracts):
    """The batch-invariance stream is not trivial: both versions report, all three
    detectors fire and resolve, invalid pairs, expiry, duplicates, and (time) late pairs."""
    _, out = uninterrupted[config]
    contracts(out.reports, out.alerts)
    assert {r["model_version"] for r in out.reports} == {"v1", "v2"}
    assert len(out.reports) >= 12
    assert {(a["detector"], a["transition"]) for a in out.alerts} >= {
        (d, t) for d in ("slo", "baseline", "adwin") for t in ("firing", "resolved")}
    last = out.reports[-1]["labels"]
    assert out.invalid_pairs > 0 and last["invalid_pairs"] > 0
    for counter in ("expired_predictions", "duplicate_labels", "labels_without_prediction"):
        assert last[counter] > 0, counter
    if config == "time":
        assert out.late_pairs > 0 and last["late_pairs"] > 0
        for version in ("v1", "v2"):
            idx = [r["window"]["index"] for r in out.reports if r["model_version"] == version]
            assert idx == sorted(idx) and len(set(idx)) == len(idx)
    else:
        assert out.late_pairs == 0


@pytest.mark.parametrize("split", list(SPLITS))
@pytest.mark.parametrize("config", list(CONFIGS))
def test_batch_invariance(config, split, uninterrupted):
    """The same predictions and labels in other batch sizes: the same reports (label SLIs
    included) and alerts, in the same order."""
    ops, want = uninterrupted[config]
    got = run(QualityMonitor("m", CONFIGS[config]), ops, SPLITS[split])
    assert got.reports == want.reports
    assert got.alerts == want.alerts
    assert (got.joined, got.invalid_pairs, got.late_pairs) == (want.joined, want.invalid_pairs,
                                                               want.late_pairs)


# -- 3. event-time windows ------------------------------------------------------------


TIME = MonitorConfig(quality_window_kind="time", quality_window_seconds=100.0,
                     allowed_lateness_seconds=10.0, quality_min_pairs=1, quality_adwin=False,
                     quality_margin=0.0)


def binary_pairs(ids: list[str], pred_ts: list[float]) -> list[Op]:
    return [("pred", [pred(e, t, {"label": True, "score": 0.9}) for e, t in zip(ids, pred_ts,
                                                                               strict=True)])]


def test_time_windows_by_label_time_close_when_the_watermark_passes_their_end():
    qm = QualityMonitor("m", TIME)
    ids = [f"e{i}" for i in range(8)]
    run(qm, binary_pairs(ids, [T0 - 50.0] * 8))  # predicted in the previous window

    def labels(*items: tuple[int, float]) -> QualityOutput:
        return run(qm, [("label", [(f"e{i}", True, T0 + t) for i, t in items])])

    # window 0 is [T0, T0 + 100) of label time, whatever the prediction time
    assert labels((0, 10.0), (1, 20.0), (2, 99.5)).reports == []
    assert labels((3, 105.0)).reports == []  # watermark 105: 95 < 100, still open
    assert labels((4, 109.999)).reports == []
    out = labels((5, 110.0))  # watermark minus lateness reaches the end of window 0
    (report,) = out.reports
    k = int(T0 // 100)
    assert report["window"] == {"kind": "time", "index": k, "start": T0, "end": T0 + 100.0,
                                "count": 3}
    assert report["labels"]["late_pairs"] == 0
    # a label for window 0 now is late: counted, not in any window
    out = labels((6, 50.0))
    assert (out.late_pairs, out.joined, out.reports) == (1, 1, [])
    # advance() moves the clock too: window 1 closes with its 3 pairs
    out = qm.advance(T0 + 210.0)
    (report,) = out.reports
    assert report["window"]["index"] == k + 1 and report["window"]["count"] == 3
    assert report["labels"]["late_pairs"] == 1 and qm.late_pairs == 1
    # a prediction's time moves the watermark as well
    assert labels((7, 250.0)).reports == []
    out = run(qm, [("pred", [pred("q", T0 + 400.0, {"label": True, "score": 0.9})])])
    (report,) = out.reports
    assert report["window"]["index"] == k + 2 and report["window"]["count"] == 1
    assert qm.late_pairs == 1


@pytest.mark.parametrize("size", [1, 2])
def test_a_new_versions_pairs_for_a_closed_window_are_late_too(size):
    """The watermark is the model's: a version first seen after a window closed does not
    reopen it (in any batching)."""
    qm = QualityMonitor("m", TIME)
    run(qm, [*binary_pairs(["a"], [T0]), ("label", [("a", True, T0 + 500.0)])])
    ops: list[Op] = [("pred", [pred(f"n{i}", T0 + 20.0, {"label": True, "score": 0.9}, "v2")
                               for i in range(2)]),
                     ("label", [("n0", True, T0 + 30.0), ("n1", False, T0 + 40.0)])]
    out = run(qm, ops, size=size)
    assert (out.joined, out.late_pairs, out.reports) == (2, 2, [])


def test_time_windows_close_in_order_and_keep_versions_apart(contracts):
    qm = QualityMonitor("m", TIME)
    events = [pred(f"e{i}", T0 + i, {"label": True, "score": 0.9}, "v1" if i % 2 else "v2")
              for i in range(40)]
    labs = [(f"e{i}", True, T0 + 30.0 * i) for i in range(40)]  # 3 or 4 per window
    out = run(qm, [("pred", events), ("label", labs), ("advance", T0 + 5000.0)], size=5)
    for version in ("v1", "v2"):
        reports = [r for r in out.reports if r["model_version"] == version]
        idx = [r["window"]["index"] for r in reports]
        assert idx == sorted(idx) and len(set(idx)) == len(idx)
        assert sum(r["window"]["count"] for r in reports) == 20
    assert out.late_pairs == 0 and sum(r["window"]["count"] for r in out.reports) == 40
    contracts(out.reports, out.alerts)


# -- 4. quality alerts ------------------------------------------------------------------


class Windows:
    """Consecutive batches of predictions and their labels, one count window each."""

    def __init__(self) -> None:
        self.i = 0

    def binary(self, n: int, correct: int, rng: np.random.Generator | None = None) -> list[Op]:
        """``n`` pairs of which exactly ``correct`` are right (predicted label True)."""
        hits = np.arange(n) < correct
        if rng is not None:
            rng.shuffle(hits)
        return self._ops([{"label": True} for _ in range(n)], [bool(h) for h in hits])

    def regression(self, n: int, error: float) -> list[Op]:
        """``n`` pairs whose absolute error is ``error`` (MAE = RMSE = error)."""
        return self._ops([error] * n, [0.0] * n)

    def _ops(self, predictions: list[Any], truth: list[Any]) -> list[Op]:
        ids = [f"e{self.i + k}" for k in range(len(predictions))]
        ts = [T0 + self.i + k for k in range(len(predictions))]
        self.i += len(predictions)
        return [("pred", [pred(e, t, p) for e, t, p in zip(ids, ts, predictions, strict=True)]),
                ("label", [(e, y, t + 10.0) for e, y, t in zip(ids, truth, ts, strict=True)])]


QUIET: dict[str, Any] = dict(quality_adwin=False, quality_margin=0.0, quality_min_pairs=10)

SLO_CASES = {
    # metric, bound, hysteresis, per-window value -> expected transition per window
    "accuracy_floor": ("accuracy", 0.8, 0.05,
                       [0.9, 0.7, 0.82, 0.83, 0.85, 0.6, 0.9],
                       [None, "firing", None, None, "resolved", "firing", "resolved"]),
    "mae_ceiling": ("mae", 2.0, 0.1,
                    [1.0, 2.5, 1.9, 1.85, 1.7, 3.0],
                    [None, "firing", None, None, "resolved", "firing"]),
}


@pytest.mark.parametrize("case", list(SLO_CASES))
def test_slo_alert_fires_below_the_floor_and_resolves_past_it_with_hysteresis(case, contracts):
    metric, bound, hysteresis, values, expected = SLO_CASES[case]
    cfg = MonitorConfig(quality_window_size=100, quality_slo={metric: bound},
                        quality_hysteresis=hysteresis, **QUIET)
    qm, w = QualityMonitor("m", cfg), Windows()
    got, firing, episodes = [], [], []
    for value in values:
        ops = w.binary(100, round(value * 100)) if metric == "accuracy" else w.regression(100, value)
        out = run(qm, ops)
        contracts(out.reports, out.alerts)
        (report,) = out.reports
        assert report["metrics"][metric] == pytest.approx(value, abs=TOL)
        got.append(out.alerts[0]["transition"] if out.alerts else None)
        assert len(out.alerts) <= 1
        for a in out.alerts:
            assert (a["detector"], a["feature"], a["severity"]) == ("slo", metric, "critical")
            assert a["threshold"] == bound and a["value"] == pytest.approx(value, abs=TOL)
            assert a["window"] == report["window"] and a["model_version"] == "v1"
            episodes.append(a["episode"])
        firing.append(report["alerts_firing"])
    assert got == expected
    state = [0]
    for t in expected:
        state.append(1 if t == "firing" else 0 if t == "resolved" else state[-1])
    assert firing == state[1:]
    assert episodes == [1 + k // 2 for k in range(len(episodes))]


def test_baseline_alert_is_relative_to_the_mean_of_the_first_windows(contracts):
    cfg = MonitorConfig(quality_window_size=100, quality_min_pairs=10, quality_adwin=False,
                        quality_baseline_windows=2, quality_margin=0.1, quality_hysteresis=0.02)
    qm, w = QualityMonitor("m", cfg), Windows()
    # baseline (0.9 + 0.8) / 2 = 0.85; bound 0.765; resolves above 0.765 * 1.02 = 0.7803
    accs = [0.9, 0.8, 0.78, 0.76, 0.78, 0.79, 0.6]
    expected = [None, None, None, "firing", None, "resolved", "firing"]
    got = []
    for k, acc in enumerate(accs):
        out = run(qm, w.binary(100, round(acc * 100)))
        contracts(out.reports, out.alerts)
        (report,) = out.reports
        ref = report["reference"]
        assert ref["source"] == "first_windows"
        if k == 0:
            assert ref["metrics"] is None
        else:
            assert ref["metrics"] == pytest.approx({"accuracy": 0.85}, abs=TOL)  # no score: no AUC
        for a in out.alerts:
            assert (a["detector"], a["feature"], a["severity"]) == ("baseline", "accuracy", "warning")
            assert a["threshold"] == pytest.approx(0.765, abs=TOL)
            assert a["value"] == pytest.approx(acc, abs=TOL)
        got.append(out.alerts[0]["transition"] if out.alerts else None)
    assert got == expected


def test_a_given_reference_quality_is_the_baseline():
    cfg = MonitorConfig(quality_window_size=100, quality_min_pairs=10, quality_adwin=False)
    qm, w = QualityMonitor("m", cfg), Windows()
    qm.set_reference_quality("v1", {"accuracy": 0.9})
    out = run(qm, w.binary(100, 80))  # below 0.9 * (1 - 0.1) = 0.81 from the first window
    assert out.reports[0]["reference"] == {"metrics": {"accuracy": 0.9}, "source": "reference"}
    assert transitions(out.alerts) == [("baseline", "accuracy", "firing")]


def test_adwin_fires_after_a_sustained_accuracy_drop_and_resolves_when_quiet(contracts):
    quiet = 2
    cfg = MonitorConfig(quality_window_size=100, quality_min_pairs=10, quality_margin=0.0,
                        adwin_chunk=10, adwin_quiet_evaluations=quiet)
    qm, w = QualityMonitor("m", cfg), Windows()
    rng = np.random.default_rng(11)
    phases = [0.95] * 15 + [0.5] * 15
    detections, alerts = [], []
    for k, acc in enumerate(phases):
        out = run(qm, w.binary(100, round(acc * 100), rng))
        contracts(out.reports, out.alerts)
        detections.append(out.adwin_detections)
        alerts += [(k, a["transition"]) for a in out.alerts]
        for a in out.alerts:
            assert (a["detector"], a["feature"], a["severity"]) == ("adwin", "error", "warning")
            assert a["value"] is None and a["threshold"] is None
    assert sum(detections[:15]) == 0  # no false alarm while stable
    first = next(k for k, d in enumerate(detections) if d)
    assert 15 <= first <= 17
    # the lifecycle: fire on a detection, resolve after `quiet` windows without one
    expected, firing, calm = [], False, 0
    for k, d in enumerate(detections):
        if d:
            if not firing:
                expected.append((k, "firing"))
            firing, calm = True, 0
        elif firing:
            calm += 1
            if calm >= quiet:
                expected.append((k, "resolved"))
                firing, calm = False, 0
    assert alerts == expected
    assert "resolved" in {t for _, t in alerts}


@pytest.mark.parametrize("kind", ["count", "time"])
def test_windows_below_min_pairs_change_no_alert(kind, contracts):
    """Every detector armed, a drastic drop: windows smaller than quality_min_pairs report
    (evaluated: false) but neither fire, resolve, nor feed the baseline."""
    cfg = MonitorConfig(quality_window_kind=kind, quality_window_size=20,
                        quality_window_seconds=10.0, allowed_lateness_seconds=0.0,
                        quality_min_pairs=50, quality_baseline_windows=1,
                        quality_slo={"accuracy": 0.8}, adwin_chunk=2)
    qm, w = QualityMonitor("m", cfg), Windows()
    rng = np.random.default_rng(3)
    ops = [op for acc in [1.0] * 5 + [0.2] * 10 for op in w.binary(20, round(acc * 20), rng)]
    out = run(qm, [*ops, ("advance", T0 + 10000.0)])
    assert out.reports and out.adwin_detections > 0
    assert all(not r["evaluated"] and r["alerts_firing"] == 0 for r in out.reports)
    assert all(r["reference"]["metrics"] is None for r in out.reports)
    assert out.alerts == []
    # time windows: a small good window between a firing big one and a good big one
    # does not resolve the alert; the big one does
    if kind == "time":
        cfg2 = MonitorConfig(quality_window_kind="time", quality_window_seconds=100.0,
                             allowed_lateness_seconds=0.0, quality_min_pairs=50,
                             quality_slo={"accuracy": 0.8}, quality_adwin=False, quality_margin=0.0)
        qm2 = QualityMonitor("m", cfg2)
        seq = []
        for k, (n, correct) in enumerate([(100, 50), (20, 20), (100, 100)]):  # fire, small, big
            ids = [f"k{k}_{j}" for j in range(n)]
            t = T0 + 100.0 * k
            o = run(qm2, [("pred", [pred(e, t, {"label": True}) for e in ids]),
                          ("label", [(e, j < correct, t + 50.0) for j, e in enumerate(ids)]),
                          ("advance", t + 100.0)])
            contracts(o.reports, o.alerts)
            seq.append(([r["evaluated"] for r in o.reports], transitions(o.alerts)))
        assert seq == [([True], [("slo", "accuracy", "firing")]), ([False], []),
                       ([True], [("slo", "accuracy", "resolved")])]


# -- 5. label SLIs ------------------------------------------------------------------------


def test_coverage_and_counters_after_expiry_and_eviction():
    cfg = MonitorConfig(quality_window_size=40, quality_min_pairs=1, label_ttl_seconds=1000.0,
                        max_pending_predictions=80, quality_adwin=False)
    qm = QualityMonitor("m", cfg)
    a = [pred(f"a{i}", T0 + i, {"label": True, "score": 0.7}) for i in range(100)]
    out = run(qm, [("pred", a)])  # 20 oldest evicted: 80 pending
    out.extend(run(qm, [("label", [(f"a{i}", True, T0 + 150.0 + i) for i in range(20, 50)])]))
    assert out.reports == [] and qm.join.pending == 50
    out = qm.advance(T0 + 99.0 + 1000.5)  # the 50 still pending get no label within the TTL
    assert out.reports == [] and qm.join.pending == 0
    b = [pred(f"b{i}", T0 + 1200.0 + i, {"label": True, "score": 0.7}) for i in range(20)]
    lat = [3.0 * i + 1.0 for i in range(10)]
    out = run(qm, [("pred", b), ("label", [(f"b{i}", i % 2 == 0, T0 + 1200.0 + i + lat[i])
                                           for i in range(10)])])
    (report,) = out.reports
    labels = report["labels"]
    c = qm.join.counters
    assert (c["joined"], c["expired_predictions"], c["evicted_predictions"]) == (40, 50, 20)
    assert labels["coverage"] == pytest.approx(40 / (40 + 50 + 20), abs=TOL)
    assert labels["coverage"] == pytest.approx(
        labels["joined"] / (labels["joined"] + labels["expired_predictions"]
                            + labels["evicted_predictions"]), abs=TOL)
    assert (labels["joined"], labels["expired_predictions"], labels["evicted_predictions"],
            labels["pending_predictions"], labels["early_labels"]) == (40, 50, 20, 10, 0)
    window_lat = [150.0] * 30 + lat  # label of a_i at 150 + i, its prediction at i
    p50, p95 = np.percentile(window_lat, [50.0, 95.0])
    assert labels["latency_p50_seconds"] == pytest.approx(p50, abs=1e-6)
    assert labels["latency_p95_seconds"] == pytest.approx(p95, abs=1e-6)


# -- 6. invalid pairs ---------------------------------------------------------------------


def test_pairs_that_do_not_fit_the_versions_task_are_counted_never_crash(contracts):
    cfg = MonitorConfig(quality_window_size=10, quality_min_pairs=1, quality_adwin=True,
                        adwin_chunk=2)
    qm = QualityMonitor("m", cfg)
    # regression version: string and boolean labels do not fit
    reg = [pred(f"r{i}", T0 + i, float(i), "reg") for i in range(14)]
    reg_labels: list[Lab] = [(f"r{i}", float(i) + 0.5, T0 + 20 + i) for i in range(14)]
    reg_labels[3] = ("r3", "n/a", T0 + 23)
    reg_labels[7] = ("r7", True, T0 + 27)
    # binary version whose first pairs had a score: a later prediction without one does not
    # fit, nor does a label that is not binary
    binp = [pred(f"b{i}", T0 + i, {"label": i % 2 == 0, "score": 0.8}, "bin") for i in range(12)]
    binp[5] = pred("b5", T0 + 5, {"label": True}, "bin")
    bin_labels: list[Lab] = [(f"b{i}", i % 3 == 0, T0 + 20 + i) for i in range(12)]
    bin_labels[9] = ("b9", "yes", T0 + 29)
    out = run(qm, [("pred", reg + binp), ("label", reg_labels + bin_labels)])
    assert out.joined == 26 and out.invalid_pairs == 4 and qm.invalid_pairs == 4
    contracts(out.reports, out.alerts)
    by_version = {r["model_version"]: r for r in out.reports}
    assert set(by_version) == {"reg", "bin"}
    reg_report, bin_report = by_version["reg"], by_version["bin"]
    assert reg_report["task"] == "regression" and bin_report["task"] == "binary"
    assert reg_report["window"]["count"] == bin_report["window"]["count"] == 10
    valid = [i for i in range(12) if i not in (3, 7)][:10]
    yt = [float(i) + 0.5 for i in valid]
    yp = [float(i) for i in valid]
    assert_metrics(reg_report["metrics"], sk_metrics("regression", yt, yp, []), "regression")
    bins = [i for i in range(12) if i not in (5, 9)]
    assert_metrics(bin_report["metrics"],
                   sk_metrics("binary", [int(i % 3 == 0) for i in bins],
                              [int(i % 2 == 0) for i in bins], [0.8] * len(bins)), "binary")
    assert bin_report["labels"]["invalid_pairs"] == 4


# -- 7. snapshot and restore ---------------------------------------------------------------


def store_chunks(store: dict[int, Any], qm: QualityMonitor) -> None:
    for cid, chunk in qm.take_chunks().items():
        if chunk is None:
            del store[cid]
        else:
            store[cid] = strict_json(chunk)


def multi_task_ops(seed: int = 3, blocks: int = 30) -> list[Op]:
    """A regression version ("zeta", seen first) and a multiclass one ("alpha"), whose
    windows close at the same events; labels shuffled within a block, one block late."""
    rng = np.random.default_rng(seed)
    ops: list[Op] = []
    late: list[Lab] = []
    for b in range(blocks):
        events: list[Event] = []
        labels: list[Lab] = []
        for j in range(30):
            i = b * 30 + j
            ts = T0 + i
            if i % 2 == 0:
                y = float(rng.normal(10.0, 2.0))
                events.append(pred(f"e{i}", ts, y + float(rng.normal(0.0, 1.0 + (b > 15))), "zeta"))
                labels.append((f"e{i}", y, ts + float(rng.exponential(10.0))))
            else:
                y_class = str(rng.choice(CLASSES))
                p = y_class if rng.random() < 0.8 - 0.4 * (b > 15) else str(rng.choice(CLASSES))
                events.append(pred(f"e{i}", ts, p, "alpha"))
                labels.append((f"e{i}", y_class, ts + float(rng.exponential(10.0))))
        order = rng.permutation(len(labels))
        ops += [("pred", events), ("label", late)]
        late = [labels[k] for k in order]
    return [*ops, ("label", late), ("advance", T0 + blocks * 30 + 1000.0)]


STREAMS = {"binary": lambda: mixed_ops(seed=12, blocks=30), "multi_task": multi_task_ops}


@pytest.mark.parametrize("cut", [5, 40, 57])
@pytest.mark.parametrize("config", list(CONFIGS))
@pytest.mark.parametrize("stream", list(STREAMS))
def test_snapshot_round_trip_continues_identically(stream, config, cut, contracts):
    """Restored from a strict-JSON header and the chunks written so far, a monitor goes on
    exactly like the original (reports, alerts, and its next snapshot)."""
    cfg = CONFIGS[config]
    ops = STREAMS[stream]()
    rng = np.random.default_rng(cut)
    qm = QualityMonitor("m", cfg)
    store: dict[int, Any] = {}
    for op in ops[:cut]:
        run(qm, [op], size=int(rng.integers(1, 60)))
        store_chunks(store, qm)
    header = qm.snapshot()
    assert sorted(store) == QualityMonitor.chunk_ids(header)
    restored = QualityMonitor.restore(json.loads(json.dumps(header, allow_nan=False)),
                                      list(store.values()), cfg)
    assert restored.snapshot() == header
    rest = ops[cut:]
    want = run(qm, rest, size=[9, 31])
    got = run(restored, rest, size=[9, 31])
    assert want.reports and got.reports == want.reports
    contracts(got.reports, got.alerts)
    assert got.alerts == want.alerts
    assert restored.snapshot() == qm.snapshot()


def test_restore_refuses_other_snapshots():
    qm = QualityMonitor("m", CONFIGS["count"])
    run(qm, mixed_ops(blocks=3))
    header = qm.snapshot()
    chunks = [c for c in qm.take_chunks().values() if c is not None]
    for bad in ({**header, "kind": "driftstream.monitor"}, {**header, "version": 2},
                {k: v for k, v in header.items() if k != "versions"},
                {**header, "versions": [["v1", {"task": "binary"}]]}):
        with pytest.raises(SnapshotError):
            QualityMonitor.restore(bad, chunks, CONFIGS["count"])


# -- 8. feature rows ---------------------------------------------------------------------


def test_feature_rows_are_not_added_to_the_join():
    qm = QualityMonitor("m", MonitorConfig(quality_window_size=3, quality_min_pairs=1))
    out = qm.add_predictions(columns_from_events([feature(f"f{i}", T0 + i) for i in range(4)]))
    assert (out.joined, qm.join.counters["predictions"]) == (0, 0)
    batch = [feature("f10", T0), pred("p1", T0 + 1, {"label": True, "score": 0.9}), feature("f11", T0 + 2),
             pred("p2", T0 + 3, {"label": False, "score": 0.2}), feature("f12", T0 + 4),
             pred("p3", T0 + 5, {"label": True, "score": 0.6})]
    qm.add_predictions(columns_from_events(batch))
    assert (qm.join.counters["predictions"], qm.join.pending) == (3, 3)
    out = qm.add_labels(label_batch([("f10", True, T0 + 9), ("p1", True, T0 + 9),
                                     ("f11", False, T0 + 9), ("p2", False, T0 + 9),
                                     ("p3", False, T0 + 9)]))
    assert out.joined == 3 and qm.join.early_labels == 2  # the feature rows' labels wait
    (report,) = out.reports
    assert report["metrics"]["n"] == 3 and report["metrics"]["accuracy"] == pytest.approx(2 / 3)
