"""``backlight alerts ...`` and ``backlight review``: thin wrappers around ``backlight.alerting``."""

from __future__ import annotations

import sys
import threading
from datetime import UTC, datetime, timedelta

import click

from alerts.delivery import DeliveryReport
from alerts.duration import parse_duration
from alerts.errors import AlertConfigError
from backlight import alerting, strict_json
from backlight.cli_options import config_option as _config_option
from backlight.cli_options import errors_exit as _errors_exit
from backlight.cli_options import settings as _settings
from backlight.config import ConfigError
from backlight.render_alerts import render_text
from backlight.signals import stop_on_signals
from schemas.alerts import Alert, Silence
from schemas.printable import json_printable, printable


def _moment(text: str | None, what: str) -> datetime | None:
    """An ISO date or time (UTC when naive); None stays None."""
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(f"{what} {text!r}: not an ISO date or time "
                          "(e.g. 2026-11-25 or 2026-11-25T09:00+01:00)") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def _until(text: str, now: datetime) -> datetime:
    """``--until``: an ISO date or time, or a duration from now (``2 days``, ``4h``)."""
    try:
        return now + timedelta(seconds=parse_duration(text).wall_seconds)
    except AlertConfigError:
        moment = _moment(text, "--until")
        assert moment is not None
        return moment


@click.group()
def alerts() -> None:
    """Evaluate the rules, deliver to chat, list, silence and acknowledge alerts."""


@alerts.command("evaluate")
@_config_option
@click.option("--dry-run", is_flag=True, help="Print what would be sent; change no state.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text",
              show_default=True)
@click.option("--now", "now_text", default=None, metavar="TIME",
              help="Evaluate as of this time (replayed or simulated history); default: now.")
@click.option("--process", "processes", multiple=True, help="Only this process (repeatable).")
@_errors_exit
def evaluate(config_path: str | None, dry_run: bool, fmt: str, now_text: str | None,
             processes: tuple[str, ...]) -> None:
    """Evaluate every rule once; queue the notifications unless --dry-run. A process whose
    stored events make its rules fail is named on stderr; the others are evaluated as usual,
    then the command exits 1."""
    settings = _settings(config_path)
    report = alerting.evaluate(settings, _moment(now_text, "--now"), dry_run, processes)
    for note in report.notes:
        click.echo(f"# {printable(note)}", err=True)
    if fmt == "json":
        click.echo(json_printable(strict_json.dumps([a.to_json() for a in report.alerts], indent=2,
                                             ensure_ascii=False)))
    else:
        click.echo(render_text(report), nl=False)
    if report.failed:
        names = ", ".join(printable(f.process) for f in report.failed)
        click.echo(f"backlight: {len(report.failed)} process(es) could not be evaluated: "
                   f"{names} (the others were)", err=True)
        sys.exit(1)


@alerts.command("run")
@_config_option
@click.option("--every", default=None, metavar="DURATION",
              help="How often to evaluate and deliver (default: [alerts] every).")
@_errors_exit
def run(config_path: str | None, every: str | None) -> None:
    """Evaluate and deliver on an interval (the outbox worker) until SIGTERM / SIGINT."""
    settings = _settings(config_path)
    try:
        interval = timedelta(seconds=parse_duration(every or settings.alerts.every).wall_seconds)
    except AlertConfigError as exc:
        raise ConfigError(f"--every: {exc}") from None
    stop = threading.Event()

    def said(report: alerting.EvaluationReport, delivered: DeliveryReport) -> None:
        click.echo(f"{report.now.isoformat(timespec='seconds')} {len(report.alerts)} alerts, "
                   f"{len(report.changes)} changes; sent {delivered.sent}, failed "
                   f"{delivered.failed} (retried), undeliverable {delivered.dead}")
    with stop_on_signals(stop):
        alerting.run(settings, interval, stop, said)


@alerts.command("digest")
@_config_option
@click.option("--now", "now_text", default=None, metavar="TIME",
              help="The week whose digest is due at this time (default: now).")
@click.option("--dry-run", is_flag=True, help="Print the digests; queue nothing.")
@_errors_exit
def digest(config_path: str | None, now_text: str | None, dry_run: bool) -> None:
    """Build the weekly digest of each escalation route (the latest week scheduled at or
    before --now), print it and queue it in the outbox unless --dry-run (`alerts run`
    delivers it); a week already queued is not queued again."""
    from alerts.digest_render import plain_text
    from backlight.digest_job import queue

    settings = _settings(config_path)
    report = queue(settings, _moment(now_text, "--now") or datetime.now(UTC), dry_run,
                   scheduled=False)
    if not report.digests:
        click.echo("no escalation route: no digest (mark a route `escalation = true`)")
    for built, channels in report.digests:
        click.echo(plain_text(built, settings.alerts.digest.max_items), nl=False)
        click.echo(f"-> {', '.join(channels) or 'no channel'}\n")
    if not dry_run:
        click.echo(f"queued {report.queued} new digest messages")


@alerts.command("list")
@_config_option
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text",
              show_default=True)
