#!/usr/bin/env bash
# The tests: set up .venv, then run pytest with one thread per process. Under CI=true the slow
# end-to-end tests (real MovieLens-100k, the main job) and the real-browser test run too.
# Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")"
bash scripts/setup_env.sh
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 PYTHONHASHSEED=0
markers="not slow and not browser"
if [ "${CI:-}" = "true" ]; then
  markers="slow or not slow"  # everything: slow end-to-end and browser tests included
fi
exec .venv/bin/python -m pytest -q -m "$markers" "$@"
