"""Bluesky: the XRPC method ids, limits and auth error names everything else refers to."""



PLATFORM = "bluesky"
DEFAULT_PDS = "https://bsky.social"
VIDEO_SERVICE = "https://video.bsky.app"
POST = "app.bsky.feed.post"
EXTERNAL = "app.bsky.embed.external"

CREATE_SESSION = "com.atproto.server.createSession"
REFRESH_SESSION = "com.atproto.server.refreshSession"
DELETE_SESSION = "com.atproto.server.deleteSession"
GET_SESSION = "com.atproto.server.getSession"
GET_SERVICE_AUTH = "com.atproto.server.getServiceAuth"
RESOLVE_HANDLE = "com.atproto.identity.resolveHandle"
UPLOAD_BLOB = "com.atproto.repo.uploadBlob"
CREATE_RECORD = "com.atproto.repo.createRecord"
GET_RECORD = "com.atproto.repo.getRecord"
DELETE_RECORD = "com.atproto.repo.deleteRecord"
UPLOAD_VIDEO = "app.bsky.video.uploadVideo"
GET_JOB_STATUS = "app.bsky.video.getJobStatus"
GET_UPLOAD_LIMITS = "app.bsky.video.getUploadLimits"

THUMB_MAX_BYTES = 1_000_000  # app.bsky.embed.external thumb (platforms.md §1.4)
PAGE_MAX_BYTES = 5_000_000  # a link-card page larger than this is not read (no card)
SERVICE_AUTH_SECONDS = 1800

AUTH_ERRORS = frozenset({
    "AuthenticationRequired", "AuthMissing", "InvalidToken", "ExpiredToken", "AccountTakedown",
    "AccountDeactivated", "AuthFactorTokenRequired",
})
