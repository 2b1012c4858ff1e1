"""The weekly digest, pure: when it is due (alerts/digest_schedule.py), what it contains for a
route on the scripted history (alerts/digest.py, act_support), and its rendering in every
platform's format within the platform's limits, event text escaped (alerts/digest_render.py)."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from act_support import alert, at, history, states
from pydantic import ValidationError

from alerts.channels import googlechat, mattermost, slack, teams
from alerts.channels.text import encode
from alerts.digest import Digest, Item, build, impact
from alerts.digest_render import render
from alerts.digest_schedule import DigestSettings, Week, digest_id, due, scheduled_week
from alerts.routing import RouteSettings
from schemas.alerts import Alert, Severity

AMS = "Europe/Amsterdam"
ROUTE = RouteSettings(channels=("boss",), escalation=True)
TUESDAY = DigestSettings(day="tuesday", time="08:00", timezone="UTC")


def test_due_at_monday_eight_local_time() -> None:
    """By default the digest is due on Monday at 08:00 Amsterdam time (07:00 UTC in winter),
    covers the seven days before, and is queued up to a day late, not later."""
    settings = DigestSettings()
    before = datetime(2026, 11, 9, 6, 59, tzinfo=UTC)
    on_time = datetime(2026, 11, 9, 7, 0, tzinfo=UTC)
    week = due(on_time, settings, AMS)
    assert week is not None
    assert week.end == datetime(2026, 11, 9, 8, tzinfo=ZoneInfo(AMS))
    assert week.start == datetime(2026, 11, 2, 8, tzinfo=ZoneInfo(AMS))
    assert due(before, settings, AMS) is None
    assert due(on_time + timedelta(hours=23), settings, AMS) == week
    assert due(on_time + timedelta(hours=25), settings, AMS) is None
    assert due(on_time, DigestSettings(enabled=False), AMS) is None


def test_a_week_across_the_clock_change_is_local() -> None:
    """The week ending Monday 30 March 2026 08:00 in Amsterdam spans the spring change: 167
    hours, from 08:00 to 08:00 local time."""
    week = scheduled_week(datetime(2026, 3, 30, 12, tzinfo=UTC), DigestSettings(), AMS)
    assert week.end.astimezone(UTC) - week.start.astimezone(UTC) == timedelta(hours=167)
    assert week.start.astimezone(ZoneInfo(AMS)).hour == 8


def test_the_digest_id_is_one_per_route_channel_and_week() -> None:
    """Workers computing it at different moments of the week's slot agree; another week, route
    or channel differs."""
    first = scheduled_week(datetime(2026, 11, 9, 7, 0, tzinfo=UTC), DigestSettings(), AMS)
    later = scheduled_week(datetime(2026, 11, 9, 9, 30, tzinfo=UTC), DigestSettings(), AMS)
    nxt = scheduled_week(datetime(2026, 11, 16, 9, tzinfo=UTC), DigestSettings(), AMS)
    assert digest_id(ROUTE, "boss", first) == digest_id(ROUTE, "boss", later)
    assert len({digest_id(ROUTE, "boss", first), digest_id(ROUTE, "boss", nxt),
                digest_id(ROUTE, "other", first),
                digest_id(ROUTE.model_copy(update={"process": "claims"}), "boss", first)}) == 4


@pytest.mark.parametrize(("key", "value", "reason"), [
    ("day", "someday", "not a weekday"), ("time", "8 o'clock", "not a time of day"),
    ("timezone", "Mars/Olympus", "unknown time zone"), ("catch_up_hours", 0, "more than 0")])
def test_bad_digest_settings_are_refused(key: str, value: object, reason: str) -> None:
    """Each key is validated with a reason."""
    with pytest.raises(ValidationError, match=reason):
        DigestSettings.model_validate({key: value})


def content(route: RouteSettings = ROUTE) -> Digest:
    """The scripted history's digest for the week ending Tuesday 10 November 08:00 UTC, with an
    ownerless process's alert open and escalation after two days."""
    alerts = states()
    orphan = alert("owner", "no_owner", "orphan", at(0, 10))
    alerts[orphan.key] = orphan
    week = scheduled_week(at(8, 8), TUESDAY, "UTC")
    return build(route, "management", week, alerts, history(), timedelta(days=2))


def keys(items: tuple[Item, ...]) -> list[str]:
    return [i.key.split("/")[-1] for i in items]


