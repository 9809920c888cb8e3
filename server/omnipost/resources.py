"""Read-only resources: the rule catalogue and one resource per rule."""

import json
from typing import TYPE_CHECKING

from mcp.server.mcpserver.resources import FunctionResource

from omnipost.validation import rule_uri
from omnipost.preflight.render import rule_markdown
from omnipost.preflight.rules import CATALOGUE

if TYPE_CHECKING:
    from omnipost.app import OmnipostServer

CATALOGUE_URI = "omnipost://rules"


def catalogue_json() -> str:
    """Every rule as JSON (id, summary, limit, unit, stage, severity, uri)."""
    from omnipost.tools.drafting import summarize

    rules = [summarize(r).model_dump() for r in sorted(CATALOGUE.values(), key=lambda r: r.id)]
    return json.dumps({"count": len(rules), "rules": rules}, ensure_ascii=False)


def register_resources(server: "OmnipostServer") -> None:
    """Register the catalogue and each rule (rendered lazily, when read)."""
    server.add_resource(
        FunctionResource(uri=CATALOGUE_URI, name="preflight-rules", title="Preflight rule catalogue",
                         description="Every rule omnipost checks, as JSON.", mime_type="application/json", fn=catalogue_json)
    )
    for rule in CATALOGUE.values():
        server.add_resource(
            FunctionResource(uri=rule_uri(rule.id), name=rule.id, title=rule.id, description=rule.summary,
                             mime_type="text/markdown", fn=lambda r=rule: rule_markdown(r))
        )
