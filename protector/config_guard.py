"""Configs are code: which classes a training config may name before anything is imported.

A LightningCLI config instantiates any importable class it names (``class_path``), and
importing a module runs it; a config file from elsewhere could run a command. Before
parsing, every class path in the config files and on the command line is checked against
the project's own modules and the libraries its configs use; anything else needs
``--allow-class-path PREFIX`` (e.g. ``--allow-class-path mylab.models``), given on the
command line by the person running it (a config file cannot allow itself).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Iterator

import yaml

ALLOWED_PREFIXES = (
    "protector.",
    "pytorch_lightning.",
    "lightning.",
    "torch.optim.",
    "torch.nn.",
    "torchvision.models.",
    # The stand-in attack model's code in ../shared/standin (configs/standin.yaml, debug.yaml).
    "squeezenet_places.StandinPlaces365",
)
ALLOW_FLAG = "--allow-class-path"
CONFIG_FLAGS = ("--config", "-c")
# module.path.ClassName: what a bare command-line value naming a class looks like (file names
# such as resnet50_places365.pth.tar do not end in a capitalised name).
_CLASS_PATH = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*\.[A-Z]\w*$")


class ConfigClassError(ValueError):
    """A config names a class outside the allowed modules."""


def split_allowances(args: list[str]) -> tuple[list[str], tuple[str, ...]]:
    """Remove ``--allow-class-path P`` (or ``=P``) from `args`; return the rest and the prefixes."""
    rest: list[str] = []
    allowed: list[str] = []
    items = iter(args)
    for arg in items:
        if arg == ALLOW_FLAG:
            value = next(items, None)
            if value is None:
                raise ConfigClassError(f"{ALLOW_FLAG} needs a module prefix, e.g. {ALLOW_FLAG} mylab.models")
            allowed.append(value)
        elif arg.startswith(ALLOW_FLAG + "="):
            allowed.append(arg.split("=", 1)[1])
        else:
            rest.append(arg)
    return rest, tuple(allowed)


def check_class_paths(args: list[str], allowed: tuple[str, ...] = ()) -> None:
    """Refuse any class path in `args` (values, config files, inline YAML) outside the allowed ones.

    Raises:
        ConfigClassError: the first class path not allowed, with where it came from and the flag
            that allows it.
    """
    prefixes = ALLOWED_PREFIXES + allowed
    for source, class_path in _class_paths(args):
        if not _is_allowed(class_path, prefixes):
            raise ConfigClassError(
                f"{source}: class_path {class_path!r} is outside the project's modules and the libraries "
                f"its configs use, and importing it would run its code; if you trust it, add "
                f"{ALLOW_FLAG} {class_path.rpartition('.')[0] or class_path} to the command line"
            )


def _is_allowed(class_path: str, prefixes: tuple[str, ...]) -> bool:
    """`prefixes` name modules ("torch.optim." or "mylab.models") or exact classes."""
    return any(class_path == p.rstrip(".") or class_path.startswith(p.rstrip(".") + ".") for p in prefixes)


def _class_paths(args: list[str]) -> Iterator[tuple[str, str]]:
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
        elif _CLASS_PATH.match(arg):
            yield f"{previous or 'argument'}", arg
        else:
            yield from _walk(_load_inline(arg), f"{previous or 'argument'}")
        previous = None


def _from_file(path: Path) -> Iterator[tuple[str, str]]:
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


def _walk(node: Any, source: str) -> Iterator[tuple[str, str]]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "class_path" and isinstance(value, str):
                yield source, value
            elif isinstance(value, str) and _CLASS_PATH.match(value):
                yield source, value  # short forms: `loss: protector.losses.TopKMargin`
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
