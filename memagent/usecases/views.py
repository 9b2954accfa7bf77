"""What a call asks memagent to see or to learn, checked: the view of a read (kinds, as of, archived) and the
kind and importance of what a write stores (revision 0013)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from memagent.errors import InputError
from memagent.store.memories import DEFAULT_IMPORTANCE
from memagent.store.scope import KINDS, View
from memagent.validation import clean_date


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
