#!/usr/bin/env bash
# Install everything and run the maild demo (see scripts/demo.py).
# Extra arguments go to the demo, e.g. scripts/demo.sh --out demo-out
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
exec .venv/bin/python scripts/demo.py "$@"
