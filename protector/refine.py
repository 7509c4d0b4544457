"""Gradient steps after the generator (or from the photo itself): the protection's white-box part.

The generator protects in one forward pass. Where the attack model is at hand, `refine`
starts from the generator's photo (the clean photo for a protector without a generator) and
takes projected gradient steps on an attack loss (by default the top-5 margin of the shipped
configs), through a differentiable JPEG at the quality the file will be saved with, staying
inside the same L-inf ball around the reference photo. Given views (a
:class:`~protector.views.ViewSampler` or :class:`~protector.views.ViewCycle`), each step takes
the loss over views from their schedule (expectation over transformations): the file resized,
cropped, re-encoded by a platform, each against the clean photo's prediction under the same view.

Written here rather than taken from torchattacks: its PGD starts only from the clean
photo or a random point, and uses cross-entropy without the JPEG or the views in the loop.
"""

from __future__ import annotations

import torch
from torch import nn

from protector.generator import project_to_budget
from protector.losses import AttackLoss, TopKMargin
from protector.robust import differentiable_jpeg, quantize_8bit_ste
from protector.views import AS_IS, View, ViewCycle, ViewSampler

# Views drawn per step are seeded: a resumed or repeated run writes the same bytes.
VIEW_SEED = 20191
# Extra steps check the photos every this many steps: a check classifies every view once, about
# what a step of two views costs.
CHECK_EVERY = 2


def eot_pgd_step_size(eps: float, steps: int) -> float:
    """EOT-PGD's step for `steps` sign steps at budget `eps` (the baselines' and, over views,
    :func:`refine`'s): one step goes to the boundary (FGSM-like), two take half of it each,
    more take Madry et al.'s 2.5 * eps / steps."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    return {1: eps, 2: eps / 2}.get(steps, 2.5 * eps / steps)


def refine(
    x_clean: torch.Tensor,
    x_init: torch.Tensor,
    classifier: nn.Module,
    y: torch.Tensor,
    eps: float,
    steps: int = 2,
    step_size: float | None = None,
    loss: AttackLoss | None = None,
    jpeg_quality: int | None = 90,
    views: ViewSampler | ViewCycle | None = None,
    views_per_step: int = 2,
    extra_steps: int = 0,
) -> torch.Tensor:
    """Projected gradient steps from `x_init`, kept within `eps` of `x_clean` (L-inf).

    Args:
        x_clean: the photos the budget is measured from, in [0, 1]: the protector's
            :meth:`~protector.generator.BoundedProtector.reference` (the clean photos).
        x_init: the generator's protected photos, within `eps` of `x_clean`.
        classifier: frozen model, RGB [0, 1] in, logits out.
        y: (B,) labels to push out of the top-k (the clean prediction for unlabelled photos);
            used for the file as it is. Under any other view the label is the clean photo's
            prediction under that view.
        eps: budget as a fraction of the [0, 1] range.
        steps: gradient steps; 0 returns `x_init` unchanged.
        step_size: per-step size; default eps / 2, over views :func:`eot_pgd_step_size`
            (eps for one step, eps / 2 each for two, 2.5 * eps / steps for more).
        loss: what the steps descend; default ``TopKMargin(k=5, kappa=2.0)``: push the label
            out of the top 5 until it is 2 logits below the 5th other class, a margin that
            survives JPEG. ``SensitiveSafe`` pushes every sensitive class out as well. A loss
            that needs the clean logits gets them at ``x_clean`` (under the same view).
        jpeg_quality: quality of the differentiable JPEG of the file itself (None: no JPEG), in
            the loss of the file as it is: every step without views, and the file as it is
            among views. A resizing view leaves it out: it averages the JPEG's 8x8 blocks away, and
            with it in, the resized views were fooled less (BENCHMARKS.md, "Views").
        views: ``views_per_step`` views per step (the schedule of a :class:`ViewSampler`,
            stratified random draws, or of a :class:`ViewCycle`, fixed views in turn); their
            gradients, each scaled to the same size, are descended with momentum; None: the
            file as it is only (plain signed steps).
        views_per_step: views per step when ``views`` is given.
        extra_steps: after ``steps``, up to this many more steps (the schedule goes on) for the
            photos the classifier still recognizes (top-1 unchanged) under a view of the steps
            so far, checked every :data:`CHECK_EVERY` steps on the 8-bit photo through the file's
            JPEG; a photo no view recognizes any more is left as it is.

    Shape:
        x_clean, x_init: (B, 3, H, W); y: (B,); output: (B, 3, H, W) float32.
    """
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    if views_per_step < 1:
        raise ValueError(f"views_per_step must be >= 1, got {views_per_step}")
    if extra_steps < 0:
        raise ValueError(f"extra_steps must be >= 0, got {extra_steps}")
    if step_size is None:
        # Over views, few steps must still reach the boundary (FGSM over views for one);
        # ten or more are smaller (eps / 4 for ten): momentum sums what the views agree on.
        step_size = eps / 2 if views is None else eot_pgd_step_size(eps, max(steps, 1))
    loss = TopKMargin(k=5, kappa=2.0) if loss is None else loss
    x_clean = x_clean.detach().float()
    x_adv = x_init.detach().float().clone()
    draws = torch.Generator().manual_seed(VIEW_SEED)
    targets = _ViewTargets(classifier, x_clean, y, loss.needs_clean_logits)
    velocity = torch.zeros_like(x_adv)
    total = steps + (extra_steps if steps else 0)
    schedule = views.schedule(total, views_per_step, draws) if views is not None else [[AS_IS]] * total
    checked = list(dict.fromkeys(view for step_views in schedule[:steps] for view in step_views))
    active = torch.ones(x_adv.shape[0], dtype=torch.bool, device=x_adv.device)
    for index, step_views in enumerate(schedule):
        if index >= steps and (index - steps) % CHECK_EVERY == 0:
            rows = active.nonzero().squeeze(1)
            active[rows] = _recognized(x_adv[rows], checked, classifier, targets.select(rows), jpeg_quality)
            if not active.any():
                break
        rows = active.nonzero().squeeze(1)
        x_rows, rows_targets = x_adv[rows], targets.select(rows)
        if views is None:
            grad = _gradient(x_rows, AS_IS, classifier, loss, rows_targets, jpeg_quality)
        else:
            # Each view's gradient counts the same: a view that shrinks the photo spreads its
            # gradient over more pixels, and summed raw it would lose the sign to the large views.
            grad = sum(_unit(_gradient(x_rows, view, classifier, loss, rows_targets,
                                       jpeg_quality if view.is_identity else None))
                       for view in step_views)
            # Momentum (MI-FGSM, Dong et al. 2018) keeps what the views agree on across steps.
            velocity[rows] += _unit(grad)
            grad = velocity[rows]
        with torch.no_grad():
            # The loss is a margin of the label (or of the avoided classes): descending it pushes them out.
            x_adv[rows] = project_to_budget(x_rows - step_size * grad.sign(), x_clean[rows], eps)
    return x_adv.detach()


def _gradient(x_adv: torch.Tensor, view: View, classifier: nn.Module, loss: AttackLoss, targets: _ViewTargets,
              jpeg_quality: int | None) -> torch.Tensor:
    """The loss's gradient at ``x_adv`` seen under ``view`` after the file's JPEG."""
    x_adv = x_adv.detach().requires_grad_(True)
    with torch.enable_grad():
        saved = x_adv if jpeg_quality is None else differentiable_jpeg(x_adv, jpeg_quality)
        (grad,) = torch.autograd.grad(loss(classifier(view(saved)), *targets.of(view)), x_adv)
    return grad


@torch.no_grad()
def _recognized(x_adv: torch.Tensor, views: list[View], classifier: nn.Module, targets: _ViewTargets,
                jpeg_quality: int | None) -> torch.Tensor:
    """(B,) True where a view of ``views`` still gives the photo its clean prediction, seen on
    the 8-bit photo through the file's JPEG (what will be written)."""
    saved = quantize_8bit_ste(x_adv)
    saved = saved if jpeg_quality is None else differentiable_jpeg(saved, jpeg_quality).clamp(0, 1)
    recognized = torch.zeros(x_adv.shape[0], dtype=torch.bool, device=x_adv.device)
    for view in views:
        recognized |= classifier(view(saved)).argmax(dim=1) == targets.of(view)[0]
    return recognized


