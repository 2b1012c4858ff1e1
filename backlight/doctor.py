"""``backlight doctor``: check what a deployment depends on and say what is wrong and what to do.

Each check gives a ``Finding``: OK, WARN (works, but look at it) or FAIL (Backlight cannot work
like this), with one line of detail and, unless OK, one line saying what to do. The checks:

- the config loads (a bad one never gets here: the CLI exits 2 naming the key);
- the broker answers at ``kafka.bootstrap_servers``; every source topic and its ``<topic>.dlq``
  exist, with their partitions, and the group's lag on each source topic (end offsets minus the
  group's committed offsets);
- the store is reachable, at the schema version this Backlight expects, and writable
  (``storage.inspect_store``, which changes nothing);
- each process's end activities: configured, learned (when, from how many finished cases, the
  share each ends) or not learned yet, read from the store without changing it;
- each chat endpoint's host answers a TCP connection (and a TLS handshake for https) without a
  message being sent; each Kafka channel's topic exists.

The checks run side by side on daemon threads, each bounded by the timeout: a wrong bootstrap
address or a black-holed endpoint costs the timeout once, and never hangs the command.
Secrets stay hidden: a store URL is shown masked, a webhook by its host only (its path and
query carry the token), and error texts are scrubbed of the password before they are shown.
"""

from __future__ import annotations

import functools
import json
import socket
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Generic, Literal, TypeVar
from urllib.parse import urlsplit

from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaError, KafkaTimeoutError

from alerts.channels import ChannelSettings
from backlight.config import DEFAULT_PATH, KafkaSettings, Settings
from schemas.printable import printable
from storage import inspect_store, mask_url, scrub
from storage.end_activities import KeptEnds, peek_end_activities

Status = Literal["OK", "WARN", "FAIL"]
T = TypeVar("T")
_GRACE_S = 2.0
"""How much longer than the timeout a check may take (closing clients) before it is given up."""


@dataclass(frozen=True)
class Finding:
    """One check's outcome: ``hint`` says what to do (None when there is nothing to do)."""

    check: str
    status: Status
    detail: str
    hint: str | None = None


@dataclass(frozen=True)
class BrokerReport:
    """The broker's findings, and the partitions of the topics asked about that exist
    (None when the broker did not answer, so nothing is known about topics)."""

    findings: list[Finding]
    partitions: dict[str, int] | None


def config_source(config_path: str | None) -> str:
    """Which file ``config.load`` reads for this ``--config`` value, as shown to the user."""
    if config_path is not None:
        return config_path
    return DEFAULT_PATH if Path(DEFAULT_PATH).exists() else "embedded defaults"


def check_config(settings: Settings, where: str) -> Finding:
    """The config loaded (the caller got ``settings``); WARN when it gives nothing to consume."""
    counts = (f"{_n(len(settings.sources), 'source')}, {_n(len(settings.processes), 'process')},"
              f" {_n(len(settings.channels), 'channel')}")
    if not settings.sources:
        return Finding("config", "WARN", f"loaded {where}: no [[sources]], nothing to consume "
                       f"({counts})", "add a [[sources]] entry (topic, process) per topic")
    return Finding("config", "OK", f"loaded {where}: {counts}")


