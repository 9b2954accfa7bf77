"""What a call asks memagent to see or to learn, checked: a recall's limits, the view of a read (kinds, as of,
archived) and the kind and importance of what a write stores (revision 0013)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from memagent.config import Settings
from memagent.errors import InputError
from memagent.store.memories import DEFAULT_IMPORTANCE
from memagent.store.scope import KINDS, View
from memagent.validation import clean_date, whole


def clean_view(kinds: Sequence[str] | None, as_of: datetime | None, *, include_archived: bool) -> View:
    """The view a read asks for, checked: known kinds, a valid date."""
    if kinds is not None:
        if isinstance(kinds, str):
            kinds = [kinds]
        unknown = [kind for kind in kinds if kind not in KINDS]
        if unknown or not kinds:
            raise InputError(
                f"kind must be one of {', '.join(KINDS)}, not {unknown[0] if unknown else 'none'!r}."
            )
    return View(
        kinds=None if kinds is None else tuple(dict.fromkeys(kinds)),
        as_of=clean_date(as_of, "as-of date") if as_of is not None else None,
        archived=include_archived,
    )


def learned_kinds(
    count: int, kind: str, importance: Sequence[float] | None, sources: Sequence[Sequence[int]] | None
) -> list[tuple[str, float]]:
    """Each text's kind and importance, checked (sources: one list of ids per text)."""
    if kind not in KINDS:
        raise InputError(f"kind must be one of {', '.join(KINDS)}, not {kind!r}.")
    if importance is None:
        weights = [DEFAULT_IMPORTANCE] * count
    else:
        wrong = f"importance takes one number between 0 and 1 per text ({count})."
        if isinstance(importance, (str, bytes)) or not isinstance(importance, Sequence):
            raise InputError(wrong)
        if not all(isinstance(w, (int, float)) and not isinstance(w, bool) for w in importance):
            raise InputError(wrong)
        weights = [float(w) for w in importance]
        if len(weights) != count or not all(0.0 <= w <= 1.0 for w in weights):
            raise InputError(wrong)
    if sources is not None:
        wrong = f"sources takes one list of memory ids (integers) per text ({count})."
        if isinstance(sources, (str, bytes)) or not isinstance(sources, Sequence) or len(sources) != count:
            raise InputError(wrong)
        for ids in sources:
            if isinstance(ids, (str, bytes)) or not isinstance(ids, Sequence):
                raise InputError(wrong)
            if any(isinstance(i, bool) or not isinstance(i, int) for i in ids):
                raise InputError(wrong)
    return [(kind, weight) for weight in weights]


def refuse_other_kinds(existing: dict[int, str], kind: str) -> None:
    """A text already stored as another kind is not silently taken for this one (nothing is written)."""
    other = next(((memory_id, k) for memory_id, k in sorted(existing.items()) if k != kind), None)
    if other is None:
        return
    if other[1] in ("expired", "archived"):
        raise InputError(f"the namespace already holds this text as memory {other[0]}, {other[1]}.")
    raise InputError(
        f"the namespace already holds this text as memory {other[0]} of kind {other[1]}; "
        f"a {kind} needs words of its own."
    )


def recall_limits(
    settings: Settings, k: int | None, max_distance: float | None, ef_search: int | None
) -> tuple[int, float | None, int]:
    """A recall's k, distance cut-off and ef_search, the settings' where not given, checked."""
    k = whole(k if k is not None else settings.top_k, "k")
    if not 1 <= k <= 1000:
        raise InputError(f"k must be between 1 and 1000, not {k}.")
    max_distance = max_distance if max_distance is not None else settings.max_distance
    ef_search = whole(ef_search if ef_search is not None else settings.ef_search, "ef_search")
    if not 1 <= ef_search <= 1000:
        raise InputError(f"ef_search must be between 1 and 1000, not {ef_search}.")
    if max_distance is not None:
        if isinstance(max_distance, bool) or not isinstance(max_distance, int | float):
            raise InputError(f"max distance must be a number, not {max_distance!r}.")
        max_distance = float(max_distance)  # (a float subclass such as numpy's would reach SQL as its repr)
        if not 0.0 <= max_distance <= 2.0:
            raise InputError(f"max distance must be between 0 and 2 (cosine distance), not {max_distance}.")
    return k, max_distance, ef_search
