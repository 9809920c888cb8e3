"""Platform API versions (PRODUCT §10): the pinned data, the platform_versions tool, version.deprecated once."""

import logging
from datetime import date, datetime, timedelta, timezone
from typing import Any

import pytest
from mcp import Client
from sqlmodel import select
from toolresult import ok

from omnipost.app import OmnipostServer
from omnipost.clock import FixedClock
from omnipost.store.db import new_id
from omnipost.store.models import Profile, WebhookDelivery, WebhookEndpoint
from omnipost.versions import VERSIONS, ApiVersion, check_versions, daily_notice, listing, status_of, webhook_emitter

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=timezone.utc)
SOON = ApiVersion("linkedin", "LinkedIn-Version header", "202512", date(2026, 12, 10), source="test", checked="2026-11-24")
LATER = ApiVersion("facebook", "Graph API", "v24.0", date(2028, 2, 18), source="test", checked="2026-11-24")
NONE = ApiVersion("x", "X API", "v2", None, source="test", checked="2026-11-24")


def test_every_adapter_declares_a_version_with_source_and_checked_date() -> None:
    platforms = [v.platform for v in VERSIONS]
    assert sorted(platforms) == sorted({"bluesky", "x", "linkedin", "facebook", "instagram", "threads", "pinterest", "mastodon", "sandbox"})
    by = {v.platform: v for v in VERSIONS}
    assert by["facebook"].version == by["instagram"].version == "v24.0"
    assert by["facebook"].sunset == date(2028, 2, 18)
    assert by["threads"].version == "v1.0" and by["pinterest"].version == "v5" and by["x"].version == "v2"
    assert by["mastodon"].version == "4.7.0" and by["mastodon"].sunset is None  # v1/v2 paths, no published sunset
    assert by["linkedin"].version.isdigit() and len(by["linkedin"].version) == 6 and by["linkedin"].sunset is not None
    for v in VERSIONS:
        assert v.source and date.fromisoformat(v.checked)
        assert v.confirmed or v.note, f"{v.platform}: an unconfirmed value must say why"


@pytest.mark.real_date  # the one test that must see the real date: left out of the run with the clock moved ahead
def test_no_pinned_version_is_past_its_sunset_today() -> None:
    """Uses the REAL current date on purpose: a stale pin breaks CI instead of breaking publishing."""
    now = datetime.now(timezone.utc)
    stale = [f"{v.platform} {v.version} (sunset {v.sunset})" for v in VERSIONS if status_of(v, now)[0] == "past_sunset"]
    assert stale == [], f"pinned API versions past their sunset: {stale}; move to a newer version in versions.py"


def test_status_and_days_left() -> None:
    assert status_of(NONE, NOW) == ("ok", None)
    assert status_of(LATER, NOW)[0] == "ok"
    assert status_of(SOON, NOW) == ("deprecated_soon", 15)
    assert status_of(SOON, datetime(2026, 11, 9, tzinfo=timezone.utc)) == ("ok", 31)
    assert status_of(SOON, datetime(2026, 11, 10, tzinfo=timezone.utc)) == ("deprecated_soon", 30)  # within 30 days
    assert status_of(SOON, datetime(2026, 12, 10, tzinfo=timezone.utc))[0] == "past_sunset"
    assert status_of(SOON, datetime(2026, 12, 11, tzinfo=timezone.utc)) == ("past_sunset", -1)


@pytest.mark.anyio
async def test_check_versions_emits_once_per_version_within_30_days() -> None:
    events: list[tuple[str, dict[str, Any]]] = []

    async def emit(event: str, data: dict[str, Any]) -> None:
        events.append((event, data))

    sent: set[tuple[str, str]] = set()
    versions = (SOON, LATER, NONE)
    early = datetime(2026, 11, 1, tzinfo=timezone.utc)  # 39 days before SOON's sunset
    assert await check_versions(early, emit, sent=sent, versions=versions) == []
    assert events == []
    assert await check_versions(NOW, emit, sent=sent, versions=versions) == [SOON]
    assert [e for e, _ in events] == ["version.deprecated"]
    data = events[0][1]
    assert data["platform"] == "linkedin" and data["version"] == "202512" and data["daysLeft"] == 15
    assert data["eventKey"] == "version.deprecated:linkedin:202512"
    assert data["sunsetAt"].startswith("2026-12-10")
    # later checks (even past the sunset) do not repeat it
    assert await check_versions(NOW + timedelta(days=1), emit, sent=sent, versions=versions) == []
    assert await check_versions(NOW + timedelta(days=60), emit, sent=sent, versions=versions) == []
    assert len(events) == 1


