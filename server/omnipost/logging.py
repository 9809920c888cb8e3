"""stderr-only logging: stdout belongs to the MCP stdio transport."""

import logging
import re
import sys

# Bearer tokens, app passwords and API keys must never reach a log line.
_SECRETS = re.compile(
    r"(?i)(authorization[=:]\s*(?:bearer\s+|basic\s+)?|bearer\s+|password[=:]\s*|api[_-]?key[=:]\s*|"
    r"(?:access|refresh)_?(?:jwt|token)[\"']?[=:]\s*[\"']?|op_(?:live|test)_)[^\s,;\"']+"
)


def redact(message: str) -> str:
    """`message` with anything that looks like a credential replaced by [redacted]."""
    return _SECRETS.sub(lambda m: m.group(1) + "[redacted]", message)


class RedactSecrets(logging.Filter):
    """Replace anything that looks like a credential with [redacted]."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = redact(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


def configure(level: str) -> None:
    """Send omnipost's (and the SDK's) logs to stderr, redacted."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactSecrets())
    handler.setLevel(level.upper())  # a client may lower the "omnipost" logger for its own records (clientlog.py)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # One line per upstream request is noise at INFO; omnipost logs its own outcomes.
    for noisy in ("httpx2", "httpcore", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
