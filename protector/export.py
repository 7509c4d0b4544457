"""`protector.pt`: the trained generator and its budget in one small file.

The file is a plain dict of tensors, numbers and strings, so it loads with
`torch.load(weights_only=True)`; no pickled class is ever executed. The generator class (and
the enhancer class of an appeal protector) is looked up by name in an allow-list, never
imported from a path stored in the file. Files with an enhancer are version 2, so code that
cannot apply the enhancer refuses them instead of silently skipping the edit.
"""

from __future__ import annotations

import io
import math
import pickle
from pathlib import Path
from typing import Any

import torch
from torch import nn

from protector.enhance import ToneCurveEnhancer
from protector.generator import BoundedProtector, UNetGenerator, check_eps
from protector.images import write_atomic
from protector.limits import MAX_WEIGHTS_BYTES, FileTooLargeError
from protector.paths import NotAFileError, regular_file_size

FORMAT_TAG = "protector"
FORMAT_VERSION = 1
ENHANCED_FORMAT_VERSION = 2  # version 1 plus an "enhancer" entry

# Classes a protector file may name (the only code the file can select).
GENERATOR_CLASSES: dict[str, type[nn.Module]] = {"UNetGenerator": UNetGenerator}
ENHANCER_CLASSES: dict[str, type[nn.Module]] = {"ToneCurveEnhancer": ToneCurveEnhancer}


# What torch.load raises for random bytes, truncated zips, text files and pickles holding
# classes that weights_only refuses (measured with torch 2.x).
_CORRUPT_FILE_ERRORS = (RuntimeError, EOFError, LookupError, ValueError, TypeError, OSError, pickle.UnpicklingError)


class ProtectorFileError(ValueError):
    """A protector file is missing, corrupt, or not a protector file; the message names the file."""


def save_protector(path: str | Path, protector: BoundedProtector, meta: dict[str, Any] | None = None) -> Path:
    """Write the protector's generator weights, budget and enhancer, and the settings to rebuild
    them, atomically; :func:`load_protector` reads it back.

    Args:
        path: output file, usually ``<run>/protector.pt``; replaced if it exists.
        protector: a :class:`BoundedProtector` whose generator's class is in ``GENERATOR_CLASSES``
            (rebuilt from its ``config``) and whose enhancer, if any, is in ``ENHANCER_CLASSES``.
            Its attack model is not saved: a guided protector is given one when it protects.
        meta: provenance (plain numbers/strings/lists/dicts), stored as is; the loaded
            protector's ``meta``.

    Returns:
        The path written.
    """
    if not isinstance(protector, BoundedProtector):
        raise TypeError(
            f"save_protector(path, protector, meta) takes a BoundedProtector, got a {type(protector).__qualname__} "
            "(a generator is saved as BoundedProtector(generator, eps))"
        )
    generator, enhancer = protector.generator, protector.enhancer
    class_name = type(generator).__name__
    if GENERATOR_CLASSES.get(class_name) is not type(generator):
        raise TypeError(
            f"cannot export a {type(generator).__qualname__}: protector files hold one of "
            f"{sorted(GENERATOR_CLASSES)} (add the class to protector.export.GENERATOR_CLASSES)"
        )
    payload = {
        "format": FORMAT_TAG,
        "version": FORMAT_VERSION,
        "generator_class": class_name,
        "generator_init": dict(generator.config),
        "eps": check_eps(protector.eps),
        "state_dict": _cpu_state(generator),
        "meta": dict(meta or {}),
    }
    if enhancer is not None:
        name = type(enhancer).__name__
        if ENHANCER_CLASSES.get(name) is not type(enhancer):
            raise TypeError(f"cannot export a {type(enhancer).__qualname__}: known enhancers {sorted(ENHANCER_CLASSES)}")
        payload["version"] = ENHANCED_FORMAT_VERSION
        payload["enhancer"] = {"class": name, "init": dict(enhancer.config), "state_dict": _cpu_state(enhancer)}
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    path = Path(path)
    write_atomic(path, buffer.getvalue(), overwrite=True)
    return path


