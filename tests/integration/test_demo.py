"""The README's first command works: the demo runs end to end and shows results."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import pytest

from tests.integration.stack import REPO, maild_cmd

pytestmark = pytest.mark.integration


def test_demo_runs_end_to_end(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "demo.py"), "--out",
                           str(tmp_path)], capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert "stored 32 messages into 17 tickets" in out
    assert "13 ticket(s)" in out  # the 4 machine mails' tickets are filtered, not listed
    filtered = out.split("machine mail: filtered")[1].split("==>")[0].strip().splitlines()[1:]
    assert [line.split()[1] for line in filtered] == \
        ["auto-reply", "bounce", "bulk", "notification"], filtered
    assert "ETA auto-replies that went out (11" in out
    assert "within 4 business hours" in out and "iş saati içinde" in out
    for reason in ("loop-guard:autoreply-subject", "loop-guard:report-content",
                   "loop-guard:list-headers", "loop-guard:machine-sender",
                   "rate-limit-sender"):
        assert reason in out
    assert "delivery_failed rafael.costa@uol.com.br 5.1.1" in out
    assert "the bounce is on it as bounce mail, not a new ticket (13 tickets listed)" in out
    assert "suggest: " in out and (tmp_path / "maild.db").exists()
    assert (tmp_path / "digest" / "digest-2026-11-03.html").exists()
    _assert_survey_round_trip(out, tmp_path)


def _assert_survey_round_trip(out: str, tmp_path: Path) -> None:
    """The survey section: the survey reached the sink after the solving reply, the
    answer is a `csat` event on the still solved ticket, and nothing was mailed back."""
    section = out.split("==> satisfaction survey: ")[1].split("\n==>")[0]
    assert section.startswith("sent to sophie.laurent@icloud.com, answered csat=5"), section
    assert "sent the reply (1 sent)" in section and "sent the survey (1 sent)" in section
    assert 'survey at the SMTP sink: "How did we do? [#3]" to sophie.laurent@icloud.com, ' \
        "6 mailto: links" in section
    assert "stored 1, sent 0 (13 mails at the sink before, 13 after" in section
    assert 'csat score 5, comment "Quick and friendly, thank you!"; still solved' in section
    assert '"csat": {"satisfied_pct": 1.0, "responses": 1, "response_rate": 1.0, ' \
        '"surveys_sent": 1}' in section
    assert "Satisfaction (CSAT): 100% satisfied of 1 answer, response rate 100% of 1 " \
        "survey sent" in section
    # the database agrees: the csat event, and no mail queued for #3 after the survey
    shown = json.loads(subprocess.run(
        maild_cmd(tmp_path / "maild.toml", "tickets", "show", "3", "--json"),
        capture_output=True, text=True, check=True, cwd=REPO).stdout)
    [csat] = [e for e in shown["events"] if e["kind"] == "csat"]
    assert (csat["score"], csat["comment"]) == (5, "Quick and friendly, thank you!")
    assert shown["status"] == "solved" and shown["messages"][-1]["auto"] is True
    assert not [e for e in shown["events"] if e["kind"] in ("reopened", "survey_ignored")]
    with closing(sqlite3.connect(tmp_path / "maild.db")) as db:
        kinds = [k for (k,) in db.execute("SELECT kind FROM outbox WHERE ticket_id = 3 "
                                          "ORDER BY id")]
    assert kinds == ["auto_reply", "macro", "survey"], kinds


def test_digest_preview_renders_in_a_browser(tmp_path: Path) -> None:
    """The digest preview is looked at as a page: Chromium renders it to a PNG."""
    import shutil

    if not (shutil.which("chromium") or shutil.which("chromium-browser")):
        if os.environ.get("CI") == "true":  # scripts/test.sh installs it for CI
            pytest.fail("chromium missing in CI: scripts/install.sh MAILD_WITH_BROWSER=1 failed")
        pytest.skip("chromium not installed (apt-get install chromium): screenshot not taken")
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "demo.py"), "--out",
                           str(tmp_path)], capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    html = tmp_path / "digest" / "digest-2026-11-03.html"
    png = tmp_path / "digest.png"
    shot = subprocess.run(["bash", str(REPO / "scripts" / "screenshot.sh"), str(html),
                           str(png)], capture_output=True, text=True, timeout=120)
    assert shot.returncode == 0, shot.stderr
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000  # a real page, not blank
