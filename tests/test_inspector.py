"""The MCP Inspector CLI (a real, independent MCP client) lists and calls the stdio server."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _inspector() -> str:
    tools_dir = os.environ.get("OMNIPOST_NODE_TOOLS", str(ROOT / ".tools" / "node_modules" / ".bin"))
    path = Path(tools_dir) / "mcp-inspector"
    if not path.exists():
        if os.environ.get("OMNIPOST_REQUIRE_NODE_TOOLS"):
            pytest.fail("MCP Inspector not installed (scripts/test.sh installs it)")
        pytest.skip("MCP Inspector not installed; run scripts/test.sh")
    return str(path)


def _run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OMNIPOST_")}
    env["OMNIPOST_DATA_DIR"] = str(tmp_path)
    # The Inspector starts the server with its own environment: pass the data directory explicitly,
    # or the server would open the user's real one.
    cmd = [_inspector(), "--cli", "-e", f"OMNIPOST_DATA_DIR={tmp_path}",
           sys.executable, "-m", "omnipost", "serve", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)


@pytest.mark.parametrize("era", ["legacy", "modern"])
def test_inspector_lists_tools_with_portable_schemas(tmp_path: Path, era: str) -> None:
    proc = _run(tmp_path, "--protocol-era", era, "--method", "tools/list", "--strict")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 errors" in proc.stdout + proc.stderr or "validate_post" in proc.stdout


def test_inspector_calls_validate_post_and_sees_structured_results(tmp_path: Path) -> None:
    request = {"text": "Hello 👋🏽 https://example.com", "targets": [{"platform": "bluesky"}, {"platform": "x"}]}
    proc = _run(tmp_path, "--format", "json", "-q", "--method", "tools/call", "--tool-name", "validate_post",
                "--tool-args-json", json.dumps(request))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads(proc.stdout)["result"]
    assert result["isError"] is False
    assert [r["measure"]["length"] for r in result["structuredContent"]["results"]] == [27, 32]


def test_inspector_sees_a_tool_error_with_the_structured_error_object(tmp_path: Path) -> None:
    proc = _run(tmp_path, "--format", "json", "-q", "--method", "tools/call", "--tool-name", "explain_preflight_rule",
                "--tool-arg", "rule_id=no.such.rule")
    assert proc.returncode != 0  # the Inspector exits non-zero on an is_error result
    result = json.loads(proc.stdout)["result"]
    assert result["isError"] is True
    assert result["structuredContent"]["error"]["code"] == "not_found"