@pytest.mark.anyio
async def test_a_failed_emit_is_retried_on_the_next_check() -> None:
    calls = 0

    async def flaky(event: str, data: dict[str, Any]) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("db down")

    sent: set[tuple[str, str]] = set()
    with pytest.raises(RuntimeError):
        await check_versions(NOW, flaky, sent=sent, versions=(SOON,))
    assert await check_versions(NOW, flaky, sent=sent, versions=(SOON,)) == [SOON]


@pytest.mark.anyio
async def test_the_webhook_delivery_log_remembers_across_restarts(server: OmnipostServer, client: Client) -> None:
    rt = server.runtime
    await rt.wait_ready()
    async with rt.db.session() as s:
        profile = (await s.exec(select(Profile))).first()
        assert profile is not None
        s.add(WebhookEndpoint(id=new_id("whk"), profile_id=profile.id, url="https://hooks.example.com/x",
                              events=["version.deprecated"], secret=b"x", created_at=NOW))
        await s.commit()
    emit = webhook_emitter(rt.db, rt.webhooks)
    assert await check_versions(NOW, emit, sent=set(), versions=(SOON,)) == [SOON]
    # a new process (empty in-memory set) checks again: the delivery log already has the event
    assert await check_versions(NOW, emit, sent=set(), versions=(SOON,)) == [SOON]
    async with rt.db.session() as s:
        rows = list((await s.exec(select(WebhookDelivery).where(WebhookDelivery.event_type == "version.deprecated"))).all())
    assert len(rows) == 1
    assert rows[0].payload["data"]["eventKey"] == "version.deprecated:linkedin:202512"


@pytest.mark.anyio
async def test_the_sunset_warning_is_logged_once_a_day_not_per_start(server: OmnipostServer, client: Client,
                                                                      caplog: pytest.LogCaptureFixture) -> None:
    rt = server.runtime
    await rt.wait_ready()
    emit = webhook_emitter(rt.db, rt.webhooks)

    async def start(now: datetime) -> int:
        """A process start: a fresh in-memory memory, the installation's notices table; the warnings it logged."""
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="omnipost.versions"):
            await check_versions(now, emit, sent=set(), versions=(SOON, LATER), remind=daily_notice(rt.db))
        return sum("linkedin 202512" in r.getMessage() for r in caplog.records)

    assert [await start(NOW), await start(NOW + timedelta(hours=2)), await start(NOW + timedelta(hours=23))] == [1, 0, 0]
    assert await start(NOW + timedelta(days=1)) == 1
    assert await start(NOW + timedelta(days=30)) == 1  # past the sunset: still once a day


@pytest.mark.anyio
async def test_platform_versions_tool_lists_every_platform(client: Client, clock: FixedClock) -> None:
    result = ok(await client.call_tool("platform_versions", {}))
    rows = {r["platform"]: r for r in result["versions"]}
    assert set(rows) == {v.platform for v in VERSIONS}
    fb = rows["facebook"]
    assert fb["version"] == "v24.0" and fb["status"] == "ok" and fb["sunsetAt"].startswith("2028-02-18")
    assert fb["daysLeft"] == (datetime(2028, 2, 18, tzinfo=timezone.utc) - clock.now()).days
    assert rows["x"]["sunsetAt"] is None and rows["x"]["daysLeft"] is None and rows["x"]["status"] == "ok"
    for row in listing(clock.now()):
        assert {k: rows[row["platform"]][k] for k in ("version", "daysLeft", "status", "confirmed", "source", "checked")} == \
               {k: row[k] for k in ("version", "daysLeft", "status", "confirmed", "source", "checked")}