def test_content_of_the_scripted_week() -> None:
    """Tue 3 Nov 08:00 to Tue 10 Nov 08:00: C fired (A and B fired before); A confirmed; B came
    back; C and B open, unacknowledged and past two days (overdue); the ownerless process
    listed apart; movers: B (20 extra cases reworked x 1 day) before C (3 cases x 4 days)."""
    d = content()
    assert d.week == Week(at(1, 8), at(8, 8))
    assert keys(d.fired) == ["C"]
    assert keys(d.confirmed) == ["A"]
    assert keys(d.recurred) == ["B"]
    assert keys(d.open) == ["C", "B"] and all(i.overdue for i in d.open)
    assert keys(d.governance) == ["owner"]
    assert keys(d.movers) == ["B", "C"]
    assert [i.impact.score for i in d.movers if i.impact] == [20.0, 12.0]
    assert d.confirmed[0].owner == "ana"


def test_a_route_sees_only_its_alerts() -> None:
    """A route for claims leaves payments' C out of every section."""
    d = content(RouteSettings(channels=("boss",), escalation=True, process="claims"))
    assert keys(d.fired) == [] and keys(d.open) == ["B"] and keys(d.movers) == ["B"]


def test_impact_per_rule() -> None:
    """A drift: recent cases x rise of the median (40 x 2.5); a rule without cases: none."""
    drift = alert("A", "bottleneck", "claims", at(0))
    assert impact(drift) is not None and impact(drift).score == 100.0  # type: ignore[union-attr]
    assert impact(alert("x", "conformance", "claims", at(0))) is None


HOSTILE = "<!channel> @all [click](http://evil.example) *bold* <script>x</script>\x1b[31m"


def big_digest() -> Digest:
    """Three hundred alerts in every section, each summary hostile and long."""
    many: list[Alert] = [
        replace(alert(f"S{i}", "stuck", f"proc-{i}", at(1)),
                summary=f"{HOSTILE} {'y' * 400}", severity=Severity.CRITICAL)
        for i in range(300)]
    items = tuple(Item(a.key, a.process, a.rule, a.severity.value, a.summary, HOSTILE, at(1),
                       True, impact(a)) for a in many)
    week = scheduled_week(at(8, 8), TUESDAY, "UTC")
    return Digest("management", week, items, items, items, items, items, items)


@pytest.mark.parametrize("kind", ["slack", "teams", "mattermost", "googlechat"])
def test_every_chat_format_stays_within_its_limits(kind: str) -> None:
    """Slack: at most 50 blocks, 3,000 characters a section; Teams: 28 KB; Mattermost: 4,000
    characters; Google Chat: 100 widgets, 32,000 bytes; each section says how many more."""
    body = render(big_digest(), kind, "a" * 64)
    sent = encode(body)
    if kind == "slack":
        assert len(body["blocks"]) <= slack.MAX_BLOCKS
        assert all(len(b["text"]["text"]) <= slack.MAX_SECTION
                   for b in body["blocks"] if b["type"] == "section")
    elif kind == "teams":
        assert len(sent) <= teams.MAX_BYTES
    elif kind == "mattermost":
        assert len(body["text"]) <= mattermost.MAX_TEXT
    else:
        widgets = sum(len(s["widgets"]) for s in body["cardsV2"][0]["card"]["sections"])
        assert widgets <= googlechat.MAX_WIDGETS and len(sent) <= googlechat.MAX_BYTES
    text = sent.decode()
    assert "more" in text and "300" in text


@pytest.mark.parametrize(("kind", "raw", "inert"), [
    ("slack", "<!channel>", "&lt;!channel&gt;"),
    ("teams", "[click](http", "\\\\[click\\\\]"),
    ("mattermost", "@all", "@\u200ball"),
    ("googlechat", "<script>", "&lt;script&gt;")])
def test_event_text_is_escaped_for_each_platform(kind: str, raw: str, inert: str) -> None:
    """A summary with a mention, a link, markup and an escape character reaches no platform
    live: each platform's own escaping applies, and control characters are shown as escapes."""
    text = encode(render(big_digest(), kind, "a" * 64)).decode()
    assert raw not in text
    assert inert in text
    assert "\x1b" not in text


def test_webhook_and_kafka_carry_the_digest_as_data() -> None:
    """The generic webhook gets the digest's JSON with its id; Kafka a CloudEvent of type
    backlight.digest.weekly whose subject is the route."""
    d = content()
    hook = render(d, "webhook", "b" * 64)
    assert hook["id"] == "b" * 64 and [i["key"] for i in hook["movers"]] == [
        "rework/claims/B", "stuck/payments/C"]
    event = render(d, "kafka", "c" * 64)
    assert (event["type"], event["subject"], event["id"]) == (
        "backlight.digest.weekly", "management", "c" * 64)
    assert json.loads(encode(event))["data"]["confirmed"][0]["key"] == "bottleneck/claims/A"
