"""`memagent mcp` against the official MCP client, over stdio and over streamable HTTP: the four tools, the
fixed namespace, the bearer token, and bad arguments answered as tool errors while the server goes on."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

pytest.importorskip("mcp", reason="the MCP server's tests need the mcp package: pip install -e '.[mcp]'")

import anyio
import httpx2
from mcp import ClientSession, StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client

from memagent.config import Settings
from memagent.usecases.service import MemoryService
from tests.conftest import fake_embedder, process_env, provider_env
from tests.fake_openai import FakeOpenAI

TOOLS = {"remember", "recall", "forget", "recent"}
PRIYA = "My name is Priya and I'm building a Rust compiler for embedded targets"


def server_env(db_url: str, fake: FakeOpenAI, home: Path, namespace: str) -> dict[str, str]:
    """A memagent process on the test database, the loopback embeddings and a namespace of its own."""
    return process_env(
        MEMAGENT_DATABASE_URL=db_url,
        MEMAGENT_NAMESPACE=namespace,
        MEMAGENT_MAX_RETRIES="0",
        MEMAGENT_HOME=str(home),
        **provider_env(fake),
    )


@pytest.fixture
def stdio_env(db_url: str, fake: FakeOpenAI, engine: Engine, tmp_path: Path) -> Iterator[dict[str, str]]:
    """The environment of a stdio server in a fresh namespace (its rows deleted afterwards)."""
    env = server_env(db_url, fake, tmp_path / "home", f"mcp-{uuid.uuid4().hex[:10]}")
    yield env
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM memories WHERE namespace = :ns"), {"ns": env["MEMAGENT_NAMESPACE"]})


async def call(session: ClientSession, tool: str, arguments: dict[str, Any]) -> tuple[bool, str]:
    """Call a tool; (whether it is an error result, its text)."""
    result = await session.call_tool(tool, arguments)
    assert len(result.content) == 1
    block = result.content[0]
    assert block.type == "text"
    return bool(result.is_error), block.text


async def ok(session: ClientSession, tool: str, arguments: dict[str, Any]) -> Any:
    """Call a tool that must succeed; its JSON answer."""
    failed, answer = await call(session, tool, arguments)
    assert not failed, answer
    return json.loads(answer)


def over_stdio(
    env: dict[str, str], errlog: Path, body: Callable[[ClientSession], Awaitable[None]], *args: str
) -> None:
    """Run `body` with a client session on `python -m memagent mcp ARGS` spawned over stdio."""

    async def main() -> None:
        params = StdioServerParameters(command=sys.executable, args=["-m", "memagent", "mcp", *args], env=env)
        with errlog.open("w") as stderr:
            async with AsyncExitStack() as stack:
                read, write = await stack.enter_async_context(stdio_client(params, errlog=stderr))
                session = await stack.enter_async_context(ClientSession(read, write, read_timeout_seconds=60))
                await session.initialize()
                await body(session)

    anyio.run(main)


def test_stdio_tools_remember_recall_recent_forget(stdio_env: dict[str, str], tmp_path: Path) -> None:
    """The four tools are listed with descriptions; remember → recall finds it → forget removes it."""
    seen: dict[str, Any] = {}

    async def body(session: ClientSession) -> None:
        listed = {tool.name: tool for tool in (await session.list_tools()).tools}
        assert set(listed) == TOOLS
        for tool in listed.values():
            assert tool.description is not None and len(tool.description) > 100, tool.name
            assert "namespace" not in tool.input_schema.get("properties", {}), tool.name
        assert set(listed["recall"].input_schema["properties"]) == {
            "query",
            "k",
            "mode",
            "session_id",
            "kind",
        }

        stored = await ok(session, "remember", {"text": PRIYA, "session_id": "s1"})
        assert stored["created"] is True and stored["session_id"] == "s1"
        again = await ok(session, "remember", {"text": PRIYA})
        assert again == {"id": stored["id"], "created": False, "session_id": "default"}
        await ok(session, "remember", {"text": "The user prefers tea to coffee"})

        found = (await ok(session, "recall", {"query": "Rust compiler for embedded targets", "k": 2}))[
            "memories"
        ]
        assert found[0]["id"] == stored["id"] and found[0]["content"] == PRIYA
        assert found[0]["kind"] == "exchange" and 0 < found[0]["similarity"] <= 1 and found[0]["score"] > 0
        only_s1 = await ok(session, "recall", {"query": "tea", "session_id": "s1", "mode": "vector"})
        assert [m["id"] for m in only_s1["memories"]] == [stored["id"]]
        facts = await ok(session, "recall", {"query": "Rust compiler", "kind": "fact"})
        assert facts == {"memories": []}
        newest = (await ok(session, "recent", {"limit": 5}))["memories"]
        assert [m["content"] for m in newest] == ["The user prefers tea to coffee", PRIYA]

        gone = await ok(session, "forget", {"id": stored["id"]})
        assert gone["forgotten"]["id"] == stored["id"] and gone["forgotten"]["content"] == PRIYA
        after = (await ok(session, "recall", {"query": "Rust compiler for embedded targets"}))["memories"]
        assert stored["id"] not in [m["id"] for m in after]
        failed, answer = await call(session, "forget", {"id": stored["id"]})
        assert failed and f"no memory {stored['id']}" in answer
        seen["ok"] = True

    errlog = tmp_path / "server.stderr"
    over_stdio(stdio_env, errlog, body)
    assert seen == {"ok": True}
    assert "Traceback" not in errlog.read_text()


def test_a_call_in_flight_when_the_input_closes_still_finishes(
    stdio_env: dict[str, str], fake: FakeOpenAI, engine: Engine
) -> None:
    """Closing a stdio server's input ends it (MCP's shutdown), but not a remember under way: it is stored."""
    client = {"name": "a script", "version": "1"}
    said = [
        {"jsonrpc": "2.0", "id": 1, "method": "initialize",
         "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": client}},
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/call",
         "params": {"name": "remember", "arguments": {"text": PRIYA}}},
    ]  # fmt: skip
    fake.latency = 1.0  # the embedding still under way when the input closes
    ended = subprocess.run(
        [sys.executable, "-m", "memagent", "mcp"],
        env=stdio_env,
        input="".join(json.dumps(message) + "\n" for message in said),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ended.returncode == 0, ended.stderr
    namespace = stdio_env["MEMAGENT_NAMESPACE"]
    with engine.connect() as conn:
        stored = conn.execute(text("SELECT content FROM memories WHERE namespace = :ns"), {"ns": namespace})
        assert list(stored.scalars()) == [PRIYA]


def test_stdio_namespace_is_fixed(
    stdio_env: dict[str, str], db_url: str, fake: FakeOpenAI, engine: Engine, tmp_path: Path
) -> None:
    """Another namespace's memory cannot be forgotten or recalled through the server, by id or argument."""
    other = f"mcp-other-{uuid.uuid4().hex[:8]}"
    service = MemoryService(lambda: Session(engine), fake_embedder(fake), Settings(namespace=other))
    theirs = service.remember("Bob's locker code is 4711", session_id="s").id

    async def body(session: ClientSession) -> None:
        failed, answer = await call(session, "forget", {"id": theirs})
        assert failed and f"no memory {theirs} in namespace {stdio_env['MEMAGENT_NAMESPACE']!r}" in answer
        # An argument naming the other namespace is not one of the tool's: it reaches nothing.
        found = await ok(session, "recall", {"query": "Bob's locker code", "namespace": other})
        assert theirs not in [m["id"] for m in found["memories"]]
        assert await ok(session, "recent", {"limit": 100}) == {"memories": []}

    try:
        over_stdio(stdio_env, tmp_path / "server.stderr", body)
        assert service.count(namespace=other) == 1
        assert [m.id for m in service.recent(namespace=other)] == [theirs]
    finally:
        with engine.begin() as conn:
            conn.execute(text("DELETE FROM memories WHERE namespace = :ns"), {"ns": other})


