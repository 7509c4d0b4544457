"""The appeal stage: tone curves from a thumbnail, the budget around the enhanced photo, NIMA training."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from protector.callbacks import ExportProtector
from protector.enhance import ToneCurveEnhancer, apply_curves, curve_from_logits
from protector.export import ProtectorFileError, load_protector, save_protector
from protector.generator import BoundedProtector, UNetGenerator
from protector.appeal_loss import NimaAppeal
from protector.module import ProtectorModule
from protector.protect.tiling import TiledProtector

EPS = 4 / 255
NIMA_FILE = "nima/weights_mobilenet_aesthetic_0.07.hdf5"


def trained_enhancer(seed: int = 0) -> ToneCurveEnhancer:
    """An enhancer whose curves are far from the identity (random head)."""
    torch.manual_seed(seed)
    enhancer = ToneCurveEnhancer(knots=8, thumbnail=32, width=4)
    torch.nn.init.normal_(enhancer.head.weight, std=0.5)
    torch.nn.init.normal_(enhancer.head.bias, std=0.5)
    return enhancer.eval()


def test_curves_are_monotone_from_black_to_white() -> None:
    curves = curve_from_logits(torch.randn(5, 3, 16) * 3)
    assert curves.shape == (5, 3, 17)
    assert torch.all(curves[..., 1:] >= curves[..., :-1])
    assert torch.allclose(curves[..., 0], torch.zeros(5, 3)) and torch.allclose(curves[..., -1], torch.ones(5, 3))
    identity = curve_from_logits(torch.zeros(1, 1, 4))
    assert torch.allclose(identity, torch.tensor([[[0.0, 0.25, 0.5, 0.75, 1.0]]]))


def test_apply_curves_interpolates_between_knots() -> None:
    curves = torch.tensor([[[0.0, 0.8, 1.0]]])  # brightens the shadows
    x = torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0]).view(1, 1, 1, 5)
    expected = torch.tensor([0.0, 0.4, 0.8, 0.9, 1.0]).view(1, 1, 1, 5)
    assert torch.allclose(apply_curves(x, curves), expected)


@pytest.mark.parametrize("size", [(1, 1), (17, 250), (256, 256)])
def test_enhancer_keeps_any_size_in_range_and_is_the_identity_untrained_or_at_strength_zero(size) -> None:
    x = torch.randint(0, 256, (2, 3, *size)) / 255  # a decoded 8-bit photo
    assert torch.equal(ToneCurveEnhancer()(x), x)
    enhancer = trained_enhancer()
    out = enhancer(x)
    assert out.shape == x.shape and 0 <= out.min() and out.max() <= 1
    assert torch.equal(out, torch.round(out * 255) / 255)  # the published photo is 8-bit
    assert (out - x).abs().max() > 0.01
    enhancer.strength = 0.0
    assert torch.equal(enhancer(x), x)
    with pytest.raises(ValueError, match="strength"):
        enhancer.strength = 1.5


@pytest.mark.parametrize("max_shift", [0.05, 0.2])
def test_max_shift_bounds_how_far_any_level_moves(max_shift, tmp_path) -> None:
    unbounded = trained_enhancer()
    with torch.no_grad():
        unbounded.head.weight *= 4  # far from the identity
        unbounded.head.bias *= 4
    bounded = ToneCurveEnhancer(knots=8, thumbnail=32, width=4, max_shift=max_shift).eval()
    bounded.load_state_dict(unbounded.state_dict())
    x = torch.linspace(0, 1, 256).view(1, 1, 1, 256).expand(2, 3, 4, 256).contiguous()  # every 8-bit level
    x[1] = x[1].flip(-1)
    with torch.no_grad():
        assert (unbounded(x) - x).abs().max() > max_shift + 1 / 255  # the same head, unbounded, moves further
        curves = bounded.curves(x)
        assert torch.all(curves[..., 1:] >= curves[..., :-1])  # still monotone, black and white kept
        assert (bounded(x) - x).abs().max() <= max_shift + 0.5 / 255  # + rounding to 8 bits
    loaded = load_protector(save_protector(tmp_path / "p.pt",
                                           BoundedProtector(UNetGenerator(base_channels=8, depth=2), EPS,
                                                            enhancer=bounded)))
    assert loaded.enhancer.max_shift == max_shift
    with pytest.raises(ValueError, match="max_shift"):
        ToneCurveEnhancer(max_shift=0.0)


def test_colour_shift_ties_the_channels_to_one_tone_curve(tmp_path) -> None:
    enhancer = ToneCurveEnhancer(knots=8, thumbnail=32, width=4, max_shift=0.2, colour_shift=0.03).eval()
    x = torch.randint(0, 256, (4, 3, 24, 40)) / 255
    assert torch.equal(enhancer(x), x)  # untrained: the identity
    with torch.no_grad():
        torch.nn.init.normal_(enhancer.head.weight, std=3.0)
        torch.nn.init.normal_(enhancer.head.bias, std=3.0)
        curves = enhancer.curves(x)
    identity = torch.linspace(0, 1, 9)
    assert torch.all(curves[..., 1:] >= curves[..., :-1])  # monotone, black and white kept
    assert torch.allclose(curves[..., 0], torch.zeros(4, 3)) and torch.allclose(curves[..., -1], torch.ones(4, 3))
    assert (curves - identity).abs().max() > 0.05  # the tone moves...
    assert (curves - identity).abs().max() <= 0.2 + 0.03 + 1e-6
    spread = (curves[:, :, None] - curves[:, None]).abs().max()  # ...the channels stay together
    assert 0 < spread <= 2 * 0.03 + 1e-6
    loaded = load_protector(save_protector(tmp_path / "p.pt",
                                           BoundedProtector(UNetGenerator(base_channels=8, depth=2), EPS,
                                                            enhancer=enhancer)))
    with torch.no_grad():
        assert torch.equal(loaded.enhancer(x), enhancer(x))
    with pytest.raises(ValueError, match="colour_shift"):
        ToneCurveEnhancer(max_shift=0.9, colour_shift=0.2)


def test_saturation_is_bounded_keeps_greys_and_travels_in_the_file(tmp_path) -> None:
    enhancer = ToneCurveEnhancer(knots=8, thumbnail=32, width=4, saturation=0.25).eval()
    x = torch.randint(0, 256, (3, 3, 24, 40)) / 255  # 8-bit photos
    x[0] = x[0, :1]  # a grey photo
    assert torch.equal(enhancer(x), x)  # untrained: the identity
    with torch.no_grad():
        enhancer.head.bias[-1] = 10.0  # saturation pushed to its bound; the curves stay the identity
        out = enhancer(x)
        assert torch.allclose(enhancer.edit(x).saturation, torch.full((3,), 1.25))
        assert torch.equal(out[0], x[0])  # grey has no colour to saturate
        luma = (x * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)
        expected = (luma + 1.25 * (x - luma)).clamp(0, 1)
        assert (out - expected).abs().max() <= 0.5 / 255 + 1e-6
        enhancer.strength = 0.0
        assert torch.equal(enhancer(x), x)
    enhancer.strength = 1.0
    loaded = load_protector(save_protector(tmp_path / "p.pt",
                                           BoundedProtector(UNetGenerator(base_channels=8, depth=2), EPS,
                                                            enhancer=enhancer)))
    with torch.no_grad():
        assert torch.equal(loaded.enhancer(x), enhancer(x))
    with pytest.raises(ValueError, match="saturation"):
        ToneCurveEnhancer(saturation=1.0)


def test_sharpening_is_an_unsharp_mask_within_its_bound_and_seamless_when_tiled() -> None:
    from torchvision.transforms.functional import gaussian_blur

    enhancer = ToneCurveEnhancer(knots=8, thumbnail=32, width=4, sharpen=0.5).eval()
    x = torch.randint(0, 256, (1, 3, 300, 410)) / 255
    x[..., 100:200, 100:200] = 128 / 255  # a flat square
    assert torch.equal(enhancer(x), x)  # untrained: the identity
    with torch.no_grad():
        enhancer.head.bias[-1] = 10.0  # sharpening at its bound; the curves stay the identity
        assert torch.allclose(enhancer.edit(x).sharpening, torch.tensor([0.5]))
        out = enhancer(x)
        expected = (x + 0.5 * (x - gaussian_blur(x, [5, 5], [1.0, 1.0]))).clamp(0, 1)  # another implementation
        assert (out - expected).abs().max() <= 0.5 / 255 + 1e-5
        assert torch.equal(out[..., 103:197, 103:197], x[..., 103:197, 103:197])  # no detail, nothing added
        protector = BoundedProtector(_NoPerturbation(), EPS, enhancer=enhancer).eval()
        tiled = TiledProtector(protector, max_pixels=128 * 128, tile=128, overlap=32, align=4)
        assert tiled.needs_tiling(300, 410)
        assert torch.allclose(tiled(x), out, atol=1e-6)  # sharpened as one photo: no seams at tile borders
    with pytest.raises(ValueError, match="sharpen"):
        ToneCurveEnhancer(sharpen=-0.1)


def test_the_edit_is_global_so_a_tiled_large_photo_has_no_seams() -> None:
    # The same colour must map to the same colour everywhere in the photo, tiled or not.
    left = torch.rand(1, 3, 300, 210)
    x = torch.cat([left, left.flip(-1)], dim=-1)  # the right half mirrors the colours of the left
    protector = BoundedProtector(UNetGenerator(base_channels=8, depth=2), EPS, enhancer=trained_enhancer()).eval()
    tiled = TiledProtector(protector, max_pixels=128 * 128, tile=128, overlap=32, align=4)
    with torch.no_grad():
        reference = tiled.reference(x)
        assert torch.allclose(reference, protector.enhancer(x))
        assert torch.equal(reference[..., 210:], reference[..., :210].flip(-1))
        out = tiled(x)
    assert (out - reference).abs().max() <= EPS + 1e-6  # the budget is around the enhanced photo
    assert (out - x).abs().max() > 2 * EPS


def test_enhancer_travels_in_the_protector_file(tmp_path) -> None:
    generator = UNetGenerator(base_channels=8, depth=2)
    enhancer = trained_enhancer()
    enhancer.strength = 0.5  # a protect-time setting: the file keeps the trained curves
    path = save_protector(tmp_path / "appeal.pt", BoundedProtector(generator, EPS, enhancer=enhancer))
    loaded = load_protector(path)
    assert isinstance(loaded.enhancer, ToneCurveEnhancer) and loaded.enhancer.strength == 1.0
    x = torch.rand(1, 3, 40, 56)
    enhancer.strength = 1.0
    with torch.no_grad():
        assert torch.equal(loaded.reference(x), enhancer(x))
        assert torch.equal(loaded(x), BoundedProtector(generator.eval(), EPS, enhancer=enhancer)(x))
    plain = load_protector(save_protector(tmp_path / "plain.pt", BoundedProtector(generator, EPS)))
    assert plain.enhancer is None
    payload = torch.load(path, weights_only=True)
    del payload["enhancer"]
    torch.save(payload, tmp_path / "broken.pt")
    with pytest.raises(ProtectorFileError, match="enhancer"):
        load_protector(tmp_path / "broken.pt")


class _Photos(torch.utils.data.Dataset):
    def __init__(self, n: int) -> None:
        rng = np.random.default_rng(0)
        base = rng.random((n, 3, 1, 1)) * 0.5 + 0.2  # flat-ish, dull photos: room to improve
        self.images = torch.from_numpy(base + 0.1 * rng.random((n, 3, 64, 64))).float().clamp(0, 1)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> dict:
        return {"image": self.images[i], "label": torch.tensor(-1), "name": f"p{i}.png"}


def test_appeal_training_moves_the_edit_up_the_nima_score(shared, tiny_classifier, tmp_path) -> None:
    weights = shared.path(NIMA_FILE)
    appeal = NimaAppeal(str(weights), weight=1.0, colour_weight=0.0)
    photos = _Photos(8)
    with torch.no_grad():
        before = appeal.scores(photos.images).mean()
    torch.manual_seed(0)
    module = ProtectorModule(UNetGenerator(base_channels=8, depth=2), tiny_classifier, eps=EPS, lr=3e-2,
                             label_source="predicted", grid_images=0, scheduler="none", robust=False,
                             enhancer=ToneCurveEnhancer(knots=8, thumbnail=32, width=8), appeal=appeal)
    export = ExportProtector(dirpath=str(tmp_path))
    trainer = pl.Trainer(default_root_dir=tmp_path, logger=False, enable_progress_bar=False,
                         enable_model_summary=False, accelerator="cpu", max_steps=12, callbacks=[export],
                         enable_checkpointing=False)
    trainer.fit(module, DataLoader(photos, batch_size=4, shuffle=True))
    protector = load_protector(export.last_path)
    with torch.no_grad():
        enhanced = protector.reference(photos.images)
        after = appeal.scores(enhanced).mean()
    assert after > before + 0.05, (before, after)
    assert not any(k.startswith("appeal.") for k in torch.load(export.last_path, weights_only=True)["state_dict"])


def test_appeal_can_score_the_edit_as_published_through_jpeg(shared) -> None:
    from protector.images import encode_photo, read_photo, to_tensor, to_uint8

    weights = str(shared.path(NIMA_FILE))
    as_is = NimaAppeal(weights, colour_weight=0.0)
    as_jpeg = NimaAppeal(weights, colour_weight=0.0, jpeg_quality=50)
    photo = (torch.rand(1, 3, 64, 96) * 255).round() / 255  # noise: JPEG changes it a lot
    edited = photo.clone().requires_grad_(True)
    loss, scores = as_jpeg(edited, photo)
    loss.backward()
    assert edited.grad is not None and edited.grad.abs().sum() > 0  # differentiable through the JPEG
    with torch.no_grad():
        real_jpeg = to_tensor(read_photo(encode_photo(to_uint8(photo[0]), "jpeg", quality=50)).pixels)[None]
        assert scores.item() != pytest.approx(as_is(photo, photo)[1].item(), abs=1e-3)
        assert scores.item() == pytest.approx(as_is.scores(real_jpeg).item(), abs=0.15)  # close to a real JPEG's
    with pytest.raises(ValueError, match="jpeg_quality"):
        NimaAppeal(weights, jpeg_quality=0)


def test_colour_penalty_charges_a_tint_not_a_brightening(shared) -> None:
    appeal = NimaAppeal(str(shared.path(NIMA_FILE)), weight=0.0, colour_weight=1.0)
    photo = torch.full((1, 3, 32, 32), 0.4)
    brighter = photo + 10 / 255
    tinted = photo.clone()
    tinted[:, 0] += 10 / 255  # red 10 levels up
    assert appeal(brighter, photo)[0].item() == pytest.approx(0.0, abs=1e-6)
    # shift (1, 0, 0) in units of 10 levels; minus its mean (1/3): 4/9 + 1/9 + 1/9
    assert appeal(tinted, photo)[0].item() == pytest.approx(2 / 3, rel=1e-3)


def test_edit_penalty_charges_the_edits_size(shared) -> None:
    appeal = NimaAppeal(str(shared.path(NIMA_FILE)), weight=0.0, colour_weight=0.0, edit_weight=0.5)
    photo = torch.full((1, 3, 32, 32), 0.4)
    brighter = photo + 10 / 255  # one unit (10 levels) on every pixel
    contrast = photo.clone()
    contrast[..., :16] += 20 / 255  # half the pixels two units, the other half unchanged: mean square 2
    assert appeal(photo, photo)[0].item() == pytest.approx(0.0, abs=1e-9)
    assert appeal(brighter, photo)[0].item() == pytest.approx(0.5, rel=1e-3)
    assert appeal(contrast, photo)[0].item() == pytest.approx(1.0, rel=1e-3)
    with pytest.raises(ValueError, match="edit_weight"):
        NimaAppeal(str(shared.path(NIMA_FILE)), edit_weight=-1.0)


def test_enhancer_and_appeal_come_together(tiny_classifier) -> None:
    with pytest.raises(ValueError, match="enhancer and appeal"):
        ProtectorModule(UNetGenerator(base_channels=8, depth=2), tiny_classifier, enhancer=ToneCurveEnhancer())


@pytest.mark.parametrize(("enhance", "strength"), [("auto", 1.0), ("auto", 0.5), ("off", 1.0)])
def test_protect_applies_the_trained_edit_unless_told_otherwise(tmp_path, enhance, strength) -> None:
    from PIL import Image

    from protector.images import read_photo, to_tensor
    from protector.protect.run import ProtectOptions, protect

    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray((np.random.default_rng(0).random((48, 64, 3)) * 255).astype(np.uint8)).save(folder / "p.png")
    torch.manual_seed(0)
    path = save_protector(tmp_path / "appeal.pt",
                          BoundedProtector(UNetGenerator(base_channels=8, depth=2), EPS, enhancer=trained_enhancer()))
    options = ProtectOptions(output=tmp_path / "out", inputs=[folder], fmt="png", num_workers=0, progress=False,
                             enhance=enhance, enhance_strength=strength)
    summary = protect(options, protector=load_protector(path))
    assert summary.written == 1 and summary.max_delta_8bit <= round(EPS * 255)
    photo = to_tensor(read_photo(folder / "p.png").pixels)[None]
    written = to_tensor(read_photo(tmp_path / "out" / "p.png").pixels)[None]
    edit = trained_enhancer()
    edit.strength = strength if enhance == "auto" else 0.0
    with torch.no_grad():
        assert (written - edit(photo)).abs().max() <= EPS + 0.5 / 255


def test_enhance_strength_out_of_range_is_refused(tmp_path) -> None:
    from protector.protect.run import ProtectOptions

    with pytest.raises(ValueError, match="--enhance-strength"):
        ProtectOptions(output=tmp_path, inputs=[tmp_path], enhance_strength=1.5).check()


def test_enhancer_has_its_own_learning_rate(shared, tiny_classifier) -> None:
    appeal = NimaAppeal(str(shared.path(NIMA_FILE)))
    module = ProtectorModule(UNetGenerator(base_channels=8, depth=2), tiny_classifier, lr=1e-3, scheduler="none",
                             enhancer=ToneCurveEnhancer(), appeal=appeal, enhancer_lr=3e-2)
    generator_group, enhancer_group = module.configure_optimizers().param_groups
    assert generator_group["lr"] == 1e-3 and enhancer_group["lr"] == 3e-2
    assert {id(p) for p in enhancer_group["params"]} == {id(p) for p in module.enhancer.parameters()}


def test_the_attack_does_not_bend_the_edit(shared, tiny_classifier, tmp_path) -> None:
    # With the appeal objective switched off, training must leave the enhancer as it was:
    # the perturbation works around the published photo, the edit is not a second attack.
    appeal = NimaAppeal(str(shared.path(NIMA_FILE)), weight=0.0, colour_weight=0.0)
    enhancer = trained_enhancer()
    before = copy.deepcopy(enhancer.state_dict())
    module = ProtectorModule(UNetGenerator(base_channels=8, depth=2), tiny_classifier, eps=EPS, lr=3e-2,
                             label_source="predicted", grid_images=0, scheduler="none", enhancer=enhancer,
                             appeal=appeal)
    generator_before = copy.deepcopy(module.generator.state_dict())
    trainer = pl.Trainer(default_root_dir=tmp_path, logger=False, enable_progress_bar=False,
                         enable_model_summary=False, accelerator="cpu", max_steps=2, enable_checkpointing=False)
    trainer.fit(module, DataLoader(_Photos(8), batch_size=4))
    assert all(torch.equal(before[k], v) for k, v in enhancer.state_dict().items())
    assert not all(torch.equal(generator_before[k], v) for k, v in module.generator.state_dict().items())


# ---------------------------------------------------------------- the edit inside a protector


def appeal_protector(enhancer: ToneCurveEnhancer | None = None) -> BoundedProtector:
    torch.manual_seed(1)
    return BoundedProtector(UNetGenerator(base_channels=8, depth=2), EPS,
                            enhancer=trained_enhancer() if enhancer is None else enhancer).eval()


@pytest.mark.parametrize("size", [(1, 1), (2, 3), (5, 1), (31, 64), (255, 17), (97, 131)])
def test_a_photo_of_any_size_is_edited_and_protected_around_the_edit(size) -> None:
    protector = appeal_protector()
    x = torch.randint(0, 256, (2, 3, *size)) / 255
    with torch.no_grad():
        reference = protector.reference(x)
        out = protector(x)
    assert reference.shape == out.shape == x.shape
    assert torch.equal(reference, protector.enhancer(x)) and not torch.equal(reference, x)
    assert 0 <= out.min() and out.max() <= 1
    assert (out - reference).abs().max() <= EPS + 1e-6


def test_at_strength_zero_the_appeal_protector_is_exactly_the_plain_one() -> None:
    protector = appeal_protector()
    protector.enhancer.strength = 0.0
    plain = BoundedProtector(protector.generator, EPS).eval()
    x = torch.randint(0, 256, (2, 3, 45, 67)) / 255
    with torch.no_grad():
        assert torch.equal(protector.reference(x), x)
        assert torch.equal(protector(x), plain(x))


def test_refinement_keeps_the_budget_around_the_edit_not_the_original(tiny_classifier) -> None:
    # The white-box steps after the generator must project around the edited photo: around the
    # original they would undo the edit.
    from protector.protect.predictor import ProtectPredictor

    predictor = ProtectPredictor(appeal_protector(), classifier=tiny_classifier, refine_steps=3, refine_quality=None)
    x = torch.randint(0, 256, (2, 3, 48, 40)) / 255
    out = predictor.predict_step({"image": x, "write": [True, True]}, 0)
    edit = trained_enhancer()(x)
    assert torch.equal(out["reference"], edit)
    assert (out["x_adv"] - edit).abs().max() <= EPS + 1e-6
    assert (out["x_adv"] - x).abs().max() > 4 * EPS
    # On the 8-bit grid (the file), the budget holds exactly: the edit is itself 8-bit.
    delta = out["x_adv"].mul(255).round() - edit.mul(255)
    assert delta.abs().max() <= round(EPS * 255)


class _NoPerturbation(torch.nn.Module):
    """A generator that leaves the reference as it is: the tiled output is the edit alone."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(x)


