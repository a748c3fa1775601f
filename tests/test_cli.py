"""CLI contracts: one-line errors naming file and field, exit codes, check output."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from maild.cli import main

REPO = Path(__file__).resolve().parents[1]


def config(tmp: Path, extra: str = "", rules: str | None = None) -> Path:
    rules_dir = tmp / "rules"
    rules_dir.mkdir(exist_ok=True)
    if rules is not None:
        (rules_dir / "10-bad.toml").write_text(rules)
    path = tmp / "maild.toml"
    path.write_text(f"""
[database]
url = "sqlite:///{tmp / 'm.db'}"
[mailbox]
address = "support@example.com"
imap_host = "127.0.0.1"
imap_port = 1
security = "none"
allow_insecure = true
username = "support@example.com"
timeout_seconds = 2
[paths]
rules = "{rules_dir}"
macros = "{REPO / 'maild' / 'defaults' / 'templates' / 'macros'}"
templates = "{REPO / 'maild' / 'defaults' / 'templates'}"
{extra}""")
    return path


def test_bad_config_key_is_one_line_naming_it(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    cfg = config(tmp_path, "[digest]\nat = '25:99'\n")
    assert main(["--config", str(cfg), "tickets", "list"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "digest.at" in err and str(cfg) in err


def test_check_lists_each_rule_error_and_fails(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    bad = """
[[rule]]
name = "one"
[rule.when]
subject = "(unclosed"
[[rule]]
name = "two"
[rule.then]
priorty = "high"
"""
    cfg = config(tmp_path, rules=bad)
    assert main(["--config", str(cfg), "check", "--json"]) == 1
    results = json.loads(capsys.readouterr().out)
    rule_lines = [r["detail"] for r in results if r["name"] == "rules"]
    assert len(rule_lines) == 2
    assert 'rule "one"' in rule_lines[0] and "when.subject" in rule_lines[0]
    assert 'rule "two"' in rule_lines[1] and "priorty" in rule_lines[1]
    assert all("10-bad.toml" in line for line in rule_lines)
    by_name = {r["name"]: r["ok"] for r in results}
    assert by_name["macros"] and by_name["auto-reply templates"]
    assert by_name["database"] is False  # not upgraded yet: the checklist says so


def check_detail(cfg: Path, name: str, capsys: pytest.CaptureFixture[str]) -> tuple[bool, str]:
    main(["--config", str(cfg), "check", "--json"])
    [found] = [r for r in json.loads(capsys.readouterr().out) if r["name"] == name]
    return found["ok"], found["detail"]


def test_check_says_command_mail_is_off_and_how_to_turn_it_on(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    agents = '[agents]\n"ayse@example.com" = "Ayse"\n'
    ok, detail = check_detail(config(tmp_path, agents), "command mail", capsys)
    assert ok and detail.startswith("off: every command is refused")
    assert "[sender_auth] trusted_authserv_id" in detail
    trusted = agents + '[sender_auth]\ntrusted_authserv_id = "MX.example.com"\n'
    ok, detail = check_detail(config(tmp_path, trusted), "command mail", capsys)
    assert ok and detail.startswith("on for 1 agent(s)") and "mx.example.com" in detail


@pytest.mark.parametrize("value", ["", "mx.example.com; dkim=pass", "two words"])
def test_bad_trusted_authserv_id_is_refused(tmp_path: Path, value: str,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    cfg = config(tmp_path, f'[sender_auth]\ntrusted_authserv_id = "{value}"\n')
    assert main(["--config", str(cfg), "tickets", "list"]) == 2
    assert "sender_auth.trusted_authserv_id" in capsys.readouterr().err


def test_rules_test_dry_run_stores_nothing(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    cfg = config(tmp_path)
    assert main(["--config", str(cfg), "db", "upgrade"]) == 0
    eml = tmp_path / "m.eml"
    eml.write_bytes(b"From: Ann <ann@example.org>\r\nTo: support@example.com\r\nSubject: "
                    b"Refund please\r\nMessage-ID: <r@x>\r\nAuto-Submitted: auto-replied\r\n\r\n"
                    b"I want my money back for order 1234, it arrived broken.\r\n")
    capsys.readouterr()
    assert main(["--config", str(cfg), "rules", "test", str(eml), "--json",
                 "--now", "2026-11-02T10:00:00Z"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["auto_submitted"] == {"automated": True, "reason": "auto-submitted",
                                      "description": data["auto_submitted"]["description"]}
    assert data["auto_reply"]["send"] is False
    assert data["auto_reply"]["skip_reason"] == "loop-guard:auto-submitted"
    assert data["classification"] == {"sender": "machine", "kind": "auto-reply",
                                      "reason": "auto-submitted",
                                      "description": data["classification"]["description"]}
    # as ingest: machine mail runs no rules and gets no suggestions; a person's would
    assert data["suggested_macros"] == [] and data["matched_rules"] == []
    assert data["rules_skipped"].startswith("machine mail (auto-submitted)")
    assert data["route"]["opens"] == "filtered" and data["route"]["auto"] is True
    eml.write_bytes(eml.read_bytes().replace(b"Auto-Submitted: auto-replied\r\n", b""))
    assert main(["--config", str(cfg), "rules", "test", str(eml), "--json",
                 "--now", "2026-11-02T10:00:00Z"]) == 0
    human = json.loads(capsys.readouterr().out)
    assert human["suggested_macros"][0]["name"] == "refund-policy"
    assert human["route"] == {"direction": "in", "auto": False, "customer": "ann@example.org",
                              "opens": "ticket", "filtered_kind": None, "forwarded_by": None,
                              "delivery_failed": []}
    assert main(["--config", str(cfg), "tickets", "list", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []
