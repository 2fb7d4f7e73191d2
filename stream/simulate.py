"""Realistic, seeded multi-model prediction traffic with injected drift, and its sinks.

The generator is pure: a :class:`Simulator` built from a :class:`SimConfig` yields the
same events for the same seed and the same sequence of calls, in simulated time (event
``i`` has ``ts = start_ts + i / rate``). Three models are simulated by default
(:func:`default_models`): ``fraud`` (binary, ``{"label": bool, "score": p}``), ``churn``
(multiclass, ``{"label": cls, "scores": {...}}``) and ``eta`` (regression, a scalar).

Drift is injected per model and feature from ``at_seconds`` of simulated time on: a
numeric feature's mean moves by ``magnitude`` standard deviations, a categorical
feature moves ``min(0.9, magnitude / 2)`` of its mass onto its rarest category, and the
pseudo-feature ``"prediction"`` shifts the model's output. The model always predicts
from the features it is sent, so feature drift shows up in the predictions too.

Drift does not change which random numbers are drawn, so the events before the onset
are identical with and without it:

>>> base = SimConfig(rate=100.0, start_ts=1_700_000_000.0)
>>> drifted = SimConfig(rate=100.0, start_ts=1_700_000_000.0,
...                     drifts=(DriftSpec("fraud", ("amount",), at_seconds=1.0),))
>>> a, b = Simulator(base).batch(200), Simulator(drifted).batch(200)
>>> a[:100] == b[:100], a[100:] == b[100:]
(True, False)

Labels (delayed ground truth, ``schemas/label.json``) are drawn from the prediction
itself (``label ~ Bernoulli(score)`` for a binary model, a class drawn from ``scores``
for a multiclass one, ``value + N(0, noise)`` for a regression), so the simulated models
are calibrated until ``accuracy_drop_at_seconds``. From then on ``accuracy_drop`` of the
labels are corrupted: flipped (binary), moved to another class drawn uniformly
(multiclass), or pushed ``4 * max(noise, 1)`` away from the true value, up or down at
random (regression, so its absolute error grows). ``label_coverage`` of the events get a
label, ``label_delay_mean_seconds`` after the event on average, with the delay drawn from
``label_delay_distribution`` (``exponential``, ``fixed`` or ``lognormal``).

Faults (:class:`FaultSpec`, ``--fault``) break the data rather than shift it, each over a
window ``[start_seconds, end_seconds)`` of simulated time (``end_seconds=None``: until the
end), so a monitor can be seen to fire and then to resolve:

- ``null``: the feature is sent as ``null``; ``missing``: its key is left out of the
  event's ``features``;
- ``unit``: a numeric feature's values are multiplied by ``factor`` (default 1000);
- ``new_category``: a categorical feature takes :data:`NEW_CATEGORY`, a value it never
  takes otherwise, in a share ``factor`` (default 1.0) of the events;
- ``drop``: the model sends no events at all; ``spike``: its rate is multiplied by
  ``factor`` (default 5).

Like drift, faults draw nothing from the event stream, so every event outside a window,
and every event of another model, is the same as without the fault. The model predicts
from the (broken) features it is sent, and labels follow those predictions, as with
drift. A ``drop`` leaves the model's slots in the window empty: the other models keep
their timestamps, ids and values, and ``batch(n)`` returns fewer than ``n`` events. A
``spike`` turns each of the model's events in the window into ``factor`` events on
average (``floor`` or ``ceil`` of it, carried over so the count is exact over time): the
regular event, unchanged, then the extra ones spread evenly up to the next slot, with ids
``<event_id>-1``, ``<event_id>-2``, ... and features and labels drawn from random streams
of their own; ``batch(n)`` returns more than ``n`` events. Either way the other models'
events, and the time the ``n`` slots cover, do not change:

>>> calm = SimConfig(rate=100.0, start_ts=0.0)
>>> spiky = replace(calm, faults=(FaultSpec("eta", "spike", start_seconds=1.0, end_seconds=2.0),))
>>> a, b = Simulator(calm).batch(300), Simulator(spiky).batch(300)
>>> len(b) == len(a) + 4 * sum(e["model"] == "eta" and 1.0 <= e["ts"] < 2.0 for e in a)
True
>>> [e for e in b if e["event_id"].count("-") == 2] == a  # the regular events
True

Four options enrich the traffic, each off by default and then changing nothing, byte
for byte; each draws only from random streams of its own (per model), so turned on it
changes only what is said here, and never a label:

- ``slices`` (``--slices``): every event carries ``slices``, a ``region`` and a ``device``
  (:data:`SLICES`: ``eu``/``us``/``apac``/``latam`` at 0.4/0.3/0.2/0.1, ``mobile``/``web``
  at 0.6/0.4). A drift can be restricted to one slice value
  (``DriftSpec(..., slice=("region", "eu"))``, ``--drift fraud:amount@region=eu:60``):
  the events of the other slice values are exactly as without the drift.
- ``attributions`` (``--attributions``): every event carries ``attributions``, for each
  of the model's features the exact (linear, interventional) SHAP value of the model
  that served the event: per term ``weight * (input - reference input)``, summed per
  feature. A numeric term's input is ``(x - mean) / std`` with ``mean`` the feature's
  reference mean (:attr:`NumericFeature.mean`; a missing value is imputed with it, so
  counts 0), a categorical term's is the indicator ``x == category`` with reference
  input its reference frequency (``probs[category] * (1 - missing)``); a feature
  without terms gets 0. They explain the linear predictor: the log-odds of a binary
  model, the logit of the predicted class of a multiclass one, the value (before
  ``floor``) of a regression; so they sum to ``z - E_ref[z]``, and a ``prediction``
  drift, which moves the output without any feature, is not in them.
- shadows (:class:`ShadowSpec`, ``--shadow MODEL:VERSION[:CHANGE]``): right after every
  event of the model comes its shadow copy (same ``event_id``, ``ts``, features and
  slices, ``deployment: "shadow"``, ``model_version: VERSION``, the prediction and
  attributions of :func:`perturbed_model`); the model's own events get ``deployment:
  "production"``. Shadow events get no label.
- rollouts (:class:`RolloutSpec`, ``--rollout MODEL:VERSION:START[-END][:CHANGE]``): a
  share of the model's events, 0 at ``START`` growing linearly to 1 at ``END``, is served
  by :func:`perturbed_model` as ``VERSION`` (its ``model_version``, prediction and
  attributions); features, slices and labels stay those of the model as specified.

Labels are the ground truth of the simulated world, drawn from the model as specified:
a worse shadow or rollout shows as worse accuracy.

>>> plain = SimConfig(rate=100.0, start_ts=0.0)
>>> rich = replace(plain, slices=True, attributions=True, shadows=(ShadowSpec("eta", "v2"),))
>>> a, b = Simulator(plain).batch(300), Simulator(rich).batch(300)
>>> added = ("slices", "attributions", "deployment")
>>> production = [e for e in b if e.get("deployment") != "shadow"]
>>> [{k: v for k, v in e.items() if k not in added} for e in production] == a
True
>>> twin = next(e for e in b if e.get("deployment") == "shadow")
>>> twin["model"], twin["model_version"], sorted(twin["slices"])
('eta', 'v2', ['device', 'region'])

The sinks are thin: :func:`write_jsonl` writes events to a file and :func:`produce`
publishes them to Kafka with aiokafka, paced in real time or as fast as possible, events
to the predictions topic and labels to the labels topic.
"""

from __future__ import annotations

import argparse
import asyncio
import heapq
import math
import re
import time
import zlib
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any, ClassVar, Final, Literal

import numpy as np
import numpy.typing as npt
import orjson

from stream.core.clock import Clock, SystemClock
from stream.errors import BrokerError, ConfigError
from stream.files import write_jsonl

__all__ = [
    "DEFAULT_CHANGE",
    "DRIFT_FORMAT",
    "FAULT_FORMAT",
    "FAULT_KINDS",
    "LABEL_DELAY_DISTRIBUTIONS",
    "NEW_CATEGORY",
    "PRODUCTION",
    "ROLLOUT_FORMAT",
    "SHADOW",
    "SHADOW_FORMAT",
    "SLICES",
    "CategoricalFeature",
    "DriftSpec",
    "FaultSpec",
    "ModelSpec",
    "NumericFeature",
    "RolloutSpec",
    "ShadowSpec",
    "SimConfig",
    "Simulator",
    "Term",
    "add_arguments",
    "config_from_args",
    "default_models",
    "encode_messages",
    "parse_drift",
    "parse_fault",
    "parse_rollout",
    "parse_shadow",
    "perturbed_model",
    "produce",
    "simulate_to_file",
    "write_jsonl",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]
#: Per slice name, each event's value index.
_Slices = dict[str, IntArray]

Task = Literal["binary", "multiclass", "regression"]
NumericDist = Literal["normal", "lognormal", "uniform", "poisson", "integer"]
LabelDelayDist = Literal["exponential", "fixed", "lognormal"]
FaultKind = Literal["null", "missing", "unit", "new_category", "drop", "spike"]

#: The accepted form of ``--drift``, quoted in every error about it (``@SLICE=VALUE``:
#: only the events of that slice value drift; needs ``--slices``).
DRIFT_FORMAT: Final = "MODEL:FEATURE[,FEATURE][@SLICE=VALUE]:AT_SECONDS[:MAGNITUDE]"
_DRIFT_EXAMPLES: Final = "e.g. fraud:amount,country:60:1.5 or fraud:amount@region=eu:60"
#: The pseudo-feature name that drifts a model's output instead of an input.
PREDICTION: Final = "prediction"
#: The accepted form of ``--fault``, quoted in every error about it.
FAULT_FORMAT: Final = "MODEL:KIND[:FEATURE]:START[-END][:FACTOR]"
#: The fault kinds (``FaultSpec.kind``): four break one feature, two the model's traffic.
FAULT_KINDS: Final = ("null", "missing", "unit", "new_category", "drop", "spike")
#: The value a ``new_category`` fault gives a categorical feature.
NEW_CATEGORY: Final = "__new_category__"
_FEATURE_FAULTS: Final = ("null", "missing", "unit", "new_category")
_DEFAULT_FAULT_FACTORS: Final = {"unit": 1000.0, "spike": 5.0, "new_category": 1.0}
_FAULT_EXAMPLES: Final = "e.g. fraud:null:amount:60-120, eta:unit:distance_km:30, churn:spike:60-90:4"

#: The simulated slices (``SimConfig.slices``, ``--slices``): slice name -> (values, their
#: probabilities). Every event gets one value of each.
SLICES: Final[Mapping[str, tuple[tuple[str, ...], tuple[float, ...]]]] = MappingProxyType(
    {
        "region": (("eu", "us", "apac", "latam"), (0.4, 0.3, 0.2, 0.1)),
        "device": (("mobile", "web"), (0.6, 0.4)),
    }
)
_SLICES_TEXT: Final = "; ".join(f"{k} ({', '.join(v[0])})" for k, v in SLICES.items())
#: The accepted form of ``--shadow``, quoted in every error about it.
SHADOW_FORMAT: Final = "MODEL:VERSION[:CHANGE]"
_SHADOW_EXAMPLES: Final = "e.g. fraud:v2 or eta:v2-candidate:1.5"
#: The accepted form of ``--rollout``, quoted in every error about it.
ROLLOUT_FORMAT: Final = "MODEL:VERSION:START[-END][:CHANGE]"
_ROLLOUT_EXAMPLES: Final = "e.g. fraud:v2:60-120 or churn:v2:30:1.0"
#: How far a shadow or rollout model is from the model it copies, by default
#: (:func:`perturbed_model`).
DEFAULT_CHANGE: Final = 0.5
#: The ``deployment`` of a shadowed model's regular events, and of their shadow copies.
PRODUCTION: Final = "production"
SHADOW: Final = "shadow"
_MAX_VERSION_CHARS: Final = 200  # schemas/prediction.json: model_version

_TASKS: Final = ("binary", "multiclass", "regression")
_DISTS: Final = ("normal", "lognormal", "uniform", "poisson", "integer")
#: The accepted label delay distributions (``SimConfig.label_delay_distribution``).
LABEL_DELAY_DISTRIBUTIONS: Final = ("exponential", "fixed", "lognormal")
#: The sigma of the log of a ``lognormal`` label delay.
LABEL_DELAY_LOGNORMAL_SIGMA: Final = 1.0
_CALIBRATION_SIZE: Final = 4000
_DEFAULT_MAX_PENDING_LABELS: Final = 1_000_000


def _finite(value: float) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


# --------------------------------------------------------------------------- features


@dataclass(frozen=True)
class NumericFeature:
    """A numeric feature drawn from a named distribution.

    ``dist`` and its parameters: ``normal`` (``a`` = mean, ``b`` = std), ``lognormal``
    (``a`` = mu, ``b`` = sigma of the underlying normal), ``uniform`` (``a`` = low,
    ``b`` = high), ``poisson`` (``a`` = lambda), ``integer`` (uniform integers in
    ``[a, b)``). ``low``/``high`` clip the natural values (not drifted ones);
    ``decimals`` rounds, and ``decimals=0`` sends integers. ``missing`` is the share of
    events that send ``null``.

    >>> f = NumericFeature("tenure_months", "integer", 1, 73, decimals=0)
    >>> f.mean, round(f.std, 2)
    (36.5, 20.78)
    """

    name: str
    dist: NumericDist
    a: float
    b: float = 0.0
    missing: float = 0.0
    decimals: int = 2
    low: float | None = None
    high: float | None = None

    kind: ClassVar[str] = "numeric"

    def __post_init__(self) -> None:
        where = f"numeric feature {self.name!r}"
        if self.dist not in _DISTS:
            raise ConfigError(
                f"{where}: dist must be one of {', '.join(_DISTS)}, not {self.dist!r}"
            )
        if not (_finite(self.a) and _finite(self.b)):
            raise ConfigError(f"{where}: parameters a and b must be finite numbers")
        if self.dist in ("normal", "lognormal") and self.b <= 0:
            raise ConfigError(f"{where}: b (the standard deviation) must be > 0")
        if self.dist == "uniform" and self.b <= self.a:
            raise ConfigError(f"{where}: uniform needs a < b (low < high)")
        if self.dist == "integer" and (self.b - self.a < 2 or self.a != int(self.a)):
            raise ConfigError(f"{where}: integer needs whole a and b >= a + 2 ([a, b) range)")
        if self.dist == "poisson" and self.a <= 0:
            raise ConfigError(f"{where}: poisson needs a (lambda) > 0")
        if not 0.0 <= self.missing < 1.0:
            raise ConfigError(f"{where}: missing must be in [0, 1), not {self.missing!r}")

    @property
    def mean(self) -> float:
        """The mean of the unclipped distribution."""
        a, b = float(self.a), float(self.b)
        if self.dist == "lognormal":
            return math.exp(a + b * b / 2)
        if self.dist == "uniform":
            return (a + b) / 2
        if self.dist == "integer":
            return (a + b - 1) / 2
        return a  # normal, poisson

    @property
    def std(self) -> float:
        """The standard deviation of the unclipped distribution (the unit of drift)."""
        a, b = float(self.a), float(self.b)
        if self.dist == "normal":
            return b
        if self.dist == "lognormal":
            return math.sqrt((math.exp(b * b) - 1) * math.exp(2 * a + b * b))
        if self.dist == "uniform":
            return (b - a) / math.sqrt(12)
        if self.dist == "integer":
            return math.sqrt(((b - a) ** 2 - 1) / 12)
        return math.sqrt(a)  # poisson

    def sample(self, rng: np.random.Generator, n: int) -> FloatArray:
        """``n`` natural (undrifted, unrounded) values."""
        a, b = float(self.a), float(self.b)
        if self.dist == "normal":
            x = rng.normal(a, b, n)
        elif self.dist == "lognormal":
            x = rng.lognormal(a, b, n)
        elif self.dist == "uniform":
            x = rng.uniform(a, b, n)
        elif self.dist == "poisson":
            x = rng.poisson(a, n).astype(np.float64)
        else:
            x = rng.integers(int(a), int(b), n).astype(np.float64)
        if self.low is not None or self.high is not None:
            x = np.clip(x, self.low, self.high)
        return np.asarray(x, dtype=np.float64)


