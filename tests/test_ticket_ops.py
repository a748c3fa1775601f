"""`maild tickets set` and `tickets list`'s filters, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from maild.app import App, build_app
from maild.cli import main
from maild.clock import FixedClock
from maild.config import load_config
from maild.ingest import IngestItem
from maild.store.db import upgrade
from maild.store.models import Ticket
from tests.builders import raw_mail, utc

NOW = utc(2026, 11, 2, 12)


def write_config(tmp: Path, db_url: str) -> Path:
    path = tmp / "maild.toml"
    path.write_text(f"""
[database]
url = "{db_url}"
[mailbox]
address = "support@example.com"
imap_host = "127.0.0.1"
security = "none"
allow_insecure = true
username = "support@example.com"
[sla.policies.vip]
first_response = "1h"
[agents]
"ayse@example.com" = "Ayşe Yılmaz"
"bob@example.com" = "Bob"
""")
    return path


@pytest.fixture
def setup(db_url: str, tmp_path: Path) -> tuple[Path, App]:
    """Three customers' tickets #1..#3 (ann, cem, ann), stored by the real ingest path."""
    config = write_config(tmp_path, db_url)
    app = build_app(load_config(config), FixedClock(NOW), environ={})
    upgrade(app.engine)
    mails = [raw_mail(frm=frm, subject=subj, msgid=f"<m{i}@example.org>",
                      body="Where is my order?")
             for i, (frm, subj) in enumerate([("ann@example.org", "Order missing"),
                                              ("cem@example.org", "Invoice"),
                                              ("Ann <ANN@example.org>", "Refund")], 1)]
    app.ingestor(app.config.mailboxes[0]).ingest_batch(
        "inbox", "INBOX", 1, [IngestItem(i, m, NOW - timedelta(hours=3 - i))
                              for i, m in enumerate(mails, 1)])
    return config, app


