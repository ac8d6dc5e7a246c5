#!/usr/bin/env bash
# The main job: set up .venv, then fetch and prepare MovieLens-100k and print its summary.
# Extra arguments go to `recsys run` (e.g. --data-dir DIR, --source PATH).
set -euo pipefail
cd "$(dirname "$0")"
bash scripts/setup_env.sh
exec .venv/bin/recsys run "$@"
