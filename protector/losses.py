"""What the protector minimizes: untargeted attack losses and image-fidelity terms.

The margin losses (Carlini-Wagner style) push the true class down the classifier's ranking;
each sample's term is clamped at ``-kappa``: a sample already beaten by a margin of ``kappa``
stops pulling, so the generator spends its capacity on images that are not yet protected.
The cross-entropy losses never stop pulling.

The classes are the objects training and refinement are configured with (a YAML
``class_path``); the functions are their arithmetic. A new objective is one
:class:`AttackLoss` subclass.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.functional.image import structural_similarity_index_measure


def margin_loss(
    logits: torch.Tensor,
    y: torch.Tensor,
    kappa: float = 0.0,
    class_weights: torch.Tensor | None = None,
) -> torch.Tensor:
    r"""Top-1 margin: true logit minus the best other logit, clamped below at ``-kappa``.

    Negative once the true class is no longer the top-1 prediction.

    Args:
        logits: classifier logits.
        y: true class indices, all in ``[0, C)``.
        kappa: margin (in logit units) beyond which a sample stops contributing. Default: 0.
        class_weights: optional per-class weight ``(C,)``; each sample is weighted by the
            weight of its class and the result is the weighted mean.

    Shape:
        - logits: :math:`(B, C)`, y: :math:`(B,)`; output: scalar.

    Example::
        >>> margin_loss(torch.tensor([[2.0, 1.0, 0.0]]), torch.tensor([0]))
        tensor(1.)
    """
    return topk_margin_loss(logits, y, k=1, kappa=kappa, class_weights=class_weights)


def topk_margin_loss(
    logits: torch.Tensor,
    y: torch.Tensor,
    k: int = 5,
    kappa: float = 0.0,
    class_weights: torch.Tensor | None = None,
) -> torch.Tensor:
    r"""Top-k margin: true logit minus the k-th largest *other* logit, clamped at ``-kappa``.

    Negative exactly when at least ``k`` other classes score above the true one, i.e. the
    true class is out of the top-k. ``k = 1`` is :func:`margin_loss`.

    Args:
        logits: classifier logits.
        y: true class indices, all in ``[0, C)``.
        k: rank the true class must be pushed beyond, ``1 <= k < C``. Default: 5.
        kappa: margin in logit units, ``>= 0``. Default: 0.
        class_weights: optional per-class weight ``(C,)`` (e.g. higher for sensitive classes).

    Shape:
        - logits: :math:`(B, C)`, y: :math:`(B,)`; output: scalar.

    Example::
        >>> logits = torch.tensor([[5.0, 4.0, 3.0, 2.0]])
        >>> topk_margin_loss(logits, torch.tensor([0]), k=2)
        tensor(2.)
    """
    if kappa < 0:
        raise ValueError(f"kappa must be >= 0, got {kappa}")
    per_sample = topk_margin(logits, y, k)
    per_sample = per_sample.clamp(min=-kappa)
    if class_weights is None:
        return per_sample.mean()
    if class_weights.shape != (logits.shape[1],):
        raise ValueError(f"class_weights must have shape ({logits.shape[1]},), got {tuple(class_weights.shape)}")
    weights = class_weights.to(per_sample.dtype)[y]
    return (weights * per_sample).sum() / weights.sum().clamp_min(torch.finfo(per_sample.dtype).tiny)


def topk_margin(logits: torch.Tensor, y: torch.Tensor, k: int = 1) -> torch.Tensor:
    """Per-sample ``logit[y] - (k-th largest other logit)``, unclamped, shape ``(B,)``."""
    if logits.ndim != 2:
        raise ValueError(f"logits must be (B, C), got shape {tuple(logits.shape)}")
    num_classes = logits.shape[1]
    if not 1 <= k < num_classes:
        raise ValueError(f"k must be in 1..{num_classes - 1} for {num_classes} classes, got {k}")
    if y.shape != logits.shape[:1]:
        raise ValueError(f"y must have shape ({logits.shape[0]},), got {tuple(y.shape)}")
    if y.numel() and (int(y.min()) < 0 or int(y.max()) >= num_classes):
        raise ValueError(f"labels must be in [0, {num_classes}); got min {int(y.min())}, max {int(y.max())}")
    logits = logits.float()
    true_logit = logits.gather(1, y[:, None]).squeeze(1)
    others = logits.scatter(1, y[:, None], float("-inf"))
    kth_other = others.topk(k, dim=1).values[:, -1]
    return true_logit - kth_other


def untargeted_ce_loss(
    logits: torch.Tensor,
    y: torch.Tensor,
    clean_logits: torch.Tensor | None = None,
    class_weights: torch.Tensor | None = None,
) -> torch.Tensor:
    r"""Negative cross-entropy of the class to move away from (minimizing it raises the CE).

    With ``clean_logits`` it is CDA's relativistic cross-entropy (Naseer et al., NeurIPS
    2019): the CE of ``logits - clean_logits``, which rewards moving *relative* to the clean
    photo's own scores, so confident and unsure photos pull alike. Unlike the margin losses it
    never stops pulling: every sample keeps a gradient, useful while a generator still has to
    learn which direction fools at all.

    Args:
        logits: classifier logits on the protected photos.
        y: class indices to move away from, all in ``[0, C)``.
        clean_logits: logits on the clean photos (the relativistic form), or None.
        class_weights: optional per-class weight ``(C,)``, as in :func:`topk_margin_loss`.

    Shape:
        - logits, clean_logits: :math:`(B, C)`, y: :math:`(B,)`; output: scalar.

    Example::
        >>> untargeted_ce_loss(torch.tensor([[0.0, 0.0]]), torch.tensor([0]))
        tensor(-0.6931)
    """
    if clean_logits is not None:
        if clean_logits.shape != logits.shape:
            raise ValueError(f"clean_logits must have the shape of logits {tuple(logits.shape)}")
        logits = logits.float() - clean_logits.float().detach()
    per_sample = -F.cross_entropy(logits.float(), y, reduction="none")
    if class_weights is None:
        return per_sample.mean()
    weights = class_weights.to(per_sample.dtype)[y]
    return (weights * per_sample).sum() / weights.sum().clamp_min(torch.finfo(per_sample.dtype).tiny)


class AttackLoss(nn.Module):
    r"""An untargeted attack objective on the classifier's logits: lower means better protected.

    Subclasses implement ``forward(logits, y, clean_logits=None, class_weights=None)`` and
    set ``needs_clean_logits`` when they use the clean photo's logits (the training loop
    then runs the classifier on the clean batch too).

    Shape:
        - logits, clean_logits: :math:`(B, C)`; y: :math:`(B,)` labels to move away from;
          class_weights: :math:`(C,)` or None; output: scalar.
    """

    needs_clean_logits = False

    def forward(
        self,
        logits: torch.Tensor,
        y: torch.Tensor,
        clean_logits: torch.Tensor | None = None,
        class_weights: torch.Tensor | None = None,
    ) -> torch.Tensor:
        raise NotImplementedError


class TopKMargin(AttackLoss):
    r"""Push the label out of the top ``k``: :func:`topk_margin_loss` (``k = 1``: the top-1 margin).

    Args:
        k: rank the label must be pushed beyond. Default: 5.
        kappa: margin in logit units beyond which a sample stops contributing. Default: 0.

    Example::
        >>> TopKMargin(k=2)(torch.tensor([[5.0, 4.0, 3.0, 2.0]]), torch.tensor([0]))
        tensor(2.)
    """

    def __init__(self, k: int = 5, kappa: float = 0.0) -> None:
        super().__init__()
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        if kappa < 0:
            raise ValueError(f"kappa must be >= 0 (a margin in logit units), got {kappa}")
        self.k = int(k)
        self.kappa = float(kappa)

    def forward(self, logits, y, clean_logits=None, class_weights=None):
        return topk_margin_loss(logits, y, k=self.k, kappa=self.kappa, class_weights=class_weights)

    def extra_repr(self) -> str:
        return f"k={self.k}, kappa={self.kappa:g}"


class UntargetedCE(AttackLoss):
    r"""Raise the label's cross-entropy: :func:`untargeted_ce_loss`.

    Args:
        relativistic: CDA's relativistic form, the cross-entropy of the logits minus the clean
            photo's logits. Default: False.

    Example::
        >>> UntargetedCE()(torch.tensor([[0.0, 0.0]]), torch.tensor([0]))
        tensor(-0.6931)
    """

    def __init__(self, relativistic: bool = False) -> None:
        super().__init__()
        self.relativistic = bool(relativistic)
        self.needs_clean_logits = self.relativistic

    def forward(self, logits, y, clean_logits=None, class_weights=None):
        if self.relativistic and clean_logits is None:
            raise ValueError("the relativistic cross-entropy needs the clean photos' logits")
        return untargeted_ce_loss(logits, y, clean_logits if self.relativistic else None, class_weights)

    def extra_repr(self) -> str:
        return f"relativistic={self.relativistic}"


LossName = Literal["margin", "topk", "ce", "relativistic"]


def attack_loss_by_name(name: LossName, top_k: int = 5, kappa: float = 0.0) -> AttackLoss:
    """The loss a config's short name stands for (``top_k`` serves ``"topk"`` only)."""
    losses = {
        "margin": lambda: TopKMargin(1, kappa),
        "topk": lambda: TopKMargin(top_k, kappa),
        "ce": lambda: UntargetedCE(),
        "relativistic": lambda: UntargetedCE(relativistic=True),
    }
    if name not in losses:
        raise ValueError(f"loss must be one of {tuple(losses)} or an AttackLoss, got {name!r}")
    return losses[name]()


