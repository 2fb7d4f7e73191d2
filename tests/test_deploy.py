"""The operations kit (Dockerfile, docker-compose.yml, deploy/) agrees with the code.

None of it can run here (no Docker engine), so it is checked statically against what the
code defines: every ``DRIFTSTREAM_*`` variable is a real setting, the topics kafka-init
creates are the worker's layout, Prometheus scrapes the ports the services listen on,
every metric a rule or a panel uses is exported by the worker, every mounted or copied
file exists, and promtool checks the configuration and runs the rules' unit tests.
promtool comes from Debian's ``prometheus`` package (``.ci/run`` installs it); without it
these tests fail, they never skip.
"""

from __future__ import annotations

import asyncio
import dataclasses
import fnmatch
import functools
import itertools
import json
import posixpath
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
import yaml

from stream.cli import build_parser
from stream.config import Settings, load_settings
from stream.kafka.topics import ensure_topics
from stream.metrics import Metrics

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
COMPOSE = REPO / "docker-compose.yml"
DOCKERFILE = REPO / "Dockerfile"
PROMETHEUS = DEPLOY / "prometheus" / "prometheus.yml"
RULES = DEPLOY / "prometheus" / "rules" / "driftstream.rules.yml"
RULE_TESTS = DEPLOY / "prometheus" / "tests" / "driftstream.rules.test.yml"
DATASOURCES = DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml"
PROVIDERS = DEPLOY / "grafana" / "provisioning" / "dashboards" / "driftstream.yml"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "driftstream.json"

SERVICES = {"kafka", "kafka-init", "worker", "lag-monitor", "simulator", "prometheus", "grafana"}
SEVERITIES = {"page", "ticket", "warning"}


# -- loading -------------------------------------------------------------------------


def _yaml(path: Path) -> Any:
    with path.open() as f:
        return yaml.safe_load(f)


@functools.cache
def compose() -> dict[str, Any]:
    data = _yaml(COMPOSE)
    assert isinstance(data, dict) and isinstance(data.get("services"), dict), \
        f"{COMPOSE.name} has no services mapping"
    return data


def service(name: str) -> dict[str, Any]:
    services = compose()["services"]
    assert name in services, f"{COMPOSE.name} has no service {name!r}"
    return services[name]


def environment(svc: dict[str, Any]) -> dict[str, str]:
    """A service's environment as a dict (compose accepts a mapping or KEY=VALUE items)."""
    env = svc.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def dockerfile_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for word, rest in dockerfile_instructions():
        if word == "ENV":
            for item in shlex.split(rest):
                key, sep, value = item.partition("=")
                assert sep, f"Dockerfile: use ENV KEY=VALUE, got {rest!r}"
                env[key] = value
    return env


def service_env(name: str) -> dict[str, str]:
    """What a container of the driftstream image sees: the image's ENV, then compose's."""
    svc = service(name)
    base = dockerfile_env() if _builds_driftstream(svc) else {}
    return {**base, **environment(svc)}


def _builds_driftstream(svc: dict[str, Any]) -> bool:
    return "build" in svc


def settings_of(name: str) -> Settings:
    env = {k: v for k, v in service_env(name).items() if k.startswith("DRIFTSTREAM_")}
    return load_settings(env=env)


def command(name: str) -> list[str]:
    cmd = service(name).get("command")
    assert cmd is not None, f"service {name!r} has no command"
    return shlex.split(cmd) if isinstance(cmd, str) else [str(c) for c in cmd]


def bind_mounts(name: str) -> dict[str, Path]:
    """Container path -> host path of a service's bind mounts (named volumes left out)."""
    out = {}
    for vol in service(name).get("volumes") or []:
        if isinstance(vol, dict):
            if vol.get("type") != "bind":
                continue
            source, target = vol["source"], vol["target"]
        else:
            source, target, *_ = vol.split(":")
            if not source.startswith((".", "/")):
                continue  # a named volume
        out[target] = (COMPOSE.parent / source).resolve()
    return out


def host_path(name: str, container_path: str) -> Path:
    """Where a path inside a service's container comes from on the host (a bind mount)."""
    for target, source in sorted(bind_mounts(name).items(), key=lambda kv: -len(kv[0])):
        if container_path == target or container_path.startswith(target.rstrip("/") + "/"):
            return source / posixpath.relpath(container_path, target)
    raise AssertionError(f"{container_path} in service {name!r} is not under any bind mount: "
                         f"{sorted(bind_mounts(name))}")


