"""`evaluate`: score protected files the way the task organizers did, from the files on disk.

Each protected file is decoded from disk and classified at full size (normalization only,
no resize or crop), next to its original: top-1/top-5 accuracy before and after (against
ground truth where known, else the clean prediction), fooling rate, per-category accuracy
for the sensitive classes, privacy leakage (with ``--senscats``: how often the protected photo
still lands in a sensitive category, or in the same privacy criterion as the clean one),
transfer to other models, fidelity (PSNR, SSIM, CIEDE2000) and appeal (NIMA). Optional
FGSM/PGD baselines at the same budget are evaluated side by side. With ``--protector`` naming
an appeal protector, the edit alone is recomputed and the NIMA change split into the edit's
share and the perturbation's (:mod:`protector.evaluation.edit_split`).
"""

from __future__ import annotations

import platform
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from protector.classifier_spec import AttackModelSpec
from protector.data.criteria import CRITERIA, criteria_of_senscats, read_privacy_criteria
from protector.data.lists import read_categories, read_senscats
from protector.devices import resolve_device
from protector.evaluation import aggregate
from protector.evaluation.baselines import BASELINES, baseline_spec, run_baseline
from protector.evaluation.checkpoint_check import check_clean_accuracy, task_list_names
from protector.evaluation.edit_split import EditSplit, load_edit_split
from protector.evaluation.fidelity import IMPLEMENTATION as FIDELITY_IMPLEMENTATION
from protector.evaluation.fidelity import fidelity
from protector.evaluation.leakage import leakage_summary
from protector.evaluation.pairs import Pair, Pairing, open_originals, pair_files, read_labels
from protector.evaluation.records import ImageEval, RunEval
from protector.evaluation.scoring import Top, nima_mean_std, top_k
from protector.data.sources import SourceError
from protector.images import ImageReadError, read_photo
from protector.evaluation.views import ViewScore, score_views
from protector.outputs import inside, prepare_folder, refuse_unusable_folder
from protector.settings import ProtectionSettings, check_quality
from protector.views import EVALUATION_VIEWS, View, view_by_name


# The baselines' JPEG quality when neither --quality nor a protect-run.json says it.
DEFAULT_BASELINE_QUALITY = 90


class EvaluationError(ValueError):
    """The evaluation cannot give trustworthy numbers (missing or unreadable files, bad settings)."""


@dataclass
class EvaluateOptions:
    """Settings of `protector evaluate` (see its --help for each)."""

    protected: Path
    original: Path
    out: Path
    attack_model: AttackModelSpec = AttackModelSpec()  # the default: the cached one `protector protect` uses
    run_code: str | None = None
    list_path: Path | None = None
    labels: Path | None = None
    transfer: list[str] = field(default_factory=list)
    nima: Path | None = None
    nima_preprocess: str = "idealo"
    categories: Path | None = None
    senscats: Path | None = None
    criteria: Path | None = None
    baselines: list[str] = field(default_factory=list)
    eps: float | None = None
    quality: int | None = None
    gallery: int = 8
    device: str = "auto"
    batch_size: int = 16
    seed: int = 0
    allow_missing: bool = False
    protector: Path | None = None
    views: list[str] | None = None

    def check(self) -> None:
        unknown = [b for b in self.baselines if b not in BASELINES]
        if unknown:
            raise EvaluationError(f"unknown baseline(s) {unknown}; choose from {', '.join(BASELINES)}")
        if self.eps is not None and not 0 < self.eps <= 1:
            raise EvaluationError(f"--eps must be in (0, 1] (a fraction of the pixel range, e.g. 2/255), got {self.eps}")
        if self.batch_size < 1 or self.gallery < 0:
            raise EvaluationError(f"--batch-size must be >= 1 (got {self.batch_size}) and --gallery >= 0 "
                                  f"(got {self.gallery})")
        if self.quality is not None:
            check_quality(self.quality, "--quality")
        for name in self.views or []:
            view_by_name(name)  # ValueError naming the known views
        if self.nima_preprocess not in ("idealo", "native"):
            raise EvaluationError(f"--nima-preprocess must be idealo or native, got {self.nima_preprocess!r}")
        if self.criteria is not None and self.senscats is None:
            raise EvaluationError("--criteria maps the sensitive categories to privacy criteria: pass --senscats too")
        if not self.protected.is_dir():
            raise FileNotFoundError(f"{self.protected}: protected folder not found")
        if inside(self.out, self.protected):
            # The gallery holds the unprotected originals: inside the folder they would be published with it.
            raise EvaluationError(f"--out {self.out} is inside --protected {self.protected}: the report's gallery "
                                  "holds the unprotected originals, which must not land in the folder that is "
                                  "published; give a report folder outside it")
        refuse_unusable_folder(self.out, "--out")


