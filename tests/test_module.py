"""ProtectorModule: what is trained, what stays frozen, what validation measures, how it fails."""

from __future__ import annotations

import copy
import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.loggers import WandbLogger
from torch import nn
from torch.utils.data import DataLoader, Dataset

from protector.callbacks import ExportProtector
from protector.export import load_protector
from protector.generator import UNetGenerator
from protector.losses import SensitiveSafe, TopKMargin, UntargetedCE
from protector.module import SHORT_NAME_MARGINS, NonFiniteLossError, ProtectorModule, jpeg_round_trip
from protector.robust import Robustifier


@pytest.fixture(autouse=True)
def _one_thread():
    # Several jobs share two cores here: oversubscribed torch threads busy-wait and run 10x slower.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class PhotoBatchDataset(Dataset):
    """Smooth 8-bit images (JPEG treats them like photos), labels with some unknown (-1)."""

    def __init__(self, n: int = 8, size: int = 32, num_classes: int = 365, seed: int = 0, unknown: bool = True):
        gen = torch.Generator().manual_seed(seed)
        coarse = torch.rand(n, 3, 4, 4, generator=gen)
        smooth = nn.functional.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)
        noisy = (smooth + 0.05 * torch.randn(n, 3, size, size, generator=gen)).clamp(0, 1)
        self.images = torch.round(noisy * 255) / 255
        low = -1 if unknown else 0
        self.labels = torch.randint(low, num_classes, (n,), generator=gen)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> dict:
        return {"image": self.images[i], "label": self.labels[i], "name": f"photo_{i}.jpg"}


def loader(n: int = 8, batch_size: int = 4, **kwargs) -> DataLoader:
    return DataLoader(PhotoBatchDataset(n, **kwargs), batch_size=batch_size)


def make_module(classifier: nn.Module, guided: bool = False, **kwargs) -> ProtectorModule:
    torch.manual_seed(0)
    settings = {"eps": 4 / 255, "lr": 1e-2, "grid_images": 0}
    settings.update(kwargs)
    return ProtectorModule(UNetGenerator(base_channels=8, depth=2, guided=guided), classifier, **settings)


def make_trainer(tmp_path: Path, **kwargs) -> pl.Trainer:
    settings = dict(
        default_root_dir=tmp_path,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        accelerator="cpu",
        devices=1,
        max_epochs=1,
        enable_checkpointing=False,
    )
    settings.update(kwargs)
    return pl.Trainer(**settings)


class GradientProbe(pl.Callback):
    """Records, after the first backward, which parameters received a gradient."""

    def __init__(self) -> None:
        self.generator: dict[str, float] | None = None
        self.classifier: dict[str, torch.Tensor | None] | None = None

    def on_after_backward(self, trainer: pl.Trainer, pl_module: ProtectorModule) -> None:
        if self.generator is None:
            self.generator = {n: float(p.grad.abs().sum()) for n, p in pl_module.generator.named_parameters()}
            self.classifier = {n: p.grad for n, p in pl_module.classifier.named_parameters()}


@pytest.mark.parametrize("guided", [False, True])
def test_only_generator_parameters_get_gradients(tmp_path, tiny_classifier, guided) -> None:
    module = make_module(tiny_classifier, guided=guided)
    probe = GradientProbe()
    make_trainer(tmp_path, max_steps=1, callbacks=[probe]).fit(module, loader())
    assert probe.generator and all(v > 0 for v in probe.generator.values()), probe.generator
    assert probe.classifier and all(g is None for g in probe.classifier.values())
    optimizer = module.configure_optimizers()["optimizer"]
    optimized = {id(p) for group in optimizer.param_groups for p in group["params"]}
    assert optimized == {id(p) for p in module.generator.parameters()}


@pytest.mark.parametrize("guided", [False, True])
def test_classifier_is_bit_identical_after_fit(tmp_path, tiny_classifier, guided) -> None:
    before = copy.deepcopy(tiny_classifier.state_dict())
    assert any("running_mean" in k for k in before)  # BatchNorm statistics are part of the check
    module = make_module(tiny_classifier, guided=guided)
    make_trainer(tmp_path, max_epochs=2).fit(module, loader(), loader(4))
    after = module.classifier.model.state_dict()
    assert before.keys() == after.keys()
    for key in before:
        assert torch.equal(before[key], after[key]), key
    assert not module.classifier.training


class RecordLoss(pl.Callback):
    def __init__(self) -> None:
        self.losses: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.losses.append(float(outputs["loss"]))


