"""Build a classifier from a command-line spec: ``resnet50``, ``standin`` or ``module.Class``.

Shared by `protector protect` (the attack model and manifest predictions), `protector
evaluate` (the attack model and transfer models) and `protector accuracy`, so all three
accept the same words. :class:`AttackModelSpec` is what their attack-model flags say
(:mod:`protector.commands.flags` adds and reads them).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from torch import nn

from protector.architectures import REGISTRY
from protector.attack_model import DEFAULT_ARCH
from protector.classifiers import ExternalClassifier, FrozenClassifier, Places365Classifier
# The stand-in lives in ../shared/standin beside the repository (see its README).
from protector.search_paths import STANDIN_DIR, allow_search_paths

STANDIN_CLASS_PATH = "squeezenet_places.StandinPlaces365"


def build_classifier(
    spec: str,
    checkpoint: str | Path | None = None,
    sha256: str | None = None,
    allow_unpinned: bool = False,
    search_path: str | Path | None = None,
) -> FrozenClassifier:
    """A frozen classifier (RGB [0, 1] in, logits out) named by `spec`.

    Args:
        spec: an architecture of :data:`protector.architectures.REGISTRY` (``resnet50``
            is the task's attack model; needs `checkpoint`), ``standin`` (the SqueezeNet
            stand-in in ``../shared/standin``), or a class path ``module.Class``.
        checkpoint: the official ``<arch>_places365.pth.tar`` for an architecture. Random
            weights are refused: numbers from them mean nothing.
        sha256: expected sha256 of `checkpoint`.
        allow_unpinned: accept a checkpoint with no sha256 to verify.
        search_path: folder put on ``sys.path`` for a class path. ``standin`` uses
            ``../shared/standin`` beside the repository unless `search_path` holds
            ``squeezenet_places.py``.

    Raises:
        ValueError: an architecture without a checkpoint, or a checkpoint given for a
            class path (which loads its own weights).
    """
    if spec in REGISTRY:
        if checkpoint is None:
            raise ValueError(
                f"classifier {spec!r} needs its checkpoint ({spec}_places365.pth.tar, see weights/README.md): "
                "pass --classifier-checkpoint FILE; a network with random weights gives meaningless predictions"
            )
        model: nn.Module = Places365Classifier(spec, str(checkpoint), sha256=sha256, allow_unpinned=allow_unpinned)
    else:
        if checkpoint is not None:
            raise ValueError(
                f"--classifier-checkpoint applies to the architectures {', '.join(REGISTRY)}; "
                f"classifier {spec!r} loads its own weights"
            )
        class_path = STANDIN_CLASS_PATH if spec == "standin" else spec
        # One --classifier-path may serve several models (attack and transfer): it points the
        # stand-in elsewhere only when it holds the stand-in's code.
        if spec == "standin" and (search_path is None or not (Path(search_path) / "squeezenet_places.py").is_file()):
            search_path = STANDIN_DIR
            if not STANDIN_DIR.is_dir():
                raise FileNotFoundError(
                    f"{STANDIN_DIR}: the stand-in classifier folder is missing (expected ../shared/standin beside "
                    "the repository); point --classifier-path at the folder holding squeezenet_places.py"
                )
        # The flag's folder is on the command line: the user's consent to import from it.
        with allow_search_paths([search_path]):
            model = ExternalClassifier(class_path, str(search_path) if search_path is not None else None)
    return FrozenClassifier(model)


def classifier_label(spec: str, checkpoint: str | Path | None = None) -> str:
    """Short human name for reports: ``resnet50 (resnet50_places365.pth.tar)``."""
    if spec == "standin":
        return "standin (SqueezeNet-Places365, ../shared/standin)"
    return f"{spec} ({Path(checkpoint).name})" if checkpoint else spec


@dataclass(frozen=True)
class AttackModelSpec:
    """The attack model as the command line names it: what to build and how far to trust its file.

    One value for `protect`, `evaluate` and `accuracy`, so the three read ``--classifier``,
    ``--classifier-checkpoint``, ``--sha256``, ``--allow-unpinned`` and ``--classifier-path``
    the same way.

    Args:
        name: a :func:`build_classifier` spec; None is the task's ResNet50 from the user cache
            (:mod:`protector.attack_model`), downloaded on first use.
        checkpoint: the architecture's checkpoint file.
        sha256: expected sha256 of `checkpoint`.
        allow_unpinned: accept a checkpoint with no sha256 to verify.
        search_path: folder put on ``sys.path`` for a class path.

    Raises:
        ValueError: a checkpoint without a name (which architecture would it load into?).
    """

    name: str | None = None
    checkpoint: Path | None = None
    sha256: str | None = None
    allow_unpinned: bool = False
    search_path: Path | None = None

    def __post_init__(self) -> None:
        if self.name is None and self.checkpoint is not None:
            raise ValueError("--classifier-checkpoint needs --classifier (e.g. --classifier resnet50)")

    @property
    def is_default(self) -> bool:
        """No --classifier: the cached official model."""
        return self.name is None

    def resolved(self, progress: bool = True) -> AttackModelSpec:
        """This spec with the default made concrete: the cached checkpoint and its verified sha256.

        Raises:
            AttackModelUnavailable: not cached and cannot be downloaded (the message says what to fetch).
        """
        if self.name is not None:
            return self
        from protector.attack_model import cached_attack_model

        path, digest = cached_attack_model(DEFAULT_ARCH, progress=progress)
        return replace(self, name=DEFAULT_ARCH, checkpoint=path, sha256=digest)

    def build(self, progress: bool = True) -> FrozenClassifier:
        """The frozen classifier (:func:`build_classifier`); the default is fetched first if needed."""
        spec = self.resolved(progress)
        return build_classifier(spec.name, spec.checkpoint, spec.sha256, spec.allow_unpinned, spec.search_path)

    def label(self) -> str:
        """Short human name for reports (:func:`classifier_label`); call on a resolved spec."""
        return classifier_label(self.name or DEFAULT_ARCH, self.checkpoint)
