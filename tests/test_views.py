"""protector.views: differentiable views that match the real resize/JPEG, the sampler, the working scale."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from protector.images import to_tensor, to_uint8
from protector.views import (AS_IS, CLASSIFIER_INPUTS, EVALUATION_VIEWS, View, ViewCycle, ViewSampler,
                             carry_to_full_size, render_view, view_by_name, working_size)


def natural_like(height: int, width: int, seed: int = 0) -> np.ndarray:
    """Smooth shapes plus fine texture: resizing and JPEG both have work to do."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(0, 255, (3, height // 16 + 2, width // 16 + 2)).astype(np.float32)
    smooth = torch.nn.functional.interpolate(torch.from_numpy(coarse)[None], size=(height, width), mode="bicubic",
                                             align_corners=False)[0].numpy()
    texture = rng.normal(0, 12, (3, height, width))
    return np.clip(smooth + texture, 0, 255).astype(np.uint8).transpose(1, 2, 0).copy()


# Stated tolerances of the differentiable views against PIL and libjpeg, in 8-bit levels:
# resizes round differently by at most one level; JPEG's DCT differs more (kornia's codec).
RESIZE_MEAN, RESIZE_MAX = 0.5, 2
JPEG_MEAN = 1.5


@pytest.mark.parametrize("view", EVALUATION_VIEWS, ids=lambda v: v.name)
def test_differentiable_view_matches_the_real_resize_and_jpeg(view: View) -> None:
    pixels = natural_like(600, 900)
    real = render_view(pixels, view).astype(np.float32)
    differentiable = to_uint8(view(to_tensor(pixels)[None])[0]).astype(np.float32)
    assert real.shape == differentiable.shape
    error = np.abs(real - differentiable)
    if view.upload_quality is None:
        assert error.mean() <= RESIZE_MEAN and error.max() <= RESIZE_MAX
    else:
        assert error.mean() <= JPEG_MEAN


def test_view_shapes() -> None:
    x = torch.rand(1, 3, 300, 400)
    assert view_by_name("short-256")(x).shape[-2:] == (256, 341)
    assert view_by_name("short-256-crop-224")(x).shape[-2:] == (224, 224)
    # A platform only shrinks: a photo below its size keeps it, then the classifier resizes.
    assert View("u", upload_long_side=1080, upload_quality=85)(x).shape[-2:] == (300, 400)
    assert View("u", upload_long_side=200)(x).shape[-2:] == (150, 200)
    assert torch.equal(AS_IS(x), x)


@pytest.mark.parametrize("view", EVALUATION_VIEWS, ids=lambda v: v.name)
def test_every_view_passes_a_gradient_to_every_pixel_region(view: View) -> None:
    x = torch.rand(1, 3, 96, 128, requires_grad=True)
    view(x).sum().backward()
    grad = x.grad.abs()
    # Every 32x32 block of a view without a crop gets some gradient.
    blocks = grad[0].sum(0).unfold(0, 32, 32).unfold(1, 32, 32).sum((-1, -2))
    if view.crop is None:
        assert bool((blocks > 0).all())
    else:
        assert bool((blocks > 0).any())


def test_bad_views_are_refused() -> None:
    with pytest.raises(ValueError, match="upload_quality"):
        View("bad", upload_quality=0)
    with pytest.raises(ValueError, match="crop"):
        View("bad", shorter_side=224, crop=256)
    with pytest.raises(ValueError, match="unknown view"):
        view_by_name("short-999")
    with pytest.raises(ValueError, match="shorter_sides"):
        ViewSampler(shorter_sides=(512, 224))


def test_sampler_is_repeatable_and_stays_in_its_ranges() -> None:
    sampler = ViewSampler()
    first = [sampler.sample(torch.Generator().manual_seed(3)) for _ in range(1)]
    again = [sampler.sample(torch.Generator().manual_seed(3)) for _ in range(1)]
    assert first == again
    draws = torch.Generator().manual_seed(0)
    views = [sampler.sample(draws) for _ in range(400)]
    as_is = sum(v.is_identity for v in views) / len(views)
    assert 0.15 < as_is < 0.35
    resized = [v for v in views if not v.is_identity]
    assert all(224 <= v.shorter_side <= 512 for v in resized)
    uploads = [v for v in resized if v.upload_long_side is not None]
    assert uploads and all(1080 <= v.upload_long_side <= 2048 and 70 <= v.upload_quality <= 95 for v in uploads)
    assert any(v.crop for v in resized) and any(v.crop is None for v in resized)


def test_working_size_only_shrinks_photos_larger_than_the_working_side() -> None:
    assert working_size(256, 256, 512) == (256, 256)
    assert working_size(512, 900, 512) == (512, 900)
    assert working_size(3000, 4000, 512) == (512, 683)
    assert working_size(4000, 3000, 512) == (683, 512)


def test_carried_perturbation_keeps_its_bound() -> None:
    eps = 2 / 255
    delta = eps * torch.randn(1, 3, 64, 96).sign()
    full = carry_to_full_size(delta, (301, 451))
    assert full.shape[-2:] == (301, 451)
    assert float(full.abs().max()) <= eps + 1e-7


