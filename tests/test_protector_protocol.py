"""The protector seam: `Protector` names what refinement, tiling and the run record ask of a protector."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from protector.generator import BoundedProtector, GeneratorKind, UNetGenerator, default_protector
from protector.protect.predictor import ProtectPredictor
from protector.protect.provenance import describe_maker
from protector.protect.tiling import TiledProtector
from protector.protector_protocol import Protector, require_protector
from protector.settings import ProtectionSettings

EPS = 4 / 255


class DimmedProtector(nn.Module):
    """A protector that is not a BoundedProtector: the seam is the protocol, not the class."""

    guided = False

    def __init__(self, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.classifier = None
        self.enhancer = None

    def attach_classifier(self, classifier: nn.Module | None) -> None:
        pass

    def reference(self, x: torch.Tensor) -> torch.Tensor:
        return x * 0.5 + 0.25

    def scene_label(self, x: torch.Tensor, logits: torch.Tensor | None = None) -> torch.Tensor | None:
        return None

    def perturb(self, reference: torch.Tensor, label: torch.Tensor | None = None) -> torch.Tensor:
        return (reference + self.eps).clamp(0, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.perturb(self.reference(x))


def test_bounded_and_tiled_protectors_satisfy_the_protocol() -> None:
    bounded = BoundedProtector(UNetGenerator(base_channels=8, depth=2), EPS)
    for protector in (bounded, default_protector(), TiledProtector(bounded), DimmedProtector(EPS)):
        assert isinstance(protector, Protector)
        assert require_protector(protector) is protector


@pytest.mark.parametrize("module", [nn.Identity(), UNetGenerator(base_channels=8, depth=2)], ids=["identity", "generator"])
def test_a_module_that_is_not_a_protector_is_refused_by_name(module: nn.Module) -> None:
    assert not isinstance(module, Protector)
    with pytest.raises(TypeError, match="must be a protector.protector_protocol.Protector.*lacks eps"):
        TiledProtector(module)
    with pytest.raises(TypeError, match="BoundedProtector\\(generator, eps\\)"):
        ProtectPredictor(module)


def test_tiled_protector_answers_for_the_protector_it_tiles(tiny_classifier) -> None:
    generator = UNetGenerator(base_channels=8, depth=2, guided=True)
    bounded = BoundedProtector(generator, EPS)
    tiled = TiledProtector(bounded, max_pixels=32 * 32, tile=32, overlap=8, align=4)
    assert tiled.eps == EPS and tiled.guided and tiled.classifier is None and tiled.enhancer is None
    tiled.attach_classifier(tiny_classifier)
    assert bounded.classifier is tiny_classifier and tiled.classifier is tiny_classifier
    enhancer = nn.Identity()
    tiled.enhancer = enhancer  # --enhance reaches the protector that applies it
    assert bounded.enhancer is enhancer and tiled.enhancer is enhancer
    assert "enhancer" not in dict(tiled.named_children())
    tiled.enhancer = None
    assert bounded.enhancer is None


def test_any_protector_is_used_through_the_protocol(tiny_classifier) -> None:
    # Budget, reference and the guide's model come from the protocol: a protector of another
    # class is tiled, projected at the working scale and recorded like a BoundedProtector.
    protector = DimmedProtector(EPS)
    predictor = ProtectPredictor(protector, tiny_classifier, tile_max_pixels=24 * 24, tile=24, tile_overlap=8,
                                 tile_align=4, working_side=20)
    assert predictor.eps == EPS and not predictor._guide_is_classifier()
    x = torch.rand(2, 3, 40, 48)
    with torch.no_grad():
        out = predictor.predict_step({"image": x, "write": [True, True]}, 0)
    assert torch.allclose(out["reference"], protector.reference(x))
    assert (out["x_adv"] - out["reference"]).abs().max() <= EPS + 1e-6
    assert out["x_adv"].shape == x.shape
    settings = ProtectionSettings(fmt="png", quality=90, eps=None, views="as-is", views_per_step=2, working_side=None,
                                  refine_steps=0, refine_loss="", senscats_sha256=None, edit_strength=None,
                                  tiling=(24 * 24, 24, 8, 4), precision="32-true")
    maker = describe_maker(settings, protector, tiny_classifier, None)
    assert maker["protector"]["eps"] == EPS and maker["attack_model"] is None


def test_guide_is_the_predictors_classifier_only_when_attached(tiny_classifier) -> None:
    bounded = BoundedProtector(UNetGenerator(base_channels=8, depth=2, guided=True), EPS, tiny_classifier)
    assert ProtectPredictor(bounded, tiny_classifier)._guide_is_classifier()
    other = BoundedProtector(UNetGenerator(base_channels=8, depth=2, guided=True), EPS, nn.Linear(1, 1))
    assert not ProtectPredictor(other, tiny_classifier)._guide_is_classifier()


def test_generator_kind_is_read_in_one_place() -> None:
    unet = UNetGenerator(base_channels=8, depth=2, guided=True, queries=2, guide_jpeg_quality=80, bound="clamp")
    assert GeneratorKind.of(unet) == GeneratorKind(guided=True, queries=2, guide_jpeg_quality=80, bound="clamp")
    assert GeneratorKind.of(UNetGenerator(base_channels=8, depth=2)) == GeneratorKind()
    # Any network mapping a photo to a raw map is a pure, tanh-bounded generator.
    assert GeneratorKind.of(nn.Conv2d(3, 3, 1)) == GeneratorKind()
    assert GeneratorKind.of(default_protector().generator) == GeneratorKind()


def test_full_size_steps_move_a_photo_above_the_working_side_up_to_the_tiling_limit(tiny_classifier) -> None:
    # After the working copy's steps, the full-size photo gets its own small steps (the file
    # classified as it is); above the tiling limit it gets none, and says so.
    x = torch.rand(1, 3, 40, 48)
    batch = {"image": x, "write": [True]}

    def protected(full_size_steps: int, tile_max_pixels: int = 64 * 64) -> dict:
        predictor = ProtectPredictor(DimmedProtector(EPS), tiny_classifier, tile_max_pixels=tile_max_pixels,
                                     refine_steps=1, refine_quality=None, working_side=20,
                                     full_size_steps=full_size_steps)
        return predictor.predict_step(batch, 0)

    without, with_steps, too_large = protected(0), protected(2), protected(2, tile_max_pixels=30 * 30)
    for out in (without, with_steps, too_large):
        assert (out["x_adv"] - out["reference"]).abs().max() <= EPS + 1e-6
    assert not torch.equal(with_steps["x_adv"], without["x_adv"]) and not with_steps["full_size_skipped"]
    assert torch.equal(too_large["x_adv"], without["x_adv"]) and too_large["full_size_skipped"]


def test_the_files_jpeg_is_in_the_loss_of_the_steps_for_the_file_as_it_is_only(tiny_classifier, monkeypatch) -> None:
    # The task's protocol (no views) has the file's JPEG in its loss, and so do the full-size
    # steps and, at the photo's own size, the file as it is among the views; a working copy's
    # steps do not (its JPEG is not the file's).
    import protector.refine
    from protector.views import VIEW_SETS

    qualities = []
    real_jpeg = protector.refine.differentiable_jpeg
    monkeypatch.setattr(protector.refine, "differentiable_jpeg",
                        lambda x, quality: qualities.append((tuple(x.shape[-2:]), quality)) or real_jpeg(x, quality))

    def jpeg_sizes(x: torch.Tensor, views: str, full_size_steps: int = 0) -> set:
        qualities.clear()
        # five steps of two views reach the file as it is, the ninth view of the cycle
        predictor = ProtectPredictor(DimmedProtector(EPS), tiny_classifier, refine_steps=5, refine_quality=90,
                                     views=VIEW_SETS[views], working_side=20, full_size_steps=full_size_steps)
        predictor.predict_step({"image": x, "write": [True]}, 0)
        return set(qualities)

    assert jpeg_sizes(torch.rand(1, 3, 16, 24), "as-is") == {((16, 24), 90)}
    assert jpeg_sizes(torch.rand(1, 3, 16, 24), "classifiers") == {((16, 24), 90)}
    assert jpeg_sizes(torch.rand(1, 3, 40, 48), "classifiers") == set()
    assert jpeg_sizes(torch.rand(1, 3, 40, 48), "classifiers", full_size_steps=1) == {((40, 48), 90)}


def test_the_file_as_it_is_is_a_view_only_of_a_photo_protected_at_its_own_size(tiny_classifier, monkeypatch) -> None:
    # A working copy as it is is no classifier's input: its steps take the resized views only.
    import protector.refine
    from protector.views import VIEW_SETS

    seen = []
    real_gradient = protector.refine._gradient
    monkeypatch.setattr(protector.refine, "_gradient",
                        lambda x, view, *rest: seen.append((tuple(x.shape[-2:]), view.name)) or real_gradient(x, view, *rest))

    def views_taken(x: torch.Tensor) -> set:
        seen.clear()
        predictor = ProtectPredictor(DimmedProtector(EPS), tiny_classifier, refine_steps=5,
                                     views=VIEW_SETS["classifiers"], working_side=20)
        predictor.predict_step({"image": x, "write": [True]}, 0)
        return set(seen)

    own_size = views_taken(torch.rand(1, 3, 16, 24))
    assert ((16, 24), "as-is") in own_size and len(own_size) == 9
    working_copy = views_taken(torch.rand(1, 3, 40, 48))
    assert {size for size, _ in working_copy} == {(20, 24)} and len(working_copy) == 8
    assert "as-is" not in {name for _, name in working_copy}


def test_a_photo_too_large_for_the_full_size_steps_is_named_in_the_manifest(tmp_path, tiny_classifier) -> None:
    import csv

    import numpy as np
    from PIL import Image

    from protector.protect.run import ProtectOptions, protect

    folder = tmp_path / "in"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name, size in (("small", (48, 40)), ("large", (96, 80))):
        Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(folder / f"{name}.png")
    options = ProtectOptions(output=tmp_path / "out", inputs=[folder], fmt="png", num_workers=0, progress=False,
                             working_side=32, refine_steps=1, full_size_steps=1, tile_max_pixels=60 * 60, batch_size=1)
    summary = protect(options, protector=DimmedProtector(EPS), classifier=tiny_classifier)
    assert summary.written == 2 and summary.less_protected == 1
    with open(tmp_path / "out.manifest.csv", newline="") as handle:
        notes = {row["input"].rsplit("/", 1)[-1]: row["note"] for row in csv.DictReader(handle)}
    assert notes["small.png"] == ""
    assert notes["large.png"].startswith("not protected for the file classified as it is")
