"""Reference quality from labelled reference events: computed by the live path's quality
code, carried by the profile, and used as the baseline of quality alerts."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import numpy as np
import orjson
from sklearn.metrics import accuracy_score, roc_auc_score

from stream.cli import main
from stream.config import MonitorConfig
from stream.core.columns import columns_from_events
from stream.core.events import normalize_event
from stream.core.reference import ReferenceProfile
from stream.core.registry import MonitorRegistry

SCHEMA = json.loads((Path(__file__).parents[1] / "schemas" / "reference.json").read_text())


def events_and_labels(n: int, seed: int, flip: float) -> tuple[list[dict], list[dict]]:
    rng = np.random.default_rng(seed)
    score = rng.random(n).round(2)
    events = [{"event_id": f"e{i}", "model": "fraud", "model_version": "v1", "ts": 1e9 + i,
               "features": {"x": float(rng.normal())},
               "prediction": {"label": bool(score[i] >= 0.5), "score": float(score[i])}}
              for i in range(n)]
    labels = [{"event_id": e["event_id"], "model": "fraud", "ts": e["ts"] + 5,
               "label": e["prediction"]["label"] != bool(rng.random() < flip)} for e in events]
    return events, labels


def test_reference_with_labels_carries_its_quality(tmp_path: Path) -> None:
    events, labels = events_and_labels(3000, seed=1, flip=0.1)
    ev, lab, out = tmp_path / "ref.jsonl", tmp_path / "ref.labels.jsonl", tmp_path / "prof.jsonl"
    ev.write_bytes(b"\n".join(orjson.dumps(e) for e in events))
    lab.write_bytes(b"\n".join(orjson.dumps(x) for x in labels[:2000]))  # partly labelled
    assert main(["reference", str(ev), "--labels", str(lab), "--out", str(out)]) == 0
    snap = orjson.loads(out.read_bytes().splitlines()[0])
    jsonschema.validate(snap, SCHEMA)
    q = snap["quality"]
    y = [x["label"] for x in labels[:2000]]
    assert (q["task"], q["pairs"]) == ("binary", 2000)
    assert abs(q["metrics"]["accuracy"] - accuracy_score(
        y, [e["prediction"]["label"] for e in events[:2000]])) < 1e-9
    assert abs(q["metrics"]["roc_auc"] - roc_auc_score(
        y, [e["prediction"]["score"] for e in events[:2000]])) < 1e-9
    assert ReferenceProfile.restore(snap).snapshot() == snap


def test_the_reference_quality_is_the_baseline_of_quality_alerts(tmp_path: Path) -> None:
    ref_events, ref_labels = events_and_labels(2000, seed=2, flip=0.02)
    profile = ReferenceProfile.build([normalize_event(e, "prediction") for e in ref_events],
                                     "fraud", "v1")
    from stream.config import Settings
    from stream.replay import reference_quality

    profile.quality = reference_quality([normalize_event(e, "prediction") for e in ref_events],
                                        ref_labels, Settings())[("fraud", "v1")]
    cfg = MonitorConfig(quality_window_size=500, quality_min_pairs=50, quality_margin=0.05,
                        quality_adwin=False, warmup_events=100)
    reg = MonitorRegistry(lambda m: cfg, max_models=10)
    reg.set_reference(ReferenceProfile.restore(orjson.loads(orjson.dumps(profile.snapshot()))))
    live, live_labels = events_and_labels(500, seed=3, flip=0.2)  # worse than the reference
    cols = columns_from_events([normalize_event(e, "prediction") for e in live])
    reg.handle({"type": "columns", "model": "fraud", "columns": cols})
    out = reg.handle({"type": "labels", "model": "fraud", "labels": {
        "event_id": [x["event_id"] for x in live_labels], "label": [x["label"] for x in live_labels],
        "ts": [x["ts"] for x in live_labels]}})
    (report,) = out.quality.reports
    assert report["reference"]["source"] == "reference"
    assert report["reference"]["metrics"]["accuracy"] == profile.quality["metrics"]["accuracy"]
    fired = {(a["detector"], a["feature"]) for a in out.quality.alerts}
    assert ("baseline", "accuracy") in fired  # at once: no first windows to wait for
