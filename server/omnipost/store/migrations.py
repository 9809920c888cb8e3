"""Versioned schema. Each migration is frozen SQLAlchemy Core (portable to PostgreSQL) and runs
once, in order, inside one transaction; `schema_version` records how far a database has come.

Never edit a released migration: add the next one. tests/test_store.py opens a database written
at every earlier version and upgrades it.
"""

from collections.abc import Callable

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from omnipost.store.types import UTCDateTime


def _v1(conn: Connection) -> None:
    """Profiles, accounts, batches, posts, attempts, media, idempotency records."""
    md = sa.MetaData()
    ts = UTCDateTime
    sa.Table("profiles", md,
             sa.Column("id", sa.String, primary_key=True),
             sa.Column("name", sa.String, nullable=False, unique=True),
             sa.Column("created_at", ts(), nullable=False))
    sa.Table("accounts", md,
             sa.Column("id", sa.String, primary_key=True),
             sa.Column("profile_id", sa.String, sa.ForeignKey("profiles.id"), nullable=False, index=True),
             sa.Column("platform", sa.String, nullable=False),
             sa.Column("emulates", sa.String),
             sa.Column("handle", sa.String, nullable=False),
             sa.Column("credentials", sa.LargeBinary),
             sa.Column("token_expires_at", ts()),
             sa.Column("defaults", sa.JSON, nullable=False),
             sa.Column("health", sa.String, nullable=False),
             sa.Column("created_at", ts(), nullable=False),
             sa.Column("disconnected_at", ts()))
    sa.Table("batches", md,
             sa.Column("id", sa.String, primary_key=True),
             sa.Column("profile_id", sa.String, sa.ForeignKey("profiles.id"), nullable=False, index=True),
             sa.Column("idempotency_key", sa.String),
             sa.Column("request_hash", sa.String, nullable=False),
             sa.Column("mode", sa.String, nullable=False),
             sa.Column("status", sa.String, nullable=False),
             sa.Column("created_at", ts(), nullable=False),
             sa.Column("scheduled_at", ts()))
    sa.Table("posts", md,
             sa.Column("id", sa.String, primary_key=True),
             sa.Column("batch_id", sa.String, sa.ForeignKey("batches.id"), nullable=False, index=True),
             sa.Column("profile_id", sa.String, sa.ForeignKey("profiles.id"), nullable=False, index=True),
             sa.Column("account_id", sa.String, sa.ForeignKey("accounts.id"), nullable=False, index=True),
             sa.Column("position", sa.Integer, nullable=False),
             sa.Column("platform", sa.String, nullable=False),
             sa.Column("status", sa.String, nullable=False),
             sa.Column("text", sa.String, nullable=False),
             sa.Column("text_hash", sa.String, nullable=False),
             sa.Column("content", sa.JSON, nullable=False),
             sa.Column("upstream_id", sa.String),
             sa.Column("uri", sa.String),
             sa.Column("url", sa.String),
             sa.Column("cid", sa.String),
             sa.Column("first_comment_ids", sa.JSON, nullable=False),
             sa.Column("thread_ids", sa.JSON, nullable=False),
             sa.Column("warnings", sa.JSON, nullable=False),
             sa.Column("error", sa.JSON),
             sa.Column("created_at", ts(), nullable=False),
             sa.Column("updated_at", ts(), nullable=False),
             sa.Column("published_at", ts()),
             sa.Index("ix_posts_dup", "account_id", "text_hash", "created_at"),
             sa.Index("ix_posts_status", "status"))
    sa.Table("attempts", md,
             sa.Column("id", sa.String, primary_key=True),
             sa.Column("post_id", sa.String, sa.ForeignKey("posts.id"), nullable=False, index=True),
             sa.Column("number", sa.Integer, nullable=False),
             sa.Column("started_at", ts(), nullable=False),
             sa.Column("finished_at", ts()),
             sa.Column("http_status", sa.Integer),
             sa.Column("response_body", sa.String),
             sa.Column("error_code", sa.String),
             sa.Column("outcome", sa.String, nullable=False),
             sa.Column("will_retry", sa.Boolean, nullable=False))
    sa.Table("media", md,
             sa.Column("id", sa.String, primary_key=True),
             sa.Column("profile_id", sa.String, sa.ForeignKey("profiles.id"), nullable=False, index=True),
             sa.Column("sha256", sa.String, nullable=False, index=True),
             sa.Column("kind", sa.String, nullable=False),
             sa.Column("mime", sa.String, nullable=False),
             sa.Column("size", sa.BigInteger, nullable=False),
             sa.Column("width", sa.Integer),
             sa.Column("height", sa.Integer),
             sa.Column("duration", sa.Float),
             sa.Column("frames", sa.Integer),
             sa.Column("alt_text", sa.String),
             sa.Column("filename", sa.String),
             sa.Column("created_at", ts(), nullable=False),
             sa.Column("deleted_at", ts()))
    sa.Table("idempotency", md,
             sa.Column("id", sa.String, primary_key=True),
             sa.Column("profile_id", sa.String, sa.ForeignKey("profiles.id"), nullable=False),
             sa.Column("key", sa.String, nullable=False),
             sa.Column("tool", sa.String, nullable=False),
             sa.Column("request_hash", sa.String, nullable=False),
             sa.Column("state", sa.String, nullable=False),
             sa.Column("response", sa.JSON),
             sa.Column("is_error", sa.Boolean, nullable=False),
             sa.Column("created_at", ts(), nullable=False),
             sa.Column("expires_at", ts(), nullable=False),
             sa.UniqueConstraint("profile_id", "key", name="uq_idempotency_profile_key"))
    md.create_all(conn)