def test_loss_falls_when_overfitting_one_batch(tmp_path, tiny_classifier) -> None:
    record = RecordLoss()
    module = make_module(
        tiny_classifier, eps=8 / 255, lr=2e-2, robust=False, scheduler="none",
        loss=TopKMargin(1, 5.0), label_source="predicted",
    )
    make_trainer(tmp_path, max_epochs=15, callbacks=[record]).fit(module, loader(n=4, batch_size=4))
    losses = record.losses
    start, end = sum(losses[:3]) / 3, sum(losses[-3:]) / 3
    assert start > 0  # predicted labels: every image starts correctly classified
    assert end < 0.9 * start, losses


@pytest.mark.parametrize("loss", ["ce", "relativistic"])
def test_cross_entropy_losses_rise_when_overfitting_one_batch(tmp_path, tiny_classifier, loss) -> None:
    record = RecordLoss()
    module = make_module(tiny_classifier, eps=8 / 255, lr=2e-2, robust=False, scheduler="none", loss=loss,
                         label_source="predicted")
    make_trainer(tmp_path, max_epochs=15, callbacks=[record]).fit(module, loader(n=4, batch_size=4))
    losses = record.losses
    # Minus the cross-entropy of the clean label: it falls as that label loses probability.
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3 - 0.002, losses
    assert losses[-1] < losses[0]


def test_overfitting_real_photos_fools_the_standin(tmp_path, shared) -> None:
    # The real check: a few real photos, the real (stand-in) Places365 classifier, and the
    # full training path (differentiable JPEG included).
    from protector.images import read_photo, to_tensor

    classifier = shared.standin_classifier()
    files = sorted(shared.path("standin/images").glob("miniplaces_*.jpg"))[:4]
    images = torch.stack([to_tensor(read_photo(f).pixels)[:, 96:160, 96:160] for f in files])
    dataset = [{"image": image, "label": -1, "name": f.name} for image, f in zip(images, files)]
    record = RecordLoss()
    module = make_module(classifier, eps=4 / 255, lr=5e-3, loss=TopKMargin(1, 3.0), label_source="predicted",
                         robustifier=Robustifier(jpeg_quality=(90, 95)), scheduler="none")
    batches = DataLoader(dataset, batch_size=4)
    make_trainer(tmp_path, max_epochs=25, callbacks=[record]).fit(module, batches)
    losses = record.losses
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3 - 1.0, losses
    metrics = make_trainer(tmp_path).validate(module, batches, verbose=False)[0]
    assert metrics["val/top1_fooled_8bit"] >= 0.75


def test_validation_measures_the_saved_file(tmp_path, tiny_classifier) -> None:
    module = make_module(tiny_classifier, eps=2 / 255, label_source="predicted")
    nn.init.zeros_(module.generator.head.weight)
    nn.init.zeros_(module.generator.head.bias)  # tanh(0) = 0: the "protected" photo is the clean one
    metrics = make_trainer(tmp_path).validate(module, loader(8), verbose=False)[0]
    expected_keys = {
        "val/top1_fooled", "val/top5_fooled", "val/top1_fooled_8bit", "val/psnr", "val/ssim", "val/linf_max",
    }
    assert expected_keys <= metrics.keys()
    assert metrics["val/linf_max"] == 0.0
    assert metrics["val/top1_fooled_8bit"] == 0.0  # an 8-bit clean photo rounds to itself
    # what the JPEG file does is exactly what re-encoding the clean photo does
    assert metrics["val/top1_fooled"] == pytest.approx(metrics["val/jpeg_only_fooled"])
    assert 25 < metrics["val/psnr"] < 60 and 0.5 < metrics["val/ssim"] <= 1.0


def test_validation_budget_holds_under_bf16(tmp_path, tiny_classifier) -> None:
    module = make_module(tiny_classifier, eps=2 / 255)
    nn.init.constant_(module.generator.head.bias, 10.0)  # saturate: every pixel at the budget's edge
    trainer = make_trainer(tmp_path, precision="bf16-mixed")
    metrics = trainer.validate(module, loader(8), verbose=False)[0]
    assert metrics["val/linf_max"] <= 2.0 + 1e-4
    assert metrics["val/linf_max"] >= 1.0


