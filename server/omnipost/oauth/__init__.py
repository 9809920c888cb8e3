"""Connecting accounts through OAuth 2.0 (authorization code + PKCE) and keeping their tokens (ARCHITECTURE §2,
Tokens and Connect). `model` holds the shapes every part shares: the token set a token endpoint answers, the
credentials an OAuth account stores, the app credentials, and the two hooks a platform's provider data plugs in
(post-exchange steps, refresh/revoke).

- `providers`: per-platform provider data (`PROVIDERS`) and `provider_for(platform, environ)`, which applies the
  OMNIPOST_<PLATFORM>_* configuration (app credentials, endpoint overrides).
- `client`: `OAuthClient` (authorization URL, code exchange, refresh, Meta/Threads renewal, RFC 7009 revoke; oauthlib
  builds and parses, the injected httpx2 client sends) and `OAuthRefresher` / `refresher_for` (model.Refresher).
- `generic`: which post-exchange step a provider runs (`step_for`: `steps.STEPS` by name, looked up lazily) and the
  generic ones (`token_step`, `oidc_step`).
- `apps`: the OAuth apps registered per instance for a platform on any server (Mastodon; `INSTANCE_PROVIDERS`).
- `connect`: `ConnectService`: connect sessions, completion, brought tokens; `listener`: the loopback redirect
  listener; `cli`: `omnipost accounts connect`.
"""
