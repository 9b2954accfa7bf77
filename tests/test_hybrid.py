"""Text and hybrid recall: BM25 over the full-text index, fusion with the vector ranking, recency, scope."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from sqlalchemy import Connection, insert, text
from sqlalchemy.orm import Session

from memagent.config import Settings
from memagent.errors import InputError
from memagent.store.memories import MemoryRepository, NewMemory, content_hash
from memagent.store.models import MemoryRow
from memagent.store.scope import Scope
from memagent.usecases.service import MemoryService
from tests.conftest import DIM
from tests.fake_openai import fake_embedding

pytestmark = pytest.mark.both_drivers


@pytest.fixture
def repo(sessions: Callable[[], Session]) -> MemoryRepository:
    return MemoryRepository(sessions())


def add(repo: MemoryRepository, content: str, *, namespace: str = "h", **kw: object) -> int:
    memory = NewMemory(
        namespace=namespace,
        session_id=str(kw.get("session_id", "s")),
        content=content,
        embedding=kw.get("embedding", fake_embedding(content, DIM)),
        embedding_model="fake-embed-384",
        metadata={},
        created_at=kw.get("created_at"),  # type: ignore[arg-type]
        importance=float(kw.get("importance", 0.5)),  # type: ignore[arg-type]
        kind=str(kw.get("kind", "exchange")),
    )
    return repo.add(memory)[0]


def search(repo: MemoryRepository, query: str, mode: str, **kw: object) -> list[str]:
    found = repo.search(
        fake_embedding(query, DIM),
        scope=kw.pop("scope", Scope("h")),  # type: ignore[arg-type]
        k=int(kw.pop("k", 5)),  # type: ignore[call-overload]
        mode=mode,  # type: ignore[arg-type]
        query_text=query,
        **kw,  # type: ignore[arg-type]
    )
    return [m.content for m in found]


def test_text_mode_ranks_rare_words_above_common_ones(repo: MemoryRepository) -> None:
    """BM25's inverse document frequency: a name in every memory counts less than a rare word."""
    for i in range(8):
        add(repo, f"Caroline talked about her day number {i}")
    add(repo, "Caroline adopted a greyhound named Biscuit")
    add(repo, "The greyhound races were cancelled")
    found = search(repo, "What did Caroline say about the greyhound?", "text")
    # Both greyhound memories beat the eight that share only the ubiquitous name.
    assert set(found[:2]) == {
        "Caroline adopted a greyhound named Biscuit",
        "The greyhound races were cancelled",
    }


def test_text_mode_matches_stems_and_ignores_stop_words(repo: MemoryRepository) -> None:
    add(repo, "I was running marathons in Berlin")
    add(repo, "The weather is nice")
    assert search(repo, "does she run?", "text") == ["I was running marathons in Berlin"]
    assert search(repo, "the and of", "text") == []  # only stop words: nothing to match, no error


def test_hybrid_finds_what_either_ranking_finds(repo: MemoryRepository) -> None:
    rng = np.random.default_rng(3)
    query_vec = rng.normal(size=DIM).astype(np.float32)
    query_vec /= np.linalg.norm(query_vec)
    semantic = add(repo, "a memory with no shared words", embedding=query_vec)
    for i in range(30):
        noise = rng.normal(size=DIM).astype(np.float32)
        add(repo, f"filler memory {i}", embedding=noise / np.linalg.norm(noise))
    add(repo, "the password for the garage is tulip", embedding=-query_vec)

    def hybrid_ids(query: str) -> list[str]:
        found = repo.search(query_vec, scope=Scope("h"), k=3, mode="hybrid", query_text=query)
        return [m.content for m in found]

    top = hybrid_ids("garage password")
    assert "the password for the garage is tulip" in top  # text side, though the vector side ranks it last
    assert repo.session.get(MemoryRow, semantic) is not None
    assert "a memory with no shared words" in top  # vector side, though it shares no word


def test_max_distance_applies_in_every_mode(repo: MemoryRepository) -> None:
    add(repo, "the garage password is tulip")
    add(repo, "garage sale on sunday with lemonade and cake and music")
    query = "the garage password is tulip"
    for mode in ("vector", "text", "hybrid"):
        found = repo.search(
            fake_embedding(query, DIM), scope=Scope("h"), k=5, mode=mode, query_text=query, max_distance=0.05
        )
        assert [m.content for m in found] == [query], mode
        assert found[0].distance is not None and found[0].distance <= 0.05


