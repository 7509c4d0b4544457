"""What the protector minimizes: untargeted attack losses and image-fidelity terms.

The margin losses (Carlini-Wagner style) push the true class down the classifier's ranking;
each sample's term is clamped at ``-kappa``: a sample already beaten by a margin of ``kappa``
stops pulling, so the generator spends its capacity on images that are not yet protected.
The cross-entropy losses never stop pulling. :class:`SensitiveSafe` pushes a whole set of
classes (the privacy-sensitive categories) down, not only the label.

The classes are the objects training and refinement are configured with (a YAML
``class_path``); the functions are their arithmetic. A new objective is one
:class:`AttackLoss` subclass.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal, Union

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.functional.image import structural_similarity_index_measure



def topk_margin_loss(
    logits: torch.Tensor,
    y: torch.Tensor,
    k: int = 5,
    kappa: float = 0.0,
    class_weights: torch.Tensor | None = None,
) -> torch.Tensor:
    r"""Top-k margin: true logit minus the k-th largest *other* logit, clamped at ``-kappa``.

    Negative exactly when at least ``k`` other classes score above the true one, i.e. the
    true class is out of the top-k. ``k = 1`` is the top-1 margin.

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


def _sensitive_indices(sensitive: Union[str, Path, Sequence[int]]) -> tuple[dict[int, str] | None, tuple[int, ...]]:
    """(senscats {index: name} or None, sorted indices) from a senscats path or a list of indices."""
    if isinstance(sensitive, (str, Path)):
        from protector.data.lists import read_senscats

        senscats = read_senscats(Path(sensitive))
        return senscats, tuple(senscats)
    indices = tuple(sorted({int(i) for i in sensitive}))
    if not indices or indices[0] < 0:
        raise ValueError(f"sensitive must be a senscats file or a non-empty list of class indices >= 0, "
                         f"got {sensitive!r}")
    return None, indices


class SensitiveSafe(AttackLoss):
    r"""Make the photo read as an ordinary, non-sensitive scene, not only as "not its label".

    For each sample an avoided set :math:`A` of classes: the label ``y`` and every sensitive
    class (``scope="all"``), or the label and the sensitive classes that share a privacy
    criterion with it (``scope="criteria"``, :mod:`protector.data.criteria`). The per-sample
    term is ``logsumexp(logits[A]) - (k-th largest logit outside A)``, clamped at ``-kappa``.
    Since ``logsumexp(logits[A]) - logit[j] = log(P(A) / P(j))``, it is negative exactly when
    the whole probability mass of :math:`A` is below that of the k-th best other class; then
    no class of :math:`A` is in the top ``k``. With ``scope="criteria"`` and a label outside
    the sensitive list it is the top-``k`` margin of the label alone (:class:`TopKMargin`).

    Args:
        sensitive: the sensitive classes: a ``MEPP18senscats.txt`` path or a list of indices.
        k: rank the avoided classes must be pushed beyond. Default: 1 (the top-1 is an
            ordinary scene); 5 keeps them out of the top 5.
        kappa: margin in logit units beyond which a sample stops contributing. Default: 0.
        scope: ``"all"`` (every sensitive class) or ``"criteria"`` (those sharing a criterion
            with the label). Default: ``"all"``.
        criteria: privacy-criteria file for ``scope="criteria"``; default the packaged one.

    Shape:
        - logits: :math:`(B, C)`, y: :math:`(B,)`; output: scalar.

    Example::
        >>> loss = SensitiveSafe([0, 1])
        >>> loss(torch.tensor([[2.0, 1.0, 0.0, 0.5]]), torch.tensor([0]))  # log(e^2 + e^1) - 0.5
        tensor(1.8133)
    """

    def __init__(
        self,
        sensitive: Union[str, Sequence[int]],
        k: int = 1,
        kappa: float = 0.0,
        scope: Literal["all", "criteria"] = "all",
        criteria: str | None = None,
    ) -> None:
        super().__init__()
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        if kappa < 0:
            raise ValueError(f"kappa must be >= 0 (a margin in logit units), got {kappa}")
        if scope not in ("all", "criteria"):
            raise ValueError(f"scope must be 'all' or 'criteria', got {scope!r}")
        senscats, self.sensitive = _sensitive_indices(sensitive)
        self.k = int(k)
        self.kappa = float(kappa)
        self.scope = scope
        self.related: dict[int, tuple[int, ...]] = {}  # sensitive class -> sensitive classes sharing a criterion
        if scope == "criteria":
            self.related = _related_by_criteria(senscats, self.sensitive, criteria)
        self._masks: dict[tuple[int, torch.device], torch.Tensor] = {}

    def _avoid_table(self, num_classes: int, device: torch.device) -> torch.Tensor:
        """(C, C) bool: row y = the classes avoided for label y (built once per size and device)."""
        key = (num_classes, device)
        if key not in self._masks:
            out_of_range = [i for i in self.sensitive if i >= num_classes]
            if out_of_range:
                raise ValueError(f"sensitive class indices {out_of_range[:5]} do not exist in a "
                                 f"{num_classes}-class classifier")
            table = torch.eye(num_classes, dtype=torch.bool)
            if self.scope == "all":
                table[:, list(self.sensitive)] = True
            else:
                for cls, related in self.related.items():
                    table[cls, list(related)] = True
            most_avoided = int(table.sum(1).max())
            if num_classes - most_avoided < self.k:
                raise ValueError(f"k={self.k} needs {self.k} classes outside the avoided set, but a "
                                 f"{num_classes}-class classifier leaves {num_classes - most_avoided}")
            self._masks[key] = table.to(device)
        return self._masks[key]

    def forward(self, logits, y, clean_logits=None, class_weights=None):
        if logits.ndim != 2 or y.shape != logits.shape[:1]:
            raise ValueError(f"need logits (B, C) and y (B,), got {tuple(logits.shape)} and {tuple(y.shape)}")
        logits = logits.float()
        avoid = self._avoid_table(logits.shape[1], logits.device)[y]  # (B, C)
        avoided_mass = logits.masked_fill(~avoid, float("-inf")).logsumexp(dim=1)  # log P(A) + log Z
        kth_other = logits.masked_fill(avoid, float("-inf")).topk(self.k, dim=1).values[:, -1]
        per_sample = (avoided_mass - kth_other).clamp(min=-self.kappa)
        if class_weights is None:
            return per_sample.mean()
        weights = class_weights.to(per_sample.dtype)[y]
        return (weights * per_sample).sum() / weights.sum().clamp_min(torch.finfo(per_sample.dtype).tiny)

    def extra_repr(self) -> str:
        return f"{len(self.sensitive)} sensitive classes, k={self.k}, kappa={self.kappa:g}, scope={self.scope}"


