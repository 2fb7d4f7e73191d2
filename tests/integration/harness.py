"""Helpers for tests that run real workers against the embedded broker.

Workers run as subprocesses (``python -m stream worker``), configured only through
``DRIFTSTREAM_*`` environment variables, so that tests can stop, kill and restart them.
Every test gets its own app id and topic names, so tests never see each other's data.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from stream.config import Settings, load_settings
from stream.kafka.tansu import free_port

REPO = Path(__file__).resolve().parents[2]


def make_env(bootstrap: str, unique: str, data_dir: Path, **overrides: Any) -> dict[str, str]:
    """``DRIFTSTREAM_*`` variables for a test worker: fast group joins on the embedded
    broker, a fresh app id and topics, small windows."""
    env = {
        "DRIFTSTREAM_KAFKA__BOOTSTRAP_SERVERS": bootstrap,
        "DRIFTSTREAM_KAFKA__SESSION_TIMEOUT_SECONDS": "3",
        "DRIFTSTREAM_KAFKA__HEARTBEAT_INTERVAL_SECONDS": "0.5",
        "DRIFTSTREAM_KAFKA__REBALANCE_TIMEOUT_SECONDS": "3",
        "DRIFTSTREAM_KAFKA__EMBEDDED_BROKER_COMPAT": "true",
        "DRIFTSTREAM_APP__ID": f"t-{unique}",
        "DRIFTSTREAM_APP__WEB_PORT": str(free_port()),
        "DRIFTSTREAM_APP__DATA_DIR": str(data_dir),
        "DRIFTSTREAM_APP__COMMIT_INTERVAL_SECONDS": "0.5",
        "DRIFTSTREAM_APP__STATE_FLUSH_SECONDS": "0.2",
        "DRIFTSTREAM_APP__LOG_LEVEL": "warning",
        "DRIFTSTREAM_MONITOR__WINDOW_SIZE": "500",
        "DRIFTSTREAM_MONITOR__WARMUP_EVENTS": "1000",
        "DRIFTSTREAM_MONITOR__MIN_WINDOW_VALUES": "100",
        "DRIFTSTREAM_LAG__MONITOR_PORT": str(free_port()),
    }
    for topic in ("predictions", "features", "labels", "alerts", "reports", "references",
                  "dead_letter", "by_model"):
        env[f"DRIFTSTREAM_TOPICS__{topic.upper()}"] = f"{topic.replace('_', '-')}-{unique}"
    env.update({k: str(v) for k, v in overrides.items()})
    return env


def alive(pid: int) -> bool:
    """Whether process ``pid`` runs: a zombie (exited, not yet reaped) does not."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def settings_from(env: dict[str, str]) -> Settings:
    return load_settings(env=env)


class WorkerProcess:
    """A ``driftstream worker`` subprocess (or another ``driftstream`` subcommand that
    serves ``/metrics``: ``command=["lag", "--watch"]``)."""

    def __init__(self, env: dict[str, str], log_path: Path,
                 command: list[str] | None = None) -> None:
        self.env = env
        self.log_path = log_path
        self.command = command or ["worker"]
        self.proc: subprocess.Popen[bytes] | None = None
        self.settings = settings_from(env)

    def start(self) -> WorkerProcess:
        full = {**os.environ, **self.env, "PYTHONUNBUFFERED": "1"}
        log = open(self.log_path, "ab")  # noqa: SIM115 - closed with the process
        self.proc = subprocess.Popen([sys.executable, "-m", "stream", *self.command], env=full,
                                     stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
        return self

    @property
    def metrics_url(self) -> str:
        if self.command[0] == "lag":
            return f"http://127.0.0.1:{self.settings.lag.monitor_port}/metrics"
        return f"http://127.0.0.1:{self.settings.app.web_port}/metrics"

    def metrics(self) -> dict[str, float]:
        """The worker's /metrics as {sample line without value: value}."""
        with urllib.request.urlopen(self.metrics_url, timeout=2) as resp:
            text = resp.read().decode()
        out = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                out[name] = float(value)
        return out

    def metric(self, name: str, default: float = 0.0) -> float:
        try:
            return self.metrics().get(name, default)
        except OSError:
            return default

    def wait_ready(self, timeout: float = 40.0) -> None:
        """Until the worker's ``/metrics`` answers. The consumer groups may still be joining:
        tests produce first and read with ``auto_offset_reset=earliest``, so a late join
        delays them but loses nothing."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                m = self.metrics()
                if "driftstream_monitored_models" in m or self.command[0] != "worker":
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"worker not ready after {timeout}s; log:\n{self.log_tail()}")

    def check_alive(self) -> None:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(
                f"worker exited with {self.proc.returncode}; log:\n{self.log_tail()}")

    def log_tail(self, n: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode


async def produce(bootstrap: str, topic: str, values: Iterable[bytes], key: bytes | None = None,
                  partition: int | None = None) -> int:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5,
                                max_request_size=8 << 20)
    await producer.start()
    n = 0
    try:
        for v in values:
            await producer.send(topic, v, key=key, partition=partition)
            n += 1
        await producer.flush()
    finally:
        await producer.stop()
    return n


async def consume_until(
    bootstrap: str,
    topic: str,
    done: Callable[[list[dict[str, Any]]], bool],
    timeout: float,
    worker: WorkerProcess | None = None,
) -> list[dict[str, Any]]:
    """Read ``topic`` from the beginning until ``done(records)``; fail after ``timeout``."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None,
                                auto_offset_reset="earliest")
    await consumer.start()
    out: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    try:
        while not done(out):
            if time.monotonic() > deadline:
                tail = worker.log_tail() if worker else ""
                raise AssertionError(
                    f"{topic}: condition not met after {timeout}s with {len(out)} records; "
                    f"last: {out[-3:]}\n{tail}")
            if worker is not None:
                worker.check_alive()
            batch = await consumer.getmany(timeout_ms=300)
            for msgs in batch.values():
                out += [orjson.loads(m.value) for m in msgs]
        return out
    finally:
        await consumer.stop()


async def read_all(bootstrap: str, topic: str, idle: float = 1.5,
                   timeout: float = 30.0) -> list[dict[str, Any]]:
    """Everything on ``topic`` once nothing new has arrived for ``idle`` seconds."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None,
                                auto_offset_reset="earliest")
    await consumer.start()
    out: list[dict[str, Any]] = []
    start = last = time.monotonic()
    try:
        while time.monotonic() - last < idle and time.monotonic() - start < timeout:
            batch = await consumer.getmany(timeout_ms=200)
            for msgs in batch.values():
                out += [orjson.loads(m.value) for m in msgs]
                last = time.monotonic()
        return out
    finally:
        await consumer.stop()
