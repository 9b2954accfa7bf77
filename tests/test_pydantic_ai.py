"""memagent as Pydantic AI tools: an agent on an OpenAI-compatible model (the loopback server) remembers and
recalls through the real database; a FunctionModel run corrects bad calls and stays in its namespace."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import Engine, text

pytest.importorskip("pydantic_ai", reason="needs Pydantic AI: pip install -e '.[pydantic-ai]'")

from pydantic_ai import Agent, ModelRetry
from pydantic_ai.exceptions import ToolFailed
from pydantic_ai.messages import (
    ModelMessage,
    ModelRequest,
    ModelResponse,
    TextPart,
    ToolCallPart,
    ToolReturnPart,
)
from pydantic_ai.models.function import AgentInfo, FunctionModel
from pydantic_ai.models.openai import OpenAIChatModel
from pydantic_ai.providers.openai import OpenAIProvider

from memagent.api import Memory
from memagent.async_api import AsyncMemory
from memagent.errors import DatabaseError, InputError
from memagent.integrations.pydantic_ai import answered, memory_toolset
from memagent.mcp.tools import INSTRUCTIONS, RECALL, REMEMBER
from tests.conftest import fake_embedder
from tests.fake_openai import FakeOpenAI, tool_call

PRIYA = "My name is Priya and I'm building a Rust compiler for embedded targets"
ANSWER = "You are building a Rust compiler for embedded targets."


@pytest.fixture
def open_memory(db_url: str, fake: FakeOpenAI, engine: Engine) -> Iterator[Any]:
    """Opens Memories on the test database and the loopback embeddings; their namespaces deleted after."""
    opened: list[Memory] = []

    def make(namespace: str | None = None) -> Memory:
        name = namespace or f"pydai-{uuid.uuid4().hex[:10]}"
        memory = Memory(database_url=db_url, namespace=name, embedder=fake_embedder(fake), max_retries=0)
        opened.append(memory)
        return memory

    yield make
    for memory in opened:
        memory.close()
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM memories WHERE namespace LIKE 'pydai-%'"))


def stored(engine: Engine, namespace: str) -> list[tuple[int, str]]:
    """The (id, content) rows of a namespace, read straight from the database."""
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT id, content FROM memories WHERE namespace = :ns ORDER BY id"), {"ns": namespace}
        )
        return [(row.id, row.content) for row in rows]


def tool_messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The tool results a chat request carries back to the model."""
    return [message for message in body["messages"] if message["role"] == "tool"]


def test_agent_on_openai_compatible_model_remembers_then_recalls(
    open_memory: Any, fake: FakeOpenAI, engine: Engine
) -> None:
    """The model calls remember, then recall; the memory is in the database and recall's answer reaches it."""
    memory = open_memory()

    def script(body: dict[str, Any]) -> str | dict[str, Any]:
        done = len(tool_messages(body))
        if done == 0:
            return tool_call("remember", {"text": PRIYA}, "call_remember")
        if done == 1:
            return tool_call("recall", {"query": "What compiler is Priya building?", "k": 3}, "call_recall")
        return ANSWER

    fake.chat_handler = script
    provider = OpenAIProvider(base_url=fake.base_url, api_key=fake.api_key)
    agent = Agent(OpenAIChatModel("fake-chat", provider=provider), toolsets=[memory_toolset(memory)])

    result = agent.run_sync("Remember that I'm Priya and I build a Rust compiler, then tell me what I build.")

    assert result.output == ANSWER
    rows = stored(engine, memory.settings.namespace)
    assert [content for _, content in rows] == [PRIYA]
    requests = [r["body"] for r in fake.chat_requests()]
    assert len(requests) == 3
    # What the model was offered: the four tools with the MCP server's descriptions, and no namespace.
    offered = {tool["function"]["name"]: tool["function"] for tool in requests[0]["tools"]}
    assert set(offered) == {"remember", "recall", "forget", "recent"}
    assert offered["remember"]["description"] == REMEMBER and offered["recall"]["description"] == RECALL
    assert all("namespace" not in tool["parameters"]["properties"] for tool in offered.values())
    assert INSTRUCTIONS in json.dumps(requests[0]["messages"])
    # remember's answer reached the second request, recall's (the stored memory) the third.
    remembered = json.loads(tool_messages(requests[1])[0]["content"])
    assert remembered == {"id": rows[0][0], "created": True, "session_id": "default"}
    recall_result = tool_messages(requests[2])[1]
    assert recall_result["tool_call_id"] == "call_recall"
    found = json.loads(recall_result["content"])["memories"]
    assert found[0]["id"] == rows[0][0] and found[0]["content"] == PRIYA


