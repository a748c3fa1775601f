"""What every `maild` subcommand module shares: the App from --config/--now, JSON out.

Kept apart from `maild.cli` so that the modules adding subcommands
(`maild.cli_ops`) need not import the parser that imports them.
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


def out_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, ensure_ascii=False, indent=2) + "\n")


def clock_from(args: argparse.Namespace) -> Clock:
    now = getattr(args, "now", None)
    if not now:
        return SystemClock()
    try:
        return FixedClock(parse_instant(now))
    except ValueError:
        raise ConfigError(f"--now: not an ISO 8601 time: {now!r}") from None


def app_from(args: argparse.Namespace) -> App:
    return build_app(load_config(args.config), clock_from(args))
