"""The persisted alert state (alerts, silences, acknowledgements, acceptances, reviews, change history), kept
beside the events in tables of its own, so a restart sends nothing twice and forgets no silence:
its interface, its tables on SQLite and PostgreSQL, and how alerts and silences are kept as
JSON. storage/alert_tables.py implements it once for both databases.

Times are stored as integer microseconds since the epoch (UTC) and come back as aware UTC
datetimes (storage/times.py); an alert is stored as its ``Alert.to_json`` and read back by
``alert_from_json``, which round-trips it exactly.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any, Protocol

from schemas import strict_json
from schemas.alerts import (
    Acceptance,
    Acknowledgement,
    Alert,
    AlertChange,
    AlertNote,
    Review,
    Severity,
    Silence,
    Status,
)
from storage.errors import AlertStateError, LeaseLost
from storage.migrations import Migration, Schema
from storage.times import stored_us

_TABLES = (
    """CREATE TABLE IF NOT EXISTS alert_states (
        key        TEXT PRIMARY KEY,
        process    TEXT NOT NULL,
        status     TEXT NOT NULL,
        body       TEXT NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS alert_states_process ON alert_states (process, status)",
    """CREATE TABLE IF NOT EXISTS alert_silences (
        id         TEXT PRIMARY KEY,
        created_us {int} NOT NULL,
        until_us   {int} NOT NULL,
        body       TEXT NOT NULL,
        expired_by TEXT,
        expired_us {int})""",
    """CREATE TABLE IF NOT EXISTS alert_acks (
        seq        {seq},
        key        TEXT NOT NULL,
        who        TEXT NOT NULL,
        at_us      {int} NOT NULL,
        note       TEXT NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS alert_acks_key ON alert_acks (key, at_us)",
    """CREATE TABLE IF NOT EXISTS process_reviews (
        seq        {seq},
        process    TEXT NOT NULL,
        who        TEXT NOT NULL,
        at_us      {int} NOT NULL,
        note       TEXT NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS process_reviews_process ON process_reviews (process, at_us)",
    """CREATE TABLE IF NOT EXISTS alert_history (
        seq        {seq},
        key        TEXT NOT NULL,
        change     TEXT NOT NULL,
        status     TEXT NOT NULL,
        at_us      {int} NOT NULL,
        summary    TEXT NOT NULL,
        body       TEXT NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS alert_history_key ON alert_history (key, seq)",
)
_ACCEPTANCES = (
    """CREATE TABLE IF NOT EXISTS alert_acceptances (
        seq        {seq},
        key        TEXT NOT NULL,
        who        TEXT NOT NULL,
        at_us      {int} NOT NULL,
        why        TEXT NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS alert_acceptances_key ON alert_acceptances (key, at_us)",
)
_NOTES = (
    "ALTER TABLE alert_acks ADD COLUMN owner TEXT",
    "ALTER TABLE alert_acks ADD COLUMN action TEXT NOT NULL DEFAULT ''",
    """CREATE TABLE IF NOT EXISTS alert_notes (
        seq        {seq},
        key        TEXT NOT NULL,
        who        TEXT NOT NULL,
        at_us      {int} NOT NULL,
        text       TEXT NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS alert_notes_key ON alert_notes (key, at_us)",
)
_HISTORY_TIME = "CREATE INDEX IF NOT EXISTS alert_history_at ON alert_history (at_us)"
_LEASES = """CREATE TABLE IF NOT EXISTS alert_leases (
        name       TEXT PRIMARY KEY,
        holder     TEXT NOT NULL,
        until_us   {int} NOT NULL)"""


def _schema(int_type: str, seq_type: str) -> Schema:
    """The alert state's versioned tables with a dialect's integer and identity column types."""
    def typed(statement: str) -> str:
        return statement.format(int=int_type, seq=seq_type)
    return Schema("alerts", "the alert state", "alert_states", (
        Migration(1, "alerts, silences, acknowledgements, reviews and the change history",
                  tuple(typed(t) for t in _TABLES)),
        Migration(2, "evaluation leases: one worker at a time evaluates a process",
                  (typed(_LEASES),)),
        Migration(3, "acceptances: an alert's new level accepted as normal",
                  tuple(typed(t) for t in _ACCEPTANCES)),
        Migration(4, "who owns the fix and what is done: acknowledgements' owner and action,"
                  " notes on open alerts", tuple(typed(t) for t in _NOTES)),
        Migration(5, "the change history by time: time to act and the digest read a window of it",
                  (_HISTORY_TIME,)),
    ), AlertStateError)


SCHEMA = _schema("INTEGER", "INTEGER PRIMARY KEY")
"""The alert state's tables in a SQLite file, versioned as the PostgreSQL ones are."""
POSTGRES_SCHEMA = _schema("BIGINT", "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY")
"""The same tables in PostgreSQL (BIGINT times, identity columns)."""


class AlertState(Protocol):
    """What the evaluator, the CLI and the web read and record about alerts."""

    def alerts(self) -> dict[str, Alert]:
        """Every stored alert by key (resolved ones kept for history)."""
        ...

    def save(self, evaluation_alerts: Iterable[Alert]) -> None:
        """Store an evaluation's alerts in one transaction: upsert each; a stored PENDING alert
        that is not among them is removed (``advance`` drops pending alerts that cleared)."""
        ...

    def record_changes(self, changes: Sequence[AlertChange]) -> None:
        """Append changes to the history."""
        ...

    def history(self, key: str | None = None, limit: int = 100) -> list[AlertChange]:
        """Recorded changes, newest first, of one alert or all."""
        ...

    def changes(self, since: datetime | None = None,
                until: datetime | None = None) -> list[AlertChange]:
        """Every recorded change at or after ``since`` and before ``until`` (either open),
        oldest first (in the order recorded): what time to act and the digest are computed from."""
        ...

    def last_change(self) -> int:
        """The sequence number of the latest recorded change (0 before any): a cheap way to
        tell whether the history changed since it was last read."""
        ...

    def fired(self) -> dict[tuple[str, str], int]:
        """How often alerts started firing (FIRING and RECURRED changes in the history), per
        (process, rule)."""
        ...

    def add_silence(self, silence: Silence) -> Silence:
        """Record a silence (an empty id gets a fresh one); returns it as stored."""
        ...

    def silences(self, active_at: datetime | None = None) -> list[Silence]:
        """Every silence, or those active at a moment, oldest first."""
        ...

    def expire_silence(self, id: str, by: str, now: datetime) -> Silence:
        """End a silence now (``until`` becomes ``now``); returns it as it now is."""
        ...

    def acknowledge(self, ack: Acknowledgement) -> None:
        """Record an acknowledgement of a pending or firing alert."""
        ...

    def acknowledgements(self) -> dict[str, Acknowledgement]:
        """The latest acknowledgement per alert key."""
        ...

    def accept(self, acceptance: Acceptance) -> None:
        """Record that an open (pending or firing) alert's level was accepted as normal."""
        ...

    def acceptances(self) -> dict[str, Acceptance]:
        """The latest acceptance per alert key."""
        ...

    def add_note(self, note: AlertNote, change: AlertChange | None = None) -> None:
        """Record a note on a pending or firing alert and, in the same transaction, the NOTE
        change announcing it (if given) in the history."""
        ...

    def notes(self, key: str | None = None) -> list[AlertNote]:
        """Recorded notes, oldest first, of one alert or all."""
        ...

    def record_review(self, review: Review) -> None:
        """Record that a process definition was reviewed."""
        ...

    def reviews(self, process: str | None = None) -> list[Review]:
        """Recorded reviews, newest first, of one process or all."""
        ...

    def take_leases(self, names: Sequence[str], holder: str, lease: timedelta) -> list[str]:
        """Hold each named lease for ``lease`` of wall time where it is free, expired or
        ``holder``'s already (renewed), in one transaction; the names ``holder`` now holds."""
        ...

    def release_leases(self, names: Sequence[str], holder: str) -> None:
        """Give up those of the named leases ``holder`` holds."""
        ...

    def commit(self, evaluation_alerts: Iterable[Alert], changes: Sequence[AlertChange],
               processes: Collection[str], holder: str) -> None:
        """Store one evaluation of ``processes`` in one transaction, if ``holder`` still holds
        every one's lease (``evaluation_lease``), else raise ``LeaseLost`` and store nothing:
        upsert those processes' alerts, drop their pending ones not among them (as ``save``),
        append the changes to the history."""
        ...

    def close(self) -> None: ...


def evaluation_lease(process: str) -> str:
    """The name of the lease an evaluation of ``process`` holds while it runs."""
    return f"evaluate:{process}"




def lease_check(held: int, wanted: int, holder: str) -> None:
    if held != wanted:
        raise LeaseLost(f"worker {holder} no longer holds the evaluation lease of"
                        f" {wanted - held} of its {wanted} processes: another worker took over")


# -- JSON codecs -----------------------------------------------------------------------------
def alert_from_json(data: Mapping[str, Any]) -> Alert:
    """The inverse of ``Alert.to_json``: enums, dates and aware UTC datetimes come back."""
    try:
        told = data.get("notified_severity")
        return Alert(
            key=data["key"], rule=data["rule"], process=data["process"],
            subject=data["subject"], severity=Severity(data["severity"]),
            status=Status(data["status"]), summary=data["summary"],
            evidence=dict(data["evidence"]), segment=dict(data["segment"]),
            since=date.fromisoformat(data["since"]) if data["since"] else None,
            cases=tuple(data["cases"]), owner=data["owner"],
            first_seen=_parse(data["first_seen"]), last_seen=_parse(data["last_seen"]),
            fired_at=_parse_opt(data["fired_at"]), resolved_at=_parse_opt(data["resolved_at"]),
            acknowledged_by=data["acknowledged_by"],
            acknowledged_at=_parse_opt(data["acknowledged_at"]),
            silenced_by=data["silenced_by"], escalated_at=_parse_opt(data["escalated_at"]),
            url=data["url"], notified_at=_parse_opt(data.get("notified_at")),
            notified_severity=Severity(told) if told else None,
            flips=tuple(_parse(t) for t in data.get("flips", ())),
            flapping=bool(data.get("flapping", False)),
            fix_owner=data.get("fix_owner"), action=data.get("action"),
            baseline_until=_parse_opt(data.get("baseline_until")),
            accepted_at=_parse_opt(data.get("accepted_at")), accepted_by=data.get("accepted_by"),
            confirmed_at=_parse_opt(data.get("confirmed_at")),
            recurrences=int(data.get("recurrences", 0)),
            previous=dict(data["previous"]) if data.get("previous") is not None else None)
    except (KeyError, TypeError, ValueError) as exc:
        raise AlertStateError(f"a stored alert cannot be read: {exc!r}") from exc


def silence_to_json(silence: Silence) -> dict[str, Any]:
    """A silence as JSON (times as ISO 8601 with their offset)."""
    return {"id": silence.id, "until": silence.until.isoformat(), "by": silence.by,
            "why": silence.why, "created_at": silence.created_at.isoformat(),
            "key": silence.key, "rule": silence.rule, "process": silence.process,
            "severity": silence.severity.value if silence.severity else None}


def silence_from_json(data: Mapping[str, Any]) -> Silence:
    """The inverse of ``silence_to_json``."""
    try:
        return Silence(id=data["id"], until=_parse(data["until"]), by=data["by"], why=data["why"],
                       created_at=_parse(data["created_at"]), key=data["key"], rule=data["rule"],
                       process=data["process"],
                       severity=Severity(data["severity"]) if data["severity"] else None)
    except (KeyError, TypeError, ValueError) as exc:
        raise AlertStateError(f"a stored silence cannot be read: {exc!r}") from exc


def history_rows(changes: Sequence[AlertChange]) -> list[tuple[Any, ...]]:
    """The ``alert_history`` rows of some changes (key, change, status, at_us, summary, body);
    a change's body is its alert's JSON, with its note (``note``: key, by, at, text) and its
    detail (``detail``) when it has them."""
    return [(c.alert.key, c.change.value, c.alert.status.value, stored_us(c.at), c.alert.summary,
             strict_json.dumps(_history_body(c))) for c in changes]


def _history_body(change: AlertChange) -> dict[str, Any]:
    body = change.alert.to_json()
    if change.note is not None:
        body["note"] = note_to_json(change.note)
    if change.detail:
        body["detail"] = change.detail
    return body


def note_to_json(note: AlertNote) -> dict[str, Any]:
    """A note as JSON (its time as ISO 8601 with its offset)."""
    return {"key": note.key, "by": note.by, "at": note.at.isoformat(), "text": note.text}


def note_from_json(data: Mapping[str, Any] | None) -> AlertNote | None:
    """The inverse of ``note_to_json``; None stays None."""
    if data is None:
        return None
    try:
        return AlertNote(data["key"], data["by"], _parse(data["at"]), data["text"])
    except (KeyError, TypeError, ValueError) as exc:
        raise AlertStateError(f"a stored note cannot be read: {exc!r}") from exc




def _parse(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise ValueError(f"time {text!r} has no timezone")
    return moment.astimezone(UTC)


def _parse_opt(text: str | None) -> datetime | None:
    return None if text is None else _parse(text)
