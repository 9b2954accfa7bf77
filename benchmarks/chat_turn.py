"""A chat turn's own overhead: everything a turn does except computing the embedding and the model's reply.

    python benchmarks/chat_turn.py --rows 20000 --dim 1536

Rows as benchmarks/scale.py makes them (clustered vectors, loaded by COPY, one HNSW build) in a fresh
embedded server. Each turn is `ChatAgent.turn` (memagent's chat loop: recall in the default hybrid mode, the
prompt, the reply streamed from the tests' loopback OpenAI server, which answers at once, and the exchange
stored through remember, the recovery-file check included), with an embedder that returns a given vector.
The overhead is the turn's time minus the time spent inside the embedder and inside the chat model's
stream (the openai client and the loopback HTTP server); reported p50/p95 over --turns, after 20 warm-up
turns, with the same figures for vector mode.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from scale import GivenVector, make_vectors, pct, temporary_home


class Timed:
    """Wraps an embedder or chat model, adding the time spent inside it to `spent`."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.spent = 0.0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def embed(self, texts: Sequence[str]) -> Any:
        t = time.perf_counter()
        try:
            return self.inner.embed(texts)
        finally:
            self.spent += time.perf_counter() - t

    def stream(self, messages: Any) -> Iterator[str]:
        t = time.perf_counter()
        pieces = list(self.inner.stream(messages))
        self.spent += time.perf_counter() - t
        yield from pieces


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--dim", type=int, default=1536)
    parser.add_argument("--turns", type=int, default=200)
    args = parser.parse_args()
    with temporary_home("memagent-chat-turn-") as home:
        run(args, home)


def run(args: argparse.Namespace, home: Path) -> None:
    from sqlalchemy import text

    from memagent.config import get_settings
    from memagent.providers.chat import OpenAIChat
    from memagent.store import hnsw, schema
    from memagent.store.bulk import BulkRepository
    from memagent.store.database import Database
    from memagent.store.memories import NewMemory
    from memagent.usecases.chat import ChatAgent
    from memagent.usecases.service import MemoryService
    from tests.fake_openai import FakeOpenAI

    model = f"bench-{args.dim}"
    vectors = make_vectors(args.rows, args.dim, seed=1)
    queries = make_vectors(2 * (args.turns + 20), args.dim, seed=2)
    settings = get_settings(namespace="chat")
    fake = FakeOpenAI().start()
    try:
        with Database(settings) as db:
            schema.upgrade(db, embedding_dim=args.dim)
            with db.sessions.begin() as session:
                hnsw.IndexRepository(session).drop()
                memories = [
                    NewMemory(
                        "chat", "s", f"User: question {i}\nAssistant: answer {i}", vectors[i], model, {}
                    )
                    for i in range(args.rows)
                ]
                for start in range(0, len(memories), 5000):
                    BulkRepository(session).copy_add(memories[start : start + 5000])
                session.execute(
                    text("INSERT INTO embedding_space (id, model, dimension) VALUES (1, :m, :d)"),
                    {"m": model, "d": args.dim},
                )
            with db.sessions.begin() as session:
                hnsw.IndexRepository(session).create("vector", args.dim)
                session.execute(text("ANALYZE memories"))
            given = GivenVector(model, args.dim)
            embedder = Timed(given)
            service = MemoryService(db.sessions, embedder, settings)
            chat = Timed(OpenAIChat(model="gpt-4o-mini", base_url=fake.base_url, api_key=fake.api_key))
            n = 0
            for mode in ("hybrid", "vector"):
                service.settings = settings.model_copy(update={"recall_mode": mode})
                agent = ChatAgent(lambda: service, chat, service.settings)
                overheads, totals = [], []
                for i in range(args.turns + 20):
                    given.next = queries[n]
                    n += 1
                    embedder.spent = chat.spent = 0.0
                    t = time.perf_counter()
                    turn = agent.turn(f"turn {n}: what did I say about question {i * 7}?")
                    total = time.perf_counter() - t
                    assert turn.reply and turn.stored is not None and turn.stored.created
                    if i >= 20:
                        totals.append(total)
                        overheads.append(total - embedder.spent - chat.spent)
                print(
                    f"{mode:<6} chat turn overhead p50 {pct(overheads, 50):.2f} ms, p95 "
                    f"{pct(overheads, 95):.2f} ms (whole turn with the loopback model p50 "
                    f"{pct(totals, 50):.2f} ms, p95 {pct(totals, 95):.2f} ms)"
                )
    finally:
        fake.stop()


if __name__ == "__main__":
    main()
