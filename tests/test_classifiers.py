"""Attack models: official-layout checkpoints, untrusted files, the frozen wrapper, class paths."""

from __future__ import annotations

import re
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from jsonargparse import ArgumentParser
from torch import nn
from torchvision.models import resnet18

from protector.architectures import REGISTRY, WideResNet18
from protector.classifiers import (
    CheckpointError,
    ChecksumError,
    ClassPathError,
    ExternalClassifier,
    FrozenClassifier,
    Places365Classifier,
    load_places365_state_dict,
)
from protector.images import read_photo, to_tensor
from protector.paths import sha256_file

REPO = Path(__file__).resolve().parents[1]
MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


def _randomize_bn(model: nn.Module, seed: int) -> nn.Module:
    """Non-trivial BatchNorm statistics, so a loader that drops them gives other logits."""
    generator = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.copy_(torch.randn(module.num_features, generator=generator) * 0.1)
            module.running_var.copy_(torch.rand(module.num_features, generator=generator) + 0.5)
    return model.eval()


def save_official(model: nn.Module, path: Path, arch: str, legacy: bool = True, old_bn: bool = False) -> Path:
    """Save like CSAIL did: DataParallel `module.` keys in an epoch/arch/state_dict/best_prec1 dict.

    legacy: the pre-1.6 pickle stream format of the official files.
    old_bn: drop `num_batches_tracked` (absent in files saved before PyTorch 0.4).
    """
    state = {
        "module." + key: value
        for key, value in model.state_dict().items()
        if not (old_bn and key.endswith("num_batches_tracked"))
    }
    checkpoint = {"epoch": 90, "arch": arch, "state_dict": state, "best_prec1": 54.7}
    torch.save(checkpoint, path, _use_new_zipfile_serialization=not legacy)
    return path


def reference_logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model((x - MEAN) / STD)


@pytest.fixture(scope="module")
def resnet18_file(tmp_path_factory) -> tuple[nn.Module, Path]:
    torch.manual_seed(1)
    model = _randomize_bn(torchvision.models.resnet18(num_classes=365), seed=1)
    path = save_official(model, tmp_path_factory.mktemp("ckpt") / "resnet18_places365.pth.tar", "resnet18")
    return model, path


# ----------------------------------------------------------------------------- loading


def test_resnet50_official_layout_gives_identical_logits(tmp_path):
    torch.manual_seed(0)
    source = _randomize_bn(torchvision.models.resnet50(num_classes=365), seed=0)
    path = save_official(source, tmp_path / "resnet50_places365.pth.tar", "resnet50")
    classifier = Places365Classifier("resnet50", str(path), sha256=sha256_file(path))

    x = torch.rand(2, 3, 64, 80)  # any size: no resize, no crop
    with torch.no_grad():
        got = classifier(x)
    torch.testing.assert_close(got, reference_logits(source, x), rtol=0, atol=1e-6)
    assert got.shape == (2, 365)
    assert not classifier.training


def test_densenet161_old_style_keys_without_bn_counters(tmp_path):
    torch.manual_seed(0)
    source = _randomize_bn(torchvision.models.densenet161(num_classes=365), seed=2)
    # Pre-0.4 DenseNet names: features.denseblock1.denselayer1.norm.1.weight, conv.2, ...
    old_names = {}
    for key, value in source.state_dict().items():
        if key.endswith("num_batches_tracked"):
            continue
        old = re.sub(r"(denselayer\d+\.(?:norm|relu|conv))([12])\.", r"\1.\2.", key)
        old_names["module." + old] = value
    assert any(".norm.1." in key for key in old_names)
    path = tmp_path / "densenet161_places365.pth.tar"
    torch.save({"epoch": 90, "arch": "densenet161", "state_dict": old_names, "best_prec1": 56.1}, path)

    state_dict = load_places365_state_dict(path, "densenet161")
    assert not any(".norm.1." in key or key.startswith("module.") for key in state_dict)
    with pytest.warns(UserWarning, match="unpinned"):
        classifier = Places365Classifier("densenet161", str(path), allow_unpinned=True)
    x = torch.rand(1, 3, 48, 48)
    with torch.no_grad():
        torch.testing.assert_close(classifier(x), reference_logits(source, x), rtol=0, atol=1e-6)


