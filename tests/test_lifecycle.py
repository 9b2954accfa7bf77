"""Memory that learns, the schema (revision 0013): what recall sees by default (what memagent believes now),
kinds, as of a past time, archived memories; the sources and events tables under row-level security."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Connection, text

from memagent.errors import DatabaseError, InputError
from memagent.store.search import SearchMode
from memagent.usecases.service import MemoryService

pytestmark = pytest.mark.both_drivers

MODES: tuple[SearchMode, ...] = ("hybrid", "vector", "text")
T0 = datetime(2026, 1, 10, tzinfo=UTC)


def _stored(service: MemoryService, content: str, namespace: str = "learn") -> int:
    return service.remember(content, namespace=namespace, created_at=T0).id


def _set(connection: Connection, memory_id: int, **columns: object) -> None:
    assignments = ", ".join(f"{name} = :{name}" for name in columns)
    connection.execute(
        text(f"UPDATE memories SET {assignments} WHERE id = :id"), {"id": memory_id, **columns}
    )


@pytest.fixture
def history(service: MemoryService, connection: Connection) -> dict[str, int]:
    """Priya's employer changed: the old fact expired (replaced), its exchanges archived into a summary."""
    ids = {
        "said": _stored(service, "Priya: I just started at Acme Robotics as a firmware engineer"),
        "old_fact": _stored(service, "Priya works at Acme Robotics as a firmware engineer"),
        "new_fact": _stored(service, "Priya works at Lumen Labs as a compiler engineer"),
        "summary": _stored(service, "Summary: Priya talked about her firmware job at Acme Robotics"),
        "other": _stored(service, "The weather in Lisbon was sunny all week"),
    }
    t_learn, t_change = T0 + timedelta(days=1), T0 + timedelta(days=30)
    _set(connection, ids["old_fact"], kind="fact", learned_at=t_learn, expired_at=t_change, importance=0.8)
    _set(connection, ids["old_fact"], superseded_by=ids["new_fact"], invalid_at=t_change)
    _set(connection, ids["new_fact"], kind="fact", learned_at=t_change, importance=0.9)
    _set(connection, ids["summary"], kind="summary", learned_at=t_change)
    _set(connection, ids["said"], archived_at=t_change, learned_at=T0)
    _set(connection, ids["other"], learned_at=T0)  # as if stored on the day (it was stored today)
    return ids


@pytest.mark.parametrize("mode", MODES)
def test_recall_sees_what_memagent_believes_now(
    service: MemoryService, history: dict[str, int], mode: SearchMode
) -> None:
    found = {m.id for m in service.recall("where does Priya work?", namespace="learn", k=10, mode=mode)}
    # Not the replaced fact, not the archived exchange; everything current, whatever its kind.
    assert history["old_fact"] not in found and history["said"] not in found
    if mode != "text":  # vector and hybrid always fill k from what is in view
        assert found == {history["new_fact"], history["summary"], history["other"]}
    else:
        assert {history["new_fact"], history["summary"]} <= found


@pytest.mark.parametrize("mode", MODES)
def test_recall_as_of_a_past_time(service: MemoryService, history: dict[str, int], mode: SearchMode) -> None:
    then = T0 + timedelta(days=10)  # after the first fact was learnt, before it was replaced
    found = {m.id for m in service.recall("Priya work", namespace="learn", k=10, mode=mode, as_of=then)}
    assert history["old_fact"] in found and history["said"] in found
    assert history["new_fact"] not in found and history["summary"] not in found  # not learnt yet
    before_anything = {
        m.id
        for m in service.recall("Priya work", namespace="learn", k=10, mode=mode, as_of=T0 - timedelta(1))
    }
    assert before_anything == set()  # nothing was learnt yet (created_at stands in for learned_at)


