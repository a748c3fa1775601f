"""The refresh-token flow's file on disk: what `maild auth login` got and what renewals keep.

One JSON object per mailbox (`token_file`): the provider, the client id it belongs to, the
account that consented, the scopes, the refresh token (Google) or msal's serialized token
cache (Microsoft, which holds the refresh token and the account), when the last access token
expires and when it was last refreshed. Written atomically (a temp file in the same
directory, fsync, rename) with mode 0600; read and rewritten under an exclusive lock on a
sibling ``.lock`` file, so a daemon and `maild check` renewing at once do not lose a rotated
refresh token. Nothing here talks to a provider or logs anything.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from maild.errors import AuthError

VERSION = 1


@dataclass(frozen=True)
class StoredGrant:
    provider: str
    client_id: str
    account: str
    scopes: tuple[str, ...]
    refresh_token: str | None = None  # google
    msal_cache: str | None = None     # microsoft: msal.SerializableTokenCache.serialize()
    logged_in_at: str = ""
    last_refresh: str | None = None
    access_expires_at: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:  # never print the refresh token or the cache
        return (f"StoredGrant(provider={self.provider!r}, account={self.account!r}, "
                f"last_refresh={self.last_refresh!r})")

    def refreshed(self, expires_in: float, **changes: Any) -> StoredGrant:
        now = datetime.now(UTC)
        expires = datetime.fromtimestamp(now.timestamp() + expires_in, UTC)
        return replace(self, last_refresh=now.isoformat(timespec="seconds"),
                       access_expires_at=expires.isoformat(timespec="seconds"), **changes)


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def read_grant(path: Path, login_hint: str) -> StoredGrant:
    """The stored grant; `AuthError` naming the file and the command to run if there is none."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise AuthError(f"token_file {path} does not exist: run `{login_hint}`") from None
    except OSError as exc:
        raise AuthError(f"token_file {path}: cannot read: {exc.strerror}") from None
    except ValueError:
        raise AuthError(f"token_file {path} is not JSON: run `{login_hint}` again") from None
    try:
        return StoredGrant(provider=str(data["provider"]), client_id=str(data["client_id"]),
                           account=str(data.get("account") or ""),
                           scopes=tuple(data.get("scopes") or ()),
                           refresh_token=data.get("refresh_token"),
                           msal_cache=data.get("msal_cache"),
                           logged_in_at=str(data.get("logged_in_at") or ""),
                           last_refresh=data.get("last_refresh"),
                           access_expires_at=data.get("access_expires_at"),
                           extra=dict(data.get("extra") or {}))
    except (KeyError, TypeError, AttributeError):
        raise AuthError(f"token_file {path} is not a maild token file: run `{login_hint}` "
                        "again") from None


def write_grant(path: Path, grant: StoredGrant) -> None:
    """Replace `path` atomically with `grant`, readable by the owner only (0600)."""
    data = {"version": VERSION, **asdict(grant)}
    data["scopes"] = list(grant.scopes)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=1)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):  # the rename itself must survive a crash too
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on `<path>.lock` (other maild processes renewing wait)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(f"{path}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
