"""`memagent mcp`: serve memagent's memory to MCP clients, over stdio or streamable HTTP."""

from __future__ import annotations

import importlib.util
from typing import Annotated

import typer

from memagent.cli import render
from memagent.cli.base import NamespaceOpt, app, handled, lazy_app, load_settings
from memagent.errors import ConfigError, InputError

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765


@app.command("mcp")
@handled
def mcp_command(
    http: Annotated[
        bool, typer.Option("--http", help="Serve streamable HTTP at http://HOST:PORT/mcp instead of stdio.")
    ] = False,
    host: Annotated[
        str | None, typer.Option("--host", help=f"With --http: the interface (default {DEFAULT_HOST}).")
    ] = None,
    port: Annotated[
        int | None,
        typer.Option("--port", min=1, max=65535, help=f"With --http: the port (default {DEFAULT_PORT})."),
    ] = None,
    token: Annotated[
        str | None,
        typer.Option(
            "--token",
            envvar="MEMAGENT_MCP_TOKEN",
            show_default=False,
            help="With --http: the bearer token clients must send (prefer the variable: a command line "
            "is visible to other users). Default: a new one, printed once on stderr.",
        ),
    ] = None,
    allow_remote: Annotated[
        bool,
        typer.Option("--allow-remote", help="With --http: allow a --host other machines can reach."),
    ] = False,
    namespace: NamespaceOpt = None,
) -> None:
    """Serve memory to MCP clients (Claude Desktop, IDE agents): tools remember, recall, forget, recent.

    Over stdio by default (the client starts `memagent mcp`); --http serves streamable HTTP on 127.0.0.1,
    where every request needs `Authorization: Bearer TOKEN`. The namespace is fixed here: no tool can
    read or change another.
    """
    if not http and (host is not None or port is not None or allow_remote):
        raise InputError("--host, --port and --allow-remote apply to --http only.")
    if importlib.util.find_spec("mcp") is None:
        raise ConfigError('the MCP server needs the mcp package: pip install "memagent[mcp]".')
    from memagent.mcp.auth import check_host, check_token, new_token

    where = (host or DEFAULT_HOST).strip().removeprefix("[").removesuffix("]")  # [::1] names ::1
    given = token or ""  # empty: unset, a new one is made
    token = given.strip()  # a client's token is read without surrounding spaces, so is this one
    if http:
        check_host(where, allow_remote=allow_remote)
        if given:
            check_token(token)  # (spaces alone are refused, not taken for unset)
    settings = load_settings()
    from memagent.mcp.tools import MemoryTools

    with lazy_app(settings) as opened:
        # Open now: a database that cannot be reached or a model mismatch is one line before serving.
        opened.service()
        tools = MemoryTools(opened, namespace or settings.namespace, notify=render.message)
        from memagent.mcp.server import check_free, serve_http, serve_stdio

        if not http:
            serve_stdio(tools)  # stdout is the protocol: messages go to stderr only
            return
        check_free(where, port or DEFAULT_PORT)  # before a token is printed for a server that cannot start
        if not token:
            token = new_token()
            # The one place a secret is shown: the operator needs it to configure the client.
            render.err().print(f"MCP bearer token (send Authorization: Bearer …): {token}", markup=False)
        address = f"[{where}]" if ":" in where else where  # an IPv6 address is bracketed in a URL
        render.message(
            f"memagent MCP server on http://{address}:{port or DEFAULT_PORT}/mcp, "
            f"namespace {tools.namespace!r}; Ctrl-C stops it."
        )
        serve_http(tools, host=where, port=port or DEFAULT_PORT, token=token)
