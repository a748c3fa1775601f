"""Plumbing shared by the benchmarks: arguments, a private mail stack, databases, configs.

`MailStack` starts a throw-away Dovecot (and optionally an SMTP sink) from `devstack`
and removes everything on exit; `database()` yields a fresh SQLite file or a private
PostgreSQL schema (dropped afterwards, like tests/dbfixtures.py); `write_config()`
writes a maild config like tests/integration/stack.write_config does. Nothing here
measures anything.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import logging
import math
import os
import pstats
import shutil
import sys
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType

import imapclient
import sqlalchemy as sa

from devstack.dovecot import DovecotServer, ImapAccount, make_workdir
from devstack.maildconfig import maild_config_text
from devstack.smtpsink import SmtpSink

REPO = Path(__file__).resolve().parents[1]
PASSWORD_ENV = "MAILD_BENCH_IMAP_PASSWORD"
PG_URL = os.environ.get("MAILD_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
BACKENDS = ("sqlite", "postgresql")


def make_parser(description: str, default: int, quick: int,
                backends: str = "both") -> argparse.ArgumentParser:
    """The options every benchmark takes: --messages, --quick, --db, --profile."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--messages", type=int, default=default,
                   help=f"how many messages / tickets (default {default})")
    p.add_argument("--quick", action="store_true",
                   help=f"smoke test: {quick} messages unless --messages is given")
    p.add_argument("--db", choices=[*BACKENDS, "both"], default=backends,
                   help=f"database backend(s) (default {backends})")
    p.add_argument("--profile", action="store_true",
                   help="also run maild's part under cProfile and print the top functions")
    p.set_defaults(quick_size=quick, default_size=default)
    return p


def parse(parser: argparse.ArgumentParser, argv: Sequence[str] | None = None
          ) -> argparse.Namespace:
    """Parse; with --quick and no explicit --messages, use the quick size."""
    args = parser.parse_args(argv)
    if args.quick and args.messages == args.default_size:
        args.messages = args.quick_size
    args.backends = BACKENDS if args.db == "both" else (args.db,)
    return args


def log_to_file(path: Path, level: int = logging.INFO) -> None:
    """maild logs one line per decision: keep it (real cost) but off the terminal."""
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("alembic", "apscheduler", "mail.log"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


class MailStack:
    """A private Dovecot with one support account, plus an optional SMTP sink."""

    def __init__(self, smtp: bool = False) -> None:
        self.want_smtp = smtp
        self.workdir = make_workdir("maild-bench-")
        self.dovecot = DovecotServer(self.workdir)
        self.sink: SmtpSink | None = None
        self.account: ImapAccount | None = None

    def __enter__(self) -> MailStack:
        try:
            self.dovecot.start()
            self.account = self.dovecot.create_account("support")
            if self.want_smtp:
                self.sink = SmtpSink()
                self.sink.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        if self.sink is not None:
            self.sink.close()
        self.dovecot.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    @property
    def acct(self) -> ImapAccount:
        assert self.account is not None, "stack not started"
        return self.account

    def imap(self) -> imapclient.IMAPClient:
        """A logged-in connection, STARTTLS like maild's config."""
        client = imapclient.IMAPClient(self.acct.host, port=self.acct.port, ssl=False)
        client.starttls(self.acct.ssl_context())
        client.login(self.acct.address, self.acct.password)
        return client

    def maildir(self) -> Path:
        return self.dovecot.home_root / self.acct.address.lower() / "Maildir"


@contextlib.contextmanager
def database(kind: str, directory: Path) -> Iterator[str]:
    """A URL to an empty database: a new SQLite file, or a private PostgreSQL schema."""
    if kind == "sqlite":
        yield f"sqlite:///{directory / f'maild-{uuid.uuid4().hex[:8]}.db'}"
        return
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(PG_URL)
    with admin.begin() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    try:
        yield f"{PG_URL}?options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
        admin.dispose()




def write_config(directory: Path, account: ImapAccount, db_url: str,
                 sink: SmtpSink | None = None, global_per_hour: int = 200) -> Path:
    """A maild config for the private stack: real rules, macros and templates."""
    text = maild_config_text(
        address=account.address, imap_port=account.port, ca_file=account.ca_file,
        db_url=db_url, password_env=PASSWORD_ENV, smtp_port=sink.port if sink else None,
        # no cap per recipient domain: the generated customers share a few domains
        autoreply_extra=f"global_per_hour = {global_per_hour}\nper_domain_per_hour = 0\n")
    path = directory / f"maild-{uuid.uuid4().hex[:6]}.toml"
    path.write_text(text)
    return path


def proc_status_mb(field: str, pid: int | str = "self") -> float:
    """A /proc/PID/status memory field (VmRSS, VmHWM...) in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise KeyError(field)


def percentile(values: Sequence[float], fraction: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    xs = sorted(values)
    h = (len(xs) - 1) * fraction
    lo = math.floor(h)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (h - lo) * (xs[hi] - xs[lo])


def verdict(ok: bool) -> str:
    return "MET" if ok else "MISSED"


@contextlib.contextmanager
def profiled(enabled: bool, label: str) -> Iterator[None]:
    """Profile the block (pyinstrument if installed, else cProfile); report on stderr."""
    if not enabled:
        yield
        return
    try:
        from pyinstrument import Profiler
    except ImportError:
        Profiler = None  # noqa: N806
    if Profiler is not None:
        profiler = Profiler(interval=0.001)
        with profiler:
            yield
        print(f"--- pyinstrument: {label} ---", file=sys.stderr)
        print(profiler.output_text(unicode=True, show_all=False), file=sys.stderr)
        return
    prof = cProfile.Profile()
    with prof:
        yield
    print(f"--- cProfile: {label}, top 30 by cumulative ---", file=sys.stderr)
    pstats.Stats(prof, stream=sys.stderr).strip_dirs().sort_stats("cumulative").print_stats(30)



def all_uids(client: imapclient.IMAPClient, uidnext: int, window: int = 50_000) -> list[int]:
    """Every UID of the selected folder (UIDNEXT `uidnext`) with a bare imapclient, SEARCH
    in UID windows: one SEARCH of ~140,000 UIDs is a reply line over imaplib's 1 MB."""
    found: list[int] = []
    for start in range(1, max(uidnext, 2), window):
        found += client.search(["UID", f"{start}:{start + window - 1}"])
    return sorted(set(found))
