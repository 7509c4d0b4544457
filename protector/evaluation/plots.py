"""PNG plots for the report (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from protector.evaluation.records import RunEval  # noqa: E402

# One colour per run, "before" always grey: the same in every plot.
BEFORE_COLOR = "#9aa0a6"
RUN_COLORS = ["#1a73e8", "#e8710a", "#188038", "#a142f4", "#d93025"]


def run_color(index: int) -> str:
    return RUN_COLORS[index % len(RUN_COLORS)]


def _save(fig: plt.Figure, path: Path) -> Path:
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def plot_overview(results: dict, attack_model: str, path: Path) -> Path:
    """Top-1/top-5 accuracy of the attack model before and after, per run."""
    runs = list(results["runs"])
    first = results["runs"][runs[0]]["models"][attack_model]
    groups = ["top-1", "top-5"]
    width = 0.8 / (len(runs) + 1)
    fig, ax = plt.subplots(figsize=(6.4, 3.4))
    for g, key in enumerate(("top1", "top5")):
        ax.bar(g, 100 * first[f"{key}_before"], width, color=BEFORE_COLOR, label="original" if g == 0 else None)
        for r, run in enumerate(runs):
            value = 100 * results["runs"][run]["models"][attack_model][f"{key}_after"]
            ax.bar(g + (r + 1) * width, value, width, color=run_color(r), label=run if g == 0 else None)
    for container in ax.containers:
        ax.bar_label(container, fmt="%.1f", fontsize=8, padding=2)
    ax.set_xticks([g + width * len(runs) / 2 for g in range(len(groups))], groups)
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 110)
    ax.set_title(f"Attack model accuracy on the saved files\n{attack_model}", fontsize=10)
    ax.legend(frameon=False, fontsize=8, ncol=len(runs) + 1, loc="upper center", bbox_to_anchor=(0.5, -0.12))
    ax.spines[["top", "right"]].set_visible(False)
    return _save(fig, path)


def plot_per_category(results: dict, path: Path) -> Path | None:
    """Top-1 accuracy per category: a row per class, grey dot before, a coloured dot per run after."""
    runs = list(results["runs"])
    rows = results["runs"][runs[0]]["per_category"]
    if not rows:
        return None
    names = [f"{row['name'].split('/', 2)[-1]} ({row['n']})" for row in rows]
    fig, ax = plt.subplots(figsize=(7.0, 0.2 * len(rows) + 1.3))
    ys = list(range(len(rows)))
    before = [100 * r["top1_before"] for r in rows]
    afters = []
    for run in runs:
        by_class = {r["class"]: r for r in results["runs"][run]["per_category"]}
        afters.append([100 * by_class[r["class"]]["top1_after"] if r["class"] in by_class else float("nan")
                       for r in rows])
    for y, b, *a in zip(ys, before, *afters):
        values = [v for v in (b, *a) if not math.isnan(v)]
        ax.hlines(y, min(values), max(values), color="#e0e0e0", lw=1, zorder=1)
    ax.scatter(before, ys, s=22, color=BEFORE_COLOR, label="original", zorder=2)
    for k, (run, values) in enumerate(zip(runs, afters)):
        ax.scatter(values, ys, s=22, color=run_color(k), label=run, zorder=3, alpha=0.9)
    ax.set_yticks(ys, names, fontsize=7)
    ax.set_ylim(len(rows) - 0.5, -0.5)
    ax.set_xlim(-3, 103)
    ax.set_xlabel("top-1 accuracy (%)")
    ax.set_title("Per-category top-1 accuracy (number of photos)", fontsize=10)
    ax.grid(axis="x", color="#f0f0f0")
    # Legend under the x label; its offset in axes units shrinks as the figure grows.
    ax.legend(frameon=False, fontsize=8, ncol=len(runs) + 1, loc="upper center",
              bbox_to_anchor=(0.5, -0.9 / (0.2 * len(rows) + 1.3)))
    ax.spines[["top", "right"]].set_visible(False)
    return _save(fig, path)


def plot_nima(runs: list[RunEval], path: Path) -> Path | None:
    """NIMA mean score of each photo, before (x) vs after (y); points above the line improved."""
    scored = [(k, run) for k, run in enumerate(runs) if any(im.nima_protected for im in run.images)]
    if not scored:
        return None
    fig, ax = plt.subplots(figsize=(4.8, 4.6))
    values = []
    for k, run in scored:
        xs = [im.nima_clean[0] for im in run.images if im.nima_protected]
        ys = [im.nima_protected[0] for im in run.images if im.nima_protected]
        values += xs + ys
        ax.scatter(xs, ys, s=12, alpha=0.6, color=run_color(k), label=run.name, edgecolors="none")
    low, high = math.floor(min(values) * 10) / 10 - 0.1, math.ceil(max(values) * 10) / 10 + 0.1
    ax.plot([low, high], [low, high], color="#5f6368", lw=1, ls="--")
    ax.set_xlim(low, high)
    ax.set_ylim(low, high)
    ax.set_aspect("equal")
    ax.set_xlabel("NIMA mean score, original")
    ax.set_ylabel("NIMA mean score, protected")
    ax.set_title("Appeal per photo (above the line: improved)", fontsize=10)
    ax.legend(frameon=False, fontsize=8)
    ax.spines[["top", "right"]].set_visible(False)
    return _save(fig, path)


def plot_psnr(runs: list[RunEval], path: Path) -> Path | None:
    """Distribution of per-photo PSNR for each run."""
    data = [(k, run, [im.fidelity.psnr for im in run.images if math.isfinite(im.fidelity.psnr)])
            for k, run in enumerate(runs)]
    data = [d for d in data if d[2]]
    if not data:
        return None
    fig, ax = plt.subplots(figsize=(5.6, 3.2))
    lo = min(min(v) for _, _, v in data)
    hi = max(max(v) for _, _, v in data)
    bins = 30 if hi > lo else 1
    for k, run, values in data:
        ax.hist(values, bins=bins, range=(lo, hi) if hi > lo else None, alpha=0.55, color=run_color(k), label=run.name)
    ax.set_xlabel("PSNR of the saved file vs the original (dB)")
    ax.set_ylabel("photos")
    ax.set_title("Fidelity per photo", fontsize=10)
    ax.legend(frameon=False, fontsize=8)
    ax.spines[["top", "right"]].set_visible(False)
    return _save(fig, path)


LEAK_MEASURES = (("top1_sensitive", "top-1 sensitive"), ("topk_sensitive", "sensitive in top-5"),
                 ("still_in_criterion_top1", "top-1 same criterion"))


def plot_leakage(results: dict, attack_model: str, path: Path) -> Path | None:
    """Privacy leakage per criterion: one small bar chart per criterion, a bar per run and measure.

    Over the photos whose clean top-1 meets the criterion: the share whose protected top-1 is
    still sensitive, that still have a sensitive class in the top-5, and whose top-1 still
    meets this criterion. Lower is better; None without leakage numbers.
    """
    runs = [r for r in results["runs"] if (results["runs"][r].get("leakage") or {}).get(attack_model)]
    if not runs:
        return None
    first = results["runs"][runs[0]]["leakage"][attack_model]
    criteria = [row["criterion"] for row in first["per_criterion"]]
    if not criteria:
        return None
    columns = min(5, len(criteria))
    rows = math.ceil(len(criteria) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(2.3 * columns, 2.1 * rows + 0.5), sharey=True, squeeze=False)
    width = 0.8 / len(runs)
    for ax, criterion in zip(axes.flat, criteria):
        n = None
        for r, run in enumerate(runs):
            leak = results["runs"][run]["leakage"][attack_model]
            row = {r["criterion"]: r for r in leak["per_criterion"]}.get(criterion)
            if row is None:
                continue
            n = row["n"]
            values = [100 * (row[key] or 0.0) for key, _ in LEAK_MEASURES]
            ax.bar([m + r * width for m in range(len(LEAK_MEASURES))], values, width, color=run_color(r),
                   label=run)
        ax.set_title(f"{criterion.replace('_', ' ')} ({n})", fontsize=9)
        ax.set_xticks([m + width * (len(runs) - 1) / 2 for m in range(len(LEAK_MEASURES))],
                      [label for _, label in LEAK_MEASURES], fontsize=6, rotation=30, ha="right")
        ax.set_ylim(0, 105)
        ax.tick_params(axis="y", labelsize=7)
        ax.spines[["top", "right"]].set_visible(False)
    for ax in list(axes.flat)[len(criteria):]:
        ax.axis("off")
    for ax in axes[:, 0]:
        ax.set_ylabel("photos (%)", fontsize=8)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, frameon=False, fontsize=8, ncol=len(runs), loc="lower center")
    fig.suptitle(f"Privacy leakage per criterion of the clean prediction (photos), lower is better\n{attack_model}",
                 fontsize=10)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    return _save(fig, path)


def plot_views(results: dict, path: Path) -> Path | None:
    """Top-1/top-5 changed per view (``evaluate --views``), the JPEG control beside; None without views."""
    views = results.get("views")
    if not views:
        return None
    names = [v["view"] for v in views]
    width = 0.27
    fig, ax = plt.subplots(figsize=(max(6.4, 0.9 * len(names) + 1.5), 3.4))
    positions = range(len(names))
    series = (("top-1 changed", "top1_changed", run_color(0)), ("top-5 changed", "top5_changed", run_color(1)),
              ("control: re-saved JPEG, top-1", "control_top1_changed", BEFORE_COLOR))
    for offset, (label, key, color) in enumerate(series):
        ax.bar([p + (offset - 1) * width for p in positions], [100 * v[key] for v in views], width, color=color,
               label=label)
    for container in ax.containers:
        ax.bar_label(container, fmt="%.0f", fontsize=7, padding=2)
    ax.set_xticks(list(positions), names, rotation=25, ha="right", fontsize=8)
    ax.set_ylabel("photos (%)")
    ax.set_ylim(0, 110)
    ax.set_title("Changed under each view, against the original under the same view", fontsize=10)
    ax.legend(frameon=False, fontsize=8, ncol=3, loc="upper center", bbox_to_anchor=(0.5, -0.3))
    ax.spines[["top", "right"]].set_visible(False)
    return _save(fig, path)