def check_broker(kafka: KafkaSettings, sources: Sequence[str], timeout_s: float,
                 other_topics: Sequence[str] = ()) -> BrokerReport:
    """The broker answers; each source topic and its ``.dlq`` exist; the group's lag per source
    topic. ``other_topics`` (Kafka channels' topics) are looked up too, for ``partitions``."""
    where = kafka.bootstrap_servers
    ms = max(1000, int(timeout_s * 1000))
    started = time.monotonic()
    try:
        consumer = KafkaConsumer(
            bootstrap_servers=where, client_id=f"{kafka.client_id}-doctor",
            group_id=kafka.group_id, enable_auto_commit=False, bootstrap_timeout_ms=ms,
            request_timeout_ms=ms, **kafka.client_options())
    except KafkaTimeoutError:
        return BrokerReport([Finding(
            "broker", "FAIL", f"no Kafka broker answered at {where} within {timeout_s:g} s "
            "(topics and lag not checked)",
            "check kafka.bootstrap_servers and that the brokers run and are reachable from "
            "here (a local one: `backlight broker start` prints its address)")], None)
    except (KafkaError, OSError, ValueError) as exc:
        return BrokerReport([Finding(
            "broker", "FAIL", f"cannot connect to {where}: {_kind(exc)}",
            "check kafka.bootstrap_servers and the security settings (security_protocol, "
            "sasl_*, ssl_*) against the cluster's listeners")], None)
    try:
        names = set(consumer.topics())
        answered = time.monotonic() - started
        wanted = [*sources, *(f"{t}.dlq" for t in sources), *other_topics]
        partitions = {t: len(consumer.partitions_for_topic(t) or ()) for t in wanted if t in names}
        findings = [Finding("broker", "OK", f"{where} answered in {answered:.2f} s "
                            f"({_n(len(names), 'topic')} visible)")]
        for topic in sources:
            findings.append(_source_topic(consumer, kafka, topic, partitions.get(topic), ms))
            dlq = f"{topic}.dlq"
            if dlq in partitions:
                findings.append(Finding(f"topic {dlq}", "OK",
                                        f"{_n(partitions[dlq], 'partition')} (dead letters)"))
            else:
                findings.append(Finding(
                    f"topic {dlq}", "FAIL",
                    f"missing: the dead letters of {topic} have nowhere to go",
                    _create_hint(kafka, dlq)))
        return BrokerReport(findings, partitions)
    except KafkaError as exc:
        return BrokerReport([Finding(
            "broker", "FAIL", f"{where} answered but a request failed: {_kind(exc)}",
            "check the broker's logs and this client's ACLs (Describe on topics and the group)")],
            None)
    finally:
        consumer.close(autocommit=False, timeout_ms=ms)


def _source_topic(consumer: KafkaConsumer, kafka: KafkaSettings, topic: str,
                  partitions: int | None, ms: int) -> Finding:
    """A source topic: it exists, its partitions, and the group's lag on it."""
    if partitions is None:
        return Finding(f"topic {topic}", "FAIL", "missing: the consumers have nothing to read",
                       _create_hint(kafka, topic))
    parts = [TopicPartition(topic, p) for p in range(partitions)]
    ends = consumer.end_offsets(parts, timeout_ms=ms)
    begins = consumer.beginning_offsets(parts, timeout_ms=ms)
    committed = {tp: consumer.committed(tp, timeout_ms=ms) for tp in parts}
    lag = sum(max(0, ends[tp] - (begins[tp] if committed[tp] is None else committed[tp]))
              for tp in parts)
    shape = _n(partitions, "partition")
    if all(c is None for c in committed.values()):
        return Finding(f"topic {topic}", "WARN",
                       f"{shape}; group {kafka.group_id} has committed no offsets on it yet "
                       f"({_n(lag, 'message')} waiting)",
                       "nothing of it has been consumed yet: run `backlight consume`"
                       " (or check kafka.group_id)")
    unread = sum(1 for c in committed.values() if c is None)
    note = f", {unread} of them never committed" if unread else ""
    return Finding(f"topic {topic}", "OK",
                   f"{shape}; group {kafka.group_id} lag {_n(lag, 'message')}{note}")


def _create_hint(kafka: KafkaSettings, topic: str) -> str:
    if kafka.create_topics:
        return (f"run `backlight consume` once (kafka.create_topics = true creates {topic}), "
                "or create it yourself")
    return (f"create {topic} (e.g. kafka-topics.sh --create --topic {topic}), or set "
            "kafka.create_topics = true and run `backlight consume` once")


