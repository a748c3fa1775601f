"""Microsoft identity platform tokens with msal: the app-only client-credentials grant,
with a client secret or a certificate (`read_certificate`: msal signs an RFC 7523 client
assertion with the key, the certificate's SHA-256 thumbprint in its header).

msal finds the token endpoint from `<authority>/v2.0/.well-known/openid-configuration`.
Instance discovery is off (it would call login.microsoftonline.com, and a private or
national-cloud authority is given in full), and requests' environment (REQUESTS_CA_BUNDLE,
proxies) is ignored so `ca_file` means what it says. A refused grant becomes one
`AuthError` line with the AADSTS code and a hint; the secret never appears in it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msal
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from maild.auth.base import AccessToken
from maild.errors import AuthError, ConfigError, MaildError

PUBLIC_CLOUD = "https://login.microsoftonline.com"
AADSTS_RE = re.compile(r"AADSTS(\d+)")
PEM_KEY_RE = re.compile(r"-----BEGIN (?:RSA |EC )?PRIVATE KEY-----.+?-----END (?:RSA |EC )?"
                        r"PRIVATE KEY-----", re.S)
PEM_CERT_RE = re.compile(r"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.S)

# The AADSTS codes people meet when setting up app-only access, and what to do about each.
HINTS = {
    "7000215": "invalid client secret — check {secret}: it must hold the secret's value, "
               "not its id",
    "7000222": "the client secret has expired — create a new one and update {secret}",
    "700016": "application not found in the directory — check client_id and tenant",
    "90002": "tenant not found — check tenant",
    "900023": "tenant not found — check tenant",
    "70011": "invalid scope — check scopes (app-only needs "
             "https://outlook.office365.com/.default)",
    "1002012": "invalid scope — check scopes",
    "7000112": "the application is disabled in the tenant",
    "700027": "the client assertion's signature does not verify — upload this certificate "
              "(certificate_file) to the app registration",
    "700021": "the client assertion is not valid — check certificate_file",
}


def read_certificate(path: Path) -> dict[str, str]:
    """msal's client credential from a PEM file holding the private key and the certificate
    (as `openssl req -x509 -newkey rsa:2048 -nodes -keyout k.pem -out c.pem; cat k.pem c.pem`);
    `ConfigError` naming the key if either is missing. msal computes the thumbprint."""
    try:
        text = path.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"certificate_file: cannot read {path}: "
                          f"{getattr(exc, 'strerror', None) or 'not a PEM file'}") from None
    keys = PEM_KEY_RE.findall(text)
    certs = PEM_CERT_RE.findall(text)
    if len(keys) != 1 or not certs:
        raise ConfigError(f"certificate_file: {path} must hold one private key and its "
                          "certificate (PEM)")
    try:
        cert = x509.load_pem_x509_certificate(certs[0].encode())
        serialization.load_pem_private_key(keys[0].encode(), password=None)
    except (ValueError, TypeError):
        raise ConfigError(f"certificate_file: {path}: the key or certificate does not parse "
                          "(an encrypted key is not supported)") from None
    return {"private_key": keys[0], "public_certificate": certs[0],
            "thumbprint_sha256": cert.fingerprint(hashes.SHA256()).hex()}


def msal_credential(credential: str | dict[str, str]) -> str | dict[str, str]:
    """What msal takes: the secret, or the key and certificate (it computes thumbprints)."""
    if isinstance(credential, str):
        return credential
    return {"private_key": credential["private_key"],
            "public_certificate": credential["public_certificate"]}


def authority_url(tenant: str | None, authority: str | None) -> str:
    return (authority or f"{PUBLIC_CLOUD}/{tenant}").rstrip("/")


def describe_refusal(result: dict[str, Any], secret_hint: str, secret: str) -> str:
    """One line: the AADSTS code and a hint, else the OAuth2 error and its description."""
    description = str(result.get("error_description") or "")
    codes = [str(c) for c in result.get("error_codes") or []]
    found = AADSTS_RE.search(description)
    code = codes[0] if codes else (found.group(1) if found else None)
    if code and code in HINTS:
        line = f"AADSTS{code}: {HINTS[code].format(secret=secret_hint)}"
    else:
        first = description.splitlines()[0] if description else ""
        first = first.split(" Trace ID:")[0].strip()
        line = f"{result.get('error', 'error')}: {first}" if first else \
            str(result.get("error", "refused"))
    return line.replace(secret, "***") if secret else line


class ClientCredentialsGrant:
    """`Grant` for Microsoft app-only access (client id + secret, scope `.default`)."""

    def __init__(self, *, client_id: str, secret: Callable[[], str | dict[str, str]],
                 secret_hint: str,
                 scopes: tuple[str, ...], tenant: str | None = None,
                 authority: str | None = None, ca_file: str | None = None,
                 timeout: float = 30.0) -> None:
        self.authority = authority_url(tenant, authority)
        self._client_id = client_id
        self._read_secret = secret  # read again before each request: a rotated secret (or
        self._secret = secret()     # certificate) in its file is picked up without a restart
        self._secret_hint = secret_hint
        self._scopes = list(scopes)
        self._ca_file = ca_file
        self._timeout = timeout
        self._app: msal.ConfidentialClientApplication | None = None

    def __repr__(self) -> str:
        return f"ClientCredentialsGrant(authority={self.authority!r}, client_id=...)"

    def _application(self) -> msal.ConfidentialClientApplication:
        if self._app is None:
            session = requests.Session()
            session.trust_env = False  # REQUESTS_CA_BUNDLE would override verify
            session.verify = self._ca_file or True
            self._app = msal.ConfidentialClientApplication(
                self._client_id, client_credential=msal_credential(self._secret),
                authority=self.authority,
                instance_discovery=False, http_client=session, timeout=self._timeout)
        return self._app

    def fetch(self) -> AccessToken:
        try:
            secret = self._read_secret()
        except MaildError as exc:
            raise AuthError(str(exc)) from None
        if secret != self._secret:
            self._secret, self._app = secret, None
        try:
            result = self._application().acquire_token_for_client(scopes=self._scopes)
        except (requests.RequestException, ValueError, OSError) as exc:
            self._app = None  # discovery failed: try it again next time
            raise AuthError(f"cannot get a token from {self.authority}: "
                            f"{type(exc).__name__}") from None
        if "access_token" not in result:
            plain = self._secret if isinstance(self._secret, str) else ""
            raise AuthError(f"token request to {self.authority} refused: "
                            f"{describe_refusal(result, self._secret_hint, plain)}")
        return AccessToken(str(result["access_token"]), float(result.get("expires_in", 3600)))

    def forget(self) -> None:
        """Drop msal's own cached tokens too, so the next fetch asks the server."""
        if self._app is None:
            return
        cache = self._app.token_cache
        for item in list(cache.search(msal.TokenCache.CredentialType.ACCESS_TOKEN)):
            cache.remove_at(item)
