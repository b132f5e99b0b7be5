"""MCP server over the memory store (official `mcp` SDK 2.x, `MCPServer`; stdio or streamable HTTP).

SuperLocalMemory v2.7's server is v1 `FastMCP` (it breaks on mcp 2.x), has no forget tool, and checks trust
against a hard-coded `"mcp:mcp-client"` id that never receives a signal. Here each client session gets one
canonical agent id, fixed at its first call (`mcp:<client_info.name>`, or the `--agent` the server was started
with), and that id is used for provenance, trust signals, quarantine and the forget policy alike. Tool
handlers are thin: validate (pydantic, from the annotations), call one `MemoryStore` method, return JSON. A
`ProtectError` becomes an MCP tool error; anything else is reported by the SDK as a failed call, and the
server keeps running.
"""

from __future__ import annotations

import re
import threading
import uuid
from typing import Annotated, Any

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import Field

from memory_store import auth
from memory_store.store import DEFAULT_NAMESPACE, MAX_ID, MemoryStore
from memory_store.tls import TLSFiles
from memory_store.tls import transport_security as tls_security
from protect.errors import ProtectError

Text = Annotated[str, Field(min_length=1, max_length=16_000)]
Query = Annotated[str, Field(max_length=4_000)]
Namespace = Annotated[str, Field(pattern=r"^[\w.:@/+-]{1,128}$")]
Tag = Annotated[str, Field(min_length=1, max_length=64)]
# strict: pydantic would otherwise read `true` as 1 and "1" or 1.0 as an id (an agent's `forget(memory_id=true)`
# erased memory 1) and "false" as a bool
Limit = Annotated[int, Field(ge=1, le=100, strict=True)]
MemoryId = Annotated[
    int, Field(ge=0, le=MAX_ID, strict=True)
]  # SQLite's rowid range: larger ids fail as one line
Importance = Annotated[int, Field(ge=1, le=10, strict=True)]
Flag = Annotated[bool, Field(strict=True)]


def canonical_agent(name: str | None) -> str:
    """`mcp:` plus the client name reduced to safe characters (at most 64)."""
    clean = re.sub(r"[^\w.@+-]+", "-", (name or "").strip().lower()).strip("-")[:64]
    return "mcp:" + (clean or "anonymous")


class Identities:
    """One agent id per client session, fixed at the session's first call.

    stdio: the server process serves exactly one client, so the process is the session. Streamable HTTP: the
    `mcp-session-id` the server issued. Stateless HTTP requests have no session and are named per request.
    """

    def __init__(self, *, pinned: str | None, transport: str) -> None:
        self.pinned = pinned
        self.transport = transport
        self.stdio_session = "stdio-" + uuid.uuid4().hex[:12]
        self._by_session: dict[str, str] = {}
        self._lock = threading.Lock()

    def resolve(self, ctx: Any) -> tuple[str, str]:
        if self.transport == "stdio":
            key = self.stdio_session
        else:
            headers = ctx.headers or {}
            sid = headers.get("mcp-session-id")
            key = f"http-{sid}" if sid else ""
        with self._lock:
            if key and key in self._by_session:
                return self._by_session[key], key
            params = getattr(ctx.session, "client_params", None)
            name = self.pinned or (params.client_info.name if params and params.client_info else None)
            agent = canonical_agent(name)
            if key:
                self._by_session[key] = agent
            return agent, key or "http-stateless"


