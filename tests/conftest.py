"""Fixtures shared by every test file. Area-specific fixtures live in the test file that uses them."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
IN_CI = os.environ.get("CI", "").lower() == "true"


@pytest.fixture(autouse=True, scope="session")
def _no_downloads(tmp_path_factory):
    """No test downloads the attack model or writes to the user's cache: an empty cache, offline
    (subprocesses inherit both); the download tests lift the offline flag for their local server."""
    saved = {key: os.environ.get(key) for key in ("PROTECTOR_CACHE", "PROTECTOR_OFFLINE")}
    os.environ["PROTECTOR_CACHE"] = str(tmp_path_factory.mktemp("user-cache"))
    os.environ["PROTECTOR_OFFLINE"] = "1"
    yield
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


class SharedFiles:
    """Files from ../shared: skip outside CI when missing, fail under CI=true."""

    root = SHARED

    def path(self, relative: str) -> Path:
        p = SHARED / relative
        if not p.exists():
            message = f"../shared/{relative} is missing"
            if IN_CI:
                pytest.fail(message + " (CI=true: shared files are required)")
            pytest.skip(message)
        return p

    def standin_classifier(self) -> nn.Module:
        code_dir = self.path("standin")
        self.path("standin/squeezenet_places365_bn.pt")
        if str(code_dir) not in sys.path:
            sys.path.insert(0, str(code_dir))
        from squeezenet_places import StandinPlaces365

        return StandinPlaces365()


@pytest.fixture(scope="session")
def shared() -> SharedFiles:
    return SharedFiles()


class TinyClassifier(nn.Module):
    """A small real CNN with BatchNorm: RGB [0, 1] in, logits out, any input size."""

    def __init__(self, num_classes: int = 365):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, stride=2, padding=1),
            nn.BatchNorm2d(8),
            nn.ReLU(),
            nn.Conv2d(8, 16, 3, stride=2, padding=1),
            nn.BatchNorm2d(16),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
        )
        self.head = nn.Linear(16, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).flatten(1))


@pytest.fixture
def tiny_classifier() -> nn.Module:
    torch.manual_seed(0)
    model = TinyClassifier()
    # Non-trivial BatchNorm statistics, so a test can see them change.
    with torch.no_grad():
        model.train()
        model(torch.rand(4, 3, 32, 32))
    return model.eval()


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture
def random_images() -> torch.Tensor:
    torch.manual_seed(0)
    return torch.rand(4, 3, 64, 64)


def save_shaped_resnet50(path: Path) -> Path:
    """A ResNet50-Places365 checkpoint in the official layout whose tensors are one value each.

    Every tensor has the official shape but a stride-0 storage of one element, so the file is a
    few hundred KB: enough for checks that it loads into the architecture (data fetch/check).
    """
    from protector.architectures import build_architecture

    with torch.device("meta"):
        shapes = {key: value.shape for key, value in build_architecture("resnet50", 365).state_dict().items()}
    state = {f"module.{key}": torch.zeros(1).expand(shape) if shape else torch.zeros(()) for key, shape in shapes.items()}
    torch.save({"epoch": 1, "arch": "resnet50", "state_dict": state, "best_prec1": 0.0}, path)
    return path
