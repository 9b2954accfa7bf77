"""memagent: persistent long-term memory for AI agents, in PostgreSQL with pgvector."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["AsyncMemory", "MemagentError", "Memory"]

if TYPE_CHECKING:
    from memagent.api import Memory
    from memagent.async_api import AsyncMemory
    from memagent.errors import MemagentError


def __getattr__(name: str) -> Any:
    # Lazy, so `import memagent` (and `memagent --help`) loads no database or model code.
    if name == "Memory":
        from memagent.api import Memory

        return Memory
    if name == "AsyncMemory":
        from memagent.async_api import AsyncMemory

        return AsyncMemory
    if name == "MemagentError":
        from memagent.errors import MemagentError

        return MemagentError
    raise AttributeError(f"module 'memagent' has no attribute {name!r}")
