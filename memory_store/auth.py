"""A bearer token for the MCP server's streamable HTTP transport.

Over stdio only the client that started the server can talk to it. A TCP port on 127.0.0.1 is open to every
process of every user of the machine, while the database behind it is guarded by file permissions alone. The
SDK's host and origin checks stop DNS-rebinding pages, not local processes. So HTTP asks for a secret that sits
in an owner-only (0600) file beside the database, and a client proves it can read that file.

The check is the SDK's own bearer middleware (`token_verifier` + `AuthSettings`): a request without the token, or
with a wrong one, gets 401 before it reaches a tool. The comparison takes constant time.
"""

from __future__ import annotations

import hmac
import os
import secrets
import stat
from pathlib import Path

from mcp.server.auth.provider import AccessToken
from mcp.server.auth.settings import AuthSettings

from protect.errors import ConfigError

TOKEN_ENV = "PROTECT_MEMORY_TOKEN"
_MIN_LENGTH = 32


def token_path(db: Path) -> Path:
    """The default token file: `<database>.mcp-token`, next to the database it opens."""
    return db.with_name(db.name + ".mcp-token")


def load_or_create_token(path: Path) -> str:
    """The token in `path`, created (random, 0600) on first use. Two servers starting at once agree on one."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_urlsafe(32) + "\n")
                f.flush()
                os.fsync(f.fileno())
            try:
                os.link(tmp, path)  # fails if another server created it first: then that one counts
            except FileExistsError:
                pass
        finally:
            tmp.unlink(missing_ok=True)
    if os.name == "posix" and path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(f"{path} is readable by other users: chmod 600 {path}")
    return check_token(path.read_text(encoding="utf-8").strip(), str(path))


def check_token(token: str, source: str) -> str:
    if len(token) < _MIN_LENGTH or not token.isprintable() or " " in token:
        raise ConfigError(
            f"the token in {source} must be at least {_MIN_LENGTH} printable characters, no spaces"
        )
    return token


class StaticTokenVerifier:
    """The SDK's `TokenVerifier` for one shared secret."""

    def __init__(self, token: str) -> None:
        self._token = token.encode()

    async def verify_token(self, token: str) -> AccessToken | None:
        if hmac.compare_digest(token.encode(), self._token):
            return AccessToken(token=token, client_id="protect-memory-owner", scopes=[])
        return None


def auth_settings(base_url: str) -> AuthSettings:
    """No authorisation server: the token is handed over out of band (the file), so no OAuth metadata."""
    return AuthSettings(issuer_url=base_url, resource_server_url=None)