@click.option("--all", "show_all", is_flag=True, help="Resolved and confirmed alerts too.")
@_errors_exit
def list_(config_path: str | None, fmt: str, show_all: bool) -> None:
    """The alerts and their state, and the active silences."""
    found, silences = alerting.listing(_settings(config_path))
    shown = [a for a in found if show_all or not a.closed]
    if fmt == "json":
        click.echo(json_printable(strict_json.dumps({"alerts": [a.to_json() for a in shown],
                                              "silences": [_silence_json(s) for s in silences]},
                                             indent=2, ensure_ascii=False)))
        return
    if not shown:
        click.echo("no open alerts")
    for a in shown:
        click.echo(_alert_line(a))
    for s in silences:
        click.echo(f"silence {s.id} until {s.until.isoformat(timespec='minutes')} by "
                   f"{printable(s.by)}: {printable(s.why)} ({printable(_matcher(s))})")


def _alert_line(a: Alert) -> str:
    flags = "".join([" acknowledged" if a.acknowledged else "", " silenced" if a.silenced else "",
                     f" recurred x{a.recurrences}" if a.recurrences else ""])
    line = (f"{a.status.value:<8} {a.severity.value:<8} {printable(a.key)}{flags}\n"
            f"         {printable(a.summary)}")
    if a.fix_owner or a.action:
        line += (f"\n         fix owned by {printable(a.fix_owner or 'nobody')}"
                 + (f": {printable(a.action)}" if a.action else ""))
    return line


def _matcher(s: Silence) -> str:
    return ", ".join(f"{k}={v}" for k, v in (("key", s.key), ("rule", s.rule),
                                             ("process", s.process)) if v)


def _silence_json(s: Silence) -> dict[str, object]:
    return {"id": s.id, "until": s.until.isoformat(), "by": s.by, "why": s.why,
            "created_at": s.created_at.isoformat(), "key": s.key, "rule": s.rule,
            "process": s.process}


@alerts.command("silence")
@_config_option
@click.option("--key", default=None, help="An alert key (shell wildcards allowed).")
@click.option("--rule", default=None)
@click.option("--process", default=None)
@click.option("--until", "until_text", required=True, metavar="TIME|DURATION",
              help="When it expires: an ISO date/time or a duration from now ('3 days').")
@click.option("--by", required=True, help="Who silences it.")
@click.option("--why", required=True, help="Why (shown with the alert).")
@_errors_exit
def silence(config_path: str | None, key: str | None, rule: str | None, process: str | None,
            until_text: str, by: str, why: str) -> None:
    """Mute matching alerts until a time; silences always expire."""
    now = datetime.now(UTC)
    created = alerting.silence(_settings(config_path), until=_until(until_text, now), by=by,
                               why=why, key=key, rule=rule, process=process, now=now)
    click.echo(f"silence {created.id} until {created.until.isoformat(timespec='minutes')}")


@alerts.command("unsilence")
@_config_option
@click.argument("silence_id")
@click.option("--by", required=True)
@_errors_exit
def unsilence(config_path: str | None, silence_id: str, by: str) -> None:
    """End a silence now."""
    ended = alerting.unsilence(_settings(config_path), silence_id, by)
    click.echo(f"silence {ended.id} ended")


@alerts.command("ack")
@_config_option
@click.argument("key")
@click.option("--by", required=True, help="Who takes it on.")
@click.option("--owner", default=None, help="Who owns the fix (default: --by).")
@click.option("--action", default="", help="What is being done about it.")
@click.option("--note", default="")
@_errors_exit
def ack(config_path: str | None, key: str, by: str, owner: str | None, action: str,
        note: str) -> None:
    """Acknowledge a firing alert: no repeats, no escalation for this episode; the next
    evaluation announces who owns the fix and what is being done."""
    done = alerting.acknowledge(_settings(config_path), key, by, note, owner=owner,
                                action=action)
    click.echo(f"acknowledged {printable(done.key)} by {printable(done.by)}; fix owned by "
               f"{printable(done.fix_owner)}" + (f": {printable(done.action)}" if done.action else ""))


@alerts.command("note")
@_config_option
@click.argument("key")
@click.option("--by", required=True, help="Who writes the note.")
@click.option("--text", required=True, help="What was done, or what is next.")
@_errors_exit
def note(config_path: str | None, key: str, by: str, text: str) -> None:
    """Add a note to an open alert: kept in its history and sent once to its routes (unless it
    was never announced or is silenced)."""
    added, sent = alerting.add_note(_settings(config_path), key, by, text)
    click.echo(f"noted on {printable(added.key)} by {printable(added.by)}"
               + ("; queued for its channels" if sent else "; kept (not announced: nothing sent)"))


@alerts.command("accept")
@_config_option
@click.argument("key")
@click.option("--by", required=True, help="Who accepts the new level as normal (the owner).")
@click.option("--why", required=True, help="Why the new level is normal now.")
@_errors_exit
def accept(config_path: str | None, key: str, by: str, why: str) -> None:
    """Accept an open alert's new level as normal: the next evaluation resolves it (sent once,
    as "accepted") and that level is its baseline from then on."""
    done = alerting.accept(_settings(config_path), key, by, why)
    click.echo(f"accepted {done.key} as normal by {done.by}; it resolves at the next evaluation")


@click.command()
@_config_option
@click.argument("process")
@click.option("--by", required=True, help="Who reviewed the process definition.")
@click.option("--note", default="", help="What was reviewed or changed.")
@_errors_exit
def review(config_path: str | None, process: str, by: str, note: str) -> None:
    """Record a review of a process definition (the latest review wins over the config)."""
    done = alerting.record_review(_settings(config_path), process, by, note)
    click.echo(f"recorded: {done.process} reviewed by {done.by} on "
               f"{done.at.date().isoformat()}")