@pytest.mark.parametrize("mode", MODES)
def test_recall_by_kind_and_with_archived(
    service: MemoryService, history: dict[str, int], mode: SearchMode
) -> None:
    facts = service.recall("Priya work", namespace="learn", k=10, mode=mode, kinds=["fact"])
    assert [m.id for m in facts] == [history["new_fact"]]
    both = service.recall("Priya Acme", namespace="learn", k=10, mode=mode, kinds=["exchange", "summary"])
    assert history["said"] not in {m.id for m in both}
    archived = service.recall("Priya Acme", namespace="learn", k=10, mode=mode, include_archived=True)
    assert history["said"] in {m.id for m in archived}
    assert history["old_fact"] not in {m.id for m in archived}  # archived is not expired


def test_hybrid_sides_see_the_same_memories(service: MemoryService, history: dict[str, int]) -> None:
    # The text ranking (a database function) and the vector side apply the same view: nothing hybrid
    # returns is outside what each mode alone may return.
    for kwargs in ({}, {"kinds": ["fact", "summary"]}, {"as_of": T0 + timedelta(days=10)}):
        hybrid = {m.id for m in service.recall("Priya Acme Lumen", namespace="learn", k=10, **kwargs)}
        vector = {m.id for m in service.recall("x", namespace="learn", k=10, mode="vector", **kwargs)}
        assert hybrid <= vector


def test_a_bad_view_is_refused(service: MemoryService) -> None:
    with pytest.raises(InputError, match="kind must be one of exchange, fact, summary, not 'note'"):
        service.recall("anything", kinds=["note"])
    with pytest.raises(InputError, match="out of range"):
        service.recall("anything", as_of=datetime(1, 1, 1, tzinfo=UTC))


def test_purging_keeps_the_history_tables_consistent(
    service: MemoryService, connection: Connection, history: dict[str, int]
) -> None:
    connection.execute(
        text("INSERT INTO memory_sources (memory_id, source_id, namespace) VALUES (:f, :s, 'learn')"),
        {"f": history["new_fact"], "s": history["said"]},
    )
    connection.execute(
        text(
            "INSERT INTO memory_events (namespace, memory_id, action, related_id, reason)"
            " VALUES ('learn', :old, 'update', :new, 'she changed jobs')"
        ),
        {"old": history["old_fact"], "new": history["new_fact"]},
    )
    assert service.purge(namespace="learn") == 5
    left = connection.execute(
        text("SELECT (SELECT count(*) FROM memory_sources), (SELECT count(*) FROM memory_events)")
    ).one()
    assert tuple(left) == (0, 0)


def test_sources_and_events_are_isolated_by_namespace(
    service: MemoryService, history: dict[str, int]
) -> None:
    if not service.unit.isolation().on:
        pytest.skip("isolation is off for this login")
    with service.unit("learn") as store:
        session = store.memories.session
        session.execute(
            text("INSERT INTO memory_sources (memory_id, source_id, namespace) VALUES (:f, :s, 'learn')"),
            {"f": history["new_fact"], "s": history["said"]},
        )
        session.execute(text("INSERT INTO memory_events (namespace, action) VALUES ('learn', 'add')"))
    with service.unit("elsewhere") as store:
        session = store.memories.session
        assert session.execute(text("SELECT count(*) FROM memory_sources")).scalar() == 0
        assert session.execute(text("SELECT count(*) FROM memory_events")).scalar() == 0
    with pytest.raises(DatabaseError, match="row-level security"), service.unit("elsewhere") as store:
        store.memories.session.execute(
            text("INSERT INTO memory_events (namespace, action) VALUES ('learn', 'add')")
        )


