"""From a batch of normalised events to per-series columns the binnings can count.

A *series* is one monitored stream of values of a model: a feature (``("feature", name)``)
or a part of the prediction (``("prediction", "score" | "value" | "label")``).

Numeric columns are float arrays where ``NaN`` is a missing value and ``+inf`` a value of
the wrong type (validated events never carry infinities, so the marker is unambiguous).

>>> events = [{"features": {"x": 1.5, "c": "DE"}, "prediction": {"score": 0.2}},
...           {"features": {"x": "oops"}, "prediction": None}]
>>> numeric_column(raw_column(events, ("feature", "x"))).tolist()
[1.5, inf]
>>> raw_column(events, ("prediction", "score"))
[0.2, None]
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["PREDICTION_PARTS", "SeriesKey", "numeric_column", "raw_column", "series_name"]

SeriesKey = tuple[str, str]

#: The parts of a prediction that are monitored as series, in report order.
PREDICTION_PARTS = ("score", "value", "label")

_NAN = float("nan")
_INF = float("inf")


def raw_column(events: list[dict[str, Any]], key: SeriesKey) -> list[Any]:
    """The raw values of one series across ``events`` (``None`` where absent)."""
    source, name = key
    if source == "feature":
        return [e["features"].get(name) for e in events]
    return [p[name] if (p := e.get("prediction")) else None for e in events]


def numeric_column(values: list[Any]) -> npt.NDArray[np.float64]:
    """Floats with ``NaN`` for missing and ``+inf`` for a value that is not a number."""
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