def _v2(conn: Connection) -> None:
    """API keys for the network transports; accounts gain a display name."""
    md = sa.MetaData()
    sa.Table("profiles", md, sa.Column("id", sa.String, primary_key=True))  # FK target only
    sa.Table("api_keys", md,
             sa.Column("id", sa.String, primary_key=True),
             sa.Column("name", sa.String),
             sa.Column("prefix", sa.String, nullable=False),
             sa.Column("key_hash", sa.String, nullable=False, unique=True),
             sa.Column("profile_id", sa.String, sa.ForeignKey("profiles.id")),
             sa.Column("mode", sa.String, nullable=False),
             sa.Column("created_at", UTCDateTime(), nullable=False),
             sa.Column("revoked_at", UTCDateTime()),
             sa.Column("last_used_at", UTCDateTime()))
    md.tables["api_keys"].create(conn)
    conn.execute(sa.text("ALTER TABLE accounts ADD COLUMN display_name VARCHAR"))


def _v3(conn: Connection) -> None:
    """Scheduling: posts gain a due time and a worker lease; workers write heartbeats."""
    ts = UTCDateTime().compile(dialect=conn.dialect)  # TIMESTAMP WITH TIME ZONE on PostgreSQL
    conn.execute(sa.text(f"ALTER TABLE posts ADD COLUMN next_attempt_at {ts}"))
    conn.execute(sa.text("ALTER TABLE posts ADD COLUMN lease_owner VARCHAR"))
    conn.execute(sa.text(f"ALTER TABLE posts ADD COLUMN lease_until {ts}"))
    conn.execute(sa.text("CREATE INDEX ix_posts_due ON posts (status, next_attempt_at)"))
    md = sa.MetaData()
    sa.Table("scheduler_heartbeats", md,
             sa.Column("worker_id", sa.String, primary_key=True),
             sa.Column("seen_at", UTCDateTime(), nullable=False))
    md.tables["scheduler_heartbeats"].create(conn)