@dataclass(frozen=True)
class CategoricalFeature:
    """A categorical feature: ``categories`` drawn with ``probs`` (which sum to 1).

    >>> f = CategoricalFeature("device", ("mobile", "desktop", "tablet"), (0.6, 0.32, 0.08))
    >>> f.rare, f.drifted_probs(1.0).round(2).tolist()
    ('tablet', [0.3, 0.16, 0.54])
    """

    name: str
    categories: tuple[str, ...]
    probs: tuple[float, ...]
    missing: float = 0.0

    kind: ClassVar[str] = "categorical"

    def __post_init__(self) -> None:
        where = f"categorical feature {self.name!r}"
        if len(self.categories) < 2 or len(self.categories) != len(self.probs):
            raise ConfigError(f"{where}: needs >= 2 categories and one probability for each")
        if len(set(self.categories)) != len(self.categories):
            raise ConfigError(f"{where}: categories must be unique")
        if any(not _finite(p) or p < 0 for p in self.probs) or abs(sum(self.probs) - 1) > 1e-6:
            raise ConfigError(f"{where}: probs must be >= 0 and sum to 1, not {self.probs!r}")
        if not 0.0 <= self.missing < 1.0:
            raise ConfigError(f"{where}: missing must be in [0, 1), not {self.missing!r}")

    @property
    def rare_index(self) -> int:
        """The index of the least likely category (the first one on ties)."""
        return int(np.argmin(self.probs))

    @property
    def rare(self) -> str:
        """The category drift moves mass onto."""
        return self.categories[self.rare_index]

    def drifted_probs(self, magnitude: float) -> FloatArray:
        """The mix after drift: ``min(0.9, |magnitude| / 2)`` of the mass moves to
        :attr:`rare`."""
        share = min(0.9, abs(magnitude) * 0.5)
        probs = np.asarray(self.probs, dtype=np.float64) * (1.0 - share)
        probs[self.rare_index] += share
        return probs


FeatureSpec = NumericFeature | CategoricalFeature


@dataclass(frozen=True)
class Term:
    """One additive term of a model's linear predictor, with one weight per output.

    For a numeric feature the term is ``weights * (x - mean) / std`` (0 when missing);
    with ``category`` set it is ``weights * (x == category)``. A binary or regression
    model has one output, a multiclass model one per class.
    """

    feature: str
    weights: tuple[float, ...]
    category: str | None = None


@dataclass(frozen=True)
class ModelSpec:
    """A simulated model: its features and how it turns them into a prediction.

    The linear predictor is ``intercepts + sum(terms)``. ``binary``: ``score =
    sigmoid(z)`` and ``label = score >= threshold``; ``multiclass``: ``scores =
    softmax(z)`` over ``classes``; ``regression``: the prediction is ``z`` (at least
    ``floor`` when set), and the true value is ``z + N(0, noise)``. ``weight`` is the
    model's relative share of the traffic.
    """

    name: str
    version: str
    task: Task
    features: tuple[FeatureSpec, ...]
    terms: tuple[Term, ...] = ()
    intercepts: tuple[float, ...] = (0.0,)
    classes: tuple[str, ...] = ()
    weight: float = 1.0
    threshold: float = 0.5
    noise: float = 1.0
    floor: float | None = None

    def __post_init__(self) -> None:
        where = f"model {self.name!r}"
        if not self.name or not self.version:
            raise ConfigError(f"{where}: name and version must be non-empty strings")
        if self.task not in _TASKS:
            raise ConfigError(f"{where}: task must be one of {', '.join(_TASKS)}")
        names = [f.name for f in self.features]
        if not names or len(set(names)) != len(names) or PREDICTION in names:
            raise ConfigError(
                f"{where}: needs features with unique names (and none called {PREDICTION!r})"
            )
        outputs = self.outputs
        if self.task == "multiclass" and (
            len(self.classes) < 2 or len(set(self.classes)) != outputs
        ):
            raise ConfigError(f"{where}: multiclass needs >= 2 unique classes")
        if len(self.intercepts) != outputs:
            raise ConfigError(f"{where}: needs {outputs} intercept(s), one per output")
        by_name = {f.name: f for f in self.features}
        for term in self.terms:
            feature = by_name.get(term.feature)
            if feature is None or len(term.weights) != outputs:
                raise ConfigError(
                    f"{where}: term {term!r} must name a feature and carry {outputs} weight(s)"
                )
            if (term.category is None) != isinstance(feature, NumericFeature) or (
                isinstance(feature, CategoricalFeature) and term.category not in feature.categories
            ):
                raise ConfigError(
                    f"{where}: term {term!r}: numeric features take no category, categorical"
                    " ones need one of their categories"
                )
        if not (_finite(self.weight) and self.weight > 0):
            raise ConfigError(f"{where}: weight must be > 0")
        if not (_finite(self.noise) and self.noise >= 0):
            raise ConfigError(f"{where}: noise must be >= 0")

    @property
    def outputs(self) -> int:
        """The number of linear outputs: one per class for multiclass, else one."""
        return len(self.classes) if self.task == "multiclass" else 1

    def feature(self, name: str) -> FeatureSpec:
        """The feature called ``name`` (``KeyError`` if there is none)."""
        for f in self.features:
            if f.name == name:
                return f
        raise KeyError(name)


def _t(feature: str, *weights: float, category: str | None = None) -> Term:
    return Term(feature, tuple(weights), category)


def default_models() -> tuple[ModelSpec, ...]:
    """The three default models: ``fraud`` (binary), ``churn`` (multiclass), ``eta``
    (regression), with 10, 9 and 9 features.

    >>> [(m.name, m.task, len(m.features)) for m in default_models()]
    [('fraud', 'binary', 10), ('churn', 'multiclass', 9), ('eta', 'regression', 9)]
    """
    fraud = ModelSpec(
        name="fraud",
        version="v1",
        task="binary",
        weight=0.5,
        features=(
            NumericFeature("amount", "lognormal", 3.6, 1.1),
            NumericFeature("account_age_days", "integer", 0, 3650, decimals=0),
            NumericFeature("txn_count_24h", "poisson", 3.0, decimals=0),
            NumericFeature("distance_from_home_km", "lognormal", 2.0, 1.2, missing=0.03),
            NumericFeature("merchant_risk", "uniform", 0.0, 1.0, decimals=3),
            NumericFeature("avg_amount_30d", "lognormal", 3.8, 0.8, missing=0.05),
            CategoricalFeature(
                "country",
                ("US", "GB", "DE", "FR", "IN", "BR", "NG"),
                (0.55, 0.12, 0.10, 0.08, 0.07, 0.05, 0.03),
            ),
            CategoricalFeature("device", ("mobile", "desktop", "tablet"), (0.6, 0.32, 0.08)),
            CategoricalFeature(
                "payment_method", ("card", "wallet", "bank_transfer"), (0.7, 0.2, 0.1)
            ),
            CategoricalFeature(
                "merchant_category",
                ("grocery", "electronics", "travel", "gaming", "fashion", "other"),
                (0.3, 0.15, 0.1, 0.05, 0.2, 0.2),
                missing=0.02,
            ),
        ),
        intercepts=(-3.4,),
        terms=(
            _t("amount", 0.5),
            _t("txn_count_24h", 0.6),
            _t("distance_from_home_km", 0.3),
            _t("account_age_days", -0.7),
            _t("merchant_risk", 0.9),
            _t("country", 1.2, category="NG"),
            _t("country", 0.5, category="BR"),
            _t("device", 0.2, category="mobile"),
            _t("merchant_category", 0.6, category="gaming"),
            _t("merchant_category", 0.4, category="electronics"),
        ),
    )
    churn = ModelSpec(
        name="churn",
        version="v1",
        task="multiclass",
        weight=0.2,
        classes=("stay", "downgrade", "churn"),
        features=(
            NumericFeature("tenure_months", "integer", 1, 73, decimals=0),
            NumericFeature("monthly_spend", "normal", 55.0, 18.0, low=0.0),
            NumericFeature("support_tickets_90d", "poisson", 1.2, decimals=0),
            NumericFeature("sessions_30d", "poisson", 18.0, decimals=0),
            NumericFeature("days_since_login", "lognormal", 1.5, 1.0, missing=0.02, decimals=1),
            NumericFeature("nps", "integer", 0, 11, missing=0.15, decimals=0),
            CategoricalFeature(
                "plan_tier", ("free", "basic", "pro", "enterprise"), (0.45, 0.3, 0.2, 0.05)
            ),
            CategoricalFeature("region", ("na", "emea", "apac", "latam"), (0.4, 0.3, 0.2, 0.1)),
            CategoricalFeature("billing_cycle", ("monthly", "annual"), (0.7, 0.3)),
        ),
        intercepts=(1.0, 0.6, -0.6),
        terms=(
            _t("tenure_months", 0.5, 0.0, -0.6),
            _t("support_tickets_90d", -0.3, 0.2, 0.6),
            _t("sessions_30d", 0.6, -0.1, -0.7),
            _t("days_since_login", -0.4, 0.1, 0.7),
            _t("monthly_spend", 0.0, 0.4, 0.2),
            _t("nps", 0.4, 0.0, -0.4),
            _t("plan_tier", -0.3, -0.5, 0.4, category="free"),
            _t("billing_cycle", 0.6, 0.0, -0.6, category="annual"),
        ),
    )
    eta = ModelSpec(
        name="eta",
        version="v1",
        task="regression",
        weight=0.3,
        noise=5.0,
        floor=1.0,
        features=(
            NumericFeature("distance_km", "lognormal", 1.6, 0.6),
            NumericFeature("traffic_index", "normal", 1.0, 0.25, low=0.3, decimals=3),
            NumericFeature("items_count", "poisson", 4.0, decimals=0),
            NumericFeature("prep_time_min", "normal", 12.0, 4.0, low=1.0, missing=0.04, decimals=1),
            NumericFeature("courier_rating", "normal", 4.7, 0.2, high=5.0),
            NumericFeature("hour_of_day", "integer", 0, 24, decimals=0),
            CategoricalFeature("weather", ("clear", "rain", "snow", "fog"), (0.7, 0.2, 0.05, 0.05)),
            CategoricalFeature("vehicle", ("bike", "scooter", "car"), (0.35, 0.4, 0.25)),
            CategoricalFeature(
                "city",
                ("nyc", "london", "sf", "berlin", "sao_paulo"),
                (0.3, 0.25, 0.15, 0.15, 0.15),
            ),
        ),
        intercepts=(28.0,),
        terms=(
            _t("distance_km", 6.0),
            _t("traffic_index", 3.0),
            _t("items_count", 1.5),
            _t("prep_time_min", 3.0),
            _t("courier_rating", -0.8),
            _t("weather", 2.0, category="rain"),
            _t("weather", 6.0, category="snow"),
            _t("vehicle", -2.0, category="scooter"),
            _t("vehicle", 1.5, category="car"),
            _t("city", 2.5, category="nyc"),
        ),
    )
    return (fraud, churn, eta)


# --------------------------------------------------------------------------- config


@dataclass(frozen=True)
class DriftSpec:
    """Drift injected into ``model`` from ``at_seconds`` of simulated time on (up to
    ``end_seconds``, excluded, when set: the drift then recovers).

    ``features`` may include ``"prediction"`` (the model's output shifts by ``magnitude``
    of its standard deviation, in logit space for classifiers). ``unit_factor``, when
    set, multiplies a numeric feature's (or a regression's) values after the shift, as
    a unit bug would; use ``magnitude=0`` for a pure unit change (or a ``unit``
    :class:`FaultSpec`).

    ``slice``, a ``(slice name, value)`` pair of :data:`SLICES`, restricts the drift to the
    events of that slice value (the simulator then needs ``SimConfig(slices=True)``);
    the other events are exactly as without the drift.

    >>> DriftSpec("fraud", "amount", at_seconds=60).features
    ('amount',)
    >>> DriftSpec("fraud", "amount", at_seconds=60, slice=("region", "mars"))
    Traceback (most recent call last):
    ...
    stream.errors.ConfigError: drift on 'fraud': slice 'region' has no value 'mars'; its values: eu, us, ...
    >>> DriftSpec("fraud", "amount", at_seconds=60, end_seconds=30)
    Traceback (most recent call last):
    ...
    stream.errors.ConfigError: drift on 'fraud': end_seconds must be None (until the end) or a number > ...
    """

    model: str
    features: tuple[str, ...]
    at_seconds: float
    magnitude: float = 1.0
    unit_factor: float | None = None
    end_seconds: float | None = None
    slice: tuple[str, str] | None = None

    def __post_init__(self) -> None:
        if isinstance(self.features, str):
            object.__setattr__(self, "features", (self.features,))
        else:
            object.__setattr__(self, "features", tuple(self.features))
        if not self.features or not all(isinstance(f, str) and f for f in self.features):
            raise ConfigError(f"drift on {self.model!r}: features must be non-empty names")
        if not (_finite(self.at_seconds) and self.at_seconds >= 0):
            raise ConfigError(f"drift on {self.model!r}: at_seconds must be a number >= 0")
        if not _finite(self.magnitude):
            raise ConfigError(f"drift on {self.model!r}: magnitude must be a finite number")
        if self.unit_factor is not None and not (
            _finite(self.unit_factor) and self.unit_factor != 0
        ):
            raise ConfigError(f"drift on {self.model!r}: unit_factor must be finite and non-zero")
        if self.end_seconds is not None and not (
            _finite(self.end_seconds) and self.end_seconds > self.at_seconds
        ):
            raise ConfigError(
                f"drift on {self.model!r}: end_seconds must be None (until the end) or a number"
                f" > at_seconds ({self.at_seconds:g}), not {self.end_seconds!r}"
            )
        if self.slice is not None:
            object.__setattr__(self, "slice", _check_slice(self.slice, f"drift on {self.model!r}"))

    @property
    def slice_text(self) -> str:
        """``" in slice NAME=VALUE"`` for a slice-restricted drift, else ``""``."""
        return "" if self.slice is None else f" in slice {self.slice[0]}={self.slice[1]}"


