#!/usr/bin/env bash
# Install everything the tests need (Python deps; the MCPB CLI, MCP Inspector and MCP conformance suite
# from npm; the reference Bluesky PDS, with node 22, from npm) and run them all.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if command -v npm >/dev/null 2>&1; then
  # Pinned, project-local: the MCPB manifest validator, the MCP Inspector CLI (a real MCP client) and the
  # MCP conformance suite (tests/test_mcp_conformance.py). The suite needs node >= 22: the test runs it with
  # the node `tools/pds/launcher.py node` gives (the one on PATH if >= 22, else the one installed below).
  # 0.2.0-alpha.12 is the newest; its --requirements 2026-07-28 set covers the modern protocol (the python SDK pins this line too).
  # oidc-provider: the real OAuth 2.0 / OpenID Connect authorization server tests/oauth/server.mjs runs on loopback
  # (PKCE required, refresh-token rotation, revocation) for tests/test_oauth.py.
  npm install --silent --no-audit --no-fund --prefix .tools \
    @anthropic-ai/mcpb@2.1.2 @modelcontextprotocol/inspector@2.12.0 @modelcontextprotocol/conformance@0.2.0-alpha.12 \
    oidc-provider@9.13.3 >/dev/null
else
  echo "npm not found: install Node.js >= 22 (the Inspector, the conformance suite and the PDS need it; apt-get install nodejs npm, or nodejs.org)" >&2
  exit 1
fi
export OMNIPOST_NODE_TOOLS="$PWD/.tools/node_modules/.bin"
export OMNIPOST_REQUIRE_NODE_TOOLS=1
# The reference Bluesky PDS (@atproto/pds) and a local did:plc directory, on loopback only.
.venv/bin/python tools/pds/launcher.py install
export OMNIPOST_REQUIRE_PDS=1
# PostgreSQL server binaries: tests/pg.py runs a throwaway cluster on loopback (as the postgres user),
# and faketime (libfaketime), to run the clock-sensitive suites with the process clock a year ahead.
missing=()
for pkg in postgresql faketime; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
if [ ${#missing[@]} -gt 0 ]; then
  as_root=()
  if [ "$(id -u)" -ne 0 ]; then as_root=(sudo); fi  # CI runs as root; a developer's machine asks sudo
  "${as_root[@]}" apt-get update -qq
  "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
export OMNIPOST_REQUIRE_PG=1
# An S3-compatible server (moto in server mode, from the dev extras) on loopback for the S3 media host's tests.
export OMNIPOST_REQUIRE_S3=1
# schemathesis (from the dev extras) fuzzes the REST surface of a running server on loopback (~30 s).
export OMNIPOST_REQUIRE_SCHEMATHESIS=1
# Product code must take every instant from the injected clock: with the wall clock a year ahead, a read of
# the real time (token expiry, schedules, sunsets, idempotency expiry) disagrees with the tests' pinned clock.
faketime -f '+365d' .venv/bin/python -m pytest -m "not real_date" tests/test_wall_clock.py tests/test_tokens.py \
  tests/test_scheduler.py tests/test_webhooks.py tests/test_versions.py tests/test_publishing.py tests/test_caps.py \
  tests/test_sandbox.py tests/test_keys.py tests/platforms
.venv/bin/python -m pytest "$@"
