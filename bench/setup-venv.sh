#!/usr/bin/env bash
# Creates or reuses the PyTorch virtualenv for bench/torch_peer.py, outside the repo, and prints its python path.
# Only `npm run bench` calls this (never tests or CI); a non-zero exit means "skip the peer", with the reason on stderr.
set -euo pipefail

venv="${DPOFLOW_TORCH_VENV:-$HOME/.cache/dpoflow/torch-venv}"
requirements="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/requirements.txt"
base_python="${PYTHON:-python3}"

if [ ! -x "$venv/bin/python" ]; then
  echo "setup-venv: creating $venv with $base_python" >&2
  "$base_python" -m venv "$venv" >&2
fi

# Pins (name==version lines) that pip freeze does not list verbatim are missing or at another version.
missing="$(grep -E '^[A-Za-z0-9]' "$requirements" | grep -vxF -f <("$venv/bin/pip" freeze 2>/dev/null) || true)"
if [ -n "$missing" ]; then
  echo "setup-venv: installing into $venv:" $missing >&2
  "$venv/bin/pip" install -q -r "$requirements" >&2
fi

echo "$venv/bin/python"
