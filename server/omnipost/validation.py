"""Validation as a service: request-level checks, resolution, preflight and the per-target preview.

`validate_post` answers with every violation of every target; later tools (publish, schedule)
reuse `ValidateResult` and `check_request` so a request is judged the same way everywhere.
"""

from datetime import datetime, timedelta, timezone
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, Field

from omnipost.clock import Clock
from omnipost.errors import ErrorObject, ValidationFailedError, echo
from omnipost.platforms import PREVIEWS
from omnipost.preflight.engine import AccountLookup, MediaLookup, resolve, run_preflight
from omnipost.preflight.model import ResolvedTarget, Violation
from omnipost.preflight.rules import CATALOGUE, RULES
from omnipost.request import PostRequest


class Measure(BaseModel):
    """The target's text as its platform counts it."""

    unit: str = Field(description="Counting unit, e.g. graphemes or weighted characters (twitter-text v3).")
    length: int
    limit: int


class Warning_(BaseModel):
    """A non-blocking note about a target."""

    code: str
    message: str
    rule: str | None = None
    path: str | None = None
    remediation: str | None = None


class TargetResult(BaseModel):
    """Validation of one target, in request order."""

    index: int
    platform: str
    accountId: str | None
    valid: bool
    measure: Measure
    errors: list[ErrorObject]
    warnings: list[Warning_]
    preview: dict[str, Any] = Field(description="The exact request body the adapter would send upstream for this target.")


class ValidateResult(BaseModel):
    """Every violation of every target; `valid` is true only when no target has an error."""

    valid: bool
    results: list[TargetResult]


def rule_uri(rule_id: str) -> str:
    """The MCP resource that explains a rule."""
    return f"omnipost://rules/{rule_id}"


def violation_error(v: Violation) -> ErrorObject:
    """A violation as the public error object (PRODUCT.md §3), with the rule's doc link."""
    rule = CATALOGUE.get(v.rule_id)
    return ErrorObject(
        code="preflight_failed",
        message=v.message,
        rule=v.rule_id,
        remediation=v.remediation,
        docUrl=rule.doc_url if rule else None,
        ruleUrl=rule_uri(v.rule_id),
        retryable=False,
        path=v.path,
        actual=v.actual,
        limit=v.limit,
    )


def check_request(req: PostRequest, clock: Clock) -> Literal["immediate", "scheduled", "draft"]:
    """Request-level rules that no single target owns; returns the mode.

    Raises:
        ValidationFailedError: conflicting modes, an unparseable time or zone, a time not in the future.
    """
    if req.publishNow and req.scheduledAt is not None:
        raise ValidationFailedError(
            "publishNow and scheduledAt cannot both be set.",
            path="mode_conflict",
            remediation="Remove publishNow to schedule, or remove scheduledAt to publish now.",
        )
    if req.draft and (req.publishNow or req.scheduledAt is not None):
        raise ValidationFailedError(
            "draft cannot be combined with publishNow or scheduledAt.",
            path="mode_conflict",
            remediation="Store a draft, or publish/schedule; not both.",
        )
    zone: ZoneInfo | timezone = timezone.utc
    if req.timezone is not None:
        try:
            zone = ZoneInfo(req.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValidationFailedError(
                f"'{req.timezone}' is not an IANA time zone.",
                path="timezone",
                remediation="Use an IANA name such as Europe/Paris or America/New_York, or leave timezone out for UTC.",
            ) from None
    if req.scheduledAt is not None:
        when = parse_time(req.scheduledAt, zone)
        now = clock.now()
        if when < now + timedelta(seconds=1):
            raise ValidationFailedError(
                f"scheduledAt {when.isoformat()} is not at least 1 second in the future (now {now.isoformat()}).",
                path="scheduledAt",
                remediation="Pick a later time, or publish now.",
            )
        return "scheduled"
    return "draft" if req.draft else "immediate"


TIME_REMEDIATION = "Use a time like 2026-12-01T09:30:00Z or 2026-12-01T09:30:00 with timezone."


def parse_time(value: str, zone: ZoneInfo | timezone) -> datetime:
    """ISO-8601 instant; a time without an offset is read in `zone`.

    Raises:
        ValidationFailedError: the value is not ISO-8601, or its instant is not within years 1-9999 in UTC.
    """
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00") if value.endswith("Z") else value)
    except ValueError:
        raise ValidationFailedError(
            f"scheduledAt '{echo(value)}' is not an ISO-8601 time.",
            path="scheduledAt",
            remediation=TIME_REMEDIATION,
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=zone)
    try:
        return parsed.astimezone(timezone.utc)
    except OverflowError:  # e.g. 9999-12-31T23:59:59-01:00 is in year 10000 in UTC
        raise ValidationFailedError(
            f"scheduledAt '{value}' is outside the range of times (years 1 to 9999 in UTC).",
            path="scheduledAt",
            remediation=TIME_REMEDIATION,
        ) from None


def judge_target(t: ResolvedTarget, early: list[Violation]) -> TargetResult:
    """Run preflight on one resolved target and render its result."""
    unit, length, limit = RULES[t.platform].measure_of(t)
    found = early + run_preflight(t)
    errors = [violation_error(v) for v in found if v.severity == "error"]
    warnings = [
        Warning_(code=v.rule_id, message=v.message, rule=v.rule_id, path=v.path, remediation=v.remediation)
        for v in found
        if v.severity == "warning"
    ]
    return TargetResult(
        index=t.index,
        platform=t.platform.value,
        accountId=t.account.id if t.account else None,
        valid=not errors,
        measure=Measure(unit=unit.name, length=length, limit=limit),
        errors=errors,
        warnings=warnings,
        preview=PREVIEWS[t.platform](t),
    )


async def validate_request(req: PostRequest, *, clock: Clock, accounts: AccountLookup, media: MediaLookup) -> ValidateResult:
    """Check the whole request and report every violation of every target.

    Raises:
        ValidationFailedError: request-level problems (mode, time, zone).
        NotFoundError: an accountId that does not exist in scope.
    """
    check_request(req, clock)
    resolution = await resolve(req, accounts, media)
    results = [judge_target(t, resolution.early.get(t.index, [])) for t in resolution.targets]
    return ValidateResult(valid=all(r.valid for r in results), results=results)
