"""Reading untrusted Places365 checkpoints: size, sha256 and safe unpickling before any use.

Checkpoints from the outside world are untrusted: they are read with
`torch.load(..., weights_only=True)`, and a file is only used when its sha256 is verified
or the user accepted an unpinned file explicitly (`allow_unpinned=True`). The wrappers that
use the weights are in :mod:`protector.classifiers`.
"""

from __future__ import annotations

import pickle
import re
import sys
import warnings
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from protector.architectures import PLACES365_CLASSES, REGISTRY, build_architecture, get_architecture
from protector.checksums import ChecksumError, verify_sha256
from protector.limits import MAX_WEIGHTS_BYTES, FileTooLargeError
from protector.paths import NotAFileError, regular_file_size, sha256_file

try:  # numpy >= 2
    from numpy._core import multiarray as np_multiarray
except ImportError:  # numpy 1.x
    from numpy.core import multiarray as np_multiarray

__all__ = ["CheckpointError", "ChecksumError", "checkpoint_size", "load_places365_state_dict", "resolve_sha256"]


class CheckpointError(ValueError):
    """A checkpoint file cannot be used; the message names the file and the cause."""


# ----------------------------------------------------------------------------- checksums


def resolve_sha256(path: str | Path, sha256: str | None = None, allow_unpinned: bool = False) -> str | None:
    """The sha256 a checkpoint must have before it is used, or None if accepted unverified.

    An explicit `sha256` wins; otherwise a file named like an official checkpoint uses the
    digest pinned in its `architectures.REGISTRY` entry. A file with no digest to check is refused unless
    `allow_unpinned` is True, in which case a warning gives its sha256 so it can be pinned.

    Raises:
        ChecksumError: no digest known and `allow_unpinned` is False.
    """
    if sha256:
        return sha256
    name = Path(path).name
    for known in REGISTRY.values():
        if known.filename == name and known.sha256:
            return known.sha256
    checkpoint_size(path)
    actual = sha256_file(path)
    if not allow_unpinned:
        raise ChecksumError(
            path, None, None, actual,
            f"{path}: no sha256 is pinned for this file, so it cannot be verified before use "
            f"(its sha256 is {actual}). Pass sha256={actual} if you trust it "
            "(--sha256 on the command line), or accept it unverified with allow_unpinned=True "
            "(--allow-unpinned)."
        )
    warnings.warn(f"{path}: loading an unpinned checkpoint without verification (sha256 {actual})", stacklevel=2)
    return None


# ----------------------------------------------------------------------------- loading


# Checkpoints written by older training scripts may store numbers such as `best_prec1` as
# numpy scalars. Rebuilding one runs no user code, so they are allowed under either module
# spelling (numpy 1 pickles say numpy.core, numpy 2 numpy._core).
_NUMPY_SCALAR_GLOBALS = [
    (np_multiarray.scalar, "numpy.core.multiarray.scalar"),
    (np_multiarray.scalar, "numpy._core.multiarray.scalar"),
    np.dtype,
    *(type(np.dtype(t)) for t in (np.float64, np.float32, np.int64, np.int32)),
]


def checkpoint_size(path: str | Path) -> int:
    """The size of a checkpoint file, checked before anything reads or hashes it.

    Raises:
        FileNotFoundError: nothing there.
        CheckpointError: a folder, a FIFO (which would block a read forever), unreadable, or
            larger than any Places365 checkpoint (``limits.MAX_WEIGHTS_BYTES``).
    """
    try:
        return regular_file_size(path, MAX_WEIGHTS_BYTES, "checkpoint")
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: checkpoint file not found") from None
    except NotAFileError as err:
        raise CheckpointError(f"{path}: is a {err.kind}, not a checkpoint file") from None
    except FileTooLargeError as err:
        raise CheckpointError(str(err)) from None
    except OSError as err:
        raise CheckpointError(f"{path}: cannot be read ({err.strerror or err})") from None


def _read_checkpoint(path: Path) -> Any:
    """torch.load(weights_only=True) with every failure turned into a CheckpointError."""
    if not path.exists():
        raise FileNotFoundError(f"{path}: checkpoint file not found")
    size = checkpoint_size(path)
    if size == 0:
        raise CheckpointError(f"{path}: empty file (0 bytes); the download probably failed")
    with open(path, "rb") as f:
        head = f.read(64)
    is_zip = head.startswith(b"PK\x03\x04")
    # torch.save writes a zip archive (torch >= 1.6) or a pickle stream (older, like the
    # official Places365 files, which start with the PROTO opcode 0x80).
    if not is_zip and not head.startswith(b"\x80"):
        if _looks_like_text(head):
            kind = "a text file (an HTML error page from a failed download looks like this)"
        else:
            kind = "an unknown binary format"
        raise CheckpointError(f"{path}: not a PyTorch checkpoint; it is {kind}, starting with {head[:24]!r}")
    if is_zip and not zipfile.is_zipfile(path):
        raise CheckpointError(f"{path}: truncated or corrupt checkpoint ({size:,} bytes; the zip directory is missing)")
    try:
        with torch.serialization.safe_globals(_NUMPY_SCALAR_GLOBALS):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise _unpickling_error(path, err) from None
    except (RuntimeError, EOFError, KeyError, ValueError, OSError, IndexError) as err:
        raise CheckpointError(f"{path}: truncated or corrupt checkpoint ({type(err).__name__}: {err})") from None


