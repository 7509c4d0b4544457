"""Gradient guidance: the attack model's gradient as the generator's second input."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from protector.export import load_protector, save_protector
from protector.generator import BoundedProtector, GeneratorKind, UNetGenerator
from protector.guidance import attack_gradient, gradient_and_label, predicted_label
from protector.views import View


@pytest.fixture
def photos() -> torch.Tensor:
    torch.manual_seed(0)
    coarse = torch.rand(3, 3, 6, 6)
    return F.interpolate(coarse, size=(48, 40), mode="bilinear", align_corners=False)


def test_guide_is_bounded_and_points_up_the_loss(tiny_classifier, photos) -> None:
    guide = attack_gradient(tiny_classifier, photos)
    assert guide.shape == photos.shape and guide.dtype == torch.float32
    assert guide.abs().max() <= 1.0
    label = tiny_classifier(photos).argmax(1)
    before = F.cross_entropy(tiny_classifier(photos), label, reduction="none")
    after = F.cross_entropy(tiny_classifier(photos + 1e-3 * guide), label, reduction="none")
    assert bool((after > before).all()), (before, after)


def test_guide_is_the_same_under_no_grad_and_inference_mode(tiny_classifier, photos) -> None:
    plain = attack_gradient(tiny_classifier, photos)
    with torch.no_grad():
        assert torch.equal(attack_gradient(tiny_classifier, photos), plain)
    with torch.inference_mode():
        assert torch.equal(attack_gradient(tiny_classifier, photos.clone()), plain)


def test_guide_of_one_photo_does_not_depend_on_the_batch(tiny_classifier, photos) -> None:
    alone = attack_gradient(tiny_classifier, photos[:1])
    assert torch.allclose(attack_gradient(tiny_classifier, photos)[:1], alone, atol=1e-6)


def test_untrained_guided_generator_starts_at_a_soft_fgsm(tiny_classifier, photos) -> None:
    torch.manual_seed(0)
    protector = BoundedProtector(UNetGenerator(base_channels=8, depth=2, guided=True), 2 / 255, tiny_classifier).eval()
    delta = protector(photos) - photos
    guide = attack_gradient(tiny_classifier, photos)
    strong = guide.abs() > 0.5
    inside = (photos > 2 / 255) & (photos < 1 - 2 / 255)  # not clipped at black or white
    assert torch.equal(delta[strong & inside].sign(), guide[strong & inside].sign())
    assert delta.abs().max() <= 2 / 255 + 1e-6


def test_guided_generator_needs_its_guide_and_the_others_refuse_one(photos) -> None:
    with pytest.raises(ValueError, match="guided: pass guide"):
        UNetGenerator(base_channels=8, depth=2, guided=True)(photos)
    with pytest.raises(ValueError, match="takes no guide"):
        UNetGenerator(base_channels=8, depth=2)(photos, photos)
    with pytest.raises(ValueError, match="needs the attack model"):
        BoundedProtector(UNetGenerator(base_channels=8, depth=2, guided=True), 2 / 255)(photos)


def test_every_guided_generator_parameter_gets_a_gradient(tiny_classifier, photos) -> None:
    generator = UNetGenerator(base_channels=8, depth=2, guided=True)
    protector = BoundedProtector(generator, 4 / 255, tiny_classifier)
    protected = protector(photos)
    assert all(p.grad is None for p in tiny_classifier.parameters())  # the guide takes input gradients only
    F.cross_entropy(tiny_classifier(protected), torch.zeros(3, dtype=torch.long)).backward()
    for name, param in generator.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name


def test_guided_export_roundtrip(tmp_path, tiny_classifier, photos) -> None:
    torch.manual_seed(0)
    generator = UNetGenerator(base_channels=8, depth=2, guided=True).eval()
    with torch.no_grad():
        generator.guide_gain.fill_(4.0)  # a trained value, not the initial one
    path = save_protector(tmp_path / "protector.pt", BoundedProtector(generator, 2 / 255))
    loaded = load_protector(path)
    assert loaded.guided and loaded.classifier is None
    loaded.classifier = tiny_classifier
    expected = BoundedProtector(generator, 2 / 255, tiny_classifier)(photos)
    assert torch.equal(loaded(photos), expected)


def test_two_query_generator_starts_at_a_soft_two_step_attack_and_exports(tmp_path, tiny_classifier, photos) -> None:
    torch.manual_seed(0)
    one = UNetGenerator(base_channels=8, depth=2, guided=True).eval()
    torch.manual_seed(0)
    two = UNetGenerator(base_channels=8, depth=2, guided=True, queries=2).eval()
    label = tiny_classifier(photos).argmax(1)
    loss = {
        name: F.cross_entropy(tiny_classifier(BoundedProtector(g, 2 / 255, tiny_classifier)(photos)), label).item()
        for name, g in (("one", one), ("two", two))
    }
    # The second query starts from the first output and climbs the loss further.
    assert loss["two"] > loss["one"], loss
    path = save_protector(tmp_path / "protector.pt", BoundedProtector(two, 2 / 255))
    loaded = load_protector(path)
    loaded.classifier = tiny_classifier
    assert loaded.generator.queries == 2
    assert torch.equal(loaded(photos), BoundedProtector(two, 2 / 255, tiny_classifier)(photos))


def test_two_queries_need_a_guided_generator() -> None:
    with pytest.raises(ValueError, match="queries"):
        UNetGenerator(guided=False, queries=2)
    with pytest.raises(ValueError, match="guide_jpeg_quality"):
        UNetGenerator(guided=True, guide_jpeg_quality=0)


def test_guide_through_jpeg_points_up_the_loss_of_the_saved_file(tiny_classifier, photos) -> None:
    from protector.robust import differentiable_jpeg

    guide = attack_gradient(tiny_classifier, photos, jpeg_quality=90)
    assert guide.abs().max() <= 1.0 and not torch.equal(guide, attack_gradient(tiny_classifier, photos))
    label = tiny_classifier(photos).argmax(1)

    def loss_of_file(x):
        return F.cross_entropy(tiny_classifier(differentiable_jpeg(x, 90)), label, reduction="none")

    assert bool((loss_of_file(photos + 1e-3 * guide) > loss_of_file(photos)).all())


@pytest.mark.parametrize("quality", [None, 50])
def test_predicted_label_is_the_guides_label_without_a_gradient(tiny_classifier, photos, quality) -> None:
    label = predicted_label(tiny_classifier, photos, jpeg_quality=quality)
    assert not label.requires_grad and label.dtype == torch.long
    assert torch.equal(label, gradient_and_label(tiny_classifier, photos, jpeg_quality=quality)[1])


def test_guide_over_views_points_up_the_loss_of_each_resized_view(tiny_classifier, photos) -> None:
    sides = (40, 24, 16)
    guide, label = gradient_and_label(tiny_classifier, photos, shorter_sides=sides)
    assert guide.shape == photos.shape and guide.abs().max() <= 1.0
    views = [View(f"short-{side}", shorter_side=side) for side in sides]
    assert torch.equal(label, tiny_classifier(views[0](photos)).argmax(1))  # the first view's own prediction
    for view in views:
        view_label = tiny_classifier(view(photos)).argmax(1)
        before = F.cross_entropy(tiny_classifier(view(photos)), view_label, reduction="sum")
        after = F.cross_entropy(tiny_classifier(view(photos + 1e-3 * guide)), view_label, reduction="sum")
        assert after > before, view.name
    # A guide made at one scale is not the guide over views.
    assert not torch.allclose(guide, attack_gradient(tiny_classifier, photos), atol=1e-3)


def test_guide_over_views_is_part_of_the_protector_file(tmp_path, tiny_classifier, photos) -> None:
    torch.manual_seed(0)
    generator = UNetGenerator(base_channels=8, depth=2, guided=True, guide_shorter_sides=[40, 24])
    assert GeneratorKind.of(generator).guide_shorter_sides == (40, 24)
    protector = BoundedProtector(generator, 2 / 255, tiny_classifier).eval()
    save_protector(tmp_path / "p.pt", protector)
    loaded = load_protector(tmp_path / "p.pt")
    loaded.attach_classifier(tiny_classifier)
    assert loaded.generator.guide_shorter_sides == (40, 24)
    assert torch.equal(loaded(photos), protector(photos))
    with pytest.raises(ValueError, match="guide_shorter_sides needs a guided generator"):
        UNetGenerator(guided=False, guide_shorter_sides=[224])
    with pytest.raises(ValueError, match="guide_shorter_sides needs a guided generator"):
        UNetGenerator(guided=True, queries=2, guide_shorter_sides=[224])
