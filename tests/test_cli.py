"""The ``driftstream`` command in-process (``stream/cli.py``), file readers
(``stream/files.py``) and offline replay (``stream/replay.py``), without a broker.

One module-scoped workspace holds simulated traffic (3000 events, ``amount`` of model
``fraud`` drifted by 2 standard deviations from second 2 on) and undrifted reference
events, written by ``driftstream simulate`` itself; the tests replay it in several ways.
"""

from __future__ import annotations

import base64
import csv
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest

from stream.cli import format_alert, main
from stream.config import Settings, load_settings
from stream.core.reference import ReferenceProfile
from stream.files import read_csv_events, read_jsonl_lines, read_reference_events
from stream.replay import build_profiles, replay_lines

EVENTS = 3000
RATE = 300.0
DRIFT_AT = 2.0
REFERENCE_EVENTS = 2000
MODELS = {"fraud", "churn", "eta"}

#: 250-event windows, so that each model has several windows and fraud's first one
#: (about 1.7 s of traffic) closes before the drift starts. The warning threshold is
#: raised because the PSI noise floor of 250 events against 2000 is about 0.045
#: (``psi_noise_floor``): the default 0.1 is within noise at this window size.
CONFIG_TOML = """
[monitor]
window_size = 250
psi_warning = 0.2
psi_critical = 0.5
"""


@dataclass(frozen=True)
class Workspace:
    root: Path
    config: Path
    events: Path
    reference_events: Path
    profiles: Path
    replay_profiles: Path  # replay output dir, --reference profiles.jsonl
    replay_raw: Path  # replay output dir, --reference ref.jsonl

    @property
    def settings(self) -> Settings:
        return load_settings(self.config, env={})


