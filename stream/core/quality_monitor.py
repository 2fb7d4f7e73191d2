"""Model quality of one model from delayed ground truth: the label join, quality windows
per version, and quality alerts.

:class:`QualityMonitor` is to labels what :class:`~stream.core.monitor.ModelMonitor` is to
drift. The shell hands it the model's prediction columns (the same envelopes the drift
monitors get) and its label batches; it joins them by ``event_id``
(:class:`~stream.core.labeljoin.LabelJoin`, in event time), cuts the joined pairs of each
``model_version`` into windows, and returns a quality report per window and the alert
transitions.

**Task.** ``quality_task = "auto"`` infers it from the first joined pairs of a version: a
numeric prediction ``value`` means regression; boolean or 0/1 labels mean binary (the
predicted class is the prediction's ``label`` when it carries one, else
``score >= quality_threshold``); anything else is multiclass. A pair that does not fit the
version's task (a string label for a regression model, a binary pair without the score
the version's first pairs had) is counted in ``invalid_pairs``, never silently dropped.

**Windows.** ``count``: every ``quality_window_size`` joined pairs, in join order.
``time``: tumbling windows of label time (when the outcome became known), closed when the
join's watermark minus ``allowed_lateness_seconds`` passes their end; pairs for a closed
window are counted ``late``. The metrics are those of :mod:`stream.core.quality`, equal to
scikit-learn's on the same pairs.

**Batch invariance.** Reports and alerts depend only on the sequence of predictions and
labels, not on how it is cut into batches: a batch is fed to the join in runs that end at
the events where a window may close (the event that moves the watermark past a time
window's end, or that may fill a count window), so a pair is late by the watermark before
its own event and a report's label counters are those after the event that closed it.

**Alerts** (``kind: quality``, the lifecycle of :mod:`stream.core.alerts`):

- ``detector: slo``, critical: a metric is worse than its absolute SLO (``quality_slo``);
- ``detector: baseline``, warning: a metric is worse than the reference quality by more
  than ``quality_margin`` (relative). The reference quality of a version is the mean of
  its first ``quality_baseline_windows`` windows, unless it was given (from a reference
  profile that carries labelled quality);
- ``detector: adwin``, warning: ADWIN detected a change in the per-prediction error (0/1
  loss, or absolute error); it resolves after ``adwin_quiet_evaluations`` windows
  without one.

Windows with fewer than ``quality_min_pairs`` pairs are reported but change no alert.

>>> from stream.config import MonitorConfig
>>> cfg = MonitorConfig(quality_window_size=100, quality_min_pairs=10, quality_baseline_windows=1,
...                     quality_slo={"accuracy": 0.8}, quality_adwin=False)
>>> qm = QualityMonitor("fraud", cfg)
>>> ids = [str(i) for i in range(200)]
>>> preds = {"event_id": ids, "model_version": ["v1"] * 200, "ts": [float(i) for i in range(200)],
...          "prediction": {"label": [i % 2 == 0 for i in range(200)],
...                         "score": [0.9 if i % 2 == 0 else 0.1 for i in range(200)]}}
>>> _ = qm.add_predictions(preds)
>>> good = qm.add_labels({"event_id": ids[:100], "label": [i % 2 == 0 for i in range(100)],
...                       "ts": [float(i + 50) for i in range(100)]})
>>> good.reports[0]["metrics"]["accuracy"], good.alerts
(1.0, [])
>>> bad = qm.add_labels({"event_id": ids[100:], "label": [i % 2 == 1 for i in range(100)],
...                      "ts": [float(i + 150) for i in range(100)]})
>>> [(a["detector"], a["feature"], a["severity"]) for a in bad.alerts]
[('slo', 'accuracy', 'critical'), ('baseline', 'accuracy', 'warning'), ('baseline', 'roc_auc', 'warning')]
"""

from __future__ import annotations

import itertools
import math
import operator
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from stream.config import QUALITY_METRICS, MonitorConfig
from stream.core.adwin import AdwinDetector
from stream.core.alerts import AlertState, Transition, alert_event, step_bound, step_detection
from stream.core.labeljoin import Joined, LabelJoin
from stream.core.quality import Task, prediction_errors, window_metrics
from stream.errors import SnapshotError

__all__ = ["QualityMonitor", "QualityOutput", "infer_task"]

