"""From a batch of normalised events to per-series columns the binnings can count.

A *series* is one monitored stream of values of a model: a feature (``("feature", name)``)
or a part of the prediction (``("prediction", "score" | "value" | "label")``).

Attributions of prediction events (``stream.core.events``) travel as their own columns,
``"attributions": {feature: [number or None per event]}``, only in batches where some event
has them: a batch without attributions is exactly what it was before they existed. So do
``"slices": {slice name: [value or None per event]}`` and ``"deployment": [name or None
per event]``.

Numeric columns are float arrays where ``NaN`` is a missing value and ``+inf`` a value of
the wrong type (validated events never carry infinities, so the marker is unambiguous).

>>> cols = columns_from_events([
...     {"event_id": "a", "model_version": None, "ts": 1.0, "features": {"x": 1.5},
...      "prediction": {"label": None, "score": 0.2, "value": None, "scores": None}},
...     {"event_id": "b", "model_version": None, "ts": 2.0, "features": {"x": "oops"}}])
>>> numeric_column(column(cols, ("feature", "x"))).tolist()
[1.5, inf]
>>> column(cols, ("prediction", "score"))
[0.2, None]
"""

from __future__ import annotations

from operator import itemgetter
from typing import Any, cast

import numpy as np
import numpy.typing as npt

__all__ = [
    "PREDICTION_PARTS",
    "ColumnsBuilder",
    "SeriesKey",
    "column",
    "columns_from_events",
    "events_from_columns",
    "numeric_column",
    "select_columns",
    "series_name",
]

SeriesKey = tuple[str, str]

#: The parts of a prediction that are monitored as series, in report order.
PREDICTION_PARTS = ("score", "value", "label")

_NAN = float("nan")
_INF = float("inf")


_PLAIN_NUMBERS = frozenset({int, float, type(None)})


def numeric_column(values: list[Any]) -> npt.NDArray[np.float64]:
    """Floats with ``NaN`` for missing and ``+inf`` for a value that is not a number.

    >>> numeric_column([1, None, 2.5]).tolist(), numeric_column([1, True, "x"]).tolist()
    ([1.0, nan, 2.5], [1.0, inf, inf])
    """
    if _PLAIN_NUMBERS.issuperset(map(type, values)):
        # one C-level type scan, then numpy's own conversion (None becomes NaN)
        return np.array(values, dtype=np.float64)
    return np.array(
        [
            v if (t := type(v)) is float or t is int else (_NAN if v is None else _INF)
            for v in values
        ],
        dtype=np.float64,
    )


def series_name(key: SeriesKey) -> str:
    """The name a series has in alerts and metrics: the feature name, or
    ``prediction.<part>``.

    >>> series_name(("feature", "amount")), series_name(("prediction", "score"))
    ('amount', 'prediction.score')
    """
    return key[1] if key[0] == "feature" else f"prediction.{key[1]}"