def setting_fields() -> dict[str, set[str]]:
    """Section -> field names, from the dataclasses of stream.config.Settings."""
    defaults = Settings()
    return {
        section.name: {f.name for f in dataclasses.fields(getattr(defaults, section.name))}
        for section in dataclasses.fields(Settings) if section.name != "models"
    }


# -- compose: services, settings, commands -------------------------------------------


def test_compose_has_every_service_and_says_it_is_unverified_at_run_time() -> None:
    assert set(compose()["services"]) >= SERVICES, \
        f"missing services: {sorted(SERVICES - set(compose()['services']))}"
    header = []
    for line in COMPOSE.read_text().splitlines():
        if not line.startswith("#"):
            break
        header.append(line.lstrip("# "))
    text = " ".join(header).lower()
    assert "validated statically" in text and "unverified at run time" in text, \
        "the top-of-file comment of docker-compose.yml must say it is validated statically " \
        "and unverified at run time"


def test_kafka_is_apache_kafka_in_kraft_mode() -> None:
    kafka = service("kafka")
    assert kafka["image"] == "apache/kafka:3.9.0"
    env = environment(kafka)
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    node_id = env["KAFKA_NODE_ID"]
    voters = env["KAFKA_CONTROLLER_QUORUM_VOTERS"]
    assert voters.startswith(f"{node_id}@kafka:"), voters
    controller_port = voters.rsplit(":", 1)[1]
    listeners = env["KAFKA_LISTENERS"].split(",")
    assert f"CONTROLLER://:{controller_port}" in listeners, listeners
    assert "PLAINTEXT://kafka:9092" in env["KAFKA_ADVERTISED_LISTENERS"].split(",")
    assert env["KAFKA_CONTROLLER_LISTENER_NAMES"] == "CONTROLLER"
    for name in {ln.split("://")[0] for ln in listeners}:
        assert f"{name}:" in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"], name
    assert service("kafka-init")["image"] == kafka["image"]


def test_every_driftstream_variable_is_a_real_setting() -> None:
    fields = setting_fields()
    checked = 0
    sources = {f"service {n}": service_env(n) for n in compose()["services"]}
    sources["Dockerfile ENV"] = dockerfile_env()
    for where, env in sources.items():
        ours = {k: v for k, v in env.items() if k.startswith("DRIFTSTREAM_")}
        for key in ours:
            m = re.fullmatch(r"DRIFTSTREAM_([A-Z0-9_]+?)__([A-Z0-9_]+)", key)
            assert m, f"{where}: {key} is not DRIFTSTREAM_<SECTION>__<KEY>"
            section, name = m.group(1).lower(), m.group(2).lower()
            assert section in fields, f"{where}: {key}: no settings section {section!r}"
            assert name in fields[section], \
                f"{where}: {key}: no setting {section}.{name}; known: {sorted(fields[section])}"
            checked += 1
        settings = load_settings(env=ours)  # raises ConfigError on a bad section or value
        for key, raw in ours.items():
            section, name = key[len("DRIFTSTREAM_"):].lower().split("__", 1)
            value = getattr(getattr(settings, section), name)
            assert str(value) == raw, f"{where}: {key}={raw!r} loaded as {value!r}"
    assert checked >= 6, f"only {checked} DRIFTSTREAM_* variables found"


def test_services_run_real_commands_against_the_compose_broker() -> None:
    parser = build_parser()
    bootstrap = settings_of("worker").kafka.bootstrap_servers
    assert bootstrap == "kafka:9092"
    for name in ("worker", "lag-monitor", "simulator"):
        assert _builds_driftstream(service(name)), f"{name} must build the driftstream image"
        assert settings_of(name).kafka.bootstrap_servers == bootstrap, name
    assert command("worker") == ["worker"]
    lag = parser.parse_args(command("lag-monitor"))
    assert lag.command == "lag" and lag.watch
    sim = parser.parse_args(command("simulator"))
    assert sim.command == "simulate" and sim.bootstrap == bootstrap
    assert sim.drift and sim.labels, "the simulator should inject drift and send labels"
    assert not sim.out and not sim.reference_out, "the simulator must write to Kafka"
    from stream import simulate

    simulate.config_from_args(sim)  # the drift specs name real models and features
    init = " ".join(command("kafka-init"))
    assert "--bootstrap-server kafka:9092" in init