def _related_by_criteria(senscats: dict[int, str] | None, sensitive: tuple[int, ...],
                         criteria_path: str | None) -> dict[int, tuple[int, ...]]:
    """For each sensitive class, the sensitive classes sharing one of its privacy criteria (itself included)."""
    from protector.data.criteria import PrivacyCriteriaError, criteria_of_senscats, read_privacy_criteria

    mapping = read_privacy_criteria(criteria_path)
    if senscats is not None:
        criteria = criteria_of_senscats(senscats, mapping)
    else:
        missing = [i for i in sensitive if i not in mapping]
        if missing:
            raise PrivacyCriteriaError(f"sensitive classes {missing[:10]} have no privacy criteria in "
                                       f"{criteria_path or 'the packaged mapping'}")
        criteria = {i: mapping[i].criteria for i in sensitive}
    return {a: tuple(b for b in sensitive if set(criteria[a]) & set(criteria[b])) for a in sensitive}


LossName = Literal["margin", "topk", "ce", "relativistic", "sensitive_safe"]


def attack_loss_by_name(
    name: LossName, top_k: int = 5, kappa: float = 0.0, sensitive: Union[str, Sequence[int], None] = None
) -> AttackLoss:
    """The loss a config's short name stands for.

    ``top_k`` serves ``"topk"`` and ``"sensitive_safe"``; ``sensitive`` (a senscats path or
    class indices) is what ``"sensitive_safe"`` keeps out of the top ``top_k``.
    """
    def sensitive_safe() -> AttackLoss:
        if sensitive is None:
            raise ValueError("the sensitive_safe loss needs the sensitive categories (a MEPP18senscats.txt path)")
        return SensitiveSafe(sensitive, k=top_k, kappa=kappa)

    losses = {
        "margin": lambda: TopKMargin(1, kappa),
        "topk": lambda: TopKMargin(top_k, kappa),
        "ce": lambda: UntargetedCE(),
        "relativistic": lambda: UntargetedCE(relativistic=True),
        "sensitive_safe": sensitive_safe,
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


# The enhancer's objective lives beside the enhancer; this name stays so that configs and
# checkpoints written with `class_path: protector.losses.NimaAppeal` still load.
from protector.appeal_loss import NimaAppeal  # noqa: E402,F401