class ColumnsBuilder:
    """A columnar batch built one event at a time: what :func:`columns_from_events`
    returns for the same events, without keeping a normalised dict per event.

    :meth:`append` takes the common shape (an event without attributions, slices or
    deployment) as fields, which the ingest stage fills straight from the decoded JSON;
    :meth:`append_event` takes any normalised event. They can be mixed.

    >>> b = ColumnsBuilder()
    >>> b.append("a", "v1", 1.0, {"x": 1}, "no", 0.2, None)
    >>> b.append_event({"event_id": "b", "model_version": "v1", "ts": 2.0,
    ...                 "features": {"x": 2}, "slices": {"region": "eu"}})
    >>> cols = b.build()
    >>> cols["features"], cols["prediction"]["score"], cols["slices"], len(b)
    ({'x': [1, 2]}, [0.2, None], {'region': [None, 'eu']}, 2)
    """

    __slots__ = ("_event_id", "_features", "_getter", "_has_prediction", "_k", "_label",
                 "_mixed", "_model_version", "_names", "_optional", "_score", "_ts", "_value")

    def __init__(self) -> None:
        self._event_id: list[Any] = []
        self._model_version: list[Any] = []
        self._ts: list[float] = []
        #: per event, its feature values in the order of ``_names`` (a tuple), or the
        #: features dict itself when its names are not ``_names``
        self._features: list[tuple[Any, ...] | dict[str, Any]] = []
        self._names: tuple[str, ...] | None = None  # the first event's names, sorted
        self._getter: Any = None
        self._k = -1  # len(_names), once set
        self._mixed = False  # some event's names are not ``_names``
        self._label: list[Any] = []
        self._score: list[Any] = []
        self._value: list[Any] = []
        self._has_prediction = False
        #: row -> the event, for rows with attributions, slices or a deployment
        self._optional: dict[int, dict[str, Any]] = {}

    def __len__(self) -> int:
        return len(self._ts)

    def append(self, event_id: str | None, model_version: str | None, ts: float,
               features: dict[str, Any], label: Any = None, score: Any = None,
               value: Any = None, *, prediction: bool = True) -> None:
        """One event of the common shape. ``prediction=False`` for an event without a
        prediction (a feature event): its ``label``, ``score`` and ``value`` are ignored."""
        self._event_id.append(event_id)
        self._model_version.append(model_version)
        self._ts.append(ts)
        # The values are read while the decoded dict is still in the CPU cache, and the
        # dict can be freed: transposing thousands of dicts later costs cache misses.
        if len(features) == self._k:
            try:
                self._features.append(self._getter(features))
            except KeyError:
                self._features.append(features)
                self._mixed = True
        elif self._names is None and len(features) > 1:
            self._names = tuple(sorted(features))
            self._k = len(self._names)
            self._getter = itemgetter(*self._names)
            self._features.append(self._getter(features))
        else:
            self._features.append(features)
            self._mixed = True
        if prediction:
            self._has_prediction = True
            self._label.append(label)
            self._score.append(score)
            self._value.append(value)
        else:
            self._label.append(None)
            self._score.append(None)
            self._value.append(None)

    def append_event(self, e: dict[str, Any]) -> None:
        """One normalised event (``stream.core.events``), of any shape."""
        if e.get("attributions") or e.get("slices") or e.get("deployment"):
            self._optional[len(self._ts)] = e
        p = e.get("prediction")
        if p:
            self.append(e.get("event_id"), e.get("model_version"), e["ts"], e["features"],
                        p["label"], p["score"], p["value"])
        else:
            self.append(e.get("event_id"), e.get("model_version"), e["ts"], e["features"],
                        prediction=False)

    def build(self) -> dict[str, Any]:
        """The columnar batch of the events appended so far."""
        rows, names = self._features, self._names
        features: dict[str, list[Any]]
        if not rows:
            features = {}
        elif not self._mixed:
            assert names is not None
            # every event has the same feature names (the usual case): transpose at C speed
            features = {n: list(c) for n, c in zip(names, zip(*rows, strict=True), strict=True)}
        else:
            feats = [r if type(r) is dict else dict(zip(names, r, strict=True))  # type: ignore[arg-type]
                     for r in rows]
            features = {n: [f.get(n) for f in feats] for n in sorted(set().union(*feats))}
        out: dict[str, Any] = {
            "n": len(self._ts),
            "event_id": list(self._event_id),
            "model_version": list(self._model_version),
            "ts": list(self._ts),
            "features": features,
            "prediction": {"label": list(self._label), "score": list(self._score),
                           "value": list(self._value)} if self._has_prediction else None,
        }
        if self._optional:
            self._build_optional(out)
        return out

    def _build_optional(self, out: dict[str, Any]) -> None:
        n, rows = len(self._ts), self._optional
        attrs = [rows[i].get("attributions") if i in rows else None for i in range(n)]
        if any(attrs):
            names = sorted(set().union(*filter(None, attrs)))
            first = attrs[0].keys() if attrs[0] else None
            if len(names) > 1 and all(a is not None and a.keys() == first for a in attrs):
                # every event attributes the same features: transpose
                columns = zip(*map(itemgetter(*names), cast("list[dict[str, Any]]", attrs)),
                              strict=True)
                out["attributions"] = {n: list(c) for n, c in zip(names, columns, strict=True)}
            else:
                out["attributions"] = {n: [a.get(n) if a else None for a in attrs]
                                       for n in names}
        tags = [rows[i].get("slices") if i in rows else None for i in range(n)]
        if any(tags):
            out["slices"] = {k: [s.get(k) if s else None for s in tags]
                             for k in sorted(set().union(*filter(None, tags)))}
        deployment = [rows[i].get("deployment") if i in rows else None for i in range(n)]
        if any(deployment):
            out["deployment"] = deployment


def columns_from_events(events: list[dict[str, Any]]) -> dict[str, Any]:
    """A columnar batch of normalised events (what travels on the by-model topic).

    Absent and null feature values are both ``None``. Feature columns are sorted by name;
    prediction columns are there only when some event has a prediction, attribution
    columns (sorted by name, ``None`` where an event has none) only when some event has
    attributions.

    >>> cols = columns_from_events([
    ...     {"event_id": "a", "model_version": "v1", "ts": 1.0, "features": {"x": 1}},
    ...     {"event_id": "b", "model_version": "v1", "ts": 2.0, "features": {"y": "u"},
    ...      "prediction": {"label": "no", "score": None, "value": None, "scores": None},
    ...      "attributions": {"y": -0.3}}])
    >>> cols["n"], cols["features"], cols["prediction"]["label"], cols["attributions"]
    (2, {'x': [1, None], 'y': [None, 'u']}, [None, 'no'], {'y': [None, -0.3]})
    >>> "attributions" in columns_from_events([{"ts": 1.0, "features": {}, "attributions": None}])
    False
    >>> cols = columns_from_events([
    ...     {"ts": 1.0, "features": {}, "slices": {"region": "eu"}, "deployment": "shadow"},
    ...     {"ts": 2.0, "features": {}}])
    >>> cols["slices"], cols["deployment"]
    ({'region': ['eu', None]}, ['shadow', None])
    """
    builder = ColumnsBuilder()
    for e in events:
        builder.append_event(e)
    return builder.build()


