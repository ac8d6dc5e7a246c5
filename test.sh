#!/usr/bin/env bash
# The tests: set up .venv, then run pytest with one thread per process. Under CI=true the slow
# end-to-end tests (real MovieLens-100k) run too. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")"
bash scripts/setup_env.sh
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 PYTHONHASHSEED=0
markers="not slow and not browser"
if [ "${CI:-}" = "true" ]; then
  markers="not browser"
fi
exec .venv/bin/python -m pytest -q -m "$markers" "$@"
