"""schemathesis against the real `omnipost serve --transport streamable-http` on loopback: every /v1 operation, the
stateful links (publish -> read -> cancel), a fixed example budget and seed; 0 server errors, 0 answers that violate
the document, 0 undocumented status codes.

The document given to schemathesis is the served one with test-only edits: POST /v1/posts' example, and every
generated target, name a real (sandbox) account, so the examples and stateful phases store posts for the links
(publish -> read, cancel, edit, reschedule, publish the draft) to follow; and media items and uploads cannot
carry a `url`, which the server would fetch (tests send traffic only to loopback), nor an upload a local `path`. connectAccount and completeConnect are left
out for the same reason (a Bluesky or OAuth connect calls the platform), and disconnectAccount, which would take the
example's account away, and addWebhook, which resolves the URL it is given (and later posts to it); tests/test_rest.py
covers the four in process.
"""

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import httpx2
import pytest
from test_transports import _env, _free_port

KEY = "op_live_" + "s" * 43
EXAMPLES_PER_OPERATION = 25  # the budget: ~1 minute for every operation and the stateful phase on 2 cores
SEED = 20261205
# A 502/503/504 is the platform's answer (documented on every operation that reaches one: e.g. deleting a post whose
# sandbox account was refused); a 500 is ours, and fails the run.
CONFIG = """
[checks.not_a_server_error]
expected-statuses = ["2xx", "3xx", "4xx", "502", "503", "504"]
"""
CHECKS = ("not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,"
          "response_schema_conformance")


def _schemathesis() -> Path:
    found = Path(sys.executable).parent / "schemathesis"
    if not found.exists():
        if os.environ.get("OMNIPOST_REQUIRE_SCHEMATHESIS"):
            pytest.fail("schemathesis is not installed: pip install -e '.[dev]'")
        pytest.skip("schemathesis is not installed (pip install -e '.[dev]')")
    return found


@contextmanager
def serving(tmp_path: Path, transport: str = "streamable-http", **env: str) -> Iterator[int]:
    """`omnipost serve --transport TRANSPORT` on a loopback port, its stderr drained (a full pipe would stall it)."""
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "omnipost", "serve", "--transport", transport, "--port", str(port)],
                            env=_env(tmp_path, **env), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    up, lines = threading.Event(), []

    def drain() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append(line)
            if "Uvicorn running on" in line:
                up.set()
        up.set()  # exited

    threading.Thread(target=drain, daemon=True).start()
    try:
        assert up.wait(60) and proc.poll() is None, "".join(lines[-50:])
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_schemathesis_finds_no_server_error_and_no_answer_outside_the_document(tmp_path: Path) -> None:
    binary = _schemathesis()
    with serving(tmp_path, OMNIPOST_API_KEY=KEY, OMNIPOST_RATE_LIMIT_PER_MINUTE="1000000") as port:
        base = f"http://127.0.0.1:{port}"
        with httpx2.Client(base_url=base, headers={"Authorization": f"Bearer {KEY}"}, timeout=30) as http:
            account = http.post("/v1/accounts", json={"platform": "sandbox", "emulates": "bluesky", "handle": "fuzz.sandbox"})
            assert account.status_code == 200, account.text
            document = http.get("/v1/openapi.json").json()
        create = document["paths"]["/v1/posts"]["post"]["requestBody"]["content"]["application/json"]
        create["example"]["targets"] = [{"accountId": account.json()["id"]}]
        # Generated posts name that account too, so the stateful phase's creates succeed and its links have a post to follow.
        document["components"]["schemas"]["Target"]["properties"]["accountId"] = {"type": "string", "enum": [account.json()["id"]]}
        for item in document["paths"].values():  # ... in the default profile: a random profileId is only ever not_found
            for op in item.values():
                for parameter in op.get("parameters", []):
                    if parameter["name"] == "profileId":
                        parameter["schema"] = {"type": "string", "enum": ["default"]}
        document["components"]["schemas"]["MediaItem"]["properties"].pop("url")
        for name in ("url", "path"):  # an upload from a URL or a local file of this machine
            document["components"]["schemas"]["UploadArgs"]["properties"].pop(name)
        schema = tmp_path / "openapi.json"
        schema.write_text(json.dumps(document), encoding="utf-8")
        (tmp_path / "schemathesis.toml").write_text(CONFIG, encoding="utf-8")
        started = time.monotonic()
        proc = subprocess.run(
            [str(binary), "--config-file", str(tmp_path / "schemathesis.toml"), "run", str(schema), "--url", base, "-H", f"Authorization: Bearer {KEY}", "--checks", CHECKS,
             "--max-examples", str(EXAMPLES_PER_OPERATION), "--seed", str(SEED), "--workers", "1",
             "--generation-database", "none", "--exclude-operation-id", "connectAccount",
             "--exclude-operation-id", "completeConnect", "--exclude-operation-id", "disconnectAccount",
             "--exclude-operation-id", "addWebhook", "--no-color", "--request-timeout", "30"],
            cwd=tmp_path, capture_output=True, text=True, timeout=420)
        elapsed = time.monotonic() - started
    out = proc.stdout + proc.stderr
    if os.environ.get("OMNIPOST_SCHEMATHESIS_LOG"):  # the whole report, for a look by hand
        Path(os.environ["OMNIPOST_SCHEMATHESIS_LOG"]).write_text(out, encoding="utf-8")
    summary = re.search(r"(\d+) generated, (\d+) passed", out)
    links = re.search(r"API Links:.*", out)
    print(f"schemathesis: {summary.group(0) if summary else '?'} in {elapsed:.0f} s; {links.group(0) if links else ''}")  # in the CI log
    assert proc.returncode == 0, out[-6000:]
    assert summary is not None and summary.group(1) == summary.group(2), out[-3000:]
    tested = re.search(r"Tested: (\d+)", out)
    assert tested is not None and int(tested.group(1)) == len(document["paths"] and [
        op for item in document["paths"].values() for op in item.values()]) - 4, out[-3000:]
    assert links is not None and not links.group(0).startswith("API Links:    0 covered"), out[-3000:]


@pytest.mark.parametrize("transport", ["sse", "streamable-http"])
def test_both_http_transports_serve_v1_beside_mcp_with_the_same_key(tmp_path: Path, transport: str) -> None:
    with serving(tmp_path, transport, OMNIPOST_API_KEY=KEY) as port:
        with httpx2.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            auth = {"Authorization": f"Bearer {KEY}"}
            assert http.get("/v1/scheduler", headers=auth).status_code == 200
            refused = http.get("/v1/scheduler")
            assert refused.status_code == 401 and refused.json()["error"]["code"] == "unauthenticated"
            answer = http.post("/v1/posts/validate", headers=auth, json={"text": "Hi", "targets": [{"platform": "bluesky"}]})
            assert answer.status_code == 200 and answer.json()["valid"] is True
            mcp_path = "/sse" if transport == "sse" else "/mcp"
            assert http.get(mcp_path).status_code == 401  # the MCP endpoint still wants its key
            assert http.get("/v1/docs").headers["content-type"].startswith("text/html")
