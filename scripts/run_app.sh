#!/usr/bin/env bash
# One command: set up (first time) and serve the app on http://127.0.0.1:7860 with the bundled checkpoints.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python serve.py "$@"