def test_an_async_agent_uses_an_async_memory_on_its_loop(
    db_url: str, fake: FakeOpenAI, engine: Engine
) -> None:
    """Over an AsyncMemory (here carried by the run's deps) the tools run on the agent's event loop through
    asyncpg: the same calls, the same answers, the memory in the database."""
    name = f"pydai-{uuid.uuid4().hex[:10]}"

    def script(body: dict[str, Any]) -> str | dict[str, Any]:
        done = len(tool_messages(body))
        if done == 0:
            return tool_call("remember", {"text": PRIYA}, "call_remember")
        if done == 1:
            return tool_call("recall", {"query": "What compiler is Priya building?"}, "call_recall")
        return ANSWER

    fake.chat_handler = script
    provider = OpenAIProvider(base_url=fake.base_url, api_key=fake.api_key)
    agent = Agent(OpenAIChatModel("fake-chat", provider=provider), toolsets=[memory_toolset()])

    async def scenario() -> str:
        async with AsyncMemory(database_url=db_url, namespace=name, embedder=fake_embedder(fake)) as memory:
            result = await agent.run("Remember me, then say what I build.", deps=memory)
            return str(result.output)

    try:
        assert asyncio.run(scenario()) == ANSWER
        rows = stored(engine, name)
        assert [content for _, content in rows] == [PRIYA]
        recall_result = json.loads(tool_messages(fake.chat_requests()[-1]["body"])[1]["content"])
        assert recall_result["memories"][0]["id"] == rows[0][0]
    finally:
        with engine.begin() as conn:
            conn.execute(text("DELETE FROM memories WHERE namespace = :ns"), {"ns": name})


@dataclass
class Deps:
    """What an application passes as the run's deps: its Memory among other things."""

    memory: Memory
    user: str


def test_function_model_corrects_bad_calls_and_stays_in_its_namespace(
    open_memory: Any, engine: Engine
) -> None:
    """An out-of-schema id, an unknown id and an empty text come back as retry prompts; recall (through
    deps) sees one namespace."""
    mine, other = open_memory(), open_memory()
    kept = mine.remember(PRIYA, session_id="s1")
    other.remember("Priya from the other namespace builds a Rust compiler too")
    missing = kept.id + 10_000_000
    seen: list[list[ModelMessage]] = []

    def model(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        seen.append(list(messages))
        step = len(seen)
        if step == 1:
            assert {tool.name for tool in info.function_tools} == {"remember", "recall", "forget"}
            return ModelResponse(parts=[ToolCallPart("forget", {"id": 0})])
        if step == 2:
            return ModelResponse(parts=[ToolCallPart("forget", {"id": missing})])
        if step == 3:
            return ModelResponse(parts=[ToolCallPart("remember", {"text": "   "})])
        if step == 4:
            return ModelResponse(parts=[ToolCallPart("recall", {"query": "Priya Rust compiler"})])
        return ModelResponse(parts=[TextPart("done")])

    toolset = memory_toolset(recent=False, max_retries=2)
    agent = Agent(FunctionModel(model), deps_type=Deps, toolsets=[toolset])

    result = agent.run_sync("What does Priya build?", deps=Deps(memory=mine, user="priya"))

    assert result.output == "done"
    # A retry comes back as the tool's result marked "retried": the schema's complaint, then memagent's.
    [schema_retry] = last_parts(seen[1], ToolReturnPart)
    assert schema_retry.tool_name == "forget" and schema_retry.outcome == "retried"
    assert schema_retry.retry is not None and schema_retry.retry.cause == "validation_error"
    assert schema_retry.content[0]["loc"] == ["id"]
    [unknown] = last_parts(seen[2], ToolReturnPart)
    assert unknown.outcome == "retried"
    assert unknown.content == f"no memory {missing} in namespace {mine.settings.namespace!r}."
    [empty] = last_parts(seen[3], ToolReturnPart)
    assert empty.tool_name == "remember" and empty.outcome == "retried"
    assert empty.content == "the text is empty."
    [recalled] = last_parts(seen[4], ToolReturnPart)
    found = json.loads(str(recalled.content))["memories"]
    assert [m["content"] for m in found] == [PRIYA]  # the other namespace's Priya is not reachable
    assert stored(engine, mine.settings.namespace) == [(kept.id, PRIYA)]  # the bad forgets deleted nothing


def last_parts(messages: list[ModelMessage], kind: type[Any]) -> list[Any]:
    """The parts of the given kind in the last request of a run's messages."""
    request = messages[-1]
    assert isinstance(request, ModelRequest)
    return [part for part in request.parts if isinstance(part, kind)]


def test_deps_without_a_memory_fail_the_run() -> None:
    """The agent's author, not the model, must fix deps that carry no Memory: the run fails saying so."""

    def model(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        return ModelResponse(parts=[ToolCallPart("recall", {"query": "anything"})])

    agent = Agent(FunctionModel(model), toolsets=[memory_toolset()])
    with pytest.raises(TypeError, match="deps must be a memagent Memory"):
        agent.run_sync("hello", deps="not a memory")


def test_errors_reach_the_model_as_retry_or_failure() -> None:
    """InputError asks the model to retry; other memagent errors are failures it sees (secrets masked)."""

    def bad_input() -> str:
        raise InputError("the text is empty.")

    def unreachable() -> str:
        raise DatabaseError("cannot reach postgresql://memagent:hunter2@db/memagent.")

    with pytest.raises(ModelRetry) as retry:
        answered(bad_input)
    assert retry.value.message == "the text is empty."
    with pytest.raises(ToolFailed) as failed:
        answered(unreachable)
    assert "cannot reach" in failed.value.message and "hunter2" not in failed.value.message
