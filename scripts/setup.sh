#!/usr/bin/env bash
# Create .venv, install this project (pinned requirements) and put the example images in place.
# Usage: bash scripts/setup.sh [extras]   e.g. "train,dev" for the tests (default: serving only)
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRAS=${1:-}
PYTHON=${PYTHON:-$(command -v python3.11 || command -v python3)}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
stamp=".venv/.installed-$(cat pyproject.toml requirements*.txt | sha256sum | cut -c1-16)-${EXTRAS:-serve}"
if [ ! -f "$stamp" ]; then
  .venv/bin/pip install --disable-pip-version-check -q -e ".${EXTRAS:+[$EXTRAS]}"
  touch "$stamp"
fi
.venv/bin/python -m inference.files