def run(config: Path, *args: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(["--config", str(config), *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def listing(config: Path, capsys: pytest.CaptureFixture[str], *args: str) -> list[int]:
    code, out, err = run(config, "tickets", "list", "--json", "--now", NOW.isoformat(), *args,
                         capsys=capsys)
    assert code == 0, err
    return [t["id"] for t in json.loads(out)]


def events(config: Path, capsys: pytest.CaptureFixture[str], ticket: int) -> list[dict]:
    code, out, _ = run(config, "tickets", "show", str(ticket), "--json", capsys=capsys)
    assert code == 0
    return list(json.loads(out)["events"])


def test_set_records_each_change_as_an_event(setup: tuple[Path, App],
                                             capsys: pytest.CaptureFixture[str]) -> None:
    config, _ = setup
    code, out, err = run(config, "tickets", "set", "1", "--status", "pending", "--assign",
                         "Ayşe Yılmaz", "--tag", "vip", "--tag", "billing", "--agent", "Bob",
                         "--json", capsys=capsys)
    assert code == 0, err
    assert json.loads(out) == {"id": 1, "done": ["status pending", "tag vip", "tag billing",
                                                 "assigned ayse@example.com"],
                               "status": "pending", "tags": ["vip", "billing"],
                               "assignee": "ayse@example.com"}
    mine = [e for e in events(config, capsys, 1) if e["actor"] == "Bob"]
    assert [(e["kind"], e.get("to"), e.get("added")) for e in mine] == [
        ("status", "pending", None), ("tags", None, ["vip", "billing"]),
        ("assigned", "ayse@example.com", None)]
    code, out, _ = run(config, "tickets", "set", "1", "--untag", "vip", "--unassign",
                       "--status", "solved", capsys=capsys)
    assert code == 0 and out.strip() == "#1: status solved, untag vip, unassigned"
    last = events(config, capsys, 1)[-3:]
    assert [(e["kind"], e.get("removed"), e.get("to")) for e in last] == [
        ("status", None, "solved"), ("tags", ["vip"], None), ("assigned", None, None)]
    # setting what is already there changes nothing and records nothing
    before = len(events(config, capsys, 1))
    code, out, _ = run(config, "tickets", "set", "1", "--status", "solved", capsys=capsys)
    assert (code, out.strip()) == (0, "#1: nothing changed")
    assert len(events(config, capsys, 1)) == before


def test_assignee_shows_in_list_and_show(setup: tuple[Path, App],
                                         capsys: pytest.CaptureFixture[str]) -> None:
    config, _ = setup
    assert run(config, "tickets", "set", "2", "--assign", "bob@example.com",
               capsys=capsys)[0] == 0
    code, out, _ = run(config, "tickets", "list", capsys=capsys)
    line = next(ln for ln in out.splitlines() if ln.startswith("#2 "))
    assert "bob@example.com" in line
    code, out, _ = run(config, "tickets", "show", "2", capsys=capsys)
    assert "assignee bob@example.com" in out
    rows = json.loads(run(config, "tickets", "list", "--json", capsys=capsys)[1])
    assert {r["id"]: r["assignee"] for r in rows} == {1: None, 2: "bob@example.com", 3: None}


@pytest.mark.parametrize("args, message", [
    (["--assign", "nobody"], "--assign: unknown agent 'nobody'"),
    (["--tag", "two words"], "--tag/--untag: 'two words' is not a tag"),
    ([], "tickets set: nothing to change"),
])
def test_set_refuses_bad_input_in_one_line(setup: tuple[Path, App],
                                           capsys: pytest.CaptureFixture[str],
                                           args: list[str], message: str) -> None:
    config, _ = setup
    code, _, err = run(config, "tickets", "set", "1", *args, capsys=capsys)
    assert code == 2 and err.count("\n") == 1 and message in err


def test_set_on_a_missing_or_filtered_ticket(setup: tuple[Path, App],
                                             capsys: pytest.CaptureFixture[str]) -> None:
    config, app = setup
    code, _, err = run(config, "tickets", "set", "99", "--tag", "x", capsys=capsys)
    assert code == 2 and "ticket 99: no such ticket" in err
    with app.sessions.begin() as s:
        s.get_one(Ticket, 2).status = "filtered"
    code, _, err = run(config, "tickets", "set", "2", "--status", "open", capsys=capsys)
    assert code == 1 and "maild tickets recover 2" in err
    assert run(config, "tickets", "set", "2", "--tag", "seen", capsys=capsys)[0] == 0


def test_list_newest_first_with_filters(setup: tuple[Path, App],
                                        capsys: pytest.CaptureFixture[str]) -> None:
    config, app = setup
    assert listing(config, capsys) == [3, 2, 1]
    assert listing(config, capsys, "--limit", "2") == [3, 2]
    assert listing(config, capsys, "--customer", "ANN@example.org") == [3, 1]
    assert listing(config, capsys, "--customer", "nobody@example.org") == []
    run(config, "tickets", "set", "1", "--assign", "Bob", capsys=capsys)
    assert listing(config, capsys, "--assignee", "bob") == [1]  # by name, any case
    assert listing(config, capsys, "--assignee", "bob@example.com") == [1]
    with app.sessions.begin() as s:
        one, two, three = (s.get_one(Ticket, i) for i in (1, 2, 3))
        one.sla_breached = True
        three.next_breached = True
        # #2: first response due in an hour, warned 10 minutes ago: at risk
        two.sla_due_at, two.sla_warn_at = NOW + timedelta(hours=1), NOW - timedelta(minutes=10)
        # #3 is due later but its warning time has not come
        three.sla_due_at, three.sla_warn_at = NOW + timedelta(hours=2), NOW + timedelta(hours=1)
    assert listing(config, capsys, "--breached") == [3, 1]
    assert listing(config, capsys, "--breached", "--assignee", "Bob") == [1]
    assert listing(config, capsys, "--at-risk") == [2]
    with app.sessions.begin() as s:
        s.get_one(Ticket, 2).first_response_at = NOW  # answered: no longer at risk
    assert listing(config, capsys, "--at-risk") == []
    code, _, err = run(config, "tickets", "list", "--limit", "0", capsys=capsys)
    assert code == 2 and "--limit" in err


def test_filters_are_served_by_indexes_on_sqlite(tmp_path: Path) -> None:
    """No filter of `tickets list` reads the whole tickets table (SQLite's plan)."""
    from maild.store.db import make_engine
    from maild.views import TicketFilter, _conditions

    engine = make_engine(f"sqlite:///{tmp_path / 'plan.db'}")
    upgrade(engine)
    from maild.store.models import Customer

    for f, index in [(TicketFilter(assignee="a@x.org"), "ix_tickets_assignee"),
                     (TicketFilter(customer="a@x.org"), "sqlite_autoindex_customers_1"),
                     (TicketFilter(breached=True), "ix_tickets_breached"),
                     # the open backlog, the tickets not due yet or the unanswered ones,
                     # whichever it guesses
                     (TicketFilter(at_risk=True, now=NOW), ("ix_tickets_s",
                                                            "ix_tickets_first_response_at"))]:
        query = sa.select(Ticket.id).join(Customer).where(*_conditions(f)).order_by(
            Ticket.id.desc()).limit(50)
        sql = str(query.compile(engine, compile_kwargs={"literal_binds": True}))
        with engine.connect() as conn:
            plan = [row[-1] for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql)]
        assert not any(p.startswith("SCAN tickets") and "INDEX" not in p for p in plan), plan
        indexes = (index,) if isinstance(index, str) else index
        assert any(i in p for p in plan for i in indexes), (f, plan)