def test_a_tiled_12_megapixel_photo_is_edited_whole_without_seams() -> None:
    # 4000 x 3000, dark on the left and bright on the right: a thumbnail of one tile would
    # give other curves than the whole photo's, so an edit made per tile would show seams.
    columns = torch.linspace(0.05, 0.95, 4000)
    rows = torch.linspace(0.0, 0.2, 3000)[:, None]
    x = ((columns + rows) / 1.2).expand(3, 3000, 4000).clone()
    x[1] *= 0.8  # some colour
    x = (x * 255).round()[None] / 255
    enhancer = trained_enhancer()
    protector = BoundedProtector(_NoPerturbation(), EPS, enhancer=enhancer).eval()
    tiled = TiledProtector(protector)  # the defaults of protect: tiles of 1024 above 4 MP
    assert tiled.needs_tiling(3000, 4000)
    with torch.no_grad():
        out = tiled(x)
        # The whole photo's curves as a table of the 256 levels of each channel.
        levels = torch.arange(256.0).div(255).expand(1, 3, 1, 256)
        table = torch.round(apply_curves(levels, enhancer.curves(x)) * 255).div(255)[0, :, 0]  # (3, 256)
        whole = torch.stack([table[c][x[0, c].mul(255).round().long()] for c in range(3)])[None]
        tile = enhancer(x[..., :1024, :1024])
    # One colour, one result, everywhere in the photo, tile borders included: no seam.
    assert torch.allclose(out, whole, atol=1e-6)
    # An edit made per tile would differ (what this test guards against).
    assert not torch.equal(tile, whole[..., :1024, :1024])


