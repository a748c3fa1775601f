"""`maild customers export|forget ADDRESS`: a customer's data rights from the command line.

`register(subparsers)` adds them to the `maild` parser. `forget` without `--yes`
shows what it will erase and asks on a terminal; without a terminal it refuses
(a script must say `--yes`). The work is in `maild.privacy`; no logic here.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from maild.cli_common import app_from as _app
from maild.cli_common import out_json as _out
from maild.errors import MaildError
from maild.privacy import export_customer, forget_customer, plan_erasure


def cmd_customers_export(args: argparse.Namespace) -> int:
    app = _app(args)
    app.require_schema()
    with app.sessions() as session:
        data = export_customer(session, args.address, app.clock.now())
    if args.out:
        Path(args.out).write_text(json.dumps(data, ensure_ascii=False, indent=2) + "\n",
                                  encoding="utf-8")
        print(f"wrote {args.out}: {len(data['tickets'])} ticket(s)", file=sys.stderr)
    else:
        _out(data)
    return 0


def _confirm(lines: list[str]) -> bool:
    if not sys.stdin.isatty():
        raise MaildError("customers forget: not on a terminal; give --yes to erase")
    print("maild will erase from its database:")
    for line in lines:
        print(f"  {line}")
    print("The IMAP mailbox keeps its own copies: deleting those is the administrator's job.")
    answer = input("Erase? Type 'yes' to go on: ")
    return answer.strip().lower() == "yes"


def cmd_customers_forget(args: argparse.Namespace) -> int:
    app = _app(args)
    app.require_schema()
    if not args.yes:
        with app.sessions() as session:
            plan = plan_erasure(session, args.address)
        if not _confirm(plan.describe()):
            print("nothing erased")
            return 1
    with app.sessions.begin() as session:
        summary = forget_customer(session, args.address, app.clock.now())
    if args.json:
        _out(summary)
    else:
        print(f"forgotten: now {summary['pseudonym']}; {summary['tickets']} ticket(s), "
              f"{summary['messages']} message(s) erased, {summary['outbox_cancelled']} queued "
              f"mail cancelled, {summary['quarantined']} quarantined message(s) erased. "
              "The IMAP mailbox is yours to clean.")
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `customers export|forget` to the `maild` command line."""
    customers = subparsers.add_parser("customers", help="a customer's data: export, erase")
    sub = customers.add_subparsers(dest="customers_cmd", required=True)
    ex = sub.add_parser("export", help="everything maild holds about ADDRESS, as JSON")
    ex.add_argument("address", help="the customer's email address")
    ex.add_argument("--out", help="write the JSON document to this file (default: stdout)")
    ex.set_defaults(func=cmd_customers_export)
    fg = sub.add_parser("forget", help="erase ADDRESS's mail, name and address (pseudonym)")
    fg.add_argument("address", help="the customer's email address")
    fg.add_argument("--yes", action="store_true", help="do not ask (needed without a terminal)")
    fg.add_argument("--json", action="store_true")
    fg.set_defaults(func=cmd_customers_forget)
