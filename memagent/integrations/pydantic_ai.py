"""memagent as tools a Pydantic AI agent can call: remember, recall, forget and recent, in one namespace.

`memory_toolset(memory)` returns a FunctionToolset to pass to `Agent(toolsets=[...])`; without a memory the
tools use the run's deps (a Memory, or an object with a `memory` attribute holding one). The tools, their
descriptions and their JSON answers are the MCP server's (memagent.mcp.tools), so a model meets the same
memory through either door. Needs the `pydantic-ai` extra: `pip install "memagent[pydantic-ai]"`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

try:
    from pydantic_ai import FunctionToolset, ModelRetry, RunContext
    from pydantic_ai.exceptions import ToolFailed
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        'memagent.integrations.pydantic_ai needs Pydantic AI: pip install "memagent[pydantic-ai]"'
    ) from exc

from memagent.api import Memory
from memagent.async_api import AsyncMemory
from memagent.errors import InputError, MemagentError
from memagent.mcp.tools import (
    FORGET,
    INSTRUCTIONS,
    RECALL,
    RECENT,
    REMEMBER,
    K,
    Limit,
    MemoryId,
    MemoryTools,
    Query,
    Text,
)
from memagent.redact import redact
from memagent.validation import clean_name

__all__ = ["memory_toolset"]


def memory_of(deps: Any) -> Memory | AsyncMemory:
    """The Memory (or AsyncMemory) a run's deps carry: the deps themselves, or their `memory` attribute."""
    if isinstance(deps, Memory | AsyncMemory):
        return deps
    held = getattr(deps, "memory", None)
    if isinstance(held, Memory | AsyncMemory):
        return held
    # The agent's author wired it wrongly: fail the run, this is no argument the model could correct.
    raise TypeError(
        "memory_toolset() was given no Memory, so the run's deps must be a memagent Memory (or AsyncMemory) "
        f"or have a `memory` attribute holding one; got {type(deps).__name__}."
    )


def answered(call: Callable[..., str], *args: Any, **kwargs: Any) -> str:
    """Run a tool's body: input the model can correct becomes ModelRetry, other memagent errors ToolFailed."""
    try:
        return call(*args, **kwargs)
    except InputError as exc:  # an id that is not here, an empty text: the model can fix its call
        raise ModelRetry(redact(str(exc))) from None
    except MemagentError as exc:  # the database or the provider failing: the model sees it and goes on
        raise ToolFailed(redact(str(exc))) from None


def memory_toolset(
    memory: Memory | AsyncMemory | None = None,
    *,
    namespace: str | None = None,
    session_id: str | None = None,
    forget: bool = True,
    recent: bool = True,
    instructions: bool = True,
    max_retries: int = 2,
) -> FunctionToolset[Any]:
    """A Pydantic AI toolset over memagent (remember, recall, and unless turned off forget and recent).

    memory: the Memory or AsyncMemory to use; None: the run's deps (one, or an object whose `memory` is
    one). Over an AsyncMemory the tools run on the agent's event loop through asyncpg; over a Memory, on
    a worker thread.
    namespace: the only namespace the tools read or write (default: the Memory's); no tool argument can
    name another. session_id: the session remember stores under (recall searches every session).
    forget, recent: offer those tools too. instructions: add memagent's advice on when to recall and
    remember to the agent's instructions. max_retries: how often the model may correct a bad call.
    """
    fixed = clean_name(namespace, "namespace") if namespace is not None else None
    session = clean_name(session_id, "session_id") if session_id is not None else None
    notify = logging.getLogger("memagent").warning

    async def run(ctx: RunContext[Any], tool: str, *args: Any, **kwargs: Any) -> str:
        """One of the shared tool bodies over this run's memory, in the fixed namespace, off the loop's
        thread or on the loop through asyncpg."""
        chosen = memory if memory is not None else memory_of(ctx.deps)
        sync = chosen._sync if isinstance(chosen, AsyncMemory) else chosen
        # The Memory's own App: the tools share its database, embedder and recovery file.
        body = getattr(MemoryTools(sync._app, fixed or sync.settings.namespace, notify), tool)
        if isinstance(chosen, AsyncMemory):
            return await chosen._call(answered, body, *args, **kwargs)
        return await asyncio.to_thread(answered, body, *args, **kwargs)

    toolset: FunctionToolset[Any] = FunctionToolset(
        max_retries=max_retries, instructions=INSTRUCTIONS if instructions else None
    )

    async def remember(ctx: RunContext[Any], text: Text) -> str:
        return await run(ctx, "remember", text, session_id=session)

    async def recall(ctx: RunContext[Any], query: Query, k: K = None) -> str:
        return await run(ctx, "recall", query, k=k)

    async def forget_memory(ctx: RunContext[Any], id: MemoryId) -> str:
        return await run(ctx, "forget", id)

    async def recent_memories(ctx: RunContext[Any], limit: Limit = 10) -> str:
        return await run(ctx, "recent", limit)

    toolset.add_function(remember, takes_ctx=True, name="remember", description=REMEMBER)
    toolset.add_function(recall, takes_ctx=True, name="recall", description=RECALL)
    if forget:
        toolset.add_function(forget_memory, takes_ctx=True, name="forget", description=FORGET)
    if recent:
        toolset.add_function(recent_memories, takes_ctx=True, name="recent", description=RECENT)
    return toolset
