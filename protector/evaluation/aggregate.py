"""Turn per-photo records into the numbers of a report: accuracy, fooling, fidelity, appeal."""

from __future__ import annotations

import math
from statistics import fmean

from protector.evaluation.records import ImageEval


def _rate(flags: list[bool]) -> float | None:
    return sum(flags) / len(flags) if flags else None


def _in_top(top: list[tuple[int, float]], cls: int, k: int) -> bool:
    return any(index == cls for index, _ in top[:k])


def accuracy(images: list[ImageEval], model: str) -> dict:
    """Top-1/top-5 accuracy before and after, and fooling rates, for one model.

    Accuracy is measured against ground truth where known, else against the model's own
    clean prediction (then clean top-1 accuracy is 100% by construction); the counts of
    each kind are reported. ``fooling_rate_top1``: protected top-1 differs from clean
    top-1. ``fooling_rate_top5``: clean top-1 is not in the protected top-5.
    """
    refs = [im.reference_for(model) for im in images]
    return {
        "n": len(images),
        "labels_ground_truth": sum(im.label is not None for im in images),
        "labels_clean_prediction": sum(im.label is None for im in images),
        "top1_before": _rate([_in_top(im.clean[model], r, 1) for im, r in zip(images, refs)]),
        "top1_after": _rate([_in_top(im.protected[model], r, 1) for im, r in zip(images, refs)]),
        "top5_before": _rate([_in_top(im.clean[model], r, 5) for im, r in zip(images, refs)]),
        "top5_after": _rate([_in_top(im.protected[model], r, 5) for im, r in zip(images, refs)]),
        "fooling_rate_top1": _rate([im.protected[model][0][0] != im.clean[model][0][0] for im in images]),
        "fooling_rate_top5": _rate([not _in_top(im.protected[model], im.clean[model][0][0], 5) for im in images]),
    }


def per_category(images: list[ImageEval], model: str, classes: dict[int, str]) -> list[dict]:
    """Accuracy before/after per class of `classes` (e.g. the 60 sensitive ones), by reference label."""
    rows = []
    for cls, name in classes.items():
        members = [im for im in images if im.reference_for(model) == cls]
        if not members:
            continue
        row = accuracy(members, model)
        rows.append({"class": cls, "name": name, **{k: row[k] for k in (
            "n", "top1_before", "top1_after", "top5_before", "top5_after", "fooling_rate_top1")}})
    return rows


def _mean(values: list[float]) -> float | None:
    return fmean(values) if values else None


def fidelity_summary(images: list[ImageEval]) -> dict:
    """Means over photos. PSNR is averaged over photos that differ (identical ones are counted)."""
    finite_psnr = [im.fidelity.psnr for im in images if math.isfinite(im.fidelity.psnr)]
    ssim = [im.fidelity.ssim for im in images if im.fidelity.ssim is not None]
    return {
        "psnr_mean": _mean(finite_psnr),
        "psnr_min": min(finite_psnr) if finite_psnr else None,
        "identical_images": sum(not math.isfinite(im.fidelity.psnr) for im in images),
        "ssim_mean": _mean(ssim),
        "ciede2000_mean": _mean([im.fidelity.ciede2000 for im in images]),
        "max_delta_8bit": max((im.fidelity.max_delta_8bit for im in images), default=None),
    }


def appeal_summary(images: list[ImageEval]) -> dict | None:
    """NIMA mean score before/after and the mean per-photo difference; None without NIMA."""
    scored = [im for im in images if im.nima_clean is not None and im.nima_protected is not None]
    if not scored:
        return None
    before = [im.nima_clean[0] for im in scored]
    after = [im.nima_protected[0] for im in scored]
    return {
        "n": len(scored),
        "nima_before_mean": fmean(before),
        "nima_after_mean": fmean(after),
        "nima_diff_mean": fmean(a - b for a, b in zip(after, before)),
        "nima_std_before_mean": fmean(im.nima_clean[1] for im in scored),
        "nima_std_after_mean": fmean(im.nima_protected[1] for im in scored),
        "improved": sum(a > b for a, b in zip(after, before)),
    }
