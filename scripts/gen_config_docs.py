#!/usr/bin/env python3
"""Write docs/configuration.md from the configuration schema in maild/config.py.

The dataclasses in `maild.config` are the schema: every key, its type, its
default and its one-line meaning (field metadata "doc"). This script walks
`SECTIONS` (plus `SlaPolicyConfig` for [sla.policies.NAME]) and renders one
table per section, wrapped in the hand-written text kept below.

    .venv/bin/python scripts/gen_config_docs.py           # (re)write docs/configuration.md
    .venv/bin/python scripts/gen_config_docs.py --check   # exit 1 if the file is stale
    .venv/bin/python scripts/gen_config_docs.py --stdout  # print instead of writing

`tests/test_docs.py` runs `--check`, so a schema change without regenerating fails the tests.
"""

from __future__ import annotations

import argparse
import sys
import types
import typing
from dataclasses import MISSING, Field, fields
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from maild.config import SECTIONS, OAuth2Config, SlaPolicyConfig, SmtpConfig  # noqa: E402

OUTPUT = ROOT / "docs" / "configuration.md"
REGENERATE = ".venv/bin/python scripts/gen_config_docs.py"

HEADER = f"""\
<!-- GENERATED FILE: do not edit by hand.
     Source: the dataclasses in maild/config.py (field metadata "doc") and the text in
     scripts/gen_config_docs.py. Regenerate with: {REGENERATE}
     tests/test_docs.py fails when this file is stale ({REGENERATE} --check). -->

# Configuration reference

This page is generated from the schema in `maild/config.py`; to change a key's description,
edit its `doc(...)` there and run `{REGENERATE}`.

## The file

maild reads one TOML file: `--config PATH`, else `$MAILD_CONFIG`, else `./maild.toml`.
`maild init DIR` writes a starting point with every key below, documented, at its default
([cli.md](cli.md#maild-init)); a shorter example is [maild.example.toml](maild.example.toml);
the step-by-step setup is in [getting-started.md](getting-started.md).

- **Validation is strict.** An unknown section or key, a missing required key or a value of
  the wrong type stops maild with a one-line error naming the file and the key, for
  example `maild.toml: smtp.prot: unknown key`, and exit code 2. `maild check` reports the
  same error.
- **Secrets never go in the file.** A key named `password`, `secret`, `pass`,
  `client_secret`, `access_token` or `refresh_token` anywhere is rejected. Give
  `password_env = "VAR"` (the name of an environment variable) or `password_file = "path"`
  (a file whose content, stripped of surrounding whitespace, is the password), never both;
  the same for `client_secret_env` / `client_secret_file`.
- **Relative paths are relative to the config file's directory**, not to the current
  directory: `paths.*`, `ca_file`, `password_file` and a relative SQLite database
  (`sqlite:///maild.db` next to `/etc/maild/maild.toml` is `/etc/maild/maild.db`).
  Under the shipped systemd unit `/etc` is read-only, so give the database an absolute path
  there (see [operations.md](operations.md)).
- **TLS verification is always on.** `ca_file` adds a CA bundle (for a private CA); there is
  no switch to turn verification off. `security = "none"` (no TLS at all) is refused unless
  `allow_insecure = true` is also set; use that only for a loopback test server.
- Durations (`first_response`, `next_response`) are hours, minutes and seconds such as
  `"4h"`, `"30m"`, `"1h30m"`, `"2h 15m"` or `"90s"`, counted in **business time** (the
  `[sla]` calendar), and must be longer than zero.

Types below are TOML types: *string*, *integer*, *float*, *boolean*, *list of strings*.
"optional" means the key may be left out and has no value then.

"""

