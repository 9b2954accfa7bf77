"""Namespace isolation in the database: the role memagent_app, its grants, and whether this login can use it.

Every unit of work switches to memagent_app (NOBYPASSRLS) under row-level security (revision 0006). That
needs the role to exist, this login to be a member, and the role to hold privileges on memagent's tables.
A login that may not create roles (a managed PostgreSQL, an owner without CREATEROLE) cannot set it up by
itself: memagent then says so, on every run and in `memagent config`, with the statements an administrator
runs to turn isolation on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from sqlalchemy import Connection, text
from sqlalchemy.orm import Session

from memagent.store import exact, text_floor, text_ranking, text_terms
from memagent.validation import ALL_NAMESPACES

APP_ROLE = "memagent_app"
# The tables memagent_app works on (later revisions add theirs here).
TABLES = ("memories", "embedding_space", "embedding_staging", "memory_sources", "memory_events")
# The row-level security policy's condition on a table with a namespace column (revisions 0006, 0011).
VISIBLE = (
    "(namespace = current_setting('memagent.namespace', true)"
    f" OR current_setting('memagent.namespace', true) = '{ALL_NAMESPACES}')"
)


def policy_sql(table: str, check: str | None = None) -> str:
    """Row-level security on a table with a namespace column, as on memories: rows of the transaction's
    namespace only; `check`, a further condition every written row must meet."""
    written = VISIBLE if check is None else f"({VISIBLE} AND {check})"
    return (
        f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY;\n"
        f"CREATE POLICY memagent_namespace ON {table} USING {VISIBLE} WITH CHECK {written};\n"
    )


# Create the role if this login may, and join it; a login without the privilege gets a WARNING, not an error.
CREATE_AND_JOIN_SQL = f"""
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{APP_ROLE}') THEN
        CREATE ROLE {APP_ROLE} NOLOGIN NOBYPASSRLS;
    END IF;
    EXECUTE format('GRANT {APP_ROLE} TO %I', current_user);
EXCEPTION WHEN insufficient_privilege THEN
    RAISE WARNING 'memagent: cannot create or grant {APP_ROLE}; namespaces enforced by queries only';
END
$$
"""

# The functions memagent_app may run: the text ranking (revision 0013's signature, and 0016's with the floor;
# nobody else but its owner may call it), the full-text index's (revision 0017: every write runs it) and the
# exact vector ranking (revision 0029; it runs as its caller, and anyone may call it unless a database's
# default privileges say otherwise).
FUNCTIONS = (text_ranking.VIEW_SIGNATURE, text_floor.SIGNATURE, text_terms.NS_LEXEMES, exact.SIGNATURE)

# The role's privileges on memagent's tables that exist (the tables' owner runs it; idempotent).
GRANT_SQL = f"""
DO $$
DECLARE
    name text;
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{APP_ROLE}') THEN
        EXECUTE format('GRANT USAGE ON SCHEMA %I TO {APP_ROLE}', current_schema());
        FOREACH name IN ARRAY ARRAY[{", ".join(f"'{t}'" for t in TABLES)}] LOOP
            IF to_regclass(name) IS NOT NULL THEN
                EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %I TO {APP_ROLE}', name);
            END IF;
        END LOOP;
        EXECUTE format('GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA %I TO {APP_ROLE}', current_schema());
        FOREACH name IN ARRAY ARRAY[{", ".join(f"'{f}'" for f in FUNCTIONS)}] LOOP
            IF to_regprocedure(name) IS NOT NULL THEN
                EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO {APP_ROLE}', name);
            END IF;
        END LOOP;
    END IF;
END
$$
"""

State = Literal["on", "no-role", "not-member", "no-privileges"]


@dataclass(frozen=True)
class Isolation:
    """Whether units of work can run as memagent_app, and if not, why and what an administrator runs."""

    state: State
    login: str

    @property
    def on(self) -> bool:
        """Row-level security confines every unit of work to its namespace."""
        return self.state == "on"

    def fix(self) -> str:
        """The statements that turn isolation on (then `memagent migrate` grants the tables)."""
        join = f'GRANT {APP_ROLE} TO "{self.login}";'
        if self.state == "no-role":
            return f"CREATE ROLE {APP_ROLE} NOLOGIN NOBYPASSRLS; {join}"
        if self.state == "not-member":
            return join
        return "nothing; the tables' owner runs `memagent migrate`"

    def describe(self) -> str:
        """One line for messages and `memagent config`."""
        if self.on:
            return f"on: row-level security, every unit of work runs as {APP_ROLE}"
        why = {
            "no-role": f"the role {APP_ROLE} does not exist and {self.login} may not create it",
            "not-member": f"{self.login} is not a member of {APP_ROLE} and may not join it",
            "no-privileges": f"{APP_ROLE} has no privileges on memagent's tables yet",
        }[self.state]
        off = f"off: namespaces are separated by memagent's queries only ({why}). To turn isolation on, "
        if self.state == "no-privileges":
            return off + "run `memagent migrate` as the tables' owner."
        return off + f"an administrator runs: {self.fix()} — then run `memagent migrate`."


def isolation(session: Session | Connection) -> Isolation:
    """This login's isolation state."""
    row = session.execute(
        text(
            "SELECT current_user AS login,"
            " EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :role) AS role,"
            " CASE WHEN EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :role)"
            "   THEN pg_has_role(current_user, :role, 'MEMBER') ELSE false END AS member,"
            " CASE WHEN EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :role)"
            "   AND to_regclass('memories') IS NOT NULL"
            "   THEN has_table_privilege(:role, 'memories', 'SELECT') ELSE false END AS granted"
        ),
        {"role": APP_ROLE},
    ).one()
    state: State = "on"
    if not row.role:
        state = "no-role"
    elif not row.member:
        state = "not-member"
    elif not row.granted:
        state = "no-privileges"
    return Isolation(state, str(row.login))


def grant(connection: Connection) -> None:
    """Give memagent_app its privileges on memagent's tables, where this login owns them (after migrating)."""
    connection.execute(text(GRANT_SQL))
