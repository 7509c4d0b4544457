"""protector.refine: gradient steps from the generator's photo stay in budget and push the label out."""

import pytest
import torch
from torch import nn

from protector.losses import SensitiveSafe, TopKMargin, UntargetedCE, topk_margin
from protector.refine import refine


@pytest.mark.parametrize("jpeg_quality", [None, 90])
def test_refine_stays_in_budget_and_lowers_the_margin(tiny_classifier, jpeg_quality):
    torch.manual_seed(0)
    x = torch.rand(4, 3, 40, 40)  # 40 is not a multiple of 16: exercises the JPEG padding
    eps = 8 / 255
    x_init = (x + eps * torch.empty_like(x).uniform_(-1, 1)).clamp(0, 1)
    with torch.no_grad():
        y = tiny_classifier(x).argmax(1)
        before = topk_margin(tiny_classifier(x_init), y, k=5)
    x_adv = refine(x, x_init, tiny_classifier, y, eps, steps=5, jpeg_quality=jpeg_quality,
                   loss=TopKMargin(k=5, kappa=100.0))
    assert x_adv.shape == x.shape and x_adv.dtype == torch.float32
    assert (x_adv - x).abs().max() <= eps + 1e-6
    assert 0 <= x_adv.min() and x_adv.max() <= 1
    with torch.no_grad():
        after = topk_margin(tiny_classifier(x_adv), y, k=5)
    assert after.mean() < before.mean()


def test_zero_steps_returns_the_generator_output(tiny_classifier):
    x = torch.rand(2, 3, 16, 16)
    x_init = (x + 0.01).clamp(0, 1)
    y = torch.zeros(2, dtype=torch.long)
    assert torch.equal(refine(x, x_init, tiny_classifier, y, 2 / 255, steps=0), x_init)
    with pytest.raises(ValueError, match="steps"):
        refine(x, x_init, tiny_classifier, y, 2 / 255, steps=-1)


def test_classifier_gets_no_gradient(tiny_classifier):
    x = torch.rand(2, 3, 32, 32)
    refine(x, x.clone(), tiny_classifier.requires_grad_(False), torch.zeros(2, dtype=torch.long), 2 / 255, steps=2)
    assert all(p.grad is None for p in tiny_classifier.parameters())


def test_refine_descends_the_loss_object_it_is_given(tiny_classifier):
    # A loss that needs the clean logits (CDA's relativistic CE) gets them at the clean photo.
    torch.manual_seed(0)
    x = torch.rand(4, 3, 32, 32)
    with torch.no_grad():
        clean_logits = tiny_classifier(x)
    y = clean_logits.argmax(1)
    loss = UntargetedCE(relativistic=True)
    x_adv = refine(x, x, tiny_classifier, y, 8 / 255, steps=3, loss=loss, jpeg_quality=None)
    with torch.no_grad():
        assert loss(tiny_classifier(x_adv), y, clean_logits) < loss(clean_logits, y, clean_logits)


def test_sensitive_safe_moves_the_prediction_out_of_a_class_set():
    # A tiny real classifier (linear on 8x8 photos, 12 classes) and the 4 classes it ranks
    # highest on average as the "sensitive" set. Pushing only the label out (TopKMargin) lands
    # most photos on another class of the set; SensitiveSafe takes every photo out of it.
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 12)).eval()
    x = torch.rand(8, 3, 8, 8)
    with torch.no_grad():
        logits = model(x)
    y = logits.argmax(1)
    avoided = logits.mean(0).topk(4).indices.tolist()
    assert all(int(c) in avoided for c in y)  # every photo starts in the set
    eps, steps = 0.1, 20
    runs = {}
    for name, loss in (("label", TopKMargin(k=1, kappa=1.0)), ("set", SensitiveSafe(avoided, k=1, kappa=1.0))):
        x_adv = refine(x, x, model, y, eps, steps=steps, step_size=eps / 5, loss=loss, jpeg_quality=None)
        assert (x_adv - x).abs().max() <= eps + 1e-6
        with torch.no_grad():
            runs[name] = model(x_adv).argmax(1)
    assert bool((runs["label"] != y).all()) and bool((runs["set"] != y).all())  # both fool the top-1
    assert sum(int(c) in avoided for c in runs["label"]) >= 6
    assert not any(int(c) in avoided for c in runs["set"])


