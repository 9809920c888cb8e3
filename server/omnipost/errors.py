"""The error taxonomy. Every error the server returns has the PRODUCT.md §3 shape.

    AppError                      .code (public, stable), .rule, .remediation, .retryable
    ├── InputError                the request can't be served as given; a smarter model could fix it
    │   ├── ValidationFailedError validation_failed: shape or field value; rule = JSON path
    │   ├── PreflightError        preflight_failed: .violations (every one of every target)
    │   ├── NotFoundError         not_found: unknown id, or outside the caller's scope
    │   └── MediaError            validation_failed: bytes unreadable or unsupported
    ├── ConflictError             idempotency_conflict: key reused with another body, or still running
    ├── UnauthenticatedError      unauthenticated: a network transport got no valid API key (HTTP 401)
    ├── UnauthorizedError         unauthorized: authentic key, action not allowed (profile.scope_mismatch)
    ├── RateLimitedError          rate_limited: the caller's own per-key limit; .retry_after
    ├── ConfigError               platform not configured / credentials missing: the user must act
    ├── ConnectError              connect_failed: the tokens are fine but name no account to connect (no Facebook
    │                             Page, no linked Instagram business account, the pageId asked for is not theirs);
    │                             rule says which (e.g. facebook.connect.no_page); the user acts on the platform
    ├── PlatformError             raised only by adapters; .status, .platform_response (truncated, redacted)
    │   ├── PlatformAuthError     platform_auth_failed: the token was refused (missing/expired/revoked); reconnect
    │   ├── PlatformForbiddenError platform_forbidden: permission/scope refusal; the account stays healthy
    │   ├── PlatformDuplicateError platform_duplicate: the platform refused duplicate content; permanent
    │   ├── PlatformRejectedError platform_rejected: the platform refused the content; permanent
    │   ├── PlatformRateLimitError platform_unavailable (retryable) with .retry_after
    │   ├── PlatformUnavailableError platform_unavailable: 5xx on a read, nothing sent (connect failure); retryable
    │   └── UnknownOutcomeError   platform_outcome_unknown: a write sent, then 5xx/reset/timeout; never retried blind
    └── InternalError             internal_error: our bug; carries only a request id

Classes carry attributes, not positional args, and each maps to exactly one public code.
`to_error_object()` is the only way an error leaves the process, so no traceback, local
path or secret can ride along. A value from the request is quoted through `echo()`, and
ErrorObject bounds every text field, so a huge input never comes back whole.
"""

from typing import Any

from pydantic import BaseModel, Field, field_validator

ECHO_LIMIT = 200  # characters of a request value quoted in an error
TEXT_LIMIT = 1000  # characters of any one text field of an error object


def echo(value: object, limit: int = ECHO_LIMIT) -> str:
    """`value` as an error quotes it: whole when short, else its first `limit` characters and its length."""
    text = value if isinstance(value, str) else str(value)
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(text)} characters)"


Scalar = int | float | str | bool
Measured = Scalar | list[Scalar]


class ErrorObject(BaseModel):
    """The public error shape (PRODUCT.md §3), identical wherever an error is returned."""

    code: str = Field(description="Stable error code, e.g. preflight_failed or validation_failed.")
    message: str = Field(description="What went wrong, in one sentence.")
    rule: str | None = Field(
        default=None,
        description="Rule id (preflight) or JSON path of the offending field (validation).",
    )
    platformResponse: dict[str, Any] | str | None = Field(default=None, description="Raw upstream response, when one exists.")
    remediation: str | None = Field(default=None, description="What to change so the request succeeds.")
    docUrl: str | None = Field(default=None, description="Platform documentation for the rule.")
    ruleUrl: str | None = Field(default=None, description="MCP resource URI explaining the rule.")
    retryable: bool = Field(default=False, description="Whether the same request may succeed later.")
    requestId: str | None = Field(default=None, description="Server request id, quoted in bug reports.")
    retryAfter: float | None = Field(default=None, description="Seconds to wait before retrying (rate limits).")
    path: str | None = Field(default=None, description="JSON path of the offending value in the request, when one exists.")
    actual: Measured | None = Field(default=None, description="The measured value that broke the rule (e.g. 317).")
    limit: Measured | None = Field(default=None, description="The limit it broke (e.g. 300).")
    details: list["ErrorObject"] | None = Field(
        default=None, description="Every individual violation, when the error aggregates several."
    )

    @field_validator("message", "rule", "remediation", "path", "actual")
    @classmethod
    def _bounded(cls, value: Any) -> Any:
        """Whatever a message quotes, the field stays under TEXT_LIMIT characters (plus the length note)."""
        return echo(value, TEXT_LIMIT) if isinstance(value, str) else value


