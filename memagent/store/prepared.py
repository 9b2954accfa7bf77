"""Server-side prepared statements (SQL PREPARE / EXECUTE) for a statement sent often whose planning costs
more than its run: hybrid recall's fusion of its two sides' rows (memagent.store.search_split).

psycopg2 sends every statement as text, so PostgreSQL parses, rewrites and plans it on each call: for the
fusion (an 11 KB statement of a dozen CTEs over the sides' 100 rows) that was 0.8 ms of its 1.7. Prepared
once per connection, after five calls PostgreSQL keeps one generic plan when it costs no more than the
custom ones (`plan_cache_mode` auto), and the call is only run.

A connection's prepared statements are remembered in its pool record's `info`, which SQLAlchemy clears when
the connection is replaced. A connection pooler that hands each transaction to any server connection
(PgBouncer's transaction mode) cannot keep them: a statement that turns out not to be prepared on the server
connection it reached is prepared there and sent once more; if that fails too, prepared statements are
turned off for the engine and the statement is sent as text (Preparing.off).
"""

from __future__ import annotations

import hashlib
import re
import weakref
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

_PARAMETER = re.compile(r"%\((\w+)\)s")  # psycopg2's named parameter (driver_sql's form)
_INFO_KEY = "memagent.prepared"
_OFF: weakref.WeakSet[Any] = weakref.WeakSet()  # engines whose server connections cannot keep them


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
    arguments = ", ".join(f"%({n})s" for n in names)
    return Prepared(name, f"PREPARE {name} AS {body}", f"EXECUTE {name}({arguments})")


class Preparing:
    """What one pooled connection has prepared, and whether the engine may prepare at all."""

    def __init__(self, engine: Any, info: dict[str, Any]) -> None:
        self._engine = engine
        self._names: set[str] = info.setdefault(_INFO_KEY, set())

    @property
    def on(self) -> bool:
        return self._engine not in _OFF

    def has(self, name: str) -> bool:
        return name in self._names

    def add(self, name: str) -> None:
        self._names.add(name)

    def forget(self, name: str) -> None:
        self._names.discard(name)

    def off(self) -> None:
        """Prepared statements do not stay where made (a transaction-mode pooler): text from now on."""
        _OFF.add(self._engine)


def run_prepared(cursor: Any, preparing: Preparing, prefix: str, statement: str, values: Any) -> list[Any]:
    """The statement's rows, as a prepared statement on this cursor's connection (prepared first if it is
    not yet), with `prefix` (UnitOfWork.run's set_config) before each in the same query string; as text when
    the engine cannot keep prepared statements."""
    forms = prepared(statement)
    for attempt in (1, 2):
        if not preparing.on or forms.name in _TEXT_ONLY:
            break
        if not preparing.has(forms.name):
            try:
                cursor.execute(prefix + forms.prepare, values)
            except Exception as exc:
                if _sqlstate(exc) in _UNTYPED:  # a parameter only its value types: as text, from now on
                    _TEXT_ONLY.add(forms.name)
                    break
                if _sqlstate(exc) != _DUPLICATE:  # (already there: made before this pool knew it)
                    raise
            preparing.add(forms.name)
        try:
            cursor.execute(prefix + forms.execute, values)
            return list(cursor.fetchall())
        except Exception as exc:
            if _sqlstate(exc) == _STALE:  # a table it reads was altered since: prepared anew
                cursor.execute(f"DEALLOCATE {forms.name}")
                preparing.forget(forms.name)
                continue
            if _sqlstate(exc) != _NOT_PREPARED:
                raise
        # Not there: deallocated (DISCARD ALL), so prepared again; not there again: it does not stay on the
        # server connection it was made on (a transaction-mode pooler), so text from now on.
        preparing.forget(forms.name)
        if attempt == 2:
            preparing.off()
    cursor.execute(prefix + statement, values)
    return list(cursor.fetchall())


_DUPLICATE = "42P05"  # duplicate_prepared_statement
_UNTYPED = ("42P18", "42P08")  # indeterminate_datatype, ambiguous_parameter
_TEXT_ONLY: set[str] = set()  # statements PostgreSQL cannot prepare as they are
_NOT_PREPARED = "26000"  # invalid_sql_statement_name
_STALE = "0A000"  # feature_not_supported: "cached plan must not change result type"


def _sqlstate(exc: BaseException) -> str | None:
    return getattr(exc, "pgcode", None)
