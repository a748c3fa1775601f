"""A local stand-in for the identity providers' token endpoints, for tests and the demo.

``TokenServer`` is an HTTPS server (stdlib ``http.server`` in a thread, on a free port
of 127.0.0.1, with the devstack's self-signed certificate). It speaks enough of the
Microsoft identity platform for msal's client-credentials grant
(``/<tenant>/v2.0/.well-known/openid-configuration``, ``/<tenant>/oauth2/v2.0/token``)
and of Google's service-account grant (RFC 7523 jwt-bearer at ``/google/token``;
``add_service_account`` hands out the JSON key). It issues RS256 JWTs (header
``typ: JWT``; claims ``sub``, ``iat``, ``exp``, ``email`` = the mailbox, ``aud`` and
``azp`` = the client id, ``scope``) signed with one RSA key, whose public half Dovecot's
``oauth2`` passdb and the SMTP sink verify (``validate_token``). Refusals are RFC 6749
error JSON (AADSTS-style descriptions for Microsoft). ``lifetime`` sets how long new
tokens live. Microsoft apps may authenticate with a certificate (RFC 7523 client assertion,
checked against the certificate the test registered). ``users`` (``devstack.oauth2_user``)
adds the person's grants: device code at ``/<tenant>/oauth2/v2.0/devicecode`` (approved at
``/<tenant>/devicelogin``), authorization code with PKCE at ``/google/auth`` (a redirect to
the loopback port), and refresh tokens with rotation and revocation.

It must not listen anywhere but 127.0.0.1, talk to any real provider, or be used by
``maild`` at runtime. It never logs secrets or tokens.
"""

from __future__ import annotations

import base64
import json
import ssl
import threading
import time
import urllib.parse
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from devstack.dovecot import free_ports
from devstack.oauth2_user import DEVICE_CODE, UserGrants

APP_SCOPE = "https://outlook.office365.com/.default"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
CLIENT_ASSERTION = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
GOOGLE_AUDIENCE = "https://oauth2.googleapis.com/token"


@dataclass(frozen=True)
class OAuthClient:
    client_id: str
    secret: str | None
    mailbox: str  # the address its tokens are good for (the `email` claim)
    certificate: Any = None  # an x509.Certificate: RFC 7523 client assertions signed by it


@dataclass(frozen=True)
class ServiceAccount:
    email: str
    client_id: str
    public_key: Any
    delegated: bool


@dataclass(frozen=True)
class Issued:
    client_id: str
    mailbox: str
    at: float
    expires_at: float


def validate_token(token: str, public_pem: str, username: str) -> bool:
    """The rules Dovecot's oauth2 passdb applies (local validation): RS256, ``typ`` JWT,
    not expired, ``email`` equal to the login name."""
    try:
        if jwt.get_unverified_header(token).get("typ") != "JWT":
            return False
        claims = jwt.decode(token, public_pem, algorithms=["RS256"],
                            options={"verify_aud": False, "require": ["exp", "sub"]})
    except jwt.PyJWTError:
        return False
    return str(claims.get("email", "")).lower() == username.lower()