def _v4(conn: Connection) -> None:
    """Webhooks: endpoints (secret encrypted) and the durable delivery queue / log."""
    md = sa.MetaData()
    ts = UTCDateTime
    sa.Table("profiles", md, sa.Column("id", sa.String, primary_key=True))  # FK target only
    sa.Table("webhook_endpoints", md,
             sa.Column("id", sa.String, primary_key=True),
             sa.Column("profile_id", sa.String, sa.ForeignKey("profiles.id"), nullable=False, index=True),
             sa.Column("url", sa.String, nullable=False),
             sa.Column("events", sa.JSON, nullable=False),
             sa.Column("secret", sa.LargeBinary, nullable=False),
             sa.Column("created_at", ts(), nullable=False),
             sa.Column("disabled_at", ts()))
    sa.Table("webhook_deliveries", md,
             sa.Column("id", sa.String, primary_key=True),
             sa.Column("endpoint_id", sa.String, sa.ForeignKey("webhook_endpoints.id"), nullable=False, index=True),
             sa.Column("profile_id", sa.String, sa.ForeignKey("profiles.id"), nullable=False, index=True),
             sa.Column("event_type", sa.String, nullable=False),
             sa.Column("payload", sa.JSON, nullable=False),
             sa.Column("status", sa.String, nullable=False),
             sa.Column("attempts", sa.Integer, nullable=False),
             sa.Column("next_attempt_at", ts()),
             sa.Column("last_status", sa.Integer),
             sa.Column("last_error", sa.String),
             sa.Column("created_at", ts(), nullable=False),
             sa.Column("delivered_at", ts()),
             sa.Index("ix_webhook_deliveries_due", "status", "next_attempt_at"))
    md.tables["webhook_endpoints"].create(conn)
    md.tables["webhook_deliveries"].create(conn)


def _v5(conn: Connection) -> None:
    """Media and webhook endpoints record the mode of the key that created them (test keys see only test
    ones, auth.Reach); everything stored before is live."""
    for table in ("media", "webhook_endpoints"):
        conn.execute(sa.text(f"ALTER TABLE {table} ADD COLUMN mode VARCHAR NOT NULL DEFAULT 'live'"))


def _v6(conn: Connection) -> None:
    """Bluesky-only fields leave the shared post row: `uri` and `cid` move into `extras`, one JSON object of
    platform-specific upstream fields ({} for the others). The old columns are dropped, not kept: one place
    holds each value, and the schema is exactly the models' (an older omnipost refuses a newer schema anyway)."""
    json = sa.JSON().compile(dialect=conn.dialect)
    conn.execute(sa.text(f"ALTER TABLE posts ADD COLUMN extras {json} NOT NULL DEFAULT '{{}}'"))
    posts = sa.table("posts", sa.column("id", sa.String), sa.column("uri", sa.String), sa.column("cid", sa.String),
                     sa.column("extras", sa.JSON))
    rows = conn.execute(sa.select(posts.c.id, posts.c.uri, posts.c.cid)
                        .where(sa.or_(posts.c.uri.is_not(None), posts.c.cid.is_not(None)))).all()
    if rows:
        conn.execute(sa.update(posts).where(posts.c.id == sa.bindparam("pid")).values(extras=sa.bindparam("new_extras")),
                     [{"pid": r.id, "new_extras": {k: v for k, v in (("uri", r.uri), ("cid", r.cid)) if v is not None}}
                      for r in rows])
    for column in ("uri", "cid"):
        conn.execute(sa.text(f"ALTER TABLE posts DROP COLUMN {column}"))


def _v7(conn: Connection) -> None:
    """The pieces ledger (platforms/pieces.py): one JSON object per post, piece name -> its record. Posts stored
    before start empty: recovery reads an interrupted attempt as "the main post may have gone out", as before."""
    json = sa.JSON().compile(dialect=conn.dialect)
    conn.execute(sa.text(f"ALTER TABLE posts ADD COLUMN pieces {json} NOT NULL DEFAULT '{{}}'"))


def _v8(conn: Connection) -> None:
    """Accounts record who they are upstream (Bluesky DID, sandbox account id), so a reconnect finds its account.
    Accounts connected before stay without one (their credentials are sealed; a migration cannot read them) and are
    matched from their next reconnect on."""
    conn.execute(sa.text("ALTER TABLE accounts ADD COLUMN upstream_identity VARCHAR"))


