"""Old spellings of `model.*` settings, read into the objects that now hold them.

`ProtectorModule` used to take the loss's margins and the robustifier's settings as arguments
of its own (``model.top_k``, ``model.kappa``, ``model.jpeg_quality``, ``model.jpeg_prob``,
``model.resize_prob``, ``model.views``). They now live in the ``init_args`` of ``model.loss``
and ``model.robustifier``. Configs, flags and checkpoints (whose hyperparameters a resume
reads back) written before still work: `protector train` parses these keys and moves them,
with a deprecation warning, before anything is built.
"""

from __future__ import annotations

from typing import Any, Optional

from jsonargparse import Namespace

from protector.views import ViewSampler

LOSS_KEYS: dict[str, Any] = {"top_k": int, "kappa": float}
ROBUSTIFIER_KEYS: dict[str, Any] = {"jpeg_quality": tuple[int, int], "jpeg_prob": float, "resize_prob": float,
                                    "views": ViewSampler}
_SHORT_NAMES = {"margin": "protector.losses.TopKMargin", "topk": "protector.losses.TopKMargin",
                "sensitive_safe": "protector.losses.SensitiveSafe"}


def add_old_model_keys(parser: Any) -> None:
    """Let the CLI's parser read the old keys (None: not given)."""
    for key, kind in {**LOSS_KEYS, **ROBUSTIFIER_KEYS}.items():
        home = "model.loss" if key in LOSS_KEYS else "model.robustifier"
        parser.add_argument(f"--model.{key}", type=Optional[kind], default=None,
                            help=f"deprecated: give it in {home}'s init_args")


def move_old_model_keys(model: Namespace) -> list[str]:
    """Move the old keys given in the parsed ``model`` namespace into ``loss`` and ``robustifier``.

    Returns:
        One deprecation message per key given (none when the config uses the new spellings).

    Raises:
        ValueError: ``top_k``/``kappa`` with ``loss: sensitive_safe`` but no sensitive categories.
    """
    given = {key: model.get(key) for key in (*LOSS_KEYS, *ROBUSTIFIER_KEYS)}
    for key in given:
        if key in model:
            del model[key]
    given = {key: value for key, value in given.items() if value is not None}
    messages = []
    margins = {key: given[key] for key in LOSS_KEYS if key in given}
    if margins:
        messages.append(_move_margins(model, margins))
    settings = {key: given[key] for key in ROBUSTIFIER_KEYS if key in given}
    if settings:
        robustifier = model.get("robustifier")
        class_path = robustifier.class_path if robustifier is not None else "protector.robust.Robustifier"
        init_args = robustifier.init_args.clone() if robustifier is not None else Namespace()
        for key, value in settings.items():
            init_args[key] = value
        model.robustifier = Namespace(class_path=class_path, init_args=init_args)
        keys = ", ".join(f"model.{key}" for key in settings)
        messages.append(f"{keys}: deprecated, give them as model.robustifier's init_args "
                        f"(class_path: protector.robust.Robustifier)")
    return messages


def _move_margins(model: Namespace, margins: dict[str, Any]) -> str:
    from protector.module import SHORT_NAME_MARGINS

    keys = ", ".join(f"model.{key}" for key in margins)
    loss = model.get("loss")
    if not isinstance(loss, str) or loss not in _SHORT_NAMES:
        # As before: they only ever set the margins of the short names' losses.
        return f"{keys}: deprecated and ignored with this loss ({_describe(loss)}); set its init_args instead"
    k = 1 if loss == "margin" else margins.get("top_k", SHORT_NAME_MARGINS[0])
    init_args = Namespace(k=k, kappa=margins.get("kappa", SHORT_NAME_MARGINS[1]))
    if loss == "sensitive_safe":
        if model.get("sensitive_categories") is None:
            raise ValueError("the sensitive_safe loss needs the sensitive categories (a MEPP18senscats.txt path)")
        init_args = Namespace(sensitive=model.sensitive_categories, **vars(init_args))
    model.loss = Namespace(class_path=_SHORT_NAMES[loss], init_args=init_args)
    return (f"{keys}: deprecated, give them in model.loss's init_args (class_path: {_SHORT_NAMES[loss]}, "
            f"init_args: {dict(vars(init_args))})")


def _describe(loss: Any) -> str:
    return loss if isinstance(loss, str) else getattr(loss, "class_path", type(loss).__name__)


__all__ = ["add_old_model_keys", "move_old_model_keys"]