def test_facts_carry_their_sources_and_stand_for_them_in_recall(service: MemoryService) -> None:
    turns = service.remember_many(
        [
            "Priya: I started a new job at Lumen Labs last week, writing compilers",
            "Sam: I adopted a grey cat called Pixel",
            "Priya: my sister lives in Porto",
        ],
        namespace="facts",
    )
    said, cat, sister = (t.id for t in turns)
    fact = service.remember_many(
        ["Priya works at Lumen Labs as a compiler engineer (since 2026-11)"],
        namespace="facts",
        kind="fact",
        importance=[0.9],
        sources=[[said]],
    )[0]
    for mode in MODES:
        found = service.recall(
            "Priya works at Lumen Labs as a compiler engineer", namespace="facts", mode=mode
        )
        by_id = {m.id: m for m in found}
        assert fact.id in by_id
        assert by_id[fact.id].kind == "fact" and by_id[fact.id].importance == pytest.approx(0.9)
        assert by_id[fact.id].sources == (said,)
        if mode != "vector":  # the fact stands for the exchange it came from...
            assert said not in by_id
        if mode == "hybrid":  # ...and its place goes to another memory
            assert set(by_id) == {fact.id, cat, sister}
    listed = {m.id: m for m in service.recent(namespace="facts", limit=10)}
    assert listed[fact.id].kind == "fact" and listed[said].kind == "exchange"