def build_server(
    store: MemoryStore,
    *,
    transport: str = "stdio",
    agent: str | None = None,
    allow_forget_any: bool = False,
    token: str | None = None,
    base_url: str = "http://127.0.0.1:8417",
) -> MCPServer:
    """An `MCPServer` with the memory tools bound to `store`; with `token`, HTTP requests must carry it
    (`memory_store.auth`)."""
    ids = Identities(pinned=agent, transport=transport)
    guard = (
        {"token_verifier": auth.StaticTokenVerifier(token), "auth": auth.auth_settings(base_url)}
        if token
        else {}
    )
    server = MCPServer(
        "protect-memory",
        **guard,
        instructions=(
            "Long-term memory shared by several agents on this machine. Use `recall` before answering "
            "questions "
            "about the user's projects and `remember` for durable facts. Memories from low-trust agents are "
            "quarantined and not returned."
        ),
    )

    def call(fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ProtectError as e:
            raise ToolError(str(e)) from e

    @server.tool()
    def remember(
        content: Text,
        ctx: Context,
        tags: list[Tag] | None = None,
        namespace: Namespace = DEFAULT_NAMESPACE,
        importance: Importance = 5,
    ) -> dict[str, Any]:
        """Store a durable fact. Duplicates confirm the existing memory; suspicious writes are quarantined."""
        who, session = ids.resolve(ctx)
        res = call(
            store.remember,
            content,
            agent=who,
            namespace=namespace,
            tags=tags or [],
            importance=importance,
            session=session,
            transport=transport,
        )
        return res.to_dict()

    @server.tool()
    def recall(
        query: Query,
        ctx: Context,
        namespace: Namespace = DEFAULT_NAMESPACE,
        limit: Limit = 5,
    ) -> dict[str, Any]:
        """Search memories (keywords + meaning), best first. Quarantined memories are never returned here."""
        who, _ = ids.resolve(ctx)
        found = call(store.recall, query, namespace=namespace, limit=limit, agent=who)
        return {"memories": [_public(m) for m in found]}

    @server.tool()
    def forget(
        ctx: Context,
        memory_id: MemoryId | None = None,
        query: Query | None = None,
        tag: Tag | None = None,
        namespace: Namespace | None = None,
        dry_run: Flag = False,
    ) -> dict[str, Any]:
        """Erase memories completely (rows, index, graph, embeddings, events, feedback) and return a receipt.

        An agent may erase only its own memories unless the server was started with --allow-forget-any.
        """
        who, _ = ids.resolve(ctx)
        receipt = call(
            store.forget,
            ids=None if memory_id is None else [memory_id],
            query=query,
            tag=tag,
            namespace=namespace,
            requester=who,
            owner=None if allow_forget_any else who,
            dry_run=dry_run,
        )
        return receipt.to_dict()

    @server.tool()
    def list_recent(
        ctx: Context, namespace: Namespace = DEFAULT_NAMESPACE, limit: Limit = 10
    ) -> dict[str, Any]:
        """The newest active memories of a namespace."""
        return {"memories": [_public(m) for m in call(store.list_recent, namespace=namespace, limit=limit)]}

    @server.tool()
    def related(memory_id: MemoryId, ctx: Context, limit: Limit = 5) -> dict[str, Any]:
        """Memories linked to one memory in the similarity/entity graph or its Leiden community."""
        return {"memories": [_public(m) for m in call(store.related, memory_id, limit=limit)]}

    @server.tool()
    def trust_report(
        ctx: Context, agent: Annotated[str, Field(max_length=128)] | None = None
    ) -> dict[str, Any]:
        """Trust (Beta posterior mean) of each agent, with its memory and signal counts."""
        return {"agents": call(store.trust_report, agent)}

    @server.tool()
    def status(ctx: Context) -> dict[str, Any]:
        """Store statistics and the agent id this session writes as."""
        who, session = ids.resolve(ctx)
        info = call(store.stats)
        info.update(agent=who, session=session, transport=transport)
        return info

    return server


def _public(m: Any) -> dict[str, Any]:
    d = m.to_dict()
    d.pop("content_hash", None)
    return d


def serve(
    store: MemoryStore,
    *,
    transport: str = "stdio",
    host: str = "127.0.0.1",
    port: int = 8417,
    agent: str | None = None,
    allow_forget_any: bool = False,
    token: str | None = None,
    tls: TLSFiles | None = None,
) -> None:
    """Run until the client disconnects (stdio) or the process is stopped (HTTP, where `token`, if given, is
    required of every request, and `tls` makes it HTTPS: `memory_store.tls`)."""
    server = build_server(
        store,
        transport=transport,
        agent=agent,
        allow_forget_any=allow_forget_any,
        token=token if transport != "stdio" else None,
        base_url=http_url(host, port, tls=tls is not None, path=""),
    )
    if transport == "stdio":
        server.run("stdio")
        return
    import uvicorn

    # the SDK's own `run("streamable-http")` is this app under uvicorn, without a way to pass TLS files
    app = server.streamable_http_app(host=host, transport_security=tls_security(host) if tls else None)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=server.settings.log_level.lower(),
        **(tls.uvicorn_options() if tls else {}),
    )
    uvicorn.Server(config).run()


def http_url(host: str, port: int, *, tls: bool, path: str = "/mcp") -> str:
    """The address clients use: https with TLS files, brackets around an IPv6 host."""
    return f"{'https' if tls else 'http'}://{f'[{host}]' if ':' in host else host}:{port}{path}"
