"""The quick start's main job: ``driftstream demo`` prints drift alerts, and a SIGTERM
stops it with its broker and its worker (as Ctrl-C does)."""

from __future__ import annotations

import contextlib
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.integration.harness import REPO, alive

pytestmark = pytest.mark.broker


def _brokers_on(port: int) -> list[int]:
    """Pids of Tansu processes listening on ``port`` (from their command lines)."""
    pids = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        if any(b"tansu" in a for a in args[:1]) and any(f":{port}".encode() in a for a in args):
            pids.append(int(cmdline.parent.name))
    return [p for p in pids if alive(p)]


def test_demo_prints_drift_alerts_and_sigterm_stops_its_broker_and_worker() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DRIFTSTREAM_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "stream", "demo", "--drift-at", "3"], cwd=REPO, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: queue.Queue[str] = queue.Queue()
    assert proc.stdout is not None
    reader = threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout],  # type: ignore[union-attr]
                              daemon=True)
    reader.start()
    seen: list[str] = []
    try:
        deadline = time.monotonic() + 150
        while not any("FIRING" in line and "feature_drift" in line for line in seen):
            assert proc.poll() is None, "".join(seen)
            assert time.monotonic() < deadline, "no drift alert in 150 s:\n" + "".join(seen)
            with contextlib.suppress(queue.Empty):
                seen.append(lines.get(timeout=1))
        text = "".join(seen)
        port = int(re.search(r"broker \(Tansu\) on [\d.]+:(\d+)", text).group(1))  # type: ignore[union-attr]
        worker = int(re.search(r"worker pid (\d+)", text).group(1))  # type: ignore[union-attr]
        brokers = _brokers_on(port)
        assert brokers and alive(worker), (brokers, text)

        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    reader.join(timeout=5)
    while not lines.empty():
        seen.append(lines.get())
    text = "".join(seen)
    assert code == 0, text
    assert "driftstream demo: stopped" in text, text
    assert "Traceback" not in text and "Task was destroyed" not in text, text
    assert not alive(worker), text
    assert _brokers_on(port) == [], f"broker left running on port {port}"
