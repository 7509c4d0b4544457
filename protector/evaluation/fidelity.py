"""How close a protected photo stays to its original, measured on the 8-bit files.

One pinned implementation, named in every report: scikit-image. PSNR with
``data_range=255``; SSIM as Wang et al. (2004) define it (Gaussian window sigma 1.5,
population covariance, K1 0.01, K2 0.03) averaged over the RGB channels; CIEDE2000 colour
difference between the CIELAB images (sRGB, D65), averaged over pixels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from skimage import __version__ as skimage_version
from skimage.color import deltaE_ciede2000, rgb2lab
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

IMPLEMENTATION = (
    f"scikit-image {skimage_version}: peak_signal_noise_ratio(data_range=255); "
    "structural_similarity(channel_axis=2, data_range=255, gaussian_weights=True, sigma=1.5, "
    "use_sample_covariance=False); deltaE_ciede2000(rgb2lab(original), rgb2lab(protected)) mean over pixels"
)
_SSIM_MIN_SIDE = 11  # the Gaussian window is 11x11


@dataclass(frozen=True)
class Fidelity:
    """Per-photo fidelity. `psnr` is inf for identical photos; `ssim` None below 11 px."""

    psnr: float
    ssim: float | None
    ciede2000: float
    max_delta_8bit: int


def fidelity(original: np.ndarray, protected: np.ndarray) -> Fidelity:
    """Compare two (H, W, 3) uint8 photos of the same size.

    Example:
        >>> a = np.full((16, 16, 3), 100, np.uint8)
        >>> round(fidelity(a, a + 2).psnr, 2)  # 10 * log10(255**2 / 2**2)
        42.11
    """
    if original.shape != protected.shape:
        raise ValueError(f"sizes differ: original {original.shape[:2]}, protected {protected.shape[:2]}")
    if original.dtype != np.uint8 or protected.dtype != np.uint8:
        raise ValueError("fidelity is measured on 8-bit photos (uint8)")
    if np.array_equal(original, protected):
        psnr = math.inf  # skimage divides by a zero MSE
    else:
        psnr = float(peak_signal_noise_ratio(original, protected, data_range=255))
    ssim = None
    if min(original.shape[:2]) >= _SSIM_MIN_SIDE:
        ssim = float(structural_similarity(original, protected, channel_axis=2, data_range=255,
                                           gaussian_weights=True, sigma=1.5, use_sample_covariance=False))
    ciede = float(np.mean(deltaE_ciede2000(rgb2lab(original), rgb2lab(protected))))
    max_delta = int(np.abs(original.astype(np.int16) - protected.astype(np.int16)).max())
    return Fidelity(psnr, ssim, ciede, max_delta)