def test_startup_order() -> None:
    def condition(name: str, on: str) -> str:
        deps = service(name).get("depends_on") or {}
        assert on in deps, f"{name} must depend on {on}"
        return deps[on]["condition"] if isinstance(deps, dict) else "service_started"

    assert condition("kafka-init", "kafka") == "service_healthy"
    assert condition("worker", "kafka-init") == "service_completed_successfully"
    assert condition("lag-monitor", "kafka-init") == "service_completed_successfully"
    assert "healthcheck" in service("kafka")
    # The worker inherits the image's HEALTHCHECK; the other roles of the image must not.
    assert "healthcheck" not in service("worker")
    assert service("simulator")["healthcheck"] == {"disable": True}
    assert "6067" in " ".join(service("lag-monitor")["healthcheck"]["test"])


# -- ports and scrape targets --------------------------------------------------------


def scrape_targets() -> dict[str, set[tuple[str, int]]]:
    """job -> (host, port) of every static or DNS target in prometheus.yml."""
    out: dict[str, set[tuple[str, int]]] = {}
    for job in _yaml(PROMETHEUS)["scrape_configs"]:
        targets = out.setdefault(job["job_name"], set())
        for sc in job.get("static_configs", []):
            for t in sc["targets"]:
                host, port = t.rsplit(":", 1)
                targets.add((host, int(port)))
        for dns in job.get("dns_sd_configs", []):
            assert dns.get("type", "SRV") == "A", "A records need a port; SRV is not used here"
            targets.update((n, int(dns["port"])) for n in dns["names"])
    return out


def test_prometheus_scrapes_the_ports_the_services_listen_on() -> None:
    targets = scrape_targets()
    worker, lag = settings_of("worker"), settings_of("lag-monitor")
    assert worker.app.web_host == "0.0.0.0", "the worker must listen beyond loopback"
    assert lag.lag.monitor_host == "0.0.0.0", "the lag monitor must listen beyond loopback"
    assert targets["driftstream-worker"] == {("worker", worker.app.web_port)}
    assert targets["driftstream-lag-monitor"] == {("lag-monitor", lag.lag.monitor_port)}
    for job, hosts in targets.items():
        for host, _ in hosts:
            assert host in compose()["services"] or host == "localhost", \
                f"job {job}: {host} is not a compose service"
    assert str(worker.app.web_port) in [str(p) for p in service("worker").get("expose", [])]
    assert str(lag.lag.monitor_port) in [str(p) for p in service("lag-monitor").get("expose", [])]
    # The image's healthcheck and EXPOSE name the worker's port.
    instr = dockerfile_instructions()
    health = " ".join(rest for word, rest in instr if word == "HEALTHCHECK")
    assert f"http://127.0.0.1:{worker.app.web_port}/metrics" in health
    assert "urllib" in health
    assert str(worker.app.web_port) in [rest for word, rest in instr if word == "EXPOSE"]
    # Every job the rules name is scraped.
    for rule in rules():
        for job in re.findall(r'job="([^"]+)"', rule["expr"]):
            assert job in targets, f"rule {rule_name(rule)} names job {job!r}, not scraped"
    assert PROMETHEUS.parent.joinpath("prometheus.yml") == PROMETHEUS
    assert _yaml(PROMETHEUS)["global"]["evaluation_interval"] == "15s"


def test_grafana_reaches_prometheus() -> None:
    (ds,) = _yaml(DATASOURCES)["datasources"]
    assert ds["type"] == "prometheus"
    host_port = ds["url"].removeprefix("http://").rstrip("/")
    assert host_port == "prometheus:9090"
    assert "9090:9090" in [str(p) for p in service("prometheus")["ports"]]


# -- files the Dockerfile copies and compose mounts ----------------------------------


