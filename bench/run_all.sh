#!/bin/sh
# Run every maild benchmark: `bench/run_all.sh` (full, default sizes, ~20 min on 2 cores)
# or `bench/run_all.sh --quick` (smoke test, ~2 min). Extra arguments go to every script.
# Exit status: 0 when every script ran and met its targets, else the last failure's code.
set -u
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
status=0
for bench in ingest memory latency scheduler sending; do
    echo "== bench.$bench $*"
    "$PY" -m "bench.$bench" "$@" || status=$?
done
exit "$status"
