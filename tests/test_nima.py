"""NIMA port: an independent numpy forward pass of the same Keras HDF5 weights, scores, errors."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from PIL import Image

from protector.nima import NIMA, NIMA_NAME, NIMAWeightsError, load_nima, nima_scores
from protector.paths import sha256_file

# MobileNet v1 (alpha 1.0): depthwise-separable blocks as (pointwise filters, stride).
BLOCKS = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2)] + [(512, 1)] * 5 + [(1024, 2), (1024, 1)]


# ----------------------------------------------------------------------------- numpy reference


def _keras_weights(path: Path) -> dict[str, np.ndarray]:
    """Every `layer/weight` array of a Keras 2.x HDF5 weights file, as float64."""
    weights = {}
    with h5py.File(path, "r") as f:
        for layer in f.attrs["layer_names"]:
            layer = layer.decode()
            for name in f[layer].attrs["weight_names"]:
                name = name.decode()
                weights[name.split(":")[0]] = np.asarray(f[layer][name], dtype=np.float64)
    return weights


def _pad(x: np.ndarray, stride: int, padding: str) -> np.ndarray:
    """x (H, W, C). 3x3 'same' for stride 1; stride 2 pads right/bottom only or all sides."""
    if stride == 2 and padding == "bottom_right":
        return np.pad(x, ((0, 1), (0, 1), (0, 0)))
    return np.pad(x, ((1, 1), (1, 1), (0, 0)))


def _conv3x3(x: np.ndarray, kernel: np.ndarray, stride: int, depthwise: bool) -> np.ndarray:
    """Valid 3x3 convolution of a padded (H, W, C) image with a Keras kernel (3, 3, C, out|1)."""
    out_h = (x.shape[0] - 3) // stride + 1
    out_w = (x.shape[1] - 3) // stride + 1
    out = 0.0
    for i in range(3):
        for j in range(3):
            window = x[i : i + stride * out_h : stride, j : j + stride * out_w : stride, :]
            if depthwise:
                out = out + window * kernel[i, j, :, 0]
            else:
                out = out + np.einsum("hwc,co->hwo", window, kernel[i, j])
    return out


def _bn_relu6(x: np.ndarray, w: dict[str, np.ndarray], name: str) -> np.ndarray:
    scaled = (x - w[f"{name}/moving_mean"]) / np.sqrt(w[f"{name}/moving_variance"] + 1e-3)
    return np.clip(scaled * w[f"{name}/gamma"] + w[f"{name}/beta"], 0.0, 6.0)


def numpy_nima(pixels: np.ndarray, w: dict[str, np.ndarray], padding: str = "bottom_right") -> np.ndarray:
    """NIMA on one (H, W, 3) uint8 image at its own size (native preprocessing), float64."""
    x = pixels.astype(np.float64) / 127.5 - 1.0
    x = _bn_relu6(_conv3x3(_pad(x, 2, padding), w["conv1/kernel"], 2, False), w, "conv1_bn")
    for block, (_, stride) in enumerate(BLOCKS, start=1):
        x = _conv3x3(_pad(x, stride, padding), w[f"conv_dw_{block}/depthwise_kernel"], stride, True)
        x = _bn_relu6(x, w, f"conv_dw_{block}_bn")
        x = np.einsum("hwc,co->hwo", x, w[f"conv_pw_{block}/kernel"][0, 0])
        x = _bn_relu6(x, w, f"conv_pw_{block}_bn")
    logits = x.mean(axis=(0, 1)) @ w["dense_1/kernel"] + w["dense_1/bias"]
    e = np.exp(logits - logits.max())
    return e / e.sum()


# ----------------------------------------------------------------------------- synthetic weights


def write_keras_nima(path: Path, seed: int = 0) -> Path:
    """A Keras 2.1.6-layout MobileNet NIMA weights file with random weights (for tests only)."""
    rng = np.random.default_rng(seed)
    layers: list[tuple[str, dict[str, np.ndarray]]] = []

    def conv_bn(name: str, kernel_name: str, shape: tuple[int, ...]) -> None:
        fan_in = shape[0] * shape[1] * (shape[2] if kernel_name == "kernel" else 1)
        layers.append((name, {kernel_name: rng.normal(0, np.sqrt(2.0 / fan_in), shape)}))
        channels = shape[3] if kernel_name == "kernel" else shape[2]
        layers.append(
            (
                f"{name}_bn",
                {
                    "gamma": rng.uniform(0.5, 1.5, channels),
                    "beta": rng.normal(0, 0.2, channels),
                    "moving_mean": rng.normal(0, 0.2, channels),
                    "moving_variance": rng.uniform(0.5, 2.0, channels),
                },
            )
        )

    conv_bn("conv1", "kernel", (3, 3, 3, 32))
    channels = 32
    for block, (out, _) in enumerate(BLOCKS, start=1):
        conv_bn(f"conv_dw_{block}", "depthwise_kernel", (3, 3, channels, 1))
        conv_bn(f"conv_pw_{block}", "kernel", (1, 1, channels, out))
        channels = out
    layers.append(("dense_1", {"kernel": rng.normal(0, 0.3, (1024, 10)), "bias": rng.normal(0, 0.1, 10)}))

    with h5py.File(path, "w") as f:
        f.attrs["keras_version"] = b"2.1.6"
        f.attrs["backend"] = b"tensorflow"
        f.attrs["layer_names"] = np.array([name.encode() for name, _ in layers])
        for name, weights in layers:
            group = f.create_group(name)
            full_names = [f"{name}/{key}:0" for key in weights]
            group.attrs["weight_names"] = np.array([n.encode() for n in full_names])
            for full, value in zip(full_names, weights.values()):
                group.create_dataset(full, data=value.astype(np.float32))
    return path


@pytest.fixture(scope="module")
def synthetic_weights(tmp_path_factory) -> Path:
    return write_keras_nima(tmp_path_factory.mktemp("nima") / "weights_random.hdf5")


@pytest.fixture(scope="module")
def small_photos(shared) -> list[np.ndarray]:
    """Three real photos, centre 64x64 / 72x96 crops: small enough for the numpy reference."""
    from protector.images import read_photo

    folder = shared.path("standin/images")
    names = ["places_demo_csail_mountains.jpg", "urban100_img_001.jpg", "bsds500_100075.jpg"]
    pixels = [read_photo(folder / name).pixels for name in names]
    return [pixels[0][96:160, 96:160], pixels[1][80:152, 60:156], pixels[2][:65, :67]]


def _torch_probs(nima: NIMA, pixels: np.ndarray) -> np.ndarray:
    x = torch.from_numpy(np.array(pixels)).permute(2, 0, 1)[None].float() / 255.0
    with torch.no_grad():
        return nima(x)[0].double().numpy()


# ----------------------------------------------------------------------------- agreement


@pytest.mark.parametrize("padding", ["bottom_right", "symmetric"])
def test_port_matches_numpy_on_synthetic_weights(synthetic_weights, padding, rng):
    nima = load_nima(synthetic_weights, preprocess="native", allow_unpinned=True, padding=padding)
    weights = _keras_weights(synthetic_weights)
    # Odd sizes too: stride-2 padding matters most where a side is odd.
    for shape in [(64, 64, 3), (57, 71, 3)]:
        pixels = rng.integers(0, 256, shape, dtype=np.uint8)
        expected = numpy_nima(pixels, weights, padding)
        np.testing.assert_allclose(_torch_probs(nima, pixels), expected, atol=1e-4, rtol=0)


def test_padding_choice_changes_the_output(synthetic_weights, rng):
    pixels = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    weights = _keras_weights(synthetic_weights)
    a, b = numpy_nima(pixels, weights, "bottom_right"), numpy_nima(pixels, weights, "symmetric")
    assert np.abs(a - b).max() > 1e-3  # so the agreement test above can tell them apart


def test_port_matches_numpy_on_real_weights(shared, small_photos):
    path = shared.path("nima/weights_mobilenet_aesthetic_0.07.hdf5")
    nima = load_nima(path, preprocess="native")
    weights = _keras_weights(path)
    for pixels in small_photos:
        probs = _torch_probs(nima, pixels)
        np.testing.assert_allclose(probs, numpy_nima(pixels, weights), atol=1e-4, rtol=0)
        assert abs(probs.sum() - 1) < 1e-5


def test_idealo_preprocessing_is_pil_nearest_224(synthetic_weights, rng):
    idealo = load_nima(synthetic_weights, preprocess="idealo", allow_unpinned=True)
    native = load_nima(synthetic_weights, preprocess="native", allow_unpinned=True)
    for shape in [(256, 256, 3), (150, 100, 3), (231, 517, 3)]:
        pixels = rng.integers(0, 256, shape, dtype=np.uint8)
        resized = np.asarray(Image.fromarray(pixels).resize((224, 224), Image.NEAREST))  # idealo's load_img
        np.testing.assert_allclose(_torch_probs(idealo, pixels), _torch_probs(native, resized), atol=1e-6, rtol=0)


def test_real_scores_are_plausible_and_named(shared):
    from protector.images import read_photo, to_tensor

    nima = load_nima(shared.path("nima/weights_mobilenet_aesthetic_0.07.hdf5"))
    assert nima.preprocess == "idealo" and nima.name == f"{NIMA_NAME}, preprocess=idealo"
    x = to_tensor(read_photo(shared.path("standin/images/urban100_img_001.jpg")).pixels)[None]
    with torch.no_grad():
        mean, std = nima_scores(nima(x))
    assert 2.0 < float(mean) < 8.0 and 0.5 < float(std) < 3.0


def test_gradients_reach_the_image_not_the_weights(synthetic_weights):
    nima = load_nima(synthetic_weights, allow_unpinned=True)
    x = torch.rand(1, 3, 80, 60, requires_grad=True)
    mean, _ = nima_scores(nima(x))
    mean.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(not p.requires_grad for p in nima.parameters())
    assert not nima.training


# ----------------------------------------------------------------------------- scores


def test_scores_on_hand_computed_distributions():
    one_hot_5 = torch.zeros(10)
    one_hot_5[4] = 1.0
    uniform = torch.full((10,), 0.1)
    extremes = torch.zeros(10)
    extremes[0] = extremes[9] = 0.5
    skewed = torch.zeros(10)
    skewed[1], skewed[2] = 0.25, 0.75  # scores 2 and 3
    mean, std = nima_scores(torch.stack([one_hot_5, uniform, extremes, skewed]).double())
    torch.testing.assert_close(mean, torch.tensor([5.0, 5.5, 5.5, 2.75], dtype=torch.float64))
    # uniform: variance = (10^2 - 1) / 12 = 8.25; extremes: 4.5; skewed: sqrt(0.25*0.75^2 + 0.75*0.25^2)
    expected_std = torch.tensor([0.0, 8.25**0.5, 4.5, (0.25 * 0.75**2 + 0.75 * 0.25**2) ** 0.5], dtype=torch.float64)
    torch.testing.assert_close(std, expected_std)


def test_scores_reject_wrong_shape():
    with pytest.raises(ValueError, match=r"\(B, 10\)"):
        nima_scores(torch.rand(2, 9))


# ----------------------------------------------------------------------------- failing loudly


def test_no_weights_path_fails():
    with pytest.raises(ValueError, match="needs its weights file"):
        load_nima(None)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        NIMA()  # type: ignore[call-arg]  # no random NIMA to score with


def test_missing_weights_file_fails(tmp_path):
    with pytest.raises(FileNotFoundError, match="NIMA weights not found"):
        load_nima(tmp_path / "weights_mobilenet_aesthetic_0.07.hdf5")


def test_other_file_fails_checksum(synthetic_weights):
    with pytest.raises(NIMAWeightsError, match=f"sha256 {sha256_file(synthetic_weights)}, expected e563ad91"):
        load_nima(synthetic_weights)


def test_explicit_sha256_is_checked(synthetic_weights):
    assert isinstance(load_nima(synthetic_weights, sha256=sha256_file(synthetic_weights)), NIMA)
    with pytest.raises(NIMAWeightsError, match="not the expected NIMA weights"):
        load_nima(synthetic_weights, sha256="f" * 64)


def test_not_hdf5_fails(tmp_path):
    path = tmp_path / "weights.hdf5"
    path.write_text("<html>404</html>")
    with pytest.raises(NIMAWeightsError, match="not a readable HDF5 file"):
        load_nima(path, allow_unpinned=True)


def test_wrong_hdf5_layout_fails(tmp_path, synthetic_weights):
    path = tmp_path / "inception.hdf5"
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = np.array([b"conv2d_1"])
        f.create_group("conv2d_1").attrs["weight_names"] = np.array([b"conv2d_1/kernel:0"])
    with pytest.raises(NIMAWeightsError, match="no layer 'conv1'"):
        load_nima(path, allow_unpinned=True)

    # Right names, wrong width (e.g. a MobileNet with alpha 0.5).
    narrow = tmp_path / "narrow.hdf5"
    narrow.write_bytes(synthetic_weights.read_bytes())
    with h5py.File(narrow, "r+") as f:
        del f["conv1"]["conv1/kernel:0"]
        f["conv1"].create_dataset("conv1/kernel:0", data=np.zeros((3, 3, 3, 16), dtype=np.float32))
    with pytest.raises(NIMAWeightsError, match=r"conv1/kernel has shape \(16, 3, 3, 3\), expected \(32, 3, 3, 3\)"):
        load_nima(narrow, allow_unpinned=True)


def test_invalid_settings_rejected(synthetic_weights):
    with pytest.raises(ValueError, match="preprocess must be"):
        load_nima(synthetic_weights, preprocess="resize", allow_unpinned=True)  # type: ignore[arg-type]
