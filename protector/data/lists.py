"""Parsers for every list format of the task, quirks included.

Formats (all UTF-8, with or without BOM, LF or CRLF, blank lines ignored, fields stripped):

- MEPP lists: ``"Places365_val_00000013.jpg","49"`` (MEPP18val, quoted), quoted names only
  (MEPP18test, MEPP18test_manual), bare names (MEPP19test), ``name,label`` (MEPP19test_manual).
- ``places365_val.txt``: ``Places365_val_00000001.jpg 165``.
- ``categories_places365.txt`` / ``MEPP18senscats.txt``: ``/a/airfield 0``.
- A user's table: CSV or TSV whose header has a ``file`` column and optionally ``label``
  (``../shared/standin/images.tsv``).

Labels are 0-based Places365 indices; an empty label or ``-1`` means "unknown" and becomes
``None``. Every name goes through :func:`protector.paths.safe_relative_name`.

Error policy:

- Problems with the file as a whole (not UTF-8, no usable header, a category list where an
  image list was expected) always raise :class:`ListFormatError`.
- Problems with one line (wrong number of fields, a label that is not an integer >= -1, a
  name escaping the root, a duplicate name) raise :class:`ListFormatError` naming the file
  and line when ``strict=True`` (the default). With ``strict=False`` the parser keeps going
  and returns those lines in :attr:`ParsedList.rejected`, so a batch job can protect every
  good file and report the bad lines.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Literal, NamedTuple, overload

from protector.limits import MAX_LIST_BYTES, FileTooLargeError
from protector.paths import NotAFileError, UnsafePathError, read_regular_file, safe_relative_name

# Labels are class indices; anything beyond int32 is a typo, not a class.
_MAX_LABEL = 2**31 - 1
_DIGITS = re.compile(r"[0-9]+")
_CLASS_LINE = re.compile(r"(\S+)\s+(\S+)")


class ListFormatError(ValueError):
    """A list file is malformed; the message names the file and, where it applies, the line."""


class ListEntry(NamedTuple):
    """One image of a list: its name relative to the image root and its label (None = unknown)."""

    name: str
    label: int | None


class RejectedLine(NamedTuple):
    """A line that `strict=False` parsing skipped: 1-based line number, raw text, reason."""

    line_no: int
    raw: str
    reason: str


class ParsedList(NamedTuple):
    """Result of a non-strict parse: the good entries in file order and the rejected lines."""

    entries: list[ListEntry]
    rejected: list[RejectedLine]


class _LineError(Exception):
    """A problem confined to one line; turned into ListFormatError or a RejectedLine."""


# ---------------------------------------------------------------- reading text


def _read_text(path: str | Path) -> str:
    path = Path(path)
    try:
        data = read_regular_file(path, MAX_LIST_BYTES, "list file")
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: list file not found") from None
    except FileTooLargeError as err:
        raise ListFormatError(str(err)) from None
    except NotAFileError as err:
        raise ListFormatError(f"{err}; give a list file") from None
    except OSError as err:
        raise ListFormatError(f"{path}: cannot be read ({err.strerror or err})") from None
    try:
        # utf-8-sig drops the BOM that Windows editors put in front (MEPP18senscats.txt).
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise ListFormatError(f"{path}: not UTF-8 text (byte {err.start}: {err.reason})") from None


def _lines(text: str) -> Iterator[tuple[int, str]]:
    """Non-blank lines with their 1-based numbers; CR, LF and CRLF all end a line."""
    for line_no, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            yield line_no, line


def _csv_rows(
    lines: Iterator[tuple[int, str]], delimiter: str
) -> Iterator[tuple[int, str, list[str] | _LineError]]:
    """(line_no, raw line, stripped fields or the reason they could not be read) per line.

    Each physical line is parsed on its own: list names never contain newlines, and a stray
    quote then spoils one line instead of swallowing the rest of the file.
    """
    for line_no, line in lines:
        # csv's own strict mode refuses `"a.jpg" , "3"`; the lenient mode accepts spaces around
        # quoted fields but would swallow an unclosed quote, hence the count.
        if line.count('"') % 2:
            yield line_no, line, _LineError("cannot parse the line (unbalanced quotes)")
            continue
        try:
            fields = next(csv.reader([line], delimiter=delimiter, skipinitialspace=True))
        except (csv.Error, StopIteration) as err:
            yield line_no, line, _LineError(f"cannot parse the line ({err})")
            continue
        yield line_no, line, [f.strip() for f in fields]


# ------------------------------------------------------------ field helpers


def _parse_label(text: str) -> int | None:
    text = text.strip()
    if text in ("", "-1"):
        return None
    if not _DIGITS.fullmatch(text) or int(text) > _MAX_LABEL:
        raise _LineError(f"label {text!r} is not a class index (an integer >= 0, or -1/empty for unknown)")
    return int(text)


def _parse_name(text: str) -> str:
    try:
        return safe_relative_name(text)
    except UnsafePathError as err:
        raise _LineError(str(err)) from None


class _Collector:
    """Gathers entries, catches duplicates, and applies the strict/lenient policy."""

    def __init__(self, path: Path, strict: bool):
        self.path = path
        self.strict = strict
        self.entries: list[ListEntry] = []
        self.rejected: list[RejectedLine] = []
        self._first_line: dict[str, int] = {}

    def add(self, line_no: int, raw: str, parse) -> None:
        try:
            name, label = parse()
            if name in self._first_line:
                raise _LineError(f"duplicate name {name!r} (first on line {self._first_line[name]})")
        except _LineError as err:
            if self.strict:
                raise ListFormatError(f"{self.path}:{line_no}: {err}") from None
            self.rejected.append(RejectedLine(line_no, raw, str(err)))
            return
        self._first_line[name] = line_no
        self.entries.append(ListEntry(name, label))

    def result(self) -> list[ListEntry] | ParsedList:
        return self.entries if self.strict else ParsedList(self.entries, self.rejected)


# ------------------------------------------------------------------ parsers


@overload
def read_mepp_list(path: str | Path, strict: Literal[True] = ...) -> list[ListEntry]: ...
@overload
def read_mepp_list(path: str | Path, strict: Literal[False]) -> ParsedList: ...
def read_mepp_list(path: str | Path, strict: bool = True) -> list[ListEntry] | ParsedList:
    """Read a MEPP list: one image per line, ``name`` or ``name,label``, quoted or not.

    All lines of a file must have the same number of fields (the first line decides).

    Example:
        >>> read_mepp_list("MEPP18val.csv")[0]
        ListEntry(name='Places365_val_00000013.jpg', label=49)
    """
    path = Path(path)
    return _parse_mepp(path, _read_text(path), strict)


def _parse_mepp(path: Path, text: str, strict: bool) -> list[ListEntry] | ParsedList:
    collector = _Collector(path, strict)
    width: int | None = None
    for line_no, raw, fields in _csv_rows(_lines(text), ","):
        if width is None:
            # The first line decides the format of the whole file, so it must be readable.
            if isinstance(fields, _LineError) or len(fields) not in (1, 2):
                got = fields if isinstance(fields, _LineError) else f"{len(fields)} fields"
                raise ListFormatError(f"{path}:{line_no}: expected 'name' or 'name,label', got {got} in {raw!r}")
            width = len(fields)

        def parse(fields=fields, expected=width):
            if isinstance(fields, _LineError):
                raise fields
            if len(fields) != expected:
                raise _LineError(f"expected {expected} field(s) like the first line, got {len(fields)}")
            return _parse_name(fields[0]), (_parse_label(fields[1]) if expected == 2 else None)

        collector.add(line_no, raw, parse)
    return collector.result()


def read_places365_val(path: str | Path) -> dict[str, int]:
    """Read ``places365_val.txt`` (``Places365_val_00000001.jpg 165``) into name -> label.

    Raises:
        ListFormatError: a line without exactly a name and a label >= 0, or a duplicate name.

    Example:
        >>> read_places365_val("places365_val.txt")["Places365_val_00000001.jpg"]
        165
    """
    path = Path(path)
    entries = _parse_places_entries(path, _read_text(path), strict=True, require_label=True)
    return {name: label for name, label in entries}


def _read_class_lines(path: Path) -> dict[int, str]:
    """``/a/airfield 0`` lines -> {index: name}, refusing repeated indices or names."""
    by_index: dict[int, str] = {}
    index_of: dict[str, int] = {}
    for line_no, line in _lines(_read_text(path)):
        match = _CLASS_LINE.fullmatch(line.strip())
        try:
            if match is None:
                raise _LineError(f"expected '/x/category index', got {line!r}")
            name, index_text = match.groups()
            index = _parse_label(index_text)
            if index is None:
                raise _LineError(f"index {index_text!r} is not an integer >= 0")
            if index in by_index:
                raise _LineError(f"index {index} given twice (also {by_index[index]!r})")
            if name in index_of:
                raise _LineError(f"category {name!r} given twice (also index {index_of[name]})")
        except _LineError as err:
            raise ListFormatError(f"{path}:{line_no}: {err}") from None
        by_index[index] = name
        index_of[name] = index
    return by_index


def read_categories(path: str | Path) -> list[str]:
    """Read ``categories_places365.txt`` into class names in index order.

    Raises:
        ListFormatError: malformed line, or indices that are not exactly 0..N-1.

    Example:
        >>> read_categories("categories_places365.txt")[52]
        '/b/bedroom'
    """
    path = Path(path)
    by_index = _read_class_lines(path)
    if not by_index:
        raise ListFormatError(f"{path}: no categories")
    missing = sorted(set(range(len(by_index))) - set(by_index))
    if missing:
        raise ListFormatError(
            f"{path}: indices must be 0..{len(by_index) - 1} without gaps; missing {missing[:10]}"
        )
    return [by_index[i] for i in range(len(by_index))]


def read_senscats(path: str | Path) -> dict[int, str]:
    """Read ``MEPP18senscats.txt`` (BOM, trailing spaces) into {Places365 index: name}."""
    path = Path(path)
    by_index = _read_class_lines(path)
    if not by_index:
        raise ListFormatError(f"{path}: no categories")
    return dict(sorted(by_index.items()))


@overload
def read_labels_table(path: str | Path, strict: Literal[True] = ...) -> list[ListEntry]: ...
@overload
def read_labels_table(path: str | Path, strict: Literal[False]) -> ParsedList: ...
def read_labels_table(path: str | Path, strict: bool = True) -> list[ListEntry] | ParsedList:
    """Read a CSV or TSV table with a header naming a ``file`` and optionally a ``label`` column.

    The delimiter is a tab if the header has one, else a comma. Other columns are ignored.
    Label ``-1`` or empty means unknown (None).

    Example:
        >>> read_labels_table("images.tsv")[0]
        ListEntry(name='bsds500_100075.jpg', label=None)
    """
    path = Path(path)
    return _parse_table(path, _read_text(path), strict)


def _header_columns(line: str) -> tuple[str, list[str]] | None:
    delimiter = "\t" if "\t" in line else ","
    try:
        fields = next(csv.reader([line], delimiter=delimiter))
    except (csv.Error, StopIteration):
        return None
    return delimiter, [f.strip().lower() for f in fields]


def _parse_table(path: Path, text: str, strict: bool) -> list[ListEntry] | ParsedList:
    lines = _lines(text)
    first = next(lines, None)
    if first is None:
        raise ListFormatError(f"{path}: empty table (expected a header with a 'file' column)")
    header_no, header_line = first
    parsed = _header_columns(header_line)
    if parsed is None or "file" not in parsed[1]:
        raise ListFormatError(
            f"{path}:{header_no}: the header must name a 'file' column (and optionally 'label'), "
            f"got {header_line!r}"
        )
    delimiter, columns = parsed
    for column in ("file", "label"):
        if columns.count(column) > 1:
            raise ListFormatError(f"{path}:{header_no}: column {column!r} appears twice")
    file_col = columns.index("file")
    label_col = columns.index("label") if "label" in columns else None

    collector = _Collector(path, strict)
    for line_no, raw, fields in _csv_rows(lines, delimiter):

        def parse(fields=fields):
            if isinstance(fields, _LineError):
                raise fields
            if len(fields) != len(columns):
                raise _LineError(f"expected {len(columns)} fields like the header, got {len(fields)}")
            label = _parse_label(fields[label_col]) if label_col is not None else None
            return _parse_name(fields[file_col]), label

        collector.add(line_no, raw, parse)
    return collector.result()


# ------------------------------------------------------------------ sniffing


def _sniff(text: str) -> str:
    """Name the format of a list from its first non-blank line."""
    first = next(_lines(text), None)
    if first is None:
        return "empty"
    line = first[1].strip()
    header = _header_columns(line)
    if header is not None and "file" in header[1]:
        return "table"
    fields = line.split()
    if len(fields) == 2 and "," not in line and '"' not in line and _DIGITS.fullmatch(fields[1]):
        return "categories" if fields[0].startswith("/") else "places365_val"
    return "mepp"


@overload
def read_image_list(path: str | Path, strict: Literal[True] = ...) -> list[ListEntry]: ...
@overload
def read_image_list(path: str | Path, strict: Literal[False]) -> ParsedList: ...
def read_image_list(path: str | Path, strict: bool = True) -> list[ListEntry] | ParsedList:
    """Read any image list of the task, recognising its format from the first line.

    A header with a ``file`` column -> table (CSV/TSV); ``name 165`` -> places365_val.txt;
    otherwise a MEPP list (``name`` or ``name,label``, quoted or not).

    Args:
        path: the list file.
        strict: True raises ListFormatError on the first bad line; False returns
            ``ParsedList(entries, rejected)`` with the bad lines set aside.

    Raises:
        ListFormatError: not UTF-8, empty, a category list instead of an image list, or
            (strict) a bad line, naming the file and line.

    Example:
        >>> read_image_list("MEPP19test.csv")[0]
        ListEntry(name='Places365_val_00015483.jpg', label=None)
    """
    path = Path(path)
    text = _read_text(path)
    kind = _sniff(text)
    if kind == "empty":
        raise ListFormatError(f"{path}: empty list (no images)")
    if kind == "categories":
        raise ListFormatError(
            f"{path}: looks like a category list ('/a/airfield 0'), not a list of images; "
            "read it with read_categories/read_senscats"
        )
    if kind == "table":
        return _parse_table(path, text, strict)
    if kind == "places365_val":
        return _parse_places_entries(path, text, strict)
    return _parse_mepp(path, text, strict)


def _parse_places_entries(
    path: Path, text: str, strict: bool, require_label: bool = False
) -> list[ListEntry] | ParsedList:
    collector = _Collector(path, strict)
    for line_no, line in _lines(text):

        def parse(line=line):
            fields = line.split()
            if len(fields) != 2:
                raise _LineError(f"expected 'name label', got {len(fields)} fields in {line!r}")
            label = _parse_label(fields[1])
            if label is None and require_label:
                raise _LineError(f"label {fields[1]!r} is not a class index >= 0")
            return _parse_name(fields[0]), label

        collector.add(line_no, line, parse)
    return collector.result()
