"""The ten privacy criteria of the task and which sensitive category meets which.

The task lists 60 privacy-sensitive Places365 categories (``MEPP18senscats.txt``) and ten
criteria they were chosen by, but not which category meets which criterion. The mapping
shipped in ``protector/data/privacy_criteria.csv`` is this project's own judgement from the
task's text (its header says so); ``--criteria FILE`` on `protector evaluate` replaces it.

File format: ``#`` comment lines, a header ``category,index,criteria``, then one row per
category: ``/b/bedroom,52,home;no_street_clothes`` (criteria keys of :data:`CRITERIA`,
separated by ``;``, at least one).
"""

from __future__ import annotations

import csv
from importlib import resources
from pathlib import Path
from typing import NamedTuple

from protector.limits import MAX_LIST_BYTES, FileTooLargeError
from protector.paths import NotAFileError, read_regular_file

# Keys and the task's wording (2019 task README).
CRITERIA: dict[str, str] = {
    "home": "places in the home",
    "vacation": "places far away from the home (typical vacation places)",
    "children": "places typical for children",
    "religion": "places related to religion",
    "health": "places related to people's health",
    "alcohol": "places related to alcohol consumption",
    "no_street_clothes": "places in which people do not typically wear street clothes",
    "income": "places related to people's living conditions/income",
    "security": "places related to security",
    "military": "places related to military",
}

PACKAGED_NAME = "privacy_criteria.csv"
_HEADER = ["category", "index", "criteria"]


class PrivacyCriteriaError(ValueError):
    """A criteria file is malformed or does not cover the sensitive categories; names file and line."""


class SensitiveCategory(NamedTuple):
    """One row of a criteria file: Places365 name, index and the criteria keys it meets."""

    name: str
    index: int
    criteria: tuple[str, ...]


def _packaged_text() -> tuple[str, str]:
    resource = resources.files("protector.data") / PACKAGED_NAME
    return resource.read_text(encoding="utf-8"), f"protector/data/{PACKAGED_NAME} (packaged)"


def read_privacy_criteria(path: str | Path | None = None) -> dict[int, SensitiveCategory]:
    """Read a criteria file (default: the packaged mapping) into {Places365 index: category}.

    Raises:
        PrivacyCriteriaError: no header, a row without three fields, an index that is not an
            integer >= 0, an unknown or missing criterion, a category or index given twice.
        FileNotFoundError: `path` does not exist.

    Example:
        >>> read_privacy_criteria()[52]
        SensitiveCategory(name='/b/bedroom', index=52, criteria=('home', 'no_street_clothes'))
    """
    if path is None:
        text, where = _packaged_text()
    else:
        try:
            text = read_regular_file(path, MAX_LIST_BYTES, "criteria file").decode("utf-8-sig")
        except FileNotFoundError:
            raise FileNotFoundError(f"{path}: privacy criteria file not found") from None
        except NotAFileError as err:  # a FIFO would block forever, a folder reads as nothing
            raise PrivacyCriteriaError(f"{err}; give a criteria file (category,index,criteria lines)") from None
        except FileTooLargeError as err:
            raise PrivacyCriteriaError(str(err)) from None
        except OSError as err:
            raise PrivacyCriteriaError(f"{path}: cannot be read ({err.strerror or err})") from None
        except UnicodeDecodeError as err:
            raise PrivacyCriteriaError(f"{path}: not UTF-8 text (byte {err.start})") from None
        where = str(path)
    rows = [(n, line) for n, line in enumerate(text.splitlines(), start=1)
            if line.strip() and not line.lstrip().startswith("#")]
    if not rows or [f.strip() for f in rows[0][1].split(",")] != _HEADER:
        raise PrivacyCriteriaError(f"{where}: the first line that is not a comment must be {','.join(_HEADER)}")
    by_index: dict[int, SensitiveCategory] = {}
    names: set[str] = set()
    for line_no, line in rows[1:]:
        fields = [f.strip() for f in next(csv.reader([line]))]
        if len(fields) != 3:
            raise PrivacyCriteriaError(f"{where}:{line_no}: expected category,index,criteria, got {line!r}")
        name, index_text, criteria_text = fields
        if not index_text.isdigit():
            raise PrivacyCriteriaError(f"{where}:{line_no}: index {index_text!r} is not an integer >= 0")
        index = int(index_text)
        criteria = tuple(c.strip() for c in criteria_text.split(";") if c.strip())
        unknown = [c for c in criteria if c not in CRITERIA]
        if not criteria or unknown:
            raise PrivacyCriteriaError(f"{where}:{line_no}: {name}: criteria must be one or more of "
                                       f"{', '.join(CRITERIA)} separated by ';', got {criteria_text!r}")
        if len(set(criteria)) != len(criteria):
            raise PrivacyCriteriaError(f"{where}:{line_no}: {name}: a criterion is given twice")
        if name in names or index in by_index:
            raise PrivacyCriteriaError(f"{where}:{line_no}: category {name!r} or index {index} given twice")
        names.add(name)
        by_index[index] = SensitiveCategory(name, index, criteria)
    if not by_index:
        raise PrivacyCriteriaError(f"{where}: no categories")
    return by_index


def criteria_of_senscats(senscats: dict[int, str], mapping: dict[int, SensitiveCategory]) -> dict[int, tuple[str, ...]]:
    """The criteria of every sensitive category, matched by name: {index: criteria keys}.

    Every category of `senscats` (from :func:`~protector.data.lists.read_senscats`) must be in
    the mapping under the same name and index; categories of the mapping that are not in
    `senscats` are left out (the senscats list decides what is sensitive).

    Raises:
        PrivacyCriteriaError: a sensitive category has no criteria, or a different index.
    """
    by_name = {category.name: category for category in mapping.values()}
    missing = [name for name in senscats.values() if name not in by_name]
    if missing:
        raise PrivacyCriteriaError(
            f"{len(missing)} sensitive categor{'y has' if len(missing) == 1 else 'ies have'} no privacy criteria: "
            f"{', '.join(missing[:10])}{' ...' if len(missing) > 10 else ''} (give a criteria file that covers "
            "them with --criteria; the format is that of protector/data/privacy_criteria.csv)")
    moved = [f"{name} is {index} in the senscats list but {by_name[name].index} in the criteria file"
             for index, name in senscats.items() if by_name[name].index != index]
    if moved:
        raise PrivacyCriteriaError("the criteria file and the senscats list disagree: " + "; ".join(moved[:5]))
    return {index: by_name[name].criteria for index, name in senscats.items()}