def _csail_wideresnet18_shapes(num_classes: int) -> dict[str, tuple[int, ...]]:
    """Parameter shapes of CSAIL's wideresnet.py resnet18, written out from its description.

    conv1 7x7/2 (64) + bn1, no max-pool; four stages of two BasicBlocks (64, 128, 256, 512),
    stages 2-4 start with stride 2 and a 1x1 conv + BN downsample; fc to num_classes.
    """
    shapes: dict[str, tuple[int, ...]] = {"conv1.weight": (64, 3, 7, 7)}

    def bn(prefix: str, channels: int) -> None:
        for name in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"{prefix}.{name}"] = (channels,)
        shapes[f"{prefix}.num_batches_tracked"] = ()

    bn("bn1", 64)
    inplanes = 64
    for stage, planes in enumerate((64, 128, 256, 512), start=1):
        for block in range(2):
            prefix = f"layer{stage}.{block}"
            cin = inplanes if block == 0 else planes
            shapes[f"{prefix}.conv1.weight"] = (planes, cin, 3, 3)
            bn(f"{prefix}.bn1", planes)
            shapes[f"{prefix}.conv2.weight"] = (planes, planes, 3, 3)
            bn(f"{prefix}.bn2", planes)
            if block == 0 and stage > 1:
                shapes[f"{prefix}.downsample.0.weight"] = (planes, cin, 1, 1)
                bn(f"{prefix}.downsample.1", planes)
        inplanes = planes
    shapes["fc.weight"] = (num_classes, 512)
    shapes["fc.bias"] = (num_classes,)
    return shapes


def test_wideresnet18_matches_csail_names_shapes_and_14x14_map():
    model = WideResNet18(num_classes=365).eval()
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == _csail_wideresnet18_shapes(365)
    # "this model has a last conv feature map as 14x14" at 224x224 (no max-pool).
    seen = {}

    def record(module, args, out):
        seen["shape"] = out.shape

    model.layer4.register_forward_hook(record)
    with torch.no_grad():
        assert model(torch.rand(1, 3, 224, 224)).shape == (1, 365)
    assert seen["shape"] == (1, 512, 14, 14)


def test_wideresnet18_checkpoint_loads_with_identical_logits(tmp_path):
    torch.manual_seed(3)
    source = _randomize_bn(WideResNet18(num_classes=365), seed=3)
    path = save_official(source, tmp_path / "wideresnet18_places365.pth.tar", "wideresnet18", old_bn=True)
    with pytest.warns(UserWarning, match="unpinned"):
        classifier = Places365Classifier("wideresnet18", str(path), allow_unpinned=True)
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(classifier(x), reference_logits(source, x), rtol=0, atol=1e-6)


@pytest.mark.parametrize("legacy", [True, False], ids=["legacy-pickle", "zip"])
def test_bare_state_dict_in_both_formats(tmp_path, resnet18_file, legacy):
    source, _ = resnet18_file
    path = tmp_path / "bare.pt"
    torch.save(source.state_dict(), path, _use_new_zipfile_serialization=not legacy)
    state_dict = load_places365_state_dict(path, "resnet18")
    assert all(torch.equal(state_dict[k], v) for k, v in source.state_dict().items())


def test_imagenet_checkpoint_rejected_with_class_counts(tmp_path):
    imagenet = torchvision.models.resnet18(num_classes=1000)
    path = save_official(imagenet, tmp_path / "resnet18_imagenet.pth.tar", "resnet18")
    with pytest.raises(CheckpointError, match=r"1000 classes.*ImageNet.*expected 365") as info:
        load_places365_state_dict(path, "resnet18")
    assert str(path) in str(info.value)


def test_wrong_architecture_lists_missing_keys_and_shapes(resnet18_file):
    _, path = resnet18_file
    with pytest.raises(CheckpointError, match=r"not a resnet50.*arch='resnet18'.*missing keys.*shape mismatches"):
        load_places365_state_dict(path, "resnet50")


def test_unexpected_keys_rejected(tmp_path, resnet18_file):
    source, _ = resnet18_file
    state = dict(source.state_dict(), **{"attention.weight": torch.ones(3)})
    path = tmp_path / "extra.pt"
    torch.save({"state_dict": state}, path)
    with pytest.raises(CheckpointError, match=r"1 unexpected keys \(e.g. attention.weight\)"):
        load_places365_state_dict(path, "resnet18")


