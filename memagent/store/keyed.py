"""A namespace's own vector statement: its namespace and limit written in, for a plan PostgreSQL can keep.

A vector ranking of a whole namespace (no session, date bound, kinds or past time) — vector recall, hybrid's
vector side, and hybrid's vector side with the fusion over a text side already done — goes as a
prepared statement of its own per namespace and k (or depth), both written into it as literals: PostgreSQL
then keeps one generic plan for it (plan_cache_mode auto chose it in 396 of 401 calls), the plan a fresh
one would be, and the call is no longer planned (0.8 of the statement's 1.5 ms server time at 110k x 1536).
With the namespace and the limit as parameters, the kept plan is one for every namespace, costed on an average
namespace and an unknown limit: it read the 100k namespace by its b-tree, 395 ms against 3
(docs/benchmarks.md). A session, a date bound, kinds or a past time stay parameters and out of
this: their generic estimate could keep a plan that suits one value and not another. Only namespaces of
plain characters (letters, digits, _ . - @ / and a colon after a letter, digit or _) are written so:
nothing in them needs quoting, and nothing reads as a parameter; any other goes as text, as before. A
connection keeps at most prepared.KEYED of these (the first it meets), and sends the others as text.
"""

from __future__ import annotations

import re
from functools import lru_cache

from memagent.store.scope import Scope, View

_LITERAL_NAMESPACE = re.compile(r"[A-Za-z0-9_.@/-]+(?:(?<=[A-Za-z0-9_]):[A-Za-z0-9_.@/-]*)*", re.ASCII)


def keyed_scope(scope: Scope) -> bool:
    """Whether a vector ranking of this scope goes prepared, its namespace and limit written in."""
    view = scope.view or View()
    whole = scope.session_id is None and scope.before is None and view.kinds is None and view.as_of is None
    return whole and _LITERAL_NAMESPACE.fullmatch(scope.namespace) is not None


@lru_cache(maxsize=256)
def literal(sql: str, namespace: str, **numbers: int) -> str:
    """The statement with its namespace and `numbers` (parameter name: value) written in as literals, in one
    pass over the statement's own parameters (text()'s form: a colon not after a word character or another
    colon), so that nothing written in is read again ("team:k" stays "team:k"). Kept per statement,
    namespace and numbers: a hybrid recall asks for two of these each time its statement is built (twice
    per recall), 0.16 ms of regular expression over 5 KB of SQL for the same text every time."""
    values = {"scope_namespace": f"'{namespace}'"} | {
        name: str(int(value)) for name, value in numbers.items()
    }
    names = "|".join(map(re.escape, values))
    return re.sub(rf"(?<![:\w]):({names})\b(?!:)", lambda found: values[found.group(1)], sql)