def _check_slice(value: Any, where: str) -> tuple[str, str]:
    """``value`` as a ``(slice name, value)`` pair of :data:`SLICES`, or a ConfigError."""
    if (
        not isinstance(value, tuple | list)
        or len(value) != 2
        or not all(isinstance(v, str) for v in value)
    ):
        raise ConfigError(
            f"{where}: slice must be a (slice name, value) pair such as ('region', 'eu'),"
            f" not {value!r}"
        )
    key, val = value
    if key not in SLICES:
        raise ConfigError(
            f"{where}: unknown slice {key!r}; the simulated slices are {_SLICES_TEXT}"
        )
    values = SLICES[key][0]
    if val not in values:
        raise ConfigError(
            f"{where}: slice {key!r} has no value {val!r}; its values: {', '.join(values)}"
        )
    return (key, val)


def _check_version(version: Any, where: str) -> None:
    if not isinstance(version, str) or not 1 <= len(version) <= _MAX_VERSION_CHARS:
        raise ConfigError(
            f"{where}: version must be a string of 1 to {_MAX_VERSION_CHARS} characters (the"
            f" events' model_version), not {version!r}"
        )


def _check_window(start: Any, end: Any, where: str, open_end: str) -> None:
    """A ``[start_seconds, end_seconds)`` window of simulated time; ``open_end`` says what
    ``end_seconds=None`` means."""
    if isinstance(start, bool) or not (_finite(start) and start >= 0):
        raise ConfigError(f"{where}: start_seconds must be a number >= 0, not {start!r}")
    if end is not None and not (_finite(end) and end > start):
        raise ConfigError(
            f"{where}: end_seconds must be None ({open_end}) or a number > start_seconds"
            f" ({start:g}), not {end!r}"
        )


def _check_change(change: Any, where: str) -> float:
    if isinstance(change, bool) or not _finite(change) or change < 0:
        raise ConfigError(
            f"{where}: change must be a finite number >= 0 (how far the new model's weights"
            f" move, in units of the model's typical weight; 0: an identical copy), not"
            f" {change!r}"
        )
    return float(change)


@dataclass(frozen=True)
class ShadowSpec:
    """A shadow deployment of ``model``: every event of the model is sent again, right
    after it, as served by the model ``version`` (:func:`perturbed_model` of the model,
    ``change`` away from it).

    The shadow event has the same ``event_id``, ``ts``, features and slices, its own
    ``prediction`` (and attributions), ``model_version: version`` and ``deployment:
    "shadow"``; the regular events of the model get ``deployment: "production"``.
    Shadow events get no labels (the production event's label is the event's label).

    >>> ShadowSpec("fraud", "v2").change
    0.5
    >>> ShadowSpec("fraud", "v2", change=-1)
    Traceback (most recent call last):
    ...
    stream.errors.ConfigError: shadow of 'fraud': change must be a finite number >= 0 (how far ...
    """

    model: str
    version: str
    change: float = DEFAULT_CHANGE

    def __post_init__(self) -> None:
        where = f"shadow of {self.model!r}"
        if not isinstance(self.model, str) or not self.model:
            raise ConfigError(f"{where}: model must be a non-empty name")
        _check_version(self.version, where)
        object.__setattr__(self, "change", _check_change(self.change, where))


@dataclass(frozen=True)
class RolloutSpec:
    """The rollout of version ``version`` of ``model`` (:func:`perturbed_model` of the
    model, ``change`` away from it), by seconds of simulated time.

    Before ``start_seconds`` the current model serves every event; from then on a share
    that grows linearly from 0 at ``start_seconds`` to 1 at ``end_seconds`` is served by
    the new version (``end_seconds=None``: all of them from ``start_seconds``). Which
    events is drawn per event from a random stream of the rollout's own. An event the
    new version serves has its ``model_version`` and ``prediction`` (and attributions);
    its features, slices and label are those of the event the current model would have
    served.

    >>> r = RolloutSpec("fraud", "v2", start_seconds=60, end_seconds=120)
    >>> r.share(np.array([0.0, 60.0, 90.0, 120.0, 500.0])).tolist()
    [0.0, 0.0, 0.5, 1.0, 1.0]
    >>> RolloutSpec("fraud", "v2", start_seconds=60).share(np.array([59.9, 60.0])).tolist()
    [0.0, 1.0]
    """

    model: str
    version: str
    start_seconds: float
    end_seconds: float | None = None
    change: float = DEFAULT_CHANGE

    def __post_init__(self) -> None:
        where = f"rollout of {self.model!r}"
        if not isinstance(self.model, str) or not self.model:
            raise ConfigError(f"{where}: model must be a non-empty name")
        _check_version(self.version, where)
        _check_window(self.start_seconds, self.end_seconds, where, "all events from start_seconds")
        object.__setattr__(self, "change", _check_change(self.change, where))

    def share(self, elapsed: FloatArray) -> FloatArray:
        """The share of events the new version serves at ``elapsed`` seconds."""
        elapsed = np.asarray(elapsed, dtype=np.float64)
        if self.end_seconds is None:
            return np.where(elapsed >= self.start_seconds, 1.0, 0.0)
        ramp = (elapsed - self.start_seconds) / (self.end_seconds - self.start_seconds)
        return np.asarray(np.clip(ramp, 0.0, 1.0), dtype=np.float64)


def perturbed_model(spec: ModelSpec, version: str, change: float, seed: int) -> ModelSpec:
    """A copy of ``spec`` as version ``version`` whose weights and intercepts moved.

    Each weight and intercept of output ``k`` moves by ``change * s_k * N(0, 1)``, where
    ``s_k`` is the root mean square of the model's term weights for that output (so
    ``change`` is in units of the model's typical weight, whatever the scale of its
    output). The ``N(0, 1)`` draws depend on ``seed``, the model's name and ``version``
    only: the same version is the same model wherever it appears (a shadow and then a
    rollout of it), and a larger ``change`` moves it further in the same direction.

    >>> fraud = default_models()[0]
    >>> v2 = perturbed_model(fraud, "v2", 0.5, seed=7)
    >>> v2.version, v2 == perturbed_model(fraud, "v2", 0.5, seed=7), v2.terms == fraud.terms
    ('v2', True, False)
    >>> perturbed_model(fraud, "v2", 0.0, seed=7) == replace(fraud, version="v2")
    True
    """
    outputs = spec.outputs
    change = _check_change(change, f"perturbed model {spec.name!r}")
    rng = np.random.default_rng([seed, _stable_hash(spec.name), _stable_hash(version), 3])
    weights = np.array([t.weights for t in spec.terms], dtype=np.float64).reshape(-1, outputs)
    scale = np.sqrt((weights**2).mean(axis=0)) if len(spec.terms) else np.ones(outputs)
    scale = np.where(scale > 0, scale, 1.0)
    moved = weights + change * scale * rng.standard_normal(weights.shape)
    intercepts = np.asarray(spec.intercepts, dtype=np.float64)
    intercepts = intercepts + change * scale * rng.standard_normal(outputs)
    terms = tuple(
        replace(term, weights=tuple(row)) for term, row in zip(spec.terms, moved.tolist(), strict=True)
    )
    return replace(spec, version=version, terms=terms, intercepts=tuple(intercepts.tolist()))


@dataclass(frozen=True)
class FaultSpec:
    """A data-integrity or traffic fault of ``model``, active while ``start_seconds <=
    ts - start_ts < end_seconds`` (``end_seconds=None``: until the end).

    ``kind`` (one of :data:`FAULT_KINDS`) and what ``feature`` and ``factor`` mean:

    - ``"null"``: ``feature`` is sent as ``null`` (no factor);
    - ``"missing"``: ``feature``'s key is left out of ``features`` (no factor);
    - ``"unit"``: numeric ``feature``'s values are multiplied by ``factor`` (default
      1000; finite and non-zero);
    - ``"new_category"``: categorical ``feature`` takes :data:`NEW_CATEGORY` in a share
      ``factor`` of the events (default 1.0; in ``(0, 1]``);
    - ``"drop"``: no events of ``model`` at all (no feature, no factor);
    - ``"spike"``: ``model``'s event rate is multiplied by ``factor`` (default 5; > 1; no
      feature). Overlapping ``drop``/``spike`` windows of one model multiply.

    A ``factor`` left out takes its kind's default, so equal faults compare equal.

    >>> FaultSpec("eta", "unit", "distance_km", start_seconds=30, end_seconds=90).factor
    1000.0
    >>> FaultSpec("fraud", "drop", "amount", start_seconds=60)
    Traceback (most recent call last):
    ...
    stream.errors.ConfigError: fault on 'fraud': kind 'drop' takes no feature (it acts on all of ...)
    """

    model: str
    kind: FaultKind
    feature: str | None = None
    start_seconds: float = 0.0
    end_seconds: float | None = None
    factor: float | None = None

    def __post_init__(self) -> None:
        where = f"fault on {self.model!r}"
        if not isinstance(self.model, str) or not self.model:
            raise ConfigError(f"{where}: model must be a non-empty name")
        if self.kind not in FAULT_KINDS:
            raise ConfigError(
                f"{where}: kind must be one of {', '.join(FAULT_KINDS)}, not {self.kind!r}"
            )
        kind = self.kind
        if kind in _FEATURE_FAULTS:
            if not isinstance(self.feature, str) or not self.feature:
                raise ConfigError(f"{where}: kind {kind!r} needs a feature (the input it breaks)")
            if self.feature == PREDICTION:
                raise ConfigError(
                    f"{where}: faults break input features, not {PREDICTION!r}; for a unit"
                    " change of a regression's output use DriftSpec(..., unit_factor=...)"
                )
        elif self.feature is not None:
            raise ConfigError(
                f"{where}: kind {kind!r} takes no feature (it acts on all of the model's events)"
            )
        _check_window(self.start_seconds, self.end_seconds, where, "until the end")
        default = _DEFAULT_FAULT_FACTORS.get(kind)
        if default is None:
            if self.factor is not None:
                raise ConfigError(f"{where}: kind {kind!r} takes no factor, got {self.factor!r}")
            return
        factor = default if self.factor is None else self.factor
        if not _finite(factor) or isinstance(factor, bool):
            raise ConfigError(f"{where}: factor must be a finite number, not {factor!r}")
        if kind == "unit" and factor == 0:
            raise ConfigError(f"{where}: a unit factor must be non-zero (the values' multiplier)")
        if kind == "spike" and not factor > 1:
            raise ConfigError(
                f"{where}: a spike factor must be > 1 (the rate's multiplier; kind 'drop' stops"
                f" the traffic), not {factor!r}"
            )
        if kind == "new_category" and not 0 < factor <= 1:
            raise ConfigError(
                f"{where}: a new_category factor must be in (0, 1] (the share of events that"
                f" get {NEW_CATEGORY!r}), not {factor!r}"
            )
        object.__setattr__(self, "factor", float(factor))

    def active(self, elapsed: FloatArray) -> BoolArray:
        """Which of the ``elapsed`` seconds (``ts - start_ts``) fall in the window."""
        return _window(elapsed, self.start_seconds, self.end_seconds)


def _window(elapsed: FloatArray, start: float, end: float | None) -> BoolArray:
    mask = elapsed >= start
    if end is not None:
        mask &= elapsed < end
    return np.asarray(mask, dtype=np.bool_)


def _blank(
    fault: FaultSpec, elapsed: FloatArray, values: list[Any], inputs: npt.NDArray[Any], fill: float
) -> None:
    """Apply a ``null`` or ``missing`` fault: the model sees ``fill`` (a missing value)."""
    mask = fault.active(elapsed)
    if not mask.any():
        return
    inputs[mask] = fill
    value = None if fault.kind == "null" else _ABSENT
    for j in np.flatnonzero(mask).tolist():
        values[j] = value


