"""Which folders a classifier's module may be imported from: the user's word on the command line.

A ``search_path`` puts a folder first on ``sys.path``; a module there with an allowed name
(``squeezenet_places.py``) runs on import, whatever the class check says afterwards. So a
folder is used only when it is the stand-in's own (``../shared/standin`` beside the repository,
part of the project's set-up) or the person running the command named it on the command line
(``--classifier-path DIR`` of protect/evaluate/accuracy, ``--allow-search-path DIR`` of
``train``). A config file cannot consent for itself: the consent lives in a context variable
that only command-line code sets.
"""

from __future__ import annotations

import contextlib
from contextvars import ContextVar
from pathlib import Path
from typing import Iterable, Iterator

# The stand-in attack model's folder, beside the repository (see ../shared/standin/README.md).
STANDIN_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "standin"
ALLOW_SEARCH_PATH_FLAG = "--allow-search-path"

_CONSENTED: ContextVar[frozenset[Path]] = ContextVar("consented_search_paths", default=frozenset())


class SearchPathError(ValueError):
    """A search path that the command line did not allow."""


def resolved(folder: str | Path) -> Path:
    """The folder as compared: user-expanded, absolute, links resolved (relative to the current directory)."""
    return Path(folder).expanduser().resolve()


def is_allowed(folder: str | Path) -> bool:
    """Whether `folder` is the stand-in's or one the command line allowed in this context."""
    path = resolved(folder)
    return path == STANDIN_DIR.resolve() or path in _CONSENTED.get()


def require_allowed(folder: str | Path, where: str = "search_path") -> Path:
    """The resolved folder, or SearchPathError naming the flag that allows it."""
    if not is_allowed(folder):
        raise SearchPathError(
            f"{where} {folder}: a folder put first on sys.path runs any module there with an allowed name "
            f"when it is imported; if you trust it, add {ALLOW_SEARCH_PATH_FLAG} {folder} to the command line "
            "(protect, evaluate and accuracy take it as --classifier-path)"
        )
    return resolved(folder)


@contextlib.contextmanager
def allow_search_paths(folders: Iterable[str | Path | None]) -> Iterator[None]:
    """Within the block, the given folders (from the command line) may be search paths."""
    added = frozenset(resolved(f) for f in folders if f is not None)
    token = _CONSENTED.set(_CONSENTED.get() | added)
    try:
        yield
    finally:
        _CONSENTED.reset(token)
