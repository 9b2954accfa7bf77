"""What a MemoryService remembers between calls: the embedding space it verified, and when to catch up next.

Both are hints that save round trips, never the truth: every recall reads the space in force in the same
statement as its rows (search_sql's checked statements), every remember writes only if the space still
matches (memories.add_one_guarded), and either goes back to the full check when it does not.
"""

from __future__ import annotations

import threading
import time

from memagent.providers.embeddings import Embedder
from memagent.store.search import SpaceRow

# The catch-up (embedding memories stored while the provider failed) runs after a successful call at most
# this often, and at once after this service stored a pending memory or on its first successful call.
CATCH_UP_INTERVAL = 60.0


class KnownSpace:
    """The verified embedding space (model, dimension, index kind) and the catch-up schedule; thread-safe."""

    def __init__(self) -> None:
        self._space: SpaceRow | None = None
        self._next_catch_up = 0.0  # time.monotonic() of the next catch-up; 0: at the next successful call
        self._lock = threading.Lock()

    def get(self, embedder: Embedder) -> SpaceRow | None:
        """The space last verified, if it is the embedder's."""
        space = self._space
        return space if space is not None and space[:2] == (embedder.model, embedder.dim) else None

    def set(self, space: SpaceRow | None) -> None:
        """Remember a verified space (None: forget it; the next call checks in full)."""
        self._space = space

    def catch_up_due(self) -> bool:
        """Whether to catch up now; if so, the next one is due CATCH_UP_INTERVAL from now."""
        now = time.monotonic()
        with self._lock:
            if now < self._next_catch_up:
                return False
            self._next_catch_up = now + CATCH_UP_INTERVAL
            return True

    def catch_up_soon(self) -> None:
        """Catch up at the next successful call (a memory is pending, or more wait than one batch)."""
        with self._lock:
            self._next_catch_up = 0.0