def test_a_step_draws_one_view_from_each_part_of_the_size_range() -> None:
    sampler = ViewSampler()
    draws = torch.Generator().manual_seed(1)
    parts = [(441, 512), (369, 440), (296, 368), (224, 295)]  # 224..512 cut in four, largest first
    as_is_first = 0
    for _ in range(100):
        step = sampler.draw(4, draws)
        assert len(step) == 4
        as_is_first += step[0].is_identity
        for view, (low, high) in zip(step[1:], parts[1:]):
            assert not view.is_identity and low <= view.shorter_side <= high
        assert step[0].is_identity or parts[0][0] <= step[0].shorter_side <= parts[0][1]
    assert 10 < as_is_first < 45  # the file as it is replaces the largest view at as_is_prob (0.25)
    assert sampler.draw(4, torch.Generator().manual_seed(5)) == sampler.draw(4, torch.Generator().manual_seed(5))
    with pytest.raises(ValueError):
        sampler.draw(0)


def test_refine_over_views_protects_the_resized_photo_better_than_refine_as_is(shared) -> None:
    """The stand-in classifier on real photos, seen shrunk to 224 px by PIL: steps over views
    lower the clean label's probability there clearly more than steps for the file as it is."""
    from protector.images import read_photo
    from protector.losses import attack_loss_by_name
    from protector.refine import refine
    from protector.views import VIEW_SETS

    model = shared.standin_classifier().eval()
    small = View("short-224", shorter_side=224)
    eps = 2 / 255
    drop = {"as-is": 0.0, "shared": 0.0}
    for name in ("urban100_img_051.jpg", "urban100_img_052.jpg"):
        photo = to_tensor(read_photo(shared.path(f"fullsize/{name}")).pixels)[None]
        photo = torch.nn.functional.interpolate(photo, scale_factor=0.5, mode="bilinear", antialias=True)
        with torch.no_grad():
            label = model(photo).argmax(1)
            clean_small = model(to_tensor(render_view(to_uint8(photo[0]), small))[None]).softmax(1)
        label_small = clean_small.argmax(1)
        for views in drop:
            adv = refine(photo, photo, model, label, eps, 10, loss=attack_loss_by_name("ce"), jpeg_quality=90,
                         views=VIEW_SETS[views], views_per_step=4)
            assert float((adv - photo).abs().max()) <= eps + 1e-6
            seen = to_tensor(render_view(to_uint8(adv[0]), small))[None]
            with torch.no_grad():
                after = model(seen).softmax(1)
            drop[views] += float(clean_small[0, label_small] - after[0, label_small])
    assert drop["shared"] > 1.5 * max(drop["as-is"], 0.01)


def test_training_sees_the_drawn_view_and_passes_its_gradient() -> None:
    from protector.robust import Robustifier

    always_cropped = ViewSampler(as_is_prob=0.0, shorter_sides=(32, 32), crop_prob=1.0, upload_prob=0.0)
    robust = Robustifier(jpeg_prob=0.0, views=always_cropped)
    x = torch.rand(2, 3, 48, 64, requires_grad=True)
    seen = robust(x)
    assert seen.shape == (2, 3, 32, 32)
    seen.sum().backward()
    assert float(x.grad.abs().sum()) > 0
    # A view given by the caller (the module, which labels the clean photo under it) is the one used.
    given = View("given", shorter_side=16)
    assert robust(torch.rand(2, 3, 48, 64), given).shape == (2, 3, 16, 21)
    assert Robustifier(jpeg_prob=0.0).draw_view() is None


def test_training_photos_come_at_the_working_scale() -> None:
    from protector.views import pixels_at_working_size, resize

    pixels = np.random.default_rng(0).integers(0, 256, (600, 900, 3), dtype=np.uint8)
    small = pixels_at_working_size(pixels, 512)
    assert small.shape == (512, 768, 3) and small.dtype == np.uint8
    # The filter of protect's own working copy (views.resize), within rounding.
    torch_copy = resize(torch.from_numpy(pixels).permute(2, 0, 1)[None].float() / 255, (512, 768))
    assert np.abs(small.astype(float) - torch_copy[0].permute(1, 2, 0).numpy() * 255).max() <= 1.5
    # Photos already at or below the working scale are left alone.
    assert pixels_at_working_size(pixels[:400], 512).shape == (400, 900, 3)


def test_a_view_cycle_takes_every_classifier_input_before_repeating_one() -> None:
    schedule = ViewCycle().schedule(steps=5, count=2)
    assert [len(step) for step in schedule] == [2] * 5
    taken = [view for step in schedule for view in step]
    assert taken[:len(CLASSIFIER_INPUTS)] == list(CLASSIFIER_INPUTS)
    assert taken[len(CLASSIFIER_INPUTS):] == list(CLASSIFIER_INPUTS[:2])
    assert {v.shorter_side for v in CLASSIFIER_INPUTS} == {224, 256, 288, 320, 384, 448, 512}
    assert ViewCycle().schedule(3, 2) == ViewCycle().schedule(3, 2, torch.Generator().manual_seed(1))
    with pytest.raises(ValueError, match="count"):
        ViewCycle().schedule(2, 0)
    with pytest.raises(ValueError, match="at least one view"):
        ViewCycle(())


def test_a_working_copy_takes_the_cycle_without_the_file_as_it_is() -> None:
    cycle = ViewCycle(CLASSIFIER_INPUTS + (AS_IS,))
    assert cycle.for_working_copy().views == CLASSIFIER_INPUTS
    assert ViewCycle((AS_IS,)).for_working_copy().views == (AS_IS,)  # nothing else to take
    sampler = ViewSampler()
    assert sampler.for_working_copy() is sampler
