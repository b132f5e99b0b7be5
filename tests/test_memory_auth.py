"""The HTTP transport's bearer token (`memory_store.auth`) and HTTPS (`memory_store.tls`), through a real
`protect memory serve --transport http`."""

from __future__ import annotations

import contextlib
import os
import socket
import ssl
import subprocess
import sys
import time

import anyio
import httpx2
import mcp_types as types
import pytest
import trustme
from click.testing import CliRunner
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from memory_store import auth, tls
from memory_store.server import http_url
from protect.cli import cli
from protect.errors import ConfigError


def test_token_file_is_created_private_and_reused(tmp_path):
    path = tmp_path / "sub" / "m.db.mcp-token"
    token = auth.load_or_create_token(path)
    assert len(token) >= 32 and auth.load_or_create_token(path) == token
    if os.name == "posix":
        assert path.stat().st_mode & 0o777 == 0o600
        path.chmod(0o644)
        with pytest.raises(ConfigError, match="chmod 600"):
            auth.load_or_create_token(path)


def test_short_or_spaced_tokens_are_refused(tmp_path):
    for bad in ("short", "x" * 20 + " " + "y" * 20):
        with pytest.raises(ConfigError, match="at least 32"):
            auth.check_token(bad, "test")


def test_verifier_accepts_only_its_token():
    v = auth.StaticTokenVerifier("a" * 40)
    assert anyio.run(v.verify_token, "a" * 40).client_id == "protect-memory-owner"
    assert anyio.run(v.verify_token, "a" * 39 + "b") is None
    assert anyio.run(v.verify_token, "") is None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def _serve(db, protect_home, *extra: str, scheme: str = "http"):
    """A real `protect memory serve --transport http` in its own process; yields its URL once it accepts."""
    port = _free_port()
    cmd = [sys.executable, "-c", "from protect.cli import cli; cli()", "memory", "serve", "--db", str(db)]
    cmd += ["--embedder", "tfidf", "--transport", "http", "--port", str(port), *extra]
    env = {**os.environ, "PROTECT_HOME": str(protect_home), "HF_HUB_OFFLINE": "1"}
    env.pop(auth.TOKEN_ENV, None)
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"server did not start: {proc.stderr.read()}") from None
                time.sleep(0.2)
        yield f"{scheme}://127.0.0.1:{port}/mcp"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture
def http_server(tmp_path, protect_home):
    db = tmp_path / "m.db"
    with _serve(db, protect_home) as url:
        yield url, auth.token_path(db)


@pytest.fixture
def tls_files(tmp_path):
    """A throw-away CA and a certificate for 127.0.0.1 that it signed (trustme: no network, no openssl CLI)."""
    ca = trustme.CA()
    issued = ca.issue_cert("127.0.0.1")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    issued.cert_chain_pems[0].write_to_path(str(cert))
    issued.private_key_pem.write_to_path(str(key))
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    return cert, key, client_ctx, ca


INIT = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "probe", "version": "1"},
    },
}
HEADERS = {"accept": "application/json, text/event-stream", "content-type": "application/json"}


def test_http_requires_the_token(http_server):
    url, token_file = http_server
    token = token_file.read_text().strip()
    assert httpx2.post(url, json=INIT, headers=HEADERS).status_code == 401
    wrong = {**HEADERS, "authorization": "Bearer " + "z" * 43}
    assert httpx2.post(url, json=INIT, headers=wrong).status_code == 401

    async def scenario():
        client = httpx2.AsyncClient(headers={"authorization": f"Bearer {token}"})
        info = types.Implementation(name="Http Agent", version="1")
        async with client, Client(streamable_http_client(url, http_client=client), client_info=info) as c:
            res = await c.call_tool("remember", {"content": "The HTTP transport checks a bearer token"})
            assert not res.is_error
            status = await c.call_tool("status", {})
            assert status.structured_content["agent"] == "mcp:http-agent"
            assert status.structured_content["memories"] == 1

    anyio.run(scenario)


def test_https_serves_the_same_tools_and_plain_http_gets_nothing(tmp_path, protect_home, tls_files):
    cert, key, client_ctx, _ = tls_files
    db = tmp_path / "m.db"
    with _serve(db, protect_home, "--tls-cert", str(cert), "--tls-key", str(key), scheme="https") as url:
        token = auth.token_path(db).read_text().strip()
        with pytest.raises(httpx2.HTTPError):  # a plain-HTTP client cannot talk to the TLS port
            httpx2.post(url.replace("https://", "http://"), json=INIT, headers=HEADERS)
        with pytest.raises(httpx2.ConnectError):  # nor can one that does not trust the certificate
            httpx2.post(url, json=INIT, headers=HEADERS)
        assert httpx2.post(url, json=INIT, headers=HEADERS, verify=client_ctx).status_code == 401
        signed = {**HEADERS, "authorization": f"Bearer {token}"}
        origin = url.removesuffix("/mcp")  # a browser-based client of this server sends its https:// origin
        ok = httpx2.post(url, json=INIT, headers={**signed, "origin": origin}, verify=client_ctx)
        assert ok.status_code == 200, ok.text
        evil = httpx2.post(
            url, json=INIT, headers={**signed, "origin": "https://evil.example"}, verify=client_ctx
        )
        assert evil.status_code == 403  # the SDK's DNS-rebinding check is still on

        async def scenario():
            client = httpx2.AsyncClient(headers={"authorization": f"Bearer {token}"}, verify=client_ctx)
            async with client, Client(streamable_http_client(url, http_client=client)) as c:
                assert not (await c.call_tool("remember", {"content": "TLS carries this memory"})).is_error
                assert (await c.call_tool("status", {})).structured_content["memories"] == 1

        anyio.run(scenario)


def test_unusable_tls_files_are_one_line_before_the_server_starts(tmp_path, protect_home, tls_files):
    cert, key, _, ca = tls_files
    other_key = tmp_path / "other.pem"
    ca.issue_cert("127.0.0.1").private_key_pem.write_to_path(str(other_key))
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate")
    db = str(tmp_path / "m.db")
    base = ["memory", "serve", "--db", db, "--embedder", "tfidf", "--transport", "http", "--port", "1"]
    cases = {
        ("--tls-cert", str(cert), "--tls-key", str(other_key)): "does not belong to the certificate",
        ("--tls-cert", str(junk), "--tls-key", str(key)): "PEM certificate",
        ("--tls-cert", str(cert)): "both --tls-cert and --tls-key",
    }
    for extra, message in cases.items():
        r = CliRunner().invoke(cli, [*base, *extra], env={"PROTECT_HOME": str(protect_home)})
        assert r.exit_code == 2 and message in r.output and len(r.output.strip().splitlines()) == 1, r.output
    assert not (tmp_path / "m.db").exists()  # refused before the database was opened
    stdio = ["memory", "serve", "--db", db, "--tls-cert", str(cert), "--tls-key", str(key)]
    r = CliRunner().invoke(cli, stdio, env={"PROTECT_HOME": str(protect_home)})
    assert r.exit_code == 2 and "--transport http only" in r.output


def test_loopback_hosts_and_their_urls():
    assert all(tls.is_loopback(h) for h in ("127.0.0.1", "127.8.0.1", "::1", "localhost"))
    assert not any(tls.is_loopback(h) for h in ("0.0.0.0", "::", "192.168.1.4", "example.org"))
    assert http_url("::1", 8417, tls=True) == "https://[::1]:8417/mcp"
    assert http_url("127.0.0.1", 1, tls=False, path="") == "http://127.0.0.1:1"