@dataclass(frozen=True)
class SimConfig:
    """Everything a :class:`Simulator` needs; validated on construction.

    ``rate`` is total events per second of simulated time; ``start_ts`` the event-time
    origin (``None``: the clock's now when the simulator starts). Labels are produced
    when ``labels`` is set: ``label_coverage`` of the events get one, after a delay of
    mean ``label_delay_mean_seconds`` drawn from ``label_delay_distribution``:

    - ``"exponential"`` (the default): memoryless, many quick labels and a long tail;
    - ``"fixed"``: exactly ``label_delay_mean_seconds`` for every label;
    - ``"lognormal"``: ``exp(N(mu, 1.0))`` with ``mu = ln(mean) - 1/2``, so that its mean
      is ``label_delay_mean_seconds`` (median ``mean / sqrt(e)``, a heavier tail).

    The distribution changes the delays only: which events get a label, and the labels'
    values, are the same for the same seed whatever the distribution.
    ``accuracy_drop_at_seconds`` and ``accuracy_drop`` corrupt labels (see the module
    docstring). ``envelope`` is the number of events per Kafka message (1: one JSON
    object; N > 1: JSON arrays of up to N). ``faults`` break features or traffic over
    windows of simulated time (:class:`FaultSpec`, and the module docstring).

    ``slices`` tags every event with :data:`SLICES`; ``attributions`` adds each
    prediction's feature attributions; ``shadows`` (:class:`ShadowSpec`, one per model at
    most) and ``rollouts`` (:class:`RolloutSpec`, one per model at most) serve a model's
    events with other versions of it. See the module docstring; each is off by default
    and then changes nothing.

    >>> SimConfig(rate=0)
    Traceback (most recent call last):
    ...
    stream.errors.ConfigError: simulator rate must be a number > 0 (events per second), got 0
    >>> SimConfig(label_delay_distribution="gamma")
    Traceback (most recent call last):
    ...
    stream.errors.ConfigError: simulator label_delay_distribution must be one of exponential, ..., not 'gamma'
    >>> SimConfig(drifts=(DriftSpec("fraud", "amount", 60, slice=("region", "eu")),))
    Traceback (most recent call last):
    ...
    stream.errors.ConfigError: drift on 'fraud' in slice region=eu needs slices=True (--slices): ...
    """

    models: tuple[ModelSpec, ...] = default_models()
    rate: float = 300.0
    seed: int = 7
    start_ts: float | None = None
    drifts: tuple[DriftSpec, ...] = ()
    labels: bool = False
    label_delay_mean_seconds: float = 30.0
    label_delay_distribution: LabelDelayDist = "exponential"
    label_coverage: float = 0.9
    accuracy_drop_at_seconds: float | None = None
    accuracy_drop: float = 0.3
    envelope: int = 1
    faults: tuple[FaultSpec, ...] = ()
    slices: bool = False
    attributions: bool = False
    shadows: tuple[ShadowSpec, ...] = ()
    rollouts: tuple[RolloutSpec, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "models", tuple(self.models))
        object.__setattr__(self, "drifts", tuple(self.drifts))
        object.__setattr__(self, "faults", tuple(self.faults))
        object.__setattr__(self, "shadows", tuple(self.shadows))
        object.__setattr__(self, "rollouts", tuple(self.rollouts))
        names = [m.name for m in self.models]
        if not names or len(set(names)) != len(names):
            raise ConfigError("simulator models must be a non-empty tuple with unique names")
        if not (_finite(self.rate) and self.rate > 0):
            raise ConfigError(
                f"simulator rate must be a number > 0 (events per second), got {self.rate!r}"
            )
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or self.seed < 0:
            raise ConfigError(f"simulator seed must be an integer >= 0, got {self.seed!r}")
        if self.start_ts is not None and not (_finite(self.start_ts) and self.start_ts >= 0):
            raise ConfigError(
                f"simulator start_ts must be epoch seconds >= 0, got {self.start_ts!r}"
            )
        if not (_finite(self.label_delay_mean_seconds) and self.label_delay_mean_seconds > 0):
            raise ConfigError("simulator label_delay_mean_seconds must be > 0")
        if self.label_delay_distribution not in LABEL_DELAY_DISTRIBUTIONS:
            raise ConfigError(
                "simulator label_delay_distribution must be one of"
                f" {', '.join(LABEL_DELAY_DISTRIBUTIONS)}, not {self.label_delay_distribution!r}"
            )
        for name in ("label_coverage", "accuracy_drop"):
            value = getattr(self, name)
            if not (_finite(value) and 0.0 <= value <= 1.0):
                raise ConfigError(f"simulator {name} must be in [0, 1], got {value!r}")
        drop_at = self.accuracy_drop_at_seconds
        if drop_at is not None and not (_finite(drop_at) and drop_at >= 0):
            raise ConfigError("simulator accuracy_drop_at_seconds must be >= 0 or None")
        if not isinstance(self.envelope, int) or self.envelope < 1:
            raise ConfigError(f"simulator envelope must be an integer >= 1, got {self.envelope!r}")
        by_name = {m.name: m for m in self.models}
        for drift in self.drifts:
            _check_drift(drift, by_name)
        for fault in self.faults:
            if not isinstance(fault, FaultSpec):
                raise ConfigError(f"simulator faults must be FaultSpec objects, got {fault!r}")
            _check_fault(fault, by_name)
        for name in ("slices", "attributions"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(
                    f"simulator {name} must be True or False, got {getattr(self, name)!r}"
                )
        for drift in self.drifts:
            if drift.slice is not None and not self.slices:
                raise ConfigError(
                    f"drift on {drift.model!r}{drift.slice_text} needs slices=True (--slices):"
                    " without slices no event belongs to a slice"
                )
        _check_variants(self.shadows, self.rollouts, by_name)


def _check_drift(drift: DriftSpec, models: dict[str, ModelSpec]) -> None:
    spec = models.get(drift.model)
    if spec is None:
        raise ConfigError(
            f"drift names unknown model {drift.model!r}; known models: {', '.join(models)}"
        )
    known = [f.name for f in spec.features]
    for name in drift.features:
        if name == PREDICTION:
            if drift.unit_factor is not None and spec.task != "regression":
                raise ConfigError(
                    f"drift on {spec.name!r}: unit_factor applies to a regression prediction"
                    f" only ({spec.name!r} is {spec.task})"
                )
            continue
        if name not in known:
            raise ConfigError(
                f"drift on {spec.name!r}: unknown feature {name!r}; known features:"
                f" {', '.join(known)} (or {PREDICTION!r})"
            )
        if drift.unit_factor is not None and isinstance(spec.feature(name), CategoricalFeature):
            raise ConfigError(
                f"drift on {spec.name!r}: unit_factor needs a numeric feature; {name!r} is"
                " categorical"
            )


def _check_variant(variant: ShadowSpec | RolloutSpec, models: dict[str, ModelSpec]) -> None:
    what = "shadow" if isinstance(variant, ShadowSpec) else "rollout"
    spec = models.get(variant.model)
    if spec is None:
        raise ConfigError(
            f"{what} names unknown model {variant.model!r}; known models: {', '.join(models)}"
        )
    if variant.version == spec.version:
        raise ConfigError(
            f"{what} of {spec.name!r}: version {variant.version!r} is the version the model"
            f" already runs; give the new model a version of its own (e.g. {spec.version + '-new'!r})"
        )


def _check_variants(
    shadows: Sequence[ShadowSpec], rollouts: Sequence[RolloutSpec], models: dict[str, ModelSpec]
) -> None:
    """One shadow and one rollout per model at most, each of a known model and a new
    version, and one version, one model: a shadow and a rollout of the same version must
    move it by the same ``change``."""
    for what, kind, specs in (
        ("shadow", ShadowSpec, shadows),
        ("rollout", RolloutSpec, rollouts),
    ):
        seen: set[str] = set()
        for variant in specs:
            if not isinstance(variant, kind):
                raise ConfigError(
                    f"simulator {what}s must be {kind.__name__} objects, got {variant!r}"
                )
            _check_variant(variant, models)
            if variant.model in seen:
                raise ConfigError(
                    f"simulator {what}s: model {variant.model!r} has more than one {what};"
                    f" give each model one {what} at most"
                )
            seen.add(variant.model)
    for shadow in shadows:
        for rollout in rollouts:
            if (
                shadow.model == rollout.model
                and shadow.version == rollout.version
                and shadow.change != rollout.change
            ):
                raise ConfigError(
                    f"the shadow and the rollout of {shadow.model!r} are both version"
                    f" {shadow.version!r} but with different changes ({shadow.change:g} and"
                    f" {rollout.change:g}); one version is one model: use the same change or"
                    " another version"
                )


def _check_fault(fault: FaultSpec, models: dict[str, ModelSpec]) -> None:
    spec = models.get(fault.model)
    if spec is None:
        raise ConfigError(
            f"fault names unknown model {fault.model!r}; known models: {', '.join(models)}"
        )
    if fault.feature is None:
        return
    where = f"fault on {spec.name!r}"
    known = [f.name for f in spec.features]
    if fault.feature not in known:
        raise ConfigError(
            f"{where}: unknown feature {fault.feature!r}; known features: {', '.join(known)}"
        )
    feature = spec.feature(fault.feature)
    if fault.kind == "unit" and isinstance(feature, CategoricalFeature):
        raise ConfigError(
            f"{where}: kind 'unit' needs a numeric feature; {feature.name!r} is categorical"
        )
    if fault.kind == "new_category":
        if isinstance(feature, NumericFeature):
            raise ConfigError(
                f"{where}: kind 'new_category' needs a categorical feature; {feature.name!r}"
                " is numeric"
            )
        if NEW_CATEGORY in feature.categories:
            raise ConfigError(
                f"{where}: kind 'new_category' gives {feature.name!r} the value"
                f" {NEW_CATEGORY!r}, which is already one of its categories"
            )


# --------------------------------------------------------------------------- generator


def _sigmoid(z: FloatArray) -> FloatArray:
    return np.asarray(1.0 / (1.0 + np.exp(-np.clip(z, -50.0, 50.0))), dtype=np.float64)


def _softmax(z: FloatArray) -> FloatArray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return np.asarray(e / e.sum(axis=1, keepdims=True), dtype=np.float64)


def _stable_hash(text: str) -> int:
    return zlib.crc32(text.encode())


def _linear(variant: _Variant, inputs: FloatArray) -> FloatArray:
    """The linear predictor ``intercepts + sum(weights * input)`` of ``variant`` (summed
    term by term, in the model's order)."""
    z = np.tile(variant.intercepts, (inputs.shape[0], 1))
    for t, weights in enumerate(variant.weights):
        z += inputs[:, t, None] * weights[None, :]
    return z


def _drift_mask(drift: DriftSpec, elapsed: FloatArray, slices: _Slices | None) -> BoolArray:
    """The events ``drift`` applies to: in its window and, for a slice-restricted drift,
    in its slice (none without slices: reference and calibration samples)."""
    mask = _window(elapsed, drift.at_seconds, drift.end_seconds)
    if drift.slice is not None:
        key, value = drift.slice
        if slices is None:
            mask[:] = False
        else:
            mask &= slices[key] == SLICES[key][0].index(value)
    return mask


def _draw_slices(rng: np.random.Generator, n: int) -> _Slices:
    """The indexes of ``n`` events' values of each of :data:`SLICES`."""
    out: _Slices = {}
    for key, (values, probs) in SLICES.items():
        cum = np.cumsum(np.asarray(probs, dtype=np.float64))
        idx = np.searchsorted(cum, rng.random(n), side="right")
        out[key] = np.minimum(idx, len(values) - 1).astype(np.int64)
    return out


def _rows(slices: _Slices | None, rows: IntArray) -> _Slices | None:
    return None if slices is None else {k: v[rows] for k, v in slices.items()}


class _Absent:
    """The value of a feature a ``missing`` fault leaves out of the event."""

    def __repr__(self) -> str:
        return "<absent>"


_ABSENT: Final = _Absent()


@dataclass
class _Variant:
    """The weights one version of a model predicts with (its terms are the model's)."""

    version: str
    #: Per term of the model's ``term_plan``, one weight per output.
    weights: list[FloatArray]
    intercepts: FloatArray


@dataclass
class _Model:
    """A model's spec with everything precomputed for generation."""

    spec: ModelSpec
    cumprobs: list[FloatArray | None]
    feature_drifts: list[list[tuple[float, DriftSpec, FloatArray | None]]]
    prediction_drifts: list[DriftSpec]
    term_plan: list[tuple[int, int | None, FloatArray]]
    intercepts: FloatArray
    categories: list[npt.NDArray[np.object_] | None]
    #: Per term, the reference value of its input (attributions measure from it): 0 for
    #: a numeric term (its standardized mean), the category's frequency for a categorical one.
    term_base: FloatArray = field(default_factory=lambda: np.zeros(0))
    #: The model as specified (the version that serves events unless a rollout says else).
    base: _Variant | None = None
    shift_std: float = 0.0
    target: int = 0
    #: Per feature, the faults that break it (``null``, ``missing``, ``unit``, ``new_category``).
    feature_faults: list[list[FaultSpec]] = field(default_factory=list)
    #: The ``drop`` and ``spike`` faults of the model.
    traffic_faults: list[FaultSpec] = field(default_factory=list)
    #: Whether a ``missing`` fault may leave feature keys out.
    omits: bool = False
    #: The fractional events a spike has owed since its last whole one (in [0, 1)).
    traffic_carry: float = 0.0
    #: The slice streams (regular events, a spike's extra events); None: slices off.
    slice_rngs: tuple[np.random.Generator, np.random.Generator] | None = None
    #: The shadow version, when the model has a shadow.
    shadow: _Variant | None = None
    #: The rollout, its version and its streams (regular events, extra events).
    rollout: RolloutSpec | None = None
    rollout_variant: _Variant | None = None
    rollout_rngs: tuple[np.random.Generator, np.random.Generator] | None = None


@dataclass
class _Sample:
    """One model's chunk: feature columns as Python lists, predictions, and what the
    labels are drawn from."""

    columns: list[list[Any]]
    predictions: list[Any]
    truth: FloatArray  # binary: p; regression: value; multiclass: unused
    probs: FloatArray | None = None
    #: The terms' inputs, one column per term of the model's ``term_plan``.
    inputs: FloatArray = field(default_factory=lambda: np.zeros((0, 0)))
    #: The output each event's attributions explain (the predicted class; else 0).
    explained: IntArray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))



