"""Turn a `[mailbox.oauth2]` / `[smtp.oauth2]` table into a token source.

The only place in `maild.auth` that reads the configuration (and the client secret,
through `read_client_secret`). It builds objects and does no network I/O itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial

from maild.auth.base import CachedTokenSource, Grant, TokenSource
from maild.auth.google import ServiceAccountGrant
from maild.auth.google_user import UserGrant
from maild.auth.microsoft import ClientCredentialsGrant, read_certificate
from maild.auth.microsoft_user import DelegatedGrant, PublicClient
from maild.config import Config, OAuth2Config, read_client_secret
from maild.errors import ConfigError


def token_source(o: OAuth2Config, cfg: Config, where: str, subject: str,
                 environ: Mapping[str, str] | None = None) -> TokenSource:
    """A cached token source for one oauth2 table (`where` names it in errors);
    `subject` is the mailbox a Google service account acts as."""
    ca_file = str(cfg.resolve(o.ca_file)) if o.ca_file else None
    grant: Grant
    if o.flow == "service_account" and o.service_account_file:
        grant = ServiceAccountGrant(key_file=cfg.resolve(o.service_account_file),
                                    subject=subject, scopes=o.scopes, token_url=o.token_url,
                                    ca_file=ca_file)
    elif o.flow == "client_credentials" and o.certificate_file:
        grant = ClientCredentialsGrant(
            client_id=o.client_id or "",
            secret=partial(read_certificate, cfg.resolve(o.certificate_file)),
            secret_hint=f"certificate_file ({o.certificate_file})", scopes=o.scopes,
            tenant=o.tenant, authority=o.authority, ca_file=ca_file)
    elif o.flow == "client_credentials":
        hint = (f"client_secret_env ({o.client_secret_env})" if o.client_secret_env
                else f"client_secret_file ({o.client_secret_file})")
        grant = ClientCredentialsGrant(
            client_id=o.client_id or "",
            secret=partial(read_client_secret, o, cfg, where, environ),
            secret_hint=hint, scopes=o.scopes, tenant=o.tenant, authority=o.authority,
            ca_file=ca_file)
    elif o.flow == "refresh_token" and o.token_file:
        grant = refresh_grant(o, cfg, where, subject, environ)
    else:
        raise ConfigError(f"{where}: flow {o.flow} is missing its credential keys")
    return CachedTokenSource(grant)


def public_client(o: OAuth2Config, cfg: Config) -> PublicClient:
    return PublicClient(client_id=o.client_id or "", tenant=o.tenant, authority=o.authority,
                        ca_file=str(cfg.resolve(o.ca_file)) if o.ca_file else None)


def refresh_grant(o: OAuth2Config, cfg: Config, where: str, mailbox: str,
                  environ: Mapping[str, str] | None = None) -> Grant:
    """The refresh-token grant of a person's consent kept in `token_file`."""
    path = cfg.resolve(o.token_file or "")
    if o.provider == "microsoft":
        return DelegatedGrant(client=public_client(o, cfg), scopes=o.scopes, token_file=path,
                              mailbox=mailbox)
    return UserGrant(client_id=o.client_id or "",
                     secret=partial(read_client_secret, o, cfg, where, environ),
                     scopes=o.scopes, token_file=path, mailbox=mailbox,
                     token_url=o.token_url,
                     ca_file=str(cfg.resolve(o.ca_file)) if o.ca_file else None)