def load_protector(path: str | Path, map_location: str | torch.device = "cpu") -> BoundedProtector:
    """Rebuild the :class:`BoundedProtector` saved by :func:`save_protector`, in eval mode.

    Raises:
        FileNotFoundError: no file at ``path``.
        ProtectorFileError: not a protector file, an unknown version or generator class,
            or weights that do not fit the stored settings.
    """
    payload = read_protector_file(path, map_location)
    generator_cls = GENERATOR_CLASSES[payload["generator_class"]]
    try:
        generator = generator_cls(**payload["generator_init"])
    except (TypeError, ValueError) as err:
        raise ProtectorFileError(f"{path}: stored generator settings are invalid ({err})") from None
    try:
        generator.load_state_dict(payload["state_dict"])
    except RuntimeError as err:
        raise ProtectorFileError(f"{path}: weights do not match the stored generator settings ({err})") from None
    protector = BoundedProtector(generator, payload["eps"], enhancer=_load_enhancer(path, payload)).eval()
    protector.meta = payload["meta"]
    return protector


def _load_enhancer(path: str | Path, payload: dict[str, Any]) -> nn.Module | None:
    stored = payload.get("enhancer")
    if stored is None:
        return None
    try:
        enhancer = ENHANCER_CLASSES[stored["class"]](**stored["init"])
        enhancer.load_state_dict(stored["state_dict"])
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        raise ProtectorFileError(f"{path}: the stored enhancer cannot be rebuilt ({type(err).__name__}: {err})") from None
    return enhancer


def _cpu_state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {key: value.detach().cpu().clone() for key, value in module.state_dict().items()}


def read_protector_file(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load and validate the raw dict of a protector file (weights_only=True)."""
    path = Path(path)
    try:
        regular_file_size(path, MAX_WEIGHTS_BYTES, "protector file")
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no protector file here (train one with `protector train fit ...`)") from None
    except NotAFileError as err:
        raise ProtectorFileError(f"{err}; give RUN/protector.pt") from None
    except FileTooLargeError as err:
        raise ProtectorFileError(str(err)) from None
    except OSError as err:
        raise ProtectorFileError(f"{path}: cannot be read ({err.strerror or err})") from None
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except _CORRUPT_FILE_ERRORS as err:
        raise ProtectorFileError(f"{path}: not a readable protector file ({type(err).__name__}: {err})") from err
    if not isinstance(payload, dict) or payload.get("format") != FORMAT_TAG:
        hint = " (looks like a Lightning checkpoint; use its run's protector.pt)" if _is_lightning(payload) else ""
        raise ProtectorFileError(f"{path}: not a protector file: missing format tag {FORMAT_TAG!r}{hint}")
    if payload.get("version") not in (FORMAT_VERSION, ENHANCED_FORMAT_VERSION):
        raise ProtectorFileError(
            f"{path}: protector file version {payload.get('version')!r}; this code reads versions "
            f"{FORMAT_VERSION} and {ENHANCED_FORMAT_VERSION}"
        )
    if (payload["version"] == ENHANCED_FORMAT_VERSION) != isinstance(payload.get("enhancer"), dict):
        raise ProtectorFileError(f"{path}: version {payload['version']} file with a wrong or missing enhancer entry")
    missing = [k for k in ("generator_class", "generator_init", "eps", "state_dict") if k not in payload]
    if missing:
        raise ProtectorFileError(f"{path}: protector file lacks {missing}")
    if payload["generator_class"] not in GENERATOR_CLASSES:
        raise ProtectorFileError(
            f"{path}: unknown generator class {payload['generator_class']!r}; known: {sorted(GENERATOR_CLASSES)}"
        )
    eps = payload["eps"]
    if not isinstance(eps, float) or not math.isfinite(eps) or not 0 < eps <= 1:
        raise ProtectorFileError(f"{path}: invalid eps {eps!r} (expected a float in (0, 1])")
    payload.setdefault("meta", {})
    return payload


def _is_lightning(payload: Any) -> bool:
    return isinstance(payload, dict) and "state_dict" in payload and "pytorch-lightning_version" in payload