def _looks_like_text(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return all(32 <= b < 127 or b in b"\t\r\n" for b in data)


def _unpickling_error(path: Path, err: pickle.UnpicklingError) -> CheckpointError:
    message = str(err)
    found = re.search(r"GLOBAL ([\w.]+)", message)
    if found and not _is_cut_name(found.group(1)):
        return CheckpointError(
            f"{path}: the checkpoint refers to the Python object {found.group(1)}, which safe loading "
            "(weights_only=True) refuses: the file may contain code and was not loaded. "
            "An official checkpoint holds only tensors and numbers; get the file from its official source."
        )
    detail = found.group(0) if found else message.strip().splitlines()[-1][:200]
    return CheckpointError(f"{path}: truncated or corrupt checkpoint (unpickling failed: {detail})")


def _is_cut_name(dotted: str) -> bool:
    """Whether `module.attr` is a name cut short by truncation (module loaded, attr absent).

    Only modules already imported are consulted: importing a name taken from an untrusted
    file could itself run code.
    """
    module_name, _, attr = dotted.rpartition(".")
    module = sys.modules.get(module_name)
    return module is not None and not hasattr(module, attr)


def load_places365_state_dict(
    path: str | Path, arch: str, sha256: str | None = None, num_classes: int = PLACES365_CLASSES
) -> dict[str, torch.Tensor]:
    """Read an official CSAIL Places365 checkpoint into a state_dict for `build_architecture(arch)`.

    Accepts the official layout (`{"epoch", "arch", "state_dict", "best_prec1"}` with
    `module.`-prefixed keys from DataParallel) or a bare state_dict. Old DenseNet names
    (`norm.1`, `conv.2`) are renamed to torchvision's (`norm1`, `conv2`). The file is read with
    `weights_only=True` and is never executed.

    Args:
        path: the checkpoint file.
        arch: a name in `architectures.REGISTRY`.
        sha256: expected hex digest; checked before anything is unpickled.
        num_classes: classes the head must have.

    Raises:
        FileNotFoundError: no such file.
        ChecksumError: sha256 mismatch.
        CheckpointError: empty, truncated, corrupt, not a checkpoint, a pickle carrying code,
            another number of classes (e.g. a 1000-class ImageNet model), or keys/shapes that
            do not belong to `arch`.
    """
    architecture = get_architecture(arch)
    path = Path(path)
    checkpoint_size(path)  # before hashing: a FIFO or a 1 TB file fails here, not in sha256
    if sha256 is not None:
        verify_sha256(path, sha256)
    loaded = _read_checkpoint(path)
    raw, file_arch = _unwrap(path, loaded)
    state_dict = {architecture.fix_key(key.removeprefix("module.")): value for key, value in raw.items()}
    _check_against(path, state_dict, arch, num_classes, file_arch)
    return state_dict


def _unwrap(path: Path, loaded: Any) -> tuple[dict[str, torch.Tensor], str | None]:
    if not isinstance(loaded, dict):
        raise CheckpointError(f"{path}: holds a {type(loaded).__name__}, not a checkpoint dict or a state_dict")
    if "state_dict" in loaded:
        raw, file_arch = loaded["state_dict"], loaded.get("arch")
    else:
        raw, file_arch = loaded, None
    if not isinstance(raw, dict) or not raw:
        raise CheckpointError(f"{path}: 'state_dict' is empty or not a dict")
    not_tensors = [key for key, value in raw.items() if not isinstance(value, torch.Tensor)]
    if not_tensors:
        raise CheckpointError(
            f"{path}: not a state_dict: {len(not_tensors)} entries are not tensors "
            f"(e.g. {', '.join(map(str, not_tensors[:3]))})"
        )
    return raw, file_arch if isinstance(file_arch, str) else None


def _check_against(
    path: Path, state_dict: dict[str, torch.Tensor], arch: str, num_classes: int, file_arch: str | None
) -> None:
    # Shapes only: build the reference on the meta device, which allocates nothing.
    with torch.device("meta"):
        reference = build_architecture(arch, num_classes).state_dict()
    problems = []
    head = get_architecture(arch).head
    head_weight = state_dict.get(f"{head}.weight")
    if head_weight is not None and head_weight.dim() == 2 and head_weight.shape[0] != num_classes:
        found = head_weight.shape[0]
        hint = " (an ImageNet model, not a Places365 one)" if found == 1000 else ""
        problems.append(
            f"the classifier head has {found} classes{hint}, expected {num_classes} (Places365); "
            f"use the {arch}_places365.pth.tar file"
        )
    # BatchNorm counters appeared in PyTorch 0.4; older files (like CSAIL's) lack them.
    missing = [k for k in reference if k not in state_dict and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state_dict if k not in reference]
    wrong_shape = [
        f"{k} {tuple(state_dict[k].shape)} vs {tuple(reference[k].shape)}"
        for k in reference
        if k in state_dict
        and state_dict[k].shape != reference[k].shape
        # A head that differs only in its number of classes is already reported above.
        and not (problems and k.startswith(f"{head}.") and state_dict[k].shape[1:] == reference[k].shape[1:])
    ]
    if missing:
        problems.append(f"{len(missing)} missing keys (e.g. {', '.join(missing[:3])})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected keys (e.g. {', '.join(unexpected[:3])})")
    if wrong_shape:
        problems.append(f"{len(wrong_shape)} shape mismatches (e.g. {'; '.join(wrong_shape[:3])})")
    if problems:
        said = f" (the file says arch={file_arch!r})" if file_arch and file_arch != arch else ""
        raise CheckpointError(f"{path}: not a {arch} Places365 checkpoint{said}: {'; '.join(problems)}")
