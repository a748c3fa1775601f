"""The `maild` command line: parse arguments, call the services, print results.

Every listing has --json. Exit codes: 0 success, 1 a failed check or
operation, 2 bad input (config, arguments, files) with a one-line error on
stderr naming the file and field. No business logic here.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.exc import SQLAlchemyError

from maild.app import App
from maild.cli_common import app_from, clock_from, out_json
from maild.errors import ConfigError, MaildError, NotFoundError
from maild.logs import setup_logging

Handler = Callable[[argparse.Namespace], int]


_out = out_json  # short names used throughout this module
_clock = clock_from
_app = app_from


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    from maild.store.db import upgrade

    app = _app(args)
    before, after = upgrade(app.engine)
    url = app.engine.url.render_as_string(hide_password=True)
    print(f"database {url}: {before or 'empty'} -> {after}" if before != after
          else f"database {url}: already at {after}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from maild.locks import sqlite_instance_lock

    app = _app(args)
    app.require_schema()
    with sqlite_instance_lock(app.engine):  # SQLite: one `maild run` per database
        if args.once:
            return _run_once(args, app)
        from maild.daemon import run_forever

        run_forever(app)
    return 0


def _run_once(args: argparse.Namespace, app: App) -> int:
    from maild.daemon import run_once

    progress = (lambda line: print(line, file=sys.stderr)) if sys.stderr.isatty() else None
    reports, delivery = run_once(app, progress)
    summary = {"stored": sum(r.stored for r in reports),
               "new_tickets": sum(r.new_tickets for r in reports),
               "sent": len(delivery.sent) if delivery else 0,
               "send_retry": len(delivery.retry) if delivery else 0,
               "send_failed": len(delivery.failed) if delivery else 0}
    if args.json:
        _out(summary)
    else:
        print(f"stored {summary['stored']} message(s), {summary['new_tickets']} new "
              f"ticket(s); sent {summary['sent']}, retrying {summary['send_retry']}, "
              f"failed {summary['send_failed']}")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    """Import history again with another cut-off (older mail `import_since` left out)."""
    from maild.config import parse_since

    app = _app(args)
    app.require_schema()
    try:
        since = None if args.all else parse_since(args.since, app.clock.now())
    except ConfigError as exc:
        raise ConfigError(f"--since: {exc}") from None
    lines = []
    for i, mb in enumerate(app.config.mailboxes):
        poller = app.poller(i)
        assert poller.history is not None
        with poller.client_factory().connect() as client:
            for plan in poller.folders(client):
                total = poller.history.restart(client, plan.role, plan.name, since)
                lines.append({"mailbox": mb.address, "folder": plan.name, "messages": total})
    if args.json:
        _out(lines)
        return 0
    for line in lines:
        what = "no history lane (all its mail was imported as live mail)" \
            if line["messages"] is None else f"{line['messages']:,} message(s) of history " \
            "queued; the next `maild run` (or `run --once`) imports them behind live mail"
        print(f"{line['mailbox']} {line['folder']}: {what}")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from maild.checks import run_checks

    results = run_checks(_app(args))
    if args.json:
        _out([r.__dict__ for r in results])
    else:
        for r in results:
            print(f"[{'ok' if r.ok else 'FAIL':>4}] {r.name}: {r.detail}")
    return 0 if all(r.ok for r in results) else 1


def cmd_tickets_list(args: argparse.Namespace) -> int:
    from maild.commands import resolve_agent
    from maild.views import TicketFilter, list_tickets

    app = _app(args)
    app.require_schema()
    assignee = args.assignee
    if assignee is not None:  # an agent's name or address, as `tickets set --assign` takes
        assignee = resolve_agent(assignee, app.config.agents, "") or assignee.strip().lower()
    if args.limit is not None and args.limit < 1:
        raise ConfigError(f"--limit: must be at least 1, got {args.limit}")
    wanted = TicketFilter(status=args.status, limit=args.limit, assignee=assignee,
                          customer=args.customer, breached=args.breached,
                          at_risk=args.at_risk, now=app.clock.now())
    with app.sessions() as session:
        rows = list_tickets(session, f=wanted)
    if args.json:
        _out(rows)
        return 0
    for t in rows:
        print(f"#{t['id']:<5} {t['status']:<8} {t['priority']:<7} {t['customer']:<32} "
              f"{t['message_count']:>3} msg  {(t['assignee'] or '-'):<24} {t['subject'][:60]}")
    print(f"{len(rows)} ticket(s)")
    return 0


def cmd_tickets_show(args: argparse.Namespace) -> int:
    from maild.views import show_ticket

    app = _app(args)
    app.require_schema()
    with app.sessions() as session:
        data = show_ticket(session, args.id)
    if args.json:
        _out(data)
        return 0
    print(f"#{data['id']} [{data['status']}/{data['priority']}] {data['subject']}")
    print(f"customer {data['customer']}  created {data['created_at']}  "
          f"first response {data['first_response_at'] or '-'}  "
          f"assignee {data['assignee'] or '-'}")
    if data["tags"]:
        print(f"tags {', '.join(data['tags'])}")
    if data["filtered"]:
        print(f"filtered: {data['filtered']['kind']} ({data['filtered']['reason']}); "
              f"`maild tickets recover {data['id']}` if a person wrote it")
    for m in data["messages"]:
        flag = f" ({m['kind'] or m['class']})" if m["auto"] else ""
        print(f"  {m['direction']:>3} {m['arrived_at']} {m['from']}{flag}: {m['subject']}")
    for e in data["events"]:
        print(f"  event {e['at']} {e['kind']} {e.get('reason', '')}".rstrip())
    return 0


def cmd_tickets_recover(args: argparse.Namespace) -> int:
    from maild.recover import recover_ticket

    app = _app(args)
    app.require_schema()
    auto = app.automation()
    policy = auto.policies["default"]
    now = app.clock.now()
    with app.sessions.begin() as session:
        ticket = recover_ticket(session, args.id, calendar=auto.calendar,
                                first_response=policy.first_response, policy=policy.name,
                                warn_fraction=auto.warn_fraction, now=now)
        result = {"id": ticket.id, "status": ticket.status,
                  "customer": ticket.customer.address, "trusted": True,
                  "sla_due_at": ticket.sla_due_at.isoformat() if ticket.sla_due_at else None}
    if args.json:
        _out(result)
    else:
        print(f"#{result['id']} is now {result['status']}; mail from {result['customer']} is "
              f"a customer's from now on; first response due {result['sla_due_at']}")
    return 0


def _print_automations(entries: list[dict[str, Any]]) -> None:
    for a in entries:
        when = "fired already (this episode)" if a["already_fired"] else \
            f"fires {'now' if a['holds_now'] else 'at ' + a['fires_at']}" if a["fires_at"] \
            else "does not fire (" + ", ".join(c["condition"] for c in a["conditions"]
                                                 if not c["holds"]) + " not met)"
        print(f"  automation {a['automation']}: {when}")


def cmd_rules_test(args: argparse.Namespace) -> int:
    from maild.dryrun import dry_run, dry_run_ticket

    app = _app(args)
    if (args.file is None) == (args.ticket is None):
        raise ConfigError("rules test: give a message FILE.eml or --ticket ID (one of them)")
    if args.ticket is not None:
        found = dry_run_ticket(app, args.ticket)
        if args.json:
            _out(found)
            return 0
        print(f"ticket #{found['ticket']} at {found['now']}: {found['facts']}")
        if found["history"]:
            print("  history: its customer last wrote before maild first ran (less "
                  "autoreply.max_age_hours); no automation fires until they write again")
            return 0
        _print_automations(found["automations"])
        return 0
    data = dry_run(app, args.file)
    if args.json:
        _out(data)
        return 0
    v, c, r = data["auto_submitted"], data["classification"], data["route"]
    print(f"written by: {c['sender']}{'/' + c['kind'] if c['kind'] else ''} ({c['reason']})")
    opens = {"filtered": f"a filtered ticket ({r['filtered_kind']})", "nothing": "no ticket",
             "ticket": "a ticket"}[r["opens"]]
    print(f"stored as: {r['direction']}, {'auto (not counted)' if r['auto'] else 'counted'}"
          f", customer {r['customer'] or '-'}; if it threads nowhere it opens {opens}")
    for f in r["delivery_failed"]:
        print(f"  delivery failed: {f['address']} {f['status']} {f['diagnostic'][:80]}")
    print(f"auto-submitted: {'yes (' + v['reason'] + ')' if v['automated'] else 'no'}")
    print(f"mailbox: {data['mailbox']}  database: {data['database']}")
    print(f"language: {data['language']}  thread: {data['thread']}")
    ing = data["ingest"]
    if ing["stored"]:
        queued = ", ".join(f"{o['kind']} to {o['to']}" for o in ing["outbox"]) or "nothing"
        print(f"ingest: ticket {ing['ticket']} -> {ing['status']}; events: "
              f"{', '.join(ing['events']) or '(none)'}; queues: {queued}")
    print(f"matched rules: {', '.join(data['matched_rules']) or '(none)'}"
          f"{'  (' + data['rules_skipped'] + ')' if data.get('rules_skipped') else ''}")
    for a in data["actions"]:
        print(f"  action: {a}")
    ar = data["auto_reply"]
    verdict = f"yes, {ar['eta']}" if ar["send"] else f"no ({ar['skip_reason']})"
    print(f"auto-reply: {verdict}")
    for s in data["suggested_macros"]:
        print(f"  suggest: {s['name']} score={s['score']} {' '.join(s['matched_terms'])}")
    if data["automations"]:
        print("time-based automations on the new ticket (if nobody answers):")
        _print_automations(data["automations"])
    return 0


def _day(text: str, what: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ConfigError(f"{what}: not a date (YYYY-MM-DD): {text!r}") from None


def _local_midnight(day: date, tz: str) -> datetime:
    return datetime.combine(day, time(0), ZoneInfo(tz)).astimezone(UTC)


def cmd_stats(args: argparse.Namespace) -> int:
    from maild.report import compute_stats

    app = _app(args)
    app.require_schema()
    tz = app.config.sla.timezone
    since = _local_midnight(_day(args.since, "--since"), tz)
    until = _local_midnight(_day(args.until, "--until"), tz)
    with app.sessions() as session:
        data = compute_stats(session, app.automation().calendar, since, until, app.clock.now(),
                             agents=app.config.agents)
    if args.json:
        _out(data)
        return 0
    for key, value in data.items():
        print(f"{key:<24} {json.dumps(value, ensure_ascii=False)}")
    return 0


def cmd_digest(args: argparse.Namespace) -> int:
    from maild.report import build_digest
    from maild.schedule import job_digest

    app = _app(args)
    app.require_schema()
    local_today = app.clock.now().astimezone(ZoneInfo(app.config.sla.timezone)).date()
    day = _day(args.date, "--date") if args.date else local_today - timedelta(days=1)
    if args.send:
        if not app.config.digest.to:
            raise ConfigError("digest.to: no recipients configured")
        print(job_digest(app, day, force=True)["digest"])
        from maild.delivery import deliver_outbox

        deliver_outbox(app)
        return 0
    with app.sessions() as session:
        digest = build_digest(session, app.automation().calendar, day, app.config.sla.timezone,
                              app.clock.now(), company=app.config.autoreply.company,
                              agents=app.config.agents,
                              templates=app.config.templates_dir() / "digest")
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / f"digest-{day}.html").write_text(digest.html, encoding="utf-8")
        (out / f"digest-{day}.txt").write_text(digest.text, encoding="utf-8")
        print(f"digest for {day}: {out / f'digest-{day}.html'} and {out / f'digest-{day}.txt'}")
    else:
        print(digest.text)
    return 0


def _first_line(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None)
    text = str(orig if orig is not None else exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="maild", description="Email-support automation daemon")
    p.add_argument("--config", help="config file (default: $MAILD_CONFIG or ./maild.toml)")
    p.add_argument("--log-level", default="INFO")
    p.add_argument("--log-json", action="store_true", help="log JSON lines")
    p.add_argument("--trace-imap", action="store_true",
                   help="with --log-level DEBUG, also log the IMAP protocol (imapclient); "
                        "off by default: it is long and shows message contents and SASL "
                        "lines (an OAuth2 token); for debugging a server only")
    sub = p.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="the daemon (or one cycle with --once)")
    run.add_argument("--once", action="store_true", help="one full cycle, then exit")
    run.add_argument("--now", help="ISO 8601 time to use as the clock")
    run.add_argument("--json", action="store_true")
    run.set_defaults(func=cmd_run)

    db = sub.add_parser("db", help="database schema").add_subparsers(dest="db_cmd", required=True)
    db.add_parser("upgrade", help="create or migrate the database").set_defaults(
        func=cmd_db_upgrade)

    check = sub.add_parser("check", help="validate config, rules, macros; try logins")
    check.add_argument("--json", action="store_true")
    check.set_defaults(func=cmd_check)

    imp = sub.add_parser("import", help="import history again, e.g. the older mail that "
                         "mailbox.import_since left out of the first run")
    cut = imp.add_mutually_exclusive_group(required=True)
    cut.add_argument("--since", help="only mail that arrived in this period or from this "
                     "date: 90d, 12w or YYYY-MM-DD")
    cut.add_argument("--all", action="store_true", help="all history, however old")
    imp.add_argument("--now", help="ISO 8601 time to use as the clock")
    imp.add_argument("--json", action="store_true")
    imp.set_defaults(func=cmd_import)

    rules = sub.add_parser("rules", help="rules").add_subparsers(dest="rules_cmd", required=True)
    rt = rules.add_parser("test", help="dry run of the rules on one .eml file")
    rt.add_argument("file", nargs="?", help="a raw message (.eml)")
    rt.add_argument("--ticket", type=int, help="instead of a message: the time-based "
                    "automations on this ticket (which would fire, and when)")
    rt.add_argument("--now", help="ISO 8601 time the message is taken to arrive at")
    rt.add_argument("--json", action="store_true")
    rt.set_defaults(func=cmd_rules_test)

    st = sub.add_parser("stats", help="KPIs for a period (local dates, until exclusive)")
    st.add_argument("--since", required=True, help="first local day, YYYY-MM-DD")
    st.add_argument("--until", required=True, help="local day after the last, YYYY-MM-DD")
    st.add_argument("--now", help="ISO 8601 time to use as the clock")
    st.add_argument("--json", action="store_true")
    st.set_defaults(func=cmd_stats)

    dg = sub.add_parser("digest", help="preview or send the daily digest")
    dg.add_argument("--date", help="local day to report on (default: yesterday)")
    mode = dg.add_mutually_exclusive_group(required=True)
    mode.add_argument("--preview", action="store_true", help="render (text to stdout)")
    mode.add_argument("--send", action="store_true", help="send now to digest.to")
    dg.add_argument("--out", help="with --preview: write digest-DATE.html and .txt here")
    dg.add_argument("--now", help="ISO 8601 time to use as the clock")
    dg.set_defaults(func=cmd_digest)

    tickets = sub.add_parser("tickets", help="list and show tickets").add_subparsers(
        dest="tickets_cmd", required=True)
    tl = tickets.add_parser("list", help="list tickets, newest first")
    tl.add_argument("--status", choices=["new", "open", "pending", "solved", "filtered"])
    tl.add_argument("--limit", type=int, help="at most this many (the newest)")
    tl.add_argument("--assignee", help="only tickets assigned to this agent (address or "
                                       "[agents] name)")
    tl.add_argument("--customer", help="only this customer's tickets (address)")
    tl.add_argument("--breached", action="store_true",
                    help="only tickets that missed a first- or next-response target")
    tl.add_argument("--at-risk", action="store_true",
                    help="only tickets whose first response is due and past its warning time")
    tl.add_argument("--now", help="ISO 8601 time --at-risk is judged at")
    tl.add_argument("--json", action="store_true")
    tl.set_defaults(func=cmd_tickets_list)
    ts = tickets.add_parser("show", help="one ticket with messages and events")
    ts.add_argument("id", type=int)
    ts.add_argument("--json", action="store_true")
    ts.set_defaults(func=cmd_tickets_show)
    tr = tickets.add_parser("recover", help="make a wrongly filtered ticket a customer's "
                            "ticket; trust its sender from now on")
    tr.add_argument("id", type=int)
    tr.add_argument("--json", action="store_true")
    tr.set_defaults(func=cmd_tickets_recover)
    from maild.cli_agent import register
    from maild.cli_ops import register_ops
    register(sub)
    register_ops(sub, tickets)
    from maild.cli_auth import register as register_auth
    register_auth(sub)
    from maild.cli_privacy import register as register_privacy
    register_privacy(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level, args.log_json, trace_imap=args.trace_imap)
    try:
        return int(args.func(args))
    except (ConfigError, NotFoundError) as exc:
        print(f"maild: error: {exc}", file=sys.stderr)
        return 2
    except MaildError as exc:
        print(f"maild: error: {exc}", file=sys.stderr)
        return 1
    except SQLAlchemyError as exc:  # one line, never a traceback (the URL has the path)
        print(f"maild: error: database: {_first_line(exc)}", file=sys.stderr)
        return 1
    except OSError as exc:  # a file maild could not read or write: name it
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"maild: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