class Simulator:
    """A seeded stream of prediction events (and, optionally, their delayed labels).

    >>> sim = Simulator(SimConfig(seed=1, rate=100.0, start_ts=1_700_000_000.0))
    >>> events = sim.batch(4)
    >>> [e["ts"] for e in events]
    [1700000000.0, 1700000000.01, 1700000000.02, 1700000000.03]
    >>> sorted(events[0])
    ['event_id', 'features', 'model', 'model_version', 'prediction', 'ts']
    >>> Simulator(SimConfig(seed=1, rate=100.0, start_ts=1_700_000_000.0)).batch(4) == events
    True

    With labels on, each batch schedules its labels; :meth:`due_labels` hands them out
    in label-time order:

    >>> sim = Simulator(SimConfig(rate=100.0, start_ts=0.0, labels=True, label_coverage=1.0))
    >>> _ = sim.batch(1000)
    >>> labels = sim.due_labels(60.0)
    >>> sorted(labels[0]), all(a["ts"] <= b["ts"] for a, b in zip(labels, labels[1:]))
    (['event_id', 'label', 'model', 'ts'], True)

    The output depends on the seed and on the sequence of batch sizes (a batch draws
    its random numbers as a block).
    """

    def __init__(
        self,
        config: SimConfig,
        *,
        clock: Clock | None = None,
        max_pending_labels: int = _DEFAULT_MAX_PENDING_LABELS,
    ) -> None:
        self.config = config
        self.start_ts: float = (
            float(config.start_ts)
            if config.start_ts is not None
            else (clock or SystemClock()).now()
        )
        seq = np.random.SeedSequence(config.seed)
        # spawn(k) gives the same first children as spawn(j < k): adding the delay stream,
        # then the fault streams, left the event and label streams of every seed unchanged.
        stream_seq, label_seq, delay_seq, fault_seq, extra_seq, extra_label_seq, extra_delay_seq = (
            seq.spawn(7)
        )
        self._rng = np.random.default_rng(stream_seq)
        self._label_rng = np.random.default_rng(label_seq)
        self._delay_rng = np.random.default_rng(delay_seq)
        # Faults draw only from streams of their own: which events get a new category,
        # and a spike's extra events with their labels.
        self._fault_rng = np.random.default_rng(fault_seq)
        self._extra_rng = np.random.default_rng(extra_seq)
        self._extra_label_rng = np.random.default_rng(extra_label_seq)
        self._extra_delay_rng = np.random.default_rng(extra_delay_seq)
        self._models = [self._prepare(spec) for spec in config.models]
        weights = np.array([m.weight for m in config.models], dtype=np.float64)
        self._weights = weights / weights.sum()
        self._counter = 0
        self._last_ts = self.start_ts
        self._heap: list[tuple[float, int, dict[str, Any]]] = []
        self._label_seq = 0
        self.max_pending_labels = max_pending_labels
        #: Labels not scheduled because ``max_pending_labels`` were already waiting.
        self.labels_dropped = 0

    # ------------------------------------------------------------------ preparation

    def _prepare(self, spec: ModelSpec) -> _Model:
        drifts = [d for d in self.config.drifts if d.model == spec.name]
        cumprobs: list[FloatArray | None] = []
        categories: list[npt.NDArray[np.object_] | None] = []
        feature_drifts: list[list[tuple[float, DriftSpec, FloatArray | None]]] = []
        for f in spec.features:
            mine = [d for d in drifts if f.name in d.features]
            if isinstance(f, CategoricalFeature):
                cumprobs.append(np.cumsum(np.asarray(f.probs, dtype=np.float64)))
                categories.append(np.array(f.categories, dtype=object))
                feature_drifts.append(
                    [(d.magnitude, d, np.cumsum(f.drifted_probs(d.magnitude))) for d in mine]
                )
            else:
                cumprobs.append(None)
                categories.append(None)
                feature_drifts.append([(d.magnitude * f.std, d, None) for d in mine])
        index = {f.name: i for i, f in enumerate(spec.features)}
        term_plan: list[tuple[int, int | None, FloatArray]] = []
        term_base: list[float] = []
        for term in spec.terms:
            i = index[term.feature]
            f = spec.features[i]
            cat = f.categories.index(term.category) if isinstance(f, CategoricalFeature) else None
            term_plan.append((i, cat, np.asarray(term.weights, dtype=np.float64)))
            # The reference input: a numeric term's is 0 (its standardized mean), a
            # categorical one's the category's frequency, missing values included.
            reference = 0.0
            if isinstance(f, CategoricalFeature) and cat is not None:
                reference = f.probs[cat] * (1.0 - f.missing)
            term_base.append(reference)
        faults = [x for x in self.config.faults if x.model == spec.name]
        model = _Model(
            spec=spec,
            cumprobs=cumprobs,
            feature_drifts=feature_drifts,
            prediction_drifts=[d for d in drifts if PREDICTION in d.features],
            term_plan=term_plan,
            intercepts=np.asarray(spec.intercepts, dtype=np.float64),
            categories=categories,
            term_base=np.asarray(term_base, dtype=np.float64),
            feature_faults=[[x for x in faults if x.feature == f.name] for f in spec.features],
            traffic_faults=[x for x in faults if x.kind in ("drop", "spike")],
            omits=any(x.kind == "missing" for x in faults),
        )
        model.base = self._variant(spec)
        # Every option below draws from streams of its own, per model, so that it changes
        # nothing else (and nothing at all when it is off).
        seed, key = self.config.seed, _stable_hash(spec.name)
        if self.config.slices:
            model.slice_rngs = (
                np.random.default_rng([seed, key, 4]),
                np.random.default_rng([seed, key, 5]),
            )
        for shadow in self.config.shadows:
            if shadow.model == spec.name:
                model.shadow = self._variant(
                    perturbed_model(spec, shadow.version, shadow.change, seed)
                )
        for rollout in self.config.rollouts:
            if rollout.model == spec.name:
                model.rollout = rollout
                model.rollout_variant = self._variant(
                    perturbed_model(spec, rollout.version, rollout.change, seed)
                )
                model.rollout_rngs = (
                    np.random.default_rng([seed, key, 7]),
                    np.random.default_rng([seed, key, 8]),
                )
        if model.prediction_drifts:
            self._calibrate(model)
        return model

    @staticmethod
    def _variant(spec: ModelSpec) -> _Variant:
        return _Variant(
            version=spec.version,
            weights=[np.asarray(t.weights, dtype=np.float64) for t in spec.terms],
            intercepts=np.asarray(spec.intercepts, dtype=np.float64),
        )

    def _calibrate(self, model: _Model) -> None:
        """The output's natural spread (the unit of prediction drift), from a private
        sample of undrifted events."""
        rng = np.random.default_rng([self.config.seed, _stable_hash(model.spec.name), 2])
        never = np.full(_CALIBRATION_SIZE, -np.inf)
        _, inputs = self._features(model, rng, never)
        assert model.base is not None
        z = _linear(model.base, inputs)
        if model.spec.task == "multiclass":
            model.target = int(np.argmin(_softmax(z).mean(axis=0)))
        model.shift_std = float(z[:, model.target].std())

    # ------------------------------------------------------------------ generation

    def _features(
        self,
        model: _Model,
        rng: np.random.Generator,
        elapsed: FloatArray,
        slices: _Slices | None = None,
    ) -> tuple[list[list[Any]], FloatArray]:
        """Feature columns (JSON-ready lists) and the terms' inputs (one column per term:
        a numeric feature standardized, 0 when missing; a category's indicator)."""
        n = len(elapsed)
        columns: list[list[Any]] = []
        model_inputs: list[FloatArray | IntArray] = []
        for i, f in enumerate(model.spec.features):
            drifts = model.feature_drifts[i]
            faults = model.feature_faults[i]
            if isinstance(f, CategoricalFeature):
                cum = model.cumprobs[i]
                assert cum is not None
                u = rng.random(n)
                idx = np.searchsorted(cum, u, side="right")
                for _, d, dcum in drifts:
                    mask = _drift_mask(d, elapsed, slices)
                    if dcum is not None and mask.any():
                        idx[mask] = np.searchsorted(dcum, u[mask], side="right")
                idx = np.minimum(idx, len(f.categories) - 1).astype(np.int64)
                cats = model.categories[i]
                assert cats is not None
                values: list[Any] = cats[idx].tolist()
                for fault in faults:
                    if fault.kind == "new_category":
                        self._new_category(fault, elapsed, idx, values, len(f.categories))
                if f.missing > 0:
                    miss = rng.random(n) < f.missing
                    idx[miss] = -1
                    for j in np.flatnonzero(miss).tolist():
                        values[j] = None
                for fault in faults:
                    if fault.kind in ("null", "missing"):
                        _blank(fault, elapsed, values, idx, -1)
                columns.append(values)
                model_inputs.append(idx)
            else:
                x = f.sample(rng, n)
                for shift, d, _ in drifts:
                    mask = _drift_mask(d, elapsed, slices)
                    if mask.any():
                        x[mask] += shift
                        if d.unit_factor is not None:
                            x[mask] *= d.unit_factor
                for fault in faults:
                    if fault.kind == "unit":
                        assert fault.factor is not None
                        x[fault.active(elapsed)] *= fault.factor
                x = np.round(x, f.decimals) if f.decimals > 0 else np.rint(x)
                values = x.astype(np.int64).tolist() if f.decimals <= 0 else x.tolist()
                if f.missing > 0:
                    miss = rng.random(n) < f.missing
                    x[miss] = np.nan
                    for j in np.flatnonzero(miss).tolist():
                        values[j] = None
                for fault in faults:
                    if fault.kind in ("null", "missing"):
                        _blank(fault, elapsed, values, x, np.nan)
                columns.append(values)
                model_inputs.append((x - f.mean) / f.std)
        inputs = np.empty((n, len(model.term_plan)), dtype=np.float64)
        for t, (i, cat, _) in enumerate(model.term_plan):
            col = model_inputs[i]
            if cat is None:
                inputs[:, t] = np.nan_to_num(np.asarray(col, dtype=np.float64), nan=0.0)
            else:
                inputs[:, t] = (col == cat).astype(np.float64)
        return columns, inputs

    def _new_category(
        self, fault: FaultSpec, elapsed: FloatArray, idx: IntArray, values: list[Any], unseen: int
    ) -> None:
        """Give ``fault.factor`` of the events in its window :data:`NEW_CATEGORY` (and the
        model an index ``unseen`` that matches none of its terms)."""
        hit = np.flatnonzero(fault.active(elapsed))
        if len(hit) == 0:
            return
        assert fault.factor is not None
        if fault.factor < 1.0:
            hit = hit[self._fault_rng.random(len(hit)) < fault.factor]
        idx[hit] = unseen
        for j in hit.tolist():
            values[j] = NEW_CATEGORY

    def _sample(
        self,
        model: _Model,
        rng: np.random.Generator,
        elapsed: FloatArray,
        slices: _Slices | None = None,
    ) -> _Sample:
        columns, inputs = self._features(model, rng, elapsed, slices)
        assert model.base is not None
        sample = self._predict(model, _linear(model.base, inputs), elapsed, slices)
        sample.columns = columns
        sample.inputs = inputs
        return sample

    def _predict(
        self, model: _Model, z: FloatArray, elapsed: FloatArray, slices: _Slices | None
    ) -> _Sample:
        """The predictions for the linear predictor ``z`` (drifted as configured), in a
        :class:`_Sample` without columns and inputs."""
        spec = model.spec
        n = len(elapsed)
        for d in model.prediction_drifts:
            mask = _drift_mask(d, elapsed, slices)
            if mask.any():
                z[mask, model.target] += d.magnitude * model.shift_std
        if spec.task == "binary":
            p = _sigmoid(z[:, 0])
            scores = np.round(p, 6)
            labels = (scores >= spec.threshold).tolist()
            predictions: list[Any] = [
                {"label": lab, "score": s} for lab, s in zip(labels, scores.tolist(), strict=True)
            ]
            return _Sample([], predictions, p, explained=np.zeros(n, dtype=np.int64))
        if spec.task == "multiclass":
            probs = _softmax(z)
            rounded = np.round(probs, 6).tolist()
            classes = spec.classes
            top = probs.argmax(axis=1).astype(np.int64)
            predictions = [
                {"label": classes[b], "scores": dict(zip(classes, row, strict=True))}
                for b, row in zip(top.tolist(), rounded, strict=True)
            ]
            return _Sample([], predictions, np.zeros(n), probs, explained=top)
        value = z[:, 0].copy()
        for d in model.prediction_drifts:
            if d.unit_factor is not None:
                mask = _drift_mask(d, elapsed, slices)
                value[mask] *= d.unit_factor
        if spec.floor is not None:
            value = np.maximum(value, spec.floor)
        value = np.round(value, 2)
        return _Sample([], value.tolist(), value, explained=np.zeros(n, dtype=np.int64))

    def _slices(self, model: _Model, stream: int, n: int) -> _Slices | None:
        """The slice value indexes of ``n`` events (``stream`` 0: regular events, 1: a
        spike's extra events), or ``None`` when slices are off."""
        if model.slice_rngs is None:
            return None
        return _draw_slices(model.slice_rngs[stream], n)

    def _attributions(
        self, model: _Model, variant: _Variant, inputs: FloatArray, explained: IntArray
    ) -> list[dict[str, float]]:
        """Per event, the exact linear SHAP values of ``variant`` for the output it
        explains: per term ``weight * (input - reference input)``, summed per feature."""
        spec = model.spec
        out = np.zeros((inputs.shape[0], len(spec.features)), dtype=np.float64)
        for t, (i, _, _) in enumerate(model.term_plan):
            out[:, i] += variant.weights[t][explained] * (inputs[:, t] - model.term_base[t])
        names = [f.name for f in spec.features]
        rounded = np.round(out, 6) + 0.0  # + 0.0: no -0.0
        return [dict(zip(names, row, strict=True)) for row in rounded.tolist()]

    def _serve(
        self,
        model: _Model,
        sample: _Sample,
        events: list[dict[str, Any]],
        elapsed: FloatArray,
        slices: _Slices | None,
        stream: int,
    ) -> list[dict[str, Any]] | None:
        """Add slices, a rollout's version and attributions to ``events`` (in place), as
        configured; return the shadow copies of the events, if the model has a shadow."""
        if slices is not None:
            names = list(SLICES)
            values = [np.asarray(SLICES[k][0], dtype=object)[slices[k]].tolist() for k in names]
            for event, row in zip(events, zip(*values, strict=True), strict=True):
                event["slices"] = dict(zip(names, row, strict=True))
        attributions = self.config.attributions
        assert model.base is not None
        attrs = (
            self._attributions(model, model.base, sample.inputs, sample.explained)
            if attributions
            else None
        )
        if model.rollout is not None:
            assert model.rollout_rngs is not None and model.rollout_variant is not None
            u = model.rollout_rngs[stream].random(len(events))
            rows = np.flatnonzero(u < model.rollout.share(elapsed))
            if len(rows):
                new = model.rollout_variant
                served = self._predict(
                    model, _linear(new, sample.inputs[rows]), elapsed[rows], _rows(slices, rows)
                )
                new_attrs = (
                    self._attributions(model, new, sample.inputs[rows], served.explained)
                    if attrs is not None
                    else None
                )
                for j, r in enumerate(rows.tolist()):
                    events[r]["model_version"] = new.version
                    events[r]["prediction"] = served.predictions[j]
                    if attrs is not None and new_attrs is not None:
                        attrs[r] = new_attrs[j]
        if attrs is not None:
            for event, attr in zip(events, attrs, strict=True):
                event["attributions"] = attr
        if model.shadow is None:
            return None
        shadow = model.shadow
        for event in events:
            event["deployment"] = PRODUCTION
        copy = self._predict(model, _linear(shadow, sample.inputs), elapsed, slices)
        shadow_attrs = (
            self._attributions(model, shadow, sample.inputs, copy.explained)
            if attributions
            else None
        )
        shadows: list[dict[str, Any]] = []
        for j, event in enumerate(events):
            twin = {
                **event,
                "model_version": shadow.version,
                "features": dict(event["features"]),
                "prediction": copy.predictions[j],
                "deployment": SHADOW,
            }
            if slices is not None:
                twin["slices"] = dict(event["slices"])
            if shadow_attrs is not None:
                twin["attributions"] = shadow_attrs[j]
            shadows.append(twin)
        return shadows

    def _events(
        self,
        model: _Model,
        sample: _Sample,
        ids: list[str],
        ts: list[float],
    ) -> list[dict[str, Any]]:
        spec = model.spec
        names = [f.name for f in spec.features]
        if model.omits:
            features = [
                {k: v for k, v in zip(names, row, strict=True) if v is not _ABSENT}
                for row in zip(*sample.columns, strict=True)
            ]
            return [
                {
                    "event_id": eid,
                    "model": spec.name,
                    "model_version": spec.version,
                    "ts": t,
                    "features": feats,
                    "prediction": pred,
                }
                for eid, t, feats, pred in zip(ids, ts, features, sample.predictions, strict=True)
            ]
        return [
            {
                "event_id": eid,
                "model": spec.name,
                "model_version": spec.version,
                "ts": t,
                "features": dict(zip(names, row, strict=True)),
                "prediction": pred,
            }
            for eid, t, row, pred in zip(
                ids, ts, zip(*sample.columns, strict=True), sample.predictions, strict=True
            )
        ]

    def batch(self, n: int, *, now: float | None = None) -> list[dict[str, Any]]:
        """The next ``n`` events, in wire form, interleaving the models by weight.

        In simulated time event ``i`` has ``ts = start_ts + i / rate``. With ``now``
        (wall-clock time, for real-time publishing) the ``n`` events are instead spread
        evenly after the previous batch's last ``ts``, ending at ``now``. Drift, faults
        and the accuracy drop start at ``ts - start_ts >= at_seconds`` either way.

        ``n`` counts event slots: a ``drop`` fault leaves some empty and a ``spike``
        fault adds events after some (see the module docstring), so the batch then holds
        fewer or more than ``n`` events; :attr:`slots` counts the slots so far. A shadowed
        model's events are each followed by their shadow copy (a spike's extra events
        too, each right after its own), which the slots do not count either.
        """
        if n < 0:
            raise ValueError(f"batch size must be >= 0, got {n}")
        if n == 0:
            return []
        steps = np.arange(n, dtype=np.float64)
        if now is None:
            ts = self.start_ts + (self._counter + steps) / self.config.rate
            gap = 1.0 / self.config.rate
        else:
            end = max(float(now), self._last_ts)
            ts = self._last_ts + (end - self._last_ts) * (steps + 1) / n
            gap = (end - self._last_ts) / n
        ts = np.round(ts, 6)
        self._last_ts = float(ts[-1])
        elapsed = ts - self.start_ts
        choice = self._rng.choice(len(self._models), size=n, p=self._weights)
        out: list[dict[str, Any]] = [{}] * n
        seed = self.config.seed
        kept = np.ones(n, dtype=np.bool_)
        extras: dict[int, list[dict[str, Any]]] = {}
        for k, model in enumerate(self._models):
            pos = np.flatnonzero(choice == k)
            if len(pos) == 0:
                continue
            slices = self._slices(model, 0, len(pos))
            sample = self._sample(model, self._rng, elapsed[pos], slices)
            ids = [f"sim-{seed}-{self._counter + p:010d}" for p in pos.tolist()]
            events = self._events(model, sample, ids, ts[pos].tolist())
            shadows = self._serve(model, sample, events, elapsed[pos], slices, 0)
            for p, event in zip(pos.tolist(), events, strict=True):
                out[p] = event
            keep: BoolArray | None = None
            counts: IntArray | None = None
            if model.traffic_faults:
                counts = self._traffic_counts(model, elapsed[pos])
                keep = counts > 0
                kept[pos] = keep
            if shadows is not None:
                for j, (p, twin) in enumerate(zip(pos.tolist(), shadows, strict=True)):
                    if keep is None or keep[j]:
                        extras.setdefault(p, []).append(twin)
            if counts is not None:
                clamp = None if now is None else float(ts[-1])
                self._extra_events(model, pos, ts, counts, ids, gap, clamp, extras)
            if self.config.labels:
                self._schedule_labels(model, sample, events, elapsed[pos], keep=keep)
        self._counter += n
        if kept.all() and not extras:
            return out
        merged: list[dict[str, Any]] = []
        for p, event in enumerate(out):
            if kept[p]:
                merged.append(event)
            more = extras.get(p)
            if more:
                merged.extend(more)
        return merged

    def _traffic_counts(self, model: _Model, elapsed: FloatArray) -> IntArray:
        """How many events each of ``model``'s slots sends: 1 outside its drop and spike
        windows, else the product of their factors (0 for a drop), rounded down or up so
        that the running total stays within one event of the exact one."""
        factor = np.ones(len(elapsed), dtype=np.float64)
        for fault in model.traffic_faults:
            mask = fault.active(elapsed)
            if fault.kind == "drop":
                factor[mask] = 0.0
            else:
                assert fault.factor is not None
                factor[mask] *= fault.factor
        counts = np.ones(len(elapsed), dtype=np.int64)
        carry = model.traffic_carry
        for j in np.flatnonzero(factor != 1.0).tolist():
            total = carry + float(factor[j])
            whole = math.floor(total)
            carry = total - whole
            counts[j] = whole
        model.traffic_carry = carry
        return counts

    def _extra_events(
        self,
        model: _Model,
        pos: IntArray,
        ts: FloatArray,
        counts: IntArray,
        ids: list[str],
        gap: float,
        clamp: float | None,
        extras: dict[int, list[dict[str, Any]]],
    ) -> None:
        """A spike's extra events: ``counts - 1`` after each slot, spread evenly over the
        ``gap`` up to the next slot (but not past ``clamp``), drawn from their own
        streams; collected by slot position into ``extras``."""
        spiked = np.flatnonzero(counts > 1)
        if len(spiked) == 0:
            return
        per_slot = counts[spiked]
        slot = np.repeat(spiked, per_slot - 1)
        nth = np.concatenate([np.arange(1, c, dtype=np.int64) for c in per_slot.tolist()])
        extra_ts = ts[pos[slot]] + gap * nth / np.repeat(per_slot, per_slot - 1)
        if clamp is not None:
            extra_ts = np.minimum(extra_ts, clamp)
        extra_ts = np.round(extra_ts, 6)
        elapsed = extra_ts - self.start_ts
        slices = self._slices(model, 1, len(elapsed))
        sample = self._sample(model, self._extra_rng, elapsed, slices)
        extra_ids = [f"{ids[j]}-{m}" for j, m in zip(slot.tolist(), nth.tolist(), strict=True)]
        events = self._events(model, sample, extra_ids, extra_ts.tolist())
        shadows = self._serve(model, sample, events, elapsed, slices, 1)
        for j, (p, event) in enumerate(zip(pos[slot].tolist(), events, strict=True)):
            after = extras.setdefault(p, [])
            after.append(event)
            if shadows is not None:
                after.append(shadows[j])
        if self.config.labels:
            self._schedule_labels(
                model,
                sample,
                events,
                elapsed,
                rng=self._extra_label_rng,
                delay_rng=self._extra_delay_rng,
            )

    @property
    def slots(self) -> int:
        """The event slots generated so far (the ``n`` of every :meth:`batch` summed):
        the events sent, unless a ``drop`` or ``spike`` fault removed or added some."""
        return self._counter

    @property
    def last_ts(self) -> float:
        """The ``ts`` of the last slot generated (``start_ts`` before the first)."""
        return self._last_ts

    def reference_events(self, model: str, n: int) -> list[dict[str, Any]]:
        """``n`` undrifted events of ``model`` for a reference file.

        They come from their own random stream (the same for every call) and do not
        advance :meth:`batch`; their timestamps lie just before ``start_ts``, at the
        model's share of the rate. They are served by the model as specified (no rollout,
        no shadow, no ``deployment``), with slices (from a stream of their own) and
        attributions when those are on.
        """
        found = [m for m in self._models if m.spec.name == model]
        if not found:
            known = ", ".join(m.spec.name for m in self._models)
            raise ConfigError(f"unknown model {model!r}; known models: {known}")
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        m = found[0]
        rng = np.random.default_rng([self.config.seed, _stable_hash(model), 1])
        share = self.config.rate * m.spec.weight / sum(x.weight for x in self.config.models)
        ts = np.maximum(self.start_ts - (n - np.arange(n, dtype=np.float64)) / share, 0.0)
        never = np.full(n, -np.inf)
        slices = (
            _draw_slices(np.random.default_rng([self.config.seed, _stable_hash(model), 6]), n)
            if self.config.slices
            else None
        )
        sample = self._sample(m, rng, never, slices)
        ids = [f"ref-{model}-{self.config.seed}-{i:09d}" for i in range(n)]
        events = self._events(m, sample, ids, np.round(ts, 6).tolist())
        reference = replace(m, rollout=None, shadow=None)
        self._serve(reference, sample, events, never, slices, 0)
        return events

    # ------------------------------------------------------------------ labels

    def _schedule_labels(
        self,
        model: _Model,
        sample: _Sample,
        events: list[dict[str, Any]],
        elapsed: FloatArray,
        *,
        keep: BoolArray | None = None,
        rng: np.random.Generator | None = None,
        delay_rng: np.random.Generator | None = None,
    ) -> None:
        """Schedule the labels of ``events``; those not in ``keep`` (dropped by a fault)
        get none, though their random numbers are drawn all the same."""
        cfg = self.config
        rng = self._label_rng if rng is None else rng
        n = len(events)
        covered = rng.random(n) < cfg.label_coverage
        if keep is not None:
            covered &= keep
        delays = self._label_delays(
            rng.exponential(cfg.label_delay_mean_seconds, n),
            self._delay_rng if delay_rng is None else delay_rng,
        )
        drop_at = cfg.accuracy_drop_at_seconds
        perturb = rng.random(n) < cfg.accuracy_drop
        perturb &= elapsed >= (math.inf if drop_at is None else drop_at)
        u = rng.random(n)
        spec = model.spec
        truth: list[Any]
        if spec.task == "binary":
            positive = (u < sample.truth) ^ perturb
            truth = positive.tolist()
        elif spec.task == "multiclass":
            assert sample.probs is not None
            cum = np.cumsum(sample.probs, axis=1)
            k = len(spec.classes)
            cls = np.minimum((u[:, None] >= cum).sum(axis=1), k - 1)
            other = rng.integers(1, k, n)
            cls = np.where(perturb, (cls + other) % k, cls)
            truth = [spec.classes[c] for c in cls.tolist()]
        else:
            noise = rng.normal(0.0, spec.noise, n)
            sign = np.where(u < 0.5, -1.0, 1.0)
            actual = sample.truth + noise + perturb * sign * 4.0 * max(spec.noise, 1.0)
            truth = np.round(actual, 2).tolist()
        label_ts = [e["ts"] for e in events] + delays
        for j in np.flatnonzero(covered).tolist():
            if len(self._heap) >= self.max_pending_labels:
                self.labels_dropped += 1
                continue
            t = round(float(label_ts[j]), 6)
            label = {
                "event_id": events[j]["event_id"],
                "model": spec.name,
                "label": truth[j],
                "ts": t,
            }
            heapq.heappush(self._heap, (t, self._label_seq, label))
            self._label_seq += 1

    def _label_delays(self, exponential: FloatArray, delay_rng: np.random.Generator) -> FloatArray:
        """The label delays per ``label_delay_distribution``, from the exponential ones
        the label stream always draws (so the distribution never shifts the draws that
        decide coverage and label values)."""
        cfg = self.config
        mean = cfg.label_delay_mean_seconds
        dist = cfg.label_delay_distribution
        if dist == "exponential":
            return exponential
        if dist == "fixed":
            return np.full(len(exponential), mean, dtype=np.float64)
        sigma = LABEL_DELAY_LOGNORMAL_SIGMA
        mu = math.log(mean) - sigma * sigma / 2
        return np.asarray(delay_rng.lognormal(mu, sigma, len(exponential)), dtype=np.float64)

    @property
    def pending_labels(self) -> int:
        """Labels scheduled but not yet handed out by :meth:`due_labels`."""
        return len(self._heap)

    def due_labels(self, up_to_ts: float) -> list[dict[str, Any]]:
        """The scheduled labels whose label time is ``<= up_to_ts``, in label-time
        order (empty unless ``config.labels``)."""
        heap = self._heap
        out: list[dict[str, Any]] = []
        while heap and heap[0][0] <= up_to_ts:
            out.append(heapq.heappop(heap)[2])
        return out


