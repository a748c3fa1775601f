"""Load and validate maild's TOML configuration into frozen dataclasses.

The dataclasses below ARE the schema: every key, its type, its default and its
one-line documentation (field metadata "doc") live here, and `maild check` and
the docs are checked against them. Errors are one line naming the file and the
key. Secrets are never read from the file itself: only `password_env` (a
variable name) or `password_file` (a path). This module reads the config file
and, when asked, a password file or variable; it does nothing else.
"""

from __future__ import annotations

import os
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from maild import resources
from maild.auth.presets import PRESETS, default_scopes
from maild.errors import ConfigError

SECURITY_MODES = ("tls", "starttls", "none")
AUTH_MODES = ("password", "oauth2")
OAUTH2_FLOWS = ("client_credentials", "service_account", "refresh_token")
# Keys that would put a secret into the file itself; each names where the secret goes instead.
SECRET_KEYS = {"password": "password_env or password_file",
               "secret": "password_env or password_file",
               "pass": "password_env or password_file",
               "client_secret": "client_secret_env or client_secret_file",
               "access_token": "[mailbox.oauth2] (maild fetches tokens itself)",
               "refresh_token": "token_file (written by maild, mode 0600)"}
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def doc(text: str, **kw: Any) -> Any:
    """A dataclass field with its documentation attached."""
    return field(metadata={"doc": text}, **kw)


@dataclass(frozen=True)
class DatabaseConfig:
    url: str = doc("SQLAlchemy URL: sqlite:///maild.db or postgresql+psycopg://…",
                   default="sqlite:///maild.db")


@dataclass(frozen=True)
class OAuth2Config:
    flow: str = doc("client_credentials (Microsoft app-only) | service_account (Google "
                    "Workspace, domain-wide delegation, subject = the mailbox) | "
                    "refresh_token (a person's consent, `maild auth login`)")
    provider: str | None = doc("microsoft | google: whose identity platform; default the "
                               "mailbox's `provider`, else microsoft when tenant or authority "
                               "is given, google otherwise", default=None)
    client_id: str | None = doc("the application (client) id", default=None)
    tenant: str | None = doc("Microsoft tenant, e.g. contoso.onmicrosoft.com or its id",
                             default=None)
    client_secret_env: str | None = doc("name of the variable holding the client secret",
                                        default=None)
    client_secret_file: str | None = doc("path of a file holding the client secret",
                                         default=None)
    certificate_file: str | None = doc("Microsoft client_credentials: PEM file with the "
                                       "app's private key and its certificate, instead of a "
                                       "secret", default=None)
    service_account_file: str | None = doc("Google: the service account's JSON key file",
                                           default=None)
    token_file: str | None = doc("refresh_token flow: where the refresh token is kept (0600)",
                                 default=None)
    authority: str | None = doc("Microsoft: the full authority URL, tenant included, e.g. "
                                "https://login.microsoftonline.us/TENANT (tests, national "
                                "clouds); default: the public cloud and `tenant`",
                                default=None)
    token_url: str | None = doc("Google / generic: the token endpoint", default=None)
    auth_url: str | None = doc("Google refresh_token: the authorization endpoint `maild auth "
                               "login` sends the person to (tests, generic)", default=None)
    scopes: tuple[str, ...] = doc("scopes to ask for; default per provider and flow "
                                  "(Microsoft app-only: https://outlook.office365.com/.default)",
                                  default=())
    ca_file: str | None = doc("extra CA bundle to verify the token endpoint with", default=None)


