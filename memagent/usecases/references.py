"""What export and import carry of learning (revision 0013): kind, importance, validity, belief, archiving,
extraction, and the links between memories, whose ids are the exporting database's.

A line may hold, beside what it said: kind, importance, invalid_at, learned_at, expired_at, archived_at,
extracted_at (ISO 8601), sources (the ids of the memories a fact or summary came from), superseded_by (the
id of what replaced it), and id (written when another memory refers to this one). A line without them (an
older export, a hand-written file) is a current exchange of the default importance, as before.

Import stores the rows first, batch by batch; the links follow once the whole file is loaded, since a line
may name a memory further down (a replaced fact names its successor). Each file id maps to the stored
memory of its line by (namespace, content hash), which also finds the memory a re-run or a duplicate line
left there. A reference to an id no line of the file carries, or to a memory of another namespace, is
dropped and counted, never an error that would cost the rest.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from memagent.errors import InputError
from memagent.store.bulk import Lifecycle
from memagent.store.memories import DEFAULT_IMPORTANCE
from memagent.store.scope import KINDS
from memagent.store.unit import UnitOfWork
from memagent.validation import clean_date

Key = tuple[str, str]  # (namespace, content hash): a memory of the import, wherever it is stored
_DATES = ("invalid_at", "learned_at", "expired_at", "archived_at", "extracted_at")
# References resolved per transaction when the links are written.
_CHUNK = 5000


def learning_fields(row: Any) -> dict[str, Any]:
    """The learning part of an exported line: kind and importance always, the rest when set."""
    record: dict[str, Any] = {"kind": row.kind, "importance": round(float(row.importance), 6)}
    if row.referenced:
        record["id"] = row.id
    for name in _DATES:
        value = getattr(row, name)
        if value is not None:
            record[name] = value.isoformat()
    if row.superseded_by is not None:
        record["superseded_by"] = row.superseded_by
    if row.sources:
        record["sources"] = list(row.sources)
    return record


@dataclass(frozen=True)
class Learned:
    """What a line of an import file says of learning (defaults: a current exchange, as older files)."""

    kind: str = "exchange"
    importance: float = DEFAULT_IMPORTANCE
    life: Lifecycle | None = None
    id: int | None = None
    sources: tuple[int, ...] = ()
    superseded_by: int | None = None


PLAIN = Learned()


def _file_id(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InputError(f"{what} must be a memory id (a positive integer)")
    return value


def _date(data: dict[str, Any], name: str) -> datetime | None:
    value = data.get(name)
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(str(value))
    except ValueError:
        raise InputError(f"{name} {str(value)[:40]!r} is not an ISO 8601 date") from None
    return clean_date(parsed, name)


def parse_learned(data: dict[str, Any]) -> Learned:
    """The learning fields of one parsed line, validated; raises InputError naming what is wrong."""
    if not any(name in data for name in ("kind", "importance", "id", "sources", "superseded_by", *_DATES)):
        return PLAIN  # an older line: nothing more to read
    kind = data.get("kind") or "exchange"
    if kind not in KINDS:
        raise InputError(f"kind must be one of {', '.join(KINDS)}, not {str(kind)[:20]!r}")
    importance = data.get("importance", DEFAULT_IMPORTANCE)
    if isinstance(importance, bool) or not isinstance(importance, int | float) or not 0 <= importance <= 1:
        raise InputError("importance must be a number between 0 and 1")
    dates = {name: _date(data, name) for name in _DATES}
    sources = data.get("sources") or []
    if not isinstance(sources, list):
        raise InputError("sources must be a list of memory ids")
    return Learned(
        kind=str(kind),
        importance=float(importance),
        life=Lifecycle(**dates) if any(dates.values()) else None,
        id=None if data.get("id") is None else _file_id(data["id"], "id"),
        sources=tuple(_file_id(s, "each of sources") for s in sources),
        superseded_by=None
        if data.get("superseded_by") is None
        else _file_id(data["superseded_by"], "superseded_by"),
    )


@dataclass
class LinkSummary:
    """What restoring the links of an import did."""

    linked: int = 0  # links to sources written
    superseded: int = 0  # replaced memories pointed to their replacement
    dropped: int = 0  # references to a memory not in the file (or not stored, or of another namespace)
    ambiguous: int = 0  # references to an id two lines of the file carry (files joined): which one is meant?


@dataclass
class References:
    """The file ids and references of an import, gathered batch by batch, restored at the end."""

    ids: dict[int, Key] = field(default_factory=dict)
    sources: list[tuple[Key, int]] = field(default_factory=list)  # (memory, file id of a source)
    replaced: list[tuple[Key, int]] = field(default_factory=list)  # (memory, file id of its replacement)
    ambiguous: set[int] = field(default_factory=set)  # ids carried by lines of different memories

    def add(self, key: Key, learned: Learned) -> None:
        """Note a line's id and references (its key: where its memory is stored)."""
        if learned.id is not None:
            self._carry(learned.id, key)
        self.sources.extend((key, source) for source in learned.sources)
        if learned.superseded_by is not None:
            self.replaced.append((key, learned.superseded_by))

    def merge(self, other: References) -> None:
        """Take another batch's ids and references."""
        for file_id, key in other.ids.items():
            self._carry(file_id, key)
        self.ambiguous |= other.ambiguous
        self.sources.extend(other.sources)
        self.replaced.extend(other.replaced)

    def _carry(self, file_id: int, key: Key) -> None:
        """A line's id; one another line of a different memory carries too (two exports joined) names
        neither: references to it are dropped rather than linked to a guess."""
        if self.ids.setdefault(file_id, key) != key:
            self.ambiguous.add(file_id)

    def restore(self, unit: UnitOfWork) -> LinkSummary:
        """Write the links and replacements between the stored memories, in chunks of one transaction."""
        summary = LinkSummary()
        for relation in (self.sources, self.replaced):
            for start in range(0, len(relation), _CHUNK):
                self._restore(unit, relation[start : start + _CHUNK], relation is self.sources, summary)
        return summary

    def _restore(
        self, unit: UnitOfWork, chunk: list[tuple[Key, int]], links: bool, summary: LinkSummary
    ) -> None:
        pairs = [(key, self.ids.get(target)) for key, target in chunk if target not in self.ambiguous]
        summary.ambiguous += len(chunk) - len(pairs)
        by_namespace: dict[str, list[tuple[str, str]]] = defaultdict(list)
        for (namespace, digest), target in pairs:
            if target is None or target[0] != namespace:  # not in the file, or in another namespace
                summary.dropped += 1
            else:
                by_namespace[namespace].append((digest, target[1]))
        # As the login role, as the rows were written: an import spans the namespaces its file names.
        with unit(admin=True) as store:
            for namespace, found in by_namespace.items():
                ids = store.bulk.ids(namespace, list({d for pair in found for d in pair}))
                resolved = [(ids[a], ids[b]) for a, b in found if a in ids and b in ids and a != b]
                summary.dropped += len(found) - len(resolved)  # a line that failed or was never stored
                if links:
                    summary.linked += store.bulk.restore_links(namespace, resolved)
                else:
                    summary.superseded += store.bulk.restore_superseded(resolved)
