"""Bluesky: the createRecord body for an app.bsky.feed.post record (the validate_post preview), and BlueskyAdapter.

`build_record` / `build_post` build the exact body the adapter sends; values only known at publish time are
`pending(...)` placeholders (blobs, mention DIDs, the link card, the record key, the clock). The adapter builds the
same body and replaces each placeholder with the real value (platforms.md §1).

Sessions. Accounts are connected with an app password (`connect_bluesky`, com.atproto.server.createSession). The
stored credentials are `{"accessJwt", "refreshJwt", "did", "pdsUrl"}`; the app password is never stored, so when
the refresh token dies (90 days, revoked, or the app password deleted) the account must be reconnected. The adapter
holds no session logic of its own: it takes the account's tokens from its TokenSession (oauth/session.py), built by
the runtime with `BlueskyRefresher` (session.py: com.atproto.server.refreshSession with the refresh JWT, no body;
both tokens rotate; deleteSession to revoke). Every call uses the access token; one whose `exp` is within the
session's margin is refreshed before the call. When the PDS answers `ExpiredToken` (HTTP 400, or 401), or 401
while the token's `exp` is past, the adapter calls `session.expired(token)` (one refresh, unless another task or
process already replaced that token) and repeats the call once. The session commits the rotated tokens before
they are used, one refresh at a time per account across processes. A refresh the PDS refuses is a
PlatformAuthError (the session marks the account needs_reconnect, which emits token.revoked); a refresh that
fails for transport/5xx/429 reasons keeps its own class (retryable). Tokens never reach a log line or an error
(platforms/calls.py redacts `*Jwt`/`token` fields in bodies).

Exactly once. Every createRecord carries a record key chosen here (`tid_for`), derived from the job's
upstream_key (the omnipost post id): the main post from `<key>`, thread segment i from `<key>-t<i>`, the first
comment from `<key>-c`. A TID is a 64-bit integer (top bit 0, then 53 bits of microseconds since the Unix epoch,
then a 10-bit clock id) written as 13 characters of the sortable base32 alphabet `234567abcdefghijklmnopqrstuvwxyz`
(so the first character is one of `234567abcdefghij`). From the SHA-256 digest d of the piece's key:
- time: when the key holds a ULID (omnipost ids are `post_<ulid>`), the ULID's timestamp truncated to the whole
  second, plus `int(d[0:8]) mod 1_000_000` microseconds, so record keys sort like the posts were created and
  `listRecords` stays in a sensible order; otherwise the top 53 bits of `int(d[0:8])`;
- clock id: the low 10 bits of `int(d[8:10])`.
Two distinct keys of one account collide only when both fall in the same second and share 30 hashed bits (about
1 in 10^9 per such pair). The same job always yields the same keys, so a repeat cannot create a second record.

Detecting "record already exists". The reference PDS answers a createRecord whose rkey is taken with HTTP 500
`{"error": "InternalServerError"}` (seen with @atproto/pds 0.5.35 on loopback; atproto issue #4725, indigo #873
for the Go PDS); atproto PR #4728 (open, 2026-03) proposes a dedicated XRPC error whose name is not settled. So
nothing depends on the error's name: when createRecord answers 400, 409 or 5xx, the adapter reads the record back with
com.atproto.repo.getRecord under the same rkey; if it is there, it is ours (nobody else writes that key), and the
piece is taken as done (`already_existed=True` for the main post). If it is not there, the original error stands.

Pieces. The main post carries text, link/tag facets (`detect_facets`), mention facets (each `detect_mentions`
handle resolved with com.atproto.identity.resolveHandle; handles that do not resolve are dropped, not sent with an
empty DID), `langs`, and one embed: images (`uploadBlob`, raw bytes; alt; aspectRatio), one video (video service:
getServiceAuth with aud `did:web:<PDS host>`, uploadVideo, then ONE getJobStatus read per try: a job still
encoding raises pieces.Processing with the job id, so the post waits `processing` (not this adapter, holding it) and
a worker reads the same job again `poll_interval` seconds later, up to `video_max_wait` after it started), or else a link card for the first link (below). Thread segments reply with root = main post and
parent = the previous piece; the first comment replies to the main post (root = parent = main).

Link cards (`app.bsky.embed.external`). The page is fetched through omnipost.media.fetch (SSRF-safe: public
addresses only, decided through the injected `resolver`), og:title/og:description/og:image are read from it, and
og:image (at most 1,000,000 bytes) is uploaded as the thumb. When the page cannot be fetched or is not HTML (or
no resolver was given), the card is left out and the post is published without it; each such decision is a
sentence in `Published.response["warnings"]` (a list of strings, prefixed with the piece: `post`, `thread[i]`,
`firstComment`). A thumbnail that cannot be fetched or is refused leaves a card without `thumb`, also noted.

Ids. `Published.upstream_id` (and `uri`, `thread_ids`, `first_comment_ids`) are at-uris
(`at://<did>/app.bsky.feed.post/<rkey>`); `delete` accepts such an at-uri or a bare rkey (of the account's repo).
The web URL is `https://bsky.app/profile/<did>/post/<rkey>` (the DID, which survives handle changes).

Errors (platforms.md §1.6): the map `ERRORS` (platforms/errormap.py), applied by platforms/calls.py, turns the status
and the XRPC `error` name into the family: AuthenticationRequired, AuthMissing, InvalidToken, ExpiredToken (after a
failed refresh), AccountTakedown, AccountDeactivated, AuthFactorTokenRequired, or a bare 401 → PlatformAuthError (the
account needs reconnecting); any other 403 → PlatformForbiddenError (the account stays connected); 429 /
RateLimitExceeded → PlatformRateLimitError with retry_after = RateLimit-Reset (epoch seconds) − now; other 4xx
(InvalidRequest, InvalidMimeType, InvalidSize, PayloadTooLarge, ...) → PlatformRejectedError; 5xx →
PlatformUnavailableError on a read, UnknownOutcomeError on a write (createRecord, deleteRecord: the PDS may have acted
before failing; createRecord first reads the rkey back, see above). The upstream body is kept as `platform_response`.
A write whose answer is lost (reset, timeout) is UnknownOutcomeError too (calls.send).

Where each job lives: lexicon.py (method ids, limits), preview.py (the record body), keys.py (record keys),
session.py (sessions, the XRPC wire, errors, connect), cards.py (link-card pages), adapter.py (BlueskyAdapter).
"""