# --------------------------------------------------------------------------- sinks


def _event_limit(
    config: SimConfig, duration_seconds: float | None, max_events: int | None
) -> float:
    limit = math.inf if max_events is None else float(max_events)
    if duration_seconds is not None:
        limit = min(limit, float(math.ceil(duration_seconds * config.rate)))
    return limit


def _iter_batches(
    sim: Simulator, limit: float, batch_size: int = 2000
) -> Iterator[list[dict[str, Any]]]:
    done = 0
    while done < limit:
        n = int(min(batch_size, limit - done))
        yield sim.batch(n)
        done += n


def simulate_to_file(
    config: SimConfig,
    path: str | Path,
    *,
    duration_seconds: float | None = None,
    max_events: int | None = None,
    labels_path: str | Path | None = None,
) -> dict[str, int]:
    """Write a simulated run (simulated time) to ``path`` as JSON Lines.

    With ``config.labels``, every label (due or not by the end) goes to
    ``labels_path``, by default ``<path stem>.labels.jsonl`` beside ``path``. Returns
    ``{"events", "labels"}`` counts.
    """
    if duration_seconds is None and max_events is None:
        raise ConfigError(
            "writing to a file needs an end: pass --max-events N or --duration SECONDS"
        )
    sim = Simulator(config)
    limit = _event_limit(config, duration_seconds, max_events)
    events = write_jsonl(path, (e for batch in _iter_batches(sim, limit) for e in batch))
    labels = 0
    if config.labels:
        if labels_path is None:
            p = Path(path)
            labels_path = p.with_name(f"{p.stem}.labels.jsonl")
        labels = write_jsonl(labels_path, sim.due_labels(math.inf))
    return {"events": events, "labels": labels, "labels_dropped": sim.labels_dropped}


