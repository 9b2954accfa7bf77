"""The MCP server: memagent's four memory tools over stdio or streamable HTTP (the `mcp` package).

Imported only by `memagent mcp`, after it has checked that the `mcp` package is installed.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations
from pydantic import ValidationError

from memagent.errors import InputError, MemagentError, first_line
from memagent.mcp.auth import BearerAuth
from memagent.mcp.tools import (
    FORGET,
    INSTRUCTIONS,
    RECALL,
    RECENT,
    REMEMBER,
    K,
    Kind,
    Limit,
    MemoryId,
    MemoryTools,
    Mode,
    Query,
    Session,
    Text,
)
from memagent.redact import redact


def one_line(error: ValidationError) -> str:
    """Pydantic's multi-line report as one line: each argument and what is wrong with it."""
    parts = []
    for item in error.errors():
        where = ".".join(str(part) for part in item["loc"]) or "arguments"
        parts.append(f"{where}: {item['msg']}")
    return "; ".join(parts) + "."


class MemoryServer(MCPServer[Any]):
    """MCPServer whose argument errors are one line, like every other error of memagent."""

    async def call_tool(self, name: str, arguments: dict[str, Any], context: Any = None) -> Any:
        """Call a tool; arguments that fail the input schema get a one-line tool error."""
        try:
            return await super().call_tool(name, arguments, context)
        except ToolError as exc:
            if isinstance(exc.__cause__, ValidationError):
                problem = one_line(exc.__cause__)
                raise ToolError(f"Error executing tool {name}: invalid arguments: {problem}") from None
            raise


def guarded(call: Callable[..., str], *args: Any, **kwargs: Any) -> str:
    """Run a tool's body; any failure becomes a one-line tool error (secrets masked), never a crash."""
    try:
        return call(*args, **kwargs)
    except MemagentError as exc:
        raise ToolError(redact(str(exc))) from None
    except Exception as exc:  # a bug: one line for the model; the server goes on serving
        raise ToolError(redact(f"unexpected {type(exc).__name__}: {first_line(exc, 'no message')}")) from None


def build_server(tools: MemoryTools) -> MemoryServer:
    """The MCP server with the four tools over `tools` (its namespace fixed)."""
    server = MemoryServer("memagent", instructions=INSTRUCTIONS, log_level="WARNING")

    @server.tool(name="remember", description=REMEMBER, structured_output=False)
    def remember(text: Text, session_id: Session = None) -> str:
        return guarded(tools.remember, text, session_id=session_id)

    read_only = ToolAnnotations(read_only_hint=True, open_world_hint=False)

    @server.tool(name="recall", description=RECALL, annotations=read_only, structured_output=False)
    def recall(
        query: Query, k: K = None, mode: Mode = None, session_id: Session = None, kind: Kind = None
    ) -> str:
        return guarded(tools.recall, query, k=k, mode=mode, session_id=session_id, kind=kind)

    destructive = ToolAnnotations(destructive_hint=True, idempotent_hint=True, open_world_hint=False)

    @server.tool(name="forget", description=FORGET, annotations=destructive, structured_output=False)
    def forget(id: MemoryId) -> str:
        return guarded(tools.forget, id)

    @server.tool(name="recent", description=RECENT, annotations=read_only, structured_output=False)
    def recent(limit: Limit = 10) -> str:
        return guarded(tools.recent, limit)

    return server


def serve_stdio(tools: MemoryTools) -> None:
    """Serve MCP on stdin/stdout until the client closes them (stdout carries only the protocol)."""
    import anyio

    anyio.run(build_server(tools).run_stdio_async)


def serve_http(tools: MemoryTools, *, host: str, port: int, token: str) -> None:
    """Serve MCP over streamable HTTP at http://host:port/mcp, every request checked for the token."""
    import anyio
    import uvicorn

    check_free(host, port)
    server = build_server(tools)
    guarded_app = BearerAuth(server.streamable_http_app(host=host), token)
    # No access log: it would go to stdout, and a request's line is noise next to the protocol's errors.
    config = uvicorn.Config(guarded_app, host=host, port=port, log_level="warning", access_log=False)
    anyio.run(uvicorn.Server(config).serve)


def check_free(host: str, port: int) -> None:
    """Say in one line when the port is taken, before the HTTP server would log it its own way."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host.strip("[]"), port))
        except (OSError, OverflowError) as exc:
            why = getattr(exc, "strerror", None) or exc
            raise InputError(f"cannot listen on {host}:{port}: {why}.") from None
