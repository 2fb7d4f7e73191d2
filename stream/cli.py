"""The ``driftstream`` command.

Subcommands: ``broker``, ``worker``, ``simulate``, ``reference``, ``promote``, ``alerts``,
``lag``, ``replay``, ``demo``. Every subcommand takes ``--config FILE`` (TOML; also
``DRIFTSTREAM_CONFIG``) and honours ``DRIFTSTREAM_<SECTION>__<KEY>`` environment overrides.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from stream.config import Settings, load_settings
from stream.errors import DriftstreamError

__all__ = ["format_alert", "main"]


def _settings(args: argparse.Namespace) -> Settings:
    settings = load_settings(args.config)
    if getattr(args, "bootstrap", None):
        settings = settings.with_overrides(kafka={"bootstrap_servers": args.bootstrap})
    return settings


def format_alert(alert: dict[str, Any]) -> str:
    """One readable line per alert event.

    >>> print(format_alert({"ts": 0, "status": "firing", "severity": "critical",
    ...     "kind": "feature_drift", "model": "fraud", "model_version": "v1",
    ...     "feature": "amount", "detector": "psi", "value": 0.31, "threshold": 0.25,
    ...     "message": "PSI of feature 'amount' is 0.310"}))
    1970-01-01T00:00:00Z FIRING   critical feature_drift  fraud v1 amount [psi 0.31 >= 0.25]
    PSI of feature 'amount' is 0.310
    >>> print(format_alert({"ts": 0, "status": "resolved", "severity": "warning",
    ...     "kind": "feature_drift", "model": "fraud", "model_version": None,
    ...     "slice": {"key": "region", "value": "eu"}, "feature": "amount",
    ...     "detector": "adwin", "value": None, "threshold": None, "message": "..."}))
    1970-01-01T00:00:00Z RESOLVED warning  feature_drift  fraud region=eu amount [adwin]
    ...
    """
    when = datetime.fromtimestamp(alert["ts"], UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    sl = alert.get("slice")
    where = " ".join(str(p) for p in (alert.get("model"), alert.get("model_version"),
                                       f"{sl['key']}={sl['value']}" if sl else None,
                                       alert.get("feature")) if p)
    value = alert.get("value")
    det = alert["detector"]
    if value is not None and alert.get("threshold") is not None:
        op = ">=" if value >= alert["threshold"] else "<"
        det += f" {value:.3g} {op} {alert['threshold']:.3g}" if alert["status"] == "firing" \
            else f" {value:.3g}"
    return (f"{when} {alert['status'].upper():8} {alert['severity']:8} {alert['kind']:14} "
            f"{where} [{det}]\n    {alert['message']}")


# -- subcommands ---------------------------------------------------------------------


def cmd_broker(args: argparse.Namespace) -> int:
    from stream.kafka.tansu import run_broker

    run_broker(args.host, args.port)
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from stream.kafka.worker import run_worker

    return run_worker(_settings(args))


def cmd_simulate(args: argparse.Namespace) -> int:
    from stream import simulate

    config = simulate.config_from_args(args)
    if args.out or args.reference_out:
        sim = simulate.Simulator(config)
        if args.reference_out:
            models = [args.model] if args.model else [m.name for m in config.models]
            events = [e for m in models for e in sim.reference_events(m, args.reference_events)]
            n = simulate.write_jsonl(args.reference_out, events)
            print(f"wrote {n} reference events to {args.reference_out}")
        if args.out:
            n_events = args.max_events or int(config.rate * (args.duration or 60))
            if config.labels:
                counts = simulate.simulate_to_file(config, args.out, max_events=n_events)
                print(f"wrote {counts['events']} events to {args.out} and {counts['labels']} "
                      f"labels beside it (.labels.jsonl)")
            else:
                n = simulate.write_jsonl(args.out, sim.batch(n_events))
                print(f"wrote {n} events to {args.out}")
        return 0
    settings = load_settings(args.config)
    t = settings.topics
    counts = asyncio.run(simulate.produce(
        args.bootstrap, config, duration_seconds=args.duration, max_events=args.max_events,
        predictions_topic=t.predictions, labels_topic=t.labels))
    print(orjson.dumps(counts).decode())
    return 0


def cmd_reference(args: argparse.Namespace) -> int:
    from stream.core.reference import reference_key
    from stream.files import read_csv_events, read_reference_events
    from stream.replay import build_profiles

    settings = _settings(args)
    path = Path(args.events)
    if path.suffix.lower() == ".csv":
        if not args.model:
            raise DriftstreamError("a CSV reference needs --model (and usually --model-version)")
        events = read_csv_events(path, model=args.model, model_version=args.model_version,
                                 columns=args.columns.split(",") if args.columns else None,
                                 prediction_column=args.prediction_column,
                                 ts_column=args.ts_column)
        bad = 0
    else:
        events, bad = read_reference_events(path)
        if args.model:
            events = [e for e in events if e["model"] == args.model]
        if args.model_version:
            events = [e for e in events if e["model_version"] == args.model_version]
    profiles = build_profiles(events, settings)
    if not profiles:
        raise DriftstreamError(f"{path}: no events to build a reference from (rejected: {bad})")
    if args.labels:
        from stream.core.events import normalize_label
        from stream.files import read_jsonl_lines
        from stream.replay import reference_quality

        labels = []
        for line_no, raw in read_jsonl_lines(args.labels):
            try:
                labels.append(normalize_label(orjson.loads(raw)))
            except (orjson.JSONDecodeError, DriftstreamError) as exc:
                raise DriftstreamError(f"{args.labels}:{line_no}: not a label event: {exc}") from None
        quality = reference_quality(events, labels, settings)
        for p in profiles:
            p.quality = quality.get((p.model, p.model_version))
    for p in profiles:
        q = f"; quality on {p.quality['pairs']} labelled events: {p.quality['metrics']}" \
            if p.quality else ""
        print(f"reference {p.model} {p.model_version or '-'}: {p.events} events, "
              f"{len(p.series)} series ({bad} lines rejected){q}")
    if args.out:
        Path(args.out).write_bytes(b"\n".join(orjson.dumps(p.snapshot()) for p in profiles) + b"\n")
        print(f"wrote {args.out}")
    if args.publish:
        async def publish() -> None:
            from aiokafka import AIOKafkaProducer

            from stream.kafka.topics import ensure_topics

            await ensure_topics(settings)
            from stream.kafka.security import client_kwargs

            producer = AIOKafkaProducer(bootstrap_servers=settings.kafka.bootstrap_servers,
                                        max_request_size=8 << 20,
                                        **client_kwargs(settings.kafka))
            await producer.start()
            try:
                for p in profiles:
                    await producer.send_and_wait(
                        settings.topics.references, orjson.dumps(p.snapshot()),
                        key=reference_key(p.model, p.model_version).encode())
            finally:
                await producer.stop()
        asyncio.run(publish())
        print(f"published {len(profiles)} profile(s) to {settings.topics.references}")
    return 0


def cmd_promote(args: argparse.Namespace) -> int:
    """Publish a re-baseline control record for a model version."""
    import time

    from stream.core.reference import reference_key
    from stream.kafka.security import client_kwargs

    settings = _settings(args)
    record = {"kind": "driftstream.control", "version": 1, "action": "rebaseline",
              "model": args.model, "model_version": args.model_version, "ts": time.time()}

    async def publish() -> None:
        from aiokafka import AIOKafkaProducer

        producer = AIOKafkaProducer(bootstrap_servers=settings.kafka.bootstrap_servers,
                                    **client_kwargs(settings.kafka))
        await producer.start()
        try:
            # Not keyed like a profile: compaction must never drop the profile for it.
            await producer.send_and_wait(
                settings.topics.references, orjson.dumps(record),
                key=f"control\x1f{reference_key(args.model, args.model_version)}".encode())
        finally:
            await producer.stop()

    asyncio.run(publish())
    print(f"re-baseline of {args.model} {args.model_version or '(unversioned)'} published to "
          f"{settings.topics.references}: its alerts resolve, and its next "
          f"{settings.monitor_for(args.model).warmup_events} events become its new reference")
    return 0


def cmd_alerts(args: argparse.Namespace) -> int:
    settings = _settings(args)

    async def tail() -> None:
        from aiokafka import AIOKafkaConsumer

        from stream.kafka.security import client_kwargs

        consumer = AIOKafkaConsumer(
            settings.topics.alerts, bootstrap_servers=settings.kafka.bootstrap_servers,
            group_id=None, auto_offset_reset="earliest" if args.from_beginning else "latest",
            **client_kwargs(settings.kafka))
        await consumer.start()
        try:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + args.duration if args.duration else None
            while deadline is None or loop.time() < deadline:
                batch = await consumer.getmany(timeout_ms=500)
                for msgs in batch.values():
                    for m in msgs:
                        alert = orjson.loads(m.value)
                        print(orjson.dumps(alert).decode() if args.json else format_alert(alert),
                              flush=True)
        finally:
            await consumer.stop()

    asyncio.run(tail())
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    from stream.core.reference import ReferenceProfile
    from stream.files import read_jsonl_lines, read_reference_events
    from stream.replay import build_profiles, replay_files, write_jsonl

    settings = _settings(args)
    refs: list[ReferenceProfile] = []
    for path in args.reference or []:
        first = next(read_jsonl_lines(path), (0, b"{}"))[1]
        if orjson.loads(first).get("kind") == "driftstream.reference":
            refs += [ReferenceProfile.restore(orjson.loads(line))
                     for _, line in read_jsonl_lines(path)]
        else:
            events, _ = read_reference_events(path)
            refs += build_profiles(events, settings)
    result = replay_files(args.events, settings, references=refs, kind=args.kind,
                          labels_path=args.labels)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_jsonl(out / "reports.jsonl", result.reports)
    write_jsonl(out / "alerts.jsonl", result.alerts)
    write_jsonl(out / "dead-letters.jsonl", result.dead_letters)
    if args.labels:
        write_jsonl(out / "quality-reports.jsonl", result.quality_reports)
    if result.shadow_reports:
        write_jsonl(out / "shadow-reports.jsonl", result.shadow_reports)
    for alert in result.alerts:
        print(format_alert(alert))
    summary: dict[str, Any] = {
        "events": result.events, "reports": len(result.reports), "alerts": len(result.alerts),
        "dead_letters": len(result.dead_letters), "rejected_by_cap": result.rejected_by_cap,
        "out": str(out)}
    if result.shadow_reports:
        summary["shadow_reports"] = len(result.shadow_reports)
    if args.labels:
        summary |= {"labels": result.labels, "quality_reports": len(result.quality_reports),
                    "label_join": result.label_join}
    print(orjson.dumps(summary).decode())
    return 0


def cmd_lag(args: argparse.Namespace) -> int:
    from stream.core.lag import PartitionStatus
    from stream.kafka.lag import run_monitor

    settings = _settings(args)
    if args.port is not None:
        settings = settings.with_overrides(lag={"monitor_port": args.port})
    readings = asyncio.run(run_monitor(
        settings, watch=args.watch, duration=args.duration,
        publish_alerts=not args.no_alerts, serve_metrics=args.watch))
    down = {PartitionStatus.STALLED, PartitionStatus.STOPPED}
    # One sample cannot show a stall; a backlog that no member is consuming is bad enough.
    orphaned = {PartitionStatus.OK, PartitionStatus.FALLING_BEHIND}
    return 1 if any(r.status in down or (r.status in orphaned and r.consumer_alive is False)
                    for r in readings.values()) else 0


def cmd_demo(args: argparse.Namespace) -> int:
    from stream.demo import run_demo

    return run_demo(args)


# -- parser --------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="driftstream",
        description="Streaming drift detection for ML systems: PSI and ADWIN over Kafka.")
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name: str, func: Any, help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        p.add_argument("--config", help="TOML settings file (default: $DRIFTSTREAM_CONFIG)")
        p.set_defaults(func=func)
        return p

    p = add("broker", cmd_broker, "Run the embedded Kafka-compatible broker (Tansu) on loopback.")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=9092)

    p = add("worker", cmd_worker, "Run a driftstream worker (Faust).")
    p.add_argument("--bootstrap", help="override kafka.bootstrap_servers")

    p = add("simulate", cmd_simulate,
            "Produce realistic multi-model traffic with injected drift (or write it to files).")
    from stream import simulate

    simulate.add_arguments(p)

    p = add("reference", cmd_reference,
            "Build reference profiles from a JSON Lines or CSV file, and publish them.")
    p.add_argument("events", help="events file: .jsonl in the topic schema, or .csv")
    p.add_argument("--model", help="only this model (required for CSV)")
    p.add_argument("--model-version")
    p.add_argument("--columns", help="CSV: comma-separated feature columns (default: all)")
    p.add_argument("--prediction-column", help="CSV: column holding the prediction")
    p.add_argument("--ts-column", help="CSV: column holding event time (epoch seconds)")
    p.add_argument("--labels", help="label events (.jsonl) of the reference events: the "
                                    "profile then carries the reference quality")
    p.add_argument("--out", help="write the profiles as JSON Lines to this file")
    p.add_argument("--publish", action="store_true", help="publish to the references topic")
    p.add_argument("--bootstrap", help="override kafka.bootstrap_servers")

    p = add("promote", cmd_promote,
            "Re-baseline a model version: drop its reference and warm up a new one from its "
            "next events (e.g. after an intended change); its firing alerts resolve.")
    p.add_argument("--model", required=True)
    p.add_argument("--model-version", help="the version (omit for an unversioned model)")
    p.add_argument("--bootstrap", help="override kafka.bootstrap_servers")

    p = add("alerts", cmd_alerts, "Print alerts from the alert topic as they arrive.")
    p.add_argument("--from-beginning", action="store_true")
    p.add_argument("--json", action="store_true", help="print raw JSON")
    p.add_argument("--duration", type=float, help="stop after this many seconds")
    p.add_argument("--bootstrap", help="override kafka.bootstrap_servers")

    p = add("lag", cmd_lag,
            "Consumer lag of driftstream's groups, from outside the workers: lag in records "
            "and seconds, time to drain and a status per partition. Exits 1 when a partition "
            "is STALLED or STOPPED, or has a backlog while its group has no member.")
    p.add_argument("--watch", action="store_true",
                   help="sample every lag.interval_seconds, serve /metrics, publish backlog alerts")
    p.add_argument("--duration", type=float, help="with --watch: stop after this many seconds")
    p.add_argument("--no-alerts", action="store_true", help="with --watch: do not publish alerts")
    p.add_argument("--port", type=int, help="override lag.monitor_port")
    p.add_argument("--bootstrap", help="override kafka.bootstrap_servers")

    p = add("replay", cmd_replay,
            "Run the live path's core over files: the same reports and alerts, offline.")
    p.add_argument("events", help="JSON Lines file of messages (events or arrays of events)")
    p.add_argument("--reference", action="append",
                   help="reference: events (.jsonl) or profiles from `reference --out`; "
                        "repeatable. Without one, each version warms up on its first events.")
    p.add_argument("--kind", choices=["prediction", "feature"], default="prediction")
    p.add_argument("--labels", help="JSON Lines file of label events: joined to the predictions "
                                    "by event time; writes quality-reports.jsonl")
    p.add_argument("--out", default="replay-out", help="output directory")

    p = add("demo", cmd_demo,
            "Quick start: embedded broker, a worker, simulated traffic with drift, live alerts.")
    p.add_argument("--duration", type=float, default=None,
                   help="stop after this many seconds (default: until Ctrl-C)")
    p.add_argument("--port", type=int, default=None, help="broker port (default: a free one)")
    p.add_argument("--rate", type=float, default=400.0, help="simulated events per second")
    p.add_argument("--drift-at", type=float, default=25.0,
                   help="seconds after start when drift is injected")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except DriftstreamError as exc:
        print(f"driftstream {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"driftstream {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    os._exit(main())