@dataclass
class Evaluation:
    """Everything a report needs."""

    options: EvaluateOptions
    pairing: Pairing
    attack_model: str
    models: dict[str, str]  # name -> role ("attack" or "transfer")
    runs: dict[str, RunEval]
    categories: list[str] | None
    senscats: dict[int, str] | None
    settings: dict
    criteria: dict[int, tuple[str, ...]] | None = None  # privacy criteria of each sensitive class
    edit: EditSplit | None = None  # the protector run's edit alone (--protector with an enhancer)
    views: list[ViewScore] | None = None  # protection under each view (--views)

    def class_name(self, index: int) -> str:
        if self.categories and 0 <= index < len(self.categories):
            return self.categories[index].split("/", 2)[-1].replace("/", " / ").replace("_", " ")
        return f"class {index}"

    def summary(self) -> dict:
        """The numbers of every run, as written to results.json."""
        pairing = self.pairing
        out = {"settings": self.settings, "missing": pairing.missing, "unmatched": pairing.unmatched,
               "ambiguous": pairing.ambiguous, "unreadable_originals": pairing.unreadable_originals,
               "coverage": {
                   "originals": (len(pairing.pairs) + len(pairing.missing) + len(pairing.ambiguous)
                                 + len(pairing.unreadable_originals)),
                   "paired": len(pairing.pairs), "missing": len(pairing.missing),
                   "ambiguous": len(pairing.ambiguous), "unreadable_originals": len(pairing.unreadable_originals),
                   "of": "the listed originals" if pairing.listed else "every original in --original"},
               "runs": {},
               "views": [score.as_dict() for score in self.views] if self.views is not None else None}
        classes = self.senscats or {c: self.class_name(c) for c in sorted({
            im.reference for run in self.runs.values() for im in run.images})}
        for name, run in self.runs.items():
            out["runs"][name] = {
                "folder": run.folder,
                "description": run.description,
                "n_images": len(run.images),
                "unreadable": run.unreadable,
                "seconds_per_image": run.seconds_per_image,
                "models": {m: {"role": role, **aggregate.accuracy(run.images, m)} for m, role in self.models.items()},
                "fidelity": aggregate.fidelity_summary(run.images),
                "appeal": aggregate.appeal_summary(run.images),
                "per_category": aggregate.per_category(run.images, self.attack_model, classes),
                "leakage": self.leakage(run),
                "edit_split": self.edit.summary() if self.edit is not None and name == "protector" else None,
                "images": [_image_json(im) for im in run.images],
            }
        return out

    def leakage(self, run: RunEval) -> dict | None:
        """Privacy leakage of a run per model (:func:`leakage_summary`), None without --senscats."""
        if not self.senscats:
            return None
        return {model: leakage_summary([(im.clean[model][0][0], [c for c, _ in im.protected[model]])
                                        for im in run.images], self.senscats, self.criteria or {}, list(CRITERIA))
                for model in self.models}


def _image_json(im: ImageEval) -> dict:
    f = im.fidelity
    return {
        "name": im.name, "file": im.file, "label": im.label, "reference": im.reference,
        "width": im.width, "height": im.height,
        "clean_top5": {m: [[c, round(p, 6)] for c, p in top] for m, top in im.clean.items()},
        "protected_top5": {m: [[c, round(p, 6)] for c, p in top] for m, top in im.protected.items()},
        "psnr": f.psnr if np.isfinite(f.psnr) else None, "ssim": f.ssim, "ciede2000": f.ciede2000,
        "max_delta_8bit": f.max_delta_8bit,
        "nima_clean": list(im.nima_clean) if im.nima_clean else None,
        "nima_protected": list(im.nima_protected) if im.nima_protected else None,
    }


def _parse_transfer(spec: str) -> tuple[str, Path | None]:
    name, _, checkpoint = spec.partition("=")
    return name, (Path(checkpoint) if checkpoint else None)


