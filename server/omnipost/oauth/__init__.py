"""Connecting accounts through OAuth 2.0 (authorization code + PKCE) and keeping their tokens (ARCHITECTURE §2,
Tokens and Connect). `model` holds the shapes every part shares: the token set a token endpoint answers, the
credentials an OAuth account stores, the app credentials, and the two hooks a platform's provider data plugs in
(post-exchange steps, refresh/revoke)."""