def encode_messages(
    events: Iterable[dict[str, Any]], envelope: int = 1
) -> list[tuple[bytes, bytes]]:
    """``(key, value)`` messages for ``events``: the key is the model name, the value one
    JSON object (``envelope=1``) or a JSON array of up to ``envelope`` events of one
    model. Each model's events keep their order.

    >>> msgs = encode_messages(Simulator(SimConfig(start_ts=0.0)).batch(10), envelope=4)
    >>> sorted({k for k, _ in msgs}), all(v.startswith(b"[") for _, v in msgs)
    ([b'churn', b'eta', b'fraud'], True)
    """
    buffer = _Envelopes(envelope)
    out = buffer.add(events, 0.0)
    out.extend(buffer.flush())
    return out


class _Envelopes:
    """Per-model buffers that become messages when they hold ``size`` events."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._buffers: dict[str, list[dict[str, Any]]] = {}
        self._since: dict[str, float] = {}

    def _encode(self, model: str, events: list[dict[str, Any]]) -> tuple[bytes, bytes]:
        value = orjson.dumps(events[0] if self.size == 1 else events)
        return model.encode(), value

    def add(self, events: Iterable[dict[str, Any]], now: float) -> list[tuple[bytes, bytes]]:
        out: list[tuple[bytes, bytes]] = []
        if self.size == 1:
            return [(e["model"].encode(), orjson.dumps(e)) for e in events]
        for event in events:
            model = event["model"]
            buf = self._buffers.setdefault(model, [])
            if not buf:
                self._since[model] = now
            buf.append(event)
            if len(buf) >= self.size:
                out.append(self._encode(model, buf))
                self._buffers[model] = []
        return out

    def flush(self, older_than: float = math.inf) -> list[tuple[bytes, bytes]]:
        """Messages for the partial buffers started before ``older_than``."""
        out: list[tuple[bytes, bytes]] = []
        for model, buf in self._buffers.items():
            if buf and self._since[model] < older_than:
                out.append(self._encode(model, buf))
                self._buffers[model] = []
        return out


def _default_producer(bootstrap: str) -> Any:
    from aiokafka import AIOKafkaProducer

    return AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        client_id="driftstream-simulate",
        linger_ms=5,
        max_batch_size=256 * 1024,
    )


class _Publisher:
    """Sends messages, keeps the delivery futures bounded and surfaces their errors."""

    def __init__(self, producer: Any, counts: dict[str, int]) -> None:
        self.producer = producer
        self.counts = counts
        self._pending: list[Awaitable[Any]] = []

    async def send(self, topic: str, messages: Iterable[tuple[bytes, bytes]], what: str) -> None:
        for key, value in messages:
            fut = await self.producer.send(topic, value=value, key=key)
            self._pending.append(fut)
            self.counts[what] += 1
            if len(self._pending) >= 2000:
                await self.drain()

    async def drain(self) -> None:
        pending, self._pending = self._pending, []
        if pending:
            await asyncio.gather(*pending)


async def produce(
    bootstrap: str,
    config: SimConfig,
    *,
    predictions_topic: str = "predictions",
    labels_topic: str = "labels",
    duration_seconds: float | None = None,
    max_events: int | None = None,
    realtime: bool = True,
    on_progress: Callable[[dict[str, int]], None] | None = None,
    producer_factory: Callable[[str], Any] | None = None,
) -> dict[str, int]:
    """Publish simulated traffic to Kafka; return ``{"events", "messages", "labels",
    "labels_dropped"}``.

    Events go to ``predictions_topic``; with ``config.labels``, labels go to
    ``labels_topic`` (one label, a JSON object, per message) once their label time is
    due. Pass the deployment's ``settings.topics.predictions``/``settings.topics.labels``
    when they are not the defaults. Messages are keyed by model name, so each model's
    events (and labels) stay in order within a partition, and events are sent
    ``config.envelope`` per message. ``realtime``: paced to
    ``config.rate`` with ``ts`` = wall-clock time (``duration_seconds`` is wall time;
    labels still pending at the end are not sent). Otherwise: as fast as the broker takes
    them, in simulated time from ``config.start_ts`` (``duration_seconds`` is simulated
    time; all labels are sent at the end). With neither ``duration_seconds`` nor
    ``max_events`` it runs until cancelled. The pacing and ``max_events`` count event
    slots (:attr:`Simulator.slots`), so a ``drop`` or ``spike`` fault changes the events
    sent (``"events"``) but neither the other models' traffic nor the time covered;
    shadow copies (:class:`ShadowSpec`) are sent on top, keyed by their model like its
    other events, so they follow their production event within its partition.
    ``on_progress`` gets the counts about once a second and at the end.
    ``producer_factory(bootstrap)`` replaces the aiokafka producer (for tests).
    """
    if realtime:
        config = replace(config, start_ts=time.time())
    sim = Simulator(config)
    producer = (producer_factory or _default_producer)(bootstrap)
    try:
        await producer.start()
    except Exception as exc:
        raise BrokerError(
            f"cannot connect to the Kafka broker at {bootstrap!r} ({exc}); check that it is"
            " running and that --bootstrap points at it"
        ) from exc
    counts = {"events": 0, "messages": 0, "labels": 0, "labels_dropped": 0}
    publisher = _Publisher(producer, counts)
    envelopes = _Envelopes(config.envelope)
    limit = _event_limit(config, duration_seconds if not realtime else None, max_events)
    last_progress = time.monotonic()

    async def publish(events: list[dict[str, Any]], labels_up_to: float, now: float) -> None:
        nonlocal last_progress
        counts["events"] += len(events)
        await publisher.send(predictions_topic, envelopes.add(events, now), "messages")
        if realtime:
            await publisher.send(predictions_topic, envelopes.flush(now - 0.5), "messages")
        if config.labels:
            labels = sim.due_labels(labels_up_to)
            await publisher.send(labels_topic, _label_messages(labels), "labels")
        counts["labels_dropped"] = sim.labels_dropped
        if on_progress is not None and time.monotonic() - last_progress >= 1.0:
            last_progress = time.monotonic()
            on_progress(dict(counts))

    try:
        if realtime:
            t0 = sim.start_ts
            deadline = math.inf if duration_seconds is None else t0 + duration_seconds
            while sim.slots < limit:
                now = time.time()
                if now >= deadline:
                    break
                due = int(min(int((now - t0) * config.rate) + 1, limit)) - sim.slots
                if due > 0:
                    await publish(sim.batch(min(due, 10_000), now=now), now, now)
                elif config.labels:
                    await publish([], now, now)
                next_at = t0 + sim.slots / config.rate
                await asyncio.sleep(min(max(next_at - time.time(), 0.002), 0.25))
        else:
            for events in _iter_batches(sim, limit):
                await publish(events, sim.last_ts, time.time())
                await asyncio.sleep(0)
        await publisher.send(predictions_topic, envelopes.flush(), "messages")
        if config.labels and not realtime:
            await publisher.send(labels_topic, _label_messages(sim.due_labels(math.inf)), "labels")
        await publisher.drain()
        await producer.flush()
    finally:
        await producer.stop()
    counts["labels_dropped"] = sim.labels_dropped
    if on_progress is not None:
        on_progress(dict(counts))
    return counts


def _label_messages(labels: list[dict[str, Any]]) -> list[tuple[bytes, bytes]]:
    return [(label["model"].encode(), orjson.dumps(label)) for label in labels]


# --------------------------------------------------------------------------- CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``simulate`` options to ``parser`` (the CLI's sub-command parser)."""
    parser.add_argument(
        "--bootstrap", default="127.0.0.1:9092", help="Kafka bootstrap servers (host:port)"
    )
    parser.add_argument("--rate", type=float, default=300.0, help="events per second, all models")
    parser.add_argument("--seed", type=int, default=7, help="random seed (same seed, same events)")
    parser.add_argument(
        "--duration", type=float, default=None, metavar="SECONDS", help="stop after this long"
    )
    parser.add_argument(
        "--max-events", type=int, default=None, metavar="N", help="stop after N events"
    )
    parser.add_argument(
        "--drift",
        action="append",
        default=[],
        metavar=DRIFT_FORMAT,
        help="inject drift from AT_SECONDS simulated seconds on, of MAGNITUDE standard"
        " deviations (default 1; repeatable); FEATURE may be 'prediction'. With @SLICE=VALUE"
        " (needs --slices) only the events of that slice value drift. "
        + _DRIFT_EXAMPLES,
    )
    parser.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar=FAULT_FORMAT,
        help="inject a data or traffic fault from START to END simulated seconds (END left out:"
        " until the end; repeatable). KIND: null (FEATURE sent as null), missing (FEATURE left"
        " out), unit (numeric FEATURE x FACTOR, default 1000), new_category (categorical"
        f" FEATURE is {NEW_CATEGORY!r} in a share FACTOR of the events, default 1), drop (no"
        " events of MODEL) or spike (MODEL's rate x FACTOR, default 5); drop and spike take no"
        f" FEATURE. {_FAULT_EXAMPLES}",
    )
    parser.add_argument(
        "--slices",
        action="store_true",
        help="tag every event with slices: region (eu 40%%, us 30%%, apac 20%%, latam 10%%) and"
        " device (mobile 60%%, web 40%%), drawn per model from a random stream of their own",
    )
    parser.add_argument(
        "--attributions",
        action="store_true",
        help="add each prediction's feature attributions (exact linear SHAP values of the"
        " model that served it: weight x (input - reference mean) per term, in log-odds for"
        " fraud, in the predicted class's logit for churn, in minutes for eta)",
    )
    parser.add_argument(
        "--shadow",
        action="append",
        default=[],
        metavar=SHADOW_FORMAT,
        help="shadow MODEL with version VERSION (repeatable, one per model): every event of"
        " MODEL is sent again right after it, same event_id, ts, features and slices, with"
        " deployment 'shadow', model_version VERSION and the prediction of a copy of the model"
        " whose weights moved by CHANGE (default 0.5) typical weights; MODEL's own events get"
        " deployment 'production'; labels only for the production events. "
        + _SHADOW_EXAMPLES,
    )
    parser.add_argument(
        "--rollout",
        action="append",
        default=[],
        metavar=ROLLOUT_FORMAT,
        help="roll out version VERSION of MODEL (repeatable, one per model): from START"
        " simulated seconds a share of MODEL's events growing linearly to all of them at END"
        " (no END: all of them from START) is served by a copy of the model whose weights moved"
        " by CHANGE (default 0.5) typical weights, with model_version VERSION. "
        + _ROLLOUT_EXAMPLES,
    )
    parser.add_argument("--labels", action="store_true", help="also publish delayed labels")
    parser.add_argument(
        "--label-delay",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="mean label delay, whatever --label-delay-distribution",
    )
    parser.add_argument(
        "--label-delay-distribution",
        default="exponential",
        metavar="{" + ",".join(LABEL_DELAY_DISTRIBUTIONS) + "}",
        help="distribution of the label delays, all of mean --label-delay: exponential"
        " (default), fixed (every label exactly --label-delay late) or lognormal (sigma 1.0)",
    )
    parser.add_argument(
        "--label-coverage", type=float, default=0.9, help="share of events that get a label"
    )
    parser.add_argument(
        "--accuracy-drop-at",
        type=float,
        default=None,
        metavar="SECONDS",
        help="from this simulated second on, corrupt --accuracy-drop of the labels",
    )
    parser.add_argument(
        "--accuracy-drop", type=float, default=0.3, help="share of labels corrupted after the drop"
    )
    parser.add_argument(
        "--envelope", type=int, default=1, metavar="N", help="events per Kafka message"
    )
    parser.add_argument(
        "--out", default=None, metavar="FILE.jsonl", help="write events to a file, not Kafka"
    )
    parser.add_argument(
        "--reference-out",
        default=None,
        metavar="FILE.jsonl",
        help="write undrifted reference events (of --model, or of every model) to a file",
    )
    parser.add_argument(
        "--reference-events", type=int, default=5000, metavar="N", help="reference events to write"
    )
    parser.add_argument(
        "--model", default=None, help="the model for --reference-out (default: all)"
    )


def parse_drift(
    text: str, models: Sequence[ModelSpec] | None = None, *, slices: bool | None = None
) -> DriftSpec:
    """Parse one ``--drift`` value, ``MODEL:FEATURE[,FEATURE][@SLICE=VALUE]:AT_SECONDS[:MAGNITUDE]``.

    ``@SLICE=VALUE`` restricts the drift (of every listed feature) to the events whose
    slice ``SLICE`` is ``VALUE`` (:data:`SLICES`); ``slices=False`` (no ``--slices``)
    rejects it, ``None`` does not check.

    >>> d = parse_drift("fraud:amount,country:60:1.5")
    >>> d.model, d.features, d.at_seconds, d.magnitude, d.slice
    ('fraud', ('amount', 'country'), 60.0, 1.5, None)
    >>> parse_drift("fraud:amount@region=eu:60").slice
    ('region', 'eu')
    >>> parse_drift("fraud:amount")
    Traceback (most recent call last):
    ...
    stream.errors.ConfigError: --drift 'fraud:amount': expected 3 or 4 ':'-separated parts, ...
    >>> parse_drift("fraud:amount@region=eu:60", slices=False)
    Traceback (most recent call last):
    ...
    stream.errors.ConfigError: --drift 'fraud:amount@region=eu:60': a drift restricted ... needs --slices ...
    """

    def fail(problem: str) -> ConfigError:
        return ConfigError(f"--drift {text!r}: {problem}; expected {DRIFT_FORMAT}, {_DRIFT_EXAMPLES}")

    parts = str(text).split(":")
    if len(parts) not in (3, 4):
        raise fail(f"expected 3 or 4 ':'-separated parts, got {len(parts)}")
    model = parts[0].strip()
    if not model:
        raise fail("MODEL is empty")
    names, at, where = parts[1].partition("@")
    features = tuple(f.strip() for f in names.split(","))
    if not all(features):
        raise fail("FEATURE is empty")
    slice_: tuple[str, str] | None = None
    if at:
        key, eq, slice_value = (x.strip() for x in where.partition("="))
        if not eq or not key or not slice_value or "@" in slice_value:
            raise fail(
                f"{'@' + where!r} must be @SLICE=VALUE, one slice and one of its values, e.g."
                " @region=eu; the simulated slices are " + _SLICES_TEXT
            )
        if slices is False:
            raise fail(
                f"a drift restricted to slice {key}={slice_value} needs --slices (without it"
                " events carry no slices); add --slices or drop the @SLICE=VALUE"
            )
        slice_ = (key, slice_value)
    numbers = [_number(raw, name, fail)
               for name, raw in zip(("AT_SECONDS", "MAGNITUDE"), parts[2:], strict=False)]
    if numbers[0] < 0:
        raise fail("AT_SECONDS must be >= 0")
    specs = {m.name: m for m in (default_models() if models is None else models)}
    try:
        drift = DriftSpec(
            model, features, numbers[0], numbers[1] if len(numbers) > 1 else 1.0, slice=slice_
        )
        _check_drift(drift, specs)
    except ConfigError as exc:
        raise fail(str(exc)) from None
    return drift


