#!/usr/bin/env bash
# Set up, then run the main job on the embedded default: validate one announcement for seven
# platforms with no account and no network, and print every target's result.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export OMNIPOST_DATA_DIR=${OMNIPOST_DATA_DIR:-$PWD/.omnipost-demo}
set +e
.venv/bin/omnipost validate examples/launch.json
status=$?
set -e
# exit 1 means "validated, some target invalid" — the example is built to show violations
[ "$status" -le 1 ] || exit "$status"