@dataclass(frozen=True)
class MailboxConfig:
    address: str = doc("the shared support address, e.g. support@example.com")
    imap_host: str = doc("IMAP server host name (filled in by `provider`)")
    username: str = doc("IMAP login name (with `auth = \"oauth2\"`: default the address)")
    provider: str | None = doc("microsoft | google: a preset for imap_host, imap_port, "
                               "security and the OAuth2 scopes; keys given explicitly win",
                               default=None)
    auth: str = doc("password | oauth2 (then a [mailbox.oauth2] table is required)",
                    default="password")
    oauth2: OAuth2Config | None = doc("the [mailbox.oauth2] table, see below", default=None)
    imap_port: int = doc("IMAP port (993 for tls, 143 for starttls)", default=993)
    security: str = doc("tls | starttls | none (none needs allow_insecure)", default="tls")
    allow_insecure: bool = doc("permit security = none (tests, loopback only)", default=False)
    password_env: str | None = doc("name of the variable holding the password", default=None)
    password_file: str | None = doc("path of a file holding the password", default=None)
    ca_file: str | None = doc("extra CA bundle to verify the server with", default=None)
    inbox_folder: str = doc("folder customers write to", default="INBOX")
    sent_folder: str | None = doc("Sent folder; default: found by SPECIAL-USE \\Sent",
                                  default=None)
    drafts_folder: str | None = doc("Drafts folder; default: SPECIAL-USE \\Drafts", default=None)
    idle: bool = doc("use IMAP IDLE when the server offers it", default=True)
    poll_seconds: int = doc("polling interval without IDLE", default=60)
    batch_size: int = doc("messages fetched per IMAP FETCH and committed together", default=200)
    mark_seen: bool = doc("mark ingested customer mail as \\Seen (default: leave unread)",
                          default=False)
    drafts: bool = doc("place a draft reply (top suggested macro) in Drafts for each new "
                       "ticket", default=False)
    timeout_seconds: int = doc("IMAP socket timeout", default=60)
    smtp: SmtpConfig | None = doc("the [mailbox.smtp] table: this mailbox's own SMTP "
                                  "submission (same keys as [smtp]); its replies go out "
                                  "there. Default: [smtp]", default=None)
    import_since: str | None = doc("first run: import only history that arrived in this "
                                   "period, e.g. \"90d\", \"12w\" or a date \"2026-01-01\" "
                                   "(older mail: `maild import --all`); default: all of it",
                                   default=None)


@dataclass(frozen=True)
class SmtpConfig:
    host: str = doc("SMTP submission host (filled in by the first mailbox's `provider`)")
    port: int = doc("SMTP port (587 starttls, 465 tls)", default=587)
    security: str = doc("tls | starttls | none (none needs allow_insecure)", default="starttls")
    allow_insecure: bool = doc("permit security = none (tests, loopback only)", default=False)
    username: str | None = doc("SMTP login; omit for no AUTH (with `auth = \"oauth2\"`: "
                               "default the first mailbox's address)", default=None)
    auth: str = doc("password | oauth2 (XOAUTH2 with the first mailbox's [mailbox.oauth2] "
                    "credentials unless [smtp.oauth2] is given)", default="password")
    oauth2: OAuth2Config | None = doc("the [smtp.oauth2] table, same keys as "
                                      "[mailbox.oauth2]", default=None)
    password_env: str | None = doc("name of the variable holding the password", default=None)
    password_file: str | None = doc("path of a file holding the password", default=None)
    ca_file: str | None = doc("extra CA bundle to verify the server with", default=None)
    timeout_seconds: int = doc("SMTP timeout", default=30)


@dataclass(frozen=True)
class SlaConfig:
    timezone: str = doc("IANA time zone of the support team", default="UTC")
    business_hours: str = doc("e.g. 'Mon-Fri 09:00-18:00'", default="Mon-Fri 09:00-18:00")
    first_response: str = doc("first-response target in business time, e.g. 4h", default="4h")
    holidays: str | None = doc("country code for public holidays, e.g. TR", default=None)
    warn_fraction: float = doc("warn when this fraction of the SLA time has passed",
                               default=0.8)
    auto_solve_pending_days: int = doc("solve pending tickets with no customer reply after "
                                       "this many days (0 = never)", default=7)
    reopen_window_days: int = doc("a customer message to a ticket solved longer ago than "
                                  "this opens a new ticket instead of reopening it (0 = always "
                                  "reopen)", default=7)
    alert_to: tuple[str, ...] = doc("addresses (agents, a team lead) mailed when a ticket's "
                                    "first-response SLA is at risk (at warn_fraction) and "
                                    "when it is breached; empty: events and log lines only",
                                    default=())


@dataclass(frozen=True)
class SlaPolicyConfig:
    first_response: str = doc("first-response target in business time, e.g. 1h")
    next_response: str | None = doc("target for answering later customer messages",
                                    default=None)


@dataclass(frozen=True)
class AutoReplyConfig:
    enabled: bool = doc("send ETA auto-replies at all", default=True)
    sender_name: str = doc("display name on automatic mail", default="Customer Support")
    company: str = doc("company name used in templates", default="")
    default_language: str = doc("language when detection is unsure", default="en")
    per_sender_hours: int = doc("at most one ETA reply per sender in this many hours",
                                default=24)
    global_per_hour: int = doc("at most this many ETA replies per hour in all", default=200)
    per_domain_per_hour: int = doc("at most this many ETA replies per hour to the addresses "
                                   "of one domain (0 = no cap per domain)", default=30)
    max_age_hours: int = doc("never auto-reply to mail that arrived longer ago than this "
                             "(e.g. the backlog maild finds on its first run)", default=24)
    after_bounce_hours: int = doc("no ETA reply to an address for this many hours after our "
                                  "mail to it bounced for good", default=72)


