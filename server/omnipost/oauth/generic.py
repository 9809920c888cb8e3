"""Which post-exchange step a provider runs, and the two generic ones.

The platforms' own steps (Meta's long-lived exchange, the Facebook Page choice, the Instagram business account,
LinkedIn's author URN, whoami for X/Threads/Pinterest) live in `omnipost.oauth.steps` as `STEPS: dict[str,
PostExchange]`, looked up by the provider's `step` name when a connect needs one (not at import). Besides them:

- `token_step`: the account is whoever the token answer names (`user_id`, `open_id`, or an id_token's `sub`);
  used while a platform has no step of its own.
- `oidc_step`: OpenID Connect userinfo (`<api base>/userinfo`, RFC-standard claims): for a standards authorization
  server, such as the test one. Chosen per platform with OMNIPOST_<PLATFORM>_STEP=oidc.
"""

import base64
import binascii
import importlib
import json
from collections.abc import Mapping
from typing import Any

from omnipost.errors import PlatformAuthError
from omnipost.oauth.client import credentials_from
from omnipost.oauth.model import ExchangeContext, PostExchange
from omnipost.oauth.providers import Provider
from omnipost.platforms.base import Connected
from omnipost.platforms.calls import raise_for_status, send


def id_token_claims(id_token: Any) -> dict[str, Any]:
    """The claims of an id_token received straight from the token endpoint over the guarded client (OIDC Core
    §3.1.3.7 lets the client rely on that channel instead of the signature); {} when it is not a JWT."""
    if not isinstance(id_token, str) or id_token.count(".") != 2:
        return {}
    payload = id_token.split(".")[1]
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (binascii.Error, ValueError):
        return {}
    return claims if isinstance(claims, dict) else {}


def _connected(ctx: ExchangeContext, identity: str, handle: str) -> list[Connected]:
    return [Connected(handle=handle, credentials=credentials_from(ctx.tokens, ctx.clock.now()), token_expires_at=ctx.tokens.expires_at,
                      identity=identity)]


async def token_step(ctx: ExchangeContext) -> list[Connected]:
    """The account the token answer names.

    Raises:
        PlatformAuthError: the answer names nobody (the platform needs its own step).
    """
    extra = ctx.tokens.extra
    claims = id_token_claims(extra.get("id_token"))
    identity = extra.get("user_id") or extra.get("open_id") or claims.get("sub")
    if not identity:
        raise PlatformAuthError("The token does not say whose account it is.",
                                remediation="This platform needs its own connect step; connect it when omnipost supports it.")
    handle = claims.get("preferred_username") or claims.get("name") or str(identity)
    return _connected(ctx, str(identity), str(handle))


async def oidc_step(ctx: ExchangeContext) -> list[Connected]:
    """The account OpenID Connect userinfo names (`sub`; handle from preferred_username, name or sub)."""
    response = await send(ctx.http, "GET", f"{ctx.api_base}/userinfo", platform="the authorization server", write=False,
                          headers={"Authorization": f"Bearer {ctx.tokens.access_token}", "Accept": "application/json"})
    raise_for_status(response, "the authorization server", now=ctx.clock.now().timestamp())
    info = response.json()
    if not isinstance(info, dict) or not info.get("sub"):
        raise PlatformAuthError("The userinfo answer names nobody.", remediation="Connect the account again.")
    handle = info.get("preferred_username") or info.get("name") or info["sub"]
    return _connected(ctx, str(info["sub"]), str(handle))


GENERIC_STEPS: dict[str, PostExchange] = {"oidc": oidc_step, "token": token_step}


def load_ref(ref: str) -> Any:
    """The object a "package.module:name" reference names (imported only now: a platform's connect code is loaded when
    one of its accounts connects)."""
    module, _, name = ref.partition(":")
    return getattr(importlib.import_module(module), name)


def step_for(provider: Provider, environ: Mapping[str, str]) -> PostExchange:
    """The provider's post-exchange step: OMNIPOST_<PLATFORM>_STEP (oidc, token, or a platform's step name) when set,
    else the provider's own `step` (a name in omnipost.oauth.steps.STEPS, or a "module:function" reference), else
    `token_step`."""
    name = (environ.get(provider.env_prefix + "STEP") or "").strip() or provider.step
    if name in GENERIC_STEPS:
        return GENERIC_STEPS[name]
    if ":" in name:
        return load_ref(name)  # type: ignore[no-any-return]
    try:
        steps: dict[str, PostExchange] = importlib.import_module("omnipost.oauth.steps").STEPS
    except ModuleNotFoundError as exc:
        if exc.name != "omnipost.oauth.steps":
            raise
        return token_step
    return steps.get(name, token_step)