def test_fooled_counts_against_the_label_used(tmp_path, tiny_classifier) -> None:
    with torch.no_grad():
        predicted = tiny_classifier(PhotoBatchDataset(8).images).argmax(1)
    # Truth labels that are never the prediction: every image counts as fooled, clean too.
    dataset = PhotoBatchDataset(8)
    dataset.labels = (predicted + 1) % 365
    module = make_module(tiny_classifier, eps=1 / 255, label_source="truth")
    metrics = make_trainer(tmp_path).validate(module, DataLoader(dataset, batch_size=4), verbose=False)[0]
    assert metrics["val/clean_top1_acc"] == 0.0
    assert metrics["val/top1_fooled"] == 1.0


def test_label_sources(tiny_classifier) -> None:
    x = PhotoBatchDataset(4).images
    label = torch.tensor([5, -1, 7, -1])
    predicted = tiny_classifier(x).argmax(1)
    auto = make_module(tiny_classifier, label_source="auto")._labels(x, label)
    assert auto.tolist() == [5, int(predicted[1]), 7, int(predicted[3])]
    assert torch.equal(make_module(tiny_classifier, label_source="predicted")._labels(x, label), predicted)
    with pytest.raises(ValueError, match="label_source='truth'"):
        make_module(tiny_classifier, label_source="truth")._labels(x, label)


