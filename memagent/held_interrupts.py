"""Ctrl-C held back while work that must not be thrown away finishes (an index build and its commit).

psycopg2 runs a statement in C: a Ctrl-C during it raises KeyboardInterrupt only when the statement returns,
inside the transaction, which then rolls back what the statement did. Held here, the Ctrl-C is delivered
again, as the process would have had it, once the work is committed.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def held_interrupts() -> Iterator[None]:
    """Hold SIGINT for the block (in the main thread, where Python raises KeyboardInterrupt); then pass on
    any that came, to the handler that was in place (an ignored SIGINT stays ignored)."""
    if threading.current_thread() is not threading.main_thread():
        yield  # (a KeyboardInterrupt is raised only in the main thread: nothing to hold here)
        return
    came: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: came.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous if previous is not None else signal.SIG_DFL)
    if came:
        signal.raise_signal(signal.SIGINT)
