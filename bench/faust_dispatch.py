"""What Faust's per-message dispatch costs: a bare agent against the raw consumer.

Same events, same topic, same broker, one run:

- ``raw``: aiokafka ``getmany`` + ``orjson.loads`` per message;
- ``faust_agent``: a Faust app whose only agent decodes each message (``orjson``) and
  counts it (``async for value in stream``), run in a subprocess with the embedded
  broker's fast-join settings. Timed from its first event to its last.

This is the number the ingest design rests on (``stream/kafka/ingest.py``). Prints one
JSON object.

    python bench/faust_dispatch.py            # 40k events
    python bench/faust_dispatch.py --smoke
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import orjson

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(REPO))

from throughput import make_events, prepare, raw_consume  # noqa: E402

from stream.kafka.tansu import EmbeddedBroker, apply_tansu_compat  # noqa: E402

AGENT = textwrap.dedent('''
    import json, os, sys, time
    import faust, orjson
    from stream.kafka.tansu import apply_tansu_compat
    apply_tansu_compat()
    bootstrap, topic = os.environ["BENCH_BOOTSTRAP"], os.environ["BENCH_TOPIC"]
    total, datadir = int(os.environ["BENCH_TOTAL"]), os.environ["BENCH_DATADIR"]
    app = faust.App(f"dispatch-{os.getpid()}", broker=f"kafka://{bootstrap}", store="memory://",
                    broker_session_timeout=3, broker_heartbeat_interval=0.5,
                    broker_rebalance_timeout=3, consumer_auto_offset_reset="earliest",
                    web_enabled=False, datadir=datadir, topic_partitions=4)
    source = app.topic(topic, value_serializer="raw")
    state = {"n": 0, "t0": None}

    @app.agent(source)
    async def count(stream):
        async for value in stream:
            orjson.loads(value)
            if state["t0"] is None:
                state["t0"] = time.perf_counter()
            state["n"] += 1
            if state["n"] >= total:
                elapsed = time.perf_counter() - state["t0"]
                print(json.dumps({"events": total, "seconds": elapsed,
                                  "events_per_second": (total - 1) / elapsed}), flush=True)
                os._exit(0)

    app.main()
''')


def run_agent(bootstrap: str, topic: str, total: int, timeout: float) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "agent.py"
        script.write_text(AGENT)
        env = {**os.environ, "BENCH_BOOTSTRAP": bootstrap, "BENCH_TOPIC": topic,
               "BENCH_TOTAL": str(total), "BENCH_DATADIR": tmp}
        out = subprocess.run(
            [sys.executable, str(script), "worker", "--without-web", "-l", "warn"],
            capture_output=True, text=True, timeout=timeout, cwd=REPO, env=env)
    for line in (out.stdout + out.stderr).splitlines():  # Faust may route print to its log
        if '{"events"' in line:
            return json.loads(line[line.index('{"events"'):])  # type: ignore[no-any-return]
    raise RuntimeError(f"the Faust agent did not finish: {out.stderr[-2000:]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=40_000)
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    n = 2000 if args.smoke else args.events
    apply_tansu_compat()
    events = make_events(n, 5)
    with EmbeddedBroker() as broker:
        topic = f"dispatch-{os.getpid()}"
        messages = asyncio.run(prepare(broker.bootstrap, topic, events, 1))
        raw = asyncio.run(raw_consume(broker.bootstrap, topic, messages))
        agent = run_agent(broker.bootstrap, topic, n, timeout=120 if args.smoke else 600)
    print(orjson.dumps({
        "benchmark": "faust_dispatch",
        "events": n,
        "raw": raw,
        "faust_agent": agent,
        "ratio": agent["events_per_second"] / raw["events_per_second"],
        "faust_seconds_per_message": 1.0 / agent["events_per_second"],
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
    }, option=orjson.OPT_INDENT_2).decode())


if __name__ == "__main__":
    main()