def column(cols: dict[str, Any], key: SeriesKey) -> list[Any]:
    """The raw values of one series in a columnar batch (``None`` where absent)."""
    source, name = key
    if source == "feature":
        values = cols["features"].get(name)
    else:
        pred = cols["prediction"]
        values = pred.get(name) if pred else None
    return values if values is not None else [None] * cols["n"]


def select_columns(cols: dict[str, Any], rows: list[int] | slice) -> dict[str, Any]:
    """The rows ``rows`` of a columnar batch, as a new batch.

    >>> c = columns_from_events([{"event_id": str(i), "model_version": None, "ts": i,
    ...                           "features": {"x": i}} for i in range(4)])
    >>> select_columns(c, [0, 3])["features"]
    {'x': [0, 3]}
    """
    if isinstance(rows, slice):
        def pick(v: list[Any]) -> list[Any]:
            return v[rows]
    else:
        def pick(v: list[Any]) -> list[Any]:
            return [v[i] for i in rows]
    pred = cols["prediction"]
    ts = pick(cols["ts"])
    out: dict[str, Any] = {
        "n": len(ts),
        "event_id": pick(cols["event_id"]),
        "model_version": pick(cols["model_version"]),
        "ts": ts,
        "features": {k: pick(v) for k, v in cols["features"].items()},
        "prediction": {k: pick(v) for k, v in pred.items()} if pred else None,
    }
    if attrs := cols.get("attributions"):
        out["attributions"] = {k: pick(v) for k, v in attrs.items()}
    if tags := cols.get("slices"):
        out["slices"] = {k: pick(v) for k, v in tags.items()}
    if deployment := cols.get("deployment"):
        out["deployment"] = pick(deployment)
    return out


def events_from_columns(cols: dict[str, Any]) -> list[dict[str, Any]]:
    """Back to compact events (what the cap's rejections carry); null features are left
    out, and ``attributions``, ``slices`` and ``deployment`` are there only for events that
    had some.

    >>> events_from_columns({"n": 2, "ts": [1.0, 2.0], "features": {"x": [1, None]},
    ...                      "prediction": None, "attributions": {"x": [None, 0.5]}})
    [{'ts': 1.0, 'features': {'x': 1}, 'prediction': None},
     {'ts': 2.0, 'features': {}, 'prediction': None, 'attributions': {'x': 0.5}}]
    """
    feats = cols["features"]
    pred = cols["prediction"]
    attrs = cols.get("attributions") or {}
    tags = cols.get("slices") or {}
    deployment = cols.get("deployment")
    out = []
    for i in range(cols["n"]):
        e: dict[str, Any] = {
            "ts": cols["ts"][i],
            "features": {k: v[i] for k, v in feats.items() if v[i] is not None},
            "prediction": None,
        }
        if pred and any(pred[p][i] is not None for p in PREDICTION_PARTS):
            e["prediction"] = {p: pred[p][i] for p in PREDICTION_PARTS}
        if attrs and (a := {k: v[i] for k, v in attrs.items() if v[i] is not None}):
            e["attributions"] = a
        if tags and (t := {k: v[i] for k, v in tags.items() if v[i] is not None}):
            e["slices"] = t
        if deployment and deployment[i] is not None:
            e["deployment"] = deployment[i]
        out.append(e)
    return out


def append_columns(acc: dict[str, Any] | None, cols: dict[str, Any]) -> dict[str, Any]:
    """``acc`` followed by the rows of ``cols``, keeping only what a reference needs
    (``n``, ``ts``, ``features``, ``prediction``, and ``attributions`` once some row has
    them). Used for warm-up buffers, which are part of a monitor's snapshot: columns
    repeat no feature names, unlike event dicts.

    >>> a = append_columns(None, {"n": 1, "ts": [1.0], "features": {"x": [1]},
    ...                           "prediction": None})
    >>> b = append_columns(a, {"n": 1, "ts": [2.0], "features": {"y": ["u"]},
    ...                        "prediction": {"label": ["no"], "score": [None], "value": [None]}})
    >>> b["n"], b["features"], b["prediction"]["label"]
    (2, {'x': [1, None], 'y': [None, 'u']}, [None, 'no'])
    """
    if acc is None:
        acc = {"n": 0, "ts": [], "features": {}, "prediction": None}
    n_a, n_b = acc["n"], cols["n"]
    names = sorted(set(acc["features"]) | set(cols["features"]))
    features = {k: acc["features"].get(k, [None] * n_a) + cols["features"].get(k, [None] * n_b)
                for k in names}
    pa, pb = acc["prediction"], cols["prediction"]
    prediction = None
    if pa or pb:
        prediction = {p: (pa[p] if pa else [None] * n_a) + (pb[p] if pb else [None] * n_b)
                      for p in PREDICTION_PARTS}
    out = {"n": n_a + n_b, "ts": acc["ts"] + list(cols["ts"]), "features": features,
           "prediction": prediction}
    aa, ab = acc.get("attributions") or {}, cols.get("attributions") or {}
    if aa or ab:
        out["attributions"] = {k: aa.get(k, [None] * n_a) + ab.get(k, [None] * n_b)
                               for k in sorted(set(aa) | set(ab))}
    return out
