"""memagent: persistent long-term memory for AI agents, in PostgreSQL with pgvector."""

from __future__ import annotations

__version__ = "0.1.0"