class FidelityTerm(nn.Module):
    r"""A penalty on how far the protected photo is from its reference, 0 when identical.

    ``forward(x_adv, reference, eps)``; shapes :math:`(B, 3, H, W)`, output scalar.
    """

    def forward(self, x_adv: torch.Tensor, reference: torch.Tensor, eps: float) -> torch.Tensor:
        raise NotImplementedError


class L2Fidelity(FidelityTerm):
    """Mean squared delta in units of ``eps**2``: 1.0 when every pixel uses the whole budget."""

    def forward(self, x_adv, reference, eps):
        return ((x_adv - reference) / eps).pow(2).mean()


class SSIMFidelity(FidelityTerm):
    """``1 - SSIM`` against the reference (torchmetrics' Gaussian-window SSIM)."""

    def forward(self, x_adv, reference, eps):
        return 1.0 - structural_similarity_index_measure(x_adv, reference, data_range=1.0)


def fidelity_by_name(name: Literal["l2", "ssim"]) -> FidelityTerm:
    """The fidelity term a config's short name stands for."""
    terms = {"l2": L2Fidelity, "ssim": SSIMFidelity}
    if name not in terms:
        raise ValueError(f"fidelity must be one of {tuple(terms)} or a FidelityTerm, got {name!r}")
    return terms[name]()