@dataclass(frozen=True)
class OutboxConfig:
    max_attempts: int = doc("send attempts before a message is marked failed", default=8)
    retry_base_seconds: int = doc("first retry delay; doubles each attempt", default=60)
    retry_max_seconds: int = doc("cap on the retry delay", default=3600)


@dataclass(frozen=True)
class LimitsConfig:
    max_message_bytes: int = doc("larger messages are stored raw with headers parsed only",
                                 default=25 * 1024 * 1024)
    max_mime_parts: int = doc("more multipart containers than this: headers parsed only",
                              default=500)


@dataclass(frozen=True)
class DigestConfig:
    to: tuple[str, ...] = doc("managers who receive the daily digest", default=())
    at: str = doc("local time the digest is sent, HH:MM", default="08:00")
    days: tuple[str, ...] = doc("weekdays the digest is sent on (mon..sun)",
                                default=("mon", "tue", "wed", "thu", "fri", "sat", "sun"))


@dataclass(frozen=True)
class PathsConfig:
    rules: str | None = doc("directory of rule files (default: the rules packaged with "
                            "maild; `maild init` copies them for editing)", default=None)
    macros: str | None = doc("directory of macro templates (default: the packaged macros)",
                             default=None)
    templates: str | None = doc("directory holding autoreply/ and digest/ templates "
                                "(default: the packaged templates)", default=None)


@dataclass(frozen=True)
class TeamConfig:
    domains: tuple[str, ...] = doc("company domains whose senders are the team (agent mail: "
                                   "never a customer, never an ETA reply); exact domains, "
                                   "e.g. [\"example.com\"]", default=())


@dataclass(frozen=True)
class SenderAuthConfig:
    trusted_authserv_id: str | None = doc(
        "authserv-id of YOUR receiving mail server, as it writes it first in the "
        "Authentication-Results header it adds (e.g. mx.example.com; mx.google.com for "
        "Gmail); maild believes only the topmost such header. Command mail needs "
        "dkim/dmarc pass from it (unset: command mail is refused), and an ETA reply to a "
        "Reply-To at another domain than From needs it too", default=None)


@dataclass(frozen=True)
class ThreadingConfig:
    window_days: int = doc("same-customer same-subject fallback window", default=7)


@dataclass(frozen=True)
class EscalationConfig:
    every_minutes: int = doc("run the time-based automations ([[automation]] in the rule "
                             "files) this often; 0 = never", default=5)


@dataclass(frozen=True)
class PrivacyConfig:
    keep_message_text_days: int = doc("purge message bodies and raw copies of tickets solved "
                                      "longer ago than this many days (metadata stays for "
                                      "the KPIs); 0 = keep them", default=0)


@dataclass(frozen=True)
class CsatConfig:
    enabled: bool = doc("mail a satisfaction survey (1-5, one-click mailto: links) when a "
                        "ticket is solved", default=True)
    secret_env: str | None = doc("variable holding the secret that signs the survey links; "
                                 "default: one generated and kept in the database",
                                 default=None)
    secret_file: str | None = doc("file holding that secret (instead of secret_env)",
                                  default=None)
    per_customer_days: int = doc("at most one survey per customer in this many days",
                                 default=14)
    within_hours: int = doc("survey only tickets solved in the last this many hours (a "
                            "first start never surveys old history)", default=48)
    nps: bool = doc("also ask the 0-10 Net Promoter question", default=False)
    nps_per_customer_days: int = doc("at most one NPS question per customer in this many "
                                     "days", default=90)


@dataclass(frozen=True)
class HttpConfig:
    listen: str | None = doc("HOST:PORT for /healthz and /metrics (Prometheus), e.g. "
                             "127.0.0.1:9465; not given: no HTTP server", default=None)
    outbox_stuck_minutes: int = doc("/healthz fails when a message has waited in the outbox "
                                    "longer than this", default=30)
    poll_grace_seconds: int = doc("/healthz fails when a mailbox has not been polled for "
                                  "twice its interval plus this", default=60)


@dataclass(frozen=True)
class HistoryConfig:
    workers: int = doc("processes that parse history mail beside the writer (0 = one per "
                       "CPU core, 1 = parse in the main process)", default=0)
    chunk_seconds: float = doc("longest a history chunk runs between two live passes; live "
                               "mail waits at most about this long", default=0.5)
    progress_seconds: int = doc("the daemon logs history progress this often", default=30)


