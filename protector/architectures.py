"""The Places365 attack-model architectures: one registry entry each.

An entry says everything the project needs about one architecture: how to build it, the
name of its final linear layer (checked against a checkpoint's class count), where CSAIL
publishes its Places365 weights, the pinned sha256 of that file once someone who has it
pins it, and how to rename the keys of old checkpoints to today's torchvision names. A new
attack model is one decorated builder (as timm's ``@register_model``); `classifiers.py`,
`classifier_spec.py` and `data/fetch.py` read everything from here.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from torch import nn
from torchvision.models import densenet161, resnet18, resnet50
from torchvision.models.resnet import BasicBlock, ResNet

PLACES365_CLASSES = 365
CSAIL_MODELS = "http://places2.csail.mit.edu/models_places365"


@dataclass(frozen=True)
class Architecture:
    """One attack-model architecture.

    Attributes:
        name: the spelling on every command line (``resnet50``).
        build: ``build(num_classes)`` -> a randomly initialized network (no normalization).
        head: name of the final linear layer (its weight is (num_classes, features)).
        fix_key: renames one state_dict key of an official file (``module.`` already removed).
        sha256: the official file's pinned sha256; None until someone who has the file pins it
            (until then it loads only with an explicit sha256 or allow_unpinned=True).
    """

    name: str
    build: Callable[[int], nn.Module]
    head: str = "fc"
    fix_key: Callable[[str], str] = lambda key: key  # noqa: E731 (most keys need no renaming)
    sha256: str | None = None

    @property
    def url(self) -> str:
        """Where CSAIL publishes the Places365 weights."""
        return f"{CSAIL_MODELS}/{self.filename}"

    @property
    def filename(self) -> str:
        return f"{self.name}_places365.pth.tar"


REGISTRY: dict[str, Architecture] = {}


def register_architecture(
    name: str, head: str = "fc", fix_key: Callable[[str], str] | None = None, sha256: str | None = None
) -> Callable[[Callable[[int], nn.Module]], Callable[[int], nn.Module]]:
    """Decorator: register ``build(num_classes)`` as the architecture `name`."""

    def register(build: Callable[[int], nn.Module]) -> Callable[[int], nn.Module]:
        if name in REGISTRY:
            raise ValueError(f"architecture {name!r} is registered twice")
        REGISTRY[name] = Architecture(name, build, head, *([fix_key] if fix_key else []), sha256=sha256)
        return build

    return register


def get_architecture(name: str) -> Architecture:
    """The registry entry of `name`; ValueError naming the choices for an unknown one."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown architecture {name!r}; choose one of {', '.join(REGISTRY)}") from None


def build_architecture(name: str, num_classes: int = PLACES365_CLASSES) -> nn.Module:
    """A randomly initialized network of the registered architecture `name` (no normalization)."""
    return get_architecture(name).build(num_classes)


class WideResNet18(ResNet):
    """CSAIL's `wideresnet18` Places365 network: ResNet-18 without the stem max-pool.

    Dropping the max-pool keeps feature maps twice as large in each direction (14x14 after
    `layer4` at 224x224 input instead of 7x7); layer names and shapes equal torchvision's
    `resnet18`, so CSAIL's state_dict loads as is. CSAIL averaged with a fixed 14x14 pool;
    here the pool is global (adaptive), identical at 224x224 and defined at every size.

    Args:
        num_classes: number of output logits (365 for Places365).

    Shape:
        (B, 3, H, W) normalized -> (B, num_classes).
    """

    def __init__(self, num_classes: int = PLACES365_CLASSES):
        super().__init__(BasicBlock, [2, 2, 2, 2], num_classes=num_classes)
        self.maxpool = nn.Identity()


# Old DenseNet checkpoints name the layers inside a dense layer `norm.1`, `conv.2`, ...;
# current torchvision calls them `norm1`, `conv2`.
_OLD_DENSENET_KEY = re.compile(r"(denselayer\d+\.(?:norm|relu|conv))\.([12])\.")


def _densenet_key(key: str) -> str:
    return _OLD_DENSENET_KEY.sub(r"\1\2.", key)


# The official files could not be downloaded where this table was written, so no sha256 is pinned.
@register_architecture("resnet50")
def _resnet50(num_classes: int) -> nn.Module:
    return resnet50(num_classes=num_classes)


@register_architecture("resnet18")
def _resnet18(num_classes: int) -> nn.Module:
    return resnet18(num_classes=num_classes)


@register_architecture("densenet161", head="classifier", fix_key=_densenet_key)
def _densenet161(num_classes: int) -> nn.Module:
    return densenet161(num_classes=num_classes)


@register_architecture("wideresnet18")
def _wideresnet18(num_classes: int) -> nn.Module:
    return WideResNet18(num_classes=num_classes)
