"""The HTTP transport's bearer token (`memory_store.auth`), through a real `protect memory serve --transport http`."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import anyio
import httpx2
import mcp_types as types
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from memory_store import auth
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


@pytest.fixture
def http_server(tmp_path, protect_home):
    port = _free_port()
    db = tmp_path / "m.db"
    cmd = [sys.executable, "-c", "from protect.cli import cli; cli()", "memory", "serve", "--db", str(db)]
    cmd += ["--embedder", "tfidf", "--transport", "http", "--port", str(port)]
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
        yield f"http://127.0.0.1:{port}/mcp", auth.token_path(db)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


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
