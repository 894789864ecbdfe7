#!/usr/bin/env bash
# One command: set up (first time), install Chromium for the browser test if missing, run the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh train,dev,batch
if [ ! -x /usr/bin/chromium ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null) \
    || echo "warning: could not install chromium; the browser test cannot run"
fi
exec .venv/bin/python -m pytest -q -rsx -p no:cacheprovider "$@"
