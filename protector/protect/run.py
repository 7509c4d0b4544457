"""`protect`: one protection run from inputs to files, manifest, summary and zip."""

from __future__ import annotations

import contextlib
import logging
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import pytorch_lightning as pl
import torch
from torch import nn

from protector.attack_model import cached_categories
from protector.budget import check_budget
from protector.classifier_spec import AttackModelSpec
from protector.generator import default_protector
from protector.images import MAX_PIXELS
from protector.losses import attack_loss_by_name
from protector.paths import sha256_file
from protector.protect.folder_lock import folder_lock
from protector.protect.loading import ProtectionDataModule
from protector.outputs import OutputError, inside, prepare_file, prepare_folder, refuse_unusable_folder, write_failures
from protector.protect.manifest import ManifestRow, default_manifest_path, manifest_bytes, remove_shards
from protector.protect.naming import check_run_code
from protector.protect.plan import Plan, build_plan
from protector.protect.predictor import ProtectPredictor
from protector.protect.progress import PhotoProgress
from protector.protect.provenance import MANIFEST_ENTRY, Provenance, describe_maker
from protector.protect.submission import write_submission_zip
from protector.protect.summary import RunSummary
from protector.protect.writer import ProtectedImageWriter
from protector.protector_protocol import Protector, require_protector
from protector.settings import WORKING_SIDE, ProtectionSettings
from protector.views import VIEW_SETS

# Gradient steps of the default protector (no --protector): EOT-PGD over views from the photo
# itself; BENCHMARKS.md ("Views") measures what fewer and more steps give.
DEFAULT_STEPS = 10


