#!/usr/bin/env bash
# Build the MCP Bundle (MCPB) omnipost.mcpb, with its Python dependencies inside it.
#
#   scripts/build_bundle.sh [OUTPUT]        default OUTPUT: dist/omnipost.mcpb (gitignored)
#
# manifest.json declares `server.type: python`: the host runs `python3 server/main.py serve` with
# PYTHONPATH=server/lib, so server/lib must hold every runtime dependency. This script copies what the
# bundle runs from (manifest.json, server/main.py, server/omnipost, prompts/, README.md, LICENSE) into a
# temporary staging directory, `pip install --target server/lib` the runtime dependencies of pyproject.toml
# (no dev extras; pip's download cache is used), and packs the staging directory with `mcpb pack`, which
# validates the manifest and applies .mcpbignore.
#
# Compiled dependencies (pydantic-core, cryptography, pillow, av, ...) are wheels for the interpreter that
# installs them, so a bundle is for one OS, CPU and Python minor version: the staged manifest's
# `compatibility` is narrowed to them (the source manifest.json is not changed). Build on each target
# platform for the others.
#
# Environment: PYTHON (default .venv/bin/python) is that interpreter; MCPB (default
# $OMNIPOST_NODE_TOOLS/mcpb, else .tools/node_modules/.bin/mcpb, as scripts/test.sh installs it).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=${1:-$ROOT/dist/omnipost.mcpb}
PY=${PYTHON:-$ROOT/.venv/bin/python}
MCPB=${MCPB:-${OMNIPOST_NODE_TOOLS:-$ROOT/.tools/node_modules/.bin}/mcpb}
[ -x "$MCPB" ] || { echo "build_bundle: mcpb CLI not found at $MCPB (scripts/test.sh installs it into .tools)" >&2; exit 1; }

STAGE=$(mktemp -d "${TMPDIR:-/tmp}/omnipost-bundle.XXXXXX")
trap 'rm -rf "$STAGE"' EXIT

mkdir -p "$STAGE/server"
cp manifest.json README.md LICENSE .mcpbignore "$STAGE/"
cp -R prompts "$STAGE/prompts"
cp server/main.py "$STAGE/server/main.py"
cp -R server/omnipost "$STAGE/server/omnipost"  # caches, *.db and secrets are dropped by .mcpbignore

# The runtime dependencies exactly as pyproject.toml lists them, and the compatibility of these wheels.
"$PY" - "$STAGE" <<'EOF'
import json, platform, sys, tomllib
from pathlib import Path

stage = Path(sys.argv[1])
deps = tomllib.loads(Path("pyproject.toml").read_text(encoding="utf-8"))["project"]["dependencies"]
(stage / "requirements.txt").write_text("\n".join(deps) + "\n", encoding="utf-8")
manifest_path = stage / "manifest.json"
manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
platforms = {"linux": "linux", "darwin": "darwin", "win32": "win32"}
compat = manifest.setdefault("compatibility", {})
compat["platforms"] = [platforms[sys.platform]]
major, minor = sys.version_info[:2]
compat.setdefault("runtimes", {})["python"] = f">={major}.{minor} <{major}.{minor + 1}"
manifest_path.write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
print(f"build_bundle: {len(deps)} runtime dependencies for Python {major}.{minor} on {sys.platform}/{platform.machine()}",
      file=sys.stderr)
EOF
"$PY" -m pip install --quiet --disable-pip-version-check --no-compile --only-binary=:all: \
  --target "$STAGE/server/lib" -r "$STAGE/requirements.txt"
rm "$STAGE/requirements.txt"
# pip's own bookkeeping and console scripts are not needed at run time.
rm -rf "$STAGE/server/lib/bin"

mkdir -p "$(dirname "$OUT")"
"$MCPB" pack "$STAGE" "$OUT" >"$STAGE.pack.log" 2>&1 || { cat "$STAGE.pack.log" >&2; rm -f "$STAGE.pack.log"; exit 1; }
grep -E "^(package size|unpacked size|total files|ignored)" "$STAGE.pack.log" | sed 's/^/build_bundle: /' >&2
rm -f "$STAGE.pack.log"
echo "$OUT"