class AppError(Exception):
    """Base of every error omnipost raises on purpose."""

    code = "internal_error"
    retryable = False

    def __init__(
        self,
        message: str,
        *,
        rule: str | None = None,
        remediation: str | None = None,
        doc_url: str | None = None,
        rule_url: str | None = None,
        platform_response: Any | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.rule = rule
        self.remediation = remediation
        self.doc_url = doc_url
        self.rule_url = rule_url
        self.platform_response = platform_response

    def to_error_object(self, request_id: str | None = None) -> ErrorObject:
        """Render this error as the public §3 object."""
        return ErrorObject(
            code=self.code,
            message=self.message,
            rule=self.rule,
            platformResponse=self.platform_response,
            remediation=self.remediation,
            docUrl=self.doc_url,
            ruleUrl=self.rule_url,
            retryable=self.retryable,
            requestId=request_id,
        )


class InputError(AppError):
    """The request cannot be served as given; the caller can fix it."""

    code = "validation_failed"


class ValidationFailedError(InputError):
    """A field has the wrong shape or value; `rule` is its JSON path (e.g. `targets[2].text`)."""

    code = "validation_failed"

    def __init__(self, message: str, *, path: str, remediation: str | None = None) -> None:
        super().__init__(message, rule=path, remediation=remediation)
        self.path = path


class PreflightError(InputError):
    """One or more documented platform rules failed before any upstream call."""

    code = "preflight_failed"

    def __init__(self, violations: list[ErrorObject]) -> None:
        count = len(violations)
        first = violations[0] if violations else None
        super().__init__(
            f"{count} preflight rule{'s' if count != 1 else ''} failed; nothing was published.",
            rule=first.rule if first else None,
            remediation=first.remediation if first else None,
        )
        self.violations = violations

    def to_error_object(self, request_id: str | None = None) -> ErrorObject:
        obj = super().to_error_object(request_id)
        obj.details = self.violations
        return obj


class NotFoundError(InputError):
    """The resource does not exist or is outside the caller's scope (never says which)."""

    code = "not_found"


class MediaError(InputError):
    """Media bytes could not be read or are of an unsupported kind."""

    code = "validation_failed"


class ConfigError(AppError):
    """The server is not configured for this action; the user must act."""

    code = "validation_failed"


class ConnectError(AppError):
    """A connect reached the platform with valid tokens, but they name no account omnipost can connect (no Facebook
    Page, no Instagram professional account linked to a Page, or not the Page asked for). `rule` says which; the user
    acts on the platform (create or link the account, grant the Page) and connects again."""

    code = "connect_failed"


class ConflictError(AppError):
    """The idempotency key was used with another body, or its first request is still running."""

    code = "idempotency_conflict"


class UnauthenticatedError(AppError):
    """A network transport got no API key, or one that is unknown, malformed or revoked (HTTP 401)."""

    code = "unauthenticated"


class UnauthorizedError(AppError):
    """An authentic caller asked for something its key does not allow."""

    code = "unauthorized"


class RateLimitedError(AppError):
    """The caller's own per-key rate limit."""

    code = "rate_limited"
    retryable = True

    def __init__(self, message: str, *, retry_after: float, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.retry_after = retry_after

    def to_error_object(self, request_id: str | None = None) -> ErrorObject:
        obj = super().to_error_object(request_id)
        obj.retryAfter = self.retry_after
        return obj


class PlatformError(AppError):
    """Raised only by adapters (through platforms/calls.py); carries the upstream answer."""

    code = "platform_unavailable"

    def __init__(self, message: str, *, status: int | None = None, retry_after: float | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.status = status
        self.retry_after = retry_after

    def to_error_object(self, request_id: str | None = None) -> ErrorObject:
        obj = super().to_error_object(request_id)
        obj.retryAfter = self.retry_after
        return obj


class PlatformAuthError(PlatformError):
    """The account's token is missing, expired or revoked: the user must reconnect."""

    code = "platform_auth_failed"


class PlatformForbiddenError(PlatformError):
    """The platform refused the action for lack of permission or scope; the token itself is fine (no reconnect)."""

    code = "platform_forbidden"


class PlatformDuplicateError(PlatformError):
    """The platform refused the content as a duplicate of a post the account already has."""

    code = "platform_duplicate"


class PlatformRejectedError(PlatformError):
    """The platform refused the content; retrying the same content will not help."""

    code = "platform_rejected"


class PlatformUnavailableError(PlatformError):
    """Upstream down, throttled or 5xx; the request never took effect; retry later."""

    code = "platform_unavailable"
    retryable = True


class PlatformRateLimitError(PlatformUnavailableError):
    """The platform throttled us (429); retry after `retry_after` seconds."""


class UnknownOutcomeError(PlatformError):
    """The request reached the platform but no definite answer came back; reconcile, never re-post blind."""

    code = "platform_outcome_unknown"


class InternalError(AppError):
    """An unexpected failure; only a request id is reported."""

    code = "internal_error"