@dataclass
class ProtectOptions:
    """Everything a protection run needs; `protector protect` fills it from its flags.

    Inputs are `inputs` (folders and files) and/or `list_path` read from `images`.
    Outputs go to `output` (see :mod:`protector.protect.naming` for the names; default:
    :meth:`output_folder`); the manifest to `manifest`, outside that folder (default:
    ``OUTPUT.manifest.csv`` beside it). Without `protector` (a protector file) the protector is
    the default one (:func:`default_protector`); `refine_steps` None means :data:`DEFAULT_STEPS`
    for it and none after a trained generator. `attack_model` is what the attack-model flags say
    (the default: the cached official model, fetched only when protection needs it).
    """

    output: Path | None = None
    manifest: Path | None = None
    protector: Path | None = None
    eps: float | None = None
    views: str = "classifiers"
    views_per_step: int = 2
    working_side: int | None = WORKING_SIDE
    full_size_steps: int = 0
    inputs: list[Path] = field(default_factory=list)
    list_path: Path | None = None
    images: Path | None = None
    recursive: bool = False
    fmt: str = "jpeg"
    quality: int = 90
    run_code: str | None = None
    zip: bool = False
    overwrite: bool = False
    allow_failures: bool = False
    attack_model: AttackModelSpec = AttackModelSpec()
    categories: Path | None = None
    refine_steps: int | None = None
    extra_steps: int | None = None
    refine_loss: str | None = None
    senscats: Path | None = None
    enhance: str = "auto"
    enhance_strength: float = 1.0
    appeal_steps: int | None = None  # None: protector.appeal_steps.resolve_steps decides
    nima: Path | None = None
    nima_preprocess: str = "idealo"
    batch_size: int = 16
    max_batch_pixels: int = 16 * 1024 * 1024
    num_workers: int | None = None
    accelerator: str = "auto"
    devices: str = "auto"
    strategy: str = "auto"
    num_nodes: int = 1
    precision: str | None = None
    tile_max_pixels: int = 4 * 1024 * 1024
    tile: int = 1024
    tile_overlap: int = 128
    tile_align: int = 64
    min_side: int = 32
    max_pixels: int = MAX_PIXELS
    allow_large_eps: bool = False
    progress: bool = True

    def output_folder(self) -> Path:
        """--output, or a folder beside the first input: ``holiday/`` -> ``holiday-protected/``,
        ``photo.jpg`` -> ``protected/`` beside it."""
        if self.output is not None:
            return Path(self.output)
        if not self.inputs:
            raise ValueError("--output is needed with --list (where should the protected files go?)")
        first = Path(self.inputs[0])
        if first.is_dir():
            return first.resolve().parent / f"{first.resolve().name}-protected"
        return first.parent / "protected"

    def manifest_path(self) -> Path:
        return Path(self.manifest) if self.manifest is not None else default_manifest_path(self.output_folder())

    def steps(self, trained: bool | None = None) -> int:
        """Gradient steps after the generator: as given; else :data:`DEFAULT_STEPS` for the default
        protector and none after a ``trained`` one (default: whether --protector is given)."""
        if self.refine_steps is not None:
            return self.refine_steps
        trained = self.protector is not None if trained is None else trained
        return 0 if trained else DEFAULT_STEPS

    def settings(self, precision: str = "32-true", has_edit: bool = False, trained: bool | None = None
                 ) -> ProtectionSettings:
        """The settings that change the files' bytes (checked there, once)."""
        uses_senscats = self.senscats is not None and self.refine_loss == "sensitive_safe"
        senscats = sha256_file(self.senscats) if uses_senscats else None
        return ProtectionSettings(
            fmt=self.fmt, quality=self.quality, eps=self.eps, views=self.views, views_per_step=self.views_per_step,
            working_side=self.working_side if self.views != "as-is" else None,
            full_size_steps=self.full_size_steps if self.views != "as-is" else 0, refine_steps=self.steps(trained),
            extra_steps=self.extra_steps, refine_loss=self.refine_loss or "", senscats_sha256=senscats,
            # Strength 0 is the unedited photo: recorded as "no edit", its one spelling.
            edit_strength=float(self.enhance_strength) if has_edit and self.enhance == "auto"
            and self.enhance_strength > 0 else None,
            tiling=(self.tile_max_pixels, self.tile, self.tile_overlap, self.tile_align), precision=precision,
        )

    def check(self) -> None:
        """Raise ValueError for settings that cannot work, before anything is loaded (nothing is created)."""
        self.output = self.output_folder()
        refuse_unusable_folder(self.output, "--output")
        if inside(self.manifest_path(), self.output):
            raise OutputError(f"--manifest {self.manifest_path()} is inside --output {self.output}: the manifest holds "
                              "each photo's original path and scene label, which the folder of protected photos must "
                              "not publish; give a path outside it")
        if self.manifest_path().is_dir():
            raise OutputError(f"--manifest {self.manifest_path()} is a folder: give a file name")
        if self.run_code is not None:
            check_run_code(self.run_code)
        if self.zip and not self.run_code:
            raise ValueError("--zip names the archive after the run: pass --run-code too (e.g. --run-code rteam_base)")
        counts = {"--batch-size": self.batch_size, "--min-side": self.min_side, "--num-nodes": self.num_nodes,
                  "--max-batch-pixels": self.max_batch_pixels, "--max-pixels": self.max_pixels,
                  "--tile-max-pixels": self.tile_max_pixels, "--tile": self.tile, "--tile-align": self.tile_align}
        for flag, value in counts.items():
            if value < 1:
                raise ValueError(f"{flag} must be at least 1, got {value}")
        if (self.num_workers or 0) < 0:
            raise ValueError(f"--num-workers must be at least 0, got {self.num_workers}")
        if not 0 <= self.tile_overlap < self.tile:
            raise ValueError(f"--tile-overlap must be at least 0 and smaller than --tile ({self.tile}), "
                             f"got {self.tile_overlap}")
        if self.devices == 0 or self.devices == "0":
            raise ValueError("--devices 0 would run on no device: give a count >= 1, auto, -1 (all), "
                             "or indices like '0,' or '0,1'")
        if self.enhance not in ("auto", "off"):
            raise ValueError(f"--enhance must be auto or off, got {self.enhance!r}")
        if not 0.0 <= self.enhance_strength <= 1.0:
            raise ValueError(f"--enhance-strength must be in [0, 1], got {self.enhance_strength}")
        if self.nima_preprocess not in ("idealo", "native"):
            raise ValueError(f"--nima-preprocess must be idealo or native, got {self.nima_preprocess!r}")
        if self.protector is not None and self.eps is not None:
            raise ValueError("--eps sets the budget of the default protector; a protector file carries its own "
                             "(drop --eps, or drop --protector)")
        if self.refine_loss is not None and self.refine_steps == 0:
            raise ValueError(f"--refine-loss {self.refine_loss} is what the refine steps descend: "
                             "drop --refine-steps 0 (or drop --refine-loss)")
        if self.refine_loss == "sensitive_safe" and self.senscats is None:
            raise ValueError("--refine-loss sensitive_safe needs the sensitive categories: pass --senscats "
                             "MEPP18senscats.txt")
        if self.senscats is not None and not Path(self.senscats).is_file():
            raise FileNotFoundError(f"--senscats {self.senscats}: no such file")
        self.settings()  # every range rule of what changes the bytes, in one place


