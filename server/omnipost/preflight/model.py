"""Preflight value types: the resolved target a check reads, the rule record, the violation."""

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from omnipost.domain import Platform
from omnipost.media.probe import MediaFacts
from omnipost.preflight.text import Unit

Severity = Literal["error", "warning"]
# When a rule can be decided: "shallow" rules are pure and run on every validate/publish;
# the others need the network (deep), this server's post history, a connect flow, an API key,
# or an upstream answer.
Stage = Literal["shallow", "deep", "history", "connect", "auth", "upstream"]


@dataclass(frozen=True)
class MediaRef:
    """One attachment after resolution: where it came from and, when known, its probed facts."""

    index: int
    source: Literal["mediaId", "url", "bytesBase64"]
    alt_text: str | None
    facts: MediaFacts | None  # None: not probed (a URL before the deep check) or unknown id
    media_id: str | None = None
    url: str | None = None
    unknown: bool = False  # a mediaId that resolves to nothing in scope
    # A platform that fetches media by URL can be handed one (a media host is configured, or the file came from a
    # public URL): media/host.py. Only meaningful for a mediaId; a url item is its own public URL.
    public_url: bool = True
    inline: str | None = field(default=None, repr=False, compare=False)  # the base64 payload, kept for storing it


@dataclass(frozen=True)
class AccountInfo:
    """What preflight needs to know about a connected account."""

    id: str
    platform: Platform
    handle: str | None = None
    health: str = "active"
    defaults: dict[str, Any] = field(default_factory=lambda: {})
    adapter: str | None = None  # "sandbox" for a sandbox account; None = the platform's own adapter


@dataclass(frozen=True)
class ResolvedTarget:
    """One target with defaults, per-platform overrides and its own values folded together."""

    index: int
    platform: Platform
    account: AccountInfo | None
    text: str
    media: tuple[MediaRef, ...]
    first_comment: str | None
    thread: tuple[str, ...]
    title: str | None
    visibility: str | None
    options: dict[str, Any]  # this platform's option fields, merged
    foreign_options: tuple[str, ...] = ()  # option objects given for another platform

    @property
    def path(self) -> str:
        """JSON path of this target in the request."""
        return f"targets[{self.index}]"


@dataclass(frozen=True)
class Violation:
    """One failed rule for one target, with the numbers the remediation quotes."""

    rule_id: str
    path: str
    message: str
    remediation: str
    actual: Any = None
    limit: Any = None
    severity: Severity = "error"


Check = Callable[[ResolvedTarget], Iterable[Violation]]


@dataclass(frozen=True)
class Rule:
    """A documented platform rule: the catalogue entry and, for shallow rules, its check."""

    id: str
    summary: str
    why: str
    remediation: str  # generic remediation; a violation's remediation carries the numbers
    doc_url: str
    source: str
    checked: str  # ISO date the limit was last checked against the source
    limit: Any = None
    unit: str | None = None
    stage: Stage = "shallow"
    severity: Severity = "error"
    example_fail: dict[str, Any] | None = None
    example_pass: dict[str, Any] | None = None
    check: Check | None = None

    @property
    def platform(self) -> str:
        """The rule id's platform prefix (`media` for generic rules)."""
        return self.id.split(".", 1)[0]


@dataclass(frozen=True)
class PlatformRules:
    """Everything omnipost believes about one platform's limits, with where it came from."""

    platform: Platform
    source: str
    checked: str
    text_unit: Unit
    text_limit: int
    rules: tuple[Rule, ...]
    supports_thread: bool = False
    supports_first_comment: bool = False
    supports_title: bool = False
    # generic visibility -> the platform's own value; a missing key is unsupported
    visibility: dict[str, str] = field(default_factory=lambda: {"public": "public"})
    # Posts one account may publish per rolling 24 h (PRODUCT §6); None = no cap omnipost enforces.
    # The scheduler defers a due post past the cap instead of letting the platform refuse it.
    daily_post_cap: int | None = None
    daily_post_cap_source: str | None = None
    daily_post_cap_checked: str | None = None  # ISO date the cap was last checked against its source
    # A target's text measure when it depends on the target (a Mastodon account's instance sets its own limit and URL
    # length, and the content warning counts): (unit, length, limit). None: `text_unit` and `text_limit`.
    measure: Callable[[ResolvedTarget], tuple[Unit, int, int]] | None = None

    def measure_of(self, t: ResolvedTarget) -> tuple[Unit, int, int]:
        """(unit, length, limit) of the target's text as this platform counts it (validate_post's `measure`)."""
        if self.measure is not None:
            return self.measure(t)
        return self.text_unit, self.text_unit.count(t.text), self.text_limit
