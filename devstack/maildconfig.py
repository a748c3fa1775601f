"""The maild config used against a devstack: one template for tests, demo, bench.

Writes a TOML config pointing at a local Dovecot (STARTTLS, its self-signed
CA) and optionally the SMTP sink; rules, macros and templates are maild's packaged
defaults (no [paths]), so an installed wheel runs it as a checkout does.
It writes one file and does nothing else.
"""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def maild_config_text(*, address: str, imap_port: int, ca_file: str | Path, db_url: str,
                      password_env: str, smtp_port: int | None = None, batch_size: int = 200,
                      autoreply_extra: str = "", extra: str = "",
                      oauth2: str | None = None) -> str:
    """`oauth2`, when given, is the body of a [mailbox.oauth2] table: the mailbox and
    the SMTP sink are then logged in to with XOAUTH2 instead of `password_env`."""
    smtp = "" if smtp_port is None else (
        f'\n[smtp]\nhost = "127.0.0.1"\nport = {smtp_port}\nsecurity = "none"\n'
        "allow_insecure = true\n" + ('auth = "oauth2"\n' if oauth2 else ""))
    login = 'auth = "oauth2"' if oauth2 else f'password_env = "{password_env}"'
    if oauth2:
        extra = f"{extra}\n[mailbox.oauth2]\n{oauth2}"
    return f"""# maild configuration for the local devstack servers
[database]
url = "{db_url}"

[mailbox]
address = "{address}"
imap_host = "localhost"
imap_port = {imap_port}
security = "starttls"
ca_file = "{ca_file}"
username = "{address}"
{login}
batch_size = {batch_size}
{smtp}
[sla]
timezone = "Europe/Istanbul"
business_hours = "Mon-Fri 09:00-18:00"
first_response = "4h"
holidays = "TR"

[sla.policies.vip]
first_response = "1h"

[autoreply]
sender_name = "Example Support"
company = "Example Ltd"
{autoreply_extra}
{extra}
"""
