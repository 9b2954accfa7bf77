"""A chat turn's own overhead: everything a turn does except computing the embedding and the model's reply.

    python benchmarks/chat_turn.py --rows 20000 --dim 1536

Rows as benchmarks/scale.py makes them (clustered vectors, loaded by COPY, one HNSW build) in a fresh
embedded server. Each turn is `ChatAgent.turn` (memagent's chat loop: recall in the default hybrid mode, the
prompt, the reply streamed from the tests' loopback OpenAI server, which answers at once, and the exchange
stored through remember, the recovery-file check included), with an embedder that returns a given vector.
The overhead is the turn's time minus the time spent inside the embedder and inside the chat model's
stream (the openai client and the loopback HTTP server); reported p50/p95 over --turns, after 20 warm-up
turns, with the same figures for vector mode.

With --embedder loopback the query and the exchange are embedded as with OpenAI: memagent's OpenAI embedder
(the openai SDK) asks the same loopback server, which answers at once with the given vector (1.8 ms a call
here, the SDK's own work most of it; a real provider takes tens to hundreds of ms): hybrid's text side runs
meanwhile, as it does with any real embedder. The default, an embedder that returns the vector at once, is
the worst case: the text side has no head start.

With --embed-ms N the embedder takes N ms per call (it sleeps, as a call to a provider waits on the network;
still counted out of the overhead). Hybrid recall starts its text side before it embeds the query
(memagent.usecases.checked), so with an embedder that takes time the text side runs meanwhile and the
recall after the embedding is one statement; with the default, 0, the embedding is instant and the text
side is still running when the vector side starts: the worst case for the overhead.

The turns follow one another at once, so the step that puts a turn's exchange into the HNSW graph after its
store (revision 0028, memagent.store.deferred) runs beside the next turn's recall, on the same two cores.
With --paced each turn starts after that step has ended (waited for, untimed), as in a conversation, where
the reply is read and the next message written in between: the overhead a person chatting meets.

Beside them, the machine's hour: the bare pgvector query over the same rows (psycopg2, memagent's
ef_search, `ORDER BY embedding <=> %s::vector LIMIT 10`) with 200 of the turns' vectors, before the turns
and after them (benchmarks/hybrid_scale.py's bare_query): it has no memagent code in it and moves with the
machine, so a run's overhead can be read against its own.

With --extract, the same turns again with learning on (MEMAGENT_EXTRACT): the loopback model also answers
the extraction (two new facts per turn) and the consolidation (add); reported: the model calls and tokens per
turn, the time inside the model and the embedder, and memagent's own overhead (the turn minus both).

With --parts, also the time inside MemoryService.recall and .remember per turn, and inside each statement
they send through the one-statement path (UnitOfWork.run): hybrid's text side, vector side and fusion, vector
mode's recall, the store; p50/p95 after the warm-up turns.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from hybrid_scale import bare_query, fmt
from scale import GivenVector, make_vectors, pct, temporary_home


class Slow:
    """An embedder that waits `ms` before answering, as an embeddings provider over the network does."""

    def __init__(self, inner: Any, ms: float) -> None:
        self.inner, self.ms = inner, ms

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def embed(self, texts: Sequence[str]) -> Any:
        time.sleep(self.ms / 1000)
        return self.inner.embed(texts)


class Timed:
    """Wraps an embedder or chat model, adding the time spent inside it to `spent`."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.spent = 0.0
        self.calls = 0
        self.tokens = 0
        self.sent_chars = 0

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
        self.calls += 1
        yield from pieces

    def complete(self, messages: Any, **options: Any) -> Any:
        t = time.perf_counter()
        try:
            reply = self.inner.complete(messages, **options)
        finally:
            self.spent += time.perf_counter() - t
            self.calls += 1
        self.tokens += reply.prompt_tokens + reply.completion_tokens
        # What a real model would bill for, estimated like memagent's prompt budget (4 characters a
        # token): the loopback server's own counts are placeholders.
        self.sent_chars += sum(len(m.content) for m in messages) + len(reply.text)
        return reply


class Parts:
    """--parts: the time inside the service's recall and remember, and in each one-statement unit of work."""

    def __init__(self, service: Any) -> None:
        from memagent.store.unit import UnitOfWork

        self.times: dict[str, list[float]] = {}
        for name in ("recall", "remember"):
            setattr(service, name, self._timed(name, getattr(service, name)))
        self._unit, self._run = UnitOfWork, UnitOfWork.run
        parts = self

        def run(unit: Any, namespace: Any, sql: str, *args: Any, **kwargs: Any) -> Any:
            return parts._timed(parts.kind(sql), parts._run)(unit, namespace, sql, *args, **kwargs)

        UnitOfWork.run = run  # type: ignore[method-assign,assignment]

    @staticmethod
    def kind(sql: str) -> str:
        if "gone AS" in sql:  # (the vector side too when the text side was done before it started)
            return "  fusion" if "nearest_index" not in sql else "  vector side and fusion"
        if "memagent_text_ranking" in sql:
            return "  text side" if "nearest_index" not in sql else "  recall statement"
        if "nearest_index" in sql:
            return "  vector side" if "found" not in sql else "  recall statement"
        return "  store statement" if "INSERT" in sql else "  other statement"

    def _timed(self, name: str, inner: Any) -> Any:
        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                self.times.setdefault(name, []).append(time.perf_counter() - start)

        return timed

    def report(self) -> None:
        for name, seconds in self.times.items():
            print(
                f"    {name}: p50 {pct(seconds, 50):.2f} ms, p95 {pct(seconds, 95):.2f} ms ({len(seconds)})"
            )
        self.times.clear()

    def close(self) -> None:
        self._unit.run = self._run  # type: ignore[method-assign]