def test_hybrid_sends_the_query_vector_once_and_reports_exact_distances(repo: MemoryRepository) -> None:
    """The final distances, a maximum distance and the check that a fact lies within it (before it may hide
    its exchange) use the vector the vector side parsed: one copy of it in the statement (at 1536
    dimensions 19 KB to send and parse)."""
    from memagent.store.search import recall_statement

    def unit(*parts: float) -> np.ndarray:
        vector = np.zeros(DIM, dtype=np.float32)
        vector[: len(parts)] = parts
        return vector / np.linalg.norm(vector)

    query = unit(1.0)
    for max_distance in (None, 0.1):
        statement = recall_statement(
            query, scope=Scope("h"), k=5, mode="hybrid", query_text="q", max_distance=max_distance
        )
        assert statement.sql.count(":qvec") == 1, max_distance
    # The exchange is nearest; the fact drawn from it is further (cosine distance 0.29) but matches more
    # words, so by its own score it ranks above the exchange and stands for it, unless a maximum distance
    # leaves it out.
    said = add(repo, "we talked about the ferry", embedding=unit(1.0))
    fact = add(repo, "the ferry to porto leaves at seven", embedding=unit(1.0, 1.0), kind="fact")
    repo.link("h", [(fact, [said])])
    for i in range(4):
        add(repo, f"filler {i} about gardens", embedding=unit(0.0, 0.0, 1.0, 0.1 * i))

    def hybrid(max_distance: float | None) -> dict[str, float | None]:
        found = repo.search(
            query,
            scope=Scope("h"),
            k=5,
            mode="hybrid",
            query_text="ferry porto seven",
            max_distance=max_distance,
            text_weight=1.5,  # the default: the fact is then ahead by its own score
        )
        return {m.content: m.distance for m in found}

    everything = hybrid(None)
    assert "we talked about the ferry" not in everything  # the fact stands for it
    assert everything["the ferry to porto leaves at seven"] == pytest.approx(1 - 0.5**0.5, abs=1e-5)
    assert everything["filler 0 about gardens"] == pytest.approx(1.0, abs=1e-5)
    assert hybrid(0.1) == {"we talked about the ferry": pytest.approx(0.0, abs=1e-5)}  # the fact is out
    assert set(hybrid(0.5)) == {"the ferry to porto leaves at seven"}  # within it: it stands for it again


def test_exchanges_hidden_by_their_facts_still_leave_k_results(repo: MemoryRepository) -> None:
    """The final step reads only the best candidates' rows: the best k and one more for each link between
    two candidates, so the exchanges their facts stand for never leave fewer than k results."""
    for i in range(3):
        said = add(repo, f"we said the ferry to porto leaves at {i} from the pier")
        repo.link(
            "h", [(add(repo, f"ferry porto {i}", kind="fact"), [said])]
        )  # shorter: ahead by its own score
    fillers = {add(repo, f"a ferry timetable, page {i}, nothing about the town") for i in range(3)}
    for mode in ("text", "hybrid"):
        found = repo.search(
            fake_embedding("ferry porto", DIM), scope=Scope("h"), k=4, mode=mode, query_text="ferry porto"
        )
        kinds = [m.kind for m in found]
        assert len(found) == 4, (mode, [m.content for m in found])
        if mode == "text":  # the three facts, then the best filler: each exchange is stood for by its fact
            assert kinds == ["fact"] * 3 + ["exchange"] and found[3].id in fillers, [m.content for m in found]


def test_recency_half_life_favours_newer_memories(repo: MemoryRepository) -> None:
    now = datetime.now(UTC)
    add(repo, "project status: compiler backend done", created_at=now - timedelta(days=400))
    add(repo, "project status: compiler frontend done", created_at=now - timedelta(days=1))
    query = "project status compiler"
    for mode in ("vector", "text", "hybrid"):
        plain = search(repo, query, mode, k=2)
        recent_first = search(repo, query, mode, k=2, recency_half_life=timedelta(days=30))
        assert recent_first[0] == "project status: compiler frontend done", mode
        assert sorted(plain) == sorted(recent_first)


def test_importance_weight_favours_important_memories_of_equal_relevance(repo: MemoryRepository) -> None:
    vector = fake_embedding("garden note", DIM)
    # Equal relevance in every ranking (same vector, same length, the differing words not in the query);
    # the important one is stored second, so ties (broken by id) put it last without the weight.
    add(repo, "garden note alpha", embedding=vector)
    add(repo, "garden note bravo", embedding=vector, importance=0.9)
    add(repo, "garden note charlie", embedding=vector, importance=0.1)
    for mode in ("vector", "text", "hybrid"):
        plain = search(repo, "garden note", mode, k=3)
        assert plain == ["garden note alpha", "garden note bravo", "garden note charlie"], mode
        assert search(repo, "garden note", mode, k=3, importance_weight=0.0) == plain, mode
        weighted = search(repo, "garden note", mode, k=3, importance_weight=0.5)
        assert weighted == ["garden note bravo", "garden note alpha", "garden note charlie"], mode


def test_importance_weight_keeps_relevance_first_and_default_importance_neutral(
    repo: MemoryRepository,
) -> None:
    """A small weight does not lift an important but unrelated memory over a relevant one, and a memory of
    the default importance keeps its score (the factor is 1 at 0.5)."""
    add(repo, "the garage password is tulip")
    add(repo, "lunch was a sandwich with cheese", importance=1.0)
    query = "what is the garage password"
    vector = fake_embedding(query, DIM)
    plain = repo.search(vector, scope=Scope("h"), k=2, mode="text", query_text=query)
    weighted = repo.search(
        vector, scope=Scope("h"), k=2, mode="text", query_text=query, importance_weight=0.2
    )
    assert [m.content for m in weighted][:1] == ["the garage password is tulip"]
    assert weighted[0].score == pytest.approx(plain[0].score)


