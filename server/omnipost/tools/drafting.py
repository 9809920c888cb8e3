"""Tools that check a post without publishing: validate_post and the rule catalogue."""

from typing import TYPE_CHECKING, Annotated, Any

from mcp.types import ToolAnnotations
from pydantic import BaseModel, Field

from omnipost.domain import PLATFORM_ALIASES, RULE_PREFIX
from omnipost.validation import ValidateResult, rule_uri
from omnipost.errors import Measured, NotFoundError, ValidationFailedError, echo
from omnipost.preflight.model import Rule
from omnipost.preflight.rules import CATALOGUE, URL_ONLY_MEDIA, closest_rules, find_rule, generic
from omnipost.request import ValidateRequest

if TYPE_CHECKING:
    from omnipost.app import OmnipostServer
    from omnipost.runtime import Runtime


class RuleSummary(BaseModel):
    """One catalogue entry."""

    id: str
    platform: str
    summary: str
    limit: Measured | None = None
    unit: str | None = None
    stage: str = Field(description="shallow (checked by validate_post), deep (at publish: fetches URLs), connect, auth or upstream.")
    severity: str
    uri: str


class RuleList(BaseModel):
    """Rules in the catalogue, sorted by id."""

    count: int
    rules: list[RuleSummary]


class RuleExplanation(BaseModel):
    """Everything omnipost knows about one rule."""

    id: str
    platform: str
    summary: str
    limit: Measured | None = None
    unit: str | None = None
    why: str
    remediation: str
    stage: str
    severity: str
    docUrl: str
    source: str
    checked: str = Field(description="Date the limit was last checked against its source.")
    exampleFail: dict[str, Any] | None = Field(default=None, description="A target fragment that breaks the rule.")
    examplePass: dict[str, Any] | None = Field(default=None, description="A target fragment that satisfies it.")
    uri: str


def summarize(rule: Rule) -> RuleSummary:
    """The catalogue line for a rule."""
    return RuleSummary(id=rule.id, platform=rule.platform, summary=rule.summary, limit=rule.limit, unit=rule.unit,
                       stage=rule.stage, severity=rule.severity, uri=rule_uri(rule.id))


def explain(rule: Rule) -> RuleExplanation:
    """The full explanation of a rule."""
    return RuleExplanation(id=rule.id, platform=rule.platform, summary=rule.summary, limit=rule.limit, unit=rule.unit, why=rule.why,
                           remediation=rule.remediation, stage=rule.stage, severity=rule.severity, docUrl=rule.doc_url, source=rule.source,
                           checked=rule.checked, exampleFail=rule.example_fail, examplePass=rule.example_pass, uri=rule_uri(rule.id))


def rules_for(platform: str | None) -> list[Rule]:
    """The rules that apply to one platform (its own plus the generic ones), or all of them.

    Raises:
        ValidationFailedError: an unknown platform name.
    """
    if platform is None:
        return sorted(CATALOGUE.values(), key=lambda r: r.id)
    p = PLATFORM_ALIASES.get(platform.strip().lower())
    if p is None:
        raise ValidationFailedError(f"Unknown platform '{echo(platform)}'.", path="platform",
                                    remediation=f"Use one of {', '.join(sorted(PLATFORM_ALIASES))}.")
    own = [r for r in CATALOGUE.values() if r.platform == RULE_PREFIX[p] or (p.value in ("instagram", "threads") and r.platform == "meta")]
    shared = list(generic.ALL) + (list(generic.URL_ONLY) if p in URL_ONLY_MEDIA else [])
    return sorted(own + shared, key=lambda r: r.id)


def register(server: "OmnipostServer", rt: "Runtime") -> None:
    """Register validate_post, list_preflight_rules and explain_preflight_rule."""

    async def validate_post(request: ValidateRequest) -> ValidateResult:
        from omnipost.auth import current_caller

        return await rt.services.validate(current_caller(), request)

    server.add_request_tool(
        validate_post,
        param="request",
        model=ValidateRequest,
        name="validate_post",
        title="Validate a post for every target",
        description=(
            "Check a post against every rule of each target platform; nothing is published or stored. A target may "
            "name just a platform instead of an accountId. "
            "Returns per target, in order: valid, measure (length and limit as its platform counts), errors (rule id, "
            "numbers, remediation), warnings and preview (the body to send). Broken rules are a normal answer (valid: "
            "false); only a malformed request is an error (validation_failed, rule = the field's path)."
        ),
        annotations=ToolAnnotations(title="Validate a post", read_only_hint=True, destructive_hint=False,
                                    idempotent_hint=True, open_world_hint=False),
    )

    from omnipost.toolschema import register_schema_resources

    register_schema_resources(server)  # the per-platform option shapes validate_post's schema (and the others') refer to

    async def list_preflight_rules(
        platform: Annotated[str | None, Field(description="Only this platform's rules (bluesky, x, threads, ...).")] = None,
    ) -> RuleList:
        rules = [summarize(r) for r in rules_for(platform)]
        return RuleList(count=len(rules), rules=rules)

    server.add_tool(
        list_preflight_rules,
        name="list_preflight_rules",
        title="List preflight rules",
        description=(
            "List the platform rules omnipost checks before publishing (all, or one platform's plus the generic ones): id, "
            "summary, limit and unit, and stage. explain_preflight_rule explains one."
        ),
        annotations=ToolAnnotations(title="List preflight rules", read_only_hint=True, destructive_hint=False,
                                    idempotent_hint=True, open_world_hint=False),
    )

    async def explain_preflight_rule(
        rule_id: Annotated[str, Field(min_length=1, max_length=100, description="A rule id such as bluesky.text.max_graphemes.")],
    ) -> RuleExplanation:
        rule = find_rule(rule_id)
        if rule is None:
            near = closest_rules(rule_id)
            raise NotFoundError(f"There is no preflight rule '{echo(rule_id)}'.", rule="rule_id",
                                remediation=(f"Did you mean {' or '.join(near)}? " if near else "")
                                + "Call list_preflight_rules for the rule ids.")
        return explain(rule)

    server.add_tool(
        explain_preflight_rule,
        name="explain_preflight_rule",
        title="Explain a preflight rule",
        description=(
            "Explain one preflight rule (an error's `rule`): what it requires, the limit, why, how to fix a violation, a "
            "failing and a passing target fragment, and the limit's source and date checked."
        ),
        annotations=ToolAnnotations(title="Explain a preflight rule", read_only_hint=True, destructive_hint=False,
                                    idempotent_hint=True, open_world_hint=False),
    )