def test_nan_loss_stops_with_clear_message_and_writes_no_checkpoint(tmp_path, tiny_classifier) -> None:
    class Broken(nn.Module):
        def __init__(self, model: nn.Module) -> None:
            super().__init__()
            self.model = model

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.model(x) * float("nan")

    module = make_module(Broken(tiny_classifier), label_source="truth")
    checkpoints = tmp_path / "checkpoints"
    callbacks = [ModelCheckpoint(dirpath=checkpoints, save_last=True, every_n_train_steps=1), ExportProtector()]
    trainer = make_trainer(tmp_path, enable_checkpointing=True, callbacks=callbacks, max_epochs=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the zero-gradient self-check also notices the NaNs
        with pytest.raises(NonFiniteLossError, match=r"training loss is nan .*global step 0"):
            trainer.fit(module, loader(unknown=False), loader(4, unknown=False))
    assert not checkpoints.exists() or not any(checkpoints.iterdir())
    assert not (tmp_path / "protector.pt").exists()


def test_warns_when_classifier_input_gradient_is_zero(tmp_path, tiny_classifier) -> None:
    class Rounding(nn.Module):
        """Non-differentiable preprocessing (8-bit rounding without straight-through)."""

        def __init__(self, model: nn.Module) -> None:
            super().__init__()
            self.model = model

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.model(torch.round(x * 255) / 255)

    module = make_module(Rounding(tiny_classifier), robust=False)
    with pytest.warns(UserWarning, match="input gradient is all zero"):
        make_trainer(tmp_path, max_steps=1).fit(module, loader())


def test_classifier_without_gradient_graph_is_refused(tmp_path, tiny_classifier) -> None:
    class Detached(nn.Module):
        def __init__(self, model: nn.Module) -> None:
            super().__init__()
            self.model = model

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.model(x.detach())

    module = make_module(Detached(tiny_classifier))
    with pytest.raises(ValueError, match="no gradient with respect to its input"):
        make_trainer(tmp_path, max_steps=1).fit(module, loader())


def test_train_crop_trains_on_windows_and_validates_whole_images(tmp_path, tiny_classifier) -> None:
    seen: list[tuple[bool, tuple[int, int]]] = []
    module = make_module(tiny_classifier, train_crop=16)
    module.generator.register_forward_hook(lambda mod, args, out: seen.append((mod.training, tuple(out.shape[-2:]))))
    make_trainer(tmp_path, max_epochs=1).fit(module, loader(n=4, size=40), loader(n=4, size=40))
    assert {size for training, size in seen if training} == {(16, 16)}
    assert {size for training, size in seen if not training} == {(40, 40)}


def test_sensitive_categories_weight_the_loss(tmp_path, tiny_classifier) -> None:
    senscats = tmp_path / "senscats.txt"
    senscats.write_text("\ufeff/b/bedroom 52 \n/b/bathroom 45\r\n", encoding="utf-8")
    module = make_module(tiny_classifier, sensitive_categories=str(senscats), sensitive_weight=4.0,
                         loss=TopKMargin(1, 100.0))
    logits = torch.zeros(2, 365)
    logits[0, 52] = 3.0  # sensitive sample, margin 3
    logits[1, 10] = 1.0  # ordinary sample, margin 1
    y = torch.tensor([52, 10])
    expected = (4 * 3.0 + 1 * 1.0) / 5
    assert module.attack_loss(logits, y).item() == pytest.approx(expected)


def test_sensitive_categories_from_the_real_list(shared, tiny_classifier) -> None:
    path = shared.path("data/mepp/MEPP18senscats.txt")
    module = make_module(tiny_classifier, sensitive_categories=str(path), sensitive_weight=2.0)
    assert len(module.sensitive_ids) == 60
    weights = module._class_weights_for(365, torch.device("cpu"))
    assert int((weights == 2.0).sum()) == 60 and int((weights == 1.0).sum()) == 305


def test_sensitive_safe_keeps_the_sensitive_categories_out(tmp_path, tiny_classifier) -> None:
    senscats = tmp_path / "senscats.txt"
    senscats.write_text("/b/bedroom 52\n/b/bathroom 45\n", encoding="utf-8")
    alias = make_module(tiny_classifier, loss="sensitive_safe", sensitive_categories=str(senscats)).objective
    assert isinstance(alias, SensitiveSafe) and alias.sensitive == (45, 52) and (alias.k, alias.kappa) == (5, 1.0)
    module = make_module(tiny_classifier, loss=SensitiveSafe(str(senscats), k=1, kappa=100.0),
                         sensitive_categories=str(senscats))
    assert module.objective.sensitive == (45, 52) and module.objective.k == 1
    logits = torch.zeros(1, 365)
    logits[0, 52], logits[0, 45], logits[0, 7] = 3.0, 2.0, 1.0  # bedroom, then bathroom, then class 7
    expected = math.log(math.exp(3.0) + math.exp(2.0)) - 1.0  # both sensitive classes against class 7
    assert module.attack_loss(logits, torch.tensor([52])).item() == pytest.approx(expected)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"eps": 0.0}, "eps"),
        ({"eps": 1.5}, "eps"),
        ({"loss": "hinge"}, "loss"),
        ({"loss": "cw"}, "loss"),
        ({"label_source": "oracle"}, "label_source"),
        ({"eval_jpeg_quality": 0}, "eval_jpeg_quality"),
        ({"lr": 0.0}, "lr"),
        ({"sensitive_weight": 0.0}, "sensitive_weight"),
        ({"train_crop": 8}, "train_crop"),
        ({"loss": "sensitive_safe"}, "sensitive categories"),
    ],
)
def test_bad_arguments_raise_where_they_enter(tiny_classifier, kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make_module(tiny_classifier, **kwargs)


@pytest.mark.parametrize(
    ("name", "expected"),
    [("margin", TopKMargin(1, 1.0)), ("topk", TopKMargin(5, 1.0)), ("ce", UntargetedCE()),
     ("relativistic", UntargetedCE(relativistic=True))],
)
def test_a_short_loss_name_is_an_alias_of_one_object(tiny_classifier, name: str, expected: nn.Module) -> None:
    # The loss's settings live in the loss: a short name stands for the object with the defaults
    # that were ProtectorModule's own (top_k 5, kappa 1.0).
    assert SHORT_NAME_MARGINS == (5, 1.0)
    objective = make_module(tiny_classifier, loss=name).objective
    assert type(objective) is type(expected) and repr(objective) == repr(expected)


def test_robustness_settings_are_one_robustifier_object(tiny_classifier) -> None:
    default = make_module(tiny_classifier).robustifier
    assert repr(default) == repr(Robustifier())  # jpeg_quality (70, 95), jpeg_prob 0.8, as before
    given = Robustifier(jpeg_quality=(90, 95), jpeg_prob=0.5, resize_prob=0.2)
    assert make_module(tiny_classifier, robustifier=given).robustifier is given
    assert make_module(tiny_classifier, robust=False, robustifier=given).robustifier is None
    assert "robustifier" not in make_module(tiny_classifier, robustifier=given).hparams  # its class_path is config


def test_missing_senscats_file_is_named(tiny_classifier, tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="nope.txt"):
        make_module(tiny_classifier, sensitive_categories=str(tmp_path / "nope.txt"))


def test_checkpoint_holds_generator_only_and_reloads(tmp_path, tiny_classifier) -> None:
    module = make_module(tiny_classifier)
    checkpoints = tmp_path / "checkpoints"
    callbacks = [ModelCheckpoint(dirpath=checkpoints, monitor="val/top1_fooled", mode="max", save_last=True)]
    trainer = make_trainer(tmp_path, enable_checkpointing=True, callbacks=callbacks)
    trainer.fit(module, loader(), loader(4))
    checkpoint = torch.load(checkpoints / "last.ckpt", weights_only=True)
    assert checkpoint["state_dict"] and not any(k.startswith("classifier.") for k in checkpoint["state_dict"])
    reloaded = ProtectorModule.load_from_checkpoint(
        checkpoints / "last.ckpt", generator=UNetGenerator(base_channels=8, depth=2), classifier=tiny_classifier
    )
    for key, value in module.generator.state_dict().items():
        assert torch.equal(value, reloaded.generator.state_dict()[key]), key


def test_export_callback_writes_the_best_generator(tmp_path, tiny_classifier) -> None:
    module = make_module(tiny_classifier)
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "checkpoints", monitor="val/top1_fooled", mode="max")
    export = ExportProtector()
    trainer = make_trainer(tmp_path, enable_checkpointing=True, callbacks=[checkpoint, export], max_epochs=2)
    trainer.fit(module, loader(), loader(4))
    assert export.last_path == tmp_path / "protector.pt"
    protector = load_protector(export.last_path)
    best = torch.load(checkpoint.best_model_path, weights_only=True)["state_dict"]
    for key, value in protector.generator.state_dict().items():
        assert torch.equal(value, best[f"generator.{key}"]), key
    assert protector.eps == pytest.approx(module.eps)
    assert protector.meta["monitor"] == "val/top1_fooled"
    assert protector.meta["score"] == pytest.approx(float(checkpoint.best_model_score))