# -- streamable HTTP ---------------------------------------------------------------------------------------


@dataclass
class HttpServer:
    """A running `memagent mcp --http` and what a client needs to reach it."""

    url: str
    token: str
    namespace: str
    stdout: Path
    stderr: Path


def free_port() -> int:
    """A port nobody listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def http_server(
    db_url: str, fake_openai: FakeOpenAI, engine: Engine, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[HttpServer]:
    """One HTTP server for the module, started without a token (so it makes one and prints it)."""
    folder = tmp_path_factory.mktemp("mcp-http")
    namespace = f"mcp-http-{uuid.uuid4().hex[:8]}"
    port = free_port()
    env = server_env(db_url, fake_openai, folder / "home", namespace)
    stdout, stderr = folder / "stdout", folder / "stderr"
    with stdout.open("w") as out, stderr.open("w") as err:
        process = subprocess.Popen(
            [sys.executable, "-m", "memagent", "mcp", "--http", "--port", str(port)],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
        )
    try:
        token = wait_for_token(process, stderr)
        wait_for_port(process, port)
        yield HttpServer(f"http://127.0.0.1:{port}/mcp", token, namespace, stdout, stderr)
    finally:
        process.terminate()
        process.wait(timeout=30)
        with engine.begin() as conn:
            conn.execute(text("DELETE FROM memories WHERE namespace = :ns"), {"ns": namespace})


def wait_for_token(process: subprocess.Popen[bytes], stderr: Path) -> str:
    """The token the server printed on stderr."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for line in stderr.read_text().splitlines():
            if line.startswith("MCP bearer token"):
                return line.rsplit(" ", 1)[1]
        assert process.poll() is None, stderr.read_text()
        time.sleep(0.1)
    raise AssertionError("the server printed no token: " + stderr.read_text())


