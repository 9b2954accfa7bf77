"""Forget one memory by id, in one namespace: a unit of work under row-level security."""

from __future__ import annotations

from memagent.errors import InputError
from memagent.records import MemoryRecord
from memagent.usecases.service import MemoryService

# PostgreSQL's bigint: an id outside it cannot exist, and would fail in the driver rather than say so.
_MAX_ID = 2**63 - 1


def forget(service: MemoryService, memory_id: int, *, namespace: str | None = None) -> MemoryRecord:
    """Delete the memory `memory_id` of the namespace and return it (its links and events go with it).

    An id that is not a memory of this namespace — another namespace's, or none at all — is refused with
    the same InputError, so the answer does not tell whether another namespace holds it.
    """
    if isinstance(memory_id, bool) or not isinstance(memory_id, int) or not 1 <= memory_id <= _MAX_ID:
        raise InputError(f"a memory id is a whole number from 1 to {_MAX_ID}, not {memory_id!r}.")
    scope = service.scope(namespace)
    with service.unit(scope.namespace) as store:
        forgotten = store.memories.delete_one(scope.namespace, memory_id)
    if forgotten is None:
        raise InputError(f"no memory {memory_id} in namespace {scope.namespace!r}.")
    return forgotten
