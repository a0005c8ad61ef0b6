#!/usr/bin/env bash
# Time installing the locked environment into a new virtual environment with an empty package cache, with
# pip and with uv, in the order given (default: pip uv pip). Each run gets its own empty cache folder, so
# the user's caches are neither used nor touched. Prints one line per run; needs the package registry.
#   bash benchmarks/install_time.sh [pip|uv ...]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
for tool in "${@:-pip uv pip}"; do
  for t in $tool; do
    rm -rf "$work/venv" "$work/cache"; mkdir -p "$work/cache"
    start=$(date +%s.%N)
    python3 -m venv "$work/venv"
    if [ "$t" = pip ]; then
      PIP_CACHE_DIR="$work/cache" "$work/venv/bin/pip" install -q -r requirements.lock
      PIP_CACHE_DIR="$work/cache" "$work/venv/bin/pip" install -q --no-deps --no-build-isolation -e .
    else
      PIP_CACHE_DIR="$work/cache" "$work/venv/bin/pip" install -q uv
      UV_CACHE_DIR="$work/cache" "$work/venv/bin/uv" pip install -q -p "$work/venv/bin/python" --compile-bytecode -r requirements.lock
      UV_CACHE_DIR="$work/cache" "$work/venv/bin/uv" pip install -q -p "$work/venv/bin/python" --no-deps --no-build-isolation -e .
    fi
    end=$(date +%s.%N)
    "$work/venv/bin/python" -c "import torch, torchaudio, transformers; print('torch', torch.__version__, 'torchaudio', torchaudio.__version__, 'transformers', transformers.__version__)"
    printf '%s: %.0f s, %s in the venv\n' "$t" "$(echo "$end - $start" | bc)" "$(du -sh "$work/venv" | cut -f1)"
  done
done
