"""PublishService: schema -> shallow preflight (atomic) -> store -> deep checks -> fan-out publish.

Exactly once (PRODUCT §5): every try is preceded by a committed attempt row and the post's `publishing`
status, and every piece of the target (post, thread parts, first comment) by a committed marker in the
post's pieces ledger (platforms/pieces.py; the main post's marker is the attempt row itself). A retry,
recovery after a crash (`recover()`) or a scheduler taking over a lapsed lease resumes at the first piece
not done: a piece an earlier try sent is reconciled by the platform's strategy before anything is sent, and
a piece done is never sent again.

What happens to each adapter error:

| error | post status | retried automatically |
|---|---|---|
| PlatformUnavailableError / PlatformRateLimitError | failed (retryable) | scheduled posts: by the scheduler (scheduler.py) |
| UnknownOutcomeError (a write, then 5xx/reset/timeout) | reconciled at once: published, failed (certainly absent or partial), else unknown | never blind |
| PlatformAuthError (the token was refused) | rejected; account marked needs_reconnect, token.revoked | no |
| PlatformForbiddenError (permission/scope) | rejected; the account stays active | no |
| PlatformDuplicateError | rejected; after an earlier unknown outcome of the post: reconciled like one | no |
| PlatformRejectedError, input errors | rejected | no |
| pieces.Processing (a container, a video still processing) | processing, next_attempt_at = its check time | checked again by the scheduler, lease-free meanwhile |
| anything else | failed, logged as a bug | no |

Where each job lives:
- intake.py (Intake): a request from the tool call to stored posts: preflight, idempotency, duplicates, deep checks,
  daily caps, the storing transaction.
- dispatch.py (Dispatch): the upstream calls: attempts, fan-out, one try through the adapter and the pieces ledger,
  reconcile after an unknown outcome, writing results, recovery after a crash.
- unknown.py (Unknowns): resolve_post, the way out of `unknown`.
- queries.py (Queries): batch results, get/list posts, drafts, cancel, delete.
- common.py: what they share (stored targets, public views, one try's Result, the media port).
- service.py: PublishService, the dataclass the parts are mixed into.
"""

from omnipost.publishing.common import MediaPort, batch_status, normalise, outcome, text_hash
from omnipost.publishing.service import PublishService
from omnipost.publishing.unknown import not_retried_warning

__all__ = ["MediaPort", "PublishService", "batch_status", "normalise", "not_retried_warning", "outcome", "text_hash"]