def _brightening_appeal_protector() -> tuple[torch.nn.Module, BoundedProtector, torch.Tensor]:
    """A real (tiny) classifier that tells bright photos from dark ones, a guided protector whose
    edit brightens (the edit alone changes the prediction), and two dark photos."""
    classifier = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(3, 2)).eval()
    with torch.no_grad():
        classifier[2].weight.copy_(torch.tensor([[-10.0, -10.0, -10.0], [10.0, 10.0, 10.0]]))
        classifier[2].bias.copy_(torch.tensor([0.0, -15.0]))  # bright: a mean above 0.375 per channel
    enhancer = ToneCurveEnhancer(knots=8, thumbnail=32, width=4).eval()
    with torch.no_grad():
        enhancer.head.bias.copy_(torch.linspace(2.0, -2.0, 8).repeat(3))  # concave curves: lifts the shadows
    torch.manual_seed(0)
    generator = UNetGenerator(base_channels=8, depth=2, guided=True)
    protector = BoundedProtector(generator, EPS, classifier, enhancer).eval()
    return classifier, protector, torch.randint(0, 80, (2, 3, 40, 56)) / 255


def test_a_guided_appeal_protector_guides_away_from_the_unedited_photos_scene() -> None:
    from protector.protect.predictor import ProtectPredictor

    classifier, protector, x = _brightening_appeal_protector()
    generator = protector.generator
    with torch.no_grad():
        reference = protector.reference(x)
        scene = classifier(x).argmax(1)
        assert torch.equal(scene, torch.zeros(2, dtype=torch.long))
        assert torch.equal(classifier(reference).argmax(1), torch.ones(2, dtype=torch.long))  # the edit moved it
        assert torch.equal(protector.scene_label(x), scene)
        out = protector(x)
        assert torch.equal(out, protector.perturb(reference, scene))
        assert not torch.equal(out, protector.perturb(reference))  # the edited photo's class: another guide
        # protect's path (tiling wrapper, predictor) gives the same photo.
        predicted = ProtectPredictor(protector, classifier).predict_step({"image": x, "write": [True, True]}, 0)
        assert torch.equal(predicted["x_adv"], out)
        # No edit, no special label: the reference's own prediction is the scene's.
        assert BoundedProtector(generator, EPS, classifier).scene_label(x) is None


def test_protect_takes_the_scene_label_from_the_manifests_clean_pass() -> None:
    import copy

    from protector.protect.predictor import ProtectPredictor

    classifier, protector, x = _brightening_appeal_protector()
    other_model = copy.deepcopy(classifier)  # the same weights, another model
    passes = []
    classifier.register_forward_hook(lambda *_: passes.append(1))
    batch = {"image": x, "write": [True, True]}
    with torch.no_grad():
        expected = protector(x)  # scene label, then the guide: two passes
        assert len(passes) == 2
        passes.clear()
        shared = ProtectPredictor(protector, classifier).predict_step(batch, 0)
        # The manifest's clean pass and the guide: the label costs no pass of its own.
        assert len(passes) == 2
        assert torch.equal(shared["x_adv"], expected)
        # A manifest classifier that is not the guide gives no label: the protector predicts
        # it with its own model.
        passes.clear()
        other = ProtectPredictor(protector, other_model).predict_step(batch, 0)
        assert len(passes) == 2  # the label and the guide
        assert torch.equal(other["x_adv"], expected)