def test_dockerfile_builds_the_package_as_a_non_root_user() -> None:
    instr = dockerfile_instructions()
    assert ("FROM", "python:3.11-slim") in instr
    ignored = [p.strip().rstrip("/") for p in (REPO / ".dockerignore").read_text().splitlines()
               if p.strip() and not p.startswith("#")]
    copied = []
    for word, rest in instr:
        if word == "COPY":
            args = [a for a in shlex.split(rest) if not a.startswith("--")]
            assert not rest.startswith("--from"), "no multi-stage COPY expected"
            copied += args[:-1]
    assert {c.rstrip("/") for c in copied} >= {"pyproject.toml", "README.md", "stream", "schemas"}
    for src in copied:
        path = REPO / src
        assert path.exists(), f"Dockerfile copies {src}, which does not exist"
        top = src.rstrip("/").split("/")[0]
        hits = [p for p in ignored if fnmatch.fnmatch(top, p)]
        assert not hits, f".dockerignore excludes {src} ({hits}), which the Dockerfile copies"
    assert any(word == "RUN" and re.search(r"pip install \.(\s|$)", rest) for word, rest in instr)
    users = [rest for word, rest in instr if word == "USER"]
    assert users and users[-1] not in {"root", "0"}, "the image must run as a non-root user"
    assert ("ENTRYPOINT", '["driftstream"]') in instr
    assert ("CMD", '["worker"]') in instr


def test_compose_build_context_and_mounts_exist() -> None:
    built = 0
    for name, svc in compose()["services"].items():
        if "build" in svc:
            build = svc["build"]
            context = build if isinstance(build, str) else build.get("context", ".")
            dockerfile = "Dockerfile" if isinstance(build, str) else build.get("dockerfile",
                                                                               "Dockerfile")
            assert (COMPOSE.parent / context / dockerfile).is_file(), \
                f"{name}: no {dockerfile} in build context {context}"
            built += 1
        for target, source in bind_mounts(name).items():
            assert source.exists(), f"{name}: mounts {source} (at {target}), which does not exist"
            assert REPO in source.parents, f"{name}: mounts {source}, outside the repository"
        named = [v.split(":")[0] for v in svc.get("volumes") or []
                 if isinstance(v, str) and not v.startswith((".", "/"))]
        for vol in named:
            assert vol in (compose().get("volumes") or {}), f"{name}: volume {vol} not declared"
    assert built >= 1


def test_prometheus_container_finds_its_config_and_rules() -> None:
    args = command("prometheus")
    config = next(a.split("=", 1)[1] for a in args if a.startswith("--config.file="))
    assert host_path("prometheus", config) == PROMETHEUS.resolve()
    patterns = _yaml(PROMETHEUS)["rule_files"]
    found: set[Path] = set()
    for pattern in patterns:
        # Relative rule_files resolve against the config file's directory, in the
        # container as in the repository (where promtool checks them).
        in_container = posixpath.join(posixpath.dirname(config), pattern)
        host_glob = host_path("prometheus", in_container)
        found |= set(host_glob.parent.glob(host_glob.name))
        found |= set(PROMETHEUS.parent.glob(pattern))
    assert RULES.resolve() in {p.resolve() for p in found}, f"{patterns} do not load {RULES}"
    assert RULE_TESTS.resolve() not in {p.resolve() for p in found}, "tests loaded as rules"


def test_grafana_container_finds_its_provisioning_and_dashboard() -> None:
    mounts = bind_mounts("grafana")
    prov = "/etc/grafana/provisioning"
    assert host_path("grafana", f"{prov}/datasources/prometheus.yml") == DATASOURCES.resolve()
    assert host_path("grafana", f"{prov}/dashboards/driftstream.yml") == PROVIDERS.resolve()
    (provider,) = _yaml(PROVIDERS)["providers"]
    assert provider["type"] == "file"
    path = provider["options"]["path"]
    assert host_path("grafana", f"{path}/driftstream.json") == DASHBOARD.resolve()
    home = environment(service("grafana")).get("GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH")
    if home:
        assert host_path("grafana", home).is_file()
    assert len(mounts) >= 3
    env = environment(service("grafana"))
    assert env.get("GF_AUTH_ANONYMOUS_ENABLED") == "true"
    assert env.get("GF_AUTH_ANONYMOUS_ORG_ROLE") == "Viewer"


# -- topics --------------------------------------------------------------------------


def kafka_init_topics() -> dict[str, tuple[int, dict[str, str]]]:
    """topic -> (partitions, configs) from kafka-init's script."""
    script = "\n".join(command("kafka-init"))
    assert re.search(r"kafka-topics\.sh\b[^\n]*--create\b[^\n]*--if-not-exists", script), \
        "kafka-init must use kafka-topics.sh --create --if-not-exists"
    out: dict[str, tuple[int, dict[str, str]]] = {}
    for line in script.splitlines():
        words = shlex.split(line)
        if "--topic" not in words or "--create" in words:
            continue
        args: dict[str, list[str]] = {}
        for flag, value in itertools.pairwise(words):
            if flag.startswith("--"):
                args.setdefault(flag, []).append(value)
        (topic,) = args["--topic"]
        assert topic not in out, f"kafka-init creates {topic} twice"
        configs = dict(c.split("=", 1) for c in args.get("--config", []))
        out[topic] = (int(args["--partitions"][0]), configs)
    return out


