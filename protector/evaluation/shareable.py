"""A report meant to be shared names files relative to where it was made, never by machine paths.

``/home/alice/task/data/val_256.tar`` becomes ``data/val_256.tar`` when the evaluation ran in
``/home/alice/task``, and ``…/data/val_256.tar`` otherwise (the folder and the file, enough to
recognise them, nothing about the machine). Only text that names a path existing on this
machine is rewritten: Places365 class names such as ``/a/airfield`` look like absolute paths
and are left alone.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

_ABSOLUTE = re.compile(r"(?<![\w./~-])/[^\s:;,'\"()<>|`]+")


def shareable_path(text: str, base: Path | None = None) -> str:
    """`text` (an absolute path) relative to `base` (default: the current directory) or shortened."""
    path = Path(text)
    base = Path.cwd() if base is None else base
    try:
        return path.relative_to(base).as_posix() or "."
    except ValueError:
        pass
    try:
        return Path(os.path.realpath(path)).relative_to(os.path.realpath(base)).as_posix() or "."
    except ValueError:
        tail = path.parts[-2:] if len(path.parts) > 2 else path.parts[-1:]
        return "…/" + "/".join(tail)


def _names_a_local_path(token: str) -> bool:
    path = Path(token.rstrip("."))
    return path.exists() or path.parent.is_dir() and path.parent != Path("/")


def shareable_text(text: str, base: Path | None = None) -> str:
    """Every absolute path in `text` that names something on this machine, rewritten by :func:`shareable_path`."""
    if "/" not in text:
        return text

    def replace(match: re.Match) -> str:
        token = match.group(0)
        stripped = token.rstrip(".")
        if not _names_a_local_path(stripped):
            return token
        return shareable_path(stripped, base) + token[len(stripped):]

    return _ABSOLUTE.sub(replace, text)


def shareable(value: Any, base: Path | None = None) -> Any:
    """`value` (results: dicts, lists, strings, numbers) with every machine path made shareable."""
    if isinstance(value, str):
        return shareable_text(value, base)
    if isinstance(value, dict):
        return {key: shareable(item, base) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [shareable(item, base) for item in value]
    return value
