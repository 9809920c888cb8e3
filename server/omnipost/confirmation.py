"""The question publish_post asks before a multi-account publish: each target (platform, handle) and the start
of what it gets, so the user confirms what will actually be sent, not a count."""

from typing import TYPE_CHECKING

from omnipost.domain import DISPLAY_NAME, Platform
from omnipost.preflight.engine import pick
from omnipost.preflight.text import graphemes

if TYPE_CHECKING:
    from omnipost.request import PostRequest
    from omnipost.runtime import Runtime

PREVIEW_GRAPHEMES = 80


def text_start(text: str | None) -> str:
    """The first PREVIEW_GRAPHEMES graphemes of a post's text on one line, quoted, with an ellipsis if there is more."""
    if not text:
        return "(no text)"
    window = text[:PREVIEW_GRAPHEMES * 16]  # 80 graphemes of any natural script; a zalgo text is cut shorter
    clusters = graphemes(window)
    start = "".join(clusters[:PREVIEW_GRAPHEMES]).replace("\r\n", " ").replace("\n", " ").replace("\r", " ")
    more = len(clusters) > PREVIEW_GRAPHEMES or len(window) < len(text)
    return '"' + start + ("…" if more else "") + '"'


async def confirmation_message(rt: "Runtime", request: "PostRequest") -> str:
    """'Publish this post to N accounts now?', then one line per account in request order.

    The accounts are looked up in the runtime's account directory within the caller's reach (tools.common.profile_of):
    one it cannot reach is listed by id as not found (the publish itself then refuses it). Each target's text is its
    own, else its platform's override, else the request's (preflight.engine.pick); one shared text is shown once.
    """
    from omnipost.accounts import ProfileDirectory
    from omnipost.tools.common import profile_of

    profile, caller = await profile_of(rt, request.profileId)
    assert rt.db is not None
    directory = ProfileDirectory(rt.accounts, rt.db, profile.id, test_mode=caller.test_mode, hosting=rt.hosting)
    pending = list(dict.fromkeys(t.accountId for t in request.targets if t.accountId))
    await directory.prime(set(pending))
    lines: list[tuple[str, str | None]] = []
    for target in request.targets:
        if target.accountId not in pending:
            continue
        pending.remove(target.accountId)  # each account once, where it first appears
        found = await directory.get_account(target.accountId, profile.id)
        if found is None:
            lines.append((f"{target.accountId} (not found)", target.text or request.text))
            continue
        platform = Platform(found.platform)
        name = DISPLAY_NAME.get(platform, platform.value) + (" (sandbox)" if found.adapter == "sandbox" else "")
        override = request.platforms.for_platform(platform) if request.platforms is not None else None
        text = pick("text", target, override, request)  # what resolve() gives the target: the same layers
        lines.append((f"{name} {found.handle}", text))
    head = f"Publish this post to {len(lines)} accounts now? It cannot be unsent automatically."
    if len({text for _, text in lines}) == 1:
        return "\n".join([head, *(f"- {who}" for who, _ in lines), f"Text: {text_start(lines[0][1])}"])
    return "\n".join([head, *(f"- {who}: {text_start(text)}" for who, text in lines)])
