"""A scripted chat model for learning tests, served by the loopback OpenAI server: it reads the request as
memagent sends it (the data block between the markers) and answers as the test says."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from tests.fake_openai import FakeOpenAI

EXTRACT = "extract durable facts"
CONSOLIDATE = "keep a memory of facts current"


def records(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The JSON records of the request's data block (the lines between the nonce markers)."""
    user = next(m["content"] for m in body["messages"] if m["role"] == "user")
    lines = user.splitlines()
    assert re.fullmatch(r"<[a-z]+-[0-9a-f]{12}>", lines[0]) and lines[-1] == "</" + lines[0][1:]
    return [json.loads(line) for line in lines[1:-1]]


def system(body: dict[str, Any]) -> str:
    return str(body["messages"][0]["content"])


class Script:
    """Facts per exchange text (by a word it contains) and a decision rule for consolidation."""

    def __init__(self, fake: FakeOpenAI) -> None:
        self.facts: dict[str, list[dict[str, Any]]] = {}
        # (new facts, shown facts {id: text}) -> decisions; default: add everything
        self.decide: Callable[[list[str], dict[int, str]], list[dict[str, Any]]] = lambda new, shown: [
            {"new": i, "action": "add", "target": None, "text": None, "reason": "new"}
            for i in range(1, len(new) + 1)
        ]
        self.seen: list[dict[str, Any]] = []
        fake.chat_handler = self.answer

    def answer(self, body: dict[str, Any]) -> str:
        self.seen.append(body)
        if EXTRACT in system(body):
            text = records(body)[0]["text"]
            facts = next((f for word, f in self.facts.items() if word in text), [])
            return json.dumps({"facts": facts})
        assert CONSOLIDATE in system(body)
        data = records(body)
        new = [r["text"] for r in data if "new" in r]
        shown = {int(r["id"]): str(r["text"]) for r in data if "id" in r}
        return json.dumps({"decisions": self.decide(new, shown)})


def decision(
    new: int, action: str, target: int | None, reason: str, text: str | None = None
) -> dict[str, Any]:
    return {"new": new, "action": action, "target": target, "text": text, "reason": reason}