def test_importance_weight_off_leaves_the_statement_alone() -> None:
    from memagent.store.search import recall_statement

    vector = fake_embedding("q", DIM)
    default = recall_statement(vector, scope=Scope("h"), k=5, mode="hybrid", query_text="q")
    off = recall_statement(
        vector, scope=Scope("h"), k=5, mode="hybrid", query_text="q", importance_weight=0.0
    )
    on = recall_statement(vector, scope=Scope("h"), k=5, mode="hybrid", query_text="q", importance_weight=0.3)
    assert (off.sql, off.params) == (default.sql, default.params)
    assert off.params["k"] == 5 and on.params["k"] == 50  # on: the `depth` best are fetched and re-ranked
    assert on.sql == default.sql


def test_the_text_floor_is_hybrids_unless_something_filters_afterwards() -> None:
    """Hybrid's text side keeps matches over a fifth of the best (revision 0016); text mode, a maximum
    distance (which may drop the memory that set the floor) and callers that ask (item search) rank
    every match."""
    from memagent.store.search import recall_statement
    from memagent.store.text_floor import FLOOR

    vector = fake_embedding("q", DIM)

    def floor(**kw: object) -> float:
        statement = recall_statement(vector, scope=Scope("h"), k=5, query_text="q", **kw)  # type: ignore[arg-type]
        return float(statement.params["text_floor"])

    assert floor(mode="hybrid") == FLOOR == 0.2
    assert floor(mode="text") == 0.0
    assert floor(mode="hybrid", max_distance=0.5) == 0.0
    assert floor(mode="hybrid", text_floor=0.0) == 0.0


def test_service_reads_the_importance_weight(sessions: Callable[[], Session], service: MemoryService) -> None:
    from memagent.config import with_overrides

    vector_twin = "orchard report"
    service.remember_many([f"{vector_twin} one", f"{vector_twin} two"], importance=[0.5, 1.0])
    assert service.recall(vector_twin, k=2)[0].content == f"{vector_twin} one"
    settings = with_overrides(service.settings, importance_weight=0.6)
    weighted = MemoryService(sessions, service.embedder, settings)
    assert weighted.recall(vector_twin, k=2)[0].content == f"{vector_twin} two"


@pytest.mark.parametrize("mode", ["vector", "text", "hybrid"])
def test_scoped_recall_returns_k_rows_in_every_mode(
    connection: Connection, repo: MemoryRepository, mode: str
) -> None:
    rows = []
    for i in range(2000):
        namespace = "scoped" if i % 100 == 0 else "crowd"
        session_id = "target" if i % 200 == 0 else "other"
        content = f"shared words about compilers number {i}"
        rows.append(
            {
                "namespace": namespace,
                "session_id": session_id,
                "content": content,
                "embedding": fake_embedding(content, DIM),
                "embedding_model": "fake-embed-384",
                "content_hash": content_hash(content),
            }
        )
    connection.execute(insert(MemoryRow), rows)
    connection.execute(text("SET LOCAL enable_seqscan = off"))
    found = repo.search(
        fake_embedding("compilers", DIM),
        scope=Scope("scoped"),
        k=10,
        mode=mode,  # type: ignore[arg-type]
        query_text="compilers",
    )
    assert len(found) == 10 and {m.namespace for m in found} == {"scoped"}
    in_session = repo.search(
        fake_embedding("compilers", DIM),
        scope=Scope("scoped", session_id="target"),
        k=10,
        mode=mode,  # type: ignore[arg-type]
        query_text="compilers",
    )
    assert len(in_session) == 10 and {m.session_id for m in in_session} == {"target"}


def test_hostile_query_text_is_only_data(repo: MemoryRepository, connection: Connection) -> None:
    add(repo, "robert likes tables")
    for query in ["'); DROP TABLE memories; --", "o'neil & | ! <-> :* ()", "\\x00 % _ $$ $1"]:
        for mode in ("text", "hybrid"):
            search(repo, query, mode)
    assert connection.execute(text("SELECT count(*) FROM memories WHERE namespace = 'h'")).scalar_one() == 1


def test_service_mode_default_and_validation(service: MemoryService) -> None:
    assert service.settings.recall_mode == "hybrid"
    service.remember("the blue door is at number twelve")
    assert service.recall("blue door")[0].content == "the blue door is at number twelve"
    assert service.recall("blue door", mode="text")[0].score > 0
    with pytest.raises(InputError, match="mode must be"):
        service.recall("blue door", mode="fuzzy")  # type: ignore[arg-type]


def test_settings_reject_an_unknown_mode() -> None:
    from memagent.config import get_settings
    from memagent.errors import ConfigError

    with pytest.raises(ConfigError, match="MEMAGENT_RECALL_MODE"):
        get_settings(recall_mode="fuzzy")
    assert Settings().hybrid_text_weight == 1.5