def test_a_source_outside_the_namespace_is_refused_and_nothing_is_stored(
    service: MemoryService, connection: Connection
) -> None:
    elsewhere = service.remember("Another tenant's secret plan", namespace="tenant-x").id
    mine = service.remember("Priya: I like sailing", namespace="facts").id
    for bad in (elsewhere, 987654321):
        with pytest.raises(InputError, match=f"source {bad} is not a memory of namespace 'facts'"):
            service.remember_many(
                ["Priya likes sailing"], namespace="facts", kind="fact", sources=[[mine, bad]]
            )
    count = connection.execute(text("SELECT count(*) FROM memories WHERE namespace = 'facts'")).scalar()
    assert count == 1  # the fact was not stored either
    assert connection.execute(text("SELECT count(*) FROM memory_sources")).scalar() == 0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"kind": "note"}, "kind must be one of exchange, fact, summary, not 'note'"),
        ({"importance": [1.5]}, "importance takes one number between 0 and 1 per text"),
        ({"importance": [0.5, 0.5]}, "importance takes one number between 0 and 1 per text"),
        ({"importance": 0.9}, "importance takes one number between 0 and 1 per text"),
        ({"importance": ["high"]}, "importance takes one number between 0 and 1 per text"),
        ({"importance": [None]}, "importance takes one number between 0 and 1 per text"),
        ({"sources": [[1], [2]]}, "sources takes one list of memory ids"),
        ({"sources": [["7"]]}, "sources takes one list of memory ids"),
        ({"sources": [5]}, "sources takes one list of memory ids"),
    ],
)
def test_bad_learning_input_is_refused(
    service: MemoryService, kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(InputError, match=message):
        service.remember_many(["Priya likes sailing"], namespace="facts", **kwargs)  # type: ignore[arg-type]


def test_a_fact_hides_its_exchange_only_when_it_answers_better(service: MemoryService) -> None:
    said = service.remember(
        "Priya: I started at Lumen Labs, and my sister Anya moved to Porto last spring", namespace="own"
    ).id
    works, sister = (
        r.id
        for r in service.remember_many(
            ["Priya works at Lumen Labs", "Priya's sister Anya lives in Porto"],
            namespace="own",
            kind="fact",
            sources=[[said], [said]],
        )
    )
    service.remember_many([f"note {i} about the garden" for i in range(6)], namespace="own")
    # Asked about the sister, the job fact does not stand for the exchange; the sister fact may.
    found = [m.id for m in service.recall("Where did Priya's sister Anya move?", namespace="own", k=5)]
    assert sister in found and (said in found or found.index(sister) == 0)
    # Facts never hide each other: two facts from one exchange are both there, and k places are filled.
    both = service.recall("Where does Priya work, and where does Anya live?", namespace="own", k=5)
    assert {works, sister} <= {m.id for m in both} and len(both) == 5


def test_archived_memories_asked_for_are_not_hidden_by_their_summary(
    service: MemoryService, connection: Connection
) -> None:
    first, second = (
        r.id
        for r in service.remember_many(
            ["Priya: the ferry to Porto leaves at seven", "Priya: the ferry back leaves at nine"],
            namespace="arch",
        )
    )
    summary = service.remember_many(
        ["Summary: Priya's ferry times to Porto and back"],
        namespace="arch",
        kind="summary",
        sources=[[first, second]],
    )[0].id
    connection.execute(
        text("UPDATE memories SET archived_at = now() WHERE id = ANY(:ids)"), {"ids": [first, second]}
    )
    for mode in MODES:
        found = {m.id for m in service.recall("ferry Porto", namespace="arch", mode=mode)}
        assert found == {summary}
        found = {
            m.id for m in service.recall("ferry Porto", namespace="arch", mode=mode, include_archived=True)
        }
        assert found == {summary, first, second}


def test_a_fact_is_not_silently_merged_into_another_memory(service: MemoryService) -> None:
    exchange = service.remember("Priya likes sailing", namespace="same").id
    with pytest.raises(InputError, match=f"already holds this text as memory {exchange} of kind exchange"):
        service.remember_many(["Priya likes sailing"], namespace="same", kind="fact", importance=[0.9])
    source = service.remember("Priya: I sail on the Tagus with my dad", namespace="same").id
    with pytest.raises(InputError, match=f"memory {source} cannot be its own source"):
        service.remember_many(
            ["Priya: I sail on the Tagus with my dad"], namespace="same", sources=[[source]]
        )
    assert {m.kind for m in service.recent(namespace="same", limit=10)} == {"exchange"}


def test_the_database_refuses_links_into_another_namespace(
    service: MemoryService, connection: Connection
) -> None:
    if not service.unit.isolation().on:
        pytest.skip("isolation is off for this login")
    theirs = service.remember("Another tenant's secret plan", namespace="tenant-y").id
    mine = service.remember("Priya: I like sailing", namespace="mine").id
    attempts = [
        f"INSERT INTO memory_sources (memory_id, source_id, namespace) VALUES ({mine}, {theirs}, 'mine')",
        f"INSERT INTO memory_events (namespace, memory_id, action) VALUES ('mine', {theirs}, 'add')",
        f"INSERT INTO memory_events (namespace, related_id, action) VALUES ('mine', {theirs}, 'update')",
        f"UPDATE memories SET superseded_by = {theirs} WHERE id = {mine}",
    ]
    for statement in attempts:  # what a forgetful query of memagent's would do, bypassing link()
        refused = r"row-level security|is not a memory of namespace"
        with pytest.raises(DatabaseError, match=refused), service.unit("mine") as store:
            store.memories.session.execute(text(statement))
    left = connection.execute(
        text("SELECT (SELECT count(*) FROM memory_sources), (SELECT count(*) FROM memory_events)")
    ).one()
    assert tuple(left) == (0, 0)


def test_emptied_statistics_are_removed_by_key(service: MemoryService, connection: Connection) -> None:
    # Revision 0013 replaced the removal the planner turned quadratic (a purged namespace's every word
    # joined with every emptied statistic); the functions still run with their search_path pinned.
    for name in ("delete", "update"):
        source, config = connection.execute(
            text("SELECT prosrc, proconfig FROM pg_proc WHERE proname = :name"),
            {"name": f"memagent_text_stats_{name}"},
        ).one()
        assert "s.lexeme = ANY (gone_lexemes)" in source
        assert any(setting.startswith("search_path=") for setting in config)
    service.remember_many(
        [f"purged note {i} about quinces and {i} lanterns" for i in range(40)], namespace="gone"
    )
    service.purge(namespace="gone")
    left = connection.execute(
        text(
            "SELECT (SELECT count(*) FROM memory_term_stats WHERE namespace = 'gone'),"
            " (SELECT count(*) FROM memory_text_stats WHERE namespace = 'gone')"
        )
    ).one()
    assert tuple(left) == (0, 0)


def test_a_fact_of_a_fact_hides_no_fact(service: MemoryService) -> None:
    said = service.remember("Priya: I moved to Lisbon for the new job at Lumen Labs", namespace="chain").id
    first = service.remember_many(
        ["Priya lives in Lisbon"], namespace="chain", kind="fact", sources=[[said]]
    )[0].id
    second = service.remember_many(
        ["Priya lives in Lisbon, Portugal"], namespace="chain", kind="fact", sources=[[first]]
    )[0].id
    for mode in ("hybrid", "text"):
        found = {m.id for m in service.recall("Priya lives in Lisbon", namespace="chain", mode=mode)}
        assert {first, second} <= found  # only exchanges leave the result, and only for a fact shown


def test_as_of_hides_what_was_not_yet_archived(service: MemoryService, connection: Connection) -> None:
    said = service.remember("Priya: the ferry to Porto leaves at seven", namespace="asof").id
    fact = service.remember_many(
        ["The ferry to Porto leaves at seven"], namespace="asof", kind="fact", sources=[[said]]
    )[0].id
    query = "the ferry to Porto leaves at seven"
    before = {m.id for m in service.recall(query, namespace="asof", mode="text")}
    connection.execute(
        text("UPDATE memories SET archived_at = now() + interval '1 day' WHERE id = :i"), {"i": said}
    )
    later = datetime.now(UTC) + timedelta(hours=1)  # before it was archived
    then = {m.id for m in service.recall(query, namespace="asof", mode="text", as_of=later)}
    assert fact in before and then == before  # being archived later changes nothing about then


def test_a_fact_is_not_stored_onto_an_expired_one(service: MemoryService, connection: Connection) -> None:
    old = service.remember_many(["Priya works at Acme"], namespace="exp", kind="fact")[0].id
    connection.execute(text("UPDATE memories SET expired_at = now() WHERE id = :i"), {"i": old})
    with pytest.raises(InputError, match=f"already holds this text as memory {old}, expired"):
        service.remember_many(["Priya works at Acme"], namespace="exp", kind="fact", importance=[0.9])


def test_links_stay_in_their_namespace_when_every_namespace_is_readable(
    service: MemoryService, connection: Connection
) -> None:
    if not service.unit.isolation().on:
        pytest.skip("isolation is off for this login")
    theirs = service.remember("Another tenant's secret plan", namespace="tenant-z").id
    mine = service.remember("Priya: I like sailing", namespace="mine2").id
    statement = (
        f"INSERT INTO memory_sources (memory_id, source_id, namespace) VALUES ({mine}, {theirs}, 'mine2')"
    )
    with pytest.raises(DatabaseError, match="row-level security"), service.unit("*") as store:
        store.memories.session.execute(text(statement))
    assert connection.execute(text("SELECT count(*) FROM memory_sources")).scalar() == 0


def test_facts_stored_directly_are_recorded_as_changes(
    service: MemoryService, connection: Connection
) -> None:
    said = _stored(service, "Priya: I moved to Porto")
    [fact] = service.remember_many(["Priya lives in Porto"], namespace="learn", kind="fact", sources=[[said]])
    events = connection.execute(
        text("SELECT action, memory_id, reason FROM memory_events WHERE namespace = 'learn'")
    ).all()
    assert [tuple(e) for e in events] == [("add", fact.id, "stored directly")]
    again = service.remember_many(["Priya lives in Porto"], namespace="learn", kind="fact")
    assert again[0].id == fact.id and not again[0].created
    count = connection.execute(text("SELECT count(*) FROM memory_events WHERE namespace = 'learn'"))
    assert count.scalar_one() == 1  # nothing new, nothing recorded