@dataclass(frozen=True)
class Config:
    path: Path
    database: DatabaseConfig
    mailboxes: tuple[MailboxConfig, ...]
    smtp: SmtpConfig | None
    sla: SlaConfig
    digest: DigestConfig
    paths: PathsConfig
    threading: ThreadingConfig
    sla_policies: dict[str, SlaPolicyConfig]
    autoreply: AutoReplyConfig
    outbox: OutboxConfig
    limits: LimitsConfig
    agents: dict[str, str]
    team: TeamConfig = TeamConfig()
    sender_auth: SenderAuthConfig = SenderAuthConfig()
    privacy: PrivacyConfig = PrivacyConfig()
    csat: CsatConfig = CsatConfig()
    escalation: EscalationConfig = EscalationConfig()
    http: HttpConfig = HttpConfig()
    history: HistoryConfig = HistoryConfig()

    def resolve(self, relative: str) -> Path:
        """A path from the config, relative to the config file's directory."""
        p = Path(relative).expanduser()
        return p if p.is_absolute() else self.path.parent / p

    def rules_dir(self) -> Path:
        """[paths] rules, else the rules packaged with maild."""
        return self.resolve(self.paths.rules) if self.paths.rules else resources.default_rules()

    def macros_dir(self) -> Path:
        """[paths] macros, else the packaged macros."""
        return self.resolve(self.paths.macros) if self.paths.macros \
            else resources.default_macros()

    def templates_dir(self) -> Path:
        """[paths] templates (with autoreply/ and digest/), else the packaged ones."""
        return self.resolve(self.paths.templates) if self.paths.templates \
            else resources.default_templates()


SECTIONS: dict[str, type] = {
    "database": DatabaseConfig,
    "mailbox": MailboxConfig,
    "smtp": SmtpConfig,
    "sla": SlaConfig,
    "digest": DigestConfig,
    "paths": PathsConfig,
    "threading": ThreadingConfig,
    "autoreply": AutoReplyConfig,
    "outbox": OutboxConfig,
    "limits": LimitsConfig,
    "team": TeamConfig,
    "sender_auth": SenderAuthConfig,
    "privacy": PrivacyConfig,
    "csat": CsatConfig,
    "escalation": EscalationConfig,
    "http": HttpConfig,
    "history": HistoryConfig,
}


def _type_ok(value: Any, hint: Any) -> bool:
    origin = typing.get_origin(hint)
    if origin in (types.UnionType, typing.Union):
        return any(_type_ok(value, arg) for arg in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if origin is tuple:
        (item,) = typing.get_args(hint)[:1]
        return isinstance(value, list) and all(_type_ok(v, item) for v in value)
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, hint)


def _type_name(hint: Any) -> str:
    return str(hint).replace("typing.", "").replace("<class '", "").replace("'>", "")


def build_section(cls: type, table: Any, where: str) -> Any:
    """Instantiate dataclass `cls` from a TOML table; errors name `where.key`."""
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: expected a table")
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in fields(cls)}
    for key in table:
        if key not in known:
            raise ConfigError(f"{where}.{key}: unknown key")
    values: dict[str, Any] = {}
    for name, f in known.items():
        if name not in table:
            if f.default is MISSING:
                raise ConfigError(f"{where}.{name}: missing (required)")
            continue
        value = table[name]
        if not _type_ok(value, hints[name]):
            raise ConfigError(f"{where}.{name}: expected {_type_name(hints[name])}, "
                              f"got {value!r}")
        values[name] = tuple(value) if isinstance(value, list) else value
    return cls(**values)


def _check_security(obj: MailboxConfig | SmtpConfig, where: str) -> None:
    if obj.security not in SECURITY_MODES:
        raise ConfigError(f"{where}.security: must be one of {', '.join(SECURITY_MODES)}, "
                          f"got {obj.security!r}")
    if obj.security == "none" and not obj.allow_insecure:
        raise ConfigError(f"{where}.security: 'none' sends the password in clear; "
                          "set allow_insecure = true to accept that")
    if obj.password_env and obj.password_file:
        raise ConfigError(f"{where}: give password_env or password_file, not both")