def default_workers() -> int:
    """DataLoader workers: a quarter of the CPU cores, at most 4 (none on a 2-core laptop,
    where workers would only compete with the protector for the cores)."""
    return min(4, (os.cpu_count() or 1) // 4)


def launch_rank() -> int:
    """This process's global rank before the Trainer exists (0 when not launched distributed)."""
    for variable in ("RANK", "SLURM_PROCID", "LOCAL_RANK"):
        if os.environ.get(variable, "").isdigit():
            return int(os.environ[variable])
    return 0


def remove_stale_temporaries(plan: Plan) -> int:
    """Delete temporary files a killed run left beside its outputs (write_atomic's ``.name.*.tmp``)."""
    removed = 0
    for item in plan.runnable():
        target = plan.output_dir / item.output
        if target.parent.is_dir():
            for stale in target.parent.glob(f".{target.name}.*.tmp"):
                stale.unlink(missing_ok=True)
                removed += 1
    return removed


def default_precision(accelerator: str) -> str:
    """bf16-mixed where a CUDA GPU will run the job, else full float32."""
    uses_gpu = accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available()
    return "bf16-mixed" if uses_gpu else "32-true"


def _load_nima(options: ProtectOptions) -> nn.Module | None:
    if options.nima is None:
        return None
    from protector.nima import load_nima  # h5py and the port load only when asked for

    return load_nima(options.nima, preprocess=options.nima_preprocess)


def _load_networks(options: ProtectOptions) -> tuple[Protector, nn.Module | None]:
    from protector.export import load_protector

    protector = default_protector(options.eps) if options.protector is None else load_protector(options.protector)
    if not options.attack_model.is_default or options.protector is None or protector.guided or options.steps():
        # The default (the task's, fetched once into the user cache) only when protecting needs it.
        classifier = options.attack_model.build(progress=options.progress)
    else:
        classifier = None
    return protector, classifier


def protect(
    options: ProtectOptions,
    protector: Protector | None = None,
    classifier: nn.Module | None = None,
) -> RunSummary | None:
    """Protect every planned photo and write files, the manifest and (optionally) the zip.

    Args:
        options: the run's settings.
        protector: the :class:`~protector.protector_protocol.Protector` to use instead of loading
            ``options.protector`` (e.g. a :class:`~protector.generator.BoundedProtector`).
        classifier: classifier for the manifest instead of building ``options.attack_model``.

    Returns:
        The summary on global rank zero; None on the other ranks of a distributed run.

    Raises:
        ValueError, FileNotFoundError: settings, list or source that cannot be used at all.
            Problems with single photos never raise: they are failures in the summary.
        TypeError: ``protector`` is not a :class:`~protector.protector_protocol.Protector`.
        ForeignOutputError (a ValueError): files at the output names, the manifest's path or
            the zip that this protector with these settings did not make, unless
            ``options.overwrite`` (see :mod:`~protector.protect.provenance`).
        OutputError (a ValueError): the output folder or the manifest cannot be written (a
            file in the way, read-only, full). A photo that cannot be written fails alone.
    """
    options.check()
    if protector is not None:
        require_protector(protector)
    from protector.data.lists import read_categories

    # Every input is read and checked before the output folder is locked or touched: a refused
    # run (bad weights, an empty --senscats) leaves every file of an earlier run as it was.
    if options.categories is None and options.attack_model.is_default and protector is None:
        options.categories = cached_categories()  # the default attack model's class names, when they can be had
    categories = read_categories(options.categories) if options.categories else None
    plan = build_plan(options.output, options.inputs, options.list_path, options.images,
                      options.recursive, options.fmt, options.run_code)
    for message in plan.warnings:
        warnings.warn(message, stacklevel=2)
    protector_file = None
    trained = protector is not None or options.protector is not None
    if protector is None:
        protector, loaded_classifier = _load_networks(options)
        protector_file = options.protector
        classifier = classifier if classifier is not None else loaded_classifier
    large_budget = check_budget(float(protector.eps), options.allow_large_eps, str(protector_file or "the protector"))
    protector.attach_classifier(classifier)  # a guided protector's guide comes from it (or it refuses)
    _set_enhancement(protector, options)
    settings = options.settings(options.precision or default_precision(options.accelerator),
                                protector.enhancer is not None, trained)
    if settings.refine_steps and classifier is None:
        raise ValueError("--refine-steps needs the attack model: pass --classifier (e.g. --classifier resnet50)")
    nima = _load_nima(options)
    refine_loss = _refine_loss(settings.refine_loss, options.senscats)
    manifest_path = options.manifest_path()
    zip_name = f"{options.run_code}.zip" if options.zip else None
    rank_zero = launch_rank() == 0
    if rank_zero:
        # A folder or manifest that cannot be written is refused here, not photo by photo.
        prepare_folder(plan.output_dir, "--output")
        prepare_file(manifest_path, "--manifest")
    # One run at a time per folder, from reading its record to writing its last file.
    with folder_lock(plan.output_dir) if rank_zero else contextlib.nullcontext():
        provenance = Provenance.open(plan.output_dir, describe_maker(settings, protector, classifier, protector_file),
                                     outside={MANIFEST_ENTRY: manifest_path})
        removed_zips: list[Path] = []  # and old in-folder manifests
        if rank_zero:
            # Before any work: only files this protector with these settings made may be skipped or zipped.
            existing = [item.output for item in plan.runnable() if item.exists]
            provenance.check(existing + [MANIFEST_ENTRY] + ([zip_name] if zip_name else []), options.overwrite)
            # Before any other rank can start writing: leftovers of a killed run go.
            remove_stale_temporaries(plan)
            remove_shards(manifest_path)
            with write_failures(str(plan.output_dir / "protect-run.json")):
                removed_zips = provenance.start(options.overwrite, zip_name)
        summary = _write_outputs(options, settings, plan, protector, classifier, provenance, manifest_path,
                                 categories, nima, refine_loss, zip_name, removed_zips)
    if summary is not None:
        summary.large_budget = large_budget
    return summary


def _write_outputs(options: ProtectOptions, settings: ProtectionSettings, plan: Plan, protector: Protector,
                   classifier: nn.Module | None, provenance: Provenance, manifest_path: Path,
                   categories: list[str] | None, nima: nn.Module | None, refine_loss: nn.Module, zip_name: str | None,
                   removed_zips: list[Path]) -> RunSummary | None:
    writer = ProtectedImageWriter(plan, provenance, manifest_path, options.quality, options.overwrite, categories)
    started = time.perf_counter()
    # Photos written before a write of the run's own files fails are whole and journaled: a rerun resumes.
    resume = "; the photos written so far are whole and recorded: run the same command again to resume"
    if plan.runnable():
        manifest = _predict(options, settings, plan, protector, classifier, writer, nima, refine_loss)
        if manifest is None:
            return None  # not global rank zero
    else:
        manifest = [ManifestRow(index=i.index, input=i.input, output=i.output or "", label=i.label, error=i.error or "")
                    for i in plan.items]
        with write_failures(f"the manifest {manifest_path}", resume):
            provenance.write(MANIFEST_ENTRY, manifest_bytes(manifest), "manifest", overwrite=True)
    seconds = time.perf_counter() - started

    summary = RunSummary.from_rows(manifest, seconds, manifest=manifest_path, output=plan.output_dir,
                                   views=settings.views, eps_8bit=protector.eps * 255)
    if zip_name is not None and (summary.failed == 0 or options.allow_failures):
        # Only the protected photos: never the manifest or the run record.
        names = [row.output for row in manifest if row.status in ("ok", "skipped")]
        with write_failures(str(plan.output_dir / zip_name), resume):
            summary.zip_path = write_submission_zip(
                plan.output_dir / zip_name, plan.output_dir, names,
                before_rename=lambda sha256: provenance.note(zip_name, "zip", sha256),
            )
    elif zip_name is not None:
        summary.zip_withheld = (f"not written: {summary.failed} input(s) failed "
                                "(--allow-failures zips the others)")
    summary.zips_removed = [path for path in removed_zips if path != summary.zip_path and path.suffix == ".zip"]
    summary.manifests_removed = [path for path in removed_zips if path.suffix != ".zip"]
    with write_failures(str(plan.output_dir / "protect-run.json"), resume):
        provenance.commit()
    return summary


def _refine_loss(name: str, senscats: Path | None) -> nn.Module:
    """The loss the refine steps descend; reads --senscats (an empty or bad file is refused here)."""
    # k=5, kappa=2: the margins of refine's default (TopKMargin(5, 2)), for every loss.
    return attack_loss_by_name(name, top_k=5, kappa=2.0, sensitive=str(senscats) if senscats else None)


def _set_enhancement(protector: Protector, options: ProtectOptions) -> None:
    """--enhance off drops the trained edit; --enhance-strength blends it with the photo;
    --appeal-steps refines it per photo (:mod:`protector.appeal_steps`)."""
    from protector.appeal_steps import resolve_steps, with_appeal_steps

    enhancer = protector.enhancer
    steps = resolve_steps(options.appeal_steps, enhancer is not None and options.enhance != "off", options.nima)
    if enhancer is None:
        return
    if options.enhance == "off":
        protector.enhancer = None
    else:
        enhancer.strength = options.enhance_strength
        if steps:
            quality = options.quality if options.fmt == "jpeg" else None
            protector.enhancer = with_appeal_steps(enhancer, steps, options.nima, quality)


def _predict(
    options: ProtectOptions,
    settings: ProtectionSettings,
    plan: Plan,
    protector: Protector,
    classifier: nn.Module | None,
    writer: ProtectedImageWriter,
    nima: nn.Module | None,
    refine_loss: nn.Module,
) -> list[ManifestRow] | None:
    refine_quality = settings.quality if settings.fmt == "jpeg" else None
    predictor = ProtectPredictor(protector, classifier, *settings.tiling, settings.refine_steps, refine_quality,
                                 refine_loss, nima, VIEW_SETS[settings.views], settings.views_per_step,
                                 settings.working_side, settings.full_size_steps, settings.extra_steps)
    workers = default_workers() if options.num_workers is None else options.num_workers
    datamodule = ProtectionDataModule(plan, options.batch_size, options.max_batch_pixels, workers,
                                   options.min_side, options.max_pixels, options.overwrite)
    with _quiet_lightning():
        return _run_trainer(options, predictor, datamodule, writer, settings.precision)


@contextlib.contextmanager
def _quiet_lightning():
    """Lightning's hardware lines and tips on every run are noise for a one-shot command; warnings still show."""
    logger = logging.getLogger("pytorch_lightning.utilities.rank_zero")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


def _run_trainer(options: ProtectOptions, predictor: ProtectPredictor, datamodule: ProtectionDataModule,
                 writer: ProtectedImageWriter, precision: str) -> list[ManifestRow] | None:
    trainer = pl.Trainer(
        accelerator=options.accelerator,
        devices=options.devices,
        strategy=options.strategy,
        num_nodes=options.num_nodes,
        precision=precision,
        # The bar counts photos (PhotoProgress), not Lightning's batches.
        callbacks=[writer, PhotoProgress()] if options.progress else [writer],
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        enable_progress_bar=False,
        # Protection must be repeatable: a resumed run writes the same bytes. "warn" keeps an
        # op without a deterministic kernel from stopping a run.
        deterministic="warn",
        # Refinement takes input gradients, which inference mode forbids.
        inference_mode=not predictor.refine_steps,
        # The batch sampler shards by rank itself: no Lightning sampler, no padding
        # (a padded duplicate would write a file twice).
        use_distributed_sampler=False,
    )
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*custom batch sampler.*")
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        warnings.filterwarnings("ignore", message=".*LeafSpec.*")  # Lightning vs torch pytree API, harmless
        trainer.predict(predictor, datamodule=datamodule, return_predictions=False)
    return writer.finish(trainer)
