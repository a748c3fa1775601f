"""`maild auth login` and `maild auth status`: OAuth2 consent and token state per mailbox.

`register(subparsers)` adds them to the `maild` parser (called from
`maild.cli.build_parser`). Parses arguments and prints; the work is in `maild.auth.login`.
Neither needs the database. Never prints a token or secret.
"""

from __future__ import annotations

import argparse
import sys

from maild.cli_common import out_json as _out
from maild.config import load_config


def _say(line: str) -> None:
    print(line, flush=True)


def cmd_auth_login(args: argparse.Namespace) -> int:
    from maild.auth.login import login, pick

    cfg = load_config(args.config)
    table = pick(cfg, args.mailbox)
    if hasattr(sys.stdout, "reconfigure"):  # the URL or code must show while we wait
        sys.stdout.reconfigure(line_buffering=True)
    row = login(cfg, table, _say, port=args.port, timeout=float(args.timeout))
    if args.json:
        _out(row)
    else:
        print(f"logged in: {row['account']} for {row['mailbox']} ({row['provider']}); "
              f"refresh token stored in {row['token_file']} (mode 0600)")
    return 0


def cmd_auth_status(args: argparse.Namespace) -> int:
    from maild.auth.login import consent_tables, status_of

    cfg = load_config(args.config)
    rows = [status_of(cfg, t) for t in consent_tables(cfg)]
    if args.json:
        _out(rows)
    elif not rows:
        print("no mailbox uses OAuth2 (auth = \"password\")")
    for r in rows if not args.json else []:
        print(f"{r['where']} {r['mailbox']}: {r['flow']} ({r['provider']}), account "
              f"{r['account'] or '-'}, scopes {' '.join(r['scopes'])}")
        if r["token_file"]:
            print(f"  token expires {r['token_expires_at'] or '-'}, last refresh "
                  f"{r['last_refresh'] or '-'}, logged in {r['logged_in_at'] or '-'}")
        print(f"  {r['state']}")
    ok = all(r["state"].startswith(("ok", "tokens in memory")) for r in rows)
    return 0 if ok else 1


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `auth login|status` to the `maild` command line."""
    auth = subparsers.add_parser("auth", help="OAuth2 consent and token state").add_subparsers(
        dest="auth_cmd", required=True)
    al = auth.add_parser("login", help="a person's consent for a refresh_token mailbox "
                         "(Microsoft device code, Google loopback redirect)")
    al.add_argument("--mailbox", help="the mailbox address (needed with several "
                    "refresh_token mailboxes)")
    al.add_argument("--port", type=int, default=0,
                    help="Google: the loopback redirect port (default: any free one; give "
                         "one to forward it through an SSH tunnel)")
    al.add_argument("--timeout", type=int, default=300,
                    help="Google: seconds to wait for the browser's redirect (default 300)")
    al.add_argument("--json", action="store_true", help="print the new status as JSON")
    al.set_defaults(func=cmd_auth_login)
    ast = auth.add_parser("status", help="per mailbox: flow, account, scopes, token "
                          "expiry, last refresh")
    ast.add_argument("--json", action="store_true")
    ast.set_defaults(func=cmd_auth_status)