FOOTER = """\
## [agents]

The agents, by their own address: `"address" = "Display Name"`, one line each.

```toml
[agents]
"ayse@example.com" = "Ayşe Yılmaz"
"bob@example.com" = "Bob Smith"
```

Only mail from these addresses may carry commands (command mail, see
[agents.md](agents.md)); their mail is never a customer's (no ticket of its own, no ETA
reply); the per-agent KPIs and the digest show these names. Without `[agents]` command
mail is off. Addresses are compared in lower case.

## Checked beyond the types

Besides the types, loading the file checks:

- `security` is one of `tls`, `starttls`, `none`; `none` needs `allow_insecure = true`;
- `provider` is `microsoft` or `google`; `auth` is `password` or `oauth2`, and `oauth2`
  needs its `[mailbox.oauth2]` table (and `[smtp] auth = "oauth2"` a table to use);
- in an oauth2 table: `flow` is known, `client_id` and `tenant` (or `authority`, an
  `https://` URL) are given, and exactly one of `client_secret_env`, `client_secret_file`;
- `password_env` and `password_file` are not both given; a `password_env` variable that is
  not set, or an unreadable `password_file`, is an error when maild logs in (`maild check`
  reports it);
- `mailbox.address` contains `@`, and no address is configured twice;
- `mailbox.batch_size` and `mailbox.poll_seconds` are positive;
- `sla.timezone` is a known IANA zone, `sla.business_hours` parses, `sla.holidays` is a
  known holiday calendar;
- every duration parses and is longer than zero;
- `sla.warn_fraction` is strictly between 0 and 1;
- `digest.at` is `HH:MM` and `digest.days` only uses `mon` … `sun`;
- `threading.window_days` is zero or more.

Rule files can only name SLA policies that exist (`default` plus your
`[sla.policies.NAME]` tables); `maild check` verifies that, see [rules.md](rules.md).
"""

