#!/usr/bin/env bash
# Install everything maild's tests need (Debian packages, the venv) and run the
# whole suite: unit tests, the golden corpus, and integration tests against a
# private Dovecot, an aiosmtpd sink, SQLite and PostgreSQL. Extra arguments go
# to pytest (e.g. scripts/test.sh -k threading).
set -euo pipefail
cd "$(dirname "$0")/.."
MAILD_WITH_BROWSER=1 bash scripts/install.sh  # chromium: the digest screenshot test
bash scripts/start-postgres.sh || true
echo "==> running the test suite"
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
