"""NIMA aesthetic scores: idealo's MobileNet v1 trained on AVA, ported from its Keras HDF5 weights.

The weights are read with h5py (no TensorFlow). The network is Keras' MobileNet v1
(alpha 1.0, no top) + global average pooling + Dense(10, softmax): a distribution over the
scores 1..10. Keras conventions reproduced: BatchNorm eps 1e-3, ReLU6, kernels stored as
(kh, kw, in, out) and depthwise kernels as (kh, kw, in, 1), and stride-2 convolutions padded
on the right and bottom only (as `tf.keras`' MobileNet pads them).

Numbers from this model are "NIMA-MobileNet (idealo, AVA)", not the task organizers' NIMA;
always report them with the preprocessing used (see `NIMA`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import h5py
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from protector.limits import MAX_WEIGHTS_BYTES, FileTooLargeError
from protector.paths import NotAFileError, regular_file_size, sha256_file

__all__ = ["NIMA", "NIMA_AESTHETIC_SHA256", "NIMA_NAME", "NIMAWeightsError", "load_nima", "nima_scores"]

NIMA_NAME = "NIMA-MobileNet (idealo, AVA)"
# idealo/image-quality-assessment models/MobileNet/weights_mobilenet_aesthetic_0.07.hdf5
NIMA_AESTHETIC_SHA256 = "e563ad91b3d47410e45f7238f07ab8f6abd1bd0c4b18a4b0af9c681a21a91cb2"
IDEALO_SIZE = 224
KERAS_BN_EPS = 1e-3

# (pointwise output channels, depthwise stride) of the 13 depthwise-separable blocks.
_BLOCKS = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2)] + [(512, 1)] * 5 + [(1024, 2), (1024, 1)]

Preprocess = Literal["idealo", "native"]
Padding = Literal["bottom_right", "symmetric"]


class NIMAWeightsError(ValueError):
    """The NIMA weights file is missing, not HDF5, or not the expected MobileNet weights."""


class _ConvBN(nn.Module):
    """Keras Conv2D/DepthwiseConv2D (no bias) -> BatchNormalization(eps=1e-3) -> ReLU6."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, groups: int, padding: Padding):
        super().__init__()
        self.stride = stride
        self.kernel = kernel
        self.padding = padding
        self.conv = nn.Conv2d(cin, cout, kernel, stride=stride, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=KERAS_BN_EPS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kernel > 1:
            if self.stride == 2 and self.padding == "bottom_right":
                x = F.pad(x, (0, 1, 0, 1))  # (left, right, top, bottom)
            else:
                x = F.pad(x, (1, 1, 1, 1))
        return F.relu6(self.bn(self.conv(x)))


class NIMA(nn.Module):
    """NIMA aesthetic model (MobileNet v1, idealo, AVA): photo in, distribution over scores 1..10.

    Built only from its weights file: there is no randomly initialized NIMA to score with.

    Args:
        weights: idealo's `weights_mobilenet_aesthetic_0.07.hdf5` (Keras 2.1.6 HDF5).
        sha256: expected sha256 of `weights`; by default the aesthetic file's known digest.
        allow_unpinned: skip the checksum (another MobileNet NIMA file, e.g. a fine-tune).
        preprocess: "idealo": resize to 224x224 (nearest, exactly as PIL does it in idealo's
            loader), then scale to [-1, 1]; "native": full size, same scaling (as the task
            organizers fed their NIMA).
        padding: "bottom_right" pads stride-2 convolutions on the right/bottom only (tf.keras,
            idealo's current code); "symmetric" pads all sides (Keras 2.1.x ZeroPadding2D((1, 1)),
            with which the file was saved).

    Shape:
        (B, 3, H, W) RGB in [0, 1] -> (B, 10) probabilities of the scores 1..10.

    Example:
        >>> nima = load_nima("../shared/nima/weights_mobilenet_aesthetic_0.07.hdf5")  # doctest: +SKIP
        >>> mean, std = nima_scores(nima(torch.rand(1, 3, 256, 256)))  # doctest: +SKIP
    """

    def __init__(
        self,
        weights: str | Path,
        sha256: str | None = None,
        allow_unpinned: bool = False,
        preprocess: Preprocess = "idealo",
        padding: Padding = "bottom_right",
    ):
        super().__init__()
        if preprocess not in ("idealo", "native"):
            raise ValueError(f"preprocess must be 'idealo' or 'native', got {preprocess!r}")
        if padding not in ("bottom_right", "symmetric"):
            raise ValueError(f"padding must be 'bottom_right' or 'symmetric', got {padding!r}")
        self.preprocess = preprocess
        self.padding = padding
        layers = [_ConvBN(3, 32, 3, 2, 1, padding)]
        channels = 32
        for out, stride in _BLOCKS:
            layers.append(_ConvBN(channels, channels, 3, stride, channels, padding))  # depthwise
            layers.append(_ConvBN(channels, out, 1, 1, 1, padding))  # pointwise
            channels = out
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(channels, 10)
        self._load_keras_weights(Path(weights), sha256, allow_unpinned)
        self.requires_grad_(False)
        self.eval()

    @property
    def name(self) -> str:
        """What to write next to the numbers: model and preprocessing."""
        return f"{NIMA_NAME}, preprocess={self.preprocess}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.preprocess == "idealo":
            x = resize_nearest_like_pil(x, IDEALO_SIZE, IDEALO_SIZE)
        x = x * 2.0 - 1.0  # Keras MobileNet preprocess_input: x / 127.5 - 1 on 0..255
        features = self.features(x).mean(dim=(2, 3))  # (B, 1024)
        return torch.softmax(self.head(features), dim=1)  # (B, 10)

    # -------------------------------------------------------------- weights

    def _load_keras_weights(self, path: Path, sha256: str | None, allow_unpinned: bool) -> None:
        try:
            regular_file_size(path, MAX_WEIGHTS_BYTES, "NIMA weights file")
        except FileNotFoundError:
            raise FileNotFoundError(
                f"{path}: NIMA weights not found (weights_mobilenet_aesthetic_0.07.hdf5 from "
                "idealo/image-quality-assessment; see ../shared/nima/README.md)"
            ) from None
        except NotAFileError as err:  # a FIFO would block the checksum forever
            raise NIMAWeightsError(f"{err}; give the weights file (weights_mobilenet_aesthetic_0.07.hdf5)") from None
        except FileTooLargeError as err:
            raise NIMAWeightsError(str(err)) from None
        except OSError as err:
            raise NIMAWeightsError(f"{path}: NIMA weights cannot be read ({err.strerror or err})") from None
        if sha256 is not None or not allow_unpinned:
            expected = (sha256 or NIMA_AESTHETIC_SHA256).lower()
            try:
                actual = sha256_file(path)
            except OSError as err:  # EIO, permissions: one line, not a traceback
                raise NIMAWeightsError(f"{path}: NIMA weights cannot be read ({err.strerror or err})") from None
            if actual != expected:
                raise NIMAWeightsError(
                    f"{path}: not the expected NIMA weights: sha256 {actual}, expected {expected} "
                    "(pass sha256=... or allow_unpinned=True for another MobileNet NIMA file)"
                )
        try:
            with h5py.File(path, "r") as f:
                root = f["model_weights"] if "model_weights" in f else f  # full-model saves nest weights
                self._copy_weights(path, root)
        except OSError as err:
            raise NIMAWeightsError(f"{path}: not a readable HDF5 file ({err})") from None

    def _copy_weights(self, path: Path, root: h5py.Group) -> None:
        names = ["conv1"] + [f"conv_{kind}_{i}" for i in range(1, 14) for kind in ("dw", "pw")]
        for name, block in zip(names, self.features):
            kernel = _dataset(path, root, name, "kernel" if not name.startswith("conv_dw") else "depthwise_kernel")
            if name.startswith("conv_dw"):
                kernel = kernel.transpose(2, 3, 0, 1)  # (kh, kw, in, 1) -> (in, 1, kh, kw)
            else:
                kernel = kernel.transpose(3, 2, 0, 1)  # (kh, kw, in, out) -> (out, in, kh, kw)
            _assign(path, f"{name}/kernel", block.conv.weight, kernel)
            bn = block.bn
            for keras_name, tensor in (
                ("gamma", bn.weight),
                ("beta", bn.bias),
                ("moving_mean", bn.running_mean),
                ("moving_variance", bn.running_var),
            ):
                _assign(path, f"{name}_bn/{keras_name}", tensor, _dataset(path, root, f"{name}_bn", keras_name))
        _assign(path, "dense_1/kernel", self.head.weight, _dataset(path, root, "dense_1", "kernel").T)
        _assign(path, "dense_1/bias", self.head.bias, _dataset(path, root, "dense_1", "bias"))


def _dataset(path: Path, root: h5py.Group, layer: str, weight: str) -> np.ndarray:
    """The array `layer/weight:0` of a Keras HDF5 weights file, found via the `weight_names` attribute."""
    if layer not in root:
        raise NIMAWeightsError(f"{path}: no layer {layer!r}; not Keras MobileNet NIMA weights")
    group = root[layer]
    for raw in group.attrs.get("weight_names", []):
        full = raw.decode() if isinstance(raw, bytes) else str(raw)
        if full.split("/")[-1].split(":")[0] == weight:
            return np.asarray(group[full], dtype=np.float32)
    raise NIMAWeightsError(f"{path}: layer {layer!r} has no weight {weight!r}")


def _assign(path: Path, what: str, target: torch.Tensor, value: np.ndarray) -> None:
    if tuple(value.shape) != tuple(target.shape):
        raise NIMAWeightsError(
            f"{path}: {what} has shape {tuple(value.shape)}, expected {tuple(target.shape)} "
            "(MobileNet v1 alpha 1.0 with a 10-way head)"
        )
    with torch.no_grad():
        target.copy_(torch.from_numpy(np.ascontiguousarray(value)))


def pil_nearest_indices(size_in: int, size_out: int) -> np.ndarray:
    """Source index of each output pixel in PIL's NEAREST resize (Keras `load_img`'s default).

    PIL walks the output with a running sum in double precision starting at half a step,
    so exact ties round down; reproducing the sum reproduces PIL pixel for pixel.
    """
    step = size_in / size_out
    position = step * 0.5
    indices = np.empty(size_out, dtype=np.int64)
    for i in range(size_out):
        indices[i] = int(position)
        position += step
    return indices


def resize_nearest_like_pil(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Nearest-neighbour resize of (B, C, H, W) that picks the same pixels as PIL; differentiable."""
    if x.shape[-2:] == (height, width):
        return x
    rows = torch.from_numpy(pil_nearest_indices(x.shape[-2], height)).to(x.device)
    cols = torch.from_numpy(pil_nearest_indices(x.shape[-1], width)).to(x.device)
    return x.index_select(-2, rows).index_select(-1, cols)


def load_nima(
    path: str | Path,
    sha256: str | None = None,
    preprocess: Preprocess = "idealo",
    allow_unpinned: bool = False,
    padding: Padding = "bottom_right",
) -> NIMA:
    """Load the NIMA aesthetic model from idealo's Keras HDF5 weights; fails loudly, never random.

    Raises:
        ValueError: no path given.
        FileNotFoundError: the file does not exist.
        NIMAWeightsError: checksum mismatch, not HDF5, or missing/misshapen weights.
    """
    if path is None or str(path) == "":
        raise ValueError(
            "NIMA needs its weights file (weights_mobilenet_aesthetic_0.07.hdf5); "
            "scores from random weights would be meaningless"
        )
    return NIMA(path, sha256=sha256, allow_unpinned=allow_unpinned, preprocess=preprocess, padding=padding)


def nima_scores(probs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and standard deviation of NIMA score distributions.

    mean = sum_i i * p_i and std = sqrt(sum_i (i - mean)^2 * p_i), for scores i = 1..10.

    Shape:
        (B, 10) -> ((B,), (B,)).
    """
    if probs.dim() != 2 or probs.shape[1] != 10:
        raise ValueError(f"expected (B, 10) probabilities, got shape {tuple(probs.shape)}")
    scores = torch.arange(1, 11, dtype=probs.dtype, device=probs.device)
    mean = (probs * scores).sum(dim=1)
    variance = (probs * (scores - mean[:, None]) ** 2).sum(dim=1)
    return mean, variance.clamp_min(0).sqrt()
