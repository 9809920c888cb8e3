"""Credentials at rest: Fernet (AES-128-CBC + HMAC-SHA256) from the `cryptography` package.

The key comes from OMNIPOST_SECRET_KEY, or is generated once into <data_dir>/secret.key (0600).
"""

import base64
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet, InvalidToken


class CredentialsError(Exception):
    """Stored credentials cannot be decrypted (the secret key changed)."""


def load_key(secret: str | None, data_dir: Path) -> bytes:
    """The Fernet key: derived from OMNIPOST_SECRET_KEY, else read or created in the data directory."""
    if secret:
        # Any passphrase works: SHA-256 makes it the 32 bytes Fernet needs.
        return base64.urlsafe_b64encode(hashlib.sha256(secret.encode()).digest())
    path = data_dir / "secret.key"
    if path.exists():
        return path.read_bytes().strip()
    data_dir.mkdir(parents=True, exist_ok=True)
    key = Fernet.generate_key()
    # O_EXCL: two processes starting at once must not both write a key.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_bytes().strip()
    with os.fdopen(fd, "wb") as f:
        f.write(key)
    return key


class Vault:
    """Encrypts and decrypts account credentials."""

    def __init__(self, key: bytes) -> None:
        self._fernet = Fernet(key)

    def seal(self, credentials: dict[str, Any]) -> bytes:
        """Encrypt a credentials mapping."""
        return self._fernet.encrypt(json.dumps(credentials, separators=(",", ":")).encode())

    def open(self, token: bytes) -> dict[str, Any]:
        """Decrypt credentials.

        Raises:
            CredentialsError: the key does not match (OMNIPOST_SECRET_KEY changed).
        """
        try:
            return json.loads(self._fernet.decrypt(token))
        except InvalidToken:
            raise CredentialsError("stored credentials cannot be decrypted with the current secret key") from None
