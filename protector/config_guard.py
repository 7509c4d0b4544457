"""Configs are code: which classes a training config may name, checked before they are built.

A LightningCLI config instantiates any importable object it names (``class_path``), and
importing a module runs it; a config file from elsewhere could run a command. Three layers:

1. Before parsing, every class path in the config files and on the command line must lie under
   the project's own modules or the libraries its configs use (``ALLOWED_PREFIXES``); anything
   else needs ``--allow-class-path PREFIX`` on the command line. Each one is then resolved and
   must be a class defined there (not a function, not a name re-exported from another module:
   ``pytorch_lightning.trainer.connectors.signal_connector.call`` is ``subprocess.call``) that
   subclasses what a config builds (``BUILDABLE_BASES``: modules and losses, optimizers,
   schedulers, callbacks, loggers, data modules, Lightning's strategies and plugins).
2. While LightningCLI parses, jsonargparse's own import-path policy denies every path outside
   the same prefixes, whatever way a config reached the parser (a nested config file, a value
   that is a file path): the names of the resolved objects are checked too.
3. A ``search_path`` (a folder put first on ``sys.path``) must be the stand-in's or one named
   with ``--allow-search-path DIR`` (:mod:`protector.search_paths`); `ExternalClassifier`
   checks it again when it is built, however its arguments arrived.

A config file cannot allow itself: allowances come from the command line only.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import re
from pathlib import Path
from typing import Any, Iterator

import yaml

from protector.search_paths import ALLOW_SEARCH_PATH_FLAG, require_allowed

ALLOWED_PREFIXES = (
    "protector.",
    "pytorch_lightning.",
    "lightning.",
    "torch.optim.",
    "torch.nn.",
    "torchvision.models.",
    # Where pytorch_lightning's environments and plugins are defined.
    "lightning_fabric.",
    # The stand-in attack model's code in ../shared/standin (configs/standin.yaml, debug.yaml).
    "squeezenet_places.StandinPlaces365",
)
ALLOW_FLAG = "--allow-class-path"
CONFIG_FLAGS = ("--config", "-c")
# module.path.ClassName: what a bare command-line value naming a class looks like (file names
# such as resnet50_places365.pth.tar do not end in a capitalised name).
_CLASS_PATH = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*\.[A-Z]\w*$")
# Any dotted name under an allowed library (``torchvision.models.resnet18``, a function that
# jsonargparse would call like a class): checked as a class path too.
_DOTTED = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)+$")


def _names_an_object(value: str) -> bool:
    if _CLASS_PATH.match(value):
        return True
    tops = {p.partition(".")[0] for p in ALLOWED_PREFIXES}
    return bool(_DOTTED.match(value)) and value.partition(".")[0] in tops


class ConfigClassError(ValueError):
    """A config names a class outside the allowed modules."""


def split_allowances(args: list[str]) -> tuple[list[str], tuple[str, ...]]:
    """Remove ``--allow-class-path P`` (or ``=P``) from `args`; return the rest and the prefixes."""
    return _split_flag(args, ALLOW_FLAG, "a module prefix, e.g. --allow-class-path mylab.models")


def split_search_paths(args: list[str]) -> tuple[list[str], tuple[str, ...]]:
    """Remove ``--allow-search-path DIR`` (or ``=DIR``) from `args`; return the rest and the folders."""
    return _split_flag(args, ALLOW_SEARCH_PATH_FLAG, "a folder, e.g. --allow-search-path ../mylab")


def _split_flag(args: list[str], flag: str, needs: str) -> tuple[list[str], tuple[str, ...]]:
    rest: list[str] = []
    values: list[str] = []
    items = iter(args)
    for arg in items:
        if arg == flag:
            value = next(items, None)
            if value is None:
                raise ConfigClassError(f"{flag} needs {needs}")
            values.append(value)
        elif arg.startswith(flag + "="):
            values.append(arg.split("=", 1)[1])
        else:
            rest.append(arg)
    return rest, tuple(values)


def check_class_paths(args: list[str], allowed: tuple[str, ...] = ()) -> None:
    """Refuse any class path or search path in `args` (values, config files, inline YAML) not allowed.

    Call it inside ``search_paths.allow_search_paths(...)`` with the command line's folders.

    Raises:
        ConfigClassError: the first class path outside the allowed prefixes, or one that does not
            name a class to build, with where it came from and the flag that allows it.
        SearchPathError: a ``search_path`` that is neither the stand-in's nor allowed.
    """
    prefixes = ALLOWED_PREFIXES + allowed
    found = list(_class_paths(args))
    for source, key, value in found:  # folders first: resolving a class below may import its module
        if key == "search_path":
            require_allowed(value, f"{source}: search_path")
    for source, key, value in found:
        if key == "search_path":
            continue
        if not _is_allowed(value, prefixes):
            raise ConfigClassError(
                f"{source}: class_path {value!r} is outside the project's modules and the libraries "
                f"its configs use, and importing it would run its code; if you trust it, add "
                f"{ALLOW_FLAG} {value.rpartition('.')[0] or value} to the command line"
            )
        problem = _build_problem(value, prefixes)
        if problem is not None:
            raise ConfigClassError(f"{source}: class_path {value!r} {problem}; a config builds only such classes")


def _build_problem(class_path: str, prefixes: tuple[str, ...]) -> str | None:
    """Why the allowed `class_path` is not a class a config may build, or None.

    Its module is imported (it is under an allowed prefix); one that cannot be found without a
    search path (the stand-in's) is checked when `ExternalClassifier` imports it.
    """
    from protector.classifiers import class_problem

    module_name, _, attr = class_path.rpartition(".")
    try:
        if importlib.util.find_spec(module_name.partition(".")[0]) is None:
            return None
        module = importlib.import_module(module_name)
    except ImportError:
        return None  # LightningCLI names what it cannot import
    if not hasattr(module, attr):
        return None
    found = getattr(module, attr)
    return class_problem(found, module_name, buildable_bases(), lambda path: _is_allowed(path, prefixes))


def buildable_bases() -> tuple[type, ...]:
    """What a config may build: torch modules (losses too), optimizers and schedulers, Lightning's parts."""
    import pytorch_lightning as pl
    import torch
    from lightning_fabric.plugins import CheckpointIO, ClusterEnvironment
    from pytorch_lightning.accelerators import Accelerator
    from pytorch_lightning.loggers import Logger
    from pytorch_lightning.plugins import LayerSync, Precision
    from pytorch_lightning.profilers import Profiler
    from pytorch_lightning.strategies import Strategy

    return (torch.nn.Module, torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler, pl.Callback,
            pl.LightningDataModule, Logger, Strategy, Accelerator, Precision, Profiler, ClusterEnvironment,
            CheckpointIO, LayerSync)


@contextlib.contextmanager
def enforced_import_paths(allowed: tuple[str, ...] = ()) -> Iterator[None]:
    """Within the block, jsonargparse imports only paths under the allowed prefixes.

    jsonargparse checks every import path a parsed value names, and the canonical path of what
    it resolves to, against its policy (``set_parsing_settings``): ``*`` denied, the prefixes
    allowed. The policy is process-wide; it is put back as it was when the block ends.
    """
    from jsonargparse import _common, set_parsing_settings

    saved = {key: _common.parsing_settings[key] for key in ("import_path_verdicts", "import_paths_enforced")}
    entries = sorted({p.rstrip(".") for p in ALLOWED_PREFIXES + allowed})
    set_parsing_settings(import_path_denylist=["*"], import_path_allowlist=entries)
    try:
        yield
    finally:
        _common.parsing_settings.update(saved)


def _is_allowed(class_path: str, prefixes: tuple[str, ...]) -> bool:
    """`prefixes` name modules ("torch.optim." or "mylab.models") or exact classes."""
    return any(class_path == p.rstrip(".") or class_path.startswith(p.rstrip(".") + ".") for p in prefixes)


def _class_paths(args: list[str]) -> Iterator[tuple[str, str, str]]:
    previous = None
    for arg in args:
        flag, eq, value = arg.partition("=") if arg.startswith("--") else (None, "", arg)
        if eq:
            previous, arg = flag, value
        elif arg.startswith("-") and not _is_number(arg):
            previous = arg
            continue
        if previous in CONFIG_FLAGS:
            yield from _from_file(Path(arg))
        elif Path(arg).suffix in (".yaml", ".yml", ".json") and Path(arg).is_file():
            yield from _from_file(Path(arg))  # a subclass given as a config file of its own
        elif _names_an_object(arg):
            yield f"{previous or 'argument'}", "class_path", arg
        elif previous is not None and previous.endswith(".search_path"):
            yield previous, "search_path", arg
        else:
            yield from _walk(_load_inline(arg), f"{previous or 'argument'}")
        previous = None


def _from_file(path: Path) -> Iterator[tuple[str, str, str]]:
    try:
        content = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return  # LightningCLI reports unreadable configs itself
    yield from _walk(content, str(path))


def _load_inline(value: str) -> Any:
    if not value.lstrip().startswith(("{", "[", "class_path")):
        return None
    try:
        return yaml.safe_load(value)
    except yaml.YAMLError:
        return None


def _walk(node: Any, source: str) -> Iterator[tuple[str, str, str]]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("class_path", "search_path") and isinstance(value, str):
                yield source, key, value
            elif isinstance(value, str) and _names_an_object(value):
                yield source, "class_path", value  # short forms: `loss: protector.losses.TopKMargin`
            else:
                yield from _walk(value, source)
    elif isinstance(node, list):
        for item in node:
            yield from _walk(item, source)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
