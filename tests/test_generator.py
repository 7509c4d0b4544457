"""UNetGenerator, apply_budget, BoundedProtector and the protector.pt file format."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from protector.export import ProtectorFileError, load_protector, read_protector_file, save_protector
from protector.generator import BoundedProtector, UNetGenerator, apply_budget
from protector.images import encode_photo, read_photo, to_tensor, to_uint8


@pytest.fixture
def generator() -> UNetGenerator:
    torch.manual_seed(0)
    return UNetGenerator(base_channels=8, depth=3)


@pytest.mark.parametrize("norm", ["batch", "instance", "none"])
@pytest.mark.parametrize("size", [(1, 1), (7, 5), (33, 47), (64, 64), (65, 17)])
def test_any_input_size_gives_same_size_output(norm: str, size: tuple[int, int]) -> None:
    g = UNetGenerator(base_channels=8, depth=3, norm=norm)
    x = torch.rand(2, 3, *size)
    assert g(x).shape == x.shape
    g.eval()
    assert g(x).shape == x.shape


def test_every_generator_parameter_gets_a_gradient(generator: UNetGenerator) -> None:
    x = torch.rand(2, 3, 37, 29)
    apply_budget(x, generator(x), 4 / 255).pow(2).sum().backward()
    for name, param in generator.named_parameters():
        assert param.grad is not None, name
        assert param.grad.abs().sum() > 0, name


def test_budget_holds_in_float32_and_under_bf16_autocast(generator: UNetGenerator) -> None:
    eps = 2 / 255
    x = torch.rand(3, 3, 32, 32)
    raw = torch.randn(3, 3, 32, 32) * 50  # saturates tanh on purpose
    out = apply_budget(x, raw, eps)
    assert out.dtype == torch.float32
    assert (out - x).abs().max() <= eps + 1e-6
    assert out.min() >= 0 and out.max() <= 1
    with torch.autocast("cpu", dtype=torch.bfloat16):
        protected = BoundedProtector(generator, eps)(x)
        # bf16 would round 2/255 to 0.0079 > 2/255; the budget must be applied in float32
        assert protected.dtype == torch.float32
    assert (protected - x).abs().max() <= eps + 1e-6


@pytest.mark.parametrize("eps_levels", [1, 2, 8])
def test_budget_holds_on_the_8bit_file(generator: UNetGenerator, eps_levels: int) -> None:
    eps = eps_levels / 255
    rng = np.random.default_rng(0)
    clean = rng.integers(0, 256, size=(48, 40, 3), dtype=np.uint8)
    clean[:8] = 0  # saturated regions where clamping matters
    clean[-8:] = 255
    with torch.no_grad():
        generator.head.bias.fill_(5.0)  # push every pixel to the budget's edge
        x_adv = BoundedProtector(generator, eps)(to_tensor(clean)[None])
    png = encode_photo(to_uint8(x_adv[0]), "png")
    saved = read_photo(png).pixels
    diff = np.abs(saved.astype(int) - clean.astype(int))
    assert diff.max() <= eps_levels
    assert diff.max() == eps_levels  # the budget is used, so the check above is not vacuous


def test_bounded_protector_rejects_bad_eps(generator: UNetGenerator) -> None:
    for eps in (0.0, -1 / 255, 1.5, float("nan")):
        with pytest.raises(ValueError, match="eps"):
            BoundedProtector(generator, eps)


def test_export_roundtrip_identical_outputs(tmp_path, generator: UNetGenerator) -> None:
    x = torch.rand(2, 3, 50, 30)
    generator.train()
    generator(torch.rand(4, 3, 32, 32))  # non-default BatchNorm statistics
    generator.eval()
    expected = BoundedProtector(generator, 2 / 255)(x)
    path = save_protector(tmp_path / "protector.pt",
                          BoundedProtector(generator, 2 / 255), {"note": "test", "score": 0.5})
    payload = torch.load(path, weights_only=True)  # the file is plain data
    assert payload["format"] == "protector" and payload["version"] == 1
    loaded = load_protector(path)
    assert not loaded.training
    assert loaded.eps == pytest.approx(2 / 255)
    assert loaded.meta == {"note": "test", "score": 0.5}
    assert torch.equal(loaded(x), expected)


def test_export_is_small(tmp_path) -> None:
    path = save_protector(tmp_path / "p.pt", BoundedProtector(UNetGenerator(), 2 / 255))
    assert path.stat().st_size < 2_000_000  # a few hundred thousand float32 weights


def test_load_missing_file_names_it(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="nothing.pt"):
        load_protector(tmp_path / "nothing.pt")


@pytest.mark.parametrize(
    "content",
    [b"", b"not a checkpoint at all\n", bytes(range(256)) * 4],
    ids=["empty", "text", "binary"],
)
def test_load_corrupt_file_gives_clear_error(tmp_path, content: bytes) -> None:
    path = tmp_path / "broken.pt"
    path.write_bytes(content)
    with pytest.raises(ProtectorFileError, match="broken.pt"):
        load_protector(path)


def test_load_truncated_file(tmp_path, generator: UNetGenerator) -> None:
    path = save_protector(tmp_path / "p.pt", BoundedProtector(generator, 2 / 255))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ProtectorFileError, match="p.pt"):
        load_protector(path)


def test_load_refuses_foreign_and_wrong_version_files(tmp_path, generator: UNetGenerator) -> None:
    other = tmp_path / "other.pt"
    torch.save({"state_dict": generator.state_dict()}, other)
    with pytest.raises(ProtectorFileError, match="format tag"):
        load_protector(other)
    path = save_protector(tmp_path / "p.pt", BoundedProtector(generator, 2 / 255))
    payload = read_protector_file(path)
    payload["version"] = 99
    torch.save(payload, path)
    with pytest.raises(ProtectorFileError, match="version 99"):
        load_protector(path)
    payload["version"] = 1
    payload["generator_class"] = "os.system"
    torch.save(payload, path)
    with pytest.raises(ProtectorFileError, match="unknown generator class"):
        load_protector(path)


def test_load_refuses_weights_that_do_not_fit(tmp_path, generator: UNetGenerator) -> None:
    path = save_protector(tmp_path / "p.pt", BoundedProtector(generator, 2 / 255))
    payload = read_protector_file(path)
    payload["generator_init"] = {"base_channels": 16, "depth": 3}
    torch.save(payload, path)
    with pytest.raises(ProtectorFileError, match="do not match"):
        load_protector(path)


def test_load_refuses_pickled_code(tmp_path) -> None:
    path = tmp_path / "evil.pt"
    torch.save({"format": "protector", "payload": Image.new("RGB", (1, 1))}, path)
    with pytest.raises(ProtectorFileError, match="evil.pt"):
        load_protector(path)


def test_save_refuses_unknown_generator_class(tmp_path) -> None:
    with pytest.raises(TypeError, match="cannot export"):
        save_protector(tmp_path / "p.pt", BoundedProtector(torch.nn.Conv2d(3, 3, 1), 2 / 255))


def test_save_mirrors_load(tmp_path, generator: UNetGenerator) -> None:
    # save_protector(path, protector, meta) takes what load_protector(path) gives back: saving a
    # loaded protector with its meta writes the same file.
    first = save_protector(tmp_path / "first.pt", BoundedProtector(generator, 3 / 255), {"note": "round trip"})
    loaded = load_protector(first)
    second = save_protector(tmp_path / "second.pt", loaded, loaded.meta)
    assert second.read_bytes() == first.read_bytes()


def test_save_refuses_a_bare_generator_naming_the_signature(tmp_path, generator: UNetGenerator) -> None:
    with pytest.raises(TypeError, match=r"save_protector\(path, protector, meta\) takes a BoundedProtector"):
        save_protector(tmp_path / "p.pt", generator, 2 / 255)


def test_clamp_bound_uses_the_whole_budget_at_a_finite_output_and_exports(tmp_path) -> None:
    eps = 4 / 255
    x = torch.full((1, 3, 8, 8), 0.5)
    raw = torch.linspace(-3, 3, 192).reshape(1, 3, 8, 8).requires_grad_(True)
    out = apply_budget(x, raw, eps, bound="clamp")
    delta = out - x
    assert delta.abs().max() <= eps + 1e-6
    saturated = raw.detach().abs() >= 1
    assert torch.allclose(delta[saturated].abs(), torch.full_like(delta[saturated], eps), atol=1e-6)
    out.sum().backward()
    assert bool((raw.grad[saturated] == 0).all()) and bool((raw.grad[~saturated] > 0).all())

    torch.manual_seed(0)
    generator = UNetGenerator(base_channels=8, depth=2, bound="clamp").eval()
    loaded = load_protector(save_protector(tmp_path / "protector.pt", BoundedProtector(generator, eps)))
    photos = torch.rand(2, 3, 24, 24)
    assert loaded.generator.bound == "clamp"
    assert torch.equal(loaded(photos), BoundedProtector(generator, eps)(photos))
    with pytest.raises(ValueError, match="bound"):
        UNetGenerator(bound="sigmoid")
