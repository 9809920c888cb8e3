"""manifest.json stays equal to what the server registers, and passes the MCPB validator."""

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import anyio
import pytest

from omnipost.config import Settings
from omnipost.manifest import manifest_drift, registered

ROOT = Path(__file__).resolve().parents[1]


def test_manifest_tools_and_prompts_equal_the_server_registry(settings: Settings) -> None:
    assert manifest_drift(ROOT / "manifest.json", settings) == []


def test_manifest_drift_is_reported_when_a_tool_is_missing(tmp_path: Path, settings: Settings) -> None:
    manifest = json.loads((ROOT / "manifest.json").read_text(encoding="utf-8"))
    manifest["tools"] = [t for t in manifest["tools"] if t["name"] != "explain_preflight_rule"]
    broken = tmp_path / "manifest.json"
    broken.write_text(json.dumps(manifest), encoding="utf-8")
    assert "tool missing from manifest: explain_preflight_rule" in manifest_drift(broken, settings)


def test_readme_tool_table_lists_every_registered_tool(settings: Settings) -> None:
    tools, _ = anyio.run(registered, settings)
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    table = readme.split("<!-- tools:start -->")[1].split("<!-- tools:end -->")[0]
    assert set(re.findall(r"^\| `([a-z_]+)` \|", table, re.M)) == set(tools)


def _mcpb() -> str | None:
    tools_dir = os.environ.get("OMNIPOST_NODE_TOOLS")
    if tools_dir and (Path(tools_dir) / "mcpb").exists():
        return str(Path(tools_dir) / "mcpb")
    return shutil.which("mcpb")


def test_manifest_passes_the_mcpb_validator() -> None:
    mcpb = _mcpb()
    if mcpb is None:
        if os.environ.get("OMNIPOST_REQUIRE_NODE_TOOLS"):
            pytest.fail("mcpb CLI not installed (scripts/test.sh installs it)")
        pytest.skip("mcpb CLI not installed; run scripts/test.sh")
    proc = subprocess.run([mcpb, "validate", str(ROOT / "manifest.json")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "passes" in proc.stdout