def _check_values(cfg: Config) -> None:
    for i, mb in enumerate(cfg.mailboxes):
        where = "mailbox" if len(cfg.mailboxes) == 1 else f"mailbox[{i}]"
        _check_security(mb, where)
        if "@" not in mb.address:
            raise ConfigError(f"{where}.address: not an email address: {mb.address!r}")
        if mb.batch_size < 1 or mb.poll_seconds < 1:
            raise ConfigError(f"{where}: batch_size and poll_seconds must be positive")
        if mb.smtp is not None:
            _check_security(mb.smtp, f"{where}.smtp")
        if mb.import_since is not None:
            try:
                parse_since(mb.import_since, datetime.now(UTC))
            except ConfigError as exc:
                raise ConfigError(f"{where}.import_since: {exc}") from None
    if cfg.history.workers < 0 or cfg.history.chunk_seconds <= 0:
        raise ConfigError("history: workers must be >= 0 and chunk_seconds positive")
    if cfg.smtp is not None:
        _check_security(cfg.smtp, "smtp")
    addresses = [mb.address.lower() for mb in cfg.mailboxes]
    if len(set(addresses)) != len(addresses):
        raise ConfigError("mailbox.address: the same address is configured twice")
    hh, _, mm = cfg.digest.at.partition(":")
    if not (hh.isdigit() and mm.isdigit() and int(hh) < 24 and int(mm) < 60):
        raise ConfigError(f"digest.at: expected HH:MM, got {cfg.digest.at!r}")
    bad_days = [d for d in cfg.digest.days if d not in WEEKDAYS]
    if bad_days:
        raise ConfigError(f"digest.days: unknown day {bad_days[0]!r} (use mon..sun)")
    for key, values in (("digest.to", cfg.digest.to), ("sla.alert_to", cfg.sla.alert_to)):
        bad = [v for v in values if "@" not in v or any(c.isspace() for c in v)]
        if bad:
            raise ConfigError(f"{key}: not an email address: {bad[0]!r}")
    _check_durations(cfg)
    if not 0 < cfg.sla.warn_fraction < 1:
        raise ConfigError(f"sla.warn_fraction: must be between 0 and 1, got "
                          f"{cfg.sla.warn_fraction}")
    if cfg.threading.window_days < 0:
        raise ConfigError("threading.window_days: must be >= 0")
    if cfg.autoreply.per_domain_per_hour < 0:
        raise ConfigError("autoreply.per_domain_per_hour: must be >= 0 (0 = no cap)")
    for key, value in (("privacy.keep_message_text_days", cfg.privacy.keep_message_text_days),
                       ("csat.per_customer_days", cfg.csat.per_customer_days),
                       ("csat.within_hours", cfg.csat.within_hours),
                       ("csat.nps_per_customer_days", cfg.csat.nps_per_customer_days),
                       ("escalation.every_minutes", cfg.escalation.every_minutes)):
        if value < 0:
            raise ConfigError(f"{key}: must be >= 0")
    if cfg.csat.secret_env and cfg.csat.secret_file:
        raise ConfigError("csat: give secret_env or secret_file, not both")


def parse_since(text: str, now: datetime) -> datetime:
    """A history cut-off: "90d" / "12w" before `now`, or a date "YYYY-MM-DD" (UTC)."""
    value = text.strip().lower()
    if value[:-1].isdigit() and value[-1:] in ("d", "w") and int(value[:-1]) > 0:
        days = int(value[:-1]) * (7 if value.endswith("w") else 1)
        return now - timedelta(days=days)
    try:
        day = date.fromisoformat(value)
    except ValueError:
        raise ConfigError(f"expected a period such as \"90d\" or \"12w\", or a date "
                          f"YYYY-MM-DD, got {text!r}") from None
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def _check_durations(cfg: Config) -> None:
    from maild.calendar import BusinessCalendar, parse_duration

    for name, pol in cfg.sla_policies.items():
        for key in ("first_response", "next_response"):
            value = getattr(pol, key)
            if value is None:
                continue
            try:
                parse_duration(value)
            except ConfigError as exc:
                where = "sla" if name == "default" and key == "first_response" else \
                    f"sla.policies.{name}"
                raise ConfigError(f"{where}.{key}: {exc}") from None
    try:
        BusinessCalendar(cfg.sla.timezone, cfg.sla.business_hours, cfg.sla.holidays)
    except ConfigError as exc:
        raise ConfigError(f"sla: {exc}") from None


def _reject_secrets(data: Mapping[str, Any], where: str) -> None:
    for key, value in data.items():
        if key in SECRET_KEYS:
            raise ConfigError(f"{where}{key}: secrets never go in the config file; "
                              f"use {SECRET_KEYS[key]}")
        if isinstance(value, dict):
            _reject_secrets(value, f"{where}{key}.")


