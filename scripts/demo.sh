#!/usr/bin/env bash
# Set up, then run the main job on the embedded default (no account, no network): start the
# server over stdio, connect three sandbox accounts through a real MCP client, validate and
# publish one post to all of them, and print the batch and each target's outcome.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export OMNIPOST_DATA_DIR=${OMNIPOST_DATA_DIR:-$PWD/.omnipost-demo}
.venv/bin/omnipost demo
