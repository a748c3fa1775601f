"""The operator's commands: `maild init`, `maild tickets set`, `maild quarantine …`.

`register_ops(subparsers, tickets)` adds them to the `maild` parser (called from
`maild.cli.build_parser`). This module parses arguments, asks for confirmation on
a terminal and prints; the work is in `maild.scaffold`, `maild.replying` and
`maild.quarantine`. No business logic.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from maild.app import App
from maild.cli_common import app_from, out_json
from maild.errors import ConfigError, MaildError

AGENT_ENV = "MAILD_AGENT_NAME"


def _actor(args: argparse.Namespace, app: App) -> str:
    return str(args.agent or app.environ.get(AGENT_ENV) or "cli")


def cmd_init(args: argparse.Namespace) -> int:
    from maild.scaffold import init

    written = init(Path(args.dir), force=args.force)
    if args.json:
        out_json({"config": str(written.config), "files": [str(f) for f in written.files]})
        return 0
    print(f"wrote {written.config} and {len(written.files)} rule, macro and template file(s) "
          f"under {written.config.parent}")
    print(f"next: edit {written.config} (addresses, servers, password variables), then\n"
          f"  maild --config {written.config} db upgrade\n"
          f"  maild --config {written.config} check")
    return 0


def _change(args: argparse.Namespace, app: App) -> Any:
    from maild.commands import resolve_agent, valid_tag
    from maild.replying import TicketChange

    bad = [t for t in (*args.tag, *args.untag) if not valid_tag(t)]
    if bad:
        raise ConfigError(f"--tag/--untag: {bad[0]!r} is not a tag (1-64 characters, no "
                          "space, comma or #)")
    assignee = None
    if args.assign is not None:
        wanted = _actor(args, app) if args.assign.strip().lower() == "me" else args.assign
        assignee = resolve_agent(wanted, app.config.agents, "")
        if assignee is None:
            known = ", ".join(sorted(app.config.agents)) or "none: add them to [agents]"
            raise ConfigError(f"--assign: unknown agent {wanted!r} (known: {known})")
    change = TicketChange(status=args.status, tags=tuple(args.tag), assignee=assignee,
                          untags=tuple(args.untag), unassign=args.unassign)
    if change == TicketChange():
        raise ConfigError("tickets set: nothing to change (give --status, --assign, "
                          "--unassign, --tag or --untag)")
    return change


def cmd_tickets_set(args: argparse.Namespace) -> int:
    from maild.replying import change_ticket
    from maild.views import show_ticket

    app = app_from(args)
    app.require_schema()
    change = _change(args, app)
    with app.sessions.begin() as session:
        done = change_ticket(session, args.id, change, now=app.clock.now(),
                             actor=_actor(args, app), calendar=app.automation().calendar)
    with app.sessions() as session:
        ticket = show_ticket(session, args.id)
    if args.json:
        out_json({"id": args.id, "done": done, "status": ticket["status"],
                  "tags": ticket["tags"], "assignee": ticket["assignee"]})
    else:
        print(f"#{args.id}: {', '.join(done) if done else 'nothing changed'}")
    return 0


def cmd_quarantine_list(args: argparse.Namespace) -> int:
    from maild.quarantine import list_quarantine

    app = app_from(args)
    app.require_schema()
    with app.sessions() as session:
        rows = list_quarantine(session, include_resolved=args.all, limit=args.limit)
    if args.json:
        out_json(rows)
        return 0
    for r in rows:
        print(f"#{r['id']:<4} {r['status']:<8} {r['at']} {r['folder']} uid={r['uid']} "
              f"{r['from'] or '-'}: {(r['subject'] or '-')[:50]}\n      {r['error'][:100]}")
    print(f"{len(rows)} message(s){'' if args.all else ' held'}")
    return 0


def cmd_quarantine_show(args: argparse.Namespace) -> int:
    from maild.quarantine import get_row, show_quarantine

    app = app_from(args)
    app.require_schema()
    with app.sessions() as session:
        if args.raw:
            sys.stdout.buffer.write(get_row(session, args.id).raw)
            sys.stdout.flush()
            return 0
        data = show_quarantine(session, args.id)
    if args.json:
        out_json(data)
        return 0
    for key in ("id", "status", "mailbox", "folder", "uid", "at", "size", "retries",
                "resolved_at", "resolved_by", "ticket_id"):
        print(f"{key:<12} {data[key] if data[key] is not None else '-'}")
    for key, value in data["headers"].items():
        print(f"{key:<12} {value}")
    print(f"error        {data['error']}")
    return 0


def cmd_quarantine_retry(args: argparse.Namespace) -> int:
    from maild.quarantine import retry

    app = app_from(args)
    app.require_schema()

    def ingestor_for(address: str) -> Any:
        for mb in app.config.mailboxes:
            if mb.address.lower() == address:
                return app.ingestor(mb)
        raise MaildError(f"quarantine {args.id}: its mailbox {address} is not in the config")

    result = retry(app.sessions, ingestor_for, args.id, actor=_actor(args, app),
                   now=app.clock.now())
    if args.json:
        out_json(result)
    elif result["duplicate"]:
        print(f"quarantine #{args.id}: already stored (same Message-ID); marked retried")
    else:
        print(f"quarantine #{args.id}: stored in ticket #{result['ticket_id']}"
              f"{' (new)' if result['new_ticket'] else ''}")
    return 0


def _confirm_drop(args: argparse.Namespace, summary: dict[str, Any]) -> None:
    if args.yes:
        return
    if not sys.stdin.isatty():
        raise ConfigError("quarantine drop: not a terminal, so not asking; pass --yes")
    print(f"#{summary['id']} {summary['from'] or '-'}: {summary['subject'] or '-'} "
          f"({summary['size']} bytes)\nerror: {summary['error']}")
    answer = input("drop it (it stays on record, marked dropped)? [y/N] ")
    if answer.strip().lower() not in ("y", "yes"):
        raise MaildError(f"quarantine {args.id}: not dropped")


def cmd_quarantine_drop(args: argparse.Namespace) -> int:
    from maild.quarantine import drop, show_quarantine

    app = app_from(args)
    app.require_schema()
    with app.sessions() as session:
        _confirm_drop(args, show_quarantine(session, args.id))
    with app.sessions.begin() as session:
        result = drop(session, args.id, actor=_actor(args, app), now=app.clock.now(),
                      reason=args.reason)
    if args.json:
        out_json(result)
    else:
        print(f"quarantine #{args.id}: dropped (kept on record; `maild quarantine list --all`)")
    return 0


def _agent(p: argparse.ArgumentParser) -> None:
    p.add_argument("--agent", help=f"who is recorded as doing it (default: ${AGENT_ENV} or "
                                    "cli)")


def _register_set(tickets: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from maild.replying import AGENT_STATUSES

    ts = tickets.add_parser("set", help="change a ticket's status, assignee or tags "
                                        "(recorded as events)")
    ts.add_argument("id", type=int)
    ts.add_argument("--status", choices=AGENT_STATUSES)
    who = ts.add_mutually_exclusive_group()
    who.add_argument("--assign", metavar="AGENT",
                     help="an [agents] address or name (or 'me': --agent / $MAILD_AGENT_NAME)")
    who.add_argument("--unassign", action="store_true", help="remove the assignee")
    ts.add_argument("--tag", action="append", default=[], help="add a tag (repeatable)")
    ts.add_argument("--untag", action="append", default=[], help="remove a tag (repeatable)")
    _agent(ts)
    ts.add_argument("--json", action="store_true")
    ts.set_defaults(func=cmd_tickets_set)


def _register_quarantine(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    q = sub.add_parser("quarantine", help="messages that failed to store: look, retry, "
                                          "drop").add_subparsers(dest="quarantine_cmd",
                                                                 required=True)
    ql = q.add_parser("list", help="held messages, newest first")
    ql.add_argument("--all", action="store_true", help="also those retried or dropped")
    ql.add_argument("--limit", type=int, help="at most this many")
    ql.add_argument("--json", action="store_true")
    ql.set_defaults(func=cmd_quarantine_list)
    qs = q.add_parser("show", help="one quarantined message: headers, error, state")
    qs.add_argument("id", type=int)
    qs.add_argument("--raw", action="store_true", help="write the raw message to stdout")
    qs.add_argument("--json", action="store_true")
    qs.set_defaults(func=cmd_quarantine_show)
    qr = q.add_parser("retry", help="store it again through the normal ingest path")
    qr.add_argument("id", type=int)
    _agent(qr)
    qr.add_argument("--json", action="store_true")
    qr.set_defaults(func=cmd_quarantine_retry)
    qd = q.add_parser("drop", help="give up on it, on record (asks first on a terminal)")
    qd.add_argument("id", type=int)
    qd.add_argument("--yes", action="store_true", help="do not ask")
    qd.add_argument("--reason", help="why, recorded with it")
    _agent(qd)
    qd.add_argument("--json", action="store_true")
    qd.set_defaults(func=cmd_quarantine_drop)


def register_ops(sub: argparse._SubParsersAction[argparse.ArgumentParser],
                 tickets: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `init`, `tickets set` and `quarantine list|show|retry|drop`."""
    init = sub.add_parser("init", help="write a starter config and copies of the default "
                                       "rules, macros and templates into DIR")
    init.add_argument("dir", help="directory to write maild.toml, rules/ and templates/ into")
    init.add_argument("--force", action="store_true", help="overwrite existing files")
    init.add_argument("--json", action="store_true")
    init.set_defaults(func=cmd_init)
    _register_set(tickets)
    _register_quarantine(sub)
