"""Settings: every OMNIPOST_* environment variable (and `.env`) in one place, built by __main__."""

import os
import sys
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def default_data_dir() -> Path:
    """A per-user data directory (XDG on Linux, Application Support on macOS, AppData on Windows)."""
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / "omnipost"
    if sys.platform == "win32":
        return Path(os.environ.get("APPDATA", Path.home() / "AppData" / "Roaming")) / "omnipost"
    return Path(os.environ.get("XDG_DATA_HOME", Path.home() / ".local" / "share")) / "omnipost"


class Settings(BaseSettings):
    """Runtime configuration. Secrets are SecretStr so they never print."""

    model_config = SettingsConfigDict(env_prefix="OMNIPOST_", env_file=".env", env_file_encoding="utf-8", extra="ignore")

    data_dir: Path = Field(default_factory=default_data_dir, description="Where the database and media live.")
    log_level: str = Field(default="INFO", description="stderr log level.")
    api_key: SecretStr | None = Field(default=None, description="Bearer key required by the HTTP transports.")
    allowed_hosts: list[str] = Field(default_factory=list, description="Extra Host header values accepted over HTTP (host:port).")
    allowed_origins: list[str] = Field(default_factory=list, description="Extra Origin values accepted over HTTP.")
    database_url: str | None = Field(default=None, description="SQLAlchemy async URL; default SQLite in data_dir.")
    secret_key: SecretStr | None = Field(default=None, description="Encrypts credentials at rest; else a key file in data_dir.")
    sandbox_url: str | None = Field(default=None, description="An external sandbox upstream (omnipost sandbox serve); default embedded.")
    upstream_timeout: float = Field(default=30.0, gt=0, description="Seconds to wait for one upstream call.")
    publish_concurrency: int = Field(default=25, ge=1, le=100, description="Targets published at once (25 = a whole batch).")
    media_roots: list[Path] = Field(default_factory=lambda: [Path.home()], description="Local paths upload_media may read.")
    media_max_bytes: int | None = Field(default=None, ge=1, description=(
        "Largest media file stored, in bytes, from any source (path, URL, base64). Default: the largest per-file "
        "limit of any platform rule (Facebook's 4 GB video) rounded up to a whole GiB, so every platform's size rule "
        "can be reached. A smaller cap is allowed (e.g. to bound disk use); then files between it and a platform's "
        "limit are refused at upload (media.too_large) instead of by that platform's rule."))
    confirm: Literal["always", "multi", "never"] = Field(default="multi", description="Ask the user before publishing (elicitation).")
    webhook_tick: float = Field(default=5.0, gt=0, description="Seconds between webhook delivery rounds.")
    webhook_allow_loopback: bool = Field(default=False, description=(
        "Development only: let webhooks go to a receiver on this machine (localhost, 127.0.0.1, ::1). "
        "Private, link-local and metadata addresses stay refused."))
    upstream_allow_loopback: bool = Field(default=False, description=(
        "Development only: let platform API calls go to a server on this machine (a local PDS given as pdsUrl). "
        "Private, link-local and metadata addresses stay refused."))
    token_check_interval: float = Field(default=3600.0, gt=0, description=(
        "Seconds between checks of account tokens: refresh those ending within 7 days, emit token.expiring for the rest."))
    rate_limit_per_minute: int = Field(default=120, ge=1, description="Tool calls per minute per API key (HTTP transports).")
    http_header_timeout: float = Field(default=10.0, gt=0, description=(
        "Seconds an HTTP connection may take to send complete request headers; slower ones are closed (slowloris guard)."))
    http_max_connections: int = Field(default=256, ge=1, description=(
        "Simultaneous HTTP connections; a new one past it closes the one waiting longest for its headers (or itself). "
        "Lowered to fit the open-file limit."))
    oauth_redirect_port: int = Field(default=8788, ge=1, le=65535, description=(
        "Port of the loopback listener that receives OAuth redirects: register http://127.0.0.1:<port>/callback "
        "as your app's redirect URI."))
    oauth_redirect_uri: str | None = Field(default=None, description=(
        "A redirect URI other than the loopback listener's (a platform that refuses loopback, a remote server): "
        "no listener runs; the user pastes the URL they land on into complete_connect."))
    oauth_connect_timeout: float = Field(default=600.0, gt=0, description="Seconds a started OAuth connect waits for the user.")
    scheduler_enabled: bool = Field(default=True, description="Run the scheduler inside every long-running server process.")
    # 0.5 s keeps p99 lateness under 1 s (bench/scheduler.py): a post is at most one tick plus its publish late.
    scheduler_tick: float = Field(default=0.5, gt=0, description="Seconds between scheduler ticks.")
    schedule_grace: float = Field(default=3600.0, ge=0, description="Seconds a scheduled post may be late and still publish; later fails.")
    scheduler_lease: float = Field(default=300.0, gt=0, description="Seconds a worker's claim on a post lasts before another may take it.")
    scheduler_max_attempts: int = Field(default=5, ge=1, description="Tries of a scheduled post before a transient failure is final.")
    # Media that platforms fetch by URL (Instagram, Threads): media/host.py. An S3-compatible bucket wins over the
    # signed URLs of omnipost's own HTTP transport; with neither, only media that came from a public URL can go there.
    public_base_url: str | None = Field(default=None, description=(
        "The public https address of this server's HTTP transport (e.g. https://omnipost.example.com): media is then "
        "served to platforms at signed, expiring URLs under /media/."))
    media_s3_bucket: str | None = Field(default=None, description=(
        "An S3-compatible bucket (AWS S3, Cloudflare R2, MinIO, ...) that uploaded media is copied to; platforms get "
        "presigned GET URLs. Needs the access key id and secret access key too."))
    media_s3_endpoint_url: str | None = Field(default=None, description=(
        "The S3 endpoint, e.g. https://<account>.r2.cloudflarestorage.com or http://127.0.0.1:9000 (MinIO); "
        "default AWS S3 in the region."))
    media_s3_region: str = Field(default="us-east-1", description="The bucket's region (Cloudflare R2: auto).")
    media_s3_access_key_id: SecretStr | None = Field(default=None, description="Access key id for the bucket.")
    media_s3_secret_access_key: SecretStr | None = Field(default=None, description="Secret access key for the bucket.")
    media_s3_prefix: str = Field(default="omnipost/media/", description="Key prefix of media objects in the bucket.")
    media_s3_path_style: bool | None = Field(default=None, description=(
        "Address the bucket in the path (endpoint/bucket/key) rather than the host name; default: path style when "
        "an endpoint is set (MinIO, R2), virtual-hosted for AWS."))
    media_url_expires: int = Field(default=900, ge=60, le=604800, description=(
        "Seconds a media URL handed to a platform stays valid (presigned S3 or signed own-transport URL)."))

    @field_validator("public_base_url", "media_s3_bucket", "media_s3_endpoint_url", "media_s3_access_key_id",
                     "media_s3_secret_access_key", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        # An MCPB bundle passes an unset user_config entry as an empty string, or (some clients) as the literal
        # "${user_config.<key>}" placeholder: both mean "not configured".
        if isinstance(value, str) and (not value.strip() or value.startswith("${user_config.")):
            return None
        return value

    @field_validator("media_s3_region", mode="before")
    @classmethod
    def _blank_region(cls, value: object) -> object:
        if isinstance(value, str) and (not value.strip() or value.startswith("${user_config.")):
            return "us-east-1"
        return value