def _load_models(options: EvaluateOptions, device: torch.device) -> tuple[str, dict[str, nn.Module]]:
    # The default is what `protector protect` used: the task's attack model from the cache.
    options.attack_model = attack = options.attack_model.resolved()
    models = {attack.label(): attack.build()}
    for text in options.transfer:
        name, checkpoint = _parse_transfer(text)
        # Trust and search path as for the attack model; a transfer model's own sha256 is pinned or waived.
        spec = replace(attack, name=name, checkpoint=checkpoint, sha256=None)
        if spec.label() in models:
            raise EvaluationError(f"--transfer {text}: this model is already evaluated")
        models[spec.label()] = spec.build()
    return attack.label(), {name: model.to(device).eval() for name, model in models.items()}


def _load_nima(options: EvaluateOptions, device: torch.device) -> nn.Module | None:
    if options.nima is None:
        return None
    from protector.nima import load_nima

    try:
        return load_nima(options.nima, preprocess=options.nima_preprocess).to(device)
    except (FileNotFoundError, ValueError) as err:
        raise EvaluationError(f"{err}\n(NIMA was asked for with --nima; leave --nima out to evaluate without NIMA)") from None


def _decode(data_or_path: bytes | Path, name: str) -> np.ndarray:
    return read_photo(data_or_path, name=name).pixels


def _read_originals(pairing: Pairing, pairs: list[Pair]) -> list[tuple[Pair, np.ndarray]]:
    """Decode the originals of `pairs`; one that cannot be read leaves the pairing, with its cause."""
    readable = []
    for pair in pairs:
        try:
            readable.append((pair, _decode(pairing.source.read_bytes(pair.name), pair.name)))
        except (ImageReadError, SourceError, OSError) as err:  # OSError: EIO, a FIFO, vanished
            if isinstance(err, OSError) and err.strerror:
                message = f"{pair.name}: cannot be read ({err.strerror})"
            else:
                message = str(err) if pair.name in str(err) else f"{pair.name}: {err}"
            pairing.unreadable_originals.append(message)
            pairing.pairs.remove(pair)
    return readable


def _chunks(items: list, size: int):
    for start in range(0, len(items), size):
        yield items[start : start + size]


@dataclass
class _Clean:
    top: dict[str, Top]
    nima: tuple[float, float] | None


