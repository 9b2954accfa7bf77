"""A chat exchange as one memory: "User: …" and "Assistant: …" in one text, so one embedding holds both."""

from __future__ import annotations

from typing import Any

from memagent.records import MemoryRecord
from memagent.redact import redact

_ASSISTANT = "\nAssistant: "


def exchange_text(
    message: str, reply: str | None, *, chat_model: str, error: str | None
) -> tuple[str, dict[str, Any]]:
    """The text and metadata stored for one turn: the exchange, or the user's message alone when the model
    failed (kind "unanswered", with the error)."""
    if reply is None:
        error = redact(error) if error else error  # stored, and exported: never a secret
        return f"User: {message}", {"kind": "unanswered", "chat_model": chat_model, "error": error}
    metadata = {"kind": "exchange", "chat_model": chat_model, "user_chars": len(message)}
    return f"User: {message}{_ASSISTANT}{reply}", metadata


def parse_exchange(memory: MemoryRecord) -> tuple[int, str, str] | None:
    """(id, user message, reply) of a stored exchange, or None for any other memory."""
    if memory.metadata.get("kind") != "exchange" or not memory.content.startswith("User: "):
        return None
    body = memory.content.removeprefix("User: ")
    cut = memory.metadata.get("user_chars")
    if not isinstance(cut, int) or body[cut : cut + len(_ASSISTANT)] != _ASSISTANT:
        cut = body.find(_ASSISTANT)  # exchanges stored before user_chars was recorded
    if cut < 0:
        return None
    return memory.id, body[:cut], body[cut + len(_ASSISTANT) :]
