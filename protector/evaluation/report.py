"""Write an evaluation as ``results.json``, ``summary.md`` and a one-page ``report.html``.

The HTML page is what a person judges a run by: headline numbers, the comparison with the
baselines, plots, the per-category table, the privacy leakage (with ``--senscats``) and a
gallery of originals beside their protected files with the attack model's top-5 before and
after (as in Figure 1 of the Pixel Privacy 2018 overview); for an appeal protector (``evaluate
--protector``) the NIMA change split into the edit's and the perturbation's, and the edit alone
between original and protected in the gallery. Images and plots are files beside the page,
linked relatively, so the folder can be moved or zipped as a whole.
"""

from __future__ import annotations

import html
import json
import math
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from PIL import Image

from protector.evaluation.run import Evaluation
from protector.evaluation import plots
from protector.evaluation.records import ImageEval
from protector.evaluation.shareable import shareable
from protector.images import encode_photo, read_photo, write_atomic

GALLERY_MAX_SIDE = 1024  # larger photos are shown downscaled (noted under the image)


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def _num(value: float | None, digits: int = 2, unit: str = "") -> str:
    return "n/a" if value is None else f"{value:.{digits}f}{unit}"


def _signed(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:+.{digits}f}"


def write_report(evaluation: Evaluation, out_dir: str | Path) -> dict[str, Path]:
    """Write every output of an evaluation into `out_dir`; returns their paths by kind."""
    out_dir = Path(out_dir)
    (out_dir / "plots").mkdir(parents=True, exist_ok=True)
    results = shareable(evaluation.summary())  # shared as it is: no machine paths
    results["created"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    paths = {"results": out_dir / "results.json"}
    write_atomic(paths["results"], json.dumps(results, indent=2, allow_nan=False).encode("utf-8"), overwrite=True)

    runs = list(evaluation.runs.values())
    figures = {
        "overview": plots.plot_overview(results, evaluation.attack_model, out_dir / "plots" / "accuracy.png"),
        "per_category": plots.plot_per_category(results, out_dir / "plots" / "per_category.png"),
        "nima": plots.plot_nima(runs, out_dir / "plots" / "nima_scatter.png"),
        "psnr": plots.plot_psnr(runs, out_dir / "plots" / "psnr.png"),
        "leakage": plots.plot_leakage(results, evaluation.attack_model, out_dir / "plots" / "leakage.png"),
        "views": plots.plot_views(results, out_dir / "plots" / "views.png"),
    }
    paths.update({k: v for k, v in figures.items() if v is not None})
    gallery = _write_gallery(evaluation, out_dir / "gallery")
    paths["summary"] = out_dir / "summary.md"
    write_atomic(paths["summary"], _markdown(evaluation, results).encode("utf-8"), overwrite=True)
    paths["html"] = out_dir / "report.html"
    page = _html(evaluation, results, {k: v.relative_to(out_dir).as_posix() for k, v in figures.items() if v}, gallery)
    write_atomic(paths["html"], page.encode("utf-8"), overwrite=True)
    return paths


# ---------------------------------------------------------------- gallery


def _outcome(im: ImageEval, model: str) -> str:
    """'fooled' (recognized before, not after), 'recognized' (still top-1) or 'already wrong'."""
    reference = im.reference_for(model)
    if im.protected[model][0][0] == reference:
        return "recognized"
    return "fooled" if im.clean[model][0][0] == reference else "already wrong"


def select_examples(images: list[ImageEval], model: str, count: int) -> list[ImageEval]:
    """A deterministic spread of examples: mostly fooled photos, about a third still recognized.

    Photos the model got wrong even before protection fill in only when the others run out.
    Within each group photos are taken evenly spaced in name order, so the gallery does not
    cherry-pick the best or worst cases.
    """
    if count <= 0 or not images:
        return []
    ordered = sorted(images, key=lambda im: im.name)
    groups = {kind: [im for im in ordered if _outcome(im, model) == kind]
              for kind in ("fooled", "recognized", "already wrong")}
    wanted = {"recognized": min(len(groups["recognized"]), max(count // 3, 1))}
    wanted["fooled"] = min(len(groups["fooled"]), count - wanted["recognized"])
    wanted["recognized"] = min(len(groups["recognized"]), count - wanted["fooled"])
    wanted["already wrong"] = min(len(groups["already wrong"]), count - wanted["fooled"] - wanted["recognized"])

    def spread(group: list[ImageEval], n: int) -> list[ImageEval]:
        if n <= 0:
            return []
        if n == 1:
            return [group[len(group) // 2]]
        return [group[round(i * (len(group) - 1) / (n - 1))] for i in range(n)]

    return [im for kind in ("fooled", "recognized", "already wrong") for im in spread(groups[kind], wanted[kind])]


def _display(pixels: np.ndarray) -> tuple[np.ndarray, bool]:
    height, width = pixels.shape[:2]
    if max(height, width) <= GALLERY_MAX_SIDE:
        return pixels, False
    scale = GALLERY_MAX_SIDE / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return np.asarray(Image.fromarray(pixels).resize(size, Image.Resampling.LANCZOS)), True


def _write_gallery(evaluation: Evaluation, folder: Path) -> list[dict]:
    run = evaluation.runs["protector"]
    chosen = select_examples(run.images, evaluation.attack_model, evaluation.options.gallery)
    folder.mkdir(parents=True, exist_ok=True)
    cards = []
    for i, im in enumerate(chosen):
        original = read_photo(evaluation.pairing.source.read_bytes(im.name), name=im.name).pixels
        protected = read_photo(Path(run.folder) / im.file).pixels
        shown_images = [("original", original)]
        reference = original
        if evaluation.edit is not None:  # the budget is measured from the edit: show it, and the difference to it
            reference = evaluation.edit.edit([original])[0]
            shown_images.append(("enhanced", reference))
        delta = protected.astype(np.int16) - reference.astype(np.int16)
        gain = max(1, 127 // max(int(np.abs(delta).max()), 1))
        amplified = np.clip(128 + delta * gain, 0, 255).astype(np.uint8)
        shown_images += [("protected", protected), ("difference", amplified)]
        files = {}
        scaled = False
        for kind, pixels in shown_images:
            shown, scaled = _display(pixels)
            files[kind] = f"gallery/{i:03d}_{kind}.png"
            # PNG keeps the decoded pixels exactly: what is shown is what the classifier saw.
            write_atomic(folder.parent / files[kind], encode_photo(shown, "png"), overwrite=True)
        cards.append({"image": im, "files": files, "gain": gain, "scaled": scaled})
    return cards


def _top5_html(evaluation: Evaluation, top: list[tuple[int, float]], reference: int) -> str:
    items = []
    for cls, prob in top[:5]:
        mark = ' class="ref"' if cls == reference else ""
        items.append(f"<li{mark}><span>{html.escape(evaluation.class_name(cls))}</span>"
                     f"<span class=\"prob\">{100 * prob:.1f}%</span>"
                     f"<span class=\"bar\" style=\"width:{max(1, round(100 * prob))}%\"></span></li>")
    return "<ol>" + "".join(items) + "</ol>"


# ---------------------------------------------------------------- markdown


def _comparison_rows(evaluation: Evaluation, results: dict) -> list[list[str]]:
    rows = []
    model = evaluation.attack_model
    for name, run in results["runs"].items():
        acc = run["models"][model]
        fid = run["fidelity"]
        app = run["appeal"] or {}
        speed = run["seconds_per_image"]
        rows.append([
            name, str(run["n_images"]),
            f"{_pct(acc['top1_before'])} → {_pct(acc['top1_after'])}",
            f"{_pct(acc['top5_before'])} → {_pct(acc['top5_after'])}",
            _pct(acc["fooling_rate_top1"]), _pct(acc["fooling_rate_top5"]),
            _num(fid["psnr_mean"], 2, " dB"), _num(fid["ssim_mean"], 4), _num(fid["ciede2000_mean"], 3),
            str(fid["max_delta_8bit"]),
            (f"{_num(app.get('nima_before_mean'), 3)} → {_num(app.get('nima_after_mean'), 3)} "
             f"({_signed(app.get('nima_diff_mean'))})") if app else "not measured",
            _num(speed, 3, " s") if speed is not None else "",
        ])
    return rows


COMPARISON_HEADER = ["run", "photos", "top-1 acc.", "top-5 acc.", "changed (top-1)", "changed (top-5)", "PSNR",
                     "SSIM", "CIEDE2000", "max |Δ| (8-bit)", "NIMA before → after (Δ)", "attack s/img"]


EDIT_SPLIT_HEADER = ["photos", "NIMA original", "NIMA edit alone", "NIMA protected", "edit change",
                     "perturbation change", "PSNR vs edit", "PSNR vs original", "SSIM vs edit", "max |Δ| vs edit (8-bit)"]
EDIT_SPLIT_NOTE = ("The protector edits each photo (tone curves, strength {strength:g} from {strength_source}) and adds "
                   "its perturbation around the edit. The edit alone is recomputed from each original with "
                   "{protector}: edit change = NIMA(edit) − NIMA(original); perturbation change = NIMA(protected "
                   "file) − NIMA(edit), the perturbation and the file's encoding together. PSNR, SSIM and max |Δ| "
                   "vs edit measure the file against the photo its budget is measured from.")


def _edit_split_rows(results: dict) -> tuple[dict, list[list[str]]] | None:
    """(the split's settings, its one table row) for the protector run; None without an edit."""
    run = results["runs"]["protector"]
    split = run.get("edit_split")
    if not split:
        return None
    row = [str(split["n"]), _num(split["nima_original_mean"], 3), _num(split["nima_edit_mean"], 3),
           _num(split["nima_protected_mean"], 3), _signed(split["edit_change_mean"]),
           _signed(split["perturbation_change_mean"]), _num(split["psnr_vs_edit_mean"], 2, " dB"),
           _num(run["fidelity"]["psnr_mean"], 2, " dB"), _num(split["ssim_vs_edit_mean"], 4),
           str(split["max_delta_8bit_vs_edit"])]
    return split, [row]


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _transfer_rows(results: dict) -> tuple[list[str], list[list[str]]]:
    runs = list(results["runs"])
    models = [m for m, v in results["runs"][runs[0]]["models"].items() if v["role"] == "transfer"]
    header = ["transfer model", "top-1 before"] + [f"top-1 after ({r})" for r in runs]
    rows = []
    for m in models:
        first = results["runs"][runs[0]]["models"][m]
        rows.append([m, _pct(first["top1_before"])] + [_pct(results["runs"][r]["models"][m]["top1_after"]) for r in runs])
    return header, rows


def _markdown(evaluation: Evaluation, results: dict) -> str:
    s = results["settings"]
    parts = [
        "# Protection evaluation",
        "",
        *[f"> **Warning:** {w}" for w in s.get("warnings", [])],
        *([""] if s.get("warnings") else []),
        f"**{verdict(evaluation, results)}**",
        "",
        f"- protected files: `{s.get('protected') or evaluation.options.protected}`"
        + (f" (run code `{s['run_code']}`)" if s["run_code"] else ""),
        f"- {FOOLED_MEANING}",
        f"- {coverage_line(results)}",
        f"- attack model: {s['attack_model']}; {s['classification']}",
        f"- labels: {s['labels']}",
        f"- fidelity: {s['fidelity_implementation']}",
        f"- appeal: {s['nima'] or 'NIMA not measured (pass --nima WEIGHTS)'}",
        f"- the task ranks: {s['ranked']}",
        "- budget: " + (f"eps {s['eps_8bit']:.2f}/255 (from {s['eps_source']})" if s["eps"] else "not known (no --eps, "
                        "no protect-run.json in the protected folder)")
        + (f"; refine steps {s['refine_steps']}" if s.get("refine_steps") is not None else ""),
    ]
    if s["baselines"]:
        parts.append(f"- baselines (saved as the protected files' format, quality {s['baseline_quality']}): "
                     + "; ".join(f"{k}: {v}" for k, v in s["baselines"].items()))
    parts += ["", "## Results", "", _md_table(COMPARISON_HEADER, _comparison_rows(evaluation, results)), ""]
    split = _edit_split_rows(results)
    if split:
        parts += ["## Appeal: the edit and the perturbation", "", EDIT_SPLIT_NOTE.format(**split[0]), "",
                  _md_table(EDIT_SPLIT_HEADER, split[1]), ""]
    header, rows = _transfer_rows(results)
    if rows:
        parts += ["## Transfer", "", _md_table(header, rows), ""]
    runs = list(results["runs"])
    per_category = results["runs"][runs[0]]["per_category"]
    if per_category:
        title = "sensitive categories" if evaluation.senscats else "categories"
        header = ["class", "name", "photos", "top-1 before"] + [f"top-1 after ({r})" for r in runs]
        by_run = {r: {row["class"]: row for row in results["runs"][r]["per_category"]} for r in runs}
        rows = [[str(row["class"]), row["name"], str(row["n"]), _pct(row["top1_before"])]
                + [_pct(by_run[r].get(row["class"], {}).get("top1_after")) for r in runs] for row in per_category]
        parts += [f"## Per-category top-1 accuracy ({title}, {evaluation.attack_model})", "", _md_table(header, rows), ""]
    views = _views_table(results)
    if views:
        parts += [f"## Under each view ({evaluation.attack_model})", "", VIEWS_NOTE, "", _md_table(*views), ""]
    leakage = _leakage_tables(evaluation, results)
    if leakage:
        parts += [f"## Privacy leakage ({evaluation.attack_model})", "",
                  LEAKAGE_NOTE.format(criteria=s["privacy_criteria"]), "", _md_table(leakage[0][1], leakage[0][2]), ""]
        for title, header, rows in leakage[1:]:
            parts += [f"### {title}", "", _md_table(header, rows), ""]
    problems = _problems(evaluation, results)
    if problems:
        parts += ["## Problems", ""] + [f"- {p}" for p in problems] + [""]
    return "\n".join(parts)


VIEWS_NOTE = ("What a classifier sees after sharing: the file resized (shorter side), centre-cropped, or uploaded to "
              "a platform (longer side, JPEG quality) and then resized. \"Changed\": the top-1 differs from the "
              "original's under the same view (top-5: the original's top-1 is out of the top 5). The control is the "
              "original re-saved as JPEG: what re-encoding alone changes.")


def _views_table(results: dict) -> tuple[list[str], list[list[str]]] | None:
    """(header, rows) of ``evaluate --views``; None without it."""
    views = results.get("views")
    if not views:
        return None
    rows = [[v["view"], str(v["photos"]), _pct(v["top1_changed"]), _pct(v["top5_changed"]),
             _pct(v["control_top1_changed"])] for v in views]
    return ["view", "photos", "top-1 changed", "top-5 changed", "control top-1 changed"], rows


def _leakage_tables(evaluation: Evaluation, results: dict) -> list[tuple[str, list[str], list[list[str]]]]:
    """(title, header, rows) of the privacy-leakage tables for the attack model; [] without --senscats."""
    model = evaluation.attack_model
    leaks = {r: (run.get("leakage") or {}).get(model) for r, run in results["runs"].items()}
    leaks = {r: leak for r, leak in leaks.items() if leak}
    if not leaks:
        return []
    k = next(iter(leaks.values()))["k"]
    overview = [[r, str(leak["sensitive"]["n"]), _pct(leak["sensitive"]["top1_sensitive"]),
                 _pct(leak["sensitive"]["topk_sensitive"]), _pct(leak["sensitive"]["same_criterion_top1"]),
                 _pct(leak["sensitive"]["same_criterion_topk"]), str(leak["other"]["n"]),
                 _pct(leak["other"]["top1_sensitive"]), _pct(leak["other"]["topk_sensitive"])]
                for r, leak in leaks.items()]
    overview_header = ["run", "photos predicted sensitive", "top-1 still sensitive", f"sensitive in top-{k}",
                       "top-1 same criterion", f"same criterion in top-{k}", "photos predicted not sensitive",
                       "→ top-1 sensitive", f"→ sensitive in top-{k}"]
    first = next(iter(leaks.values()))
    by_criterion = {r: {row["criterion"]: row for row in leak["per_criterion"]} for r, leak in leaks.items()}
    criterion_rows = [[row["criterion"].replace("_", " "), str(row["n"])]
                      + [cell for r in leaks for cell in (
                          _pct(by_criterion[r].get(row["criterion"], {}).get("top1_sensitive")),
                          _pct(by_criterion[r].get(row["criterion"], {}).get("still_in_criterion_top1")))]
                      for row in first["per_criterion"]]
    criterion_header = ["criterion", "photos"] + [h for r in leaks for h in (
        f"top-1 sensitive ({r})", f"top-1 still this criterion ({r})")]
    by_category = {r: {row["class"]: row for row in leak["per_category"]} for r, leak in leaks.items()}
    category_rows = [[str(row["class"]), row["name"], "; ".join(row["criteria"]), str(row["n"])]
                     + [cell for r in leaks for cell in (
                         _pct(by_category[r].get(row["class"], {}).get("top1_sensitive")),
                         _pct(by_category[r].get(row["class"], {}).get("topk_sensitive")))]
                     for row in first["per_category"]]
    category_header = ["class", "name", "criteria", "photos"] + [h for r in leaks for h in (
        f"top-1 sensitive ({r})", f"sensitive in top-{k} ({r})")]
    return [("Privacy leakage", overview_header, overview),
            ("Leakage per privacy criterion of the clean prediction", criterion_header, criterion_rows),
            ("Leakage per sensitive category of the clean prediction", category_header, category_rows)]


LEAKAGE_NOTE = ("Photos are grouped by the attack model's clean top-1. Of those predicted in a sensitive "
                "category: how often the protected file is still predicted in one (top-1, or anywhere in the "
                "top-5), and still in a privacy criterion of the clean prediction. Photos predicted outside the "
                "list are reported apart: how often protection moved them into it. Lower is better. Criteria: "
                "{criteria}.")


_LISTED = 50  # missing files named in summary.md and the page; results.json names them all


def coverage_line(results: dict) -> str:
    """'scored 1 of 4 originals (every original in --original): 3 have no protected file, ...'."""
    c = results["coverage"]
    scored = results["runs"]["protector"]["n_images"]
    gaps = [f"{c[key]} {what}" for key, what in (("missing", "have no protected file"),
                                                  ("ambiguous", "have two protected files"),
                                                  ("unreadable_originals", "cannot be read")) if c[key]]
    unreadable = len(results["runs"]["protector"]["unreadable"])
    if unreadable:
        gaps.append(f"{unreadable} protected file(s) cannot be read")
    return (f"scored {scored} of {c['originals']} originals ({c['of']})"
            + (": " + ", ".join(gaps) + " (see Problems)" if gaps else ""))


def _problems(evaluation: Evaluation, results: dict) -> list[str]:
    problems = [f"warning: {w}" for w in results["settings"].get("warnings", [])]
    missing = results["missing"]
    problems += [f"missing protected file: {m}" for m in missing[:_LISTED]]
    if len(missing) > _LISTED:
        problems.append(f"... and {len(missing) - _LISTED} more missing protected files (all named in results.json)")
    problems += [f"unreadable original: {u}" for u in results.get("unreadable_originals", [])]
    problems += [f"protected file without an original: {u}" for u in results["unmatched"]]
    problems += [f"ambiguous: {a}" for a in results["ambiguous"]]
    for name, run in results["runs"].items():
        problems += [f"{name}: unreadable: {u}" for u in run["unreadable"]]
    return problems


# ---------------------------------------------------------------- html

_CSS = """
:root { --fg:#202124; --muted:#5f6368; --line:#dadce0; --bg:#f8f9fa; --accent:#1a73e8; --good:#188038; --bad:#d93025; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg); margin: 0; background: #fff; }
main { max-width: 1200px; margin: 0 auto; padding: 24px 28px 64px; }
h1 { font-size: 24px; margin: 0 0 4px; } h2 { font-size: 18px; margin: 36px 0 12px; border-bottom: 1px solid var(--line); padding-bottom: 6px; }
.sub { color: var(--muted); margin: 0 0 20px; }
.cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(200px, 1fr)); gap: 12px; }
.card { background: var(--bg); border: 1px solid var(--line); border-radius: 10px; padding: 12px 14px; }
.card .k { color: var(--muted); font-size: 12px; text-transform: uppercase; letter-spacing: .04em; }
.card .v { font-size: 20px; font-weight: 600; margin-top: 2px; white-space: nowrap; }
.card .d { color: var(--muted); font-size: 12px; }
table { border-collapse: collapse; width: 100%; font-size: 13px; }
th, td { padding: 6px 8px; border-bottom: 1px solid var(--line); text-align: right; white-space: nowrap; }
th:first-child, td:first-child { text-align: left; }
th { background: var(--bg); font-weight: 600; white-space: normal; vertical-align: bottom; }
.scroll { overflow-x: auto; }
.plots { display: grid; grid-template-columns: repeat(auto-fit, minmax(420px, 1fr)); gap: 16px; align-items: start; }
.plots img { width: 100%; border: 1px solid var(--line); border-radius: 8px; }
img.wide { display: block; width: 100%; max-width: 760px; border: 1px solid var(--line); border-radius: 8px; }
.gallery { display: grid; gap: 18px; }
.example { border: 1px solid var(--line); border-radius: 10px; padding: 12px; }
.example h3 { font-size: 14px; margin: 0 0 8px; font-weight: 600; }
.example h3 .tag { font-size: 12px; font-weight: 600; padding: 1px 8px; border-radius: 10px; margin-left: 6px; }
.tag.fooled { background: #e6f4ea; color: var(--good); } .tag.kept { background: #fce8e6; color: var(--bad); }
.tag.wrong { background: #f1f3f4; color: var(--muted); }
.triple { display: grid; grid-template-columns: repeat(3, 1fr); gap: 10px; }
.quad { display: grid; grid-template-columns: repeat(4, 1fr); gap: 10px; }
.triple figure, .quad figure { margin: 0; }
.triple img, .quad img { width: 100%; image-rendering: auto; border-radius: 4px; display: block; }
figcaption { font-size: 12px; color: var(--muted); margin: 4px 0; }
ol { margin: 4px 0 0; padding: 0; list-style: none; }
ol li { position: relative; display: flex; justify-content: space-between; padding: 1px 6px; font-size: 12px; }
ol li .bar { position: absolute; left: 0; top: 0; bottom: 0; background: rgba(26,115,232,.13); z-index: -1; border-radius: 3px; }
ol li { z-index: 0; } ol li.ref { font-weight: 700; }
.prob { color: var(--muted); margin-left: 8px; }
details { margin-top: 8px; } summary { cursor: pointer; color: var(--accent); }
code { background: var(--bg); padding: 1px 4px; border-radius: 4px; font-size: 12px; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: 4px 16px; font-size: 13px; }
dt { color: var(--muted); } dd { margin: 0; word-break: break-word; }
.problems li { color: var(--bad); }
.warnbox { border: 1px solid #f9ab00; border-left: 6px solid #f9ab00; background: #fef7e0; border-radius: 8px;
  padding: 10px 14px; margin: 10px 0; }
.warnbox strong { color: #b06000; margin-right: 6px; }
.verdict { font-size: 16px; font-weight: 600; margin: 12px 0 4px; }
"""


def _cards(evaluation: Evaluation, results: dict) -> str:
    run = results["runs"]["protector"]
    acc = run["models"][evaluation.attack_model]
    fid = run["fidelity"]
    app = run["appeal"]
    cards = [
        ("top-1 accuracy", f"{_pct(acc['top1_before'])} → {_pct(acc['top1_after'])}", "attack model, saved files"),
        ("top-5 accuracy", f"{_pct(acc['top5_before'])} → {_pct(acc['top5_after'])}", ""),
        *_fooled_cards(evaluation, acc),
        ("PSNR", _num(fid["psnr_mean"], 2, " dB"), f"min {_num(fid['psnr_min'], 2, ' dB')}"),
        ("SSIM", _num(fid["ssim_mean"], 4), f"CIEDE2000 {_num(fid['ciede2000_mean'], 3)}"),
        ("max |Δ|", f"{fid['max_delta_8bit']}", "8-bit levels, file vs original"),
    ]
    leak = (run.get("leakage") or {}).get(evaluation.attack_model)
    if leak and leak["sensitive"]["n"]:
        cards.append(("still sensitive", _pct(leak["sensitive"]["top1_sensitive"]),
                      f"top-1 of {leak['sensitive']['n']} photos predicted sensitive; "
                      f"top-{leak['k']}: {_pct(leak['sensitive']['topk_sensitive'])}"))
    if app:
        cards.append(("NIMA", f"{app['nima_before_mean']:.3f} → {app['nima_after_mean']:.3f}",
                      f"Δ {app['nima_diff_mean']:+.3f}; {app['improved']}/{app['n']} improved"))
    split = run.get("edit_split")
    if split and split["edit_change_mean"] is not None:
        cards.append(("NIMA split", f"{split['edit_change_mean']:+.3f} / {split['perturbation_change_mean']:+.3f}",
                      f"edit / perturbation and file encoding; edit alone {split['nima_edit_mean']:.3f}"))
    if split:
        cards.append(("PSNR vs edit", _num(split["psnr_vs_edit_mean"], 2, " dB"),
                      f"max |Δ| {split['max_delta_8bit_vs_edit']}, the budget's reference"))
    return "<div class=\"cards\">" + "".join(
        f"<div class=\"card\"><div class=\"k\">{html.escape(k)}</div><div class=\"v\">{html.escape(v)}</div>"
        f"<div class=\"d\">{html.escape(d)}</div></div>" for k, v, d in cards) + "</div>"


def _html_table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<div class=\"scroll\"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>"


def _gallery_html(evaluation: Evaluation, cards: list[dict]) -> str:
    model = evaluation.attack_model
    out = []
    for card in cards:
        im: ImageEval = card["image"]
        reference = im.reference_for(model)
        outcome = _outcome(im, model)
        tag = {"fooled": '<span class="tag fooled">fooled</span>',
               "recognized": '<span class="tag kept">still recognized</span>',
               "already wrong": '<span class="tag wrong">wrong already before protection</span>'}[outcome]
        truth = ("ground truth" if im.label is not None else "clean prediction") + f": {evaluation.class_name(reference)}"
        split = evaluation.edit.photos.get(im.name) if evaluation.edit is not None else None
        nima = ""
        if split and split.nima_edit is not None and im.nima_clean and im.nima_protected:
            nima = f" · NIMA {im.nima_clean[0]:.2f} → {split.nima_edit:.2f} (edit) → {im.nima_protected[0]:.2f}"
        elif im.nima_clean and im.nima_protected:
            nima = f" · NIMA {im.nima_clean[0]:.2f} → {im.nima_protected[0]:.2f}"
        if split:
            vs_edit = split.against_edit
            nima += (f" · vs edit: PSNR {'∞' if not math.isfinite(vs_edit.psnr) else f'{vs_edit.psnr:.1f} dB'}, "
                     f"max |Δ| {vs_edit.max_delta_8bit}")
        scaled = " · shown downscaled" if card["scaled"] else ""
        f = im.fidelity
        psnr = "∞" if not math.isfinite(f.psnr) else f"{f.psnr:.1f} dB"
        files = card["files"]
        enhanced = ""
        if "enhanced" in files:
            enhanced = (f"<figure><a href=\"{files['enhanced']}\"><img src=\"{files['enhanced']}\" alt=\"enhanced\" "
                        "loading=\"lazy\"></a><figcaption>enhanced (the edit alone, recomputed; the budget's "
                        "reference)</figcaption></figure>")
        against = " to the enhanced photo," if enhanced else ""
        out.append(
            f"<div class=\"example\"><h3>{html.escape(im.name)} {tag}</h3>"
            f"<figcaption>{html.escape(truth)} · {im.width}×{im.height} · PSNR {psnr} · max |Δ| "
            f"{f.max_delta_8bit}{html.escape(nima)}{scaled}</figcaption>"
            f"<div class=\"{'quad' if enhanced else 'triple'}\">"
            f"<figure><a href=\"{files['original']}\"><img src=\"{files['original']}\" alt=\"original\" loading=\"lazy\"></a>"
            f"<figcaption>original — top-5</figcaption>{_top5_html(evaluation, im.clean[model], reference)}</figure>"
            f"{enhanced}"
            f"<figure><a href=\"{files['protected']}\"><img src=\"{files['protected']}\" alt=\"protected\" loading=\"lazy\"></a>"
            f"<figcaption>protected (decoded from {html.escape(im.file)}) — top-5</figcaption>"
            f"{_top5_html(evaluation, im.protected[model], reference)}</figure>"
            f"<figure><a href=\"{files['difference']}\"><img src=\"{files['difference']}\" alt=\"difference\" loading=\"lazy\"></a>"
            f"<figcaption>difference ×{card['gain']}{against} around mid-grey</figcaption></figure>"
            "</div></div>"
        )
    return "<div class=\"gallery\">" + "".join(out) + "</div>"


def _html(evaluation: Evaluation, results: dict, figures: dict[str, str], gallery: list[dict]) -> str:
    s = results["settings"]
    run_name = s["run_code"] or Path(s.get("protected") or Path(evaluation.options.protected).resolve()).name
    title = f"Protection report — {run_name}"
    sections = [
        f"<h1>{html.escape(title)}</h1>",
        f"<p class=\"sub\">{len(evaluation.runs['protector'].images)} photos · attack model "
        f"{html.escape(s['attack_model'])} · labels: {html.escape(s['labels'])} · {html.escape(results['created'])}</p>",
        "<p class='sub'>the task ranks: " + html.escape(s["ranked"]) + " · budget: "
        + (f"eps {s['eps_8bit']:.2f}/255 (from {html.escape(s['eps_source'])})" if s["eps"] else "not known")
        + (f" · refine steps {s['refine_steps']}" if s.get("refine_steps") is not None else "") + "</p>",
        *[_warning_box(w) for w in s.get("warnings", [])],
        f"<p class=\"verdict\">{html.escape(verdict(evaluation, results))}</p>",
        f"<p class=\"sub\">{html.escape(FOOLED_MEANING)}</p>",
        f"<p class=\"{'problems' if '(see Problems)' in coverage_line(results) else 'sub'}\">"
        + html.escape(coverage_line(results)) + "</p>",
        _cards(evaluation, results),
        "<h2>Runs side by side</h2>",
        _html_table(COMPARISON_HEADER, _comparison_rows(evaluation, results)),
    ]
    split = _edit_split_rows(results)
    if split:
        sections += ["<h2>Appeal: the edit and the perturbation</h2>",
                     f"<p class=\"sub\">{html.escape(EDIT_SPLIT_NOTE.format(**split[0]))}</p>",
                     _html_table(EDIT_SPLIT_HEADER, split[1])]
    header, rows = _transfer_rows(results)
    if rows:
        sections += ["<h2>Transfer to other models</h2>", _html_table(header, rows)]
    grid = {k: src for k, src in figures.items() if k not in ("per_category", "leakage", "views")}
    if grid:
        sections.append("<h2>Plots</h2><div class=\"plots\">" + "".join(
            f"<a href=\"{src}\"><img src=\"{src}\" alt=\"{html.escape(k)}\"></a>" for k, src in grid.items()) + "</div>")
    runs = list(results["runs"])
    per_category = results["runs"][runs[0]]["per_category"]
    if per_category:
        by_run = {r: {row["class"]: row for row in results["runs"][r]["per_category"]} for r in runs}
        cat_rows = [[row["name"], str(row["n"]), _pct(row["top1_before"])]
                    + [_pct(by_run[r].get(row["class"], {}).get("top1_after")) for r in runs] for row in per_category]
        title = "sensitive categories" if evaluation.senscats else "categories"
        plot = figures.get("per_category")
        sections += [f"<h2>Per-category accuracy ({title})</h2>"]
        if plot:
            sections.append(f"<a href=\"{plot}\"><img class=\"wide\" src=\"{plot}\" alt=\"per-category accuracy\"></a>")
        sections += ["<details><summary>show the table</summary>",
                     _html_table(["category", "photos", "top-1 before"] + [f"after ({r})" for r in runs], cat_rows),
                     "</details>"]
    views = _views_table(results)
    if views:
        sections += ["<h2>Under each view</h2>", f"<p class=\"sub\">{html.escape(VIEWS_NOTE)}</p>",
                     _html_table(*views)]
        if figures.get("views"):
            sections.append(f"<a href=\"{figures['views']}\"><img class=\"wide\" src=\"{figures['views']}\" "
                            "alt=\"changed under each view\"></a>")
    leakage = _leakage_tables(evaluation, results)
    if leakage:
        sections += ["<h2>Privacy leakage</h2>",
                     f"<p class=\"sub\">{html.escape(LEAKAGE_NOTE.format(criteria=s['privacy_criteria']))}</p>",
                     _html_table(leakage[0][1], leakage[0][2])]
        plot = figures.get("leakage")
        if plot:
            sections.append(f"<a href=\"{plot}\"><img class=\"wide\" src=\"{plot}\" alt=\"leakage per criterion\"></a>")
        for title, header, rows in leakage[1:]:
            sections += [f"<details><summary>{html.escape(title.lower())}</summary>", _html_table(header, rows),
                         "</details>"]
    if gallery:
        sections += ["<h2>Examples</h2>",
                     "<p class=\"sub\">Original" + (", the edit alone" if evaluation.edit is not None else "")
                     + " and protected file side by side with the attack model's top-5; the "
                     "reference class is in bold. Examples are spread evenly over the photos (fooled first, then "
                     "about a third still recognized), not picked for looks. " + html.escape(FOOLED_MEANING) + "</p>",
                     _gallery_html(evaluation, gallery)]
    problems = _problems(evaluation, results)
    if problems:
        sections += ["<h2>Problems</h2><ul class=\"problems\">"
                     + "".join(f"<li>{html.escape(p)}</li>" for p in problems) + "</ul>"]
    settings = "".join(f"<dt>{html.escape(k)}</dt><dd>{html.escape(json.dumps(v) if not isinstance(v, str) else v)}</dd>"
                       for k, v in s.items())
    sections += ["<h2>Settings</h2>", f"<dl>{settings}</dl>",
                 "<p class=\"sub\">All numbers: <a href=\"results.json\">results.json</a> · "
                 "<a href=\"summary.md\">summary.md</a></p>"]
    return ("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body><main>"
            + "\n".join(sections) + "</main></body></html>\n")


# ---------------------------------------------------------------- one meaning of "fooled"

FOOLED_MEANING = ("\"fooled\" on this page: the attack model's top-1 was the true label before protection and is "
                  "not after (the clean prediction stands in where no label is known); the task ranks the top-1 "
                  "accuracy against the true label. \"changed\": the top-1 differs from the clean photo's top-1, "
                  "right or wrong (not what the task ranks).")


def fooled_counts(evaluation: Evaluation) -> tuple[int, int]:
    """(fooled, recognized before protection) on the protected files, for the attack model."""
    outcomes = [_outcome(im, evaluation.attack_model) for im in evaluation.runs["protector"].images]
    fooled = outcomes.count("fooled")
    return fooled, fooled + outcomes.count("recognized")


def _fooled_cards(evaluation: Evaluation, acc: dict) -> list[tuple[str, str, str]]:
    fooled, recognized = fooled_counts(evaluation)
    rate = fooled / recognized if recognized else None
    return [("fooled", _pct(rate), f"{fooled} of the {recognized} photos recognized before (true label)"),
            ("changed", _pct(acc["fooling_rate_top1"]), "top-1 differs from the clean photo's; not ranked")]


def verdict(evaluation: Evaluation, results: dict) -> str:
    """One sentence: what protection did to the number the task ranks, or why there is no verdict."""
    acc = results["runs"]["protector"]["models"][evaluation.attack_model]
    fooled, recognized = fooled_counts(evaluation)
    photos = len(evaluation.runs["protector"].images)
    caveat = " (see the warning: the attack model is probably not the task's)" if results["settings"].get("warnings") else ""
    if not recognized:
        return (f"No verdict: the attack model recognizes none of the {photos} photos before protection (clean "
                f"top-1 {_pct(acc['top1_before'])}), so its accuracy cannot show what protection does{caveat}.")
    return (f"Verdict: protection fooled the attack model on {fooled} of the {recognized} photos it recognized; its "
            f"top-1 accuracy, the number the task ranks (lower is better), went from {_pct(acc['top1_before'])} to "
            f"{_pct(acc['top1_after'])}{caveat}.")


def _warning_box(text: str) -> str:
    return f"<div class=\"warnbox\" role=\"alert\"><strong>Warning</strong>{html.escape(text)}</div>"
