"""An independent no-reference quality score (BRISQUE), beside NIMA.

Training against NIMA and scoring with the same NIMA can be gamed; BRISQUE (Mittal et al.,
2012: natural-scene statistics of locally normalized luminance, an SVR trained on LIVE) is a
different model that nobody here trains against. Lower is better. The `brisque` package
ships its SVR model, so it works offline.
"""

from __future__ import annotations

import numpy as np

IMPLEMENTATION = "brisque (PyPI) 0.2: BRISQUE, LIVE-trained SVR shipped with the package; lower is better"


def _scorer():
    try:
        from brisque import BRISQUE
    except ImportError as err:
        raise ImportError("the BRISQUE score needs the brisque package: pip install 'brisque>=0.2'") from err

    class _FlatFeatures(BRISQUE):
        # brisque 0.2 returns some fitted parameters as 1-element arrays, which its own
        # float() conversion rejects under NumPy 2; hand it plain floats.
        def scale_features(self, features):
            return super().scale_features([np.asarray(f, dtype=np.float64).reshape(-1)[0] for f in features])

    return _FlatFeatures(url=False)


def brisque_scores(photos: list[np.ndarray]) -> list[float]:
    """BRISQUE of each (H, W, 3) uint8 RGB photo (lower is better)."""
    scorer = _scorer()
    return [float(scorer.score(p)) for p in photos]