def _unit(grad: torch.Tensor) -> torch.Tensor:
    """``grad`` scaled to mean absolute value 1 per photo."""
    return grad / grad.abs().mean(dim=(1, 2, 3), keepdim=True).clamp_min(1e-12)


class _ViewTargets:
    """What to push out under a view: ``y`` for the file as it is, else the clean photo's
    prediction under the view (and its logits for a loss that needs them)."""

    def __init__(self, classifier: nn.Module, x_clean: torch.Tensor, y: torch.Tensor, keep_logits: bool) -> None:
        self.classifier, self.x_clean, self.y, self.keep_logits = classifier, x_clean, y, keep_logits
        self.cache: dict[View, tuple[torch.Tensor, torch.Tensor | None]] = {}

    def select(self, rows: torch.Tensor) -> _ViewTargets:
        """The targets of the photos ``rows`` (all of them: this one)."""
        if len(rows) == len(self.y):
            return self
        subset = _ViewTargets(self.classifier, self.x_clean[rows], self.y[rows], self.keep_logits)
        subset.cache = {view: (label[rows], None if logits is None else logits[rows])
                        for view, (label, logits) in self.cache.items()}
        return subset

    def of(self, view: View) -> tuple[torch.Tensor, torch.Tensor | None]:
        if view not in self.cache:
            logits = None
            if view != AS_IS or self.keep_logits:
                with torch.no_grad():
                    logits = self.classifier(view(self.x_clean)).float()
            label = self.y if view == AS_IS else logits.argmax(dim=1)
            self.cache[view] = (label, logits if self.keep_logits else None)
        return self.cache[view]