def _number(raw: str, name: str, fail: Callable[[str], ConfigError]) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise fail(f"{name} {raw.strip()!r} is not a number") from None
    if not math.isfinite(value):
        raise fail(f"{name} must be finite")
    return value


def _window_of(raw: str, fail: Callable[[str], ConfigError]) -> tuple[float, float | None]:
    """``START[-END]`` (seconds of simulated time) of ``--rollout`` and ``--fault``."""
    if not raw:
        raise fail("START is empty")
    split = _WINDOW_SPLIT.match(raw)
    if split is None or _is_number(raw):
        start, end = _number(raw, "START", fail), None
    else:
        start, end = _number(split[1], "START", fail), _number(split[2], "END", fail)
    if start < 0:
        raise fail("START must be >= 0")
    if end is not None and end <= start:
        raise fail(f"END must be > START, got {raw!r}")
    return start, end


def _change_of(parts: list[str], index: int, fail: Callable[[str], ConfigError]) -> float:
    """The optional ``CHANGE`` at ``parts[index]`` of ``--shadow`` and ``--rollout``."""
    if len(parts) <= index:
        return DEFAULT_CHANGE
    change = _number(parts[index], "CHANGE", fail)
    if change < 0:
        raise fail("CHANGE must be >= 0 (0: an identical copy of the model)")
    return change


def _version(raw: str, fail: Callable[[str], ConfigError]) -> str:
    if not raw:
        raise fail("VERSION is empty")
    if len(raw) > _MAX_VERSION_CHARS:
        raise fail(f"VERSION is {len(raw)} characters long; at most {_MAX_VERSION_CHARS}")
    return raw


def parse_shadow(text: str, models: Sequence[ModelSpec] | None = None) -> ShadowSpec:
    """Parse one ``--shadow`` value, ``MODEL:VERSION[:CHANGE]`` (:class:`ShadowSpec`).

    >>> parse_shadow("fraud:v2")
    ShadowSpec(model='fraud', version='v2', change=0.5)
    >>> parse_shadow("eta:v2:1.5").change
    1.5
    >>> parse_shadow("fraud:v1")
    Traceback (most recent call last):
    ...
    stream.errors.ConfigError: --shadow 'fraud:v1': shadow of 'fraud': version 'v1' is the version ...
    """

    def fail(problem: str) -> ConfigError:
        return ConfigError(f"--shadow {text!r}: {problem}; expected {SHADOW_FORMAT}, {_SHADOW_EXAMPLES}")

    parts = [part.strip() for part in str(text).split(":")]
    if len(parts) not in (2, 3):
        raise fail(f"expected 2 or 3 ':'-separated parts, got {len(parts)}")
    model = parts[0]
    if not model:
        raise fail("MODEL is empty")
    version = _version(parts[1], fail)
    change = _change_of(parts, 2, fail)
    specs = {m.name: m for m in (default_models() if models is None else models)}
    try:
        shadow = ShadowSpec(model, version, change)
        _check_variant(shadow, specs)
    except ConfigError as exc:
        raise fail(str(exc)) from None
    return shadow


def parse_rollout(text: str, models: Sequence[ModelSpec] | None = None) -> RolloutSpec:
    """Parse one ``--rollout`` value, ``MODEL:VERSION:START[-END][:CHANGE]``
    (:class:`RolloutSpec`; ``START`` and ``END`` in seconds of simulated time).

    >>> parse_rollout("fraud:v2:60-120")  # doctest: +NORMALIZE_WHITESPACE
    RolloutSpec(model='fraud', version='v2', start_seconds=60.0, end_seconds=120.0,
                change=0.5)
    >>> r = parse_rollout("churn:v2:30:1")
    >>> r.start_seconds, r.end_seconds, r.change
    (30.0, None, 1.0)
    >>> parse_rollout("fraud:v2:120-60")
    Traceback (most recent call last):
    ...
    stream.errors.ConfigError: --rollout 'fraud:v2:120-60': END must be > START, got '120-60'; ...
    """

    def fail(problem: str) -> ConfigError:
        return ConfigError(
            f"--rollout {text!r}: {problem}; expected {ROLLOUT_FORMAT}, {_ROLLOUT_EXAMPLES}"
        )

    parts = [part.strip() for part in str(text).split(":")]
    if len(parts) not in (3, 4):
        raise fail(f"expected 3 or 4 ':'-separated parts, got {len(parts)}")
    model = parts[0]
    if not model:
        raise fail("MODEL is empty")
    version = _version(parts[1], fail)
    start, end = _window_of(parts[2], fail)
    change = _change_of(parts, 3, fail)
    specs = {m.name: m for m in (default_models() if models is None else models)}
    try:
        rollout = RolloutSpec(model, version, start, end, change)
        _check_variant(rollout, specs)
    except ConfigError as exc:
        raise fail(str(exc)) from None
    return rollout


def parse_fault(text: str, models: Sequence[ModelSpec] | None = None) -> FaultSpec:
    """Parse one ``--fault`` value, ``MODEL:KIND[:FEATURE]:START[-END][:FACTOR]``.

    ``KIND`` is one of :data:`FAULT_KINDS`; ``null``, ``missing``, ``unit`` and
    ``new_category`` need a ``FEATURE``, ``drop`` and ``spike`` take none. ``START`` and
    ``END`` are seconds of simulated time (no ``END``: until the end); ``FACTOR`` as in
    :class:`FaultSpec`.

    >>> parse_fault("fraud:null:amount:60-120")  # doctest: +NORMALIZE_WHITESPACE
    FaultSpec(model='fraud', kind='null', feature='amount', start_seconds=60.0,
              end_seconds=120.0, factor=None)
    >>> f = parse_fault("churn:spike:30:4")
    >>> f.kind, f.feature, f.start_seconds, f.end_seconds, f.factor
    ('spike', None, 30.0, None, 4.0)
    >>> parse_fault("fraud:nul:amount:60")
    Traceback (most recent call last):
    ...
    stream.errors.ConfigError: --fault 'fraud:nul:amount:60': KIND 'nul' is not one of null, missing, ...
    """

    def fail(problem: str) -> ConfigError:
        return ConfigError(
            f"--fault {text!r}: {problem}; expected {FAULT_FORMAT} with KIND one of"
            f" {', '.join(FAULT_KINDS)}, {_FAULT_EXAMPLES}"
        )

    parts = [part.strip() for part in str(text).split(":")]
    if len(parts) < 2:
        raise fail(f"expected 3 to 5 ':'-separated parts, got {len(parts)}")
    model, kind = parts[0], parts[1]
    if not model:
        raise fail("MODEL is empty")
    if kind not in FAULT_KINDS:
        raise fail(f"KIND {kind!r} is not one of {', '.join(FAULT_KINDS)}")
    feature: str | None = None
    if kind in _FEATURE_FAULTS:
        if len(parts) not in (4, 5):
            raise fail(f"KIND {kind!r} takes MODEL:{kind}:FEATURE:START[-END][:FACTOR], 4 or 5"
                       f" ':'-separated parts, got {len(parts)}")
        feature = parts[2]
        if not feature:
            raise fail("FEATURE is empty")
        rest = parts[3:]
    else:
        if len(parts) not in (3, 4):
            raise fail(f"KIND {kind!r} takes MODEL:{kind}:START[-END][:FACTOR], 3 or 4"
                       f" ':'-separated parts, got {len(parts)}")
        rest = parts[2:]
        if rest[0][:1].isalpha() and not _is_window(rest[0]):
            raise fail(f"KIND {kind!r} takes no FEATURE (it acts on all of the model's events),"
                       f" and {rest[0]!r} is not a START[-END] window")
    start, end = _window_of(rest[0], fail)
    factor = _number(rest[1], "FACTOR", fail) if len(rest) > 1 else None
    try:
        fault = FaultSpec(model, kind, feature, start, end, factor)  # type: ignore[arg-type]
        specs = {m.name: m for m in (default_models() if models is None else models)}
        _check_fault(fault, specs)
    except ConfigError as exc:
        raise fail(str(exc)) from None
    return fault


#: ``START-END``: the ``-`` that is not a float's exponent sign (``1e-3-2e-3``).
_WINDOW_SPLIT: Final = re.compile(r"^(.*?[^eE])-(.*)$")


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _is_window(text: str) -> bool:
    split = _WINDOW_SPLIT.match(text)
    return _is_number(text) or (
        split is not None and _is_number(split[1]) and _is_number(split[2])
    )


def _one_per_model(
    option: str, texts: Sequence[str], specs: Sequence[ShadowSpec | RolloutSpec]
) -> None:
    by_model: dict[str, str] = {}
    for raw, variant in zip(texts, specs, strict=True):
        if variant.model in by_model:
            raise ConfigError(
                f"{option} {by_model[variant.model]!r} and {option} {raw!r} both name model"
                f" {variant.model!r}; give each model one {option} at most"
            )
        by_model[variant.model] = raw


def config_from_args(args: argparse.Namespace) -> SimConfig:
    """The :class:`SimConfig` the ``simulate`` options describe.

    Raises :class:`~stream.errors.ConfigError` naming the bad option.

    >>> parser = argparse.ArgumentParser()
    >>> add_arguments(parser)
    >>> cfg = config_from_args(parser.parse_args(["--rate", "50", "--drift", "eta:prediction:30"]))
    >>> cfg.rate, cfg.drifts[0].features
    (50.0, ('prediction',))
    >>> config_from_args(parser.parse_args(["--label-delay-distribution", "fixed"])
    ...                  ).label_delay_distribution
    'fixed'
    >>> config_from_args(parser.parse_args(["--envelope", "0"]))
    Traceback (most recent call last):
    ...
    stream.errors.ConfigError: --envelope must be an integer >= 1 (events per message), got 0
    """
    models = default_models()

    def opt(name: str, default: Any) -> Any:
        value = getattr(args, name, default)
        return default if value is None and default is not None else value

    rate = opt("rate", 300.0)
    if not (_finite(rate) and rate > 0):
        raise ConfigError(f"--rate must be a number > 0 (events per second), got {rate!r}")
    seed = opt("seed", 7)
    if not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"--seed must be an integer >= 0, got {seed!r}")
    envelope = opt("envelope", 1)
    if not isinstance(envelope, int) or envelope < 1:
        raise ConfigError(
            f"--envelope must be an integer >= 1 (events per message), got {envelope!r}"
        )
    delay = opt("label_delay", 30.0)
    if not (_finite(delay) and delay > 0):
        raise ConfigError(f"--label-delay must be a number of seconds > 0, got {delay!r}")
    delay_dist = opt("label_delay_distribution", "exponential")
    if delay_dist not in LABEL_DELAY_DISTRIBUTIONS:
        raise ConfigError(
            f"--label-delay-distribution must be one of {', '.join(LABEL_DELAY_DISTRIBUTIONS)},"
            f" got {delay_dist!r}"
        )
    coverage = opt("label_coverage", 0.9)
    if not (_finite(coverage) and 0 <= coverage <= 1):
        raise ConfigError(f"--label-coverage must be a share in [0, 1], got {coverage!r}")
    drop = opt("accuracy_drop", 0.3)
    if not (_finite(drop) and 0 <= drop <= 1):
        raise ConfigError(f"--accuracy-drop must be a share in [0, 1], got {drop!r}")
    drop_at = opt("accuracy_drop_at", None)
    if drop_at is not None and not (_finite(drop_at) and drop_at >= 0):
        raise ConfigError(f"--accuracy-drop-at must be a number of seconds >= 0, got {drop_at!r}")
    duration = opt("duration", None)
    if duration is not None and not (_finite(duration) and duration > 0):
        raise ConfigError(f"--duration must be a number of seconds > 0, got {duration!r}")
    max_events = opt("max_events", None)
    if max_events is not None and (not isinstance(max_events, int) or max_events < 1):
        raise ConfigError(f"--max-events must be an integer >= 1, got {max_events!r}")
    model = opt("model", None)
    names = [m.name for m in models]
    if model is not None and model not in names:
        raise ConfigError(
            f"--model {model!r} is not a simulated model; choose one of {', '.join(names)}"
        )
    if opt("reference_out", None) is not None:
        n_ref = opt("reference_events", 5000)
        if not isinstance(n_ref, int) or n_ref < 1:
            raise ConfigError(f"--reference-events must be an integer >= 1, got {n_ref!r}")
    slices = bool(opt("slices", False))
    drifts = tuple(parse_drift(text, models, slices=slices) for text in opt("drift", []) or [])
    faults = tuple(parse_fault(text, models) for text in opt("fault", []) or [])
    shadow_texts = list(opt("shadow", []) or [])
    rollout_texts = list(opt("rollout", []) or [])
    shadows = tuple(parse_shadow(text, models) for text in shadow_texts)
    rollouts = tuple(parse_rollout(text, models) for text in rollout_texts)
    _one_per_model("--shadow", shadow_texts, shadows)
    _one_per_model("--rollout", rollout_texts, rollouts)
    for raw_s, shadow in zip(shadow_texts, shadows, strict=True):
        for raw_r, rollout in zip(rollout_texts, rollouts, strict=True):
            if (shadow.model, shadow.version) == (rollout.model, rollout.version) and (
                shadow.change != rollout.change
            ):
                raise ConfigError(
                    f"--shadow {raw_s!r} and --rollout {raw_r!r} name the same version"
                    f" {shadow.version!r} of {shadow.model!r} with different CHANGE"
                    f" ({shadow.change:g} and {rollout.change:g}); one version is one model:"
                    " give both the same CHANGE, or the rollout another VERSION"
                )
    return SimConfig(
        models=models,
        rate=float(rate),
        seed=seed,
        drifts=drifts,
        labels=bool(opt("labels", False)),
        label_delay_mean_seconds=float(delay),
        label_delay_distribution=delay_dist,
        label_coverage=float(coverage),
        accuracy_drop_at_seconds=None if drop_at is None else float(drop_at),
        accuracy_drop=float(drop),
        envelope=envelope,
        faults=faults,
        slices=slices,
        attributions=bool(opt("attributions", False)),
        shadows=shadows,
        rollouts=rollouts,
    )