@pytest.mark.parametrize("legacy", [True, False], ids=["legacy-pickle", "zip"])
def test_truncated_checkpoint_rejected(tmp_path, resnet18_file, legacy):
    source, _ = resnet18_file
    full = tmp_path / "full.pth.tar"
    save_official(source, full, "resnet18", legacy=legacy)
    cut = tmp_path / "cut.pth.tar"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt") as info:
        load_places365_state_dict(cut, "resnet18")
    assert str(cut) in str(info.value)


@pytest.mark.parametrize(
    "content, expected",
    [
        (b"<html><body>404 Not Found</body></html>\n", "not a PyTorch checkpoint; it is a text file"),
        (b"", "empty file"),
    ],
)
def test_non_checkpoint_files_rejected(tmp_path, content, expected):
    path = tmp_path / "resnet18_places365.pth.tar"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=expected):
        load_places365_state_dict(path, "resnet18")


class _CreatesFile:
    """Unpickling this calls open(marker, "w"), which creates the file: a stand-in for code."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("legacy", [True, False], ids=["legacy-pickle", "zip"])
def test_pickle_payload_is_not_executed(tmp_path, resnet18_file, legacy):
    source, _ = resnet18_file
    marker = tmp_path / "payload_ran"
    path = tmp_path / "resnet18_places365.pth.tar"
    checkpoint = {"epoch": 90, "arch": "resnet18", "state_dict": source.state_dict(), "best_prec1": _CreatesFile(marker)}
    torch.save(checkpoint, path, _use_new_zipfile_serialization=not legacy)
    with pytest.raises(CheckpointError, match="may contain code and was not loaded"):
        load_places365_state_dict(path, "resnet18")
    assert not marker.exists()


def test_sha256_mismatch_names_file_expected_and_actual(resnet18_file):
    _, path = resnet18_file
    wrong = "0" * 64
    with pytest.raises(ChecksumError) as info:
        Places365Classifier("resnet18", str(path), sha256=wrong)
    message = str(info.value)
    assert str(path) in message and wrong in message and sha256_file(path) in message


def test_unpinned_checkpoint_needs_explicit_acceptance(resnet18_file):
    source, path = resnet18_file
    assert REGISTRY["resnet18"].filename == path.name and REGISTRY["resnet18"].sha256 is None
    with pytest.raises(ChecksumError, match=r"no sha256 is pinned.*allow_unpinned") as info:
        Places365Classifier("resnet18", str(path))
    assert sha256_file(path) in str(info.value)  # so the user can pin it
    with pytest.warns(UserWarning, match="unpinned"):
        classifier = Places365Classifier("resnet18", str(path), allow_unpinned=True)
    x = torch.rand(1, 3, 40, 40)
    with torch.no_grad():
        torch.testing.assert_close(classifier(x), reference_logits(source, x), rtol=0, atol=1e-6)


def test_random_init_warns():
    with pytest.warns(UserWarning, match="random weights"):
        Places365Classifier("resnet18")


def test_unknown_architecture_rejected():
    with pytest.raises(ValueError, match="unknown architecture 'vgg16'"):
        Places365Classifier("vgg16")


def test_normalization_constants_are_buffers_that_follow_the_module():
    with pytest.warns(UserWarning):
        classifier = Places365Classifier("resnet18").double()
    buffers = dict(classifier.named_buffers())
    assert buffers["normalize.mean"].dtype == torch.float64
    torch.testing.assert_close(buffers["normalize.std"].flatten().float(), STD.flatten())
    # Constants, not weights: a Lightning checkpoint of the module does not carry them.
    assert not any(key.startswith("normalize.") for key in classifier.state_dict())


# ----------------------------------------------------------------------------- frozen wrapper


class _Pipeline(nn.Module):
    def __init__(self, classifier: nn.Module):
        super().__init__()
        self.generator = nn.Conv2d(3, 3, 3, padding=1)
        self.classifier = FrozenClassifier(classifier)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier((x + 0.1 * torch.tanh(self.generator(x))).clamp(0, 1))


def test_frozen_classifier_is_bit_identical_after_training_steps(tiny_classifier):
    torch.manual_seed(0)
    pipeline = _Pipeline(tiny_classifier)
    before = {k: v.clone() for k, v in pipeline.classifier.state_dict().items()}
    generator_before = pipeline.generator.weight.detach().clone()
    # A careless optimizer given every parameter, with weight decay and momentum: frozen
    # parameters have no grad, so it must leave them alone.
    optimizer = torch.optim.SGD(pipeline.parameters(), lr=0.5, momentum=0.9, weight_decay=0.1)
    pipeline.train()  # what Lightning does each epoch
    for _ in range(3):
        x = torch.rand(4, 3, 32, 32)
        loss = pipeline(x).logsumexp(dim=1).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    after = pipeline.classifier.state_dict()
    assert before.keys() == after.keys()
    assert any("running_mean" in k for k in after)
    for key, value in before.items():
        assert torch.equal(value, after[key]), key
    assert not torch.equal(generator_before, pipeline.generator.weight)
    assert all(p.grad is None and not p.requires_grad for p in pipeline.classifier.parameters())
    assert pipeline.generator.training
    assert not any(m.training for m in pipeline.classifier.modules())


def test_frozen_classifier_passes_gradients_to_the_input(tiny_classifier):
    frozen = FrozenClassifier(tiny_classifier)
    x = torch.rand(2, 3, 32, 32, requires_grad=True)
    frozen(x)[:, 0].sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_frozen_classifier_stays_frozen_when_asked_to_train(tiny_classifier):
    frozen = FrozenClassifier(tiny_classifier)
    assert frozen.train() is frozen
    frozen.requires_grad_(True)
    assert not frozen.training and not any(m.training for m in frozen.modules())
    assert not any(p.requires_grad for p in frozen.parameters())


def test_frozen_wrapping_is_idempotent(tiny_classifier):
    once = FrozenClassifier(tiny_classifier)
    twice = FrozenClassifier(once)
    assert twice.model is tiny_classifier
    assert list(twice.state_dict()) == list(once.state_dict())


def test_warns_once_when_outputs_look_like_probabilities(tiny_classifier):
    frozen = FrozenClassifier(nn.Sequential(tiny_classifier, nn.Softmax(dim=1)))
    x = torch.rand(2, 3, 32, 32)
    with pytest.warns(UserWarning, match="look like probabilities"):
        frozen(x)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        frozen(x)  # checked once only


def test_logits_do_not_warn(tiny_classifier):
    frozen = FrozenClassifier(tiny_classifier)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        frozen(torch.rand(2, 3, 32, 32))


def test_warn_if_probabilities_decides_on_rows():
    with pytest.warns(UserWarning):
        assert FrozenClassifier.warn_if_probabilities(torch.softmax(torch.randn(3, 365), dim=1))
    assert not FrozenClassifier.warn_if_probabilities(torch.randn(3, 365))
    assert not FrozenClassifier.warn_if_probabilities(torch.full((3, 365), 0.5))  # in [0, 1], rows sum to 182.5


# ----------------------------------------------------------------------------- class paths


@pytest.fixture
def clean_sys_path(monkeypatch):
    monkeypatch.setattr(sys, "path", list(sys.path))


@pytest.fixture(scope="module")
def standin_photos(shared) -> torch.Tensor:
    folder = shared.path("standin/images")
    names = ("places_demo_csail_mountains.jpg", "places_demo_anhtu_coast.jpg")
    return torch.stack([to_tensor(read_photo(folder / name).pixels) for name in names])


def test_external_classifier_loads_the_standin(shared, standin_photos, clean_sys_path):
    reference = shared.standin_classifier().eval()
    search_path = str(shared.path("standin"))
    external = ExternalClassifier("squeezenet_places.StandinPlaces365", search_path=search_path)
    assert external.class_path == "squeezenet_places.StandinPlaces365" and not external.training
    with torch.no_grad():
        got, expected = external(standin_photos), reference(standin_photos)
    assert got.shape == (len(standin_photos), 365)
    torch.testing.assert_close(got, expected, rtol=0, atol=0)


def test_external_classifier_search_path_is_relative_to_cwd(shared, standin_photos, clean_sys_path, monkeypatch):
    standin = shared.path("standin")
    monkeypatch.chdir(standin.parent)
    external = ExternalClassifier("squeezenet_places.StandinPlaces365", search_path="standin")
    # Only for the import: left on sys.path, the folder would shadow every module imported later.
    assert str(standin.resolve()) not in sys.path
    with torch.no_grad():
        assert external(standin_photos[:1]).shape == (1, 365)


CONFIG_EXTERNAL = """
classifier:
  class_path: protector.classifiers.ExternalClassifier
  init_args:
    class_path: squeezenet_places.StandinPlaces365
    search_path: {search_path}
