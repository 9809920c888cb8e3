"""Who holds a post or an idempotency claim: one id per running process, and whether its process is certainly gone.

Several omnipost processes may share one database: a worker and a server, two MCP clients that each launched
`omnipost serve` on the same data directory, servers on PostgreSQL. Rows a process is working on carry its
owner id (`host:pid:nonce`); a process starting up takes over another's rows only when that owner is certainly
dead (same host, no such pid), otherwise only after the row's lease expires. A live pid may be a reused one:
then the lease expiry decides, which is late but never wrong.
"""

import os
import socket

import ulid


def new_owner_id() -> str:
    """host:pid:random, unique per process start."""
    return f"{socket.gethostname()}:{os.getpid()}:{str(ulid.ULID()).lower()[-6:]}"


def owner_is_gone(owner: str | None) -> bool:
    """True only when `owner`'s process certainly no longer runs: it ran on this host and its pid is free.

    An owner of another host, an unreadable id or a pid that exists (perhaps reused) counts as alive.
    """
    if not owner:
        return True  # rows from before owners were recorded: nobody can still be working on them
    host, _, rest = owner.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # exists, another user's
    return False
