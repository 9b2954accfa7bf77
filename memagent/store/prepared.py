"""Server-side prepared statements (SQL PREPARE / EXECUTE) for a statement sent often whose planning costs
more than its run: hybrid recall's fusion of its two sides' rows (memagent.store.search_split), and a
vector ranking of a whole namespace (alone, or with hybrid's fusion), its namespace and k written in
(memagent.store.keyed: one statement per namespace, so that the plan PostgreSQL keeps is that namespace's).

psycopg2 sends every statement as text, so PostgreSQL parses, rewrites and plans it on each call: for the
fusion (an 11 KB statement of a dozen CTEs over the sides' 100 rows) that was 0.8 ms of its 1.7. Prepared
once per connection, after five calls PostgreSQL keeps one generic plan when it costs no more than the
custom ones (`plan_cache_mode` auto), and the call is only run.

What a statement must be to go prepared: one statement, each parameter typed by the statement itself (a
CAST, or a column or expression of the value's type beside it): PREPARE types a parameter by where it
stands, where the text form types the value it was given.

A connection's prepared statements are remembered in its pool record's `info`, which SQLAlchemy clears when
the connection is replaced; at most KEPT per connection (the least recently used is deallocated: each holds
its plans in the server's memory, ~0.3 MB for the fusion). A connection pooler that hands each transaction
to any server connection (PgBouncer's transaction mode) cannot keep them: a statement that turns out not to
be prepared on the server connection it reached is prepared there (with its EXECUTE, in one query string)
and sent once more; when a connection has lost its prepared statements twice, they are turned off for the
engine and statements go as text (Preparing.lost). A statement PostgreSQL (or something between) refuses to
prepare goes as text from then on.
"""

from __future__ import annotations

import hashlib
import re
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from memagent.store.db_errors import unreachable

_PARAMETER = re.compile(r"%\((\w+)\)s")  # psycopg2's named parameter (driver_sql's form)
_INFO_KEY = "memagent.prepared"
_LOST_KEY = "memagent.prepared.lost"
_OFF: weakref.WeakSet[Any] = weakref.WeakSet()  # engines whose server connections cannot keep them
_TEXT_ONLY: weakref.WeakKeyDictionary[Any, set[str]] = weakref.WeakKeyDictionary()  # refused, per engine


@dataclass(frozen=True)
class Prepared:
    """One statement in both forms: PREPARE (its parameters as $1, $2…, their types read off the statement
    by PostgreSQL) and EXECUTE with the same psycopg2 parameters as the text form."""

    name: str
    prepare: str
    execute: str


@lru_cache(maxsize=64)
def prepared(statement: str) -> Prepared:
    """The prepared forms of a statement as psycopg2 takes it (driver_sql: %(name)s, % written %%). Its name
    is a digest of the text, so one name always means one statement, in every process."""
    names: list[str] = []

    def positional(match: re.Match[str]) -> str:
        if match.group(1) not in names:
            names.append(match.group(1))
        return f"${names.index(match.group(1)) + 1}"

    body = _PARAMETER.sub(positional, statement)
    name = "memagent_" + hashlib.blake2s(statement.encode(), digest_size=8).hexdigest()
    arguments = f"({', '.join(f'%({n})s' for n in names)})" if names else ""
    return Prepared(name, f"PREPARE {name} AS {body}", f"EXECUTE {name}{arguments}")


@contextmanager
def as_text(engine: Any) -> Iterator[None]:
    """Statements go as text on this engine inside the block, as where prepared statements do not stay
    (benchmarks/hybrid_sides.py compares the two forms). Not for concurrent use with other callers."""
    was_off = engine in _OFF
    _OFF.add(engine)
    try:
        yield
    finally:
        if not was_off:
            _OFF.discard(engine)


