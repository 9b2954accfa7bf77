"""How the one synchronous implementation serves AsyncMemory without blocking its event loop.

AsyncMemory runs each verb's ordinary code in a greenlet (SQLAlchemy's asyncio bridge, `greenlet_spawn`):
the database calls of that code, made through an asyncpg engine, suspend the greenlet and let the event
loop serve other tasks until the answer comes, so there is one copy of the logic and the SQL. What else
could block the loop goes through here: blocking work (the local model, starting the embedded server) runs
on a worker thread, and provider calls use the openai SDK's async client. Outside AsyncMemory (the CLI,
Memory) every helper simply calls the synchronous code.
"""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")

# The local model's matrix products and a fork (starting or stopping the embedded server) never overlap:
# with AsyncMemory both can run at once on worker threads, and OpenBLAS's fork handler can then deadlock
# with the product running on the other thread.
FORK_LOCK = threading.Lock()


def forking(fn: Callable[[], T]) -> T:
    """fn() (which starts a process) while no local-model computation runs; on a worker thread if bridged."""

    def guarded() -> T:
        with FORK_LOCK:
            return fn()

    return blocking(guarded)


def bridged() -> bool:
    """Whether this code runs in AsyncMemory's greenlet (an event loop waits on it)."""
    # No greenlet imported (or none installed: the `async` extra is optional): no bridge, and stay light.
    if sys.modules.get("greenlet") is None or "sqlalchemy.util.concurrency" not in sys.modules:
        return False
    from sqlalchemy.util.concurrency import in_greenlet

    return in_greenlet()


def wait(awaitable: Awaitable[T]) -> T:
    """The result of an awaitable, from bridged synchronous code (the greenlet yields to the loop)."""
    from sqlalchemy.util import await_only

    return await_only(awaitable)


def blocking(fn: Callable[..., T], *args: Any) -> T:
    """fn(*args); when bridged, on a worker thread, so the event loop keeps serving while it runs.

    A thread cannot be stopped: if the caller is cancelled meanwhile, fn still runs to its end before the
    cancellation goes on, so the caller's cleanup undoes what fn did (a server acquired is released) rather
    than racing it.
    """
    if not bridged():
        return fn(*args)
    import asyncio

    running = asyncio.ensure_future(asyncio.to_thread(fn, *args))
    try:
        return wait(asyncio.shield(running))
    except asyncio.CancelledError:
        with contextlib.suppress(BaseException):  # the cancellation is what the caller hears about
            wait(running)
        raise


class LoopLock:
    """A lock for code AsyncMemory runs in its greenlets: one waiting for it waits on the event loop (a
    threading.Lock would stop the thread, so the loop, and with it the greenlet holding the lock)."""

    def __init__(self) -> None:
        self._mutex: Any = None

    def __enter__(self) -> None:
        import asyncio

        if self._mutex is None:
            self._mutex = asyncio.Lock()
        wait(self._mutex.acquire())

    def __exit__(self, *exc: object) -> None:
        self._mutex.release()


def iterate(items: AsyncIterator[T]) -> Iterator[T]:
    """An async iterator's items, from bridged synchronous code (a streamed reply, chunk by chunk)."""
    while True:
        try:
            yield wait(items.__anext__())
        except StopAsyncIteration:
            return
