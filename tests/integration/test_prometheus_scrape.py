"""A real Prometheus scrapes a real worker and the real lag monitor, and evaluates an
alerting rule of the operations kit on what it scraped.

tests/test_deploy.py checks deploy/ statically; this is the run-time half that needs no
Docker: Debian's ``prometheus`` binary on a free loopback port, a worker and
``driftstream lag --watch`` on the embedded broker, and prediction events that make the
worker export PSI. The scrape jobs have the names of deploy/prometheus/prometheus.yml, and
the rule is ``DriftstreamFeatureDriftCritical`` of deploy/prometheus/rules/ with its
threshold lowered to 0 and no ``for``, so that it fires on the first windows within
seconds. Without the ``prometheus`` binary this test fails (it never skips).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
import yaml

from stream.kafka.tansu import free_port
from tests.integration.harness import WorkerProcess, make_env, produce

pytestmark = pytest.mark.broker

REPO = Path(__file__).resolve().parents[2]
SHIPPED_CONFIG = REPO / "deploy" / "prometheus" / "prometheus.yml"
SHIPPED_RULES = REPO / "deploy" / "prometheus" / "rules" / "driftstream.rules.yml"
WORKER_JOB = "driftstream-worker"
LAG_JOB = "driftstream-lag-monitor"
ALERT = "DriftstreamFeatureDriftCritical"
TIMEOUT = 60.0

#: Sample the lag every second (the default is 5 s), so the monitor exports at once.
FAST_LAG = {"DRIFTSTREAM_LAG__INTERVAL_SECONDS": "1", "DRIFTSTREAM_LAG__MIN_SPAN_SECONDS": "2"}

#: urllib without any HTTP proxy from the environment: everything here is on loopback.
_HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def prediction_events(n: int, seed: int = 7) -> list[bytes]:
    """Events of model fraud v1 in the style of test_drift_loop (two numeric features, a
    categorical one, a binary prediction with a score), with event times of the last
    seconds."""
    rng = np.random.default_rng(seed)
    x, y = rng.normal(0.0, 1.0, n), rng.normal(10.0, 2.0, n)
    c = rng.choice(["a", "b", "c"], n, p=[0.5, 0.3, 0.2])
    score = rng.beta(2, 5, n)
    return [orjson.dumps({
        "event_id": f"fraud-{i}", "model": "fraud", "model_version": "v1",
        "ts": time.time() - (n - i) * 0.01,
        "features": {"x": float(x[i]), "y": float(y[i]), "c": str(c[i])},
        "prediction": {"label": bool(score[i] > 0.5), "score": float(score[i])}})
        for i in range(n)]


def prometheus_binary() -> str:
    path = shutil.which("prometheus")
    if path is None:
        pytest.fail("the prometheus binary is not on PATH: install Debian's prometheus package "
                    "(sudo apt-get install -y prometheus, the package .ci/run installs for promtool)",
                    pytrace=False)
    return path


def adapted_rule() -> dict[str, Any]:
    """The shipped critical-drift alert, made to fire on any PSI at once."""
    groups = yaml.safe_load(SHIPPED_RULES.read_text())["groups"]
    (rule,) = [r for g in groups for r in g["rules"] if r.get("alert") == ALERT]
    assert "driftstream_psi > 0.25" in rule["expr"], rule["expr"]
    return {**rule, "expr": rule["expr"].replace("driftstream_psi > 0.25", "driftstream_psi > 0"),
            "for": "0s"}


def write_config(tmp_path: Path, worker: WorkerProcess, monitor: WorkerProcess) -> Path:
    shipped_jobs = {j["job_name"] for j in yaml.safe_load(SHIPPED_CONFIG.read_text())["scrape_configs"]}
    assert {WORKER_JOB, LAG_JOB} <= shipped_jobs, shipped_jobs
    rules = tmp_path / "driftstream.rules.yml"
    rules.write_text(yaml.safe_dump({"groups": [{"name": "driftstream-drift",
                                                 "rules": [adapted_rule()]}]}))
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(rules)],
        "scrape_configs": [
            {"job_name": WORKER_JOB, "metrics_path": "/metrics", "static_configs": [
                {"targets": [f"127.0.0.1:{worker.settings.app.web_port}"]}]},
            {"job_name": LAG_JOB, "metrics_path": "/metrics", "static_configs": [
                {"targets": [f"127.0.0.1:{monitor.settings.lag.monitor_port}"]}]},
        ],
    }
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    return path


class Prometheus:
    """Debian's prometheus on a free loopback port, its data and log in ``tmp_path``."""

    def __init__(self, config: Path, tmp_path: Path) -> None:
        self.port = free_port()
        self.log_path = tmp_path / "prometheus.log"
        with open(self.log_path, "ab") as log:  # the child keeps its own descriptor
            self.proc = subprocess.Popen(
                [prometheus_binary(), f"--config.file={config}",
                 f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                 f"--web.listen-address=127.0.0.1:{self.port}"],
                stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path)

    def api(self, path: str, **params: str) -> Any:
        url = f"http://127.0.0.1:{self.port}/api/v1/{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        with _HTTP.open(url, timeout=5) as resp:
            body = json.loads(resp.read())
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """The instant vector of ``expr`` (an empty list while Prometheus is starting)."""
        try:
            data = self.api("query", query=expr)
        except OSError:
            return []
        assert data["resultType"] == "vector", data
        return list(data["result"])

    def alerts(self) -> list[dict[str, Any]]:
        try:
            return list(self.api("alerts")["alerts"])
        except OSError:
            return []

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise AssertionError(f"prometheus exited with {self.proc.returncode}:\n{self.log_tail()}")

    def log_tail(self, n: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


async def wait_for(cond: Callable[[], Any], what: str, deadline: float,
                   prom: Prometheus, *procs: WorkerProcess) -> Any:
    """Poll ``cond`` every 0.5 s until it returns something truthy; fail at ``deadline``."""
    while True:
        result = cond()
        if result:
            return result
        prom.check_alive()
        for p in procs:
            p.check_alive()
        if time.monotonic() > deadline:
            logs = "\n".join(p.log_tail(20) for p in procs)
            raise AssertionError(f"{what}: not after {TIMEOUT:.0f} s\nprometheus:\n"
                                 f"{prom.log_tail()}\n{logs}")
        await asyncio.sleep(0.5)


async def test_prometheus_scrapes_the_worker_and_the_lag_monitor_and_alerts(
        broker: Any, unique: str, tmp_path: Path) -> None:
    prometheus_binary()  # fail before starting anything
    env = make_env(broker.bootstrap, unique, tmp_path / "data", **FAST_LAG)
    worker = WorkerProcess(env, tmp_path / "worker.log")
    monitor = WorkerProcess(env, tmp_path / "monitor.log", command=["lag", "--watch"])
    prom: Prometheus | None = None
    t0 = time.monotonic()
    try:
        worker.start()
        prom = Prometheus(write_config(tmp_path, worker, monitor), tmp_path)
        worker.wait_ready()
        # The monitor only after the worker has created the topics: its probe does not see
        # topics created after it started until aiokafka's periodic metadata refresh
        # (metadata_max_age_ms, 5 min). In the compose stack kafka-init creates them first.
        monitor.start()
        s = worker.settings
        # Warm-up (1000 events) builds the reference, then windows of 500: 4 windows of PSI.
        await produce(s.kafka.bootstrap_servers, s.topics.predictions,
                      prediction_events(3000), key=b"fraud")
        monitor.wait_ready()
        deadline = t0 + TIMEOUT

        psi = await wait_for(lambda: prom.query(f'driftstream_psi{{job="{WORKER_JOB}"}}'),
                             "driftstream_psi scraped from the worker", deadline,
                             prom, worker, monitor)
        assert {r["metric"]["model"] for r in psi} == {"fraud"}, psi
        assert {"x", "y", "c"} <= {r["metric"]["feature"] for r in psi}, psi
        lag_series = f'driftstream_consumer_lag_records{{job="{LAG_JOB}"}}'
        lag = await wait_for(lambda: prom.query(lag_series),
                             "driftstream_consumer_lag_records scraped from the lag monitor",
                             deadline, prom, worker, monitor)
        assert {r["metric"]["group"] for r in lag} >= {f"{s.app.id}-ingest"}, lag

        def both_up() -> bool:
            up = {r["metric"]["job"]: float(r["value"][1]) for r in prom.query("up")}
            return up == {WORKER_JOB: 1.0, LAG_JOB: 1.0}

        await wait_for(both_up, "both targets up", deadline, prom, worker, monitor)

        def firing() -> list[dict[str, Any]]:
            return [a for a in prom.alerts()
                    if a["labels"].get("alertname") == ALERT and a["state"] == "firing"]

        alerts = await wait_for(firing, f"{ALERT} firing", deadline, prom, worker, monitor)
        labels = alerts[0]["labels"]
        assert labels["severity"] == "page" and labels["job"] == WORKER_JOB, labels
        assert labels["model"] == "fraud" and labels["model_version"] == "v1", labels
        summary = alerts[0]["annotations"]["summary"]
        assert summary.startswith(f"Drift on fraud v1 {labels['feature']}: PSI "), summary
        # The same alert as the ALERTS series (what an Alertmanager-less setup would graph).
        series = f'ALERTS{{alertname="{ALERT}",alertstate="firing",model="fraud"}}'
        await wait_for(lambda: prom.query(series), "the ALERTS series", deadline,
                       prom, worker, monitor)
    finally:
        if prom is not None:
            prom.stop()
        for p in (monitor, worker):
            if p.proc is not None:
                p.stop()
