"""The agents' commands: `maild reply`, `maild macros list`, `maild macros render`.

`register(subparsers)` adds them to the `maild` parser (called from
`maild.cli.build_parser`). This module parses arguments, runs $EDITOR for
`reply --edit` and prints; the work is in `maild.replying`. `reply --send`
only queues the reply in the outbox (the daemon, or `maild run --once`,
sends it); nothing is sent or committed without `--send`. No business logic.
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path

from maild.app import App
from maild.cli_common import app_from as _app  # never `maild.cli`: it imports this module
from maild.cli_common import out_json as _out
from maild.errors import MaildError
from maild.macros import load_macros
from maild.replying import AGENT_STATUSES, Agent, PreparedReply, prepare_reply, send_reply

AGENT_ENV = "MAILD_AGENT_NAME"


def agent_name(args: argparse.Namespace, app: App) -> str:
    """--agent, else $MAILD_AGENT_NAME, else the auto-reply sender name."""
    return str(args.agent or app.environ.get(AGENT_ENV)
               or app.automation().settings.sender_name)


def edit_text(text: str, environ: Mapping[str, str]) -> str:
    """Let the user edit `text` in $VISUAL/$EDITOR (a temp file); the edited text."""
    editor = environ.get("VISUAL") or environ.get("EDITOR") or "vi"
    with tempfile.NamedTemporaryFile("w", suffix=".txt", encoding="utf-8",
                                     delete=False) as handle:
        handle.write(text)
        path = Path(handle.name)
    try:
        code = subprocess.run([*shlex.split(editor), str(path)], check=False).returncode
        if code != 0:
            raise MaildError(f"editor {editor!r} exited with {code}: nothing sent")
        edited = path.read_text(encoding="utf-8")
    finally:
        path.unlink(missing_ok=True)
    if not edited.strip():
        raise MaildError("the edited reply is empty: nothing sent")
    return edited


def _prepare(args: argparse.Namespace, app: App, macro: str, ticket: int) -> PreparedReply:
    app.require_schema()
    with app.sessions() as session:  # read only: no transaction held while editing
        return prepare_reply(session, app.automation(), ticket, macro,
                             agent=Agent(agent_name(args, app)), now=app.clock.now(),
                             language=args.language)


def cmd_reply(args: argparse.Namespace) -> int:
    app = _app(args)
    reply = _prepare(args, app, args.macro, args.id)
    if args.edit:
        reply = reply.with_body(edit_text(reply.body, app.environ))
    if not args.send:
        _show(args, reply)
        return 0
    with app.sessions.begin() as session:
        sent = send_reply(session, reply, now=app.clock.now(), actor=agent_name(args, app),
                          calendar=app.automation().calendar)
    if args.json:
        _out({**reply.as_json(), "queued": True, "message_id": sent.message_id,
              "done": list(sent.done)})
    else:
        print(reply.as_text())
        done = f"; {', '.join(sent.done)}" if sent.done else ""
        print(f"queued {sent.message_id} to {sent.to}{done}")
    return 0


def cmd_macros_render(args: argparse.Namespace) -> int:
    _show(args, _prepare(args, _app(args), args.name, args.ticket))
    return 0


def cmd_macros_list(args: argparse.Namespace) -> int:
    config = _app(args).config
    library = load_macros(config.macros_dir())
    rows = [m for m in library.as_list_json()
            if args.language is None or m["language"] == args.language]
    if args.json:
        _out(rows)
        return 0
    for m in rows:
        status = m["actions"]["status"]
        print(f"{m['name']:<24} {m['language']:<5} {m['title']}"
              + (f"  (sets {status})" if status else ""))
    print(f"{len(rows)} macro(s)")
    return 0


def _show(args: argparse.Namespace, reply: PreparedReply) -> None:
    if args.json:
        _out(reply.as_json())
    else:
        print(reply.as_text(), end="")


def _agent_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--language", help="macro language (default: the ticket's)")
    p.add_argument("--agent", help=f"agent name shown in the reply (default: ${AGENT_ENV} "
                                   "or autoreply.sender_name)")
    p.add_argument("--json", action="store_true")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `reply` and `macros list|render` to the `maild` command line."""
    reply = subparsers.add_parser("reply", help="reply to a ticket with a macro")
    reply.add_argument("id", type=int, help="ticket id")
    reply.add_argument("--macro", required=True, help="macro name")
    reply.add_argument("--send", action="store_true",
                       help="queue it in the outbox and apply the macro's actions "
                            f"(status {'|'.join(AGENT_STATUSES)}, tags)")
    reply.add_argument("--edit", action="store_true", help="edit the body in $EDITOR first")
    _agent_options(reply)
    reply.set_defaults(func=cmd_reply)

    macros = subparsers.add_parser("macros", help="list and preview macros").add_subparsers(
        dest="macros_cmd", required=True)
    ml = macros.add_parser("list", help="list macros")
    ml.add_argument("--language", help="only macros in this language")
    ml.add_argument("--json", action="store_true")
    ml.set_defaults(func=cmd_macros_list)
    mr = macros.add_parser("render", help="preview a macro for a ticket")
    mr.add_argument("name", help="macro name")
    mr.add_argument("--ticket", type=int, required=True, help="ticket id")
    _agent_options(mr)
    mr.set_defaults(func=cmd_macros_render)

