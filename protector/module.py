"""`ProtectorModule`: trains the generator against a frozen classifier, measures what a file holds."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, Literal, Union

import torch
from pytorch_lightning import LightningModule
from pytorch_lightning.loggers import WandbLogger
from pytorch_lightning.utilities import rank_zero_info, rank_zero_warn
from torch import nn
from torchmetrics import MaxMetric, MeanMetric
from torchmetrics.image import PeakSignalNoiseRatio, StructuralSimilarityIndexMeasure

from protector.appeal_loss import NimaAppeal
from protector.generator import BoundedProtector
from protector.images import encode_photo, read_photo, to_tensor, to_uint8
from protector.losses import (
    AttackLoss,
    FidelityTerm,
    LossName,
    attack_loss_by_name,
    fidelity_by_name,
    topk_margin,
)
from protector.robust import Robustifier
from protector.settings import check_quality

# (k, kappa) of the losses the short names stand for (``loss: topk`` is TopKMargin(5, 1.0)).
SHORT_NAME_MARGINS = (5, 1.0)


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite; training stops before anything is saved."""


class ProtectorModule(LightningModule):
    r"""Train a perturbation generator so a frozen classifier misclassifies the saved photo.

    Threat model: white-box, untargeted, L-inf. ``x_adv = clamp(x + eps * tanh(G(x)), 0, 1)``
    (``clamp(G(x), -1, 1)`` in place of ``tanh`` for a generator with ``bound="clamp"``),
    or ``G(x, g)`` for a guided generator, ``g`` the classifier's normalized input gradient
    (:mod:`protector.guidance`);
    training minimizes a margin or cross-entropy loss on ``classifier(robustifier(x_adv))`` (random
    differentiable JPEG, 8-bit rounding); validation measures the photo as a file would hold
    it: 8-bit rounded, and encoded/decoded as a real JPEG (PIL) at ``eval_jpeg_quality``.
    Only the generator is trained; the classifier is wrapped in ``FrozenClassifier``.

    Args:
        generator: network returning a raw map the shape of its input (``UNetGenerator``).
        classifier: RGB [0, 1] in, logits out; frozen here.
        eps: L-inf budget, fraction of the [0, 1] range (2/255 = two 8-bit levels).
        loss: an :class:`~protector.losses.AttackLoss` by ``class_path``, its settings (k,
            kappa) in its ``init_args``; a short name is an alias (:data:`SHORT_NAME_MARGINS`):
            ``"margin"`` (``TopKMargin(1, 1.0)``, the label out of the top-1), ``"topk"``
            (``TopKMargin(5, 1.0)``), ``"ce"`` (``UntargetedCE()``), ``"relativistic"`` (CDA's
            relativistic cross-entropy against the clean photo's logits; one more classifier
            forward a step) or ``"sensitive_safe"`` (``SensitiveSafe(sensitive_categories, 5,
            1.0)``: every sensitive class out of the top 5 too).
        label_source: label to push away: ``"truth"`` (the dataset label; all must be known),
            ``"predicted"`` (the classifier's prediction on the clean photo) or ``"auto"``
            (the dataset label where known, the clean prediction where it is -1).
        sensitive_categories: path to ``MEPP18senscats.txt``; its classes get ``sensitive_weight``
            (and ``loss="sensitive_safe"`` keeps them out of the top-k).
        sensitive_weight: loss weight of samples whose label is sensitive (others weigh 1).
        robust: train through ``robustifier`` (differentiable JPEG, 8-bit rounding, resize, views).
        robustifier: a :class:`~protector.robust.Robustifier` by ``class_path``, its settings
            (``jpeg_quality``, ``jpeg_prob``, ``resize_prob``, ``views``: the views a classifier
            sees a shared photo through) in its ``init_args``; None: ``Robustifier()``.
        eval_jpeg_quality: quality of the real JPEG written in validation (1..100).
        lr: AdamW learning rate.
        weight_decay: AdamW weight decay.
        scheduler: ``"cosine"`` (per step, over the whole fit), ``"onecycle"`` or ``"none"``.
        fidelity_weight: weight of the image-fidelity penalty (0 turns it off).
        fidelity: a :class:`~protector.losses.FidelityTerm`, or ``"l2"`` (mean squared delta
            in units of eps^2) or ``"ssim"`` (1 - SSIM), measured from the protector's reference.
        grid_images: images in the example grid logged to Weights & Biases each validation.
        train_crop: train on a random ``train_crop`` x ``train_crop`` window of each batch
            (None: whole images). Several times cheaper per step on a CPU; the generator is
            fully convolutional, so it still protects whole photos. Validation is never cropped.
        enhancer: an appeal stage trained with the generator
            (:class:`~protector.enhance.ToneCurveEnhancer`): the perturbation is added around
            the enhanced photo. It sees whole photos (a global edit), the attack the window.
        appeal: the enhancer's objective (:class:`~protector.appeal_loss.NimaAppeal`), on the
            whole enhanced photo; validation then also logs ``val/nima_change`` (saved file
            against the clean photo saved the same way).
        enhancer_lr: AdamW learning rate of the enhancer (None: ``lr``). Its head starts at
            zero (the identity edit). Adam moves each weight by about the rate per step,
            however weak NIMA's gradient: 0.03 threw the stand-in's edits between 34 and 16 dB
            PSNR within a few steps; 0.003 moves them smoothly (BENCHMARKS.md, appeal round 3).

    Example::
        >>> module = ProtectorModule(UNetGenerator(), Places365Classifier("resnet50", ckpt), eps=2 / 255)  # doctest: +SKIP
        >>> Trainer(max_epochs=10).fit(module, datamodule=dm)  # doctest: +SKIP
    """

    def __init__(
        self,
        generator: nn.Module,
        classifier: nn.Module,
        eps: float = 2 / 255,
        loss: Union[LossName, AttackLoss] = "topk",
        label_source: Literal["truth", "predicted", "auto"] = "auto",
        sensitive_categories: str | None = None,
        sensitive_weight: float = 1.0,
        robust: bool = True,
        robustifier: Robustifier | None = None,
        eval_jpeg_quality: int = 90,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        scheduler: Literal["cosine", "onecycle", "none"] = "cosine",
        fidelity_weight: float = 0.0,
        fidelity: Union[Literal["l2", "ssim"], FidelityTerm] = "l2",
        grid_images: int = 8,
        train_crop: int | None = None,
        enhancer: nn.Module | None = None,
        appeal: NimaAppeal | None = None,
        enhancer_lr: float | None = None,
    ) -> None:
        super().__init__()
        # Networks are not hyperparameters (LightningCLI stores their config on its own).
        # Loss and robustifier objects neither: their class_path is in the CLI's config.
        objects = [name for name, value in (("loss", loss), ("fidelity", fidelity), ("robustifier", robustifier))
                   if isinstance(value, nn.Module)]
        self.save_hyperparameters(ignore=["generator", "classifier", "enhancer", "appeal", *objects])
        from protector.classifiers import FrozenClassifier  # the classifiers module is heavy

        _check_choice("label_source", label_source, ("truth", "predicted", "auto"))
        _check_choice("scheduler", scheduler, ("cosine", "onecycle", "none"))
        if sensitive_weight <= 0:
            raise ValueError(f"sensitive_weight must be > 0, got {sensitive_weight}")
        check_quality(eval_jpeg_quality, "eval_jpeg_quality")
        if enhancer_lr is not None and enhancer_lr <= 0:
            raise ValueError(f"enhancer_lr must be > 0 or None, got {enhancer_lr}")
        if lr <= 0 or weight_decay < 0:
            raise ValueError(f"need lr > 0 and weight_decay >= 0, got lr={lr}, weight_decay={weight_decay}")
        if fidelity_weight < 0:
            raise ValueError(f"fidelity_weight must be >= 0, got {fidelity_weight}")
        if grid_images < 0:
            raise ValueError(f"grid_images must be >= 0, got {grid_images}")
        if train_crop is not None and train_crop < 16:
            raise ValueError(f"train_crop must be >= 16 pixels or None, got {train_crop}")
        if (enhancer is None) != (appeal is None):
            raise ValueError("an enhancer is trained by an appeal objective: give both enhancer and appeal, or neither")

        self.generator = generator
        self.classifier = FrozenClassifier(classifier)
        self.enhancer = enhancer
        self.appeal = appeal
        # "Protect a photo" (budget, reference photo, guide) has one owner. Kept out of the
        # module tree so checkpoint keys stay `generator.*`; it shares the modules above.
        self.__dict__["protector"] = BoundedProtector(generator, eps, self.classifier, enhancer)
        self.robustifier = (robustifier if robustifier is not None else Robustifier()) if robust else None
        self.objective = (loss if isinstance(loss, AttackLoss)
                          else attack_loss_by_name(loss, *SHORT_NAME_MARGINS, sensitive_categories))
        self.fidelity_term = fidelity if isinstance(fidelity, FidelityTerm) else fidelity_by_name(fidelity)
        self.label_source = label_source
        self.sensitive_ids = _read_sensitive_ids(sensitive_categories)
        self.sensitive_weight = float(sensitive_weight)
        self.eval_jpeg_quality = int(eval_jpeg_quality)

        self.val_metrics = nn.ModuleDict(
            {
                "top1_fooled": MeanMetric(),
                "top5_fooled": MeanMetric(),
                "top1_fooled_8bit": MeanMetric(),
                "jpeg_only_fooled": MeanMetric(),  # the clean photo re-encoded, no perturbation
                "clean_top1_acc": MeanMetric(),
                "psnr": PeakSignalNoiseRatio(data_range=1.0, dim=(1, 2, 3)),  # mean of per-image PSNR
                "ssim": StructuralSimilarityIndexMeasure(data_range=1.0),
                "linf_max": MaxMetric(),  # in 8-bit levels
                **({"nima_change": MeanMetric()} if appeal is not None else {}),
            }
        )
        self.train_fooled = MeanMetric()
        self._epoch_fooled = torch.zeros(2)  # (fooled, seen) on this rank, for the epoch summary line
        self._epoch_started = time.monotonic()
        self._class_weights: torch.Tensor | None = None
        self._clean_predictions: dict[str, int] = {}  # photo name -> clean top-1, see _train_labels
        self._gradient_checked = False
        # Checkpoints hold the trained networks only; on_load_checkpoint puts the frozen ones back.
        self._frozen = {"classifier.": self.classifier}
        if appeal is not None:
            self._frozen["appeal."] = appeal

    # ------------------------------------------------------------------ labels and loss

    @torch.no_grad()
    def _labels(self, x: torch.Tensor, label: torch.Tensor, clean_logits: torch.Tensor | None = None) -> torch.Tensor:
        """The class each image must be pushed away from, per ``label_source``."""
        if self.label_source == "truth":
            if bool((label < 0).any()):
                raise ValueError(
                    f"label_source='truth' but {int((label < 0).sum())} images in this batch have no label (-1); "
                    "use label_source='auto' or 'predicted', or give a labels file that covers every image"
                )
            return label
        if clean_logits is None:
            clean_logits = self.classifier(x)
        predicted = clean_logits.argmax(dim=1)
        if self.label_source == "predicted":
            return predicted
        return torch.where(label >= 0, label, predicted)

    @torch.no_grad()
    def _train_labels(self, batch: dict[str, Any]) -> torch.Tensor:
        """Training labels, the clean prediction on the whole photo cached by name.

        The clean prediction does not depend on the generator, so each photo costs one
        classifier forward in the first epoch and none after (a sixth of a CPU step). It is
        taken on the whole photo, before the training window, because the whole photo is
        what the attack model will classify.
        """
        label = batch["label"]
        if self.label_source == "truth":
            return self._labels(batch["image"], label)
        names = batch["name"]
        missing = [i for i, name in enumerate(names) if name not in self._clean_predictions]
        if missing:
            predicted = self.classifier(batch["image"][missing]).argmax(dim=1).tolist()
            self._clean_predictions.update((names[i], p) for i, p in zip(missing, predicted))
        cached = torch.tensor([self._clean_predictions[name] for name in names], device=label.device)
        return cached if self.label_source == "predicted" else torch.where(label >= 0, label, cached)

    def _class_weights_for(self, num_classes: int, device: torch.device) -> torch.Tensor | None:
        if not self.sensitive_ids or self.sensitive_weight == 1.0:
            return None
        if self._class_weights is None or self._class_weights.shape[0] != num_classes:
            out_of_range = [i for i in self.sensitive_ids if i >= num_classes]
            if out_of_range:
                raise ValueError(
                    f"{self.hparams.sensitive_categories}: class indices {out_of_range[:5]} do not exist in a "
                    f"classifier with {num_classes} outputs"
                )
            weights = torch.ones(num_classes)
            weights[list(self.sensitive_ids)] = self.sensitive_weight
            self._class_weights = weights
        return self._class_weights.to(device)

    def attack_loss(
        self, logits: torch.Tensor, y: torch.Tensor, clean_logits: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The configured objective with the sensitive-class weights."""
        weights = self._class_weights_for(logits.shape[1], logits.device)
        return self.objective(logits, y, clean_logits, class_weights=weights)

    @property
    def eps(self) -> float:
        return self.protector.eps

    # ------------------------------------------------------------------ training

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Protect a batch: ``x_adv`` in [0, 1], float32, within ``eps`` of the protector's reference."""
        return self.protector(x)

    def _random_window(self, x: torch.Tensor) -> torch.Tensor:
        size = self.hparams.train_crop
        height, width = x.shape[-2:]
        if size is None or (height <= size and width <= size):
            return x
        top = int(torch.randint(0, max(height - size, 0) + 1, ()))
        left = int(torch.randint(0, max(width - size, 0) + 1, ()))
        return x[..., top : top + size, left : left + size]

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        y = self._train_labels(batch)
        photo = batch["image"]
        reference = self.protector.reference(photo)  # the enhanced photo, or the photo itself
        appeal_loss = None
        if self.appeal is not None:
            appeal_loss, nima = self.appeal(reference, photo)
            self.log("train/nima", nima.mean(), on_step=True, on_epoch=True, batch_size=len(nima))
        # The edit learns from the appeal objective only: the attack works around whatever
        # photo the user publishes (its gradient would otherwise bend the edit to fool).
        x = self._random_window(reference.detach())
        if not self._gradient_checked:
            self._gradient_checked = True
            self._warn_if_no_input_gradient(x, y)
        # An appeal protector's guide moves away from the unedited photo's scene (see
        # BoundedProtector.scene_label): y, its clean prediction.
        x_adv = self.protector.perturb(x, y if self.enhancer is not None else None)
        view = self.robustifier.draw_view() if self.robustifier is not None else None
        x_seen = self.robustifier(x_adv, view) if self.robustifier is not None else x_adv
        logits = self.classifier(x_seen)  # (B, C)
        clean_logits = None
        if view is not None and not view.is_identity:
            # Fooled under a view means changed against the clean photo under the same view
            # (what `evaluate --views` counts): label and clean logits are taken there.
            with torch.no_grad():
                clean_logits = self.classifier(view(x))
            y = self._labels(x, batch["label"], clean_logits)
        elif self.objective.needs_clean_logits:
            with torch.no_grad():
                clean_logits = self.classifier(x)
        loss = self.attack_loss(logits, y, clean_logits)
        if self.hparams.fidelity_weight > 0:
            loss = loss + self.hparams.fidelity_weight * self.fidelity_term(x_adv, x, self.eps)
        if appeal_loss is not None:
            loss = loss + appeal_loss
        self._stop_if_not_finite(loss)
        with torch.no_grad():
            fooled = (logits.argmax(dim=1) != y).float()
            self.train_fooled.update(fooled)
            self._epoch_fooled += torch.stack([fooled.sum(), fooled.new_tensor(float(len(fooled)))])
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=x.shape[0], sync_dist=True)
        self.log("train/top1_fooled", self.train_fooled, on_step=False, on_epoch=True)
        return loss

    def _stop_if_not_finite(self, loss: torch.Tensor) -> None:
        bad = not bool(torch.isfinite(loss.detach()))
        # Every rank must stop together, or the others would wait forever in the next all-reduce.
        if self.trainer.world_size > 1:
            bad = self.trainer.strategy.reduce_boolean_decision(bad, all=False)
        if bad:
            raise NonFiniteLossError(
                f"training loss is {loss.item()} at epoch {self.current_epoch}, global step {self.global_step}; "
                "stopped before the optimizer step, so no checkpoint holds broken weights. "
                "Try a lower model.lr, precision=32-true, or check the inputs for NaN."
            )

    def _warn_if_no_input_gradient(self, x: torch.Tensor, y: torch.Tensor) -> None:
        # As auto-attack does: a classifier that hides its input gradient (no_grad inside,
        # non-differentiable preprocessing) cannot be attacked by gradient and would only
        # look robust. Checked once, on a few clean images.
        with torch.enable_grad():
            probe = x[:4].detach().float().clone().requires_grad_(True)
            margins = topk_margin(self.classifier(probe), y[:4], k=1)
            if not margins.requires_grad:
                raise ValueError(
                    "the classifier's output has no gradient with respect to its input (a torch.no_grad or "
                    "detach inside it?): the generator cannot be trained against it"
                )
            (grad,) = torch.autograd.grad(margins.sum(), probe)
        if not bool(grad.abs().gt(0).any()):
            rank_zero_warn(
                "the classifier's input gradient is all zero: the generator gets no signal and cannot learn "
                "(a torch.no_grad, detach or non-differentiable preprocessing inside the classifier?)"
            )

    # ------------------------------------------------------------------ validation

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        x = batch["image"].float()
        clean_logits = self.classifier(x)
        y = self._labels(x, batch["label"], clean_logits)
        x_adv = self(x)
        x_8bit = torch.round(x_adv * 255) / 255
        x_file = jpeg_round_trip(x_adv, self.eval_jpeg_quality)
        clean_file = jpeg_round_trip(x, self.eval_jpeg_quality)

        logits_8bit = self.classifier(x_8bit)
        logits_file = self.classifier(x_file)
        logits_clean_file = self.classifier(clean_file)
        top5 = logits_file.topk(min(5, logits_file.shape[1]), dim=1).indices

        m = self.val_metrics
        m["top1_fooled"].update((logits_file.argmax(1) != y).float())
        m["top5_fooled"].update((top5 != y[:, None]).all(dim=1).float())
        m["top1_fooled_8bit"].update((logits_8bit.argmax(1) != y).float())
        m["jpeg_only_fooled"].update((logits_clean_file.argmax(1) != y).float())
        m["clean_top1_acc"].update((clean_logits.argmax(1) == y).float())
        m["psnr"].update(x_file, x)
        m["ssim"].update(x_file, x)
        m["linf_max"].update((x_8bit - self.protector.reference(x)).abs().amax() * 255)
        if self.appeal is not None:
            m["nima_change"].update(self.appeal.scores(x_file) - self.appeal.scores(clean_file))
        for name, metric in m.items():
            self.log(f"val/{name}", metric, on_step=False, on_epoch=True, prog_bar=name == "top1_fooled")

        if batch_idx == 0:
            self._log_grid(x, x_file, x_8bit)

    # Plain summary lines, readable in a log file without a logger. No collective calls here:
    # only rank zero runs the progress bar, whose own metric syncs at epoch end must pair with
    # those of the other ranks in Lightning's order; an extra all-gather here would deadlock DDP.
    def on_train_epoch_start(self) -> None:
        self._epoch_started = time.monotonic()
        self._epoch_fooled = torch.zeros(2, device=self.device)  # (fooled, seen) on this rank

    def on_train_epoch_end(self) -> None:
        fooled, seen = (float(v) for v in self._epoch_fooled)
        if seen == 0:
            return
        seconds = time.monotonic() - self._epoch_started
        shard = ", rank 0's share" if self.trainer.world_size > 1 else ""
        rank_zero_info(
            f"epoch {self.current_epoch} step {self.global_step} train: top1_fooled {fooled / seen:.4f} "
            f"(robustified, {self.hparams.train_crop or 'whole'} px{shard})  {seconds:.0f} s"
        )

    def on_validation_end(self) -> None:
        # After Lightning's epoch-end reduction: callback_metrics hold the values of all ranks.
        if self.trainer.sanity_checking:
            return
        metrics = self.trainer.callback_metrics
        values = {name: float(metrics[f"val/{name}"]) for name in self.val_metrics if f"val/{name}" in metrics}
        if values:
            summary = "  ".join(f"{name} {value:.4f}" for name, value in values.items())
            rank_zero_info(f"epoch {self.current_epoch} step {self.global_step} val: {summary}")

    def _log_grid(self, x: torch.Tensor, x_file: torch.Tensor, x_8bit: torch.Tensor) -> None:
        n = min(self.hparams.grid_images, x.shape[0])
        if n == 0 or self.trainer.sanity_checking or not self.trainer.is_global_zero:
            return
        loggers = [lg for lg in self.loggers if isinstance(lg, WandbLogger)]
        if not loggers:
            return
        from torchvision.utils import make_grid

        delta = ((x_8bit[:n] - self.protector.reference(x[:n])).abs() / self.eps).clamp(0, 1)  # white: all of it
        grid = make_grid(torch.cat([x[:n], x_file[:n], delta]).float().cpu(), nrow=n, padding=2)
        grid = to_uint8(grid)  # (H, W, 3) uint8: some wandb versions cast floats in [0, 1] to black
        caption = f"clean | protected (JPEG q{self.eval_jpeg_quality}) | |delta| / eps"
        for logger in loggers:
            logger.log_image(key="val/examples", images=[grid], caption=[caption], step=self.global_step)

    # ------------------------------------------------------------------ optimizer, checkpoints

    def configure_optimizers(self) -> Any:
        lr = self.hparams.lr
        params = [p for p in self.generator.parameters() if p.requires_grad]
        if not params:
            raise ValueError("the generator has no trainable parameters")
        groups = [{"params": params, "lr": lr}]
        if self.enhancer is not None:
            groups.append({"params": list(self.enhancer.parameters()), "lr": self.hparams.enhancer_lr or lr})
        optimizer = torch.optim.AdamW(groups, lr=lr, weight_decay=self.hparams.weight_decay)
        if self.hparams.scheduler == "none":
            return optimizer
        total_steps = self.trainer.estimated_stepping_batches
        if not math.isfinite(total_steps) or total_steps < 1:
            rank_zero_warn("no finite number of training steps (max_epochs/max_steps); training without LR schedule")
            return optimizer
        total_steps = int(total_steps)
        if self.hparams.scheduler == "cosine":
            scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)
        else:
            scheduler = torch.optim.lr_scheduler.OneCycleLR(
                optimizer, max_lr=[group["lr"] for group in groups], total_steps=total_steps
            )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # The classifier (and NIMA) are frozen and rebuilt from their own config; keeping a
        # copy of a ResNet50 in every checkpoint would only cost disk.
        state = checkpoint["state_dict"]
        for key in [k for k in state if k.startswith(tuple(self._frozen))]:
            del state[key]

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint["state_dict"]
        for prefix, module in self._frozen.items():
            for key, value in module.state_dict(prefix=prefix).items():
                state.setdefault(key, value)


def jpeg_round_trip(x: torch.Tensor, quality: int) -> torch.Tensor:
    """Encode each image as a real JPEG (PIL, 4:2:0 as PIL defaults) and decode it again.

    Shape: (B, 3, H, W) float in [0, 1] -> the same, float32, on the same device.
    """
    pixels = to_uint8(x)  # (B, H, W, 3), rounded
    decoded = [to_tensor(read_photo(encode_photo(p, "jpeg", quality=quality)).pixels) for p in pixels]
    return torch.stack(decoded).to(x.device)


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")


def _read_sensitive_ids(path: str | None) -> tuple[int, ...]:
    if path is None:
        return ()
    from protector.data.lists import read_senscats

    return tuple(sorted(read_senscats(Path(path))))


__all__ = ["NonFiniteLossError", "ProtectorModule", "jpeg_round_trip"]
