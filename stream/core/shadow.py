"""A shadow deployment against production, on the same traffic.

Events with ``deployment`` equal to ``shadow_deployment`` (``"shadow"``) are the *shadow*
side of their model; every other prediction of the model (``"production"``, or no
deployment at all) is the *production* side. A :class:`ShadowComparator` pairs the two
sides' predictions on ``event_id`` (whichever comes first waits, at most
``shadow_pair_seconds`` of event time and ``shadow_max_pending`` entries; what never
pairs is counted ``unpaired``), and cuts the pairs into windows of
``shadow_window_size``. Each window gives a report (``schemas/shadow-report.json``):

- **classification**: ``disagreement_rate``, the share of pairs whose predicted class
  differs (the prediction's ``label``, else ``score >= quality_threshold``);
- **regression**: ``mean_abs_diff`` of the two ``value`` s, and ``relative_abs_diff``, that
  divided by the mean absolute production value (so one threshold fits any unit);
- ``psi`` between the two sides' score (or value) distributions over the window, with
  bins from the production side's deciles (labels: their categories);
- ``quality`` of each side from its latest labelled window (the label join runs on each
  side separately, see ``stream/core/registry.py``), and ``ahead``: the side whose primary
  metric is better (``roc_auc`` when both sides have it, else ``accuracy`` for binary,
  ``macro_f1`` for multiclass, ``mae`` for regression), ``None`` until both have one.

A gap above ``shadow_disagreement_warning`` / ``_critical`` (classification) or
``shadow_relative_diff_warning`` / ``_critical`` (regression) fires an alert
``kind: prediction_drift``, ``detector: shadow``, for the shadow version, with the
lifecycle and hysteresis of PSI alerts.

**Batch invariance.** Pairs are made and windows cut in event order, so the reports do not
depend on how the stream is batched; ``replay`` reproduces the live path.

>>> from stream.config import MonitorConfig
>>> cmp = ShadowComparator("fraud", MonitorConfig(shadow_window_size=4, min_window_values=4))
>>> cols = {"n": 8, "event_id": ["a", "a", "b", "b", "c", "c", "d", "d"],
...         "model_version": ["v1", "v2"] * 4, "ts": [1.0] * 8,
...         "deployment": ["production", "shadow"] * 4,
...         "prediction": {"label": [True, True, True, False, False, False, True, True],
...                        "score": [None] * 8, "value": [None] * 8}}
>>> out = cmp.add(cols)
>>> r = out.reports[0]
>>> r["pairs"], r["disagreement_rate"], r["production_version"], r["shadow_version"]
(4, 0.25, 'v1', 'v2')
>>> [(a["kind"], a["detector"], a["severity"], a["model_version"]) for a in out.alerts]
[('prediction_drift', 'shadow', 'critical', 'v2')]
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from stream.config import MonitorConfig
from stream.core.alerts import AlertState, Transition, alert_event, step_threshold
from stream.core.psi import psi
from stream.errors import SnapshotError

__all__ = ["PRIMARY_METRICS", "ShadowComparator", "ShadowOutput"]

_SNAPSHOT_KIND = "driftstream.shadow"
_SNAPSHOT_VERSION = 1
#: Quantile bins of the production side for the PSI between the two sides.
_PSI_BINS = 10
#: Distinct predicted labels kept per window for a label PSI; more pool in ``(other)``.
_MAX_LABELS = 50
#: The metric that decides which side is ahead, per task, and whether higher is better.
PRIMARY_METRICS: dict[str, tuple[tuple[str, bool], ...]] = {
    "binary": (("roc_auc", True), ("accuracy", True)),
    "multiclass": (("macro_f1", True), ("accuracy", True)),
    "regression": (("mae", False),),
}


@dataclass
class ShadowOutput:
    """Shadow reports and alert transitions of one call, in order."""

    reports: list[dict[str, Any]] = field(default_factory=list)
    alerts: list[dict[str, Any]] = field(default_factory=list)
    #: Predictions that found no partner (``production``/``shadow``), during this call.
    unpaired: Counter[str] = field(default_factory=Counter)

    def extend(self, other: ShadowOutput) -> None:
        self.reports += other.reports
        self.alerts += other.alerts
        self.unpaired.update(other.unpaired)


class _Window:
    """The pairs of the open window, as plain lists (JSON-safe)."""

    def __init__(self) -> None:
        self.n = 0
        self.disagree = 0
        self.abs_diff = 0.0
        self.abs_prod = 0.0
        self.regression = 0
        self.prod: list[Any] = []  # score, value or label of each pair, per side
        self.shadow: list[Any] = []
        self.ts_min: float | None = None
        self.ts_max: float | None = None

    def snapshot(self) -> list[Any]:
        return [self.n, self.disagree, self.abs_diff, self.abs_prod, self.regression,
                self.prod, self.shadow, self.ts_min, self.ts_max]

    @classmethod
    def restore(cls, d: list[Any]) -> _Window:
        w = cls()
        (w.n, w.disagree, w.abs_diff, w.abs_prod, w.regression, w.prod, w.shadow, w.ts_min,
         w.ts_max) = d
        return w


class ShadowComparator:
    """Shadow against production predictions of one model."""

    def __init__(self, model: str, config: MonitorConfig) -> None:
        self.model = model
        self.config = config
        #: Predictions waiting for their partner: event_id -> [side, ts, version, label,
        #: score, value] (side 0: production, 1: shadow), in arrival order.
        self.pending: dict[str, list[Any]] = {}
        self.window = _Window()
        self.index = 0
        self.versions: list[str | None] = [None, None]  # latest production, shadow version
        self.unpaired = [0, 0]  # since the last report
        self.watermark = float("-inf")
        #: Latest labelled quality per side: {"model_version", "task", "metrics"}.
        self.quality: list[dict[str, Any] | None] = [None, None]
        self.alert = AlertState()
        self.alert_version: str | None = None  # the shadow version a firing alert is about

    def add(self, cols: dict[str, Any]) -> ShadowOutput:
        """Pair the predictions of a columnar batch (``stream.core.columns``) in order."""
        out = ShadowOutput()
        deployment = cols.get("deployment") or [None] * cols["n"]
        pred = cols.get("prediction")
        if not pred:
            return out
        shadow_name = self.config.shadow_deployment
        ids, ts, versions = cols["event_id"], cols["ts"], cols["model_version"]
        labels, scores, values = pred["label"], pred["score"], pred["value"]
        pending = self.pending
        cap = self.config.shadow_max_pending
        horizon = self.config.shadow_pair_seconds
        for i in range(cols["n"]):
            side = 1 if deployment[i] == shadow_name else 0
            t = float(ts[i])
            if t > self.watermark:
                self.watermark = t
            mine = [side, t, versions[i], labels[i], scores[i], values[i]]
            self.versions[side] = versions[i]
            other = pending.pop(ids[i], None)
            if other is not None and other[0] != side and t - other[1] <= horizon:
                p, s = (other, mine) if side == 1 else (mine, other)
                self._pair(p, s, out)
                continue
            if other is not None:  # same side again, or too late: the old one is unpaired
                self._unpaired(other[0], out)
            pending[ids[i]] = mine
            if len(pending) > cap:
                self._unpaired(pending.pop(next(iter(pending)))[0], out)
        return out

    def _unpaired(self, side: int, out: ShadowOutput) -> None:
        self.unpaired[side] += 1
        out.unpaired["shadow" if side else "production"] += 1

    def _pair(self, p: list[Any], s: list[Any], out: ShadowOutput) -> None:
        w = self.window
        t = max(p[1], s[1])
        w.ts_min = t if w.ts_min is None else min(w.ts_min, t)
        w.ts_max = t if w.ts_max is None else max(w.ts_max, t)
        w.n += 1
        pv, sv = p[5], s[5]
        if _number(pv) and _number(sv):  # regression
            w.regression += 1
            w.abs_diff += abs(pv - sv)
            w.abs_prod += abs(pv)
            w.prod.append(pv)
            w.shadow.append(sv)
        else:
            pc, sc = self._predicted(p), self._predicted(s)
            w.disagree += pc != sc
            ps, ss = p[4], s[4]
            if _number(ps) and _number(ss):
                w.prod.append(ps)
                w.shadow.append(ss)
            else:
                w.prod.append(_label_key(pc))
                w.shadow.append(_label_key(sc))
        if w.n >= self.config.shadow_window_size:
            self._close(out)

    def _predicted(self, entry: list[Any]) -> Any:
        label, score = entry[3], entry[4]
        if label is not None:
            return label
        if _number(score):
            return score >= self.config.quality_threshold
        return None

    def _expire(self) -> None:
        """Count the waiting predictions too old to ever pair (at a window's close)."""
        horizon = self.watermark - self.config.shadow_pair_seconds
        old = [k for k, e in self.pending.items() if e[1] < horizon]
        for k in old:
            self.unpaired[self.pending.pop(k)[0]] += 1

    def _close(self, out: ShadowOutput) -> None:
        cfg = self.config
        w, self.window = self.window, _Window()
        self._expire()
        # the window is closed when full (n >= 1): either side of this test has pairs
        regression = w.regression * 2 > w.n
        gap: float | None
        mad: float | None = None
        rel: float | None = None
        disagreement: float | None = None
        if regression:
            mad = w.abs_diff / w.regression
            rel = w.abs_diff / w.abs_prod if w.abs_prod > 0 else None
            gap, warn, crit = rel, cfg.shadow_relative_diff_warning, cfg.shadow_relative_diff_critical
        else:
            disagreement = w.disagree / (w.n - w.regression)
            gap, warn, crit = (disagreement, cfg.shadow_disagreement_warning,
                               cfg.shadow_disagreement_critical)
        window = {"kind": "count", "index": self.index, "start": w.ts_min, "end": w.ts_max,
                  "count": w.n}
        self.index += 1
        ts = float(w.ts_max or 0.0)
        prod_v, shadow_v = self.versions
        if gap is not None and w.n >= cfg.min_window_values:
            self.alert, t = step_threshold(self.alert, gap, warn, crit,
                                           hysteresis=cfg.hysteresis, ts=ts)
            if t:
                if t == "firing":
                    self.alert_version = shadow_v
                out.alerts.append(self._alert_event(t, gap, warn, crit, regression, window, ts))
                if t == "resolved":
                    self.alert_version = None
        ahead, by = self._ahead()
        out.reports.append({
            "schema_version": 1,
            "type": "shadow",
            "model": self.model,
            "production_version": prod_v,
            "shadow_version": shadow_v,
            "window": window,
            "pairs": w.n,
            "unpaired": {"production": self.unpaired[0], "shadow": self.unpaired[1]},
            "task": "regression" if regression else "classification",
            "disagreement_rate": disagreement,
            "mean_abs_diff": mad,
            "relative_abs_diff": rel,
            "psi": _psi(w.prod, w.shadow, cfg.psi_smoothing),
            "quality": {"production": self.quality[0], "shadow": self.quality[1]},
            "ahead": ahead,
            "ahead_by": by,
            "alerts_firing": int(self.alert.status == "firing"),
        })
        self.unpaired = [0, 0]

    def _alert_event(self, transition: Transition, gap: float, warn: float, crit: float,
                     regression: bool, window: dict[str, Any], ts: float) -> dict[str, Any]:
        what = "relative mean absolute difference" if regression else "disagreement rate"
        version = self.alert_version
        who = f"shadow {version}" if version else "the shadow"
        prod = self.versions[0]
        vs = f"production {prod}" if prod else "production"
        if transition == "resolved":
            message = f"the {what} of {who} of model {self.model} against {vs} is back to {gap:.3f}"
        else:
            sev = self.alert.severity
            message = (f"the {what} of {who} of model {self.model} against {vs} is {gap:.3f} "
                       f"over {window['count']} pairs (threshold "
                       f"{crit if sev == 'critical' else warn:g}, {sev})")
        return alert_event(state=self.alert, transition=transition, kind="prediction_drift",
                           model=self.model, model_version=version, feature=None,
                           detector="shadow", value=gap,
                           threshold=crit if self.alert.severity == "critical" else warn,
                           window=window, ts=ts, message=message)

    def observe_quality(self, side: str, report: dict[str, Any]) -> None:
        """Remember a side's latest labelled quality window (a quality report)."""
        if not report.get("evaluated", True):
            return
        self.quality[1 if side == "shadow" else 0] = {
            "model_version": report["model_version"], "task": report["task"],
            "window": report["window"]["index"],
            "metrics": {k: v for k, v in report["metrics"].items() if v is not None}}

    def _ahead(self) -> tuple[str | None, dict[str, Any] | None]:
        p, s = self.quality
        if p is None or s is None or p["task"] != s["task"]:
            return None, None
        for metric, higher in PRIMARY_METRICS.get(p["task"], ()):
            a, b = p["metrics"].get(metric), s["metrics"].get(metric)
            if a is None or b is None:
                continue
            if a == b:
                return None, {"metric": metric, "production": a, "shadow": b}
            shadow_better = (b > a) == higher
            return ("shadow" if shadow_better else "production",
                    {"metric": metric, "production": a, "shadow": b})
        return None, None

    def snapshot(self) -> dict[str, Any]:
        """JSON-safe, versioned state."""
        return {"kind": _SNAPSHOT_KIND, "version": _SNAPSHOT_VERSION, "model": self.model,
                "pending": [[k, *e] for k, e in self.pending.items()],
                "window": self.window.snapshot(), "index": self.index,
                "versions": list(self.versions), "unpaired": list(self.unpaired),
                "watermark": self.watermark if np.isfinite(self.watermark) else None,
                "quality": list(self.quality), "alert": self.alert.snapshot(),
                "alert_version": self.alert_version}

    @classmethod
    def restore(cls, data: dict[str, Any], config: MonitorConfig) -> ShadowComparator:
        if data.get("kind") != _SNAPSHOT_KIND or data.get("version") != _SNAPSHOT_VERSION:
            raise SnapshotError(
                f"not a shadow snapshot of version {_SNAPSHOT_VERSION}: kind="
                f"{data.get('kind')!r} version={data.get('version')!r}; upgrade the worker "
                "or change app.id")
        try:
            c = cls(str(data["model"]), config)
            c.pending = {str(e[0]): list(e[1:]) for e in data["pending"]}
            c.window = _Window.restore(data["window"])
            c.index = int(data["index"])
            c.versions = list(data["versions"])
            c.unpaired = [int(x) for x in data["unpaired"]]
            wm = data["watermark"]
            c.watermark = float(wm) if wm is not None else float("-inf")
            c.quality = list(data["quality"])
            c.alert = AlertState.restore(data["alert"])
            c.alert_version = data["alert_version"]
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise SnapshotError(f"corrupt shadow snapshot: {exc!r}") from None
        return c


def _number(v: Any) -> bool:
    return (type(v) is float or type(v) is int) and v == v


def _label_key(v: Any) -> str:
    return "true" if v is True else "false" if v is False else str(v)


def _psi(prod: list[Any], shadow: list[Any], smoothing: float) -> float | None:
    """PSI of the shadow side's distribution against production's over one window."""
    if not prod or len(prod) != len(shadow):
        return None
    if _number(prod[0]):
        a = np.asarray(prod, dtype=np.float64)
        b = np.asarray(shadow, dtype=np.float64)
        edges = np.unique(np.quantile(a, np.linspace(0, 1, _PSI_BINS + 1)[1:-1]))
        ca = np.bincount(np.searchsorted(edges, a, side="right"), minlength=edges.size + 1)
        cb = np.bincount(np.searchsorted(edges, b, side="right"), minlength=edges.size + 1)
    else:
        top = [k for k, _ in Counter(prod + shadow).most_common(_MAX_LABELS)]
        pos = {k: i for i, k in enumerate(top)}
        ca = np.bincount([pos.get(k, len(top)) for k in prod], minlength=len(top) + 1)
        cb = np.bincount([pos.get(k, len(top)) for k in shadow], minlength=len(top) + 1)
    return psi(ca, cb, smoothing)
