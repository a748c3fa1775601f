"""CI cannot pass without PostgreSQL (issue 15, "Tests that cannot pass by accident").

scripts/test.sh fails when PostgreSQL does not start and CI=true, and the
PostgreSQL test variants fail instead of skipping under CI=true. The script is
run for real, in a copy of the repository's scripts with install and
PostgreSQL replaced by stand-ins that succeed or fail on demand.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.dbfixtures import require_pg

REPO = Path(__file__).resolve().parents[1]


def _tree(tmp: Path, postgres_ok: bool) -> Path:
    (tmp / "scripts").mkdir()
    shutil.copy(REPO / "scripts" / "test.sh", tmp / "scripts" / "test.sh")
    (tmp / "scripts" / "install.sh").write_text("exit 0\n")
    (tmp / "scripts" / "start-postgres.sh").write_text(f"exit {0 if postgres_ok else 1}\n")
    python = tmp / ".venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text("#!/bin/sh\necho pytest-ran \"$@\"\n")
    python.chmod(0o755)
    return tmp


def _run(tree: Path, ci: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    if ci is not None:
        env["CI"] = ci
    return subprocess.run(["bash", str(tree / "scripts" / "test.sh"), "-k", "x"], env=env,
                          capture_output=True, text=True, timeout=60, check=False)


def test_script_fails_in_ci_when_postgres_does_not_start(tmp_path: Path) -> None:
    done = _run(_tree(tmp_path, postgres_ok=False), "true")
    assert done.returncode == 1 and "pytest-ran" not in done.stdout
    assert "CI=true" in done.stderr


def test_script_goes_on_without_postgres_outside_ci(tmp_path: Path) -> None:
    done = _run(_tree(tmp_path, postgres_ok=False), None)
    assert done.returncode == 0
    assert "pytest-ran -m pytest -q -p no:cacheprovider -k x" in done.stdout
    assert "skipped" in done.stderr


def test_script_runs_the_suite_in_ci_with_postgres(tmp_path: Path) -> None:
    done = _run(_tree(tmp_path, postgres_ok=True), "true")
    assert done.returncode == 0 and "pytest-ran" in done.stdout


def test_missing_postgres_fails_a_test_under_ci_and_skips_it_otherwise() -> None:
    with pytest.raises(pytest.fail.Exception, match="CI=true"):
        require_pg("PostgreSQL at x not reachable", {"CI": "true"})
    with pytest.raises(pytest.skip.Exception, match="not reachable"):
        require_pg("PostgreSQL at x not reachable", {})
    require_pg(None, {"CI": "true"})  # available: nothing happens