"""


def test_standin_from_config_by_class_path(shared, standin_photos, clean_sys_path, monkeypatch):
    standin = shared.path("standin")
    monkeypatch.chdir(REPO)  # configs name the stand-in relative to the repository root
    parser = ArgumentParser()
    parser.add_argument("--classifier", type=nn.Module)
    wrapped = parser.instantiate(parser.parse_string(CONFIG_EXTERNAL.format(search_path="../shared/standin")))
    assert isinstance(wrapped.classifier, ExternalClassifier)

    # A plain class path works too once the folder is importable (PYTHONPATH).
    monkeypatch.syspath_prepend(str(standin))
    plain = parser.instantiate(parser.parse_string("classifier:\n  class_path: squeezenet_places.StandinPlaces365\n"))
    with torch.no_grad():
        torch.testing.assert_close(
            FrozenClassifier(plain.classifier)(standin_photos), wrapped.classifier(standin_photos), rtol=0, atol=0
        )


def test_places365_classifier_from_config(resnet18_file):
    source, path = resnet18_file
    parser = ArgumentParser()
    parser.add_argument("--classifier", type=nn.Module)
    config = (
        "classifier:\n  class_path: protector.classifiers.Places365Classifier\n"
        f"  init_args:\n    arch: resnet18\n    checkpoint: {path}\n    sha256: {sha256_file(path)}\n"
    )
    classifier = parser.instantiate(parser.parse_string(config)).classifier
    x = torch.rand(1, 3, 36, 36)
    with torch.no_grad():
        torch.testing.assert_close(classifier(x), reference_logits(source, x), rtol=0, atol=1e-6)


def test_bad_class_paths_give_clear_errors(tmp_path, clean_sys_path):
    with pytest.raises(ClassPathError, match="cannot import module 'no_such_module_xyz'"):
        ExternalClassifier("no_such_module_xyz.Model")
    with pytest.raises(ClassPathError, match="has no 'Nope'"):
        ExternalClassifier("torch.nn.Nope")
    with pytest.raises(ClassPathError, match="not a torch.nn.Module"):
        ExternalClassifier("collections.OrderedDict")
    with pytest.raises(ClassPathError, match="like 'module.ClassName'"):
        ExternalClassifier("Model")
    with pytest.raises(FileNotFoundError, match="search path is not a folder"):
        ExternalClassifier("m.Model", search_path=str(tmp_path / "missing"))


def test_legacy_checkpoint_with_numpy_scalars_loads(tmp_path):
    # Old training scripts stored best_prec1 as a numpy scalar in the pre-zip pickle format;
    # numpy 1 spells the module numpy.core, which safe loading must still accept.
    model = resnet18(num_classes=365)
    checkpoint = {
        "epoch": 90,
        "arch": "resnet18",
        "state_dict": {"module." + k: v for k, v in model.state_dict().items()},
        "best_prec1": np.float64(54.65),
    }
    path = tmp_path / "resnet18_places365.pth.tar"
    torch.save(checkpoint, path, _use_new_zipfile_serialization=False)
    path.write_bytes(path.read_bytes().replace(b"numpy._core", b"numpy.core"))
    state = load_places365_state_dict(path, "resnet18")
    assert torch.equal(state["fc.weight"], model.state_dict()["fc.weight"])


def test_one_registry_entry_per_architecture_and_one_checksum_error() -> None:
    from protector import checksums
    from protector.architectures import build_architecture, get_architecture
    from protector.data.fetch import ChecksumError as FetchChecksumError
    from protector.data.fetch import OFFICIAL_FILES

    assert set(REGISTRY) == {"resnet50", "resnet18", "densenet161", "wideresnet18"}
    for name, entry in REGISTRY.items():
        with torch.device("meta"):
            head = dict(build_architecture(name, 7).named_modules())[entry.head]
        assert isinstance(head, nn.Linear) and head.out_features == 7  # the head the checkpoint check reads
        assert entry.url.endswith(f"/{name}_places365.pth.tar")
    assert OFFICIAL_FILES["resnet50_places365.pth.tar"].urls == (REGISTRY["resnet50"].url,)
    assert REGISTRY["densenet161"].fix_key("features.denseblock1.denselayer1.norm.1.weight") == \
        "features.denseblock1.denselayer1.norm1.weight"
    with pytest.raises(ValueError, match="unknown architecture 'vgg16'; choose one of resnet50"):
        get_architecture("vgg16")
    assert ChecksumError is checksums.ChecksumError is FetchChecksumError
