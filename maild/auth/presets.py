"""Provider presets: the servers and default scopes of Microsoft 365 and Google Workspace.

Pure data and one lookup; the config loader fills in whatever keys the file leaves out
(keys given explicitly always win). Nothing here does I/O.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Preset:
    imap_host: str
    imap_port: int
    security: str
    smtp_host: str
    smtp_port: int
    smtp_security: str
    scopes: dict[str, tuple[str, ...]]  # flow -> default scopes


MICROSOFT_APP_SCOPE = "https://outlook.office365.com/.default"
GOOGLE_MAIL_SCOPE = "https://mail.google.com/"

PRESETS: dict[str, Preset] = {
    "microsoft": Preset(
        "outlook.office365.com", 993, "tls", "smtp.office365.com", 587, "starttls",
        {"client_credentials": (MICROSOFT_APP_SCOPE,),
         "refresh_token": ("https://outlook.office.com/IMAP.AccessAsUser.All",
                           "https://outlook.office.com/SMTP.Send", "offline_access")}),
    "google": Preset(
        "imap.gmail.com", 993, "tls", "smtp.gmail.com", 587, "starttls",
        {"service_account": (GOOGLE_MAIL_SCOPE,), "refresh_token": (GOOGLE_MAIL_SCOPE,)}),
}

# Without a provider, the flow says whose it is.
FLOW_PROVIDER = {"client_credentials": "microsoft", "service_account": "google"}


def default_scopes(provider: str | None, flow: str) -> tuple[str, ...]:
    name = provider or FLOW_PROVIDER.get(flow)
    preset = PRESETS.get(name or "")
    return preset.scopes.get(flow, ()) if preset else ()