class Preparing:
    """What one pooled connection has prepared (least recently used first), and whether the engine may
    prepare at all."""

    def __init__(self, engine: Any, info: dict[str, Any]) -> None:
        self._engine = engine
        self._info = info
        self._names: dict[str, None] = info.setdefault(_INFO_KEY, {})
        self._keyed: set[str] = info.setdefault(_KEYED_KEY, set())  # never evicted, never evicting

    @property
    def on(self) -> bool:
        return self._engine not in _OFF

    def has(self, name: str) -> bool:
        return name in self._names or name in self._keyed

    def room(self, name: str, keyed: bool) -> bool:
        """Whether the statement may be prepared here: a keyed one (a namespace's own) only while this
        connection holds fewer than KEYED of them (others go as text: no PREPARE and DEALLOCATE per call
        when a service rotates over many namespaces); any other always (the least recently used make room)."""
        return not keyed or name in self._keyed or len(self._keyed) < KEYED

    def used(self, name: str, keyed: bool = False) -> None:
        if keyed:
            self._keyed.add(name)
            return
        self._names.pop(name, None)
        self._names[name] = None

    def forget(self, name: str) -> None:
        self._names.pop(name, None)
        self._keyed.discard(name)

    def to_make_room(self) -> list[str]:
        """The least recently used names beyond KEPT - 1, forgotten here (the caller deallocates them)."""
        gone = list(self._names)[: max(0, len(self._names) - KEPT + 1)]
        for name in gone:
            del self._names[name]
        return gone

    def refuses(self, name: str) -> bool:
        return name in _TEXT_ONLY.get(self._engine, ())

    def refused(self, name: str) -> None:
        """PREPARE of this statement was refused: it goes as text on this engine from now on."""
        _TEXT_ONLY.setdefault(self._engine, set()).add(name)

    def lost(self, name: str) -> None:
        """The statement was not on the server connection any more. Once: deallocated behind the pool's back
        (DISCARD ALL), which drops all of them, so every name this connection recorded is forgotten (each is
        prepared again when next sent, none is found missing again: one reset counts once, however many
        statements the connection held; run_prepared deallocates the ones made since the reset first, so
        that the server holds what this record says); twice on the same connection: prepared statements do
        not stay where they are made (a transaction-mode pooler), so the engine sends text from now on."""
        self._names.clear()
        self._keyed.clear()
        self._info[_LOST_KEY] = self._info.get(_LOST_KEY, 0) + 1
        if self._info[_LOST_KEY] >= 2:
            _OFF.add(self._engine)


def run_prepared(
    cursor: Any, preparing: Preparing, prefix: str, statement: str, values: Any, *, keyed: bool = False
) -> list[Any]:
    """The statement's rows, as a prepared statement on this cursor's connection (in autocommit), with
    `prefix` (UnitOfWork.run's set_config) before it in the same query string; PREPARE and the first EXECUTE
    go together. As text when the engine or the statement cannot be prepared, or when it is keyed (one of a
    namespace's own) and the connection holds KEYED of those already. A dropped connection raises, for the
    caller to replace."""
    import psycopg2  # (loaded with the connection already)

    forms = prepared(statement)
    for _ in range(2):  # at most: found gone (or made already) once, then made again (or run alone)
        if not preparing.on or preparing.refuses(forms.name) or not preparing.room(forms.name, keyed):
            break
        made = not preparing.has(forms.name)
        try:
            if made:
                for old in [] if keyed else preparing.to_make_room():
                    _deallocate(cursor, old)
                cursor.execute(prefix + forms.prepare + "\n;\n" + forms.execute, values)
            else:
                cursor.execute(prefix + forms.execute, values)
            preparing.used(forms.name, keyed)
            return list(cursor.fetchall())
        except psycopg2.Error as exc:
            if unreachable(exc):
                raise
            state = exc.pgcode
            if made and state == _DUPLICATE:  # made before this pool knew it: EXECUTE alone, next
                preparing.used(forms.name, keyed)
                continue
            if not made and state == _NOT_PREPARED:  # not there any more: prepared again (Preparing.lost)
                cursor.execute("DEALLOCATE ALL")  # (any made since the reset: the pool forgets them too)
                preparing.lost(forms.name)
                continue
            if not made and state == _STALE and _retyped(exc):  # a table it reads was altered since
                _deallocate(cursor, forms.name)
                preparing.forget(forms.name)
                continue
            # PREPARE refused (a parameter only its value types, or something between that will not have
            # it): the text, now and from now on. Unless PREPARE worked and its run failed (a privilege is
            # checked at run time, and raises the same class of error): raised, as the text's would be.
            if not made or not (state or "").startswith(_REFUSED) or _deallocate(cursor, forms.name):
                raise
            preparing.refused(forms.name)
            break
    cursor.execute(prefix + statement, values)
    return list(cursor.fetchall())


def _deallocate(cursor: Any, name: str) -> bool:
    """DEALLOCATE the statement on this connection; False when it was not there."""
    import psycopg2

    try:
        cursor.execute(f"DEALLOCATE {name}")
    except psycopg2.Error as exc:
        if exc.pgcode != _NOT_PREPARED:
            raise
        return False
    return True


def _retyped(exc: Any) -> bool:
    """PostgreSQL's "cached plan must not change result type", in any language (by where it is raised)."""
    return getattr(exc.diag, "source_function", None) == "RevalidateCachedQuery" or _RETYPED in str(exc)


KEPT = 8  # prepared statements per connection, at most (besides the keyed ones)
# keyed statements (a namespace's own vector ranking: memagent.store.keyed) per connection: a hybrid
# namespace takes two or more (its vector side alone, and with the fusion over a text side already done; a
# cut-off or archived memories make statements of their own, as each k does for vector recall)
KEYED = 8
_KEYED_KEY = "memagent.prepared.keyed"
_DUPLICATE = "42P05"  # duplicate_prepared_statement
_NOT_PREPARED = "26000"  # invalid_sql_statement_name
_STALE = "0A000"  # feature_not_supported, with this message:
_RETYPED = "cached plan must not change result type"
_REFUSED = ("42", "0A")  # syntax error or access rule violation, feature not supported: PREPARE refused