def check_store(url: str) -> list[Finding]:
    """The store: reachable, its schema version against the code's, writable. Changes nothing."""
    shown = mask_url(url)
    try:
        found = inspect_store(url)
    except Exception as exc:  # inspect_store reports by value; anything else is shown as is
        return [Finding("store", "FAIL", f"{shown}: inspecting it failed: "
                        f"{_scrub(_kind(exc), url)}", "check store.url")]
    error = _scrub(found.error or "no reason given", url)
    if not found.reachable:
        return [Finding("store", "FAIL", f"{shown}: unreachable: {error}",
                        "check store.url: a PostgreSQL server up and accepting this user, or a "
                        "SQLite file that exists and can be read")]
    version, expected = found.schema_version, found.expected_version
    if version is None:  # no store there yet: what matters is whether it can be created
        if not found.writable:
            return [Finding("store", "FAIL", f"{shown}: cannot be created: {error}",
                            "point store.url at a directory (SQLite) or database (PostgreSQL) "
                            "Backlight's user may create tables in")]
        return [Finding("store", "OK", f"{shown}: reachable, no store there yet: it is created "
                        f"(schema version {expected}) when Backlight first opens it")]
    out = [Finding("store", "OK", f"{shown}: reachable")]
    if version > expected:
        out.append(Finding("store schema", "FAIL",
                           f"schema version {version}, newer than this Backlight knows "
                           f"({expected}): it refuses to use the store",
                           "upgrade Backlight (to the version that wrote this store)"))
    elif version < expected:
        out.append(Finding("store schema", "WARN",
                           f"schema version {version}, this Backlight expects {expected}",
                           "nothing to do: it will be migrated at the next consume"))
    else:
        out.append(Finding("store schema", "OK", f"schema version {version} (current)"))
    if found.writable:
        out.append(Finding("store writable", "OK", "a write tried in a transaction succeeded "
                           "(rolled back)"))
    else:
        out.append(Finding("store writable", "FAIL", f"cannot write: {error}",
                           "give Backlight's user write access (file and directory permissions "
                           "for SQLite; INSERT grants for PostgreSQL), and check the disk is "
                           "not full or mounted read-only"))
    return out


def endpoint(url: str) -> tuple[str, int, bool]:
    """A webhook URL's (host, port, TLS?): all of it that may be shown or needs probing."""
    parts = urlsplit(url)
    tls = parts.scheme == "https"
    return parts.hostname or "", parts.port or (443 if tls else 80), tls


def check_channel(channel: ChannelSettings, timeout_s: float) -> Finding:
    """An HTTP channel's host accepts a TCP connection (and a TLS handshake for https) within
    the timeout. Nothing is sent: not a request, let alone a message. Only the host is shown."""
    assert channel.url is not None  # the config requires it for every type but kafka
    host, port, tls = endpoint(channel.url.get_secret_value())
    shown = host if port == (443 if tls else 80) else f"{host}:{port}"
    label = f"channel {channel.name}"
    started = time.monotonic()
    try:
        probe(host, port, tls, timeout_s)
    except socket.gaierror as exc:
        return Finding(label, "FAIL", f"{channel.type}, host {shown}: cannot resolve the name "
                       f"({exc.strerror})", "check the channel's url (its host) and this "
                       "machine's DNS")
    except ssl.SSLError as exc:
        return Finding(label, "FAIL", f"{channel.type}, host {shown}: TLS handshake failed "
                       f"({exc.reason or type(exc).__name__})",
                       "the endpoint's certificate is not trusted here, so delivery fails too: "
                       "check the url's host, or the machine's CA certificates")
    except TimeoutError:
        return Finding(label, "FAIL", f"{channel.type}, host {shown}: no answer within "
                       f"{timeout_s:g} s", "a firewall or proxy may drop the traffic: Backlight "
                       "connects directly (no proxy); allow it out to this host")
    except OSError as exc:
        return Finding(label, "FAIL", f"{channel.type}, host {shown}: "
                       f"{exc.strerror or type(exc).__name__}",
                       "check the channel's url and that the endpoint is up and reachable from "
                       "here (Backlight connects directly, without a proxy)")
    took = (time.monotonic() - started) * 1000
    return Finding(label, "OK", f"{channel.type}, host {shown}: reachable"
                   f"{' (TLS ok)' if tls else ''} in {took:.0f} ms; nothing sent")


