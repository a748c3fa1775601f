"""`maild auth login` and `maild auth status`: which oauth2 tables there are, a person's
consent for a refresh-token table, and what each token file says.

`consent_tables` lists the `[mailbox.oauth2]` / `[smtp.oauth2]` tables with their login
names; `login` runs the provider's consent flow for one refresh-token table and writes its
token file (0600); `status` reads token files only (no network). Nothing here prints: the
CLI does. Never returns or raises a token or secret.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from maild.auth.google_user import installed_app_login
from maild.auth.microsoft_user import device_login
from maild.auth.sources import public_client
from maild.auth.tokenfile import read_grant, write_grant
from maild.config import Config, OAuth2Config, read_client_secret
from maild.errors import AuthError, ConfigError


@dataclass(frozen=True)
class Table:
    where: str      # "mailbox", "mailbox[1]" or "smtp"
    address: str    # the mailbox address (smtp: its login)
    login: str      # the login name the token is for
    oauth2: OAuth2Config


def consent_tables(cfg: Config) -> list[Table]:
    """Every oauth2 table, mailboxes first; [smtp] only when it has its own table."""
    many = len(cfg.mailboxes) > 1
    tables = [Table(f"mailbox[{i}]" if many else "mailbox", mb.address, mb.username, mb.oauth2)
              for i, mb in enumerate(cfg.mailboxes) if mb.oauth2 is not None]
    smtp = cfg.smtp
    if smtp is not None and smtp.oauth2 is not None \
            and all(t.oauth2 != smtp.oauth2 for t in tables):
        login = smtp.username or ""
        tables.append(Table("smtp", login, login, smtp.oauth2))
    return tables


def pick(cfg: Config, mailbox: str | None) -> Table:
    """The refresh-token table to log in for: the one named by --mailbox, or the only one."""
    tables = [t for t in consent_tables(cfg) if t.oauth2.flow == "refresh_token"]
    if mailbox is not None:
        wanted = mailbox.lower()
        found = [t for t in tables if wanted in (t.address.lower(), t.login.lower())]
        if not found:
            known = ", ".join(t.address for t in tables) or "none"
            raise ConfigError(f"--mailbox: no [mailbox.oauth2] table with flow = "
                              f"\"refresh_token\" for {mailbox} (refresh_token tables: {known})")
        return found[0]
    if len(tables) != 1:
        known = ", ".join(t.address for t in tables)
        raise ConfigError("--mailbox: give one of " + known if tables else
                          "no [mailbox.oauth2] table has flow = \"refresh_token\": nothing "
                          "to log in to (client_credentials and service_account need no "
                          "login)")
    return tables[0]


def login(cfg: Config, table: Table, say: Callable[[str], None], *, port: int = 0,
          timeout: float = 300.0, environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Run the consent flow for `table` and store the grant; what `status` shows for it."""
    o = table.oauth2
    ca_file = str(cfg.resolve(o.ca_file)) if o.ca_file else None
    if o.provider == "microsoft":
        say(f"Sign in as {table.login}, or for a shared mailbox as a person with FullAccess "
            "on it.")
        grant = device_login(public_client(o, cfg), o.scopes, table.login, say)
    else:
        grant = installed_app_login(
            client_id=o.client_id or "", scopes=o.scopes, mailbox=table.login,
            client_secret=read_client_secret(o, cfg, f"{table.where}.oauth2", environ),
            auth_url=o.auth_url, token_url=o.token_url, ca_file=ca_file, port=port,
            timeout=timeout, say=say)
    write_grant(cfg.resolve(o.token_file or ""), grant)
    return status_of(cfg, table)


def status_of(cfg: Config, table: Table) -> dict[str, Any]:
    o = table.oauth2
    row: dict[str, Any] = {"where": table.where, "mailbox": table.address, "flow": o.flow,
                           "provider": o.provider, "scopes": list(o.scopes),
                           "account": None, "token_file": None, "token_expires_at": None,
                           "last_refresh": None, "logged_in_at": None, "state": "ok"}
    if o.flow == "client_credentials":
        row["account"] = f"app {o.client_id}"
        row["state"] = "tokens in memory only (the app's credential is in the config)"
    elif o.flow == "service_account":
        row["account"] = f"service account acting as {table.login}"
        row["state"] = "tokens in memory only (the key is in service_account_file)"
    else:
        path = cfg.resolve(o.token_file or "")
        row["token_file"] = str(path)
        try:
            grant = read_grant(path, f"maild auth login --mailbox {table.address}")
        except AuthError as exc:
            row["state"] = str(exc)
            return row
        row.update(account=grant.account, token_expires_at=grant.access_expires_at,
                   last_refresh=grant.last_refresh, logged_in_at=grant.logged_in_at)
        if grant.provider != o.provider or grant.client_id != o.client_id:
            row["state"] = f"written for another app: run `maild auth login --mailbox " \
                           f"{table.address}`"
        elif _expired(grant.access_expires_at):
            row["state"] = "ok (the access token has expired: renewed at the next login)"
    return row


def _expired(when: str | None) -> bool:
    if not when:
        return False
    try:
        return datetime.fromisoformat(when) <= datetime.now(UTC)
    except ValueError:
        return False