_KIND = "driftstream.quality"
_VERSION = 1
#: The metrics compared with the reference quality, per task.
BASELINE_METRICS: dict[str, tuple[str, ...]] = {
    "binary": ("accuracy", "roc_auc"),
    "multiclass": ("accuracy", "macro_f1"),
    "regression": ("mae", "rmse"),
}


@dataclass
class QualityOutput:
    """What one call produced: quality reports and alert transitions, in order."""

    reports: list[dict[str, Any]] = field(default_factory=list)
    alerts: list[dict[str, Any]] = field(default_factory=list)
    joined: int = 0
    invalid_pairs: int = 0
    late_pairs: int = 0
    #: Label latency (label time minus prediction time) of the pairs joined, seconds.
    latencies: npt.NDArray[np.float64] = field(default_factory=lambda: np.empty(0))
    adwin_detections: int = 0

    def extend(self, other: QualityOutput) -> None:
        self.reports += other.reports
        self.alerts += other.alerts
        self.joined += other.joined
        self.invalid_pairs += other.invalid_pairs
        self.late_pairs += other.late_pairs
        self.latencies = np.concatenate([self.latencies, other.latencies])
        self.adwin_detections += other.adwin_detections


def _is_binary_label(v: Any) -> bool:
    return type(v) is bool or (type(v) is int and v in (0, 1))


def infer_task(y_true: list[Any], y_pred: list[Any], score: list[Any], value: list[Any]) -> Task:
    """The task of a version from its first joined pairs (see the module docstring).

    >>> infer_task([1.5], [None], [None], [2.0]), infer_task([True], [None], [0.3], [None])
    ('regression', 'binary')
    >>> infer_task(["cat"], ["dog"], [None], [None])
    'multiclass'
    """
    if any(v is not None for v in value):
        return "regression"
    if all(_is_binary_label(v) for v in y_true):
        return "binary"
    return "multiclass"


class _Pairs:
    """The joined pairs of one open window, as plain lists (JSON-safe)."""

    __slots__ = ("latency", "n", "score", "ts_max", "ts_min", "y_pred", "y_true")

    def __init__(self) -> None:
        self.y_true: list[Any] = []
        self.y_pred: list[Any] = []
        self.score: list[float | None] = []  # None: no score (never NaN: JSON-safe)
        self.latency: list[float] = []
        self.n = 0
        self.ts_min = math.inf
        self.ts_max = -math.inf

    def add(self, y_true: Any, y_pred: Any, score: float | None, latency: float, ts: float) -> None:
        self.y_true.append(y_true)
        self.y_pred.append(y_pred)
        self.score.append(score)
        self.latency.append(latency)
        self.n += 1
        self.ts_min = min(self.ts_min, ts)
        self.ts_max = max(self.ts_max, ts)

    def snapshot(self) -> dict[str, Any]:
        return {"y_true": self.y_true, "y_pred": self.y_pred, "score": self.score,
                "latency": self.latency,
                "ts": [self.ts_min, self.ts_max] if self.n else None}

    @classmethod
    def restore(cls, d: dict[str, Any]) -> _Pairs:
        p = cls()
        p.y_true, p.y_pred, p.score, p.latency = d["y_true"], d["y_pred"], d["score"], d["latency"]
        p.n = len(p.y_true)
        if d["ts"] is not None:
            p.ts_min, p.ts_max = d["ts"]
        return p


@dataclass
class _Version:
    """Quality state of one model version."""

    task: Task | None = None
    has_score: bool = False
    index: int = 0
    open: dict[int, _Pairs] = field(default_factory=dict)
    next_open: int | None = None  # time windows: first window not yet closed
    baseline: dict[str, float] | None = None
    baseline_given: bool = False
    baseline_windows: list[dict[str, float | None]] = field(default_factory=list)
    alerts: dict[str, AlertState] = field(default_factory=dict)
    adwin: AdwinDetector | None = None
    adwin_pending: int = 0

    def snapshot(self) -> dict[str, Any]:
        return {
            "task": self.task, "has_score": self.has_score, "index": self.index,
            "open": [[k, p.snapshot()] for k, p in sorted(self.open.items())],
            "next_open": self.next_open, "baseline": self.baseline,
            "baseline_given": self.baseline_given, "baseline_windows": self.baseline_windows,
            "alerts": {k: s.snapshot() for k, s in sorted(self.alerts.items())},
            "adwin": self.adwin.snapshot() if self.adwin else None,
            "adwin_pending": self.adwin_pending,
        }

    @classmethod
    def restore(cls, d: dict[str, Any]) -> _Version:
        return cls(
            task=d["task"], has_score=d["has_score"], index=d["index"],
            open={int(k): _Pairs.restore(p) for k, p in d["open"]},
            next_open=d["next_open"], baseline=d["baseline"],
            baseline_given=d["baseline_given"], baseline_windows=d["baseline_windows"],
            alerts={k: AlertState.restore(s) for k, s in d["alerts"].items()},
            adwin=AdwinDetector.restore(d["adwin"]) if d["adwin"] else None,
            adwin_pending=d["adwin_pending"],
        )


