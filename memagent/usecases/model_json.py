"""Ask a chat model for JSON matching a schema: validated, asked once more when it is not, and counted."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from memagent.errors import ModelOutputError
from memagent.providers.chat import ChatModel, JsonSchema, Message
from memagent.records import ModelCost

T = TypeVar("T")


def _json_of(text: str) -> Any:
    """The JSON value in a reply; models without JSON mode often wrap it in a ``` fence."""
    body = text.strip()
    if body.startswith("```"):
        body = body.split("\n", 1)[1] if "\n" in body else ""
        body = body.rsplit("```", 1)[0]
    return json.loads(body)


def _problem(error: Exception) -> str:
    """What was wrong with a reply, in one short line (pydantic's own message spans lines and links)."""
    from pydantic import ValidationError

    if isinstance(error, ValidationError):
        where = [
            f"{'.'.join(map(str, e['loc'])) or 'reply'}: {e['msg']}"
            for e in error.errors(include_url=False)[:3]
        ]
        return "; ".join(where)
    return " ".join(str(error).split())[:300] or type(error).__name__


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
            problem = _problem(exc)
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
