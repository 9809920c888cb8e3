"""OAuth apps registered per instance (issue 13): a platform whose users name their own server (Mastodon) has no app
configured by the operator; omnipost registers one on each server at its first connect there and keeps its client id
and secret (sealed like credentials) in `instance_apps`, keyed by platform, instance and redirect URI, so later
connects to the same server reuse it. Scopes other than those registered make a new registration (it replaces the
row)."""

from dataclasses import dataclass

from sqlmodel import select

from omnipost.clock import Clock
from omnipost.oauth.model import AppCredentials
from omnipost.store.crypto import Vault
from omnipost.store.db import Database
from omnipost.store.models import InstanceApp


@dataclass
class InstanceApps:
    """The registered apps (one database, one vault)."""

    db: Database
    vault: Vault
    clock: Clock

    async def get(self, platform: str, instance: str, redirect_uri: str, scopes: str) -> AppCredentials | None:
        """The app registered there with these scopes, or None."""
        async with self.db.session() as s:
            row = (await s.exec(select(InstanceApp).where(InstanceApp.platform == platform, InstanceApp.instance == instance,
                                                          InstanceApp.redirect_uri == redirect_uri))).first()
        if row is None or row.scopes != scopes:
            return None
        return AppCredentials(row.client_id, self.vault.open(row.client_secret)["client_secret"])

    async def put(self, platform: str, instance: str, redirect_uri: str, scopes: str, app: AppCredentials) -> None:
        """Remember a registration (replacing an earlier one for the same platform, instance and redirect URI)."""
        async with self.db.session() as s:
            row = await s.get(InstanceApp, (platform, instance, redirect_uri))
            if row is None:
                row = InstanceApp(platform=platform, instance=instance, redirect_uri=redirect_uri, scopes=scopes,
                                  client_id=app.client_id, client_secret=b"", created_at=self.clock.now())
            row.scopes, row.client_id = scopes, app.client_id
            row.client_secret = self.vault.seal({"client_secret": app.client_secret or ""})
            s.add(row)
            await s.commit()