def test_example_grid_goes_to_wandb(tmp_path, tiny_classifier, monkeypatch) -> None:
    monkeypatch.setenv("WANDB_MODE", "disabled")
    monkeypatch.setenv("WANDB_SILENT", "true")

    class RecordingWandb(WandbLogger):
        images: list = []

        def log_image(self, key, images, step=None, **kwargs) -> None:
            self.images.append((key, images, kwargs))

    logger = RecordingWandb(save_dir=str(tmp_path), project="protector-test")
    module = make_module(tiny_classifier, grid_images=3)
    make_trainer(tmp_path, logger=logger, max_epochs=2).fit(module, loader(), loader(8))
    assert len(logger.images) == 2  # one per validation epoch, first batch only
    key, images, kwargs = logger.images[0]
    assert key == "val/examples" and len(images) == 1
    grid = images[0]
    assert grid.dtype == np.uint8 and grid.shape[2] == 3
    assert grid.shape[0] > 3 * 32 and grid.shape[1] > 3 * 32  # 3 rows (clean, protected, delta) x 3 images
    assert grid.mean() > 20  # photos, not a black canvas
    assert "clean" in kwargs["caption"][0]


def test_jpeg_round_trip_matches_pil() -> None:
    x = PhotoBatchDataset(2).images
    out = jpeg_round_trip(x, 90)
    assert out.shape == x.shape and out.dtype == torch.float32
    diff = (out - x).abs().mean().item() * 255
    assert 0 < diff < 10 and math.isfinite(diff)


class RecordingLoss(nn.Module):
    """The cross-entropy objective, recording the labels and clean logits each step used."""

    def __init__(self) -> None:
        super().__init__()
        from protector.losses import UntargetedCE

        self.inner = UntargetedCE()
        self.needs_clean_logits = False
        self.seen: list[tuple[torch.Tensor, torch.Tensor | None]] = []

    def forward(self, logits, y, clean_logits=None, class_weights=None):
        self.seen.append((y.clone(), None if clean_logits is None else clean_logits.clone()))
        return self.inner(logits, y, clean_logits, class_weights)


def test_training_through_a_view_labels_the_clean_photo_under_that_view(tmp_path, tiny_classifier) -> None:
    from protector.robust import Robustifier
    from protector.views import View, ViewSampler

    # Every draw resizes the 32 px photos to 16 px: the label a step pushes away from is the
    # clean prediction there, not on the photo as it is.
    module = make_module(tiny_classifier, label_source="predicted",
                         robustifier=Robustifier(views=ViewSampler(as_is_prob=0.0, shorter_sides=(16, 16),
                                                                   crop_prob=0.0, upload_prob=0.0)))
    recorder = RecordingLoss()
    module.objective = recorder
    make_trainer(tmp_path, max_steps=1).fit(module, loader(4, batch_size=4))
    x = PhotoBatchDataset(4).images
    with torch.no_grad():
        under_view = tiny_classifier(View("small", shorter_side=16)(x))
        as_is = tiny_classifier(x)
    (y, clean_logits), = recorder.seen
    assert torch.allclose(clean_logits, under_view, atol=1e-5)
    assert not torch.allclose(clean_logits, as_is, atol=1e-3)
    assert torch.equal(y, under_view.argmax(1))