class QualityMonitor:
    """The label join and the quality windows of one model (all its versions)."""

    def __init__(self, model: str, config: MonitorConfig, join: LabelJoin | None = None) -> None:
        self.model = model
        self.config = config
        c = config
        self.join = join or LabelJoin(
            ttl_seconds=c.label_ttl_seconds, grace_seconds=c.label_grace_seconds,
            max_pending=c.max_pending_predictions, max_early_labels=c.max_early_labels,
            max_joined_ids=max(c.max_pending_predictions, 1000))
        self.versions: dict[str | None, _Version] = {}
        self.invalid_pairs = 0
        self.late_pairs = 0

    # -- input ------------------------------------------------------------------------

    def add_predictions(self, cols: dict[str, Any]) -> QualityOutput:
        """Add the predictions of a columnar batch (``stream.core.columns``); rows without
        a prediction (feature events) are skipped."""
        pred = cols.get("prediction") or {}
        label, score, value = pred.get("label"), pred.get("score"), pred.get("value")
        n = len(cols["event_id"])
        label = label if label is not None else [None] * n
        score = score if score is not None else [None] * n
        value = value if value is not None else [None] * n
        if any(len(col) == n and all(map(operator.is_not, col, itertools.repeat(None)))
               for col in (label, score, value)):
            rows = list(range(n))  # a column without a gap: every row has a prediction
        else:
            rows = [i for i in range(n) if label[i] is not None or score[i] is not None
                    or value[i] is not None]
        if not rows:
            return QualityOutput()
        def sel(col: list[Any]) -> list[Any]:
            return col if len(rows) == n else [col[i] for i in rows]

        ids, ts, versions = sel(cols["event_id"]), sel(cols["ts"]), sel(cols["model_version"])
        label, score, value = sel(label), sel(score), sel(value)
        out = QualityOutput()
        for a, b in self._runs(ts, versions):
            before = self.join.watermark
            joined = self.join.add_predictions(
                ids[a:b], ts[a:b], versions[a:b], y_pred=label[a:b], score=score[a:b],
                value=value[a:b])
            out.extend(self._pairs(joined, before))
        return out

    def add_labels(self, labels: dict[str, Any]) -> QualityOutput:
        """Add a batch of labels ``{"event_id": [...], "label": [...], "ts": [...]}``."""
        ids, labs, ts = labels["event_id"], labels["label"], labels["ts"]
        out = QualityOutput()
        for a, b in self._runs(ts, None):
            before = self.join.watermark
            out.extend(self._pairs(self.join.add_labels(ids[a:b], labs[a:b], ts[a:b]), before))
        return out

    def _runs(self, ts: Sequence[Any], versions: Sequence[Any] | None) -> Iterator[tuple[int, int]]:
        """The runs ``[a, b)`` to feed the join a batch in: a window can close only at the
        last event of a run (see *Batch invariance*). ``versions``: the model version of
        each event (predictions); ``None`` for labels, whose version is not known before
        they join. Count runs are computed lazily, from the state after the previous run."""
        n, c = len(ts), self.config
        a = 0
        if c.quality_window_kind == "time":
            wm = self.join.watermark
            closed = self._closed_index(wm)
            cuts = []
            for i, t in enumerate(ts):
                t = float(t)
                if wm is None or t > wm:
                    wm = t
                    k = self._closed_index(wm)
                    if closed is None or (k is not None and k > closed):
                        cuts.append(i + 1)
                        closed = k
            for b in cuts:
                yield a, b
                a = b
            if a < n:
                yield a, n
            return
        size = c.quality_window_size

        def room(version: str | None) -> int:  # pairs the version's open window still takes
            v = self.versions.get(version)
            w = v.open.get(v.index) if v is not None else None
            return size - (w.n if w is not None else 0)

        while a < n:
            b = n
            if versions is None:  # a label may pair with a prediction of any version
                if self.join.pending:
                    b = min(n, a + min([size, *(room(v) for v in self.versions)]))
            elif self.join.early_labels:  # only predictions with an early label pair
                seen: dict[str | None, int] = {}
                for i in range(a, n):
                    v = versions[i]
                    seen[v] = seen.get(v, 0) + 1
                    if seen[v] >= room(v):
                        b = i + 1
                        break
            yield a, b
            a = b

    def _closed_index(self, watermark: float | None) -> int | None:
        """Time windows below this index are closed at ``watermark``."""
        if watermark is None:
            return None
        c = self.config
        return int((watermark - c.allowed_lateness_seconds) // c.quality_window_seconds)

    # -- windows ----------------------------------------------------------------------

    #: Feed ADWIN the errors of a run of pairs at once (chunk-aligned, see
    #: :meth:`_feed_adwin`) rather than one pair at a time: the same inputs, detections
    #: and state either way (``False``: one call a pair, the reference).
    _batch_adwin = True

    def _pairs(self, j: Joined, watermark_before: float | None) -> QualityOutput:
        out = QualityOutput(joined=len(j), latencies=np.asarray(j.latency_seconds, np.float64))
        c = self.config
        # every pair of a run is late by the watermark before the run (see _runs)
        closed = self._closed_index(watermark_before) if c.quality_window_kind == "time" else None
        errors: dict[str | None, list[float]] = {}  # ADWIN inputs not fed yet, by version
        for version, y_true, y_pred, score, val, label_ts, latency in zip(
                j.model_version, j.y_true, j.y_pred, j.score.tolist(), j.value.tolist(),
                j.label_ts.tolist(), j.latency_seconds.tolist(), strict=True):
            v = self.versions.get(version)
            if v is None:
                v = self.versions[version] = _Version()
            if v.task is None:
                v.task = c.quality_task if c.quality_task != "auto" else infer_task(
                    [y_true], [y_pred], [None if math.isnan(score) else score],
                    [None if math.isnan(val) else val])
                v.has_score = v.task == "binary" and not math.isnan(score)
            pair = self._pair(v, y_true, y_pred, score, val)
            if pair is None:
                out.invalid_pairs += 1
                self.invalid_pairs += 1
                continue
            yt, yp, sc = pair
            if c.quality_window_kind == "count":
                k = v.index
            else:
                k = int(label_ts // c.quality_window_seconds)
                if closed is not None and k < closed:
                    out.late_pairs += 1
                    self.late_pairs += 1
                    continue
            w = v.open.get(k)
            if w is None:
                w = v.open[k] = _Pairs()
            w.add(yt, yp, sc, latency, label_ts)
            if c.quality_adwin:
                if v.task == "binary":
                    err = float(yt != yp)
                elif v.task == "regression":
                    err = abs(yt - yp)  # what prediction_errors computes, in float64
                else:
                    err = float(prediction_errors(v.task, [yt], y_pred=[yp])[0])
                errs = errors.get(version)
                if errs is None:
                    errs = errors[version] = []
                errs.append(err)
                if not self._batch_adwin:
                    self._feed_adwin(v, errors.pop(version), out)
            if c.quality_window_kind == "count" and w.n >= c.quality_window_size:
                self._feed_adwin(v, errors.pop(version, []), out)
                self._close(version, v, k, out)
        for version, errs in errors.items():
            self._feed_adwin(self.versions[version], errs, out)
        if c.quality_window_kind == "time":
            self._close_time_windows(out)
        return out

    def _feed_adwin(self, v: _Version, errs: list[float], out: QualityOutput) -> None:
        """Feed the version's ADWIN the errors of consecutive pairs. The calls end where
        the detector's chunks end, so each chunk mean is computed as when the errors come
        one call a pair (the same numpy reduction over the same values) and the state,
        ``drift_detected`` included, is the same."""
        if not errs:
            return
        c = self.config
        adwin = v.adwin = v.adwin or AdwinDetector(c.adwin_delta, c.adwin_chunk, c.adwin_history)
        cuts = [0, *range(adwin.chunk - adwin._pending.size, len(errs), adwin.chunk), len(errs)]
        arr = np.array(errs, dtype=np.float64)
        for a, b in itertools.pairwise(cuts):
            if b > a:
                det = adwin.update(arr[a:b])
                v.adwin_pending += det
                out.adwin_detections += det

    def _pair(self, v: _Version, y_true: Any, y_pred: Any, score: float,
              value: float) -> tuple[Any, Any, float | None] | None:
        """The pair in the version's task's terms, or ``None`` when it does not fit."""
        if v.task == "regression":
            if type(y_true) not in (int, float) or math.isnan(value):
                return None
            return float(y_true), value, None
        if v.task == "binary":
            if not _is_binary_label(y_true):
                return None
            if v.has_score and math.isnan(score):
                return None
            if _is_binary_label(y_pred):
                yp = int(y_pred)
            elif not math.isnan(score):
                yp = int(score >= self.config.quality_threshold)
            else:
                return None
            return int(y_true), yp, None if math.isnan(score) else score
        if y_pred is None:
            return None
        return y_true, y_pred, None

    def _close_time_windows(self, out: QualityOutput) -> None:
        closed = self._closed_index(self.join.watermark)
        if closed is None:
            return
        for version, v in list(self.versions.items()):
            for k in sorted(v.open):
                if k < closed:  # (k + 1) T <= watermark - lateness
                    self._close(version, v, k, out)
            v.next_open = max(v.next_open or 0, closed)

    def _close(self, version: str | None, v: _Version, k: int, out: QualityOutput) -> None:
        c = self.config
        w = v.open.pop(k)
        assert v.task is not None
        metrics = window_metrics(
            v.task, np.asarray(w.y_true, dtype=object if v.task == "multiclass" else np.float64),
            y_pred=np.asarray(w.y_pred, dtype=object if v.task == "multiclass" else np.float64),
            score=np.asarray(w.score, np.float64) if v.task == "binary" and v.has_score else None,
            threshold=c.quality_threshold)
        lat = np.asarray(w.latency, np.float64)
        p50, p95 = (np.percentile(lat, [50.0, 95.0]).tolist() if lat.size else (None, None))
        if c.quality_window_kind == "count":
            window: dict[str, Any] = {"kind": "count", "index": v.index, "start": w.ts_min,
                                      "end": w.ts_max, "count": w.n}
            v.index += 1
        else:
            T = c.quality_window_seconds
            window = {"kind": "time", "index": k, "start": k * T, "end": (k + 1) * T, "count": w.n}
        ts = float(window["end"] if window["end"] is not None else 0.0)
        evaluated = w.n >= c.quality_min_pairs
        if evaluated and v.baseline is None:
            v.baseline_windows.append({m: metrics.get(m) for m in BASELINE_METRICS[v.task]})
            if len(v.baseline_windows) >= c.quality_baseline_windows:
                v.baseline = _mean_metrics(v.baseline_windows)
        if evaluated:
            self._alerts(version, v, metrics, window, ts, out)
        counters = self.join.counters
        out.reports.append({
            "schema_version": 1,
            "type": "quality",
            "model": self.model,
            "model_version": version,
            "task": v.task,
            "window": window,
            "metrics": metrics,
            "evaluated": evaluated,
            "reference": {"metrics": v.baseline,
                          "source": "reference" if v.baseline_given else "first_windows"},
            "labels": {
                "coverage": self.join.coverage(),
                "latency_p50_seconds": p50,
                "latency_p95_seconds": p95,
                "pending_predictions": self.join.pending,
                "early_labels": self.join.early_labels,
                **{k2: counters[k2] for k2 in ("joined", "expired_predictions",
                                               "labels_without_prediction", "duplicate_labels",
                                               "duplicate_predictions", "evicted_predictions",
                                               "evicted_labels")},
                "invalid_pairs": self.invalid_pairs,
                "late_pairs": self.late_pairs,
            },
            "alerts_firing": sum(1 for s in v.alerts.values() if s.status == "firing"),
        })

    def _alerts(self, version: str | None, v: _Version, metrics: dict[str, float | None],
                window: dict[str, Any], ts: float, out: QualityOutput) -> None:
        c = self.config
        for metric, bound in sorted(c.quality_slo.items()):
            value = metrics.get(metric)
            if value is not None:
                self._step(version, v, "slo", metric, value, bound, "critical", window, ts, out)
        if v.baseline is not None and c.quality_margin > 0:
            for metric, ref in sorted(v.baseline.items()):
                value = metrics.get(metric)
                if value is None or ref is None:
                    continue
                better = QUALITY_METRICS[metric]
                bound = ref * (1 - c.quality_margin) if better else ref * (1 + c.quality_margin)
                self._step(version, v, "baseline", metric, value, bound, "warning", window, ts, out)
        if c.quality_adwin:
            key = "adwin:error"
            state, transition = step_detection(
                v.alerts.get(key, AlertState()), v.adwin_pending,
                quiet=c.adwin_quiet_evaluations, ts=ts)
            v.alerts[key] = state
            v.adwin_pending = 0
            if transition:
                what = "the prediction error changed" if transition == "firing" else \
                    "no change in the prediction error for a while"
                out.alerts.append(self._event(state, transition, version, "error", "adwin",
                                              None, None, window, ts,
                                              f"ADWIN on model {self.model} {version or ''}: {what}"))

    def _step(self, version: str | None, v: _Version, detector: str, metric: str, value: float,
              bound: float, severity: str, window: dict[str, Any], ts: float,
              out: QualityOutput) -> None:
        key = f"{detector}:{metric}"
        better = QUALITY_METRICS[metric]
        state, transition = step_bound(
            v.alerts.get(key, AlertState()), value, bound, higher_is_better=better,
            hysteresis=self.config.quality_hysteresis,
            severity="critical" if severity == "critical" else "warning", ts=ts)
        v.alerts[key] = state
        if transition:
            side = "below" if better else "above"
            what = "the SLO" if detector == "slo" else "the reference quality's bound"
            msg = (f"{metric} of model {self.model} {version or ''} is {value:.4g}, {side} "
                   f"{what} {bound:.4g} over {window['count']} labelled predictions")
            if transition == "resolved":
                msg = f"{metric} of model {self.model} {version or ''} is back at {value:.4g}"
            out.alerts.append(self._event(state, transition, version, metric, detector,
                                          value, bound, window, ts, msg))

    def _event(self, state: AlertState, transition: Transition, version: str | None,
               feature: str, detector: str, value: float | None, threshold: float | None,
               window: dict[str, Any], ts: float, message: str) -> dict[str, Any]:
        return alert_event(state=state, transition=transition, kind="quality", model=self.model,
                           model_version=version, feature=feature, detector=detector,
                           value=value, threshold=threshold, window=window, ts=ts,
                           message=message)

    def set_reference_quality(self, version: str | None, metrics: dict[str, float]) -> None:
        """Install the reference quality of a version (from a labelled reference)."""
        v = self.versions.setdefault(version, _Version())
        v.baseline = dict(metrics)
        v.baseline_given = True

    def advance(self, now: float) -> QualityOutput:
        """Move the join's event-time clock (expiry) and close due time windows."""
        self.join.advance(now)
        out = QualityOutput()
        if self.config.quality_window_kind == "time":
            self._close_time_windows(out)
        return out

    # -- state ------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """The header state (everything but the join's chunks: see :meth:`take_chunks`)."""
        return {
            "kind": _KIND,
            "version": _VERSION,
            "model": self.model,
            "join": self.join.header_snapshot(),
            # in first-seen order: windows of several versions close in that order
            "versions": [[k, v.snapshot()] for k, v in self.versions.items()],
            "invalid_pairs": self.invalid_pairs,
            "late_pairs": self.late_pairs,
        }

    def take_chunks(self) -> dict[int, dict[str, Any] | None]:
        """The join's chunks changed since the last call (``None``: delete it)."""
        return self.join.take_dirty()

    @staticmethod
    def chunk_ids(header: dict[str, Any]) -> list[int]:
        return LabelJoin.chunk_ids(header["join"])

    @classmethod
    def restore(cls, header: dict[str, Any], chunks: list[dict[str, Any]],
                config: MonitorConfig) -> QualityMonitor:
        if header.get("kind") != _KIND or header.get("version") != _VERSION:
            raise SnapshotError(
                f"not a quality snapshot of version {_VERSION}: kind={header.get('kind')!r}")
        try:
            qm = cls(header["model"], config, LabelJoin.restore(header["join"], chunks))
            qm.versions = {k: _Version.restore(v) for k, v in header["versions"]}
            qm.invalid_pairs = int(header["invalid_pairs"])
            qm.late_pairs = int(header["late_pairs"])
        except (KeyError, TypeError, ValueError) as exc:
            raise SnapshotError(f"corrupt quality snapshot: {exc!r}") from None
        return qm


def _mean_metrics(windows: list[dict[str, float | None]]) -> dict[str, float]:
    out: dict[str, float] = {}
    for metric in windows[0]:
        values = [w[metric] for w in windows if w.get(metric) is not None]
        if values:
            out[metric] = float(sum(v for v in values if v is not None) / len(values))
    return out
