"""Run the local mail stack by hand: ``python -m devstack``.

Starts a private Dovecot and an SMTP sink that delivers into it, creates the
demo users (support@example.com, customer@example.org; password "secret"),
prints the endpoints as one JSON line on stdout and runs until SIGINT or
SIGTERM, then stops both servers and removes the temp dir.

For manual tries and the demo only: it must not touch the system Dovecot or
listen anywhere but 127.0.0.1.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import sys
import threading
from contextlib import ExitStack
from pathlib import Path
from types import FrameType
from typing import Any

from devstack.dovecot import DovecotServer, make_workdir
from devstack.smtpsink import SmtpSink

DEMO_USERS = ("support@example.com", "customer@example.org")
DEMO_PASSWORD = "secret"


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m devstack",
        description="Run a private Dovecot and an SMTP sink until SIGINT/SIGTERM.",
    )
    parser.add_argument(
        "--workdir",
        type=Path,
        help="use and keep this directory (default: a fresh temp dir, removed on exit)",
    )
    return parser.parse_args(argv)


def _endpoints(dovecot: DovecotServer, sink: SmtpSink) -> dict[str, Any]:
    return {
        "host": dovecot.host,
        "imap_port": dovecot.imap_port,
        "imaps_port": dovecot.imaps_port,
        "lmtp_port": dovecot.lmtp_port,
        "lmtp_socket": str(dovecot.lmtp_socket),
        "smtp_port": sink.port,
        "ca_file": str(dovecot.ca_file),
        "log_path": str(dovecot.log_path),
        "workdir": str(dovecot.workdir),
        "users": {address: DEMO_PASSWORD for address in DEMO_USERS},
    }


def _stop_on_signals() -> threading.Event:
    stop = threading.Event()

    def handler(signum: int, frame: FrameType | None) -> None:
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, handler)
    return stop


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    stop = _stop_on_signals()
    with ExitStack() as stack:
        workdir = args.workdir or make_workdir("devstack-")
        if args.workdir is None:
            stack.callback(shutil.rmtree, workdir, ignore_errors=True)
        dovecot = stack.enter_context(DovecotServer(workdir))
        for address in DEMO_USERS:
            dovecot.add_user(address, DEMO_PASSWORD)
        sink = stack.enter_context(SmtpSink(deliver_to=dovecot))
        print(json.dumps(_endpoints(dovecot, sink)), flush=True)
        while not stop.wait(0.5):
            pass
    print("devstack: stopped", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