SECTION_TEXT: dict[str, str] = {
    "http": """\
Off unless `listen` is given: the daemon then serves `/healthz` (200, or 503 with the
reasons as JSON) and `/metrics` (Prometheus) on that address, from a thread of its own.
Keep it on loopback or a monitoring network: it has no authentication. Metrics, alert
rules and the health checks: [operations.md](operations.md#health-and-metrics).
""",
    "database": """\
Where maild keeps tickets, messages, events, the outbox and the quarantine. Optional: the
default is an SQLite file next to the config file. SQLite runs in WAL mode and suits one
maild process; use PostgreSQL (`postgresql+psycopg://user@host/dbname`, the password in
`~/.pgpass` or `PGPASSWORD`, never in the URL you commit) for a team or several processes.
Run `maild db upgrade` after creating the database and after every upgrade of maild.
""",
    "mailbox": """\
The shared support mailbox maild watches. **Required.** Write one `[mailbox]` table, or
several `[[mailbox]]` tables (an array of tables) for several shared mailboxes; errors then
name the table as `mailbox[0]`, `mailbox[1]`, … maild reads INBOX and the Sent folder,
never deletes or moves customer mail, and fetches with `BODY.PEEK[]` so mail stays unread
unless `mark_seen = true`.

With several mailboxes, each ticket belongs to the mailbox its first message came to, and
everything maild sends about it comes from that mailbox: replies (ETA auto-replies, macro
replies, command confirmations) and SLA alerts go out through the mailbox's own
`[mailbox.smtp]` when it has one, else through `[smtp]`, and their copies are appended to
**that mailbox's** Sent folder. The daily digest is one mail from the first mailbox, with
the figures for all mailboxes and then a section per mailbox. `maild rules test` uses the
mailbox the message is addressed to. See [operations.md](operations.md#several-mailboxes).
""",
    "mailbox.smtp": """\
Optional, per mailbox: the SMTP submission server this mailbox's mail goes out through (same
keys as `[smtp]`; with several mailboxes write it after each `[[mailbox]]` as
`[mailbox.smtp]`). Without it the mailbox uses `[smtp]`. With `auth = "oauth2"` it reuses
this mailbox's `[mailbox.oauth2]` unless `[mailbox.smtp.oauth2]` is given. The provider
preset of the mailbox fills host, port and security.
""",
    "mailbox.oauth2": """\
OAuth2 instead of a password, for Microsoft 365 and Google Workspace mailboxes. Required
when `auth = "oauth2"`. maild fetches an access token itself, keeps it in memory only,
renews it before it expires, and logs in with SASL XOAUTH2 (IMAP and SMTP). When the server
refuses a token, maild fetches a new one and tries once more before reporting the failure.
`[smtp] auth = "oauth2"` uses the first mailbox's `[mailbox.oauth2]` unless `[smtp.oauth2]`
(same keys) is given. The client secret follows the password rule: `client_secret_env` or
`client_secret_file`, never in the file (a `client_secret` key is rejected). A refused
grant stops with one line naming the provider's error code and what to check, e.g.
`AADSTS7000215: invalid client secret — check client_secret_env (MAILD_OAUTH_SECRET): …`.

**Built so far:** `flow = "client_credentials"` (Microsoft 365 app-only, with a client
secret; `tenant`, `client_id`, `client_secret_env`/`client_secret_file`) and
`flow = "service_account"` (Google Workspace with domain-wide delegation; the subject is the
mailbox's `username`; `service_account_file`, optional `token_url`). Not yet:
`refresh_token` with `maild auth login/status`, and `certificate_file`; these are rejected
with a clear error. Setup steps are in
[getting-started.md](getting-started.md).
""",
    "smtp": """\
How maild sends mail (auto-replies, `maild reply --send`, the digest). Optional, but without
it maild sends nothing and `maild check` reports a failure. After the server accepts a
message maild also appends a copy (flagged `\\Seen`) to the mailbox's Sent folder.
""",
    "sla": """\
The business calendar and the default first-response target. Optional. `business_hours`
takes day ranges and intervals separated by `;`, for example
`"Mon-Fri 09:00-12:30,13:30-18:00; Sat 10:00-14:00"`, or `"24/7"`; use `24:00` for midnight
as an end. `holidays` is a country code, optionally with a subdivision (`"TR"`, `"DE-BY"`,
`"US-CA"`), as understood by the `holidays` Python package.
""",
    "sla.policies": """\
Named SLA policies that rules can select with `set_sla_policy` (see [rules.md](rules.md)).
Optional, any number, e.g. `[sla.policies.vip]`. A policy called `default` always exists:
it uses `sla.first_response` unless you define `[sla.policies.default]` yourself.
""",
    "digest": """\
The managers' daily SLA digest (yesterday's figures, see [metrics.md](metrics.md)). Optional:
with an empty `to` no digest is sent. It is queued once per local day at `at`, in
`sla.timezone`, on the listed `days`; a daemon started later that day catches up once.
""",
    "paths": """\
Where maild finds its content; relative to the config file's directory. Optional: without
it (or without one of its keys) maild uses the rules, macros and templates packaged with it
(`maild/defaults/` in the source tree). `maild init DIR` copies them into `DIR/rules/`,
`DIR/templates/macros/`, `DIR/templates/autoreply/` and `DIR/templates/digest/` for editing,
and writes this section pointing at the copies.
See [rules.md](rules.md) and [macros.md](macros.md).
""",
    "threading": """\
How messages are grouped into tickets: In-Reply-To/References first, then the `[#ID]` tag in
the subject, then the same customer with the same subject within `window_days`.
""",
    "autoreply": """\
The ETA auto-reply sent to a customer who opens a ticket (if the rules ask for one and the
loop guards allow it), and the sender name on all of maild's mail.
""",
    "limits": """\
Safety limits for hostile or broken mail. A message over a limit is not rejected or lost: it
is stored raw with only its headers parsed, so it still lands in a ticket.
""",
    "sender_auth": """\
Whose word maild takes that a message really comes from its `From:` domain: the
`Authentication-Results` header your receiving mail server adds (RFC 8601). Command mail is
carried out only with its dkim or dmarc pass for the agent's domain (without this key every
command is refused), and an ETA reply goes to a `Reply-To` at another domain than `From` only
with its pass for `From`'s domain. Server recipes: [agents.md](agents.md).
""",
    "outbox": """\
Retries of outgoing mail. A temporary failure is retried after `retry_base_seconds`, doubling
each attempt up to `retry_max_seconds`; after `max_attempts`, or on a permanent (5xx)
refusal, the message is marked failed (with an event on the ticket and an ERROR log line),
never silently dropped. Every retry reuses the same Message-ID. A message claimed
`max_attempts` times without ever being marked sent (a crash, or a database refusing the
mark, after each send) is held, not sent again (see [operations.md](operations.md)).
""",
}

