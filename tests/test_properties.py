"""Property-based checks of bad and odd input through the service: stored exactly, or refused in one line."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Connection, text

from memagent.errors import InputError
from memagent.usecases.service import MemoryService

pytestmark = pytest.mark.both_drivers

# Any Unicode text, with the awkward parts made likely: NUL, whitespace, emoji, right-to-left, SQL.
awkward = st.one_of(
    st.text(max_size=300),
    st.sampled_from(
        ["\x00", " \t\n", "🧠💾", "שלום עולם", "'); DROP TABLE memories; --", "\u202eevil"]
    ).flatmap(lambda core: st.builds(lambda a, b: a + core + b, st.text(max_size=20), st.text(max_size=20))),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text_in=awkward)
def test_remember_stores_exactly_or_refuses(
    service: MemoryService, connection: Connection, text_in: str
) -> None:
    stripped = text_in.strip()
    if not stripped or "\x00" in stripped:
        with pytest.raises(InputError) as caught:
            service.remember(text_in)
        assert "\n" not in str(caught.value)
        return
    result = service.remember(text_in, namespace="prop")
    stored = connection.execute(
        text("SELECT content FROM memories WHERE id = :id"), {"id": result.id}
    ).scalar_one()
    assert stored == stripped
    assert connection.execute(text("SELECT count(*) FROM memories")).scalar_one() >= 1  # the table survived


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(query=st.text(min_size=1, max_size=200), k=st.integers(min_value=-5, max_value=2000))
def test_recall_never_fails_uncleanly(service: MemoryService, query: str, k: int) -> None:
    service.remember("a fixed memory about lighthouses", namespace="prop")
    try:
        found = service.recall(query, k=k, namespace="prop")
    except InputError as exc:
        assert "\n" not in str(exc)
        assert not query.strip() or "\x00" in query or not 1 <= k <= 1000
        return
    assert len(found) <= k and all(m.namespace == "prop" for m in found)
