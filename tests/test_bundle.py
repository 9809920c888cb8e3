"""omnipost.mcpb starts from a clean unpack: scripts/build_bundle.sh puts every runtime dependency inside it.

The bundle is built once for this module (~25 s: pip install from its cache, then `mcpb pack`), unpacked (it is a
zip) into an empty directory and started exactly as its manifest's `server.mcp_config` says, `${__dirname}` and
`${user_config.*}` substituted as a host does, with a clean environment: no PYTHONPATH, a fresh data directory,
and a `python3` from an empty virtual environment (the standard library only, the Python the wheels were built
for), so a dependency missing from server/lib fails here rather than being found in some site-packages.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path, PurePosixPath

import anyio
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client

ROOT = Path(__file__).resolve().parents[1]
BUILD_TIMEOUT = 900  # seconds; a warm pip cache builds in ~25 s, a cold one downloads ~60 MB of wheels


def _mcpb() -> Path:
    path = Path(os.environ.get("OMNIPOST_NODE_TOOLS", ROOT / ".tools" / "node_modules" / ".bin")) / "mcpb"
    if not path.exists():
        if os.environ.get("OMNIPOST_REQUIRE_NODE_TOOLS"):
            pytest.fail("mcpb CLI not installed (scripts/test.sh installs it)", pytrace=False)
        pytest.skip("mcpb CLI not installed; run scripts/test.sh")
    return path


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bundle") / "omnipost.mcpb"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(PYTHON=sys.executable, MCPB=str(_mcpb()))
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "build_bundle.sh"), str(out)], env=env,
                          capture_output=True, text=True, timeout=BUILD_TIMEOUT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip() == str(out)
    return out


@pytest.fixture(scope="module")
def unpacked(bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    dest = tmp_path_factory.mktemp("unpacked")
    assert not any(dest.iterdir())
    with zipfile.ZipFile(bundle) as archive:
        archive.extractall(dest)
    return dest


def test_bundle_holds_the_server_and_its_dependencies_and_nothing_private(bundle: Path) -> None:
    with zipfile.ZipFile(bundle) as archive:
        names = archive.namelist()
    files = set(names)
    for needed in ("manifest.json", "server/main.py", "server/omnipost/__main__.py", "server/lib/httpx2/__init__.py",
                   "server/lib/mcp/__init__.py", "server/lib/pydantic_core/__init__.py", "prompts/adapt_post.md"):
        assert needed in files, needed
    # Only runtime dependencies: no dev extras (pytest, hypothesis).
    assert not any(n.startswith(("server/lib/_pytest/", "server/lib/hypothesis/")) for n in names)
    forbidden = []
    for name in names:
        path = PurePosixPath(name)
        top = path.parts[0]
        if (top in {"tests", "bench", "scripts", "tools", "examples", ".venv", ".tools", ".git", ".ci", ".omnipost-demo", "data"}
                or "__pycache__" in path.parts or path.suffix in {".pyc", ".db"} or path.name in {"secret.key", ".env"}
                or "node_modules" in path.parts):
            forbidden.append(name)
    assert forbidden == []


def test_bundle_manifest_passes_the_mcpb_validator(unpacked: Path) -> None:
    proc = subprocess.run([str(_mcpb()), "validate", str(unpacked / "manifest.json")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    manifest = json.loads((unpacked / "manifest.json").read_text(encoding="utf-8"))
    # The wheels inside are for this platform and Python minor version, and the bundle says so.
    assert manifest["compatibility"]["platforms"] == [sys.platform]
    major, minor = sys.version_info[:2]
    assert manifest["compatibility"]["runtimes"]["python"] == f">={major}.{minor} <{major}.{minor + 1}"


def _substitute(value: str, variables: dict[str, str]) -> str:
    def one(match: re.Match[str]) -> str:
        assert match.group(1) in variables, f"no value for ${{{match.group(1)}}} in {value!r}"
        return variables[match.group(1)]

    return re.sub(r"\$\{([^}]+)\}", one, value)


@pytest.fixture
def clean_python(tmp_path: Path) -> Path:
    """A bin/ directory whose python3 has the standard library only (a venv without pip, of the base interpreter)."""
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", "--without-pip", str(tmp_path / "python")], check=True, timeout=120)
    bin_dir = tmp_path / "python" / "bin"
    probe = subprocess.run([str(bin_dir / "python3"), "-c", "import httpx2"], capture_output=True, timeout=60,
                           env={"PATH": str(bin_dir)})
    assert probe.returncode != 0, "the clean python already has omnipost's dependencies: the test would prove nothing"
    return bin_dir


def test_unpacked_bundle_starts_as_its_manifest_says_and_lists_its_tools(unpacked: Path, clean_python: Path,
                                                                          tmp_path: Path) -> None:
    manifest = json.loads((unpacked / "manifest.json").read_text(encoding="utf-8"))
    config = manifest["server"]["mcp_config"]
    home = tmp_path / "home"
    home.mkdir()
    data_dir = tmp_path / "data"
    variables = {"__dirname": str(unpacked), "HOME": str(home), "/": "/", "pathSeparator": "/",
                 "user_config.data_dir": str(data_dir)}
    # The optional settings (the OAuth apps, the media host) are left as a user who sets none leaves them: their
    # default, else empty.
    optional = {k: str(v.get("default", "")) for k, v in manifest["user_config"].items() if not v.get("required") and k != "data_dir"}
    variables |= {f"user_config.{k}": v for k, v in optional.items()}
    args = [_substitute(a, variables) for a in config.get("args", [])]
    env = {k: _substitute(v, variables) for k, v in config.get("env", {}).items()}
    unset = {k for k, v in config.get("env", {}).items() if any(f"${{user_config.{o}}}" == v for o in optional)}
    assert set(env) - unset <= {"PYTHONPATH", "OMNIPOST_DATA_DIR"}, env  # a new variable: decide its test value here
    # A host's environment: a PATH whose python3 knows nothing of omnipost, a HOME, no OMNIPOST_* or PYTHONPATH
    # beyond what the manifest sets.
    clean = {"PATH": f"{clean_python}{os.pathsep}/usr/bin{os.pathsep}/bin", "HOME": str(home), "LANG": "C.UTF-8"}
    command = shutil.which(config["command"], path=clean["PATH"])
    assert command is not None and Path(command).parent == clean_python, command
    params = StdioServerParameters(command=config["command"], args=args, env={**clean, **env}, cwd=str(tmp_path))

    async def list_tools() -> list[str]:
        with (tmp_path / "server.stderr").open("w") as errlog, anyio.fail_after(120):
            async with Client(stdio_client(params, errlog=errlog)) as client:
                return [t.name for t in (await client.list_tools()).tools]

    try:
        names = anyio.run(list_tools)
    except BaseException:
        print((tmp_path / "server.stderr").read_text(errors="replace")[-6000:], file=sys.stderr)
        raise
    assert len(names) == len(manifest["tools"])
    assert sorted(names) == sorted(t["name"] for t in manifest["tools"])
    assert data_dir.is_dir(), "the server did not use the data directory the manifest gave it"
