"""Settings: every OMNIPOST_* environment variable (and `.env`) in one place, built by __main__."""

import os
import sys
from pathlib import Path

from pydantic import Field, SecretStr
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
