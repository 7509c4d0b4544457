"""Privacy leakage: does the protected photo still land in a sensitive category?

Pushing the true class out of the top 5 is not yet privacy: a bedroom that becomes "dorm
room" still shows a private, home-like place. These functions measure, from the top-k
class indices of the clean and the protected photo, how often the protected prediction
is still one of the sensitive categories, and still meets the same privacy criterion as
the clean prediction (criteria: :mod:`protector.data.criteria`).

Photos are grouped by their *clean prediction*: photos predicted sensitive before
protection are the ones protection must take out of the list; photos predicted outside it
are reported apart (for them the question is whether protection moved them *into* it).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class PhotoLeak:
    """What one protected photo still reveals.

    Attributes:
        clean_class: clean top-1.
        clean_sensitive: the clean top-1 is a sensitive category.
        top1_sensitive: the protected top-1 is a sensitive category.
        topk_sensitive: some sensitive category is in the protected top-k.
        same_criterion_top1: the protected top-1 meets a criterion the clean top-1 meets.
        same_criterion_topk: some class of the protected top-k does.
    """

    clean_class: int
    clean_sensitive: bool
    top1_sensitive: bool
    topk_sensitive: bool
    same_criterion_top1: bool
    same_criterion_topk: bool


def photo_leak(
    clean_top1: int,
    protected_top: Sequence[int],
    sensitive: Collection[int],
    criteria: Mapping[int, Collection[str]],
) -> PhotoLeak:
    """Leakage of one photo from its clean top-1 and its protected top-k (best first).

    Args:
        clean_top1: the class predicted for the clean photo.
        protected_top: classes predicted for the protected photo, best first (e.g. top 5).
        sensitive: the sensitive class indices.
        criteria: criteria keys of each sensitive class (classes without criteria meet none).

    Example:
        >>> leak = photo_leak(52, [124, 3, 7, 9, 11], {52, 124}, {52: ("home",), 124: ("home", "income")})
        >>> leak.top1_sensitive, leak.same_criterion_top1
        (True, True)
    """
    if not protected_top:
        raise ValueError("protected_top is empty: need at least the protected top-1")
    clean_criteria = set(criteria.get(clean_top1, ()))

    def shares(cls: int) -> bool:
        return bool(clean_criteria.intersection(criteria.get(cls, ())))

    return PhotoLeak(
        clean_class=clean_top1,
        clean_sensitive=clean_top1 in sensitive,
        top1_sensitive=protected_top[0] in sensitive,
        topk_sensitive=any(c in sensitive for c in protected_top),
        same_criterion_top1=shares(protected_top[0]),
        same_criterion_topk=any(shares(c) for c in protected_top),
    )


def _rate(flags: list[bool]) -> float | None:
    return sum(flags) / len(flags) if flags else None


def _rates(leaks: list[PhotoLeak]) -> dict:
    return {
        "n": len(leaks),
        "top1_sensitive": _rate([leak.top1_sensitive for leak in leaks]),
        "topk_sensitive": _rate([leak.topk_sensitive for leak in leaks]),
        "same_criterion_top1": _rate([leak.same_criterion_top1 for leak in leaks]),
        "same_criterion_topk": _rate([leak.same_criterion_topk for leak in leaks]),
    }


def leakage_summary(
    predictions: Sequence[tuple[int, Sequence[int]]],
    sensitive: Mapping[int, str],
    criteria: Mapping[int, Collection[str]],
    criteria_names: Sequence[str] | None = None,
) -> dict:
    """The leakage numbers of one run and one model, as written to results.json.

    Args:
        predictions: per photo (clean top-1, protected top-k best first).
        sensitive: {class index: name} of the sensitive categories.
        criteria: {class index: criteria keys} of the sensitive categories.
        criteria_names: the order of the per-criterion rows (default: sorted keys seen).

    Returns:
        ``k``; ``sensitive`` (photos whose clean top-1 is sensitive): ``n``, ``top1_sensitive``
        (protected top-1 still sensitive), ``topk_sensitive`` (a sensitive class still in the
        protected top-k), ``same_criterion_top1`` / ``_topk`` (the protected top-1 / a class of
        the top-k meets a criterion of the clean top-1); ``other`` (clean top-1 not sensitive):
        ``n``, ``top1_sensitive``, ``topk_sensitive`` (protection moved them into the list);
        ``per_criterion``: one row per criterion over the photos whose clean top-1 meets it,
        with ``still_in_criterion_top1`` / ``_topk`` (the protected top-1 / a class of the top-k
        still meets *this* criterion); ``per_category``: one row per sensitive clean class.
        Rates are None where a group has no photo.
    """
    k = max((len(top) for _, top in predictions), default=0)
    leaks = [photo_leak(clean, top, sensitive, criteria) for clean, top in predictions]
    tops = [top for _, top in predictions]
    flagged = [leak for leak in leaks if leak.clean_sensitive]
    other = [leak for leak in leaks if not leak.clean_sensitive]
    names = list(criteria_names) if criteria_names is not None else sorted({c for cs in criteria.values() for c in cs})

    per_criterion = []
    for name in names:
        members = [(leak, top) for leak, top in zip(leaks, tops) if leak.clean_sensitive
                   and name in criteria.get(leak.clean_class, ())]
        if not members:
            continue
        meets = [[name in criteria.get(c, ()) for c in top] for _, top in members]
        per_criterion.append({
            "criterion": name,
            **{key: value for key, value in _rates([leak for leak, _ in members]).items()
               if key in ("n", "top1_sensitive", "topk_sensitive")},
            "still_in_criterion_top1": _rate([m[0] for m in meets]),
            "still_in_criterion_topk": _rate([any(m) for m in meets]),
        })
    per_category = []
    for cls, cls_name in sensitive.items():
        members = [leak for leak in flagged if leak.clean_class == cls]
        if members:
            per_category.append({"class": cls, "name": cls_name, "criteria": list(criteria.get(cls, ())),
                                 **_rates(members)})
    other_rates = _rates(other)
    return {
        "k": k,
        "sensitive": _rates(flagged),
        "other": {key: other_rates[key] for key in ("n", "top1_sensitive", "topk_sensitive")},
        "per_criterion": per_criterion,
        "per_category": per_category,
    }
