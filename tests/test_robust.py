"""Robustifier and quantize_8bit_ste: differentiable, and close to what a real file does."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from protector.images import encode_photo, read_photo, to_tensor, to_uint8
from protector.robust import Robustifier, quantize_8bit_ste


def _photo_like(height: int = 64, width: int = 64, seed: int = 0) -> torch.Tensor:
    """Smooth content plus mild texture: JPEG behaves on it as on a photo, not as on noise."""
    gen = torch.Generator().manual_seed(seed)
    coarse = torch.rand(1, 3, max(height // 16, 1), max(width // 16, 1), generator=gen)
    smooth = torch.nn.functional.interpolate(coarse, size=(height, width), mode="bicubic", align_corners=False)
    texture = 0.03 * torch.randn(1, 3, height, width, generator=gen)
    return (smooth + texture).clamp(0, 1)


def test_quantize_rounds_forward_and_passes_gradient_straight() -> None:
    x = torch.tensor([0.0, 0.3 / 255, 0.6 / 255, 100.49 / 255, 1.0], requires_grad=True)
    y = quantize_8bit_ste(x)
    assert torch.allclose(y * 255, torch.tensor([0.0, 0.0, 1.0, 100.0, 255.0]), atol=1e-4)
    (y * torch.arange(5.0)).sum().backward()
    assert torch.equal(x.grad, torch.arange(5.0))


@pytest.mark.parametrize("size", [(64, 64), (37, 53), (5, 3)])
def test_output_shape_range_and_gradient_for_any_size(size: tuple[int, int]) -> None:
    torch.manual_seed(0)
    robust = Robustifier(jpeg_prob=1.0, resize_prob=1.0)
    x = _photo_like(*size).repeat(2, 1, 1, 1).requires_grad_(True)
    out = robust(x)
    assert out.shape == x.shape and out.dtype == torch.float32
    assert out.min() >= 0 and out.max() <= 1
    assert torch.allclose(out * 255, torch.round(out * 255), atol=1e-3)  # an 8-bit image
    out.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


@pytest.mark.parametrize("quality", [75, 90])
def test_differentiable_jpeg_is_close_to_pil(quality: int) -> None:
    # What training sees should resemble the real codec at the same quality.
    x = torch.round(_photo_like(96, 80) * 255) / 255
    robust = Robustifier(jpeg_quality=(quality, quality), jpeg_prob=1.0)
    simulated = robust(x)
    real = to_tensor(read_photo(encode_photo(to_uint8(x[0]), "jpeg", quality=quality)).pixels)[None]
    error_sim_vs_real = (simulated - real).abs().mean().item() * 255
    error_jpeg = (real - x).abs().mean().item() * 255
    assert error_jpeg > 0.3  # JPEG changed the image: the comparison below means something
    assert error_sim_vs_real < 0.6 * error_jpeg


def test_probabilities_zero_is_8bit_rounding_only() -> None:
    robust = Robustifier(jpeg_prob=0.0, resize_prob=0.0, quantize=True)
    x = torch.rand(2, 3, 16, 16)
    assert torch.equal(robust(x), torch.round(x * 255) / 255)
    assert torch.equal(Robustifier(jpeg_prob=0.0, quantize=False)(x), x)


def test_jpeg_prob_applies_per_image() -> None:
    torch.manual_seed(0)
    robust = Robustifier(jpeg_prob=0.5, quantize=True)
    x = _photo_like(32, 32).repeat(64, 1, 1, 1)
    x = torch.round(x * 255) / 255
    changed = (robust(x) - x).flatten(1).abs().amax(dim=1) > 0
    assert 16 < int(changed.sum()) < 48  # about half, not all or nothing


def test_resize_down_up_blurs() -> None:
    torch.manual_seed(0)
    x = _photo_like(64, 64)
    robust = Robustifier(jpeg_prob=0.0, resize_prob=1.0, resize_range=(0.5, 0.5), quantize=False)
    out = robust(x)
    assert out.shape == x.shape
    high_freq = lambda t: (t[..., 1:] - t[..., :-1]).abs().mean()  # noqa: E731
    assert high_freq(out) < high_freq(x)


def test_bf16_autocast_input_is_processed_in_float32() -> None:
    robust = Robustifier(jpeg_prob=1.0)
    x = _photo_like(32, 32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = robust(x.to(torch.bfloat16))
    assert out.dtype == torch.float32
    assert torch.allclose(out * 255, torch.round(out * 255), atol=1e-3)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"jpeg_quality": (90, 70)}, "jpeg_quality"),
        ({"jpeg_quality": (0, 70)}, "jpeg_quality"),
        ({"jpeg_prob": 1.5}, "jpeg_prob"),
        ({"resize_prob": -0.1}, "resize_prob"),
        ({"resize_range": (0.0, 1.0)}, "resize_range"),
        ({"resize_range": (0.9, 1.2)}, "resize_range"),
    ],
)
def test_bad_settings_raise(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        Robustifier(**kwargs)


def test_seeded_draws_are_reproducible() -> None:
    x = _photo_like(32, 32).repeat(4, 1, 1, 1)
    robust = Robustifier(jpeg_prob=0.5, resize_prob=0.5)
    torch.manual_seed(3)
    a = robust(x)
    torch.manual_seed(3)
    b = robust(x)
    assert torch.equal(a, b)
    assert np.isfinite(a.numpy()).all()