@pytest.mark.parametrize("steps, levels", [(1, 2.0), (2, 2.0), (10, 2.0)])
def test_few_steps_over_views_still_reach_the_budget(tiny_classifier, steps, levels):
    from protector.views import ViewSampler

    # EOT-PGD-1 over views is FGSM over views: its one step goes to the boundary, as do two
    # half steps, and ten quarter steps with momentum; a fixed small step would stop short.
    x = torch.rand(2, 3, 40, 40)
    eps = levels / 255
    y = tiny_classifier(x).argmax(1)
    x_adv = refine(x, x, tiny_classifier, y, eps, steps=steps, jpeg_quality=None,
                   views=ViewSampler(shorter_sides=(24, 40)), loss=UntargetedCE())
    reached = (x_adv - x).abs().flatten(1).max(dim=1).values
    assert torch.allclose(reached, torch.full_like(reached, eps), atol=1e-6)
    assert refine(x, x, tiny_classifier, y, eps, steps=0, views=ViewSampler()).equal(x)


def test_steps_over_a_view_cycle_see_its_views_in_turn(tiny_classifier):
    from protector.views import View, ViewCycle

    seen = []

    class Recording(nn.Module):
        def forward(self, x):
            seen.append(tuple(x.shape[-2:]))
            return tiny_classifier(x)

    cycle = ViewCycle((View("short-24", shorter_side=24), View("short-32-crop-16", shorter_side=32, crop=16),
                       View("short-20", shorter_side=20)))
    x = torch.rand(1, 3, 40, 60)
    eps = 2 / 255
    x_adv = refine(x, x, Recording(), torch.tensor([0]), eps, steps=2, jpeg_quality=None, views=cycle,
                   views_per_step=2, loss=UntargetedCE())
    assert (x_adv - x).abs().max() <= eps + 1e-6
    # one pass per view per step in the cycle's order, and each view's clean label at its first use
    assert seen == [(24, 36), (24, 36), (16, 16), (16, 16), (20, 30), (20, 30), (24, 36)]


def test_over_views_the_files_jpeg_is_in_the_loss_of_the_file_as_it_is_only(tiny_classifier, monkeypatch):
    import protector.refine
    from protector.views import AS_IS, View, ViewCycle

    encoded = []
    real_jpeg = protector.refine.differentiable_jpeg
    monkeypatch.setattr(protector.refine, "differentiable_jpeg",
                        lambda x, quality: encoded.append(quality) or real_jpeg(x, quality))
    cycle = ViewCycle((View("short-24", shorter_side=24), AS_IS, View("short-20", shorter_side=20)))
    x = torch.rand(1, 3, 40, 60)
    refine(x, x, tiny_classifier, torch.tensor([0]), 2 / 255, steps=3, jpeg_quality=85, views=cycle,
           views_per_step=1, loss=UntargetedCE())
    assert encoded == [85]  # three steps, one view each: only the step on the file as it is


class MeanBrightness(nn.Module):
    """Class 1 once the photo's mean brightness passes `threshold`, class 0 below: a classifier
    whose decision each test can place exactly."""

    def __init__(self, threshold: float) -> None:
        super().__init__()
        self.threshold = threshold

    def forward(self, x):
        score = 200.0 * (x.mean(dim=(1, 2, 3)) - self.threshold)
        return torch.stack([-score, score], dim=1)


@pytest.mark.parametrize("cycle", [False, True])
def test_extra_steps_go_on_for_the_photos_still_recognized_only(cycle):
    from protector.views import View, ViewCycle

    eps = 8 / 255
    # Photo 0 crosses the threshold within the first step; photo 1 needs more than one.
    x = torch.stack([torch.full((3, 16, 16), 0.5 - eps / 4), torch.full((3, 16, 16), 0.5 - 0.75 * eps)])
    model, y = MeanBrightness(0.5), torch.zeros(2, dtype=torch.long)
    views = ViewCycle((View("short-8", shorter_side=8),)) if cycle else None

    def protect(extra_steps: int) -> torch.Tensor:
        return refine(x, x, model, y, eps, steps=1, step_size=eps / 2, loss=UntargetedCE(), jpeg_quality=None,
                      views=views, views_per_step=1, extra_steps=extra_steps)

    without, with_extra = protect(0), protect(4)
    assert torch.equal(with_extra[0], without[0])  # no longer recognized: left as it is
    assert (with_extra[1] - x[1]).mean() > (without[1] - x[1]).mean()  # still recognized: more steps
    assert (with_extra - x).abs().max() <= eps + 1e-6
    assert model(with_extra).argmax(1).tolist() == [1, 1]
    with pytest.raises(ValueError, match="extra_steps"):
        protect(-1)