def evaluate(options: EvaluateOptions) -> Evaluation:
    """Evaluate the protected files (and the baselines asked for) against their originals.

    Raises:
        EvaluationError: missing, ambiguous or unreadable protected files (unless
            ``allow_missing``), NIMA asked for without usable weights, bad settings.
        FileNotFoundError: a folder, list or checkpoint that does not exist.
    """
    options.check()
    source, entries = open_originals(options.original, options.list_path)
    pairing = pair_files(options.protected, source, entries, options.run_code, read_labels(options.labels))
    # Without a list the user did not say which originals to expect: missing ones are reported, not refused.
    problems = (pairing.missing if pairing.listed else []) + [f"ambiguous: {a}" for a in pairing.ambiguous]
    if problems and not options.allow_missing:
        shown = "\n  ".join(problems[:20]) + ("\n  ..." if len(problems) > 20 else "")
        raise EvaluationError(
            f"{len(problems)} original(s) have no single protected file in {options.protected}:\n  {shown}\n"
            "(check --run-code; --allow-missing evaluates the files that are there)"
        )
    if not pairing.pairs:
        raise EvaluationError(f"no protected file in {options.protected} matches an original in {source.describe()}")
    # Here, not at the top: the protect package imports Lightning, which evaluate does not need.
    from protector.protect.provenance import RECORD_NAME, recorded_maker

    protected_by, foreign = recorded_maker(options.protected, [p.protected for p in pairing.pairs])
    if foreign:
        # A file the run record cannot account for would be scored as that protector's work.
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        raise EvaluationError(
            f"{options.protected}: {len(foreign)} file(s) are not what protector protect wrote there according to its "
            f"{RECORD_NAME} ({shown}); protect into the folder again (--overwrite replaces them) or evaluate a "
            "folder holding only that run's files"
        )

    made = (protected_by or {}).get("protector") or {}
    recorded = _recorded_settings(protected_by)
    eps, eps_source = (options.eps, "--eps") if options.eps is not None else (made.get("eps"), RECORD_NAME)
    # The baselines are saved as the protected files were: the recorded quality unless told otherwise.
    options.quality = options.quality or (recorded.quality if recorded else DEFAULT_BASELINE_QUALITY)
    if options.baselines and eps is None:
        raise EvaluationError(f"--baselines needs --eps, the budget to attack with (e.g. --eps 2/255): "
                              f"{options.protected} has no {RECORD_NAME} naming the protector's budget")

    prepare_folder(options.out, "--out")  # a read-only or full place is refused before the models load
    device = resolve_device(options.device)
    attack_name, models = _load_models(options, device)
    nima = _load_nima(options, device)
    categories = read_categories(options.categories) if options.categories else None
    senscats = read_senscats(options.senscats) if options.senscats else None
    criteria = criteria_of_senscats(senscats, read_privacy_criteria(options.criteria)) if senscats else None

    edit = load_edit_split(options.protector, protected_by, device, options.batch_size) if options.protector else None
    clean = _clean_pass(pairing, models, nima, device, options.batch_size)
    if pairing.unreadable_originals and not options.allow_missing:
        raise EvaluationError(f"{len(pairing.unreadable_originals)} original(s) cannot be read:\n  "
                              + "\n  ".join(pairing.unreadable_originals[:20])
                              + "\n(--allow-missing evaluates the others)")
    if not pairing.pairs:
        raise EvaluationError("no original of a protected file can be read")
    references = {p.name: (p.label if p.label is not None else clean[p.name].top[attack_name][0][0])
                  for p in pairing.pairs}
    runs = {"protector": _score_run("protector", str(options.protected), "the protected files as given",
                                    Path(options.protected), pairing, clean, references, models, nima, device,
                                    options.batch_size)}
    if edit is not None:  # the baselines perturb the originals: only the protector's files have an edit
        edit.measure(runs["protector"], pairing.source, nima, device, options.batch_size)
    baseline_settings = {}
    for name in options.baselines:
        spec = baseline_spec(name, eps)
        folder = Path(options.out) / "baselines" / name
        seconds = _make_baseline(spec, models[attack_name], pairing, references, folder, options, device)
        runs[name] = _score_run(name, str(folder), spec.describe(), folder, pairing, clean, references,
                                models, nima, device, options.batch_size)
        runs[name].seconds_per_image = seconds
        baseline_settings[name] = spec.describe()

    view_scores = _score_views(options, pairing, models[attack_name], device) if options.views is not None else None
    for run in runs.values():
        if run.unreadable and not options.allow_missing:
            raise EvaluationError(f"{run.name}: unreadable files:\n  " + "\n  ".join(run.unreadable))

    any_gt = any(p.label is not None for p in pairing.pairs)
    all_gt = all(p.label is not None for p in pairing.pairs)
    settings = {
        "attack_model": attack_name,
        "transfer_models": [m for m in models if m != attack_name],
        "labels": ("ground truth" if all_gt else
                   "ground truth where known, else the clean prediction" if any_gt else
                   "clean prediction of each model (no ground truth given)"),
        "classification": "decoded file at full size, normalization only (no resize, no crop), float32",
        "fidelity_implementation": FIDELITY_IMPLEMENTATION,
        "nima": (nima.name if nima is not None else None),
        "nima_weights": str(options.nima) if options.nima else None,
        "protected": str(options.protected),
        "original": str(options.original),
        "list": str(options.list_path) if options.list_path else None,
        "run_code": options.run_code,
        "protected_by": protected_by,  # the maker protect-run.json names; None: no record in the folder
        "senscats": str(options.senscats) if options.senscats else None,
        "privacy_criteria": (str(options.criteria) if options.criteria else
                             "protector/data/privacy_criteria.csv (the project's own judgement)") if senscats else None,
        "baselines": baseline_settings,
        "eps": eps,
        "eps_8bit": eps * 255 if eps else None,
        "eps_source": eps_source if eps is not None else None,
        "refine_steps": (protected_by or {}).get("refine_steps"),
        "edit": ({"protector": edit.protector, "strength": edit.strength, "strength_source": edit.strength_source}
                 if edit is not None else None),
        "ranked": "top-1 accuracy of the attack model on the saved files (lower is better)",
        "warnings": clean_accuracy_warnings(runs["protector"], attack_name,
                                            [options.list_path, options.labels, options.original])
        + (edit.warnings if edit is not None else []),
        "baseline_quality": options.quality if options.baselines else None,
        "views": ([v.name for v in _views(options)] if options.views is not None else None),
        "device": str(device),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
    return Evaluation(options, pairing, attack_name, {m: ("attack" if m == attack_name else "transfer") for m in models},
                      runs, categories, senscats, settings, criteria, edit, view_scores)


def _recorded_settings(protected_by: dict | None) -> ProtectionSettings | None:
    """The settings protect-run.json recorded; None without a record (or one this version cannot read)."""
    if not protected_by:
        return None
    try:
        return ProtectionSettings.from_record(protected_by)
    except (ValueError, TypeError):
        return None


def _views(options: EvaluateOptions) -> list[View]:
    """--views NAME...: those; --views alone: every view of :data:`EVALUATION_VIEWS`."""
    return [view_by_name(name) for name in options.views] if options.views else list(EVALUATION_VIEWS)


def _score_views(options: EvaluateOptions, pairing: Pairing, model: nn.Module, device: torch.device) -> list[ViewScore]:
    """Top-1/top-5 changed under each view, the originals re-saved at the run's quality as the control."""
    originals, protected = [], []
    for pair, pixels in _read_originals(pairing, list(pairing.pairs)):
        originals.append(pixels)
        protected.append(_decode(Path(options.protected) / pair.protected, pair.protected))
    return score_views(model, originals, protected, _views(options), device, options.quality, options.batch_size)


def clean_accuracy_warnings(run: RunEval, model: str, places: list[Path | None]) -> list[str]:
    """A warning when the photos are (a subset of) a task list and the clean top-1 there is far from the official model's."""
    lists = task_list_names(places)
    results = [(im.name, im.clean[model][0][0] == im.label) for im in run.images if im.label is not None]
    check = check_clean_accuracy(results, lists)
    return [check.warning(model)] if check is not None and check.far else []


def _clean_pass(pairing: Pairing, models: dict[str, nn.Module], nima: nn.Module | None,
                device: torch.device, batch_size: int) -> dict[str, _Clean]:
    out: dict[str, _Clean] = {}
    for chunk in _chunks(list(pairing.pairs), batch_size * 4):
        readable = _read_originals(pairing, chunk)
        originals = [pixels for _, pixels in readable]
        tops = {m: top_k(model, originals, device, batch_size=batch_size) for m, model in models.items()}
        scores = nima_mean_std(nima, originals, device, batch_size) if nima is not None else [None] * len(readable)
        for i, (pair, _) in enumerate(readable):
            out[pair.name] = _Clean({m: tops[m][i] for m in models}, scores[i])
    return out


def _score_run(name: str, folder_text: str, description: str, folder: Path, pairing: Pairing,
               clean: dict[str, _Clean], references: dict[str, int], models: dict[str, nn.Module],
               nima: nn.Module | None, device: torch.device, batch_size: int) -> RunEval:
    run = RunEval(name, folder_text, description)
    for chunk in _chunks(pairing.pairs, batch_size * 4):
        kept: list[tuple[Pair, np.ndarray, np.ndarray]] = []
        for pair in chunk:
            try:
                original = _decode(pairing.source.read_bytes(pair.name), pair.name)
            except (ImageReadError, SourceError, OSError) as err:  # readable in the clean pass, not now
                run.unreadable.append(f"original {err}")
                continue
            try:
                protected = _decode(folder / pair.protected, str(folder / pair.protected))
            except (ImageReadError, FileNotFoundError) as err:
                run.unreadable.append(str(err))
                continue
            if protected.shape != original.shape:
                run.unreadable.append(f"{folder / pair.protected}: {protected.shape[1]}x{protected.shape[0]} but the "
                                      f"original is {original.shape[1]}x{original.shape[0]}")
                continue
            kept.append((pair, original, protected))
        protected_images = [p for _, _, p in kept]
        tops = {m: top_k(model, protected_images, device, batch_size=batch_size) for m, model in models.items()}
        scores = nima_mean_std(nima, protected_images, device, batch_size) if nima is not None else [None] * len(kept)
        for i, (pair, original, protected) in enumerate(kept):
            run.images.append(ImageEval(
                name=pair.name, file=pair.protected, label=pair.label, reference=references[pair.name],
                width=original.shape[1], height=original.shape[0],
                clean=clean[pair.name].top, protected={m: tops[m][i] for m in models},
                fidelity=fidelity(original, protected),
                nima_clean=clean[pair.name].nima, nima_protected=scores[i],
            ))
    return run


def _make_baseline(spec, model: nn.Module, pairing: Pairing, references: dict[str, int], folder: Path,
                   options: EvaluateOptions, device: torch.device) -> float:
    total_seconds, count = 0.0, 0
    for chunk in _chunks(pairing.pairs, options.batch_size * 4):
        originals = [_decode(pairing.source.read_bytes(p.name), p.name) for p in chunk]
        seconds = run_baseline(spec, model, originals, [references[p.name] for p in chunk],
                               [p.protected for p in chunk], folder, options.quality, device, options.seed)
        total_seconds += seconds * len(chunk)
        count += len(chunk)
    return total_seconds / max(count, 1)
