"""HTTPS for the MCP server's streamable HTTP transport.

The bearer token (`memory_store.auth`) proves a client may use the store, but over plain HTTP it travels in clear,
and so do the memories. On 127.0.0.1 only this machine sees that traffic. On any other address, everyone on
the network path can read both. So a server on a non-loopback address should speak HTTPS, with a certificate
the clients trust (uvicorn terminates TLS, the SDK's app is unchanged).

The certificate and key are loaded once before the server starts. Then a wrong path, a key that does not
match, or a passphrase-protected key is one clear line, not a uvicorn traceback or a passphrase prompt on the
server's terminal.
"""

from __future__ import annotations

import ipaddress
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mcp.server.transport_security import TransportSecuritySettings

from protect.errors import ConfigError

# the SDK turns on its DNS-rebinding checks for exactly these bind addresses (mcp.server.lowlevel.server)
_SDK_LOOPBACK = ("127.0.0.1", "localhost", "::1")
_LOOPBACK_HOSTS = ["127.0.0.1:*", "localhost:*", "[::1]:*"]


@dataclass(frozen=True)
class TLSFiles:
    """A PEM certificate (chain) and its private key, checked to belong together (`load`)."""

    cert: Path
    key: Path

    def uvicorn_options(self) -> dict[str, Any]:
        return {"ssl_certfile": str(self.cert), "ssl_keyfile": str(self.key)}


def load(cert: Path, key: Path) -> TLSFiles:
    """The pair, after OpenSSL has read it as a server context would; ConfigError with the reason otherwise."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        # an empty password: an encrypted key fails here instead of prompting on the terminal
        ctx.load_cert_chain(certfile=str(cert), keyfile=str(key), password="")
    except ssl.SSLError as e:
        why = (
            "the key does not belong to the certificate"
            if e.reason == "KEY_VALUES_MISMATCH"
            else "expected a PEM certificate (chain) and an unencrypted PEM private key"
        )
        raise ConfigError(f"cannot serve HTTPS with {cert} and {key}: {why}") from e
    except OSError as e:
        raise ConfigError(f"cannot serve HTTPS with {cert} and {key}: {e.strerror or e}") from e
    return TLSFiles(cert, key)


def transport_security(host: str) -> TransportSecuritySettings | None:
    """The SDK's DNS-rebinding defaults for a loopback bind, with `https://` origins allowed too: the SDK's list
    has `http://` only, so a browser-based client of an HTTPS server would get 403 for its Origin header.
    `None` (the SDK decides) for any other host."""
    if host not in _SDK_LOOPBACK:
        return None
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=_LOOPBACK_HOSTS,
        allowed_origins=[f"{scheme}://{h}" for scheme in ("http", "https") for h in _LOOPBACK_HOSTS],
    )


def is_loopback(host: str) -> bool:
    """Whether only this machine can reach `host` (127.0.0.0/8, ::1, localhost)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name or a wildcard: assume the network can reach it