def jsonl(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


def _clear_env(mp: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("DRIFTSTREAM_"):
            mp.delenv(key)


@pytest.fixture(autouse=True)
def _no_driftstream_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The developer's DRIFTSTREAM_* variables must not change what the CLI does."""
    _clear_env(monkeypatch)


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workspace]:
    root = tmp_path_factory.mktemp("cli")
    w = Workspace(root, root / "driftstream.toml", root / "events.jsonl", root / "ref.jsonl",
                  root / "profiles.jsonl", root / "out-profiles", root / "out-raw")
    w.config.write_text(CONFIG_TOML)
    with pytest.MonkeyPatch.context() as mp:
        _clear_env(mp)
        assert main(["simulate", "--out", str(w.events), "--max-events", str(EVENTS),
                     "--drift", f"fraud:amount:{DRIFT_AT:g}:2.0", "--rate", f"{RATE:g}"]) == 0
        assert main(["simulate", "--reference-out", str(w.reference_events),
                     "--reference-events", str(REFERENCE_EVENTS)]) == 0
        assert main(["reference", str(w.reference_events), "--out", str(w.profiles),
                     "--config", str(w.config)]) == 0
        assert main(["replay", str(w.events), "--reference", str(w.profiles),
                     "--out", str(w.replay_profiles), "--config", str(w.config)]) == 0
        assert main(["replay", str(w.events), "--reference", str(w.reference_events),
                     "--out", str(w.replay_raw), "--config", str(w.config)]) == 0
        yield w


# -- simulate ------------------------------------------------------------------------


def test_simulate_writes_event_files(ws: Workspace) -> None:
    events = jsonl(ws.events)
    assert len(events) == EVENTS
    assert {e["model"] for e in events} == MODELS
    ts = [e["ts"] for e in events]
    assert ts == sorted(ts)
    assert ts[-1] - ts[0] == pytest.approx((EVENTS - 1) / RATE)
    refs = jsonl(ws.reference_events)
    assert len(refs) == REFERENCE_EVENTS * len(MODELS)
    assert {m: sum(e["model"] == m for e in refs) for m in MODELS} == dict.fromkeys(
        MODELS, REFERENCE_EVENTS)
    ref_ts = [e["ts"] for e in refs]
    assert all(t > 0 for t in ref_ts)


@pytest.mark.parametrize(
    ("args", "expected_lines", "message"),
    [
        (["--out", "e.jsonl", "--max-events", "17"], 17, "wrote 17 events to"),
        (["--reference-out", "e.jsonl", "--reference-events", "5"], 15, "wrote 15 reference events"),
        (["--reference-out", "e.jsonl", "--reference-events", "5", "--model", "eta"], 5,
         "wrote 5 reference events"),
        (["--out", "e.jsonl", "--duration", "0.1", "--rate", "100"], 10, "wrote 10 events"),
    ],
)
def test_simulate_to_file_counts(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                 args: list[str], expected_lines: int, message: str) -> None:
    out = tmp_path / "e.jsonl"
    argv = ["simulate", *[str(out) if a == "e.jsonl" else a for a in args]]
    assert main(argv) == 0
    assert len(out.read_bytes().splitlines()) == expected_lines
    assert message in capsys.readouterr().out


def test_simulate_bad_drift_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulate", "--out", str(tmp_path / "e.jsonl"), "--drift", "fraud:nope:1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("driftstream simulate: error: --drift 'fraud:nope:1'")
    assert not (tmp_path / "e.jsonl").exists()


# -- reference -----------------------------------------------------------------------


def test_reference_writes_one_restorable_profile_per_model(ws: Workspace) -> None:
    rows = jsonl(ws.profiles)
    assert len(rows) == len(MODELS)
    profiles = [ReferenceProfile.restore(row) for row in rows]
    assert {p.model for p in profiles} == MODELS
    for p in profiles:
        assert p.model_version == "v1"
        assert p.events == REFERENCE_EVENTS
        assert p.source == "file"
        assert p.series
        assert p.snapshot() == rows[profiles.index(p)]


def test_reference_filters_by_model_and_prints_summary(
    ws: Workspace, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "p.jsonl"
    assert main(["reference", str(ws.reference_events), "--model", "churn", "--out", str(out)]) == 0
    rows = jsonl(out)
    assert [r["model"] for r in rows] == ["churn"]
    text = capsys.readouterr().out
    assert f"reference churn v1: {REFERENCE_EVENTS} events" in text
    assert f"wrote {out}" in text


def test_reference_uses_monitor_settings_per_model(ws: Workspace, tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[monitor]\nmax_categories = 2\nnumeric_bins = 4\n'
                      '[models."churn"]\nmax_categories = 1\n')
    out = tmp_path / "p.jsonl"
    assert main(["reference", str(ws.reference_events), "--config", str(config),
                 "--out", str(out)]) == 0
    rows = {r["model"]: r for r in jsonl(out)}
    assert set(rows) == MODELS
    for model, row in rows.items():
        series = [*row["features"].values(), *row["prediction"].values()]
        cats = [len(s["categories"]) for s in series if s["type"] == "categorical"]
        edges = [len(s["edges"]) for s in series if s["type"] == "numeric"]
        assert cats and edges, model
        assert max(cats) == (1 if model == "churn" else 2), model
        assert max(edges) <= 3, model


def test_reference_with_no_matching_events_is_exit_2(
    ws: Workspace, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "p.jsonl"
    assert main(["reference", str(ws.reference_events), "--model", "nosuch", "--out", str(out)]) == 2
    assert "no events to build a reference from" in capsys.readouterr().err
    assert not out.exists()


# -- replay --------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["reports.jsonl", "alerts.jsonl", "dead-letters.jsonl"])
def test_replay_writes_its_files(ws: Workspace, name: str) -> None:
    assert (ws.replay_profiles / name).is_file()


def test_replay_summary_line(ws: Workspace, tmp_path: Path,
                             capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "o"
    assert main(["replay", str(ws.events), "--reference", str(ws.profiles), "--out", str(out),
                 "--config", str(ws.config)]) == 0
    lines = capsys.readouterr().out.splitlines()
    summary = orjson.loads(lines[-1])
    assert summary == {
        "events": EVENTS,
        "reports": len(jsonl(out / "reports.jsonl")),
        "alerts": len(jsonl(out / "alerts.jsonl")),
        "dead_letters": 0,
        "rejected_by_cap": 0,
        "out": str(out),
    }
    assert summary["alerts"] > 0
    # every alert is printed in readable form before the summary
    assert sum("FIRING" in line or "RESOLVED" in line for line in lines) == summary["alerts"]
    assert dir_bytes(out) == dir_bytes(ws.replay_profiles)


def dir_bytes(d: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(d.iterdir())}


def test_replay_reports_cover_every_model(ws: Workspace) -> None:
    reports = jsonl(ws.replay_profiles / "reports.jsonl")
    assert {r["model"] for r in reports} == MODELS
    for r in reports:
        assert r["type"] == "window_report"
        assert r["reference"] == {"source": "file", "events": REFERENCE_EVENTS, "features_over_cap": 0}
        assert r["window"]["count"] == 250
    assert jsonl(ws.replay_profiles / "dead-letters.jsonl") == []


def test_replay_with_raw_reference_events_equals_replay_with_profiles(ws: Workspace) -> None:
    reports = (ws.replay_profiles / "reports.jsonl").read_bytes()
    assert reports.count(b"\n") >= 8
    assert (ws.replay_raw / "reports.jsonl").read_bytes() == reports
    assert (ws.replay_raw / "alerts.jsonl").read_bytes() == (
        ws.replay_profiles / "alerts.jsonl").read_bytes()


def test_drifted_feature_fires_and_nothing_fires_before_the_drift(ws: Workspace) -> None:
    start_ts = jsonl(ws.events)[0]["ts"]  # event 0 is at the simulator's start_ts
    onset = start_ts + DRIFT_AT
    reports = jsonl(ws.replay_profiles / "reports.jsonl")
    alerts = jsonl(ws.replay_profiles / "alerts.jsonl")

    drift = [a for a in alerts if a["model"] == "fraud" and a["feature"] == "amount"
             and a["kind"] == "feature_drift" and a["status"] == "firing" and a["detector"] == "psi"]
    assert drift, f"no PSI feature_drift alert for fraud/amount in {alerts}"
    assert drift[0]["severity"] == "critical"
    assert drift[0]["window"]["end"] >= onset
    # the first window that contains drifted events fires
    first_drifted = min((r for r in reports if r["model"] == "fraud" and r["window"]["end"] >= onset),
                        key=lambda r: r["window"]["index"])
    assert drift[0]["window"] == first_drifted["window"]

    # non-vacuous: fraud has a window wholly before the onset, and it is quiet
    before = [r for r in reports if r["window"]["end"] < onset]
    assert any(r["model"] == "fraud" for r in before)
    for r in before:
        assert r.get("alerts_firing", 0) == 0
        assert all(f["severity"] == "ok" for f in r["features"].values())
    for a in alerts:
        assert a["window"]["end"] >= onset, f"alert before the drift onset: {a}"
        assert a["ts"] >= onset
    # only the drifted model alerts
    assert {a["model"] for a in alerts} == {"fraud"}


def per_model(rows: list[dict[str, Any]]) -> dict[str, list[bytes]]:
    """Serialised rows grouped by model, in order. Across models the order of outputs
    follows the batching (as it follows partitions live); within a model it must not."""
    out: dict[str, list[bytes]] = {}
    for row in rows:
        out.setdefault(row["model"], []).append(orjson.dumps(row))
    return out


@pytest.mark.parametrize("batch_lines", [1, 100, 5000])
def test_replay_is_batch_invariant(ws: Workspace, batch_lines: int) -> None:
    refs = [ReferenceProfile.restore(row) for row in jsonl(ws.profiles)]
    result = replay_lines(read_jsonl_lines(ws.events), ws.settings, references=refs,
                          source=str(ws.events), batch_lines=batch_lines)
    assert result.events == EVENTS
    assert result.dead_letters == []
    cli_reports = jsonl(ws.replay_profiles / "reports.jsonl")
    cli_alerts = jsonl(ws.replay_profiles / "alerts.jsonl")
    assert len(cli_reports) >= 8 and cli_alerts
    assert per_model(result.reports) == per_model(cli_reports)
    assert per_model(result.alerts) == per_model(cli_alerts)
    if batch_lines >= EVENTS:  # one batch: the same bytes as the CLI, in the same order
        assert b"".join(orjson.dumps(r) + b"\n" for r in result.reports) == (
            ws.replay_profiles / "reports.jsonl").read_bytes()


def test_build_profiles_matches_reference_command(ws: Workspace) -> None:
    events, bad = read_reference_events(ws.reference_events)
    assert bad == 0 and len(events) == REFERENCE_EVENTS * len(MODELS)
    built = {p.model: p.snapshot() for p in build_profiles(events, ws.settings)}
    assert built == {row["model"]: row for row in jsonl(ws.profiles)}


def test_replay_without_reference_warms_up(ws: Workspace, tmp_path: Path) -> None:
    out = tmp_path / "o"
    assert main(["replay", str(ws.events), "--out", str(out), "--config", str(ws.config)]) == 0
    reports = jsonl(out / "reports.jsonl")
    # warm-up consumes the first monitor.warmup_events (1000) of each version
    assert all(r["reference"]["source"] != "file" for r in reports)
    assert len(reports) < len(jsonl(ws.replay_profiles / "reports.jsonl"))


def test_replay_bad_lines_go_to_dead_letters_with_line_numbers(
    ws: Workspace, tmp_path: Path
) -> None:
    good = ws.events.read_bytes().splitlines()[:5]
    bad_event = orjson.dumps({"event_id": "x", "model": "fraud"})  # no ts, features, prediction
    lines = [
        good[0],          # 1
        b"{not json",     # 2
        good[1],          # 3
        b"",              # 4: blank, skipped
        bad_event,        # 5
        b"[" + good[2] + b"," + bad_event + b"]",  # 6: second element is bad
        b"42",            # 7
        good[3],          # 8
    ]
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"\n".join(lines) + b"\n")
    out = tmp_path / "o"
    assert main(["replay", str(events), "--out", str(out)]) == 0
    dead = jsonl(out / "dead-letters.jsonl")
    assert [(d["source"]["offset"], d["source"]["index"]) for d in dead] == [
        (2, None), (5, None), (6, 1), (7, None)]
    assert {d["source"]["topic"] for d in dead} == {str(events)}
    assert {d["source"]["partition"] for d in dead} == {0}
    assert dead[0]["reason"] == "invalid_json"
    assert all(d["reason"] and d["detail"] for d in dead)
    assert base64.b64decode(dead[0]["value_b64"]) == b"{not json"
    assert base64.b64decode(dead[1]["value_b64"]) == bad_event


def test_replay_feature_kind(tmp_path: Path) -> None:
    events = tmp_path / "f.jsonl"
    events.write_bytes(b"\n".join(orjson.dumps(
        {"event_id": f"f{i}", "model": "m", "ts": 1_700_000_000 + i, "features": {"x": i % 7}})
        for i in range(30)) + b"\n")
    out = tmp_path / "o"
    assert main(["replay", str(events), "--kind", "feature", "--out", str(out)]) == 0
    assert jsonl(out / "dead-letters.jsonl") == []
    out2 = tmp_path / "o2"
    assert main(["replay", str(events), "--kind", "prediction", "--out", str(out2)]) == 0
    # without a prediction field they are not valid prediction events
    assert len(jsonl(out2 / "dead-letters.jsonl")) == 30


# -- CSV references ------------------------------------------------------------------


CSV_ROWS = [
    {"a": "1.5", "b": "x", "c": "9", "label": "yes"},
    {"a": "", "b": "y", "c": "8", "label": "no"},
    {"a": "2.5", "b": "", "c": "7", "label": "yes"},
    {"a": "3", "b": "x", "c": "", "label": "no"},
    {"a": "nan", "b": "7", "c": "1", "label": "no"},
]


@pytest.fixture
def data_csv(tmp_path: Path) -> Path:
    path = tmp_path / "data.csv"
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["a", "b", "c", "label"])
        writer.writeheader()
        writer.writerows(CSV_ROWS)
    return path


def test_read_csv_events_cells(data_csv: Path) -> None:
    events = read_csv_events(data_csv, model="m", model_version="v1", columns=["a", "b"])
    assert [e["features"] for e in events] == [
        {"a": 1.5, "b": "x"},
        {"a": None, "b": "y"},
        {"a": 2.5, "b": None},
        {"a": 3.0, "b": "x"},
        {"a": "nan", "b": 7.0},  # not a finite number: kept as text
    ]
    assert {(e["model"], e["model_version"], e["kind"]) for e in events} == {("m", "v1", "feature")}
    assert len({e["event_id"] for e in events}) == len(events)


def test_read_csv_events_default_columns_and_prediction(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text("when,a,b,label,score\n100.5,1,x,yes,0.9\n101,,y,no,0.2\n")
    events = read_csv_events(path, model="m", prediction_column="label", ts_column="when")
    assert [e["features"] for e in events] == [
        {"a": 1.0, "b": "x", "score": 0.9}, {"a": None, "b": "y", "score": 0.2}]
    assert [e["ts"] for e in events] == [100.5, 101.0]
    assert [e["prediction"]["label"] for e in events] == ["yes", "no"]
    assert {e["kind"] for e in events} == {"prediction"}
    events = read_csv_events(path, model="m", prediction_column="score", columns=["a"])
    assert [e["prediction"]["value"] for e in events] == [0.9, 0.2]
    assert [e["ts"] for e in events] == [0.0, 0.0]


@pytest.mark.parametrize("cell", ["", "yesterday"])
def test_reference_csv_bad_ts_cell_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                            cell: str) -> None:
    path = tmp_path / "d.csv"
    path.write_text(f"when,a\n1,1.0\n{cell},2.0\n")
    assert main(["reference", str(path), "--model", "m", "--ts-column", "when"]) == 2
    err = capsys.readouterr().err
    assert "when" in err and "3" in err  # the column and the line of the bad cell


def test_reference_from_csv(data_csv: Path, tmp_path: Path,
                            capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "p.jsonl"
    assert main(["reference", str(data_csv), "--model", "m", "--model-version", "v1",
                 "--columns", "a,b", "--out", str(out)]) == 0
    rows = jsonl(out)
    assert len(rows) == 1
    p = ReferenceProfile.restore(rows[0])
    assert (p.model, p.model_version, p.events) == ("m", "v1", len(CSV_ROWS))
    a, b = rows[0]["features"]["a"], rows[0]["features"]["b"]
    assert set(rows[0]["features"]) == {"a", "b"}
    # a: 3 numbers and 1 empty cell (the missing bucket is last); the text "nan" is a
    # type mismatch and not counted
    assert (a["type"], a["min"], a["max"]) == ("numeric", 1.5, 3.0)
    assert (sum(a["counts"]), a["counts"][-1]) == (4, 1)
    # b: categories by frequency, then "other" and "missing"; the number 7 is a mismatch
    assert (b["type"], b["categories"], b["counts"]) == ("categorical", ["x", "y"], [2, 1, 0, 1])
    assert rows[0]["prediction"] == {}
    assert "reference m v1: 5 events, 2 series" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--model", "m", "--columns", "a,zz"], "zz"),
        (["--model", "m", "--prediction-column", "score"], "score"),
        (["--model", "m", "--ts-column", "when"], "when"),
        ([], "--model"),
    ],
)
def test_reference_csv_errors_are_exit_2(data_csv: Path, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str],
                                         extra: list[str], needle: str) -> None:
    out = tmp_path / "p.jsonl"
    assert main(["reference", str(data_csv), *extra, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("driftstream reference: error: ")
    assert needle in err
    assert not out.exists()


# -- errors --------------------------------------------------------------------------


def test_missing_config_file_is_exit_2(ws: Workspace, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope.toml"
    assert main(["replay", str(ws.events), "--config", str(missing),
                 "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "driftstream replay: error: config file" in err and str(missing) in err


def test_bad_environment_setting_is_exit_2(ws: Workspace, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("DRIFTSTREAM_MONITOR__WINDOW_SIZE", "big")
    assert main(["replay", str(ws.events), "--out", str(tmp_path / "o")]) == 2
    assert "monitor.window_size (from DRIFTSTREAM_MONITOR__WINDOW_SIZE)" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [
        ["replay", "MISSING"],
        ["replay", "EVENTS", "--reference", "MISSING"],
        ["reference", "MISSING"],
    ],
    ids=["replay-events", "replay-reference", "reference"],
)
def test_missing_input_file_is_exit_2(ws: Workspace, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    missing = tmp_path / "missing.jsonl"
    subst = {"MISSING": str(missing), "EVENTS": str(ws.events)}
    argv = [subst.get(a, a) for a in argv] + ["--out", str(tmp_path / "o")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"driftstream {argv[0]}: error: ")
    assert str(missing) in err
    assert "Traceback" not in err


def test_unknown_subcommand_is_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["nosuch"])
    assert info.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


# -- format_alert --------------------------------------------------------------------


BASE_ALERT = {
    "ts": 1_700_000_000.0, "severity": "critical", "kind": "feature_drift", "model": "fraud",
    "model_version": "v1", "feature": "amount", "detector": "psi", "value": 0.31234,
    "threshold": 0.25, "message": "PSI of feature 'amount' is 0.312",
}


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"status": "firing"},
         "2023-11-14T22:13:20Z FIRING   critical feature_drift  fraud v1 amount [psi 0.312 >= 0.25]\n"
         "    PSI of feature 'amount' is 0.312"),
        ({"status": "resolved", "severity": "warning", "value": 0.0412},
         "2023-11-14T22:13:20Z RESOLVED warning  feature_drift  fraud v1 amount [psi 0.0412]\n"
         "    PSI of feature 'amount' is 0.312"),
        ({"status": "firing", "detector": "adwin", "value": None, "threshold": None,
          "severity": "warning"},
         "2023-11-14T22:13:20Z FIRING   warning  feature_drift  fraud v1 amount [adwin]\n"
         "    PSI of feature 'amount' is 0.312"),
        ({"status": "firing", "kind": "prediction_drift", "model_version": None,
          "feature": "prediction.score"},
         "2023-11-14T22:13:20Z FIRING   critical prediction_drift fraud prediction.score "
         "[psi 0.312 >= 0.25]\n    PSI of feature 'amount' is 0.312"),
    ],
    ids=["firing", "resolved", "no-value", "no-version"],
)
def test_format_alert(changes: dict[str, Any], expected: str) -> None:
    assert format_alert({**BASE_ALERT, **changes}) == expected


def test_format_alert_on_replayed_alerts(ws: Workspace) -> None:
    for alert in jsonl(ws.replay_profiles / "alerts.jsonl"):
        text = format_alert(alert)
        first, second = text.split("\n")
        assert alert["status"].upper() in first
        assert alert["model"] in first and alert["kind"] in first
        assert second == "    " + alert["message"]
