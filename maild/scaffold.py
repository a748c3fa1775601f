"""`maild init DIR`: a commented starter config and copies of the default content.

The starter `maild.toml` is written from the schema itself (`maild.config`'s
dataclasses: every key's documentation and default), so it cannot drift from
what maild accepts. Keys a newcomer must fill in carry example values; the other
keys are commented out at their defaults. Secrets are named by `password_env`,
never written. The packaged rules, macros and templates are copied beside it,
and `[paths]` points at the copies. Existing files are never overwritten unless
asked (`force`). This module writes files; it reads no config and opens no
connection.
"""

from __future__ import annotations

import json
import shutil
import textwrap
from dataclasses import MISSING, Field, dataclass, fields
from pathlib import Path
from typing import Any

from maild import resources
from maild.config import SECTIONS
from maild.errors import MaildError

CONFIG_NAME = "maild.toml"
# What the starter sets (uncommented): the values a newcomer must change, and [paths].
SET_VALUES: dict[str, dict[str, Any]] = {
    "database": {"url": "sqlite:///maild.db"},
    "mailbox": {"address": "support@example.com", "imap_host": "imap.example.com",
                "username": "support@example.com", "password_env": "MAILD_IMAP_PASSWORD"},
    "smtp": {"host": "smtp.example.com", "username": "support@example.com",
             "password_env": "MAILD_SMTP_PASSWORD"},
    "paths": {"rules": "rules", "macros": "templates/macros", "templates": "templates"},
}
HEADER = """\
# maild configuration, written by `maild init`.
# Every key of every section is listed with its documentation; keys that are
# commented out show their default. Change the example values (support@example.com,
# imap.example.com, smtp.example.com), then run `maild db upgrade` and `maild check`.
# Secrets never go in this file: put the passwords in the variables named by
# password_env (or point password_file at a file readable only by maild).
# Reference: docs/configuration.md. OAuth2 (Microsoft 365, Google): [mailbox.oauth2].
"""
AGENTS = """\
# The agents: their address = their name. Only they may send command mail
# (#status, #tag, #assign, #macro), and their mail never opens a customer ticket.
[agents]
# "agent@example.com" = "Agent Name"
"""
VIP_POLICY = """\
# A named SLA policy: the copied rules (rules/30-vip.toml) select it for VIP
# customers. Rules may only name policies defined here (`maild check` verifies it).
[sla.policies.vip]
first_response = "1h"
# next_response = "4h"
"""


@dataclass(frozen=True)
class Written:
    """What `init` wrote: the config and each copied file."""

    config: Path
    files: tuple[Path, ...]


def toml_value(value: Any) -> str:
    """A Python value as a TOML literal (strings as basic strings)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, tuple | list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise TypeError(f"no TOML form for {value!r}")


def _key_lines(f: Field[Any], section: str) -> list[str]:
    lines = textwrap.wrap(f.metadata["doc"], 86, initial_indent="# ", subsequent_indent="# ")
    chosen = SET_VALUES.get(section, {})
    if f.name in chosen:
        return [*lines, f"{f.name} = {toml_value(chosen[f.name])}"]
    if f.default is not MISSING:
        default = f.default
    elif f.default_factory is not MISSING:
        default = f.default_factory()
    else:
        default = None
    if default is None:
        return [*lines, f"# {f.name} = (not set)"]
    return [*lines, f"# {f.name} = {toml_value(default)}"]


def _section(name: str, cls: type) -> str:
    out = [f"[{name}]"]
    for f in fields(cls):
        if f.name == "oauth2":
            continue  # a table of its own, documented in docs/configuration.md
        out += _key_lines(f, name)
    return "\n".join(out) + "\n"


def starter_config() -> str:
    """The text of the starter maild.toml."""
    parts = [HEADER]
    for name, cls in SECTIONS.items():
        parts.append(_section(name, cls))
        if name == "sla":
            parts.append(VIP_POLICY)
    parts.append(AGENTS)
    return "\n".join(parts)


def _copies(directory: Path) -> list[tuple[Path, Path]]:
    """(packaged file, destination) for every default rule, macro and template."""
    pairs: list[tuple[Path, Path]] = []
    for source, dest in ((resources.default_rules(), directory / "rules"),
                         (resources.default_templates(), directory / "templates")):
        for path in sorted(source.rglob("*")):
            if path.is_file() and not path.name.startswith((".", "__")):
                pairs.append((path, dest / path.relative_to(source)))
    return pairs


def init(directory: Path, *, force: bool = False) -> Written:
    """Write DIR/maild.toml and copies of the default content; refuse to overwrite
    an existing file (naming it) unless `force`."""
    config = directory / CONFIG_NAME
    copies = _copies(directory)
    if not force:
        existing = [p for p in (config, *(d for _, d in copies)) if p.exists()]
        if existing:
            more = f" and {len(existing) - 1} more" if len(existing) > 1 else ""
            raise MaildError(f"{existing[0]} exists{more}: nothing written "
                             "(--force overwrites)")
    try:
        directory.mkdir(parents=True, exist_ok=True)
        config.write_text(starter_config(), encoding="utf-8")
        for source, dest in copies:
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, dest)
    except OSError as exc:
        raise MaildError(f"{exc.filename or directory}: cannot write: {exc.strerror}") from None
    return Written(config, tuple(d for _, d in copies))
