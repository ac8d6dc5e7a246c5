#!/usr/bin/env bash
# Create .venv and install recsys into it, torch first (a CPU build where one is offered), so a
# later dependency never pulls a different torch. Re-running is cheap: it reinstalls only when
# pyproject.toml changed. Used by run.sh and test.sh; nothing here is needed by hand.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-}
if [ -z "$PY" ]; then
  for cand in python3.13 python3.12 python3.11 python3; do
    if command -v "$cand" >/dev/null 2>&1 && "$cand" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
      PY=$cand; break
    fi
  done
fi
if [ -z "$PY" ]; then
  echo "setup: Python >= 3.11 is required (set PYTHON=/path/to/python3.11)" >&2
  exit 2
fi

if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv with $PY" >&2
  "$PY" -m venv .venv
fi
VPY=.venv/bin/python
stamp=.venv/.recsys-installed
want=$(cat pyproject.toml | "$VPY" -c 'import hashlib,sys; print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest())')
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi

PIP="$VPY -m pip --disable-pip-version-check"
if ! "$VPY" -c 'import torch' >/dev/null 2>&1; then
  echo "setup: installing torch 2.13.0 (first, so nothing else picks another build)" >&2
  # TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu gives a small CPU-only build on Linux.
  if [ -n "${TORCH_INDEX_URL:-}" ]; then
    $PIP install -q "torch==2.13.0" --index-url "$TORCH_INDEX_URL"
  else
    $PIP install -q "torch==2.13.0"
  fi
fi
echo "setup: installing recsys and its dependencies into .venv" >&2
$PIP install -q -e ".[dev]"
echo "$want" > "$stamp"
