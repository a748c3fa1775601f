"""What every `maild` command module shares: the App from the arguments, JSON output.

`maild.cli` (the parser and the admin commands) and `maild.cli_agent` (the
agents' commands) both use these, so neither imports the other's internals.
No command lives here, and nothing here parses the command line.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from maild.app import App, build_app
from maild.clock import Clock, FixedClock, SystemClock, parse_instant
from maild.config import load_config
from maild.errors import ConfigError


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, ensure_ascii=False, indent=2) + "\n")


def clock_from(args: argparse.Namespace) -> Clock:
    """`--now ISO8601` as a fixed clock, else the system clock."""
    now = getattr(args, "now", None)
    if not now:
        return SystemClock()
    try:
        return FixedClock(parse_instant(now))
    except ValueError:
        raise ConfigError(f"--now: not an ISO 8601 time: {now!r}") from None


def app_from(args: argparse.Namespace) -> App:
    """The App for `--config` (or $MAILD_CONFIG) and `--now`."""
    return build_app(load_config(args.config), clock_from(args))
