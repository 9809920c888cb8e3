"""A real OAuth 2.0 / OpenID Connect authorization server for tests: the session-scoped ``auth_server`` fixture.

oidc-provider (tests/oauth/server.mjs; installed by scripts/test.sh into .tools) runs on a free 127.0.0.1 port with
PKCE required, refresh-token rotation and RFC 7009 revocation, one client per OAuth platform, and a consent that
logs "alice" in and grants at once, so a test drives a connect by following redirects (`consent`).
`AuthServer.env` points every platform's provider at it (OMNIPOST_<P>_* endpoint overrides, app credentials, the
generic OIDC step). Without node or the package the tests are skipped, unless OMNIPOST_REQUIRE_NODE_TOOLS=1
(scripts/test.sh, CI), which makes that a failure.

    import oauth_as
    auth_server = oauth_as.auth_server  # registers the fixture in this module
"""

import os
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx2
import pytest

from omnipost.oauth.providers import PROVIDERS

REPO_ROOT = Path(__file__).resolve().parents[1]
SERVER = REPO_ROOT / "tests" / "oauth" / "server.mjs"
LAUNCHER = REPO_ROOT / "tools" / "pds" / "launcher.py"
START_TIMEOUT = 60.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _missing(reason: str) -> None:
    if os.environ.get("OMNIPOST_REQUIRE_NODE_TOOLS"):
        pytest.fail(f"{reason} (scripts/test.sh installs it)")
    pytest.skip(f"{reason}; run scripts/test.sh")


def _node_modules() -> Path:
    tools = os.environ.get("OMNIPOST_NODE_TOOLS")  # <repo>/.tools/node_modules/.bin
    return Path(tools).parent if tools else REPO_ROOT / ".tools" / "node_modules"


def _node() -> str | None:
    """The node tools/pds/launcher.py gives (>= 22), else the one on PATH."""
    try:
        out = subprocess.run([sys.executable, str(LAUNCHER), "node"], capture_output=True, text=True, timeout=60)
        if out.returncode == 0 and out.stdout.strip():
            return out.stdout.strip().splitlines()[-1]
    except (OSError, subprocess.SubprocessError):
        pass
    return shutil.which("node")


def client_spec(platform: str) -> str:
    """id:secret:auth:pkce of the platform's client at the test server, as its provider authenticates."""
    p = PROVIDERS[platform]
    return f"omnipost-{platform}:secret-{platform}:{'basic' if p.client_auth == 'basic' else 'post'}:{'nopkce' if p.pkce == 'none' else 'pkce'}"


@dataclass
class AuthServer:
    """A running test authorization server."""

    issuer: str
    redirect_port: int
    proc: subprocess.Popen[str]
    lines: list[str] = field(default_factory=lambda: [])

    @property
    def redirect_uri(self) -> str:
        return f"http://127.0.0.1:{self.redirect_port}/callback"

    def env(self) -> dict[str, str]:
        """Every OAuth platform's provider pointed here (the configuration scheme of omnipost.oauth.providers)."""
        out: dict[str, str] = {}
        for platform, p in PROVIDERS.items():
            prefix = p.env_prefix
            out |= {prefix + "CLIENT_ID": f"omnipost-{platform}", prefix + "CLIENT_SECRET": f"secret-{platform}",
                    prefix + "AUTHORIZE_URL": f"{self.issuer}/auth",
                    # Meta's token endpoint takes its parameters in a GET query: the server plays it at /meta/token
                    prefix + "TOKEN_URL": f"{self.issuer}/meta/token" if p.token_method == "GET" else f"{self.issuer}/token",
                    prefix + "REVOKE_URL": f"{self.issuer}/token/revocation", prefix + "API_BASE": self.issuer,
                    prefix + "SCOPES": p.scope_separator.join(("openid", "offline_access", "profile")), prefix + "STEP": "oidc"}
        return out

    def secrets(self) -> list[str]:
        return [f"secret-{p}" for p in PROVIDERS]


@pytest.fixture(scope="session")
def auth_server() -> Iterator[AuthServer]:
    if not (_node_modules() / "oidc-provider" / "package.json").exists():
        _missing("oidc-provider is not installed")
    node = _node()
    if node is None:
        _missing("node is not installed")
    assert node is not None
    port, redirect_port = free_port(), free_port()
    env = {**os.environ, "OIDC_PROVIDER_NODE_MODULES": str(_node_modules()), "NODE_ENV": "test"}
    proc = subprocess.Popen([node, str(SERVER), str(port), f"http://127.0.0.1:{redirect_port}/callback",
                             *(client_spec(p) for p in PROVIDERS)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    server = AuthServer(issuer=f"http://127.0.0.1:{port}", redirect_port=redirect_port, proc=proc)
    threading.Thread(target=lambda: server.lines.extend(proc.stderr or ()), daemon=True).start()  # type: ignore[arg-type]
    ready = threading.Event()

    def wait_ready() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("ready "):
                ready.set()
                return

    threading.Thread(target=wait_ready, daemon=True).start()
    if not ready.wait(START_TIMEOUT):
        proc.kill()
        pytest.fail("the test authorization server did not start:\n" + "".join(server.lines[-20:]))
    try:
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


async def consent(url: str, redirect_uri: str, *, land: bool = True) -> httpx2.Response | str:
    """Play the user's browser: open the authorization URL and follow redirects (the server consents at once).
    land=True: follow into the redirect URI too (the loopback listener answers) and return that response;
    land=False: stop before it and return the redirect URL the browser would open (for a paste)."""
    async with httpx2.AsyncClient(follow_redirects=False, trust_env=False, timeout=20) as browser:
        for _ in range(12):
            response = await browser.get(url)
            location = response.headers.get("location")
            if response.status_code not in (302, 303) or location is None:
                return response
            url = str(httpx2.URL(url).join(location))
            if url.startswith(redirect_uri) and not land:
                return url
    raise AssertionError("too many redirects")