def learning_replies(body: dict[str, Any]) -> str:
    """The loopback model as an extractor (two new facts per exchange) and a consolidator (add them)."""
    system = body["messages"][0]["content"]
    user = body["messages"][-1]["content"]
    if "extract durable facts" in system:
        n = abs(hash(user)) % 10**9
        facts = [{"text": f"The user mentioned topic {n}-{i}", "importance": 0.5} for i in range(2)]
        return json.dumps({"facts": facts})
    new = user.count('"new":')
    decisions = [
        {"new": i, "action": "add", "target": None, "text": None, "reason": "new"} for i in range(1, new + 1)
    ]
    return json.dumps({"decisions": decisions})


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--dim", type=int, default=1536)
    parser.add_argument("--turns", type=int, default=200)
    parser.add_argument("--extract", action="store_true", help="also measure turns with learning on")
    parser.add_argument(
        "--embed-ms", type=float, default=0.0, help="the embedder's time per call (a provider's latency)"
    )
    parser.add_argument(
        "--embedder",
        choices=("given", "loopback"),
        default="given",
        help="given: the vector at once (the worst case); loopback: memagent's OpenAI embedder, loopback",
    )
    parser.add_argument("--parts", action="store_true", help="also time recall, store and each statement")
    parser.add_argument("--paced", action="store_true", help="each turn after the last one's indexing step")
    args = parser.parse_args()
    with temporary_home("memagent-chat-turn-") as home:
        run(args, home)


def run(args: argparse.Namespace, home: Path) -> None:
    from sqlalchemy import text

    from memagent.config import get_settings
    from memagent.providers.chat import OpenAIChat
    from memagent.providers.embeddings import OpenAIEmbedder
    from memagent.store import hnsw, schema
    from memagent.store.bulk import BulkRepository
    from memagent.store.database import Database
    from memagent.store.memories import NewMemory
    from memagent.usecases.chat import ChatAgent
    from memagent.usecases.service import MemoryService
    from tests.fake_openai import FakeOpenAI

    model = f"bench-{args.dim}"
    vectors = make_vectors(args.rows, args.dim, seed=1)
    queries = make_vectors(3 * (args.turns + 20), args.dim, seed=2)
    settings = get_settings(namespace="chat")
    fake = FakeOpenAI().start()
    parts: Parts | None = None
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
            bare = [bare_query(db, queries[:200], 10, settings.ef_search)]
            given = GivenVector(model, args.dim)
            inner: Any = given
            if args.embedder == "loopback":  # the given vector, by the openai SDK and the loopback
                fake.embedding_handler = lambda text, dim: given.next
                url, key = fake.base_url, fake.api_key
                inner = OpenAIEmbedder(model=model, dim=args.dim, base_url=url, api_key=key)
            embedder = Timed(Slow(inner, args.embed_ms) if args.embed_ms else inner)
            service = MemoryService(db.sessions, embedder, settings)
            if args.parts:
                parts = Parts(service)
            chat = Timed(OpenAIChat(model="gpt-4o-mini", base_url=fake.base_url, api_key=fake.api_key))
            n = 0
            runs = [("hybrid", False), ("vector", False)] + ([("hybrid", True)] if args.extract else [])
            for mode, learn in runs:
                service.settings = settings.model_copy(update={"recall_mode": mode, "extract": learn})
                fake.chat_handler = learning_replies if learn else None
                agent = ChatAgent(lambda: service, chat, service.settings)
                overheads, totals, model_time, calls, tokens = [], [], [], [], []
                for i in range(args.turns + 20):
                    if parts is not None and i == 20:
                        parts.times.clear()  # (the warm-up turns)
                    if args.paced:
                        service.indexing.settle()
                    given.next = queries[n]
                    n += 1
                    embedder.spent = chat.spent = 0.0
                    chat.calls = chat.tokens = chat.sent_chars = 0
                    t = time.perf_counter()
                    turn = agent.turn(f"turn {n}: what did I say about question {i * 7}?")
                    total = time.perf_counter() - t
                    assert turn.reply and turn.stored is not None and turn.stored.created
                    if learn:
                        assert turn.learned is not None and len(turn.learned.added) == 2, turn.learned
                    if i >= 20:
                        totals.append(total)
                        overheads.append(total - embedder.spent - chat.spent)
                        model_time.append(chat.spent)
                        calls.append(chat.calls)
                        tokens.append(chat.sent_chars / 4)
                label = f"{mode}{' + learning' if learn else ''}"
                if args.embedder == "loopback":
                    label += " (OpenAI embedder, loopback)"
                if args.embed_ms:
                    label += f" (embedder {args.embed_ms:g} ms)"
                if args.paced:
                    label += " (paced)"
                print(
                    f"{label:<17} chat turn overhead p50 {pct(overheads, 50):.2f} ms, p95 "
                    f"{pct(overheads, 95):.2f} ms (whole turn with the loopback model p50 "
                    f"{pct(totals, 50):.2f} ms, p95 {pct(totals, 95):.2f} ms; inside the model p50 "
                    f"{pct(model_time, 50):.2f} ms; {statistics.mean(calls):.1f} model calls and "
                    f"~{statistics.mean(tokens):.0f} tokens of learning prompts and replies per turn)"
                )
                if parts is not None:
                    parts.report()
            bare.append(bare_query(db, queries[:200], 10, settings.ef_search))
            print(
                f"the machine's hour, the bare pgvector query over these rows: before {fmt(bare[0])}, "
                f"after {fmt(bare[1])}"
            )
    finally:
        if parts is not None:
            parts.close()
        fake.stop()


if __name__ == "__main__":
    main()
