"""Ask a chat model for JSON matching a schema: validated, asked once more when it is not, and counted."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from memagent.errors import ModelOutputError
from memagent.providers.chat import ChatModel, JsonSchema, Message

T = TypeVar("T")


@dataclass
class ModelCost:
    """What the model calls of one operation cost: calls, tokens, and seconds spent waiting for them."""

    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    invalid_replies: int = 0  # replies that were not JSON of the schema (each asked again once)
    reasons: list[str] = field(default_factory=list)

    def add(self, other: ModelCost) -> None:
        """Count another operation's calls in this one."""
        self.calls += other.calls
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens
        self.seconds += other.seconds
        self.invalid_replies += other.invalid_replies


def _json_of(text: str) -> Any:
    """The JSON value in a reply; models without JSON mode often wrap it in a ``` fence."""
    body = text.strip()
    if body.startswith("```"):
        body = body.split("\n", 1)[1] if "\n" in body else ""
        body = body.rsplit("```", 1)[0]
    return json.loads(body)


def ask_json(
    model: ChatModel,
    messages: Sequence[Message],
    schema: JsonSchema,
    parse: Callable[[Any], T],
    cost: ModelCost,
) -> T:
    """The model's reply as `parse` reads it (parse raises ValueError on a reply that does not fit).

    An invalid reply is asked for once more, with what was wrong; a second invalid reply raises
    ModelOutputError. Provider failures (ProviderError) pass through: the caller keeps its input for later.
    """
    asked = list(messages)
    problem = ""
    for attempt in (1, 2):
        started = time.perf_counter()
        try:
            reply = model.complete(asked, schema=schema)
        finally:
            cost.calls += 1
            cost.seconds += time.perf_counter() - started
        cost.prompt_tokens += reply.prompt_tokens
        cost.completion_tokens += reply.completion_tokens
        try:
            return parse(_json_of(reply.text))
        except (ValueError, TypeError, KeyError, RecursionError) as exc:
            cost.invalid_replies += 1
            problem = " ".join(str(exc).split())[:300] or type(exc).__name__
            if attempt == 1:
                asked = [
                    *messages,
                    Message("assistant", reply.text[:4000]),
                    Message(
                        "user",
                        f"That reply was not valid ({problem}). Answer again with only a JSON object "
                        f"matching the {schema.name} schema.",
                    ),
                ]
    raise ModelOutputError(f"the chat model's reply was not valid {schema.name} JSON, twice: {problem}")
