"""Untargeted margin losses (Carlini-Wagner style) for training the protector.

Minimizing them pushes the true class down the classifier's ranking. Each sample's term is
clamped at ``-kappa``: a sample already beaten by a margin of ``kappa`` stops pulling, so
the generator spends its capacity on images that are not yet protected.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


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
