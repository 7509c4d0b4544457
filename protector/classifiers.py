"""Attack models: the frozen, normalizing wrapper, official Places365 networks, classes by path.

Every classifier here takes RGB images in [0, 1] of any size and returns logits. Only these
wrappers normalize; nothing resizes or crops (the task feeds the whole 256x256 photo).
Checkpoint files are read by :mod:`protector.checkpoints` (untrusted: sha256 and safe
unpickling first); its names are re-exported here, where configs and older code import them.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import sys
import warnings
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from protector.architectures import PLACES365_CLASSES, build_architecture, get_architecture
from protector.checkpoints import (CheckpointError, ChecksumError, checkpoint_size, load_places365_state_dict,
                                   resolve_sha256)
from protector.search_paths import require_allowed

__all__ = [
    "CheckpointError",
    "ChecksumError",
    "ClassPathError",
    "ExternalClassifier",
    "FrozenClassifier",
    "Places365Classifier",
    "checkpoint_size",
    "import_class",
    "load_places365_state_dict",
    "resolve_sha256",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ClassPathError(ValueError):
    """A `module.Class` path cannot be imported or does not name a torch module."""


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