class TokenServer:
    """An HTTPS token endpoint on 127.0.0.1 (port chosen at ``start()``)."""

    host = "localhost"

    def __init__(self, cert_file: str | Path, key_file: str | Path, *,
                 lifetime: int = 3600) -> None:
        self.cert_file, self.key_file = Path(cert_file), Path(key_file)
        self.ca_file = self.cert_file
        self.lifetime = lifetime
        self.port = 0
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.public_pem = self._key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode()
        self._clients: dict[str, OAuthClient] = {}
        self._accounts: dict[str, ServiceAccount] = {}
        self._issued: list[Issued] = []
        self._lock = threading.Lock()
        self.users = UserGrants(mint=self._mint_issued, lifetime=lambda: self.lifetime)
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ----------------------------------------------------------------- lifecycle

    def start(self) -> None:
        if self._httpd is not None:
            return
        self.port = self.port or free_ports(1)[0]
        httpd = ThreadingHTTPServer(("127.0.0.1", self.port), _make_handler(self))
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(self.cert_file, self.key_file)
        httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
        httpd.daemon_threads = True
        self._httpd = httpd
        self._thread = threading.Thread(target=httpd.serve_forever, name="token-server",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        httpd, self._httpd = self._httpd, None
        if httpd is not None:
            httpd.shutdown()
            httpd.server_close()

    def __enter__(self) -> TokenServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ----------------------------------------------------------------- clients & tokens

    def add_client(self, client_id: str, secret: str, mailbox: str) -> OAuthClient:
        client = OAuthClient(client_id, secret, mailbox.lower())
        with self._lock:
            self._clients[client_id] = client
        return client

    def add_service_account(self, *, delegated: bool = True) -> dict[str, str]:
        """A Google-style service account; returns its JSON key (as the console gives it).
        With ``delegated`` it may act as any mailbox (domain-wide delegation granted)."""
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        client_id = str(100000000000000000000 + len(self._accounts))
        email = f"maild-{client_id[-6:]}@project.iam.gserviceaccount.example"
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
        with self._lock:
            self._accounts[email] = ServiceAccount(email, client_id, key.public_key(),
                                                   delegated)
        return {"type": "service_account", "project_id": "devstack",
                "private_key_id": uuid.uuid4().hex, "private_key": pem,
                "client_email": email, "client_id": client_id,
                "token_uri": self.google_token_url}

    @property
    def google_token_url(self) -> str:
        return f"https://{self.host}:{self.port}/google/token"

    def _jwt_bearer(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        """RFC 7523 with Google's rules: the assertion's iss is the service account, sub
        the mailbox, aud this endpoint, scope what it asks for."""
        if form.get("grant_type") != JWT_BEARER:
            return 400, {"error": "unsupported_grant_type",
                         "error_description": "Invalid grant_type"}
        assertion = form.get("assertion", "")
        try:
            iss = jwt.decode(assertion, options={"verify_signature": False}).get("iss", "")
            with self._lock:
                account = self._accounts[iss]
            # google-auth always addresses its assertion to Google's token endpoint.
            claims = jwt.decode(assertion, account.public_key, algorithms=["RS256"],
                                audience=[self.google_token_url, GOOGLE_AUDIENCE])
        except (jwt.PyJWTError, KeyError):
            return 400, {"error": "invalid_grant", "error_description": "Invalid JWT Signature."}
        scope = str(claims.get("scope", ""))
        if not account.delegated or "https://mail.google.com/" not in scope.split():
            return 401, {"error": "unauthorized_client", "error_description":
                         "Client is unauthorized to retrieve access tokens using this "
                         "method, or client not authorized for any of the scopes requested."}
        subject = str(claims.get("sub", "")).lower()
        if "@" not in subject:
            return 400, {"error": "invalid_grant", "error_description":
                         "Invalid email or User ID"}
        lifetime = self.lifetime
        token = self.mint(account.client_id, subject, scope, lifetime)
        now = time.time()
        with self._lock:
            self._issued.append(Issued(account.client_id, subject, now, now + lifetime))
        return 200, {"access_token": token, "expires_in": lifetime, "token_type": "Bearer"}

    def add_certificate_client(self, client_id: str, certificate: Any, mailbox: str
                               ) -> OAuthClient:
        """An app that proves itself with a certificate (an ``x509.Certificate``)."""
        client = OAuthClient(client_id, None, mailbox.lower(), certificate)
        with self._lock:
            self._clients[client_id] = client
        return client

    def add_public_client(self, client_id: str, secret: str | None = None) -> None:
        """A client for user consent: Microsoft public client (no secret), Google installed
        app (with its client secret)."""
        self.users.add_client(client_id, secret)

    def devicelogin_url(self, tenant: str) -> str:
        return f"https://{self.host}:{self.port}/{tenant}/devicelogin"

    @property
    def google_auth_url(self) -> str:
        return f"https://{self.host}:{self.port}/google/auth"

    def _mint_issued(self, client_id: str, user: str, scope: str, lifetime: int) -> str:
        token = self.mint(client_id, user, scope, lifetime)
        now = time.time()
        with self._lock:
            self._issued.append(Issued(client_id, user, now, now + lifetime))
        return token

    def _client_assertion_ok(self, client: OAuthClient, tenant: str,
                             form: dict[str, str]) -> bool:
        """RFC 7523 client authentication: signed by the registered certificate's key, its
        thumbprint in the header, addressed to this token endpoint, iss = sub = client id."""
        if client.certificate is None or form.get("client_assertion_type") != CLIENT_ASSERTION:
            return False
        assertion = form.get("client_assertion", "")
        cert = client.certificate
        try:
            header = jwt.get_unverified_header(assertion)
            want = {"x5t#S256": cert.fingerprint(hashes.SHA256()),
                    "x5t": cert.fingerprint(hashes.SHA1())}  # noqa: S303 (legacy header)
            if not any(jwt.utils.base64url_decode(header[k]) == v for k, v in want.items()
                       if k in header):
                return False
            claims = jwt.decode(assertion, cert.public_key(), algorithms=["PS256", "RS256"],
                                audience=f"https://{self.host}:{self.port}/{tenant}/oauth2/"
                                         "v2.0/token",
                                options={"require": ["exp", "iss", "sub", "aud"]})
        except (jwt.PyJWTError, KeyError, ValueError):
            return False
        return claims["iss"] == claims["sub"] == client.client_id

    def set_secret(self, client_id: str, secret: str) -> None:
        """Rotate (or revoke, by changing) a client's secret."""
        with self._lock:
            old = self._clients[client_id]
            self._clients[client_id] = OAuthClient(client_id, secret, old.mailbox)

    def authority(self, tenant: str) -> str:
        return f"https://{self.host}:{self.port}/{tenant}"

    @property
    def issued(self) -> list[Issued]:
        with self._lock:
            return list(self._issued)

    def mint(self, client_id: str, mailbox: str, scope: str = APP_SCOPE,
             lifetime: int | None = None) -> str:
        """A signed token as the endpoint would issue it (tests use it directly too)."""
        now = int(time.time())
        claims = {"sub": client_id, "iat": now - 5, "exp": now + (lifetime or self.lifetime),
                  "email": mailbox, "aud": client_id, "azp": client_id, "scope": scope,
                  "iss": f"https://{self.host}:{self.port}/"}
        return jwt.encode(claims, self._key, algorithm="RS256", headers={"typ": "JWT"})

    def _grant(self, tenant: str, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        grant_type = form.get("grant_type")
        if grant_type == DEVICE_CODE:
            return self.users.device_token(form, _error)
        if grant_type == "refresh_token":
            return self.users.refresh(form, _error)
        if grant_type != "client_credentials":
            return 400, _error("unsupported_grant_type", 70003,
                               "The app requested an unsupported grant type.")
        with self._lock:
            client = self._clients.get(form.get("client_id", ""))
        if client is None:
            return 400, _error("unauthorized_client", 700016,
                               f"Application with identifier '{form.get('client_id', '')}' "
                               f"was not found in the directory '{tenant}'.")
        if client.certificate is not None:
            if not self._client_assertion_ok(client, tenant, form):
                return 401, _error("invalid_client", 700027, "Client assertion failed "
                                   "signature validation.")
        elif form.get("client_secret") != client.secret:
            return 401, _error("invalid_client", 7000215,
                               "Invalid client secret provided. Ensure the secret being sent "
                               "in the request is the client secret value, not the client "
                               f"secret ID, for a secret added to app '{client.client_id}'.")
        scope = form.get("scope", "")
        if APP_SCOPE not in scope.split():
            return 400, _error("invalid_scope", 1002012,
                               f"The provided value for scope {scope} is not valid.")
        lifetime = self.lifetime
        token = self.mint(client.client_id, client.mailbox, scope, lifetime)
        now = time.time()
        with self._lock:
            self._issued.append(Issued(client.client_id, client.mailbox, now, now + lifetime))
        return 200, {"token_type": "Bearer", "expires_in": lifetime,
                     "ext_expires_in": lifetime, "access_token": token}

    def _openid_configuration(self, tenant: str) -> dict[str, Any]:
        base = f"https://{self.host}:{self.port}/{tenant}"
        return {"issuer": f"{base}/v2.0", "token_endpoint": f"{base}/oauth2/v2.0/token",
                "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
                "jwks_uri": f"{base}/discovery/v2.0/keys",
                "response_types_supported": ["code", "token"],
                "token_endpoint_auth_methods_supported": ["client_secret_post",
                                                          "private_key_jwt"]}


def _error(error: str, code: int, text: str) -> dict[str, Any]:
    return {"error": error, "error_description": f"AADSTS{code}: {text} "
            f"Trace ID: 00000000-0000-0000-0000-000000000000",
            "error_codes": [code], "timestamp": time.strftime("%Y-%m-%d %H:%M:%SZ")}


def _basic_auth(header: str) -> dict[str, str]:
    """RFC 6749 2.3.1 client_secret_basic: the client id and secret from the header."""
    if not header.startswith("Basic "):
        return {}
    try:
        user, _, password = base64.b64decode(header[6:]).decode().partition(":")
    except ValueError:
        return {}
    return {"client_id": urllib.parse.unquote_plus(user),
            "client_secret": urllib.parse.unquote_plus(password)}


def _make_handler(server: TokenServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass  # quiet; and never a secret in a log

        def _reply(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802
            parts = self.path.split("?")[0].strip("/").split("/")
            query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(self.path).query))
            if len(parts) == 4 and parts[1:] == ["v2.0", ".well-known",
                                                  "openid-configuration"]:
                self._reply(200, server._openid_configuration(parts[0]))
            elif len(parts) == 2 and parts[1] == "devicelogin":  # the person approves
                ok = server.users.approve(query.get("user_code", ""), query.get("login", ""),
                                          decline=bool(query.get("decline")))
                self._reply(200 if ok else 404, {"approved": ok})
            elif parts == ["google", "auth"]:
                status, where = server.users.authorize(query)
                if status != 302:
                    self._reply(status, {"error": where})
                    return
                self.send_response(302)
                self.send_header("Location", where)
                self.send_header("Content-Length", "0")
                self.end_headers()
            else:
                self._reply(404, {"error": "not_found"})

        def do_POST(self) -> None:  # noqa: N802
            parts = self.path.split("?")[0].strip("/").split("/")
            length = int(self.headers.get("Content-Length") or 0)
            form = dict(urllib.parse.parse_qsl(self.rfile.read(length).decode()))
            form.update(_basic_auth(self.headers.get("Authorization", "")))
            if len(parts) == 4 and parts[1:] == ["oauth2", "v2.0", "token"]:
                self._reply(*server._grant(parts[0], form))
            elif len(parts) == 4 and parts[1:] == ["oauth2", "v2.0", "devicecode"]:
                self._reply(*server.users.device_authorization(
                    form, server.devicelogin_url(parts[0]), _error))
            elif parts == ["google", "token"] and form.get("grant_type") == "refresh_token":
                self._reply(*server.users.refresh(form, None))
            elif parts == ["google", "token"] and form.get("grant_type") == "authorization_code":
                self._reply(*server.users.code_token(form))
            elif parts == ["google", "token"]:
                self._reply(*server._jwt_bearer(form))
            else:
                self._reply(404, {"error": "not_found"})

    return Handler


__all__ = ["APP_SCOPE", "Issued", "OAuthClient", "ServiceAccount", "TokenServer",
           "validate_token"]
