"""What a protection run will do, decided before any pixel is touched.

The plan lists every input (from a list file plus an image source, folders, or single
files), its output name and format, its size from the file header (for batching), and
whether it is to be written, skipped (output already there) or failed up front (missing
list entry, a name escaping its root, a name collision, output over its own input).
Failures here cost only their own entry; the rest of the run goes on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from protector.data.lists import read_image_list
from protector.data.sources import FolderSource, ImageSource, SourceError, not_a_file_reason, open_source
from protector.images import read_photo_size
from protector.outputs import inside
from protector.protect.naming import find_collisions, output_format, output_name


@dataclass
class PlannedPhoto:
    """One input of the run.

    Attributes:
        index: position in the run (manifest order).
        input: the input as the user knows it (list name, path relative to a folder, or file path).
        source: index into :attr:`Plan.sources`, None when the input was not found.
        key: the name to read from that source.
        label: ground-truth class from the list, None when unknown.
        output: output path relative to the output folder.
        fmt: encoder format ('jpeg', 'png', ...).
        size: (width, height) after EXIF orientation, None if the header is unreadable.
        exists: the output file is already there (skipped unless overwriting).
        error: why this entry fails before the run, None if it is runnable.
    """

    index: int
    input: str
    source: int | None = None
    key: str = ""
    label: int | None = None
    output: str | None = None
    fmt: str | None = None
    size: tuple[int, int] | None = None
    exists: bool = False
    error: str | None = None


@dataclass
class Plan:
    """All inputs of a run and the sources they are read from."""

    sources: list[ImageSource]
    items: list[PlannedPhoto]
    output_dir: Path
    warnings: list[str] = field(default_factory=list)

    def runnable(self) -> list[PlannedPhoto]:
        return [item for item in self.items if item.error is None]

    def failed(self) -> list[PlannedPhoto]:
        return [item for item in self.items if item.error is not None]


def printable_name(name: str) -> str:
    """`name` as valid UTF-8 text: bytes of a non-UTF-8 file name (which Python keeps as
    lone surrogates) are shown as ``\\xNN``; a valid name is returned unchanged.

    Example:
        >>> printable_name("caf\\udce9.jpg")
        'caf\\\\xe9.jpg'
    """
    try:
        raw = name.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a surrogate no file system produced
        raw = name.encode("utf-8", "backslashreplace")
    return raw.decode("utf-8", "backslashreplace")


class _Builder:
    def __init__(self, output_dir: Path) -> None:
        self.output_dir = output_dir
        self.sources: list[ImageSource] = []
        self.items: list[PlannedPhoto] = []
        self.warnings: list[str] = []
        self.file_folders: dict[Path, int] = {}  # one source per folder of single-file inputs

    def add_source(self, source: ImageSource) -> int:
        self.sources.append(source)
        return len(self.sources) - 1

    def add(self, input_name: str, **fields) -> PlannedPhoto:
        shown = printable_name(input_name)
        if fields.get("error") is not None:
            fields["error"] = printable_name(fields["error"])
        elif printable_name(fields.get("key", "")) != fields.get("key", ""):
            # Its output, the manifest and the zip could not carry the name: fail this one only.
            fields["error"] = (
                f"{shown}: the file name is not valid UTF-8 (bytes shown as \\xNN); rename the file to protect it"
            )
        item = PlannedPhoto(index=len(self.items), input=shown, **fields)
        self.items.append(item)
        return item


def _add_list(builder: _Builder, list_path: Path, images: Path) -> None:
    parsed = read_image_list(list_path, strict=False)
    source = open_source(images)
    source_id = builder.add_source(source)
    for rejected in parsed.rejected:
        builder.add(rejected.raw.strip() or f"<line {rejected.line_no}>",
                    error=f"{list_path}:{rejected.line_no}: {rejected.reason}")
    for entry in parsed.entries:
        if entry.name in source:
            builder.add(entry.name, source=source_id, key=entry.name, label=entry.label)
        else:
            builder.add(entry.name, label=entry.label,
                        error=f"{entry.name}: listed in {list_path} but not found in {source.describe()}")


def _add_folder(builder: _Builder, folder: Path, recursive: bool) -> None:
    if builder.output_dir.resolve() == folder.resolve():
        raise ValueError(
            f"--output {builder.output_dir} is the input folder {folder}: protected files would mix with "
            "(or replace) the originals; choose another folder (a subfolder is fine)"
        )
    source = FolderSource(folder, recursive=recursive)
    source_id = builder.add_source(source)
    names = source.names()
    if inside(builder.output_dir, folder):
        # The output folder inside the input folder: its files are results, not inputs.
        names = [name for name in names if not inside(folder / name, builder.output_dir)]
    left_out = source.left_out()
    if not names and not left_out:
        builder.warnings.append(f"{folder}: no image files ({'recursive' if recursive else 'top level only'})")
    for name in names:
        builder.add(name, source=source_id, key=name)
    for name, why in left_out:
        builder.add(name, error=f"{name}: {why}")  # a row in the manifest, never a silent gap


def _add_file(builder: _Builder, path: Path) -> None:
    why = not_a_file_reason(path)
    if why is not None:
        builder.add(str(path), error=f"{path}: {why}")
        return
    folder = path.parent.resolve()
    if folder not in builder.file_folders:
        builder.file_folders[folder] = builder.add_source(FolderSource(path.parent, recursive=False))
    builder.add(str(path), source=builder.file_folders[folder], key=path.name)


def build_plan(
    output_dir: str | Path,
    inputs: list[str | Path] = (),
    list_path: str | Path | None = None,
    images: str | Path | None = None,
    recursive: bool = False,
    fmt: str = "jpeg",
    run_code: str | None = None,
) -> Plan:
    """Collect the inputs, name the outputs, find collisions and existing outputs.

    Args:
        output_dir: folder the protected files go to.
        inputs: folders and single image files.
        list_path: a list of image names (MEPP19test.csv, ...), read from `images`.
        images: folder or ``.tar`` holding the listed images.
        recursive: descend into subfolders of folder inputs (the layout is kept).
        fmt: 'jpeg', 'png' or 'same'.
        run_code: prefix of every output file name (the task's submission convention).

    Raises:
        FileNotFoundError, ValueError: the list or the image source cannot be used at all.
    """
    output_dir = Path(output_dir)
    builder = _Builder(output_dir)
    if list_path is not None:
        if images is None:
            raise ValueError("--list needs --images (the folder or val_256.tar holding the listed images)")
        _add_list(builder, Path(list_path), Path(images))
    elif images is not None:
        raise ValueError("--images is read together with --list; to protect a whole folder, pass it as --input")
    for raw in inputs:
        path = Path(raw)
        if path.is_dir():
            _add_folder(builder, path, recursive)
        else:
            _add_file(builder, path)
    if not builder.items:
        raise ValueError("nothing to protect: give --input (folders or files) or --list with --images")

    _name_outputs(builder, fmt, run_code)
    for item in builder.items:
        if item.error is None:
            _check_item(builder, item)
    return Plan(builder.sources, builder.items, output_dir, builder.warnings)


def _name_outputs(builder: _Builder, fmt: str, run_code: str | None) -> None:
    outputs: dict[str, str] = {}
    for item in builder.items:
        if item.error is not None:
            continue
        # `key` is the name inside the source: a list or folder entry keeps its sub-folders,
        # a single file is known by its file name.
        item.output = output_name(item.key, fmt, run_code)
        item.fmt = output_format(item.key, fmt)
        outputs[item.input] = item.output
    clashes = find_collisions(outputs)
    for item in builder.items:
        if item.input in clashes:
            others = ", ".join(clashes[item.input])
            item.error = (
                f"{item.input}: output name {item.output} is also the output of {others}; "
                "rename one of them (or use --format same to keep each extension)"
            )


def _check_item(builder: _Builder, item: PlannedPhoto) -> None:
    source = builder.sources[item.source]
    target = builder.output_dir / item.output
    if isinstance(source, FolderSource) and target.resolve() == (source.root / item.key).resolve():
        item.error = f"{item.input}: its output would replace the input file itself; choose another --output folder"
        return
    item.exists = target.exists()
    if item.exists and not target.is_file():
        item.error = f"{item.input}: output path {target} exists and is not a file"
        return
    if isinstance(source, FolderSource):
        item.size = read_photo_size(source.root / item.key)  # reads the header only
        return
    try:
        data = source.read_bytes(item.key)
    except (OSError, SourceError) as err:
        item.error = f"{item.input}: cannot be read ({err})"
        return
    item.size = read_photo_size(data)