def _mailbox(table: Any, where: str) -> MailboxConfig:
    """One [mailbox]: the provider preset fills what the table leaves out, then the schema."""
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: expected a table")
    table = dict(table)
    raw_oauth = table.pop("oauth2", None)
    raw_smtp = table.pop("smtp", None)
    provider = table.get("provider")
    if provider is not None:
        if provider not in PRESETS:
            raise ConfigError(f"{where}.provider: must be one of {', '.join(PRESETS)}, "
                              f"got {provider!r}")
        preset = PRESETS[provider]
        for key, value in (("imap_host", preset.imap_host), ("imap_port", preset.imap_port),
                           ("security", preset.security)):
            table.setdefault(key, value)
    _check_auth_mode(table, where)
    if table.get("auth") == "oauth2" and "username" not in table and "address" in table:
        table["username"] = table["address"]
    mb = build_section(MailboxConfig, table, where)
    mb = replace(mb, oauth2=_oauth2(raw_oauth, mb.auth, mb.provider, f"{where}.oauth2"))
    return replace(mb, smtp=_smtp(raw_smtp, mb, f"{where}.smtp") if raw_smtp is not None
                   else None)


def _smtp(table: Any, first: MailboxConfig, where: str = "smtp") -> SmtpConfig:
    """[smtp] (`first`: the first mailbox) or a [mailbox.smtp] (`first`: that mailbox); with
    auth = oauth2 it reuses that mailbox's credentials by default."""
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: expected a table")
    table = dict(table)
    raw_oauth = table.pop("oauth2", None)
    _check_auth_mode(table, where)
    if first.provider is not None:  # the first mailbox's provider presets its SMTP too
        preset = PRESETS[first.provider]
        for key, value in (("host", preset.smtp_host), ("port", preset.smtp_port),
                           ("security", preset.smtp_security)):
            table.setdefault(key, value)
    if table.get("auth") == "oauth2":
        table.setdefault("username", first.address)
        if raw_oauth is None:
            if first.oauth2 is None:
                raise ConfigError(f"{where}.oauth2: missing, and the mailbox has no "
                                  "[mailbox.oauth2] to reuse")
            return replace(build_section(SmtpConfig, table, where), oauth2=first.oauth2)
    smtp = build_section(SmtpConfig, table, where)
    return replace(smtp, oauth2=_oauth2(raw_oauth, smtp.auth, first.provider, f"{where}.oauth2"))


def _check_auth_mode(table: dict[str, Any], where: str) -> None:
    auth = table.get("auth", "password")
    if auth not in AUTH_MODES:
        raise ConfigError(f"{where}.auth: must be one of {', '.join(AUTH_MODES)}, "
                          f"got {auth!r}")


def _oauth2(table: Any, auth: str, provider: str | None, where: str) -> OAuth2Config | None:
    parent = where.rsplit(".", 1)[0]
    if table is None:
        if auth == "oauth2":
            raise ConfigError(f"{where}: missing (auth = \"oauth2\" needs a [{where}] table)")
        return None
    if auth != "oauth2":
        raise ConfigError(f"{where}: given, but {parent}.auth is not \"oauth2\"")
    o = build_section(OAuth2Config, table, where)
    if o.provider is not None and o.provider not in PRESETS:
        raise ConfigError(f"{where}.provider: must be one of {', '.join(PRESETS)}, "
                          f"got {o.provider!r}")
    o = replace(o, provider=o.provider or provider or _provider_of(o))
    _check_oauth2(o, where)
    return replace(o, scopes=o.scopes or default_scopes(o.provider, o.flow))


def _provider_of(o: OAuth2Config) -> str:
    if o.flow == "service_account":
        return "google"
    if o.flow == "client_credentials" or o.tenant or o.authority:
        return "microsoft"
    return "google"


def _check_oauth2(o: OAuth2Config, where: str) -> None:
    if o.flow not in OAUTH2_FLOWS:
        raise ConfigError(f"{where}.flow: must be one of {', '.join(OAUTH2_FLOWS)}, "
                          f"got {o.flow!r}")
    for url_key in ("authority", "token_url", "auth_url"):
        url = getattr(o, url_key)
        if url is not None and not url.startswith("https://"):
            raise ConfigError(f"{where}.{url_key}: must be an https:// URL")
    if o.flow == "service_account":
        if not o.service_account_file:
            raise ConfigError(f"{where}.service_account_file: missing (required for "
                              "service_account)")
        return
    if not o.client_id:
        raise ConfigError(f"{where}.client_id: missing (required for {o.flow})")
    if o.flow == "refresh_token":
        _check_refresh_token(o, where)
        return
    if not (o.tenant or o.authority):
        raise ConfigError(f"{where}.tenant: missing (give tenant, or authority)")
    given = [k for k in ("client_secret_env", "client_secret_file", "certificate_file")
             if getattr(o, k)]
    if len(given) != 1:
        raise ConfigError(f"{where}: give exactly one of client_secret_env, "
                          "client_secret_file, certificate_file")


