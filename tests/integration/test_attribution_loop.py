"""Feature-attribution drift on the embedded broker: the inputs stay put, the model's
importance ranking turns over, and an attribution_drift alert fires, then resolves."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
import pytest

from tests.integration.harness import WorkerProcess, consume_until, make_env, produce

pytestmark = pytest.mark.broker

FEATURES = ("a", "b", "c", "d", "e")
NORMAL = (5.0, 3.0, 1.5, 0.5, 0.2)   # mean |attribution| per feature
TURNED = tuple(reversed(NORMAL))     # the ranking reversed


def events(n: int, start: int, importance: tuple[float, ...], seed: int) -> list[bytes]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        x = rng.normal(0.0, 1.0, len(FEATURES))
        attr = rng.normal(1.0, 0.2, len(FEATURES)) * np.array(importance)
        out.append(orjson.dumps({
            "event_id": f"e{start + i}", "model": "ranker", "model_version": "v1",
            "ts": 1_700_000_000.0 + (start + i) * 0.01,
            "features": dict(zip(FEATURES, x.tolist(), strict=True)),
            "prediction": {"score": float(rng.random())},
            "attributions": dict(zip(FEATURES, attr.tolist(), strict=True))}))
    return out


def attribution(alerts: list[dict[str, Any]], detector: str, status: str) -> list[dict[str, Any]]:
    return [a for a in alerts if a["kind"] == "attribution_drift" and a["detector"] == detector
            and a["status"] == status]


async def test_a_turned_ranking_fires_and_resolves(broker: Any, unique: str, tmp_path: Any) -> None:
    env = make_env(broker.bootstrap, unique, tmp_path / "data",
                   DRIFTSTREAM_MONITOR__VOLUME_ENABLED="false")
    worker = WorkerProcess(env, tmp_path / "worker.log").start()
    try:
        worker.wait_ready()
        s = worker.settings
        bootstrap = s.kafka.bootstrap_servers
        # warm-up (1000) and a normal window, then turned importance, then normal again
        values = (events(1500, 0, NORMAL, 1) + events(1000, 1500, TURNED, 2)
                  + events(1500, 2500, NORMAL, 3))
        await produce(bootstrap, s.topics.predictions, values, key=b"ranker")
        alerts = await consume_until(
            bootstrap, s.topics.alerts,
            lambda a: attribution(a, "ndcg", "resolved"), 60, worker)
        fired = attribution(alerts, "ndcg", "firing")
        assert fired and fired[0]["severity"] == "critical" and fired[0]["value"] < 0.8
        assert attribution(alerts, "share", "firing")
        # The inputs never moved: no PSI alert on any feature.
        assert not [a for a in alerts if a["kind"] == "feature_drift" and a["detector"] == "psi"]
        ndcg = worker.metric('driftstream_attribution_ndcg{model="ranker",model_version="v1"}')
        assert ndcg > 0.9  # back to normal in the last window
    finally:
        worker.stop()
