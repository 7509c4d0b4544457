"""Per-photo evaluation results: what every summary, table and plot is computed from."""

from __future__ import annotations

from dataclasses import dataclass, field

from protector.evaluation.fidelity import Fidelity
from protector.evaluation.scoring import Top


@dataclass
class ImageEval:
    """One photo of one run.

    Attributes:
        name: the original's name.
        file: the evaluated file, relative to the run's folder.
        label: ground truth, None when unknown.
        reference: the class protection must move away from: `label` when known, else the
            attack model's top-1 on the clean photo.
        width, height: photo size in pixels.
        clean, protected: top-5 (class, probability) per model name, on the original and on
            the file decoded from disk.
        fidelity: PSNR/SSIM/CIEDE2000/max |delta| of the file against the original.
        nima_clean, nima_protected: NIMA (mean, std), None without NIMA.
    """

    name: str
    file: str
    label: int | None
    reference: int
    width: int
    height: int
    clean: dict[str, Top]
    protected: dict[str, Top]
    fidelity: Fidelity
    nima_clean: tuple[float, float] | None = None
    nima_protected: tuple[float, float] | None = None

    def reference_for(self, model: str) -> int:
        """Ground truth when known, else this model's own clean top-1."""
        return self.label if self.label is not None else self.clean[model][0][0]


@dataclass
class RunEval:
    """All photos of one run (the protector's files, or a baseline's)."""

    name: str
    folder: str
    description: str
    images: list[ImageEval] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)
    seconds_per_image: float | None = None

    def clean_top1_percent(self, model: str) -> float | None:
        """`model`'s top-1 accuracy on the originals against ground truth; None when no photo has a label."""
        labelled = [im for im in self.images if im.label is not None]
        if not labelled:
            return None
        return 100.0 * sum(im.clean[model][0][0] == im.label for im in labelled) / len(labelled)