class FakeAdmin:
    """Stands in for aiokafka's admin client: no topic exists, creations are recorded."""

    created: ClassVar[list[Any]] = []

    def __init__(self, **kwargs: Any) -> None:
        pass

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def list_topics(self) -> list[str]:
        return []

    async def create_topics(self, topics: list[Any]) -> None:
        FakeAdmin.created.extend(topics)


def test_kafka_init_creates_the_workers_topic_layout(monkeypatch: pytest.MonkeyPatch) -> None:
    import aiokafka.admin

    settings = settings_of("worker")
    FakeAdmin.created = []
    monkeypatch.setattr(aiokafka.admin, "AIOKafkaAdminClient", FakeAdmin)
    asyncio.run(ensure_topics(settings))
    wanted = {t.name: (t.num_partitions, dict(t.topic_configs or {})) for t in FakeAdmin.created}
    created = kafka_init_topics()
    assert set(created) == set(dataclasses.asdict(settings.topics).values()), \
        "kafka-init must create exactly the topics of stream.config.TopicSettings"
    assert created == wanted, f"kafka-init {created} != ensure_topics {wanted}"
    assert created[settings.topics.references][1].get("cleanup.policy") == "compact"
    assert created[settings.topics.by_model][0] == settings.app.partitions


# -- metric names --------------------------------------------------------------------


@functools.cache
def exported_series() -> frozenset[str]:
    """Every series name the worker's registry can expose, from each family's type."""
    names = set()
    for family in Metrics().registry.collect():
        n = family.name
        if family.type == "counter":
            names.add(f"{n}_total")
        elif family.type == "histogram":
            names |= {f"{n}_bucket", f"{n}_count", f"{n}_sum"}
        elif family.type == "summary":
            names |= {n, f"{n}_count", f"{n}_sum"}
        elif family.type == "info":
            names.add(f"{n}_info")
        else:  # gauge, stateset (Enum), unknown
            names.add(n)
    return frozenset(names)


_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_IDENT = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")


def identifiers(expr: str) -> set[str]:
    """Metric-like identifiers of a PromQL expression (string literals left out)."""
    return set(_IDENT.findall(_STRING.sub('""', expr)))


def unknown_names(expr: str, recorded: set[str]) -> set[str]:
    """driftstream_* names the worker does not export, and recorded names no rule records."""
    bad = set()
    for ident in identifiers(expr):
        exported = ident.startswith("driftstream_") and ident in exported_series()
        if (ident.startswith("driftstream_") and not exported) or \
                (":" in ident and ident not in recorded):
            bad.add(ident)
    return bad


def rules() -> list[dict[str, Any]]:
    return [r for g in _yaml(RULES)["groups"] for r in g["rules"]]


def rule_name(rule: dict[str, Any]) -> str:
    return str(rule.get("alert") or rule.get("record"))


def recorded_names() -> set[str]:
    return {r["record"] for r in rules() if "record" in r}


def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def dashboard_panels() -> list[dict[str, Any]]:
    out = []
    for p in dashboard()["panels"]:
        out.append(p)
        out += p.get("panels", [])  # collapsed rows hold their panels
    return out


def dashboard_exprs() -> list[str]:
    exprs = [t["expr"] for p in dashboard_panels() for t in p.get("targets", []) if "expr" in t]
    for var in dashboard().get("templating", {}).get("list", []):
        q = var.get("query")
        exprs.append(q["query"] if isinstance(q, dict) else str(q or ""))
    return [e for e in exprs if e]


def test_the_metric_name_check_can_fail() -> None:
    assert unknown_names("rate(driftstream_psi_total[5m])", set()) == {"driftstream_psi_total"}
    assert unknown_names("driftstream_event_delay_seconds > 1", set()) == \
        {"driftstream_event_delay_seconds"}
    assert unknown_names("job:driftstream_psi:max > 1", set()) == {"job:driftstream_psi:max"}
    assert unknown_names('up{job="driftstream_not_a_metric"}', set()) == set()
    assert not unknown_names(
        'rate(driftstream_dead_letters_total[5m]) + driftstream_consumer_status'
        '{driftstream_consumer_status="stalled"} + driftstream_event_delay_seconds_bucket', set())


