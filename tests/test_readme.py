"""The README's examples are executable: its JSON events validate against the schemas,
its TOML loads, and every setting it lists exists (and every setting is listed)."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

from jsonschema import Draft202012Validator

from stream.config import Settings, load_settings
from stream.core.events import normalize_event

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()


def blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README, flags=re.S)


def schema(name: str) -> Draft202012Validator:
    return Draft202012Validator(json.loads((REPO / "schemas" / name).read_text()),
                                format_checker=Draft202012Validator.FORMAT_CHECKER)


def test_readme_json_examples_follow_the_schemas() -> None:
    examples = [json.loads(b) for b in blocks("json")]
    prediction = next(e for e in examples if "prediction" in e)
    alert = next(e for e in examples if "alert_id" in e)
    schema("prediction.json").validate(prediction)
    normalize_event(prediction, "prediction")  # and the decoder accepts it
    schema("alert.json").validate(alert)


def test_readme_toml_examples_load(tmp_path: Path) -> None:
    slo, config = blocks("toml")
    path = tmp_path / "driftstream.toml"
    path.write_text(config)
    settings = load_settings(path, env={})
    assert settings.monitor_for("fraud").window_kind == "time"
    assert settings.monitor_for("fraud").thresholds("amount") == (0.2, 0.4)
    path.write_text(slo)
    settings = load_settings(path, env={})
    assert dict(settings.monitor_for("fraud").quality_slo) == {"accuracy": 0.9, "roc_auc": 0.85}
    assert dict(settings.monitor_for("other").quality_slo) == {}


def _all_settings() -> set[str]:
    out = set()
    for section in dataclasses.fields(Settings):
        if section.name == "models":
            continue
        for f in dataclasses.fields(section.type if isinstance(section.type, type)
                                    else getattr(Settings(), section.name)):
            if f.name not in ("feature_thresholds", "quality_slo"):  # TOML tables, shown apart
                out.add(f"{section.name}.{f.name}")
    return out


def test_configuration_table_lists_every_setting_and_only_real_ones() -> None:
    listed = set(re.findall(r"^\| `([a-z_]+\.[a-z_]+)` \|", README, flags=re.M))
    assert listed == _all_settings()


def test_metrics_table_lists_every_metric_and_only_real_ones() -> None:
    from stream.metrics import Metrics

    documented = set(re.findall(r"^\| `(driftstream_[a-z_]+)` \|", README, flags=re.M))
    registered = set()
    for family in Metrics().registry.collect():
        registered.add(f"{family.name}_total" if family.type == "counter" else family.name)
    assert documented == registered