def wait_for_port(process: subprocess.Popen[bytes], port: int) -> None:
    """Until the server accepts connections."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert process.poll() is None, "the server exited"
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise AssertionError("the server did not start listening")


def status_of(url: str, headers: dict[str, str]) -> int:
    """The HTTP status of an MCP initialize request sent with `headers`."""
    body = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}}
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
        | headers,
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def over_http(server: HttpServer, body: Callable[[ClientSession], Awaitable[None]]) -> None:
    """Run `body` with a client session on the HTTP server, sending its token."""

    async def main() -> None:
        headers = {"Authorization": f"Bearer {server.token}"}
        async with AsyncExitStack() as stack:
            client = await stack.enter_async_context(httpx2.AsyncClient(headers=headers, timeout=60))
            read, write = await stack.enter_async_context(
                streamable_http_client(server.url, http_client=client)
            )
            session = await stack.enter_async_context(ClientSession(read, write, read_timeout_seconds=60))
            await session.initialize()
            await body(session)

    anyio.run(main)


def test_http_needs_the_token(http_server: HttpServer) -> None:
    """No token, a wrong one, another scheme: 401; the generated token only on stderr, once."""
    assert status_of(http_server.url, {}) == 401
    assert status_of(http_server.url, {"Authorization": "Bearer wrong"}) == 401
    assert status_of(http_server.url, {"Authorization": f"Basic {http_server.token}"}) == 401
    assert status_of(http_server.url, {"Authorization": f"Bearer {http_server.token}x"}) == 401
    assert status_of(http_server.url, {"Authorization": f"Bearer {http_server.token}"}) == 200
    names: list[str] = []

    async def body(session: ClientSession) -> None:
        names.extend(tool.name for tool in (await session.list_tools()).tools)

    over_http(http_server, body)
    assert set(names) == TOOLS
    assert len(http_server.token) >= 40
    assert http_server.stderr.read_text().count(http_server.token) == 1
    assert http_server.token not in http_server.stdout.read_text()


def test_http_bad_arguments_are_tool_errors(http_server: HttpServer) -> None:
    """Each bad call is an error result with a one-line message; the server answers the next call."""
    bad: list[tuple[str, dict[str, Any], str]] = [
        ("remember", {"text": ""}, "the text is empty"),
        ("remember", {"text": "   "}, "the text is empty"),
        ("remember", {"text": "a\x00b"}, "NUL"),
        ("remember", {}, "text"),
        ("recall", {"query": "x", "k": 0}, "k"),
        ("recall", {"query": "x", "k": 10**9}, "k"),
        ("recall", {"query": "x", "k": "many"}, "k"),
        ("recall", {"query": "x", "k": True}, "k"),  # strict, as the Python API: not read as 1
        ("recall", {"query": "x", "k": "5"}, "k"),
        ("recall", {"query": "x", "mode": "fuzzy"}, "mode"),
        ("recall", {"query": "x", "kind": "opinion"}, "kind"),
        ("recall", {"query": ""}, "the query is empty"),
        ("recall", {"query": "x", "session_id": "x" * 10_000}, "session"),
        ("forget", {"id": -1}, "id"),
        ("forget", {"id": "seven"}, "id"),
        ("forget", {"id": 2**63}, "memory id"),
        ("recent", {"limit": 0}, "limit"),
        ("recent", {"limit": True}, "limit"),
        ("nonsense", {}, "nonsense"),
    ]
    answers: list[tuple[str, bool, str]] = []
    stored: dict[str, Any] = {}

    async def body(session: ClientSession) -> None:
        for tool, arguments, _ in bad:
            answers.append((tool, *await call(session, tool, arguments)))
        stored.update(await ok(session, "remember", {"text": "The deploy key rotates every 90 days"}))
        found = await ok(session, "recall", {"query": "when does the deploy key rotate?", "k": 1})
        stored["recalled"] = [m["id"] for m in found["memories"]]

    over_http(http_server, body)
    for (tool, failed, message), (_, arguments, expected) in zip(answers, bad, strict=True):
        assert failed, (tool, arguments, message)
        assert "\n" not in message and expected in message, (tool, arguments, message)
        assert message.startswith(f"Error executing tool {tool}: ") or tool == "nonsense", message
        assert "Traceback" not in message
    assert stored["created"] is True and stored["recalled"] == [stored["id"]]
    assert "Traceback" not in http_server.stderr.read_text()


# -- the command's own refusals (no server started) ---------------------------------------------------------


def test_refusals_are_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """A non-loopback --host without --allow-remote, HTTP options without --http, a weak token and a
    missing mcp package each get one line and exit code 2, before anything is opened."""
    from typer.testing import CliRunner

    from memagent.cli.app import app

    runner = CliRunner()
    remote = runner.invoke(app, ["mcp", "--http", "--host", "0.0.0.0"])
    assert remote.exit_code == 2
    assert "not a loopback address" in remote.stderr and "--allow-remote" in remote.stderr
    assert remote.stderr.count("\n") == 1 and remote.stdout == ""
    stray = runner.invoke(app, ["mcp", "--port", "9000"])
    assert stray.exit_code == 2 and "apply to --http only" in stray.stderr
    for weak in ("x", "   ", "short-token-15c", "sixteen chars ok", "sixteen-chars-é-x"):
        refused = runner.invoke(app, ["mcp", "--http"], env={"MEMAGENT_MCP_TOKEN": weak})
        assert refused.exit_code == 2 and refused.stderr.count("\n") == 1, refused.stderr
        assert "at least 16 printable ASCII characters" in refused.stderr and (
            len(weak) < 3 or weak not in refused.stderr
        )
    monkeypatch.setitem(sys.modules, "mcp", None)  # as if the package were not installed
    missing = runner.invoke(app, ["mcp"])
    assert missing.exit_code == 2
    assert 'pip install "memagent[mcp]"' in missing.stderr and missing.stderr.count("\n") == 1


def test_a_port_that_cannot_be_served_is_one_line_before_any_token(cli_env: dict[str, str]) -> None:
    """A taken port: one line, and no token printed for a server that never starts; a port out of range
    is refused by the option itself."""
    import socket

    from typer.testing import CliRunner

    from memagent.cli.app import app

    runner = CliRunner()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        busy = runner.invoke(app, ["mcp", "--http", "--port", str(port)])
    assert busy.exit_code == 2 and "cannot listen on 127.0.0.1" in busy.stderr
    assert "token" not in busy.stderr.lower() and busy.stdout == ""
    wide = runner.invoke(app, ["mcp", "--http", "--port", "70000"])
    assert wide.exit_code == 2 and "65535" in wide.stderr


def test_a_huge_memory_reaches_the_model_cut() -> None:
    """A memory can be any size; a tool answer carries at most MAX_CONTENT characters of it, and says so."""
    from datetime import UTC, datetime

    from memagent.mcp.tools import MAX_CONTENT, memory_json
    from memagent.records import MemoryRecord

    big = MemoryRecord(1, "ns", "s", "x" * (3 * MAX_CONTENT), datetime(2026, 1, 1, tzinfo=UTC), "m")
    shown = memory_json(big)
    assert shown["cut"] == 3 * MAX_CONTENT and shown["content"].endswith("…[cut]")
    assert len(shown["content"]) < MAX_CONTENT + 10
    small = memory_json(MemoryRecord(2, "ns", "s", "short", datetime(2026, 1, 1, tzinfo=UTC), "m"))
    assert small["content"] == "short" and "cut" not in small