def test_rules_use_only_exported_metrics() -> None:
    recorded = recorded_names()
    used: set[str] = set()
    for rule in rules():
        bad = unknown_names(rule["expr"], recorded)
        assert not bad, f"rule {rule_name(rule)} uses unknown metrics {sorted(bad)}"
        used |= {i for i in identifiers(rule["expr"]) if i.startswith("driftstream_")}
    assert used >= {"driftstream_psi", "driftstream_alerts_firing",
                    "driftstream_event_delay_seconds_bucket",
                    "driftstream_event_delay_seconds_count", "driftstream_consumer_status",
                    "driftstream_backlog_age_seconds", "driftstream_dead_letters_total",
                    "driftstream_quality_alerts_firing", "driftstream_label_coverage_ratio",
                    "driftstream_label_join_events_total"}, used


def test_dashboard_uses_only_exported_metrics() -> None:
    recorded = recorded_names()
    used: set[str] = set()
    exprs = dashboard_exprs()
    assert len(exprs) >= 10
    for expr in exprs:
        bad = unknown_names(expr, recorded)
        assert not bad, f"dashboard query {expr!r} uses unknown metrics {sorted(bad)}"
        used |= {i for i in identifiers(expr) if i.startswith("driftstream_")}
    assert used >= {"driftstream_psi", "driftstream_alerts_firing",
                    "driftstream_alert_transitions_total", "driftstream_backlog_age_seconds",
                    "driftstream_consumer_lag_records", "driftstream_consumer_status",
                    "driftstream_ingested_events_total", "driftstream_processed_events_total",
                    "driftstream_event_delay_seconds_bucket",
                    "driftstream_dead_letters_total", "driftstream_quality",
                    "driftstream_quality_alerts_firing", "driftstream_label_coverage_ratio",
                    "driftstream_label_latency_seconds_bucket",
                    "driftstream_label_join_events_total"}, used


def test_freshness_bucket_bound_matches_what_the_worker_exports() -> None:
    """prometheus_client writes le="60.0" (Prometheus 3 normalises to "60"): the rules'
    matcher must select exactly the 60 s bucket either way."""
    m = Metrics()
    m.event_delay.observe_many(np.array([1.0, 70.0]))
    bounds = set(re.findall(r'driftstream_event_delay_seconds_bucket\{le="([^"]+)"\}',
                            m.render().decode()))
    assert "60.0" in bounds, bounds
    matchers = [(op, re.sub(r"\\(.)", r"\1", value)) for r in rules()
                for op, value in re.findall(r'\ble\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"', r["expr"])]
    assert len(matchers) >= 5, f"the freshness rules select no bucket: {matchers}"
    for op, pattern in matchers:
        assert op == "=~", f'le{op}"{pattern}": use le=~ to match both spellings of the bound'
        hits = {b for b in bounds | {"60"} if re.fullmatch(pattern, b)}
        assert hits == {"60.0", "60"}, f"le=~{pattern!r} selects {hits}"


# -- alert policy --------------------------------------------------------------------


def test_alerts_have_severity_summary_and_description() -> None:
    alerts = [r for r in rules() if "alert" in r]
    assert len(alerts) >= 10
    for rule in alerts:
        name = rule["alert"]
        assert rule.get("labels", {}).get("severity") in SEVERITIES, name
        ann = rule.get("annotations", {})
        assert ann.get("summary", "").strip() and ann.get("description", "").strip(), name


def test_burn_rate_alerts_follow_the_multiwindow_table() -> None:
    """SRE Workbook table 5-8 on a 99% SLO: (long window, short window, burn rate, severity)."""
    table = {("1h", "5m", "14.4", "page"), ("6h", "30m", "6", "page"), ("3d", "6h", "1", "ticket")}
    found = set()
    for rule in rules():
        windows = re.findall(r"job:driftstream_event_delay_seconds:bad_ratio_rate(\w+)",
                             rule["expr"])
        if "alert" not in rule or not windows:
            continue
        factors = set(re.findall(r"\(\s*([\d.]+)\s*\*\s*0\.01\s*\)", rule["expr"]))
        assert len(windows) == 2 and len(factors) == 1, rule["alert"]
        found.add((windows[0], windows[1], factors.pop(), rule["labels"]["severity"]))
    assert found == table
    for window in ("5m", "30m", "1h", "6h", "3d"):
        (rec,) = [r for r in rules()
                  if r.get("record") == f"job:driftstream_event_delay_seconds:bad_ratio_rate{window}"]
        assert rec["expr"].count(f"[{window}]") == 2, rec["record"]


