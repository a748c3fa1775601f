#!/usr/bin/env bash
# Start the local PostgreSQL cluster if it is installed but not answering.
# The PostgreSQL variants of the tests skip (and say so) when none answers.
set -uo pipefail
if pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
  echo "==> PostgreSQL is answering on 127.0.0.1:5432"
  exit 0
fi
if command -v pg_ctlcluster >/dev/null && [ -d /etc/postgresql ]; then
  for version in $(ls /etc/postgresql); do
    echo "==> starting PostgreSQL $version"
    pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  done
  for _ in $(seq 1 20); do pg_isready -q -h 127.0.0.1 -p 5432 && exit 0; sleep 0.5; done
fi
echo "==> PostgreSQL not available: its test variants will be skipped"
exit 1
