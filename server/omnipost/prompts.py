"""Prompts are Markdown files in prompts/ with YAML front matter (name, title, description, arguments).

An argument may name the values completion/complete offers for it with `complete:` (see COMPLETION_KINDS and
completions.py).

The body uses `${arguments.NAME}` placeholders, the MCPB manifest's own syntax, so the file is
the single source for both the server and manifest.json.
"""

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mcp.server.mcpserver.prompts.base import Prompt, PromptArgument

if TYPE_CHECKING:
    from omnipost.app import OmnipostServer

COMPLETION_KINDS = ("platform", "thread_platform", "platform_list", "timezone")
_PLACEHOLDER = re.compile(r"\$\{arguments\.([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclass(frozen=True)
class PromptFile:
    """One prompt as written on disk."""

    name: str
    title: str
    description: str
    arguments: tuple[PromptArgument, ...]
    text: str
    completions: tuple[tuple[str, str], ...] = ()  # (argument, completion kind)


def prompts_dir() -> Path:
    """prompts/ at the repository (or bundle) root; a wheel ships a copy inside the package."""
    here = Path(__file__).resolve().parent
    for candidate in (here.parent.parent / "prompts", here / "prompts"):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError("prompts/ directory not found")


def load_prompts(directory: Path | None = None) -> list[PromptFile]:
    """Parse every prompts/*.md; raise ValueError on malformed front matter or undeclared placeholders."""
    import yaml  # only here: the server loads prompts on the first prompts/list, not at start-up

    out: list[PromptFile] = []
    for path in sorted((directory or prompts_dir()).glob("*.md")):
        raw = path.read_text(encoding="utf-8")
        if not raw.startswith("---\n"):
            raise ValueError(f"{path.name}: missing YAML front matter")
        head, body = raw[4:].split("\n---\n", 1)
        meta: dict[str, Any] = yaml.safe_load(head)
        args = tuple(
            PromptArgument(name=a["name"], description=a.get("description"), required=bool(a.get("required", False)))
            for a in meta.get("arguments", [])
        )
        completions = tuple((a["name"], a["complete"]) for a in meta.get("arguments", []) if "complete" in a)
        unknown = [kind for _, kind in completions if kind not in COMPLETION_KINDS]
        if unknown:
            raise ValueError(f"{path.name}: unknown completion kinds {unknown}; known: {list(COMPLETION_KINDS)}")
        declared = {a.name for a in args}
        used = set(_PLACEHOLDER.findall(body))
        if used - declared:
            raise ValueError(f"{path.name}: placeholders {sorted(used - declared)} are not declared arguments")
        out.append(PromptFile(name=meta["name"], title=meta.get("title", meta["name"]), description=meta["description"],
                              arguments=args, text=body.strip() + "\n", completions=completions))
    return out


def render(text: str, arguments: dict[str, Any]) -> str:
    """Fill `${arguments.x}` placeholders; an omitted optional argument becomes empty."""
    return _PLACEHOLDER.sub(lambda m: str(arguments.get(m.group(1)) or ""), text)


def register_prompts(server: "OmnipostServer") -> None:
    """Register every prompt file."""
    for p in load_prompts():
        def fn(__text: str = p.text, **kwargs: Any) -> str:
            return render(__text, kwargs)

        server.add_prompt(Prompt(name=p.name, title=p.title, description=p.description, arguments=list(p.arguments), fn=fn))