class NimaAppeal(nn.Module):
    r"""Appeal of an edit: minus its NIMA mean score, plus a penalty on colour casts.

    The edited photo goes through the project's NIMA port (:mod:`protector.nima`, frozen,
    its preprocessing differentiable). The naturalness term penalizes a tint: the part of
    the shift of the channel means that differs between channels, squared, in units of 10
    8-bit levels (one channel 10 levels off the others costs about 1). A tone edit may
    brighten or add contrast, but should not colour the photo.

    Args:
        weights: NIMA weights file (``weights_mobilenet_aesthetic_0.07.hdf5``).
        weight: weight of the NIMA term (per NIMA point).
        colour_weight: weight of the colour-cast penalty.
        preprocess: NIMA's preprocessing (``"idealo"``: 224 x 224 nearest, or ``"native"``).

    Shape:
        - edited, photo: :math:`(B, 3, H, W)` in [0, 1]; output: (scalar loss, (B,) NIMA means).
    """

    def __init__(self, weights: str, weight: float = 1.0, colour_weight: float = 1.0, preprocess: str = "idealo"):
        super().__init__()
        from protector.nima import load_nima  # h5py and the port load only when appeal is trained

        if weight < 0 or colour_weight < 0:
            raise ValueError(f"weights must be >= 0, got weight={weight}, colour_weight={colour_weight}")
        self.nima = load_nima(weights, preprocess=preprocess)
        self.weight = float(weight)
        self.colour_weight = float(colour_weight)

    def train(self, mode: bool = True) -> NimaAppeal:
        super().train(mode)
        self.nima.eval()  # frozen: BatchNorm statistics never move
        return self

    def scores(self, x: torch.Tensor) -> torch.Tensor:
        """NIMA mean score per photo, (B,)."""
        from protector.nima import nima_scores

        return nima_scores(self.nima(x.float()))[0]

    def forward(self, edited: torch.Tensor, photo: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        scores = self.scores(edited)
        shift = (edited.float() - photo.float()).mean(dim=(2, 3)) * 25.5  # (B, 3), in units of 10 levels
        cast = (shift - shift.mean(dim=1, keepdim=True)).pow(2).sum(dim=1)
        loss = -self.weight * scores.mean() + self.colour_weight * cast.mean()
        return loss, scores.detach()