def _check_refresh_token(o: OAuth2Config, where: str) -> None:
    """A person's consent: Microsoft's public client (device code, no secret) or Google's
    installed app (its client secret is required by Google's token endpoint)."""
    if not o.token_file:
        raise ConfigError(f"{where}.token_file: missing (required for refresh_token: "
                          "`maild auth login` writes the refresh token there)")
    secrets = [k for k in ("client_secret_env", "client_secret_file") if getattr(o, k)]
    if o.certificate_file:
        raise ConfigError(f"{where}.certificate_file: only for client_credentials")
    if o.provider == "microsoft":
        if not (o.tenant or o.authority):
            raise ConfigError(f"{where}.tenant: missing (give tenant, or authority)")
        if secrets:
            raise ConfigError(f"{where}.{secrets[0]}: not used by refresh_token with "
                              "microsoft (a public client: enable 'Allow public client "
                              "flows' in the app registration instead)")
        return
    if len(secrets) != 1:
        raise ConfigError(f"{where}: give exactly one of client_secret_env, "
                          "client_secret_file (the installed app's client secret)")


def _sla_policies(table: Any) -> dict[str, SlaPolicyConfig]:
    if not isinstance(table, dict):
        raise ConfigError("sla.policies: expected tables like [sla.policies.vip]")
    return {name: build_section(SlaPolicyConfig, value, f"sla.policies.{name}")
            for name, value in table.items()}


def _agents(table: Any) -> dict[str, str]:
    """[agents] maps an agent's address to their name; only they may send commands."""
    if not isinstance(table, dict):
        raise ConfigError('agents: expected a table like "ayse@example.com" = "Ayşe Yılmaz"')
    for addr, name in table.items():
        if "@" not in addr or not isinstance(name, str):
            raise ConfigError(f"agents.{addr}: expected \"address\" = \"Name\"")
    return {addr.lower(): name for addr, name in table.items()}


def _team(team: TeamConfig) -> TeamConfig:
    for domain in team.domains:
        if not domain or "@" in domain or domain != domain.strip():
            raise ConfigError(f"team.domains: {domain!r} is not a domain (like example.com)")
    return TeamConfig(tuple(d.lower().lstrip(".") for d in team.domains))


def _sender_auth(section: SenderAuthConfig) -> SenderAuthConfig:
    value = section.trusted_authserv_id
    if value is not None and (not value.strip() or any(c in value for c in " ;\t\r\n")):
        raise ConfigError(f"sender_auth.trusted_authserv_id: {value!r} is not an authserv-id "
                          "(one word, e.g. mx.example.com)")
    return SenderAuthConfig(value.strip().lower() if value else None)


def _http(http: HttpConfig) -> HttpConfig:
    if http.listen is not None:
        host, sep, port = http.listen.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(f"http.listen: expected HOST:PORT like 127.0.0.1:9465, got "
                              f"{http.listen!r}")
    if http.outbox_stuck_minutes < 1 or http.poll_grace_seconds < 0:
        raise ConfigError("http: outbox_stuck_minutes must be positive, poll_grace_seconds "
                          ">= 0")
    return http


def listen_address(listen: str) -> tuple[str, int]:
    """(host, port) of an http.listen value; [::1]:9465 gives ::1."""
    host, _, port = listen.rpartition(":")
    return host.strip("[]"), int(port)


