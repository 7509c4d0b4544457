"""The data layer: list parsers, image sources, the official files and the training DataModule.

The DataModule (which imports Lightning and albumentations) is loaded on first use, so
`protector data check` and the list parsers stay quick to import.

Note: the function `fetch` is re-exported here, so the attribute `protector.data.fetch` is
that function; the module is `importlib.import_module("protector.data.fetch")` (plain
`from protector.data.fetch import OFFICIAL_FILES` works as usual).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from protector.data.fetch import (
    OFFICIAL_FILES,
    ChecksumError,
    DownloadError,
    FetchResult,
    FileStatus,
    OfficialFile,
    check,
    fetch,
    offline_help,
)
from protector.data.lists import (
    ListEntry,
    ListFormatError,
    ParsedList,
    RejectedLine,
    read_categories,
    read_image_list,
    read_labels_table,
    read_mepp_list,
    read_places365_val,
    read_senscats,
)
from protector.data.sources import FolderSource, ImageSource, SourceError, TarSource, open_source

if TYPE_CHECKING:
    from protector.data.training import ImageDataset, TrainingDataModule, split_per_class

_LAZY = {"ImageDataset", "TrainingDataModule", "split_per_class", "train_transform", "eval_transform"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from protector.data import training

        return getattr(training, name)
    raise AttributeError(f"module 'protector.data' has no attribute {name!r}")


__all__ = [
    "OFFICIAL_FILES",
    "ChecksumError",
    "DownloadError",
    "FetchResult",
    "FileStatus",
    "FolderSource",
    "ImageDataset",
    "ImageSource",
    "ListEntry",
    "ListFormatError",
    "OfficialFile",
    "ParsedList",
    "TrainingDataModule",
    "RejectedLine",
    "SourceError",
    "TarSource",
    "check",
    "eval_transform",
    "fetch",
    "offline_help",
    "open_source",
    "read_categories",
    "read_image_list",
    "read_labels_table",
    "read_mepp_list",
    "read_places365_val",
    "read_senscats",
    "split_per_class",
    "train_transform",
]
