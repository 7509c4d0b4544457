"""Is the attack model the task's? Judged from what the photos are, not from a list's file name.

The official ResNet50-places365 classifies every MEPP19test photo right (the set was chosen
so) and 59.60% of MEPP18val (../shared/docs/TASK.md). When every scored photo belongs to one
of these lists, found beside the data (the folder of ``--list``, ``--labels`` or the
originals), the clean top-1 on them should be near that number; far from it, the attack model
or its checkpoint is not the task's, and the report's numbers do not say how a submission
scores. A subset gets a wider tolerance (three binomial standard deviations, at least 10 points).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Iterable

from protector.data.lists import ListFormatError, read_mepp_list

# Clean top-1 (%) of the official ResNet50-places365 on the task's lists; most specific first.
KNOWN_CLEAN_TOP1 = {"MEPP19test": 100.0, "MEPP18val": 59.60}
CLEAN_TOLERANCE_POINTS = 10.0


@dataclass(frozen=True)
class CleanAccuracyCheck:
    """The verdict on one set of photos: which task list they belong to and what the model got there."""

    list_name: str
    expected: float  # percent
    measured: float  # percent
    photos: int
    tolerance: float  # percentage points

    @property
    def far(self) -> bool:
        return abs(self.measured - self.expected) > self.tolerance

    def warning(self, model: str) -> str:
        subset = "" if self.photos >= 600 and self.list_name == "MEPP19test" else f" ({self.photos} of its photos)"
        return (f"clean top-1 of {model} on these {self.list_name} photos{subset} is {self.measured:.1f}%, but the "
                f"task's ResNet50-places365 gets {self.expected:.2f}% on {self.list_name}: the attack model or its "
                "checkpoint is probably not the task's, and these numbers do not say how the submission will score")


def task_list_names(places: Iterable[Path | None]) -> dict[str, set[str]]:
    """The photo names (base names) of each known task list found in `places` (files: their folder).

    A list that cannot be read is skipped: this check is advice, never a reason to stop.
    """
    found: dict[str, set[str]] = {}
    folders = []
    for place in places:
        if place is None:
            continue
        folder = Path(place) if Path(place).is_dir() else Path(place).parent
        if folder not in folders:
            folders.append(folder)
    for stem in KNOWN_CLEAN_TOP1:
        for folder in folders:
            path = folder / f"{stem}.csv"
            if path.is_file():
                try:
                    found[stem] = {PurePosixPath(e.name).name for e in read_mepp_list(path, strict=False).entries}
                except (ListFormatError, OSError, UnicodeDecodeError):
                    continue
                break
    return found


def check_clean_accuracy(results: list[tuple[str, bool]], lists: dict[str, set[str]]) -> CleanAccuracyCheck | None:
    """The check for photos ``(name, clean top-1 right)``: None when they are not all in one known list.

    Example:
        >>> check_clean_accuracy([("Places365_val_00000013.jpg", False)], {"MEPP19test": {"Places365_val_00000013.jpg"}}).far
        True
    """
    if not results:
        return None
    names = {PurePosixPath(name).name for name, _ in results}
    for stem, expected in KNOWN_CLEAN_TOP1.items():
        if stem in lists and names <= lists[stem]:
            measured = 100.0 * sum(right for _, right in results) / len(results)
            p = expected / 100.0
            spread = 300.0 * math.sqrt(p * (1 - p) / len(results))
            return CleanAccuracyCheck(stem, expected, measured, len(results), max(CLEAN_TOLERANCE_POINTS, spread))
    return None
