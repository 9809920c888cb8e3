"""Rule data -> prose for people and models. Nothing here is hand-written per rule."""

import json

from omnipost.preflight.model import Rule

_STAGE = {
    "shallow": "checked by validate_post and before every publish, with no network",
    "deep": "checked at publish time, when omnipost fetches the URL",
    "history": "checked before publishing, against the posts this server already sent",
    "connect": "checked when the account is connected",
    "auth": "checked against the API key of a network transport",
    "upstream": "reported by the platform while publishing",
}


def rule_markdown(rule: Rule) -> str:
    """A rule as a short Markdown page."""
    lines = [f"# {rule.id}", "", rule.summary, ""]
    if rule.limit is not None:
        lines.append(f"- **Limit:** {rule.limit}" + (f" {rule.unit}" if rule.unit else ""))
    lines += [
        f"- **When:** {_STAGE[rule.stage]}",
        f"- **Severity:** {rule.severity}",
        f"- **Source:** {rule.source} (checked {rule.checked})",
        f"- **Docs:** {rule.doc_url}",
        "",
        "## Why",
        rule.why,
        "",
        "## How to fix",
        rule.remediation,
    ]
    if rule.example_fail is not None:
        lines += ["", "## Fails", "```json", json.dumps(rule.example_fail, ensure_ascii=False), "```"]
    if rule.example_pass is not None:
        lines += ["", "## Passes", "```json", json.dumps(rule.example_pass, ensure_ascii=False), "```"]
    return "\n".join(lines) + "\n"
