"""Per-photo appeal steps: the trained edit refined per photo, bounded, the budget around the result."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from protector.appeal_steps import AppealSteps, apply_detail, apply_exposure_grid, resolve_steps
from protector.enhance import ToneCurveEnhancer
from protector.export import load_protector, save_protector
from protector.generator import BoundedProtector, UNetGenerator
from protector.protect.tiling import TiledProtector

EPS = 2 / 255
NIMA_FILE = "nima/weights_mobilenet_aesthetic_0.07.hdf5"


def trained_enhancer() -> ToneCurveEnhancer:
    torch.manual_seed(0)
    enhancer = ToneCurveEnhancer(knots=8, thumbnail=32, width=4)
    nn.init.normal_(enhancer.head.weight, std=0.3)
    nn.init.normal_(enhancer.head.bias, std=0.3)
    return enhancer.eval()


class Contrast(nn.Module):
    """A real, tiny appeal objective: the more contrast, the better (NIMA's shape of answer)."""

    def forward(self, edited: torch.Tensor, photo: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        scores = edited.flatten(1).std(dim=1)
        return -scores.mean(), scores.detach()


def photo(height: int = 48, width: int = 64, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    smooth = torch.rand(1, 3, 4, 4, generator=generator) * 0.6 + 0.2
    x = nn.functional.interpolate(smooth, size=(height, width), mode="bilinear", align_corners=False)
    return (x * 255).round() / 255  # a decoded 8-bit photo


def steps_module(steps: int, **kwargs) -> AppealSteps:
    return AppealSteps(trained_enhancer(), Contrast(), steps=steps, work_size=64, **kwargs).eval()


def test_zero_steps_is_exactly_the_trained_edit_and_zero_parameters_the_identity() -> None:
    x = photo()
    with torch.no_grad():
        assert torch.equal(steps_module(0)(x), trained_enhancer()(x))
        module = steps_module(5, grid=3, detail=0.5)
        start = trained_enhancer()(x)
        unchanged = module.apply(start, module.bounded(torch.zeros(1, module.parameter_count())))
    assert torch.equal(torch.round(unchanged * 255) / 255, start)


def test_the_steps_move_the_edit_up_the_objective() -> None:
    x = photo()
    with torch.no_grad():
        before = Contrast()(trained_enhancer()(x), x)[1]
        after = Contrast()(steps_module(10, grid=2)(x), x)[1]
    assert after.item() > before.item() * 1.05


@pytest.mark.parametrize("scale", [1.0, 100.0])
def test_every_family_stays_within_its_bound_however_far_the_parameters_go(scale) -> None:
    module = steps_module(1, max_shift=0.1, colour_shift=0.02, saturation=0.3, grid=3, exposure=0.3, detail=0.5)
    params = torch.randn(8, module.parameter_count(), generator=torch.Generator().manual_seed(1)) * scale
    edit = module.bounded(params)
    identity = torch.linspace(0, 1, module.knots + 1)
    assert (edit.curves - identity).abs().max() <= 0.12 + 1e-6
    assert torch.all(edit.curves[..., 1:] >= edit.curves[..., :-1])  # monotone
    assert torch.allclose(edit.curves[..., 0], torch.zeros(8, 3)) and torch.allclose(edit.curves[..., -1], torch.ones(8, 3))
    assert edit.saturation.min() >= 0.7 - 1e-6 and edit.saturation.max() <= 1.3 + 1e-6
    assert edit.exposure.abs().max() <= 0.3 + 1e-6 and edit.detail.abs().max() <= 0.5 + 1e-6
    # A steep rate for many steps still ends inside the bounds: the curve moves no level more.
    wild = AppealSteps(nn.Identity(), Contrast(), steps=30, lr=5.0, work_size=64, saturation=0).eval()
    x = torch.arange(256.0).div(255).view(1, 1, 16, 16).expand(1, 3, 16, 16).contiguous()
    with torch.no_grad():
        assert (wild(x) - x).abs().max() <= 0.12 + 0.5 / 255


@pytest.mark.parametrize("size", [(1, 1), (17, 250), (256, 256), (300, 40)])
def test_any_size_is_edited_in_range_on_the_8_bit_grid(size) -> None:
    x = photo(*size)
    with torch.no_grad():
        out = steps_module(3, grid=3, detail=0.3)(x)
    assert out.shape == x.shape and 0 <= out.min() and out.max() <= 1
    assert torch.equal(out, torch.round(out * 255) / 255)


def test_photos_are_refined_alone_whatever_the_batch() -> None:
    x = torch.cat([photo(seed=0), photo(seed=1)])
    module = steps_module(4, grid=2)
    with torch.no_grad():
        together = module(x)
        alone = torch.cat([module(x[:1]), module(x[1:])])
    assert torch.equal(together, alone)


def test_the_edit_is_resolution_independent() -> None:
    # The same edit on the photo and on a copy 4x larger: the larger one, shrunk, matches.
    small, large = photo(60, 80), photo(240, 320)
    module = steps_module(0, grid=4, detail=0.5)
    edit = module.bounded(torch.randn(1, module.parameter_count(), generator=torch.Generator().manual_seed(2)))
    with torch.no_grad():
        out_small = module.apply(small, edit)
        out_large = nn.functional.avg_pool2d(module.apply(large, edit), 4)
    assert (out_small - out_large).abs().mean() < 0.01


def test_exposure_grid_and_detail_are_the_identity_at_zero() -> None:
    x = photo()
    assert torch.equal(apply_exposure_grid(x, torch.zeros(1, 1, 3, 3)), x)
    assert torch.allclose(apply_detail(x, torch.zeros(1), 1 / 224), x)


def test_the_budget_is_measured_from_the_refined_edit_also_when_tiled() -> None:
    x = photo(96, 128)
    torch.manual_seed(0)
    module = steps_module(5, grid=2)
    protector = BoundedProtector(UNetGenerator(base_channels=8, depth=2), EPS, enhancer=module).eval()
    with torch.no_grad():
        reference = protector.reference(x)
        assert not torch.equal(reference, trained_enhancer()(x))  # the steps moved the edit
        assert (protector(x) - reference).abs().max() <= EPS + 1e-6
        tiled = TiledProtector(protector, max_pixels=64 * 64, tile=64, overlap=16, align=16)
        assert (tiled(x) - reference).abs().max() <= EPS + 1e-6


def test_the_steps_run_under_inference_mode() -> None:
    x = photo()
    with torch.inference_mode():
        out = steps_module(3)(x)
    with torch.no_grad():
        assert torch.equal(out, steps_module(3)(x))


def test_protect_flag_needs_an_edit_and_nima_weights(tmp_path) -> None:
    assert resolve_steps(None, True, None) == 0 and resolve_steps(None, False, tmp_path) == 0
    assert resolve_steps(None, True, tmp_path) == 0 and resolve_steps(20, True, tmp_path) == 20
    with pytest.raises(ValueError, match="--nima"):
        resolve_steps(5, True, None)
    with pytest.raises(ValueError, match="has none"):
        resolve_steps(5, False, tmp_path)


def test_real_nima_rises_on_the_saved_jpeg(shared) -> None:
    from protector.images import encode_photo, read_photo, to_tensor, to_uint8
    from protector.losses import NimaAppeal

    appeal = NimaAppeal(str(shared.path(NIMA_FILE)), jpeg_quality=90, edit_weight=0.05).eval()
    names = sorted(shared.path("standin/images").iterdir())[:2]
    gains = []
    for name in names:
        x = to_tensor(read_photo(name).pixels)[None]
        with torch.no_grad():
            edited = AppealSteps(nn.Identity(), appeal, steps=10)(x)
            saved = to_tensor(read_photo(encode_photo(to_uint8(edited[0]), "jpeg", quality=90)).pixels)[None]
            control = to_tensor(read_photo(encode_photo(to_uint8(x[0]), "jpeg", quality=90)).pixels)[None]
            gains.append((appeal.scores(saved) - appeal.scores(control)).item())
    assert min(gains) > 0.0


def test_protect_refines_the_edit_per_photo_and_records_it(shared, tmp_path) -> None:
    from PIL import Image

    from protector.images import read_photo, to_tensor
    from protector.protect.run import ProtectOptions, protect

    nima = shared.path(NIMA_FILE)
    folder = tmp_path / "in"
    folder.mkdir()
    pixels = (to_tensor(np.asarray(Image.open(sorted(shared.path("standin/images").iterdir())[0]))) * 255)
    Image.fromarray(pixels.round().byte().permute(1, 2, 0).numpy()).save(folder / "p.png")
    torch.manual_seed(0)
    path = save_protector(tmp_path / "appeal.pt",
                          BoundedProtector(UNetGenerator(base_channels=8, depth=2), EPS, enhancer=trained_enhancer()))
    options = ProtectOptions(output=tmp_path / "out", inputs=[folder], fmt="png", num_workers=0, progress=False,
                             appeal_steps=4, nima=nima)
    summary = protect(options, protector=load_protector(path))
    assert summary.written == 1 and summary.max_delta_8bit <= round(EPS * 255)
    x = to_tensor(read_photo(folder / "p.png").pixels)[None]
    written = to_tensor(read_photo(tmp_path / "out" / "p.png").pixels)[None]
    refined = load_protector(path)
    from protector.appeal_steps import with_appeal_steps

    with torch.no_grad():
        edit = with_appeal_steps(refined.enhancer, 4, nima, None)(x)
        assert not torch.equal(edit, trained_enhancer()(x))
    assert (written - edit).abs().max() <= EPS + 0.5 / 255  # the budget holds around the refined edit
    record = json.loads((tmp_path / "out" / "protect-run.json").read_text())
    assert "appeal_steps" in json.dumps(record) and '"steps": 4' in json.dumps(record)