def parse_config(data: dict[str, Any], path: Path) -> Config:
    """Validate an already-parsed TOML document (`path` is used in messages)."""
    _reject_secrets(data, "")
    for key in data:
        if key not in SECTIONS and key != "agents":
            raise ConfigError(f"{key}: unknown section")
    raw_mb = data.get("mailbox")
    if raw_mb is None:
        raise ConfigError("mailbox: missing (at least one [mailbox] or [[mailbox]] table)")
    tables = raw_mb if isinstance(raw_mb, list) else [raw_mb]
    mailboxes = tuple(_mailbox(t, "mailbox" if len(tables) == 1 else f"mailbox[{i}]")
                      for i, t in enumerate(tables))
    smtp = _smtp(data["smtp"], mailboxes[0]) if "smtp" in data else None
    sla_table = dict(data.get("sla", {}))
    policies = _sla_policies(sla_table.pop("policies", {}))
    sla = build_section(SlaConfig, sla_table, "sla")
    policies.setdefault("default", SlaPolicyConfig(first_response=sla.first_response))
    cfg = Config(
        path=path,
        database=build_section(DatabaseConfig, data.get("database", {}), "database"),
        mailboxes=mailboxes,
        smtp=smtp,
        sla=sla,
        digest=build_section(DigestConfig, data.get("digest", {}), "digest"),
        paths=build_section(PathsConfig, data.get("paths", {}), "paths"),
        threading=build_section(ThreadingConfig, data.get("threading", {}), "threading"),
        sla_policies=policies,
        autoreply=build_section(AutoReplyConfig, data.get("autoreply", {}), "autoreply"),
        outbox=build_section(OutboxConfig, data.get("outbox", {}), "outbox"),
        limits=build_section(LimitsConfig, data.get("limits", {}), "limits"),
        agents=_agents(data.get("agents", {})),
        team=_team(build_section(TeamConfig, data.get("team", {}), "team")),
        sender_auth=_sender_auth(build_section(SenderAuthConfig, data.get("sender_auth", {}),
                                               "sender_auth")),
        privacy=build_section(PrivacyConfig, data.get("privacy", {}), "privacy"),
        csat=build_section(CsatConfig, data.get("csat", {}), "csat"),
        escalation=build_section(EscalationConfig, data.get("escalation", {}), "escalation"),
        http=_http(build_section(HttpConfig, data.get("http", {}), "http")),
        history=build_section(HistoryConfig, data.get("history", {}), "history"),
    )
    _check_values(cfg)
    return cfg


def load_config(path: str | os.PathLike[str] | None,
                environ: Mapping[str, str] | None = None) -> Config:
    """Read the config from `path`, else $MAILD_CONFIG, else ./maild.toml."""
    env = os.environ if environ is None else environ
    chosen = Path(path or env.get("MAILD_CONFIG") or "maild.toml")
    try:
        text = chosen.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{chosen}: cannot read config: {exc.strerror}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{chosen}: invalid TOML: {exc}") from None
    try:
        return parse_config(data, chosen.resolve())
    except ConfigError as exc:
        raise ConfigError(f"{chosen}: {exc}") from None


def _named_secret(cfg: Config, where: str, kind: str, env_name: str | None,
                  file_name: str | None, env: Mapping[str, str]) -> str | None:
    """The secret in variable `env_name` or file `file_name` (the keys `{kind}_env` and
    `{kind}_file` of `where`), or None if neither is set. Errors name the key, never
    the value."""
    if env_name:
        if env_name not in env:
            raise ConfigError(f"{where}.{kind}_env: variable {env_name} is not set")
        return env[env_name]
    if file_name:
        secret_path = cfg.resolve(file_name)
        try:
            return secret_path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"{where}.{kind}_file: cannot read {secret_path}: "
                              f"{exc.strerror}") from None
    return None


def read_secret(obj: MailboxConfig | SmtpConfig, cfg: Config, where: str,
                environ: Mapping[str, str] | None = None) -> str | None:
    """The password named by password_env / password_file, or None if neither."""
    env = os.environ if environ is None else environ
    return _named_secret(cfg, where, "password", obj.password_env, obj.password_file, env)


def read_csat_secret(cfg: Config, environ: Mapping[str, str] | None = None) -> str | None:
    """The survey signing secret named by csat.secret_env / secret_file, or None."""
    env = os.environ if environ is None else environ
    secret = _named_secret(cfg, "csat", "secret", cfg.csat.secret_env, cfg.csat.secret_file,
                           env)
    if secret is not None and len(secret) < 16:
        raise ConfigError("csat.secret: too short (at least 16 characters)")
    return secret


def read_client_secret(o: OAuth2Config, cfg: Config, where: str,
                       environ: Mapping[str, str] | None = None) -> str:
    """The client secret named by client_secret_env / client_secret_file."""
    env = os.environ if environ is None else environ
    secret = _named_secret(cfg, where, "client_secret", o.client_secret_env,
                           o.client_secret_file, env)
    if o.client_secret_env and not secret:
        raise ConfigError(f"{where}.client_secret_env: variable {o.client_secret_env} "
                          "is not set")
    if secret is None:
        raise ConfigError(f"{where}: no client_secret_env or client_secret_file")
    return secret