def test_every_alert_has_a_firing_and_a_quiet_unit_test() -> None:
    tests = _yaml(RULE_TESTS)
    assert tests["rule_files"] == ["../rules/driftstream.rules.yml"]
    assert (RULE_TESTS.parent / tests["rule_files"][0]).resolve() == RULES.resolve()
    fires, quiet = set(), set()
    for group in tests["tests"]:
        for case in group.get("alert_rule_test", []):
            (fires if case.get("exp_alerts") else quiet).add(case["alertname"])
    alerts = {r["alert"] for r in rules() if "alert" in r}
    assert not alerts - fires, f"no case where these fire: {sorted(alerts - fires)}"
    assert not alerts - quiet, f"no case where these stay quiet: {sorted(alerts - quiet)}"
    assert not (fires | quiet) - alerts, f"tests of unknown alerts: {sorted((fires | quiet) - alerts)}"


# -- Grafana -------------------------------------------------------------------------


def test_dashboard_panels_use_the_provisioned_datasource() -> None:
    (ds,) = _yaml(DATASOURCES)["datasources"]
    uid = ds["uid"]
    panels = [p for p in dashboard_panels() if p.get("type") != "row"]
    assert len(panels) >= 8
    ids = [p["id"] for p in dashboard_panels()]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for p in panels:
        assert (p.get("datasource") or {}).get("uid") == uid, f"panel {p.get('title')!r}"
        assert p.get("targets"), f"panel {p.get('title')!r} has no query"
        for t in p["targets"]:
            if "datasource" in t:
                assert t["datasource"].get("uid") == uid, f"panel {p.get('title')!r}"
    for var in dashboard()["templating"]["list"]:
        if var.get("type") == "query":
            assert var["datasource"]["uid"] == uid, var["name"]
    titles = " ".join(p["title"] for p in panels).lower()
    for word in ("psi", "alerts firing", "alert transitions", "backlog age", "lag", "status",
                 "throughput", "delay", "dead letters", "quality per window",
                 "quality alerts firing", "label coverage", "label latency", "label join"):
        assert word in titles, f"no panel about {word!r}"
    rows = [p["title"] for p in dashboard()["panels"] if p.get("type") == "row"]
    assert "Quality (labels)" in rows, rows


# -- promtool ------------------------------------------------------------------------


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool is not on PATH: install Debian's prometheus package "
                    "(sudo apt-get install -y prometheus), as .ci/run does", pytrace=False)
    return path


def run_promtool(*args: str, cwd: Path = REPO) -> str:
    proc = subprocess.run([promtool(), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=600, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"promtool {' '.join(args)} failed:\n{out}"
    return out


def test_promtool_check_rules() -> None:
    out = run_promtool("check", "rules", str(RULES.relative_to(REPO)))
    assert "SUCCESS" in out, out


def test_promtool_check_config() -> None:
    out = run_promtool("check", "config", str(PROMETHEUS.relative_to(REPO)))
    assert "SUCCESS: 1 rule files found" in out, out


def test_promtool_unit_tests_of_the_rules() -> None:
    out = run_promtool("test", "rules", str(RULE_TESTS.relative_to(REPO)))
    assert "SUCCESS" in out and "FAILED" not in out, out


def test_dashboard_queries_parse(tmp_path: Path) -> None:
    """Each panel query, with Grafana's variables filled in, as a recording rule that
    promtool parses."""
    subst = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h", "$model": ".*"}
    records = []
    for i, expr in enumerate(dashboard_exprs()):
        if expr.startswith("label_values("):
            continue  # Grafana's own function, not PromQL
        for var, value in subst.items():
            expr = expr.replace(var, value)
        assert "$" not in expr, f"unknown Grafana variable in {expr!r}"
        records.append({"record": f"dashboard:query_{i}:expr", "expr": expr})
    path = tmp_path / "dashboard.rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": records}]}))
    out = run_promtool("check", "rules", str(path), cwd=tmp_path)
    assert f"SUCCESS: {len(records)} rules found" in out, out


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))
