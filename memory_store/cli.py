"""`protect memory`: thin commands over `MemoryStore`, for people (agents use the MCP server: `serve`)."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
import re
import unicodedata
from pathlib import Path
from typing import Any

import click

EMBEDDER_CHOICES = ("auto", "minilm", "tfidf")


def _store_options(fn: Any) -> Any:
    fn = click.option(
        "--embedder",
        type=click.Choice(EMBEDDER_CHOICES),
        default="auto",
        show_default=True,
        help="Semantic model: MiniLM (protect[semantic]) or the TF-IDF fallback.",
    )(fn)
    return click.option(
        "--db",
        "db_path",
        type=click.Path(dir_okay=False, path_type=Path),
        envvar="PROTECT_MEMORY_DB",
        help="Database file [default: $PROTECT_HOME/memory/memory.db].",
    )(fn)


def _json_option(fn: Any) -> Any:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON.")(fn)


def _open(db_path: Path | None, embedder: str) -> Any:
    from memory_store.store import MemoryStore

    return MemoryStore(db_path, embedder=embedder)


def _emit(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))


def _line(m: Any) -> str:
    when = dt.datetime.fromtimestamp(m.created_at).strftime("%Y-%m-%d %H:%M")
    extra = f" score={m.score:.4f}" if m.score is not None else ""
    status = "" if m.status == "active" else f" [{m.status}]"
    tags = f" #{' #'.join(m.tags)}" if m.tags else ""
    return f"{m.id:>6}  {when}  {shown(m.agent)}{status}{extra}{shown(tags)}\n        {shown(m.content)}"


def shown(text: str) -> str:
    """Text an agent wrote, safe to print on a terminal: control characters (escape sequences could retitle the
    window, clear the screen or overwrite a `[quarantined]` marker) and bidirectional overrides are shown as
    `\\x1b`-style escapes instead of acting."""
    return "".join(ch.encode("unicode_escape").decode("ascii") if _acts(ch) else ch for ch in text)


def _acts(ch: str) -> bool:
    return unicodedata.category(ch) == "Cc" or "\u202a" <= ch <= "\u202e" or "\u2066" <= ch <= "\u2069"


@click.group()
def memory() -> None:
    """Local agent memory: SQLite/FTS5 store, Bayesian trust, complete erasure, MCP server.

    \b
    Example:
        protect memory add "The staging API listens on port 8443" --tag infra
        protect memory search "staging port"
        protect memory serve            # MCP over stdio, for Claude Desktop, Cursor, ...
    """


@memory.command()
@click.argument("text")
@click.option("--tag", "-t", "tags", multiple=True, help="Tag (repeatable).")
@click.option("--namespace", "-n", default="default", show_default=True, help="Project namespace.")
@click.option("--importance", type=click.IntRange(1, 10), default=5, show_default=True)
@_store_options
@_json_option
def add(
    text: str,
    tags: tuple[str, ...],
    namespace: str,
    importance: int,
    db_path: Path | None,
    embedder: str,
    as_json: bool,
) -> None:
    """Remember TEXT as the user (trust 1.0).

    \b
    Example:
        protect memory add "Run the test-suite with pytest -q" --tag testing -n myproject
    """
    with _open(db_path, embedder) as store:
        res = store.remember(text, namespace=namespace, tags=tags, importance=importance, transport="cli")
    if as_json:
        _emit(res.to_dict())
    else:
        dup = f" (already stored as {res.duplicate_of})" if res.duplicate_of else ""
        click.echo(f"remembered {res.id} [{res.status}]{dup}")


@memory.command()
@click.argument("query")
@click.option("--namespace", "-n", default="default", show_default=True)
@click.option("--all-namespaces", is_flag=True, help="Search every namespace.")
@click.option("--limit", "-k", type=click.IntRange(1, 200), default=5, show_default=True)
@click.option("--quarantined", is_flag=True, help="Also return quarantined / low-trust memories.")
@_store_options
@_json_option
def search(
    query: str,
    namespace: str,
    all_namespaces: bool,
    limit: int,
    quarantined: bool,
    db_path: Path | None,
    embedder: str,
    as_json: bool,
) -> None:
    """Hybrid search (bm25 + semantic, weighted by trust).

    \b
    Example:
        protect memory search "which port does staging use" -k 3
    """
    with _open(db_path, embedder) as store:
        found = store.recall(
            query,
            namespace=None if all_namespaces else namespace,
            limit=limit,
            include_quarantined=quarantined,
        )
    if as_json:
        _emit([m.to_dict() for m in found])
    else:
        click.echo("\n".join(_line(m) for m in found) or "no memories found")


@memory.command()
@click.option("--id", "ids", type=int, multiple=True, help="Memory id (repeatable).")
@click.option("--query", "-q", help="Erase memories containing all these words.")
@click.option("--tag", "-t", help="Erase memories with this tag.")
@click.option("--agent", help="Erase memories written by this agent.")
@click.option("--namespace", "-n", help="Erase within (or, alone, all of) this namespace.")
@click.option("--dry-run", is_flag=True, help="Show what would be erased.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@_store_options
@_json_option
def forget(
    ids: tuple[int, ...],
    query: str | None,
    tag: str | None,
    agent: str | None,
    namespace: str | None,
    dry_run: bool,
    yes: bool,
    db_path: Path | None,
    embedder: str,
    as_json: bool,
) -> None:
    """Erase memories and every trace (index, graph, embeddings, events, feedback, WAL); print a receipt.

    Selectors combine (AND).

    \b
    Example:
        protect memory forget --id 12 --yes
        protect memory forget --agent mcp:cursor --namespace myproject --dry-run
    """
    with _open(db_path, embedder) as store:
        sel = dict(ids=list(ids) or None, query=query, tag=tag, agent=agent, namespace=namespace)
        plan = store.forget(**sel, dry_run=True)
        if not plan.ids:
            # finishes an earlier erasure that another process's reader held up, or says it still cannot
            if not dry_run and not store.compact():
                raise click.ClickException(
                    f"nothing matches, but another process has the database open, so the text of an earlier "
                    f"erasure may still be in {store.path}-wal: close it (e.g. stop `protect memory serve`) and "
                    "run the same forget command again to finish the erasure"
                )
            click.echo("nothing matches")
            return
        if not dry_run and not yes:
            click.confirm(f"Erase {len(plan.ids)} memories permanently?", abort=True)
        receipt = plan if dry_run else store.forget(**sel)
    if as_json:
        _emit(receipt.to_dict())
        return
    verb = "would erase" if dry_run else "erased"
    click.echo(f"{verb} {len(receipt.ids)} memories: ids {', '.join(map(str, receipt.ids[:20]))}")
    click.echo("removed rows: " + ", ".join(f"{k}={v}" for k, v in receipt.counts.items()))
    if not dry_run:
        scanned = (
            ""
            if receipt.checked_texts >= len(receipt.ids)
            else f" ({receipt.checked_texts} of {len(receipt.ids)} erased texts scanned)"
        )
        state = {
            True: f"no erased text found in the database files{scanned}",
            False: "RESIDUE FOUND",
            None: "not checked",
        }
        click.echo(
            f"vacuumed={receipt.vacuumed} wal_truncated={receipt.wal_truncated}; "
            f"{state[receipt.residue_free]}"
        )
    if not dry_run and receipt.residue_free is False:
        raise click.ClickException(_residue_hint(receipt.residue_files))


def _residue_hint(files: list[str]) -> str:
    """Residue means another process (an MCP server, a reader) kept the WAL from being cleared."""
    return (
        f"erased text is still in {', '.join(files)}: another process has the database open; close it "
        "(e.g. stop `protect memory serve`) and run the same forget command again to finish the erasure"
    )


@memory.command(name="list")
@click.option("--namespace", "-n", default="default", show_default=True)
@click.option("--limit", "-k", type=click.IntRange(1, 10_000), default=20, show_default=True)
@click.option("--agent", help="Only memories by this agent.")
@click.option(
    "--status", type=click.Choice(["active", "quarantined", "all"]), default="active", show_default=True
)
@_store_options
@_json_option
def list_(
    namespace: str,
    limit: int,
    agent: str | None,
    status: str,
    db_path: Path | None,
    embedder: str,
    as_json: bool,
) -> None:
    """List the newest memories.

    \b
    Example:
        protect memory list --status quarantined
    """
    with _open(db_path, embedder) as store:
        rows = store.list_recent(
            namespace=namespace, limit=limit, agent=agent, status=None if status == "all" else status
        )
    if as_json:
        _emit([m.to_dict() for m in rows])
    else:
        click.echo("\n".join(_line(m) for m in rows) or "no memories")


@memory.command()
@_store_options
def stats(db_path: Path | None, embedder: str) -> None:
    """Counts, namespaces, agents and file sizes (JSON).

    \b
    Example:
        protect memory stats
    """
    with _open(db_path, embedder) as store:
        _emit(store.stats())


@memory.command()
@click.argument("agent", required=False)
@_store_options
@_json_option
def trust(agent: str | None, db_path: Path | None, embedder: str, as_json: bool) -> None:
    """Trust of each agent (Beta posterior mean), with quarantined counts and signals.

    \b
    Example:
        protect memory trust mcp:cursor
    """
    with _open(db_path, embedder) as store:
        rows = store.trust_report(agent)
    if as_json:
        _emit(rows)
        return
    for r in rows:
        signals = ", ".join(f"{k}={v}" for k, v in sorted(r["signals"].items()))
        click.echo(
            f"{r['agent']:<28} trust={r['trust']:.3f} (a={r['alpha']}, b={r['beta']}) "
            f"active={r['active']} quarantined={r['quarantined']}  {signals}"
        )


@memory.command()
@click.argument("memory_id", type=int)
@_store_options
def approve(memory_id: int, db_path: Path | None, embedder: str) -> None:
    """Release a quarantined memory so it is served again.

    \b
    Example:
        protect memory approve 42
    """
    with _open(db_path, embedder) as store:
        m = store.approve(memory_id)
        floor = store.min_trust
    click.echo(f"approved {m.id}: {shown(m.content)}")
    if m.trust is not None and m.trust < floor:
        click.echo(
            f"warning: its agent {shown(m.agent)} has trust {m.trust:.2f}, below {floor:.2f}, so none of its "
            "memories is served yet (see `protect memory trust`); trust recovers as the agent's signals decay",
            err=True,
        )


@memory.command()
@click.argument("memory_id", type=int)
@click.option("--limit", "-k", type=click.IntRange(1, 100), default=5, show_default=True)
@_store_options
@_json_option
def related(memory_id: int, limit: int, db_path: Path | None, embedder: str, as_json: bool) -> None:
    """Memories linked in the similarity/entity graph or the same Leiden community.

    \b
    Example:
        protect memory related 42
    """
    with _open(db_path, embedder) as store:
        rows = store.related(memory_id, limit=limit)
    if as_json:
        _emit([m.to_dict() for m in rows])
    else:
        click.echo("\n".join(_line(m) for m in rows) or "no related memories")


@memory.command()
@click.option("--namespace", "-n", default="default", show_default=True)
@_store_options
def communities(namespace: str, db_path: Path | None, embedder: str) -> None:
    """Leiden communities of a namespace with their main entities (JSON).

    \b
    Example:
        protect memory communities -n myproject
    """
    with _open(db_path, embedder) as store:
        _emit(store.communities(namespace))


@memory.command()
@click.argument("dest", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--namespace", "-n", help="Only this namespace.")
@_store_options
def export(dest: Path, namespace: str | None, db_path: Path | None, embedder: str) -> None:
    """Write memories (with provenance and status) to a JSONL file.

    \b
    Example:
        protect memory export backup.jsonl
    """
    with _open(db_path, embedder) as store:
        n = store.export_jsonl(dest, namespace=namespace)
    click.echo(f"exported {n} memories to {dest}")


@memory.command(name="import")
@click.argument("src", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--namespace", "-n", help="Put every memory into this namespace.")
@_store_options
def import_(src: Path, namespace: str | None, db_path: Path | None, embedder: str) -> None:
    """Restore memories from a JSONL file written by `export` (duplicates skipped).

    \b
    Example:
        protect memory import backup.jsonl
    """
    with _open(db_path, embedder) as store:
        res = store.import_jsonl(src, namespace=namespace)
    click.echo(f"imported {res['added']} memories ({res['skipped']} already present)")


@memory.command(name="wipe-feedback")
@_store_options
def wipe_feedback(db_path: Path | None, embedder: str) -> None:
    """Delete the ranking-feedback database (which memories were served to whom) on its own.

    \b
    Example:
        protect memory wipe-feedback
    """
    with _open(db_path, embedder) as store:
        n = store.feedback.wipe()
    click.echo(f"wiped {n} feedback rows")


HOSTNAME = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*")


def bind_host(value: str) -> str:
    """`--host` as an IP address (IPv6 with or without brackets) or a host name; anything else is a usage error
    here, not a validation traceback from the HTTP stack at start-up (`999.1.1.1`)."""
    host = value[1:-1] if value.startswith("[") and value.endswith("]") else value
    try:
        ipaddress.ip_address(host)
        return host
    except ValueError:
        pass
    if len(host) > 253 or not HOSTNAME.fullmatch(host) or host.replace(".", "").isdigit():
        raise click.BadParameter(f"{value!r} is neither an IP address nor a host name")
    return host


@memory.command()
@click.option("--transport", type=click.Choice(["stdio", "http"]), default="stdio", show_default=True)
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    callback=lambda _ctx, _param, v: bind_host(v),
    help="HTTP bind address (an IPv6 address with or without brackets).",
)
@click.option("--port", type=click.IntRange(1, 65535), default=8417, show_default=True, help="HTTP port.")
@click.option("--agent", help="Pin the agent id of every client of this server (e.g. one server per IDE).")
@click.option("--allow-forget-any", is_flag=True, help="Let agents erase memories of other agents.")
@click.option(
    "--token-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="HTTP: the bearer token clients must send, created (0600) if missing [default: DB.mcp-token; "
    "$PROTECT_MEMORY_TOKEN overrides].",
)
@click.option("--no-auth", is_flag=True, help="HTTP: accept requests without a token (any local process).")
@click.option(
    "--tls-cert",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="HTTP: serve HTTPS with this PEM certificate (chain); needs --tls-key.",
)
@click.option(
    "--tls-key",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="HTTP: the certificate's unencrypted PEM private key.",
)
@_store_options
def serve(
    transport: str,
    host: str,
    port: int,
    agent: str | None,
    allow_forget_any: bool,
    token_file: Path | None,
    no_auth: bool,
    tls_cert: Path | None,
    tls_key: Path | None,
    db_path: Path | None,
    embedder: str,
) -> None:
    """Run the MCP server (stdio for one client, or streamable HTTP at http://HOST:PORT/mcp).

    Over HTTP every request must carry `Authorization: Bearer TOKEN`, the token in --token-file. Off
    127.0.0.1, pass --tls-cert and --tls-key: plain HTTP shows the token and the memories to the network.

    \b
    Example:
        protect memory serve --db ~/agent-memory.db
        protect memory serve --transport http --port 8417
        protect memory serve --transport http --host 0.0.0.0 --tls-cert cert.pem --tls-key key.pem
    """
    from memory_store import tls as T
    from memory_store.server import http_url
    from memory_store.server import serve as run
    from protect.errors import ConfigError

    if (tls_cert is None) != (tls_key is None):
        raise ConfigError("HTTPS needs both --tls-cert and --tls-key")
    if tls_cert and transport != "http":
        raise ConfigError("--tls-cert / --tls-key apply to --transport http only")
    tls = T.load(tls_cert, tls_key) if tls_cert and tls_key else None
    with _open(db_path, embedder) as store:
        token = None
        url = http_url(host, port, tls=tls is not None)
        if transport == "http" and not no_auth:
            token, source = _http_token(token_file, store.path)
            click.echo(
                f"MCP over {'HTTPS' if tls else 'HTTP'} at {url}; clients send 'Authorization: Bearer <token>', "
                f"the token in {source}",
                err=True,
            )
        elif transport == "http":
            click.echo(
                "warning: --no-auth: any process that can reach the port can read and erase memories",
                err=True,
            )
        if transport == "http" and not tls and not T.is_loopback(host):
            click.echo(
                f"warning: {host} is reachable from other machines and this is plain HTTP: the token and "
                "every memory travel in clear; pass --tls-cert and --tls-key",
                err=True,
            )
        run(
            store,
            transport="stdio" if transport == "stdio" else "streamable-http",
            host=host,
            port=port,
            agent=agent,
            allow_forget_any=allow_forget_any,
            token=token,
            tls=tls,
        )


def _http_token(token_file: Path | None, db: Path | None) -> tuple[str, str]:
    """(token, where it came from): the environment variable if set, else the file (created if missing)."""
    from memory_store import auth
    from protect.errors import ConfigError

    if os.environ.get(auth.TOKEN_ENV):
        return auth.check_token(os.environ[auth.TOKEN_ENV], f"${auth.TOKEN_ENV}"), f"${auth.TOKEN_ENV}"
    if token_file is None and db is None:
        raise ConfigError("an in-memory database has no default token file: pass --token-file")
    path = token_file or auth.token_path(db)  # type: ignore[arg-type]
    return auth.load_or_create_token(path), str(path)
