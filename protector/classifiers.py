"""Attack models: official Places365 checkpoints and the frozen, normalizing wrapper.

Every classifier here takes RGB images in [0, 1] of any size and returns logits. Only these
wrappers normalize; nothing resizes or crops (the task feeds the whole 256x256 photo).

Checkpoints from the outside world are untrusted: they are read with
`torch.load(..., weights_only=True)`, and a file is only used when its sha256 is verified
or the user accepted an unpinned file explicitly (`allow_unpinned=True`).
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import pickle
import re
import sys
import warnings
import zipfile
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn
from protector.architectures import PLACES365_CLASSES, REGISTRY, build_architecture, get_architecture
from protector.checksums import ChecksumError, verify_sha256
from protector.limits import MAX_WEIGHTS_BYTES, FileTooLargeError
from protector.search_paths import require_allowed
from protector.paths import NotAFileError, regular_file_size, sha256_file

try:  # numpy >= 2
    from numpy._core import multiarray as np_multiarray
except ImportError:  # numpy 1.x
    from numpy.core import multiarray as np_multiarray

__all__ = [
    "CheckpointError",
    "ChecksumError",
    "ClassPathError",
    "ExternalClassifier",
    "FrozenClassifier",
    "Places365Classifier",
    "import_class",
    "load_places365_state_dict",
    "resolve_sha256",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class CheckpointError(ValueError):
    """A checkpoint file cannot be used; the message names the file and the cause."""


class ClassPathError(ValueError):
    """A `module.Class` path cannot be imported or does not name a torch module."""


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


# ----------------------------------------------------------------------------- wrappers


class FrozenClassifier(nn.Module):
    """A classifier that cannot be trained: the attack model inside a training loop.

    Contract: RGB in [0, 1] in, logits out (whatever `model` does). Parameters never require
    grad and the module stays in eval mode even when Lightning calls `.train()`, so BatchNorm
    statistics and weights stay bit-identical while gradients still flow to the input.
    Wrapping a `FrozenClassifier` again keeps a single level. The first forward warns once if
    the outputs look like probabilities instead of logits (as auto-attack checks).

    Args:
        model: any `nn.Module` mapping (B, 3, H, W) to (B, num_classes) logits.
        check_outputs: run the probabilities check on the first forward.

    Shape:
        (B, 3, H, W) in [0, 1] -> (B, num_classes).

    Example:
        >>> frozen = FrozenClassifier(Places365Classifier("resnet18"))  # doctest: +SKIP
        >>> logits = frozen(torch.rand(2, 3, 256, 256))  # doctest: +SKIP
    """

    def __init__(self, model: nn.Module, check_outputs: bool = True):
        super().__init__()
        if isinstance(model, FrozenClassifier):
            model = model.model
        self.model = model
        self.model.requires_grad_(False)
        self.train(False)
        self._outputs_checked = not check_outputs

    def train(self, mode: bool = True) -> FrozenClassifier:
        # Lightning puts the whole LightningModule in train mode every epoch; the attack model
        # must keep its BatchNorm statistics and dropout as evaluated.
        return super().train(False)

    def requires_grad_(self, requires_grad: bool = True) -> FrozenClassifier:
        # Unfreezing (e.g. by a fine-tuning callback) would let the optimizer change the attack model.
        return super().requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.model(x)
        if not self._outputs_checked:
            self._outputs_checked = True
            self.warn_if_probabilities(logits)
        return logits

    @staticmethod
    def warn_if_probabilities(outputs: torch.Tensor, atol: float = 1e-3) -> bool:
        """Warn (and return True) if every row is in [0, 1] and sums to 1: softmax outputs.

        Margin losses on probabilities saturate and give vanishing gradients, so a model that
        ends in softmax must have it removed before it is attacked.
        """
        with torch.no_grad():
            out = outputs.detach().float()
            if out.dim() != 2 or out.numel() == 0:
                return False
            in_range = bool(((out >= 0) & (out <= 1)).all())
            sums_to_one = bool(torch.allclose(out.sum(dim=1), torch.ones(out.shape[0], device=out.device), atol=atol))
        if in_range and sums_to_one:
            warnings.warn(
                "the classifier outputs look like probabilities (each row in [0, 1], summing to 1); "
                "protector expects logits: remove the final softmax",
                stacklevel=2,
            )
            return True
        return False


class _Normalize(nn.Module):
    """(x - mean) / std with constants as buffers, so they follow the module to any device."""

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class Places365Classifier(nn.Module):
    """An official CSAIL Places365 network with its preprocessing: the task's attack model.

    Preprocessing is ImageNet mean/std normalization only, as the task organizers evaluated:
    no resize, no crop (the whole photo goes in; the network pools globally).

    Args:
        arch: resnet50 (the task's attack model), resnet18, densenet161 or wideresnet18.
        checkpoint: official `<arch>_places365.pth.tar` (or a bare state_dict). None gives
            random weights, with a warning: only for tests.
        sha256: expected sha256 of `checkpoint`; defaults to the one pinned in
            its `architectures.REGISTRY` entry for an official file name.
        num_classes: number of classes (365).
        allow_unpinned: accept a checkpoint with no sha256 to verify against.

    Shape:
        (B, 3, H, W) RGB in [0, 1] -> (B, num_classes) logits.

    Example:
        >>> model = Places365Classifier("resnet50", "weights/resnet50_places365.pth.tar",
        ...                             sha256="...")  # doctest: +SKIP
        >>> logits = model(torch.rand(1, 3, 256, 256))  # doctest: +SKIP
    """

    def __init__(
        self,
        arch: str = "resnet50",
        checkpoint: str | None = None,
        sha256: str | None = None,
        num_classes: int = PLACES365_CLASSES,
        allow_unpinned: bool = False,
    ):
        super().__init__()
        get_architecture(arch)  # ValueError naming the choices
        self.arch = arch
        self.normalize = _Normalize(IMAGENET_MEAN, IMAGENET_STD)
        self.net = build_architecture(arch, num_classes)
        if checkpoint is None:
            warnings.warn(
                f"Places365Classifier({arch!r}) has random weights: no checkpoint was given", stacklevel=2
            )
        else:
            expected = resolve_sha256(checkpoint, sha256, allow_unpinned)
            state_dict = load_places365_state_dict(checkpoint, arch, sha256=expected, num_classes=num_classes)
            self.net.load_state_dict(state_dict)
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.normalize(x))


def import_class(class_path: str, search_path: str | Path | None = None, base: type = nn.Module,
                 consent: bool = False) -> type:
    """Import the class `package.module.Class`, a subclass of `base` defined in that module.

    `search_path` is put first on ``sys.path`` only for this import; with `consent` (what a
    config reaches: `ExternalClassifier`) only when it is the stand-in's folder or the command
    line allowed it (:mod:`protector.search_paths`). What the
    path names must be a class defined in the named module (or below it): a function, or a
    name another module re-exports (``signal_connector.call`` is ``subprocess.call``), is
    refused before it is called.

    Raises:
        FileNotFoundError: `search_path` is not a folder.
        SearchPathError: `search_path` was not allowed on the command line.
        ClassPathError: the module or the class cannot be found, or it is not such a class.
    """
    module_name, _, class_name = class_path.rpartition(".")
    if not module_name:
        raise ClassPathError(f"{class_path!r}: expected a class path like 'module.ClassName'")
    folder = None
    if search_path is not None:
        folder = Path(search_path).expanduser().resolve()
        if not folder.is_dir():
            raise FileNotFoundError(f"{search_path}: search path is not a folder (relative paths start at {Path.cwd()})")
        if consent:
            require_allowed(search_path)
    try:
        module = _import_module(module_name, folder)
    except ModuleNotFoundError as err:
        where = f" (searched {search_path} and sys.path)" if search_path is not None else ""
        raise ClassPathError(f"{class_path}: cannot import module {module_name!r}{where}: {err}") from None
    try:
        found = getattr(module, class_name)
    except AttributeError:
        raise ClassPathError(f"{class_path}: module {module_name!r} has no {class_name!r}") from None
    problem = class_problem(found, module_name, base)
    if problem is not None:
        raise ClassPathError(f"{class_path}: {problem}; only such classes are built")
    return found


def class_problem(found: object, module_name: str, base: type | tuple[type, ...],
                  trusted_origin: Callable[[str], bool] | None = None) -> str | None:
    """Why `found` (named in `module_name`) is not a class to build, or None when it is one.

    A class defined in `module_name` or a module below it (``torch.nn.Conv2d`` lives in
    ``torch.nn.modules.conv``), or re-exported from a module `trusted_origin` accepts (the
    config guard's allowed libraries: pytorch_lightning re-exports lightning_fabric), that
    subclasses `base`.
    """
    if not inspect.isclass(found):
        kind = "a function" if inspect.isroutine(found) else f"a {type(found).__name__} object"
        defined = getattr(found, "__module__", None)
        where = f" from {defined}" if isinstance(defined, str) and defined != module_name else ""
        return f"is {kind}{where}, not a class"
    defined = found.__module__
    below = defined == module_name or defined.startswith(module_name + ".")
    if not below and not (trusted_origin is not None and trusted_origin(f"{defined}.{found.__qualname__}")):
        return f"is {defined}.{found.__qualname__}, re-exported from another module"
    if not issubclass(found, base):
        names = " or ".join("torch.nn.Module" if b is nn.Module else b.__qualname__
                            for b in (base if isinstance(base, tuple) else (base,)))
        return f"is not a {names} subclass"
    return None


def _import_module(module_name: str, folder: Path | None) -> Any:
    """Import `module_name`, with `folder` first on sys.path during the import only.

    Left there, the folder would shadow every module imported later (h5py, wandb, ...).
    """
    if folder is None or str(folder) in sys.path:
        return importlib.import_module(module_name)
    sys.path.insert(0, str(folder))
    try:
        return importlib.import_module(module_name)
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(str(folder))


class ExternalClassifier(nn.Module):
    """Any classifier importable by class path, e.g. the stand-in beside the repository.

    The class must be an `nn.Module` subclass defined in the module named, taking RGB in [0, 1]
    and returning logits; anything else (a function such as ``subprocess.call`` re-exported under
    an allowed name) is refused before it is called.

    Args:
        class_path: `module.ClassName`, e.g. `squeezenet_places.StandinPlaces365`.
        search_path: folder put on `sys.path` first for the import (relative to the current
            directory): the stand-in's `../shared/standin`, or a folder allowed on the command line
            (:mod:`protector.search_paths`; a config cannot allow its own).
        init_args: keyword arguments for the class.

    Shape:
        (B, 3, H, W) RGB in [0, 1] -> (B, num_classes) logits.

    Example:
        >>> model = ExternalClassifier("squeezenet_places.StandinPlaces365",
        ...                            search_path="../shared/standin")  # doctest: +SKIP
    """

    def __init__(self, class_path: str, search_path: str | None = None, init_args: dict | None = None):
        super().__init__()
        cls = import_class(class_path, search_path, nn.Module, consent=True)  # checked before it is called
        model = cls(**(init_args or {}))
        if not isinstance(model, nn.Module):
            raise ClassPathError(f"{class_path}: built a {type(model).__name__}, not a torch.nn.Module")
        self.class_path = class_path
        self.model = model
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)