def _v9(conn: Connection) -> None:
    """Recurring notices remember when they were last given (the version sunset warning: once a day, not per start)."""
    md = sa.MetaData()
    sa.Table("notices", md,
             sa.Column("key", sa.String, primary_key=True),
             sa.Column("last_at", UTCDateTime(), nullable=False))
    md.tables["notices"].create(conn)


def _connect_sessions(conn: Connection) -> None:
    """OAuth connect sessions (issue 12): one row per started connect, found by its state; the PKCE verifier sealed
    like credentials; what it connected (account ids) or why it failed (an error object) once it ends."""
    md = sa.MetaData()
    sa.Table("connect_sessions", md,
             sa.Column("state", sa.String, primary_key=True),
             sa.Column("profile_id", sa.String, nullable=False, index=True),
             sa.Column("platform", sa.String, nullable=False),
             sa.Column("target", sa.String, nullable=False),
             sa.Column("redirect_uri", sa.String, nullable=False),
             sa.Column("verifier", sa.LargeBinary, nullable=False),
             sa.Column("args", sa.JSON, nullable=False),
             sa.Column("status", sa.String, nullable=False),
             sa.Column("account_ids", sa.JSON, nullable=False),
             sa.Column("error", sa.JSON),
             sa.Column("created_at", UTCDateTime(), nullable=False),
             sa.Column("expires_at", UTCDateTime(), nullable=False),
             sa.Column("finished_at", UTCDateTime()))
    md.tables["connect_sessions"].create(conn)


def _media_source_url(conn: Connection) -> None:
    """Media fetched from a URL remembers it: a platform that fetches media by URL can be handed the caller's own
    public URL when no media host is configured (media/host.py). Media stored before has none."""
    conn.execute(sa.text("ALTER TABLE media ADD COLUMN source_url VARCHAR"))


def _instance_apps(conn: Connection) -> None:
    """OAuth apps registered on the servers users name (issue 13: Mastodon's POST /api/v1/apps), one per platform,
    instance and redirect URI, reused by every later connect there; the client secret sealed like credentials."""
    md = sa.MetaData()
    sa.Table("instance_apps", md,
             sa.Column("platform", sa.String, primary_key=True),
             sa.Column("instance", sa.String, primary_key=True),
             sa.Column("redirect_uri", sa.String, primary_key=True),
             sa.Column("scopes", sa.String, nullable=False),
             sa.Column("client_id", sa.String, nullable=False),
             sa.Column("client_secret", sa.LargeBinary, nullable=False),
             sa.Column("created_at", UTCDateTime(), nullable=False))
    md.tables["instance_apps"].create(conn)


MIGRATIONS: list[Callable[[Connection], None]] = [_v1, _v2, _v3, _v4, _v5, _v6, _v7, _v8, _v9, _connect_sessions, _media_source_url,
                                                  _instance_apps]
LATEST = len(MIGRATIONS)


def current_version(conn: Connection) -> int:
    """The version a database is at (0 for an empty one)."""
    if not sa.inspect(conn).has_table("schema_version"):
        return 0
    return int(conn.execute(sa.text("SELECT version FROM schema_version")).scalar_one())


def upgrade(conn: Connection, target: int = LATEST) -> int:
    """Apply every pending migration up to `target`; returns the version reached."""
    version = current_version(conn)
    if version == 0:
        conn.execute(sa.text("CREATE TABLE schema_version (version INTEGER NOT NULL)"))
        conn.execute(sa.text("INSERT INTO schema_version (version) VALUES (0)"))
    if version > LATEST:
        raise RuntimeError(f"database schema v{version} is newer than this omnipost (v{LATEST}); upgrade omnipost")
    for number in range(version + 1, target + 1):
        MIGRATIONS[number - 1](conn)
        conn.execute(sa.text("UPDATE schema_version SET version = :v"), {"v": number})
    return max(version, target)