from typing import TYPE_CHECKING

from omnipost.platforms.bluesky.lexicon import AUTH_ERRORS, CREATE_RECORD, CREATE_SESSION, DEFAULT_PDS, DELETE_RECORD, EXTERNAL, GET_JOB_STATUS, GET_RECORD, GET_SERVICE_AUTH, GET_SESSION, PAGE_MAX_BYTES, PLATFORM, POST, REFRESH_SESSION, RESOLVE_HANDLE, SERVICE_AUTH_SECONDS, THUMB_MAX_BYTES, UPLOAD_BLOB, UPLOAD_VIDEO, VIDEO_SERVICE  # noqa: F401
from omnipost.platforms.bluesky.preview import BlueskyOptions, _aspect, _card, _embed, _first_link, _mention_facets, build_post, build_record  # noqa: F401
from omnipost.platforms.bluesky.keys import TID_ALPHABET, TID_PATTERN, _CROCKFORD, _ULID_IN_KEY, _ulid_ms, at_uri, piece_key, tid_for, web_url  # noqa: F401
from omnipost.platforms.bluesky.session import BlueskyCredentials, BlueskyRefresher, ERRORS, _classify, _file_chunks, _iso, _json_of, _jwt_exp, _mime_of, _xrpc_error, _xrpc_message, _xrpc_name, connect_account, connect_bluesky, pds_from_did_doc, session_expiry  # noqa: F401
from omnipost.platforms.bluesky.cards import _PageMeta, _parse_page  # noqa: F401
from omnipost.platforms.bluesky.adapter import BlueskyAdapter, _Piece, _Session, _with_facts  # noqa: F401

if TYPE_CHECKING:
    from omnipost.platforms.base import AdapterDeps


def refresher(deps: "AdapterDeps") -> BlueskyRefresher:
    """Bluesky's Refresher as the runtime builds it (PlatformSpec.refresher)."""
    return BlueskyRefresher(deps.http, clock=deps.clock, timeout=deps.timeout)
