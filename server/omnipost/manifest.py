"""manifest.json (MCPB) must list exactly the tools and prompts the server registers, and name every platform of
the registry (platforms/registry.py) in its keywords and description."""

import json
from pathlib import Path
from typing import Any

import anyio

from omnipost.config import Settings
from omnipost.prompts import load_prompts


async def registered(settings: Settings) -> tuple[dict[str, str], dict[str, Any]]:
    """Tool name -> description, prompt name -> manifest entry, from a freshly built server."""
    from omnipost.app import build_server

    server = build_server(settings)
    tools = {t.name: (t.description or "").split(". ")[0].rstrip(".") + "." for t in await server.list_tools()}
    prompts = {
        p.name: {"name": p.name, "description": p.description, "arguments": [a.name for a in p.arguments], "text": p.text}
        for p in load_prompts()
    }
    return tools, prompts


def platform_names() -> dict[str, str]:
    """Canonical id -> display name of every real platform in the registry (the sandbox is no platform to list)."""
    from omnipost.domain import DISPLAY_NAME, Platform
    from omnipost.platforms.registry import PLATFORMS

    return {p: DISPLAY_NAME[Platform(p)] for p, spec in PLATFORMS.items() if spec.real}


def manifest_drift(path: Path, settings: Settings | None = None) -> list[str]:
    """Human-readable differences between manifest.json and the server (empty = in sync)."""
    manifest: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    tools, prompts = anyio.run(registered, settings or Settings())
    out: list[str] = []
    keywords = set(manifest.get("keywords", []))
    for p, name in platform_names().items():
        if p not in keywords:
            out.append(f"platform missing from manifest keywords: {p}")
        if name not in manifest.get("description", ""):
            out.append(f"platform missing from manifest description: {name}")
    listed_tools = {t["name"] for t in manifest.get("tools", [])}
    out += [f"tool missing from manifest: {n}" for n in sorted(set(tools) - listed_tools)]
    out += [f"tool in manifest but not registered: {n}" for n in sorted(listed_tools - set(tools))]
    listed_prompts = {p["name"]: p for p in manifest.get("prompts", [])}
    out += [f"prompt missing from manifest: {n}" for n in sorted(set(prompts) - set(listed_prompts))]
    out += [f"prompt in manifest but not in prompts/: {n}" for n in sorted(set(listed_prompts) - set(prompts))]
    for name in sorted(set(prompts) & set(listed_prompts)):
        for key in ("arguments", "text"):
            if listed_prompts[name].get(key) != prompts[name][key]:
                out.append(f"prompt {name}: manifest {key} differs from prompts/{name}.md")
    return out


def render_manifest(template: dict[str, Any], settings: Settings | None = None) -> dict[str, Any]:
    """The manifest with its tools and prompts regenerated from the server (other keys kept)."""
    tools, prompts = anyio.run(registered, settings or Settings())
    keywords = list(template.get("keywords", []))
    return template | {
        "keywords": keywords + [p for p in platform_names() if p not in keywords],
        "tools": [{"name": n, "description": d} for n, d in tools.items()],
        "prompts": list(prompts.values()),
    }