def probe(host: str, port: int, tls: bool, timeout_s: float) -> None:
    """Open a TCP connection (and complete a TLS handshake, verifying the certificate as
    delivery does) and close it. Raises ``OSError`` (``TimeoutError``, ``ssl.SSLError``...)."""
    deadline = time.monotonic() + timeout_s
    with socket.create_connection((host, port), timeout=timeout_s) as sock:
        if tls:
            sock.settimeout(max(0.1, deadline - time.monotonic()))
            with _tls_context().wrap_socket(sock, server_hostname=host):
                pass


def _tls_context() -> ssl.SSLContext:
    """The CA bundle httpx (delivery) verifies against: certifi's, when installed."""
    try:
        import certifi
    except ImportError:
        return ssl.create_default_context()
    return ssl.create_default_context(cafile=certifi.where())


def check_kafka_channel(channel: ChannelSettings, partitions: dict[str, int] | None) -> Finding:
    """A Kafka channel's topic exists (on the config's [kafka] brokers)."""
    label = f"channel {channel.name}"
    if partitions is None:
        return Finding(label, "WARN", f"kafka, topic {channel.topic}: not checked, the broker "
                       "did not answer", "fix the broker first (see above)")
    if channel.topic not in partitions:
        return Finding(label, "FAIL", f"kafka, topic {channel.topic}: missing",
                       f"create {channel.topic} (Backlight does not create it; a broker with "
                       "auto.create.topics.enable creates it on the first alert)")
    return Finding(label, "OK", f"kafka, topic {channel.topic} "
                   f"({_n(partitions[channel.topic], 'partition')})")


def diagnose(settings: Settings, where: str, timeout_s: float = 10.0) -> list[Finding]:
    """Every check, side by side, in the order shown: config, broker and topics, store,
    channels. Each is bounded by ``timeout_s`` (plus a grace to close its clients); one that
    overruns or breaks unexpectedly is a FAIL saying so, never a hang or a traceback."""
    sources = [s.topic for s in settings.sources]
    kafka_topics = [c.topic for c in settings.channels if c.type == "kafka"]
    url = settings.store.url
    broker = _Bounded(lambda: check_broker(settings.kafka, sources, timeout_s, kafka_topics))
    store = _Bounded(lambda: check_store(url))
    ends = _Bounded(lambda: check_end_activities(settings))
    chats = {c.name: _Bounded(functools.partial(check_channel, c, timeout_s))
             for c in settings.channels if c.type != "kafka"}
    deadline = time.monotonic() + timeout_s + _GRACE_S
    late = f"no complete answer within {timeout_s:g} s"
    findings = [check_config(settings, where)]
    report = broker.result(deadline, lambda why: BrokerReport([Finding(
        "broker", "FAIL", f"{settings.kafka.bootstrap_servers}: {why}",
        "check that the brokers are up, reachable and not overloaded")], None), late)
    findings += report.findings
    findings += store.result(deadline, lambda why: [Finding(
        "store", "FAIL", f"{mask_url(url)}: {_scrub(why, url)}",
        "check that the database is up and not held by a long lock")], late)
    findings += ends.result(deadline, lambda why: [Finding(
        "end activities", "WARN", f"could not read them: {_scrub(why, url)}",
        "check the store (above)")], late)
    for channel in settings.channels:
        if channel.type == "kafka":
            findings.append(check_kafka_channel(channel, report.partitions))
            continue
        findings.append(chats[channel.name].result(
            deadline, functools.partial(_channel_failed, channel), late))
    return findings


