"""forget: one memory deleted by id, in its namespace only, under row-level security (in a rolled-back
transaction; the MCP server's `forget` tool is this use case)."""

from __future__ import annotations

import pytest
from sqlalchemy import Connection, text

from memagent.errors import InputError
from memagent.usecases.forget import forget
from memagent.usecases.service import MemoryService

pytestmark = pytest.mark.both_drivers


def test_forget_deletes_one_memory_and_its_links(service: MemoryService, connection: Connection) -> None:
    """The memory is gone, a fact that came from it loses the link, the rest stays."""
    kept = service.remember("The user lives in Lyon", namespace="a").id
    gone = service.remember("The user has a cat named Miso", namespace="a").id
    fact = service.remember_many(["User has a cat"], namespace="a", kind="fact", sources=[[gone]])[0].id
    record = forget(service, gone, namespace="a")
    assert record.id == gone and record.content == "The user has a cat named Miso"
    assert {m.id for m in service.recent(namespace="a", limit=10)} == {kept, fact}
    links = text("SELECT count(*) FROM memory_sources WHERE source_id = :id")
    assert connection.execute(links, {"id": gone}).scalar_one() == 0
    with pytest.raises(InputError, match=f"no memory {gone} in namespace 'a'"):
        forget(service, gone, namespace="a")


def test_forget_never_reaches_another_namespace(service: MemoryService) -> None:
    """Another namespace's id is refused with the same words as an id that does not exist."""
    theirs = service.remember("Bob's locker code is 4711", namespace="b").id
    with pytest.raises(InputError, match=f"no memory {theirs} in namespace 'a'"):
        forget(service, theirs, namespace="a")
    assert [m.id for m in service.recent(namespace="b")] == [theirs]
    for bad in (0, -5, 2**63, True, "7"):
        with pytest.raises(InputError, match="a memory id is a whole number"):
            forget(service, bad, namespace="a")  # type: ignore[arg-type]
