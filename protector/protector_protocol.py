"""`Protector`: what every caller may ask of a protector, named once.

:class:`~protector.generator.BoundedProtector` (a generator within a budget) and
:class:`~protector.protect.tiling.TiledProtector` (the same, in tiles on very large photos)
both satisfy it, so refinement, tiling, the run record and the writer ask for the budget, the
reference photo and the guide's model by name instead of probing for them. A leaf module
(torch and typing only): anything may import it without a cycle.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch
from torch import nn


@runtime_checkable
class Protector(Protocol):
    """Protects photos within an L-inf budget around a reference photo.

    Contract: ``|perturb(reference(x), scene_label(x)) - reference(x)| <= eps`` elementwise,
    in [0, 1]; ``protector(x)`` is that composition.

    Attributes:
        eps: the budget, a fraction of the [0, 1] range.
        classifier: the attack model a guided protector takes its guide from (None: no guide,
            or not attached yet, :meth:`attach_classifier`).
        enhancer: the appeal stage whose output is the reference, or None (the reference is
            the photo itself). Settable: ``protect --enhance off`` drops it.
        guided: whether the protector needs ``classifier`` to protect.
    """

    eps: float
    classifier: nn.Module | None
    enhancer: nn.Module | None

    @property
    def guided(self) -> bool: ...

    def attach_classifier(self, classifier: nn.Module | None) -> None:
        """Give a guided protector its attack model; refuse without one."""

    def reference(self, x: torch.Tensor) -> torch.Tensor:
        """The photo the budget is measured from, (B, 3, H, W)."""

    def scene_label(self, x: torch.Tensor, logits: torch.Tensor | None = None) -> torch.Tensor | None:
        """What the guide moves away from, (B,), or None (the reference's own prediction)."""

    def perturb(self, reference: torch.Tensor, label: torch.Tensor | None = None) -> torch.Tensor:
        """The protected photo around an already computed ``reference(x)``."""

    def __call__(self, x: torch.Tensor) -> torch.Tensor: ...


def require_protector(protector: object, role: str = "protector") -> Protector:
    """``protector`` itself, or a TypeError naming what it lacks (a bare generator, nn.Identity)."""
    if not isinstance(protector, Protector):
        missing = [name for name in ("eps", "classifier", "enhancer", "guided", "attach_classifier", "reference",
                                     "scene_label", "perturb") if not hasattr(protector, name)]
        raise TypeError(
            f"the {role} must be a protector.protector_protocol.Protector, e.g. BoundedProtector(generator, eps); "
            f"a {type(protector).__qualname__} lacks {', '.join(missing)}"
        )
    return protector


__all__ = ["Protector", "require_protector"]
