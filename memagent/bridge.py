"""How the one synchronous implementation serves AsyncMemory without blocking its event loop.

AsyncMemory runs each verb's ordinary code in a greenlet (SQLAlchemy's asyncio bridge, `greenlet_spawn`):
the database calls of that code, made through an asyncpg engine, suspend the greenlet and let the event
loop serve other tasks until the answer comes, so there is one copy of the logic and the SQL. What else
could block the loop goes through here: blocking work (the local model, starting the embedded server) runs
on a worker thread, and provider calls use the openai SDK's async client. Outside AsyncMemory (the CLI,
Memory) every helper simply calls the synchronous code.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")


def bridged() -> bool:
    """Whether this code runs in AsyncMemory's greenlet (an event loop waits on it)."""
    if "sqlalchemy.util.concurrency" not in sys.modules:  # nothing imported it: not bridged (and stay light)
        return False
    from sqlalchemy.util.concurrency import in_greenlet

    return in_greenlet()


def wait(awaitable: Awaitable[T]) -> T:
    """The result of an awaitable, from bridged synchronous code (the greenlet yields to the loop)."""
    from sqlalchemy.util import await_only

    return await_only(awaitable)


def blocking(fn: Callable[..., T], *args: Any) -> T:
    """fn(*args); when bridged, on a worker thread, so the event loop keeps serving while it runs."""
    if not bridged():
        return fn(*args)
    import asyncio

    return wait(asyncio.to_thread(fn, *args))


def iterate(items: AsyncIterator[T]) -> Iterator[T]:
    """An async iterator's items, from bridged synchronous code (a streamed reply, chunk by chunk)."""
    while True:
        try:
            yield wait(items.__anext__())
        except StopAsyncIteration:
            return
