"""The exact vector ranking that completes a short index scan (revision 0029, memagent.store.exact): a
function with the scope as parameters, so its conditions must be Scope's and View's exactly."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import numpy as np
from sqlalchemy import Connection, insert, text

from memagent.store import exact
from memagent.store.memories import content_hash
from memagent.store.models import MemoryRow
from memagent.store.scope import Scope, View
from memagent.store.search_sql import text_params
from memagent.store.vector_format import vector_text
from tests.conftest import DIM

T0 = datetime(2026, 3, 1, tzinfo=UTC)


def _memories(connection: Connection) -> None:
    """Memories of every shape a scope tells apart: two namespaces, two sessions, days apart, three kinds,
    learned late, expired, archived, and some with no embedding yet."""
    rng = np.random.default_rng(29)
    rows = []
    for i in range(160):
        day = T0 + timedelta(days=i % 40, minutes=i)
        vector = rng.normal(size=DIM).astype(np.float32)
        rows.append(
            {
                "namespace": "a" if i % 5 else "b",
                "session_id": f"s{i % 3}",
                "content": f"memory {i}",
                "content_hash": content_hash(f"memory {i}"),
                "embedding": None if i % 23 == 0 else vector / np.linalg.norm(vector),
                "embedding_model": "fake-embed-384",
                "kind": ("exchange", "fact", "summary")[i % 3 if i % 7 else 0],
                "created_at": day,
                "learned_at": None if i % 11 == 0 else day + timedelta(days=i % 4),
                "expired_at": day + timedelta(days=5) if i % 6 == 0 else None,
                "archived_at": day + timedelta(days=8) if i % 9 == 0 else None,
                "indexed": i % 4 != 0,
            }
        )
    connection.execute(insert(MemoryRow), rows)


def test_the_function_applies_the_scope_as_scope_and_view_do(connection: Connection) -> None:
    """Over every shape of scope recall takes (session, a date bound, kinds, as of a past time, archived
    ones), the function's nearest are those of the scope's own SQL (Scope.sql) in exact distance order."""
    _memories(connection)
    query = vector_text(np.random.default_rng(30).normal(size=DIM))
    limit = 7
    shapes = itertools.product(
        (None, "s1"),
        (None, T0 + timedelta(days=20)),
        (None, ("fact",), ("exchange", "summary"), ()),
        (None, T0 + timedelta(days=12), T0 + timedelta(days=60)),
        (False, True),
    )
    checked = nonempty = 0
    for session, before, kinds, as_of, archived in shapes:
        view = View(kinds=kinds, as_of=as_of, archived=archived)
        scope = Scope("a", session_id=session, before=before, view=view)
        condition, params = scope.sql()
        expected = (
            connection.execute(
                text(
                    f"SELECT m.id FROM memories m WHERE {condition} AND m.embedding IS NOT NULL"
                    " ORDER BY m.embedding <=> CAST(:qvec AS vector), m.id LIMIT :k"
                ),
                params | {"qvec": query, "k": limit},
            )
            .scalars()
            .all()
        )
        call = exact.CALL.format(query="CAST(:qvec AS vector)", limit=":k")
        found = (
            connection.execute(
                text(f"SELECT m.id FROM {call} m"),
                text_params("a", session, before, view) | {"qvec": query, "k": limit},
            )
            .scalars()
            .all()
        )
        assert found == expected, (session, before, kinds, as_of, archived)
        checked += 1
        nonempty += bool(expected)
    assert checked == 96 and nonempty > 60  # the grid is not vacuous


def test_it_runs_as_its_caller_under_row_level_security(connection: Connection) -> None:
    """It runs as its caller: memagent_app sees only the namespace its transaction is set to."""
    _memories(connection)
    call = exact.CALL.format(query="CAST(:qvec AS vector)", limit="1000")
    params = text_params("a", None, None, View()) | {"qvec": vector_text(np.ones(DIM))}
    owner = connection.execute(text(f"SELECT count(*) FROM {call} m"), params).scalar_one()
    connection.execute(text("SELECT set_config('memagent.namespace', 'b', true)"))
    connection.execute(text("SET LOCAL ROLE memagent_app"))
    assert connection.execute(text(f"SELECT count(*) FROM {call} m"), params).scalar_one() == 0
    connection.execute(text("SELECT set_config('memagent.namespace', 'a', true)"))
    assert connection.execute(text(f"SELECT count(*) FROM {call} m"), params).scalar_one() == owner > 0