def check_end_activities(settings: Settings) -> list[Finding]:
    """Each process's end activities (what makes a case finished, so never stuck): those of
    the config, or those the alert rounds learned and keep in the store, or a WARN that none
    are known yet. Processes the store keeps but the config does not name are shown too."""
    url = settings.store.url
    try:
        kept = peek_end_activities(url, settings.store.session())
    except Exception as exc:  # shown as a finding, never a traceback
        return [Finding("end activities", "WARN", f"could not read them: {_scrub(_kind(exc), url)}",
                        "check the store (above)")]
    names = [p.name for p in settings.processes] + sorted(set(kept) - {p.name for p in settings.processes})
    configured = {p.name: tuple(p.end_activities) for p in settings.processes}
    out = []
    for name in names:
        label = f"end activities {name}"
        if configured.get(name):
            out.append(Finding(label, "OK", f"configured: {', '.join(configured[name])}"))
        elif name in kept:
            out.append(Finding(label, "OK", learned_text(kept[name])))
        else:
            out.append(Finding(label, "WARN", "none configured, none learned yet: until enough "
                               "cases have finished, every case counts as open",
                               f"set end_activities for {name} in [[processes]], or let "
                               "`backlight alerts run` learn them"))
    return out


def learned_text(kept: KeptEnds) -> str:
    """Learned end activities as shown: which, the share of finished cases each ends, when
    and from how many cases."""
    shares = ", ".join(f"{a} ({kept.shares.get(a, 0.0):.0%})" for a in kept.activities)
    changed = f", version {kept.version}: {kept.reason}" if kept.version > 1 else ""
    return (f"learned {kept.learned_at.date()} from {kept.cases} finished cases: "
            f"{shares}{changed}")


def _channel_failed(channel: ChannelSettings, why: str) -> Finding:
    return Finding(f"channel {channel.name}", "FAIL", f"{channel.type}: {why}",
                   "check that the endpoint is up and reachable from here")


class _Bounded(Generic[T]):
    """A function run on a daemon thread, so a check that overruns never holds the process."""

    def __init__(self, func: Callable[[], T]) -> None:
        self._out: list[T] = []
        self._error: list[Exception] = []

        def run() -> None:
            try:
                self._out.append(func())
            except Exception as exc:
                self._error.append(exc)

        self._thread = threading.Thread(target=run, name="doctor-check", daemon=True)
        self._thread.start()

    def result(self, deadline: float, failure: Callable[[str], T], late: str) -> T:
        """Its value; else ``failure(why)``: ``late`` when it has not finished by ``deadline``,
        or the exception it raised."""
        self._thread.join(max(0.0, deadline - time.monotonic()))
        if self._out:
            return self._out[0]
        if self._error:
            return failure(f"the check broke: {_kind(self._error[0])}")
        return failure(late)


def failed(findings: Sequence[Finding]) -> bool:
    return any(f.status == "FAIL" for f in findings)


def render_json(findings: Sequence[Finding]) -> str:
    return json.dumps([asdict(f) for f in findings], indent=2)


def render_text(findings: Sequence[Finding], where: str,
                style: Callable[[str, Status], str] = lambda text, _status: text) -> str:
    """One line per check (status, check, detail), a "→ what to do" line under each that is not
    OK, then a summary. ``style`` may colour the status word."""
    width = min(40, max((len(f.check) for f in findings), default=0))
    lines = [f"backlight doctor: {printable(where)}", ""]
    for f in findings:  # names are event data: control characters shown as escapes
        lines.append(f"  {style(f'{f.status:<4}', f.status)}  {printable(f.check):<{width}}  "
                     f"{printable(f.detail)}")
        if f.hint and f.status != "OK":
            lines.append(f"  {'':<4}  {'':<{width}}  → {printable(f.hint)}")
    counts = {s: sum(1 for f in findings if f.status == s) for s in ("OK", "WARN", "FAIL")}
    verdict = ("something is wrong: fix the FAIL lines" if counts["FAIL"]
               else "works; look at the WARN lines" if counts["WARN"] else "all good")
    lines += ["", f"{counts['OK']} OK, {counts['WARN']} WARN, {counts['FAIL']} FAIL: {verdict}"]
    return "\n".join(lines)


def _n(count: int, noun: str) -> str:
    plural = noun + ("es" if noun.endswith("s") else "s")
    return f"{count:,} {noun if count == 1 else plural}"


def _kind(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _scrub(text: str, url: str) -> str:
    """``text`` on one line, without the URL's password (should an error quote it)."""
    return scrub(text.replace(url, mask_url(url)), url)
