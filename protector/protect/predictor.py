"""The LightningModule that `trainer.predict` runs: protect a batch, classify the clean photos."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch
from torch import nn

from protector.generator import project_to_budget
from protector.losses import AttackLoss
from protector.protect.tiling import TiledProtector
from protector.protector_protocol import Protector
from protector.refine import refine
from protector.views import ViewCycle, ViewSampler, carry_to_full_size, resize, working_size


class ProtectPredictor(pl.LightningModule):
    """Protects each batch in one forward pass; the writer callback saves the results.

    ``predict_step`` returns ``x_adv`` (B, 3, H, W) float32 in [0, 1] (None when every
    photo of the batch is already written and would be skipped), ``reference`` (the photos
    the budget is measured from, :meth:`BoundedProtector.reference`) and, with a classifier,
    ``clean_logits`` (B, num_classes) of the clean photos at full size; with a NIMA model,
    ``nima_original`` (B,) the clean photos' NIMA mean scores. Both run in float32 whatever
    the Trainer precision, as the organizers evaluate. ``refine_skipped`` is True when the
    batch's photos got no refine steps (too large for them without a working scale);
    ``full_size_skipped`` when they got no full-size steps (above ``tile_max_pixels``).

    With ``working_side``, a photo whose shorter side is larger is protected on a copy scaled
    down to that shorter side (generator and refine steps there, the cost of a few view-sized
    passes however large the photo), and the perturbation is carried back to full size
    (:func:`~protector.views.carry_to_full_size`) and projected into the budget around the
    full-size reference. Then, for photos up to ``tile_max_pixels``, ``full_size_steps`` small
    steps (eps/4) for the file classified as it is, at full size. The manifest's classifier
    then sees photos at the working scale too
    (:meth:`classify`): a full-size pass of a 12 MP photo costs more than its protection.

    Args:
        protector: a :class:`~protector.protector_protocol.Protector`, e.g. from
            :func:`protector.export.load_protector`.
        classifier: optional frozen classifier (RGB [0, 1] in, logits out) for the manifest.
        tile_max_pixels, tile, tile_overlap, tile_align: see :class:`TiledProtector`.
        refine_steps: gradient steps against `classifier` after the generator
            (:func:`protector.refine.refine`); photos above `tile_max_pixels` are not refined.
        refine_quality: JPEG quality inside the refinement loop (None: the file is lossless);
            over ``views``, in the loss of the file as it is only (:func:`~protector.refine.refine`),
            and not on a working copy, whose JPEG is not the file's (the full-size steps take it).
        refine_loss: what the refinement descends (None: :func:`~protector.refine.refine`'s
            default, the top-5 margin of the clean prediction).
        views: the refine steps descend the loss over views drawn from this sampler
            (:mod:`protector.views`); None: the file as it is.
        views_per_step: views per refine step.
        working_side: see above; None: every photo at full size.
        full_size_steps: see above; 0: none.
        extra_steps: up to this many more refine steps for the photos a view of the refine steps
            still recognizes (:func:`~protector.refine.refine`); 0: none.
        nima: optional NIMA model (:func:`protector.nima.load_nima`): the manifest then records
            each photo's NIMA before and after (the latter on the written file).

    Example:
        >>> from protector.generator import default_protector
        >>> predictor = ProtectPredictor(default_protector())
        >>> out = predictor.predict_step({"image": torch.rand(2, 3, 8, 8), "write": [True, True]}, 0)
        >>> out["x_adv"].shape
        torch.Size([2, 3, 8, 8])
    """

    def __init__(
        self,
        protector: Protector,
        classifier: nn.Module | None = None,
        tile_max_pixels: int = 4 * 1024 * 1024,
        tile: int = 1024,
        tile_overlap: int = 128,
        tile_align: int = 64,
        refine_steps: int = 0,
        refine_quality: int | None = 90,
        refine_loss: AttackLoss | None = None,
        nima: nn.Module | None = None,
        views: ViewSampler | ViewCycle | None = None,
        views_per_step: int = 2,
        working_side: int | None = None,
        full_size_steps: int = 0,
        extra_steps: int = 0,
    ) -> None:
        super().__init__()
        # With more ranks than batches some ranks get none; they still take part in the
        # manifest merge at the end.
        self.allow_zero_length_dataloader_with_multiple_devices = True
        self.protector = TiledProtector(protector.eval(), tile_max_pixels, tile, tile_overlap, tile_align)
        self.classifier = classifier.eval() if classifier is not None else None
        if refine_steps and classifier is None:
            raise ValueError("refine_steps needs a classifier")
        self.refine_steps = refine_steps
        self.refine_quality = refine_quality
        self.refine_loss = refine_loss
        self.tile_max_pixels = tile_max_pixels
        self.nima = nima.eval() if nima is not None else None
        self.views = views
        self.views_per_step = views_per_step
        self.working_side = working_side
        self.full_size_steps = full_size_steps
        self.extra_steps = extra_steps

    def working_size(self, height: int, width: int) -> tuple[int, int]:
        """The size a ``height`` x ``width`` photo is protected (and classified for the manifest) at."""
        return (height, width) if self.working_side is None else working_size(height, width, self.working_side)

    @torch.no_grad()
    def classify(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) in [0, 1] -> (B, num_classes) float32 logits, autocast off, at :meth:`working_size`."""
        if self.classifier is None:
            raise RuntimeError("no classifier was given")
        with torch.autocast(device_type=x.device.type, enabled=False):
            return self.classifier(resize(x.float(), self.working_size(*x.shape[-2:]))).float()

    @torch.no_grad()
    def appeal(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) in [0, 1] -> (B,) NIMA mean scores, float32, autocast off."""
        from protector.nima import nima_scores

        if self.nima is None:
            raise RuntimeError("no NIMA model was given")
        with torch.autocast(device_type=x.device.type, enabled=False):
            return nima_scores(self.nima(x.float()))[0]

    def predict_step(self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0) -> dict[str, Any]:
        x = batch["image"]  # (B, 3, H, W)
        out: dict[str, Any] = {"x_adv": None, "clean_logits": None, "nima_original": None, "reference": x,
                               "refine_skipped": False, "full_size_skipped": False}
        if x.shape[0] == 0:
            return out
        out["reference"] = self.protector.reference(x)
        # A batch whose outputs all exist is not recomputed; a partly written one is
        # recomputed whole, so every photo is protected in the same batch as in an
        # uninterrupted run and its bytes are identical.
        if self.classifier is not None:
            out["clean_logits"] = self.classify(x)
        if self.nima is not None:
            out["nima_original"] = self.appeal(x)
        if any(batch["write"]):
            full_size = tuple(x.shape[-2:])
            work = self.working_size(*full_size)
            reference = resize(out["reference"], work)
            label = self.protector.scene_label(resize(x, work),
                                               out["clean_logits"] if self._guide_is_classifier() else None)
            x_adv = self.protector.perturb(reference, label)
            if self.refine_steps and (work != full_size or work[0] * work[1] <= self.tile_max_pixels):
                views = self.views if work == full_size or self.views is None else self.views.for_working_copy()
                x_adv = self._refine(reference, x_adv, out["clean_logits"], views, at_own_size=work == full_size)
            elif self.refine_steps:
                out["refine_skipped"] = True
            if work != full_size:
                delta = carry_to_full_size(x_adv - reference, full_size)
                x_adv = project_to_budget(out["reference"] + delta, out["reference"], self.eps)
            if self.refine_steps and self.full_size_steps:
                if full_size[0] * full_size[1] <= self.tile_max_pixels:
                    x_adv = self._full_size_steps(out["reference"], x_adv)
                else:
                    out["full_size_skipped"] = True
            out["x_adv"] = x_adv
        return out

    @property
    def eps(self) -> float:
        return float(self.protector.eps)

    def _guide_is_classifier(self) -> bool:
        """Whether the protector's guide is this classifier: then its clean pass gives the scene label."""
        return self.classifier is not None and self.protector.classifier is self.classifier

    def _full_size_steps(self, reference: torch.Tensor, x_adv: torch.Tensor) -> torch.Tensor:
        # Small signed steps at full resolution: a classifier that takes the file as it is sees
        # them, while every shrinking view averages them away (BENCHMARKS.md, "Views").
        with torch.autocast(device_type=reference.device.type, enabled=False), torch.no_grad():
            y = self.classifier(reference.float()).argmax(1)
        with torch.autocast(device_type=reference.device.type, enabled=False):
            return refine(reference.float(), x_adv.float(), self.classifier, y, self.eps, self.full_size_steps,
                          step_size=self.eps / 4, loss=self.refine_loss, jpeg_quality=self.refine_quality)

    def _refine(self, reference: torch.Tensor, x_adv: torch.Tensor, clean_logits: torch.Tensor,
                views: ViewSampler | ViewCycle | None, at_own_size: bool) -> torch.Tensor:
        # The label pushed out is the clean prediction: what the attack model would say of
        # the photo (on MEPP19test it is the true label by construction).
        y = clean_logits.argmax(1)
        # Over views the file's JPEG is in the loss of the file as it is only, and only at the
        # photo's own size: a working copy's JPEG quantizes other 8x8 blocks than the file's,
        # and with it every view was fooled 5-15 points less (BENCHMARKS.md, "Views").
        quality = self.refine_quality if views is None or at_own_size else None
        with torch.autocast(device_type=reference.device.type, enabled=False):
            return refine(reference.float(), x_adv.float(), self.classifier, y, self.eps, self.refine_steps,
                          loss=self.refine_loss, jpeg_quality=quality, views=views,
                          views_per_step=self.views_per_step, extra_steps=self.extra_steps)