SECTION_TITLES = {
    "mailbox": "[mailbox] or [[mailbox]] (repeatable)",
    "sla.policies": "[sla.policies.NAME] (repeatable)",
    "mailbox.oauth2": "[mailbox.oauth2] and [smtp.oauth2]",
    "mailbox.smtp": "[mailbox.smtp] (optional, per mailbox)",
}

# Order in the page; [sla.policies.NAME] follows [sla]. A section missing here is still
# documented (after these, without intro text).
ORDER = ("database", "mailbox", "mailbox.oauth2", "smtp", "mailbox.smtp", "sla", "sla.policies",
         "autoreply", "sender_auth", "outbox", "digest", "paths", "threading", "limits")


def schema() -> dict[str, type]:
    """Section name -> dataclass, including [sla.policies.NAME]; ORDER first, new ones after."""
    out = {**SECTIONS, "sla.policies": SlaPolicyConfig, "mailbox.oauth2": OAuth2Config,
           "mailbox.smtp": SmtpConfig}
    names = [n for n in ORDER if n in out] + sorted(set(out) - set(ORDER))
    return {name: out[name] for name in names}


def type_name(hint: Any) -> str:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (types.UnionType, typing.Union):
        inner = [a for a in args if a is not type(None)]
        name = " or ".join(type_name(a) for a in inner)
        return f"{name}, optional" if len(inner) < len(args) else name
    if origin is tuple:
        return f"list of {type_name(args[0])}s"
    if isinstance(hint, type) and hasattr(hint, "__dataclass_fields__"):
        return "table"
    return {str: "string", int: "integer", float: "float", bool: "boolean"}.get(
        hint, getattr(hint, "__name__", str(hint)))


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, tuple | list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return str(value)


def default_text(f: Field[Any]) -> str:
    if f.default is not MISSING:
        value = f.default
    elif f.default_factory is not MISSING:
        value = f.default_factory()
    else:
        return "**required**"
    return "(none)" if value is None else f"`{toml_value(value)}`"


# Keys the schema accepts but the code does not act on yet (checked by hand against maild/;
# remove an entry when the feature lands).
NOT_USED_YET: dict[str, str] = {
}


def cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def section_table(name: str, cls: type) -> str:
    hints = typing.get_type_hints(cls)
    rows = ["| key | type | default | meaning |", "|---|---|---|---|"]
    for f in fields(cls):
        meaning = f.metadata.get("doc", "")
        if f"{name}.{f.name}" in NOT_USED_YET:
            meaning += f" (**{NOT_USED_YET[f'{name}.{f.name}']}**)"
        rows.append(f"| `{f.name}` | {type_name(hints[f.name])} | {cell(default_text(f))} | "
                    f"{cell(meaning)} |")
    return "\n".join(rows) + "\n"


def render() -> str:
    parts = [HEADER]
    for name, cls in schema().items():
        title = SECTION_TITLES.get(name, f"[{name}]")
        parts.append(f"## {title}\n\n")
        if name in SECTION_TEXT:
            parts.append(SECTION_TEXT[name] + "\n")
        parts.append(section_table(name, cls) + "\n")
    parts.append(FOOTER)
    return "".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true",
                      help=f"exit 1 if {OUTPUT.relative_to(ROOT)} is not up to date")
    mode.add_argument("--stdout", action="store_true", help="print instead of writing")
    args = parser.parse_args(argv)
    text = render()
    if args.stdout:
        sys.stdout.write(text)
        return 0
    if args.check:
        current = OUTPUT.read_text(encoding="utf-8") if OUTPUT.exists() else None
        if current != text:
            print(f"{OUTPUT.relative_to(ROOT)} is stale: run {REGENERATE}", file=sys.stderr)
            return 1
        print(f"{OUTPUT.relative_to(ROOT)} is up to date")
        return 0
    OUTPUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUTPUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
