"""The MCP conformance suite (@modelcontextprotocol/conformance) against `omnipost serve --transport streamable-http`.

The suite acts as an MCP client over HTTP (it has no stdio mode). It cannot send an API key, and omnipost's HTTP
transports refuse a request without one, so it talks to tests/conformance/authproxy.py: a loopback reverse proxy
that adds `Authorization: Bearer <key>` and forwards everything else as it came. The server itself is the
unmodified production command with a key in OMNIPOST_API_KEY; no key-less mode exists that could be switched on
by mistake in production, and the real key check stays on every request's path (asserted below).

Scenarios omnipost is expected to fail, with the reason for each, are in tests/conformance/expected-failures.yml;
the run fails on a failure not listed there and on a listed entry that now passes.

The suite needs node >= 22 (it imports fs.globSync); `tools/pds/launcher.py node` gives one (the node on PATH,
or the npm package node-linux-<arch> it installs beside the PDS). scripts/test.sh installs the suite into .tools.
"""

import json
import os
import re
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest

from procs import Proc

ROOT = Path(__file__).resolve().parents[1]
BASELINE = ROOT / "tests" / "conformance" / "expected-failures.yml"
API_KEY = "op_conformance_key_0123456789abcdef"
RUN_TIMEOUT = 300  # seconds per requirement set; a run takes ~3 s (2025-11-25) and ~10 s (2026-07-28)


def _missing(why: str) -> None:
    if os.environ.get("OMNIPOST_REQUIRE_NODE_TOOLS"):
        pytest.fail(f"{why} (scripts/test.sh installs it)", pytrace=False)
    pytest.skip(f"{why}; run scripts/test.sh")


def _pinned_version() -> str:
    found = re.search(r"@modelcontextprotocol/conformance@([0-9A-Za-z.+-]+)", (ROOT / "scripts" / "test.sh").read_text())
    assert found, "scripts/test.sh does not pin @modelcontextprotocol/conformance"
    return found.group(1)


@pytest.fixture(scope="module")
def conformance() -> list[str]:
    """The command that runs the installed, pinned suite under node >= 22."""
    bin_dir = Path(os.environ.get("OMNIPOST_NODE_TOOLS", ROOT / ".tools" / "node_modules" / ".bin"))
    package = bin_dir.parent / "@modelcontextprotocol" / "conformance"
    if not (package / "package.json").is_file():
        _missing(f"@modelcontextprotocol/conformance not installed under {bin_dir.parent}")
    version = json.loads((package / "package.json").read_text())["version"]
    assert version == _pinned_version(), f"installed conformance {version}, scripts/test.sh pins {_pinned_version()}: rerun it"
    if not shutil.which("npm") and not shutil.which("node"):
        _missing("node/npm not on PATH")
    launcher = subprocess.run([sys.executable, str(ROOT / "tools" / "pds" / "launcher.py"), "node"],
                              capture_output=True, text=True, timeout=600)
    if launcher.returncode != 0:
        pytest.fail(f"no node >= 22 for the conformance suite:\n{launcher.stderr}", pytrace=False)
    return [launcher.stdout.strip(), str(package / "dist" / "index.js")]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def mcp_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The omnipost server on loopback behind the key-adding proxy; the proxy's MCP endpoint URL."""
    tmp = tmp_path_factory.mktemp("conformance")
    env = {k: v for k, v in os.environ.items() if not k.startswith("OMNIPOST_")}
    port = _free_port()
    proxy = subprocess.Popen([sys.executable, str(ROOT / "tests" / "conformance" / "authproxy.py"), f"http://127.0.0.1:{port}"],
                             env={**env, "AUTHPROXY_BEARER": API_KEY}, stdout=subprocess.PIPE, text=True)
    server = None
    try:
        assert proxy.stdout is not None
        proxy_port = int(proxy.stdout.readline())  # printed once bound; an empty line (exit) fails here
        front = [f"127.0.0.1:{proxy_port}", f"localhost:{proxy_port}"]
        server = Proc([sys.executable, "-m", "omnipost", "serve", "--transport", "streamable-http", "--port", str(port)], env={
            **env,
            "OMNIPOST_DATA_DIR": str(tmp / "data"),
            "OMNIPOST_API_KEY": API_KEY,
            # The client's Host and Origin name the proxy, as behind any reverse proxy: allow exactly those.
            "OMNIPOST_ALLOWED_HOSTS": json.dumps(front),
            "OMNIPOST_ALLOWED_ORIGINS": json.dumps([f"http://{h}" for h in front]),
            # The suite makes a few hundred calls in seconds with one key; the per-key limit is not under test.
            "OMNIPOST_RATE_LIMIT_PER_MINUTE": "100000",
        })
        server.wait_for("Uvicorn running on", 60)
        # The server really requires the key: without the proxy, a request is refused.
        direct = httpx2.post(f"http://127.0.0.1:{port}/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "ping"},
                             headers={"accept": "application/json, text/event-stream"}, trust_env=False)
        assert direct.status_code == 401, direct.text
        yield f"http://127.0.0.1:{proxy_port}/mcp"
    finally:
        if server is not None:
            server.kill()
        proxy.terminate()
        proxy.wait(timeout=30)


def _run(conformance: list[str], url: str, out: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy")}
    env["NO_COLOR"] = "1"
    return subprocess.run([*conformance, "server", "--url", url, "-o", str(out), *args],
                          capture_output=True, text=True, timeout=RUN_TIMEOUT, env=env)


def _report(proc: subprocess.CompletedProcess[str]) -> str:
    """The summary and baseline verdict (the per-scenario log before them is long)."""
    text = proc.stdout + proc.stderr
    return text[text.find("=== SUMMARY ==="):] if "=== SUMMARY ===" in text else text[-6000:]


@pytest.mark.parametrize("revision", ["2025-11-25", "2026-07-28"])
def test_streamable_http_meets_the_conformance_requirements(conformance: list[str], mcp_url: str, tmp_path: Path,
                                                            revision: str) -> None:
    proc = _run(conformance, mcp_url, tmp_path, "--requirements", revision, "--expected-failures", str(BASELINE))
    report = _report(proc)
    print(report)
    assert proc.returncode == 0, report
    assert "Baseline check passed" in report, report
    for scenario in ("server-initialize" if revision < "2026" else "server-stateless", "tools-list", "dns-rebinding-protection"):
        assert re.search(rf"^\S+ {scenario}: [1-9]\d* passed", report, re.M), f"{scenario} did not run:\n{report}"


def test_the_baseline_catches_new_failures_and_stale_entries(conformance: list[str], mcp_url: str, tmp_path: Path) -> None:
    """The gate itself: a failure missing from the baseline, and a listed scenario that passes, both fail the run."""
    empty = tmp_path / "empty.yml"
    empty.write_text("server: []\n")
    new_failure = _run(conformance, mcp_url, tmp_path / "a", "--scenario", "tools-call-image", "--expected-failures", str(empty))
    assert new_failure.returncode == 1 and "Unexpected failures" in new_failure.stdout, _report(new_failure)
    stale = tmp_path / "stale.yml"
    stale.write_text("server:\n  - ping\n")
    passing = _run(conformance, mcp_url, tmp_path / "b", "--scenario", "ping", "--expected-failures", str(stale))
    assert passing.returncode == 1 and "Stale baseline entries" in passing.stdout, _report(passing)
