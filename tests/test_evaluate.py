"""protector evaluate on a case small enough to compute by hand.

Four uniform grey photos (levels 50, 94, 140, 190) and their "protected" versions, every
pixel +2 levels, saved as PNG. The classifier (`IntensityNet`, below) scores 8 classes by the
distance of the mean brightness to the centres (k + 0.5) / 8, so its top-5 is the 5 nearest
centres. By hand:

| photo | level | label | clean top-1 | +2 top-1 | label in top-5 before / after |
| a | 50  | 1 | 1 | 1 | yes / yes |
| b | 94  | 2 | 2 | 3 | yes / yes |
| c | 140 | 4 | 4 | 4 | yes / yes |
| d | 190 | 0 | 5 | 6 | no / no   |

top-1 75% -> 50%, top-5 75% -> 75%, top-1 fooling rate 50% (b, d), top-5 fooling rate 0%;
PSNR = 10 log10(255^2 / 2^2) = 42.1102 dB for every photo; max |delta| = 2.

Privacy leakage: classes 1, 2, 6 are sensitive (criteria: 1 home; 2 home and health; 6
alcohol). Clean top-1 sensitive: a (1) and b (2). Protected top-1: a 1 (sensitive, same
criterion), b 3 (not sensitive); both protected top-5s hold 1 and 2. So of the 2 photos
predicted sensitive: top-1 still sensitive 50%, sensitive in top-5 100%, top-1 same
criterion 50%. Predicted not sensitive: c (4 -> 4, top-5 4 5 3 6 2) and d (5 -> 6): top-1
now sensitive 50% (d), sensitive in top-5 100%.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from skimage.color import deltaE_ciede2000, rgb2lab

from protector.classifier_spec import AttackModelSpec
from protector.evaluation.run import EvaluateOptions, EvaluationError, evaluate
from protector.images import read_photo

LEVELS = {"a": 50, "b": 94, "c": 140, "d": 190}
LABELS = {"a": 1, "b": 2, "c": 4, "d": 0}
ATTACK = "intensity_net.IntensityNet"

INTENSITY_NET = '''
import torch
from torch import nn


class IntensityNet(nn.Module):
    """8 classes; the logit of class k is -50 * |mean brightness - (k + 0.5) / 8|."""

    def __init__(self):
        super().__init__()
        self.register_buffer("centers", (torch.arange(8, dtype=torch.float32) + 0.5) / 8)

    def forward(self, x):
        mean = x.mean(dim=(1, 2, 3))
        return -50 * (mean[:, None] - self.centers).abs()


class ShiftedIntensityNet(IntensityNet):
    """The same with centres k / 8: a second model to measure transfer on."""

    def __init__(self):
        super().__init__()
        self.centers -= 0.5 / 8
'''


def build_hand_case(root: Path, shift: int = 2, run_code: str = "hand") -> dict[str, Path]:
    """Originals, protected files (+`shift` levels, PNG), the labelled list, model and class files."""
    originals, protected, models = root / "originals", root / "protected", root / "models"
    for folder in (originals, protected, models):
        folder.mkdir(parents=True, exist_ok=True)
    for name, level in LEVELS.items():
        Image.fromarray(np.full((64, 64, 3), level, np.uint8)).save(originals / f"{name}.png")
        Image.fromarray(np.full((64, 64, 3), level + shift, np.uint8)).save(protected / f"{run_code}_{name}.png")
    (models / "intensity_net.py").write_text(INTENSITY_NET)
    (root / "list.csv").write_text("".join(f"{name}.png,{LABELS[name]}\n" for name in LEVELS))
    (root / "categories.txt").write_text("".join(f"/c/class_{k} {k}\n" for k in range(8)))
    (root / "senscats.txt").write_text("\ufeff/c/class_1 1 \n/c/class_2 2\n/c/class_6 6\n")
    (root / "criteria.csv").write_text("# hand-made\ncategory,index,criteria\n/c/class_1,1,home\n"
                                       "/c/class_2,2,home;health\n/c/class_6,6,alcohol\n")
    (protected / "manifest.csv").write_text("not an image, ignored\n")
    return {"originals": originals, "protected": protected, "models": models, "list": root / "list.csv",
            "categories": root / "categories.txt", "senscats": root / "senscats.txt",
            "criteria": root / "criteria.csv", "out": root / "report"}


def hand_options(case: dict[str, Path], **overrides) -> EvaluateOptions:
    options = dict(protected=case["protected"], original=case["originals"], out=case["out"],
                   attack_model=AttackModelSpec(ATTACK, search_path=case["models"]), run_code="hand", list_path=case["list"],
                   categories=case["categories"], senscats=case["senscats"], criteria=case["criteria"],
                   device="cpu", gallery=4)
    options.update(overrides)
    return EvaluateOptions(**options)


@pytest.fixture
def case(tmp_path: Path) -> dict[str, Path]:
    return build_hand_case(tmp_path)


def test_hand_computed_accuracy_fooling_and_fidelity(case):
    evaluation = evaluate(hand_options(case))
    results = evaluation.summary()
    run = results["runs"]["protector"]
    assert run["n_images"] == 4
    acc = run["models"][evaluation.attack_model]
    assert acc["labels_ground_truth"] == 4 and results["settings"]["labels"] == "ground truth"
    assert (acc["top1_before"], acc["top1_after"]) == (0.75, 0.5)
    assert (acc["top5_before"], acc["top5_after"]) == (0.75, 0.75)
    assert (acc["fooling_rate_top1"], acc["fooling_rate_top5"]) == (0.5, 0.0)

    fid = run["fidelity"]
    assert fid["psnr_mean"] == pytest.approx(10 * math.log10(255**2 / 4), abs=1e-4)  # 42.1102 dB
    assert fid["max_delta_8bit"] == 2 and fid["identical_images"] == 0
    c1 = (0.01 * 255) ** 2  # uniform photos: SSIM is the luminance term alone
    expected_ssim = np.mean([(2 * v * (v + 2) + c1) / (v**2 + (v + 2) ** 2 + c1) for v in LEVELS.values()])
    assert fid["ssim_mean"] == pytest.approx(expected_ssim, abs=1e-6)
    expected_de = np.mean([deltaE_ciede2000(rgb2lab(np.full((1, 1, 3), v, np.uint8)),
                                            rgb2lab(np.full((1, 1, 3), v + 2, np.uint8)))[0, 0]
                           for v in LEVELS.values()])
    assert fid["ciede2000_mean"] == pytest.approx(expected_de, rel=1e-6)
    assert "scikit-image" in results["settings"]["fidelity_implementation"]

    by_class = {row["class"]: row for row in run["per_category"]}
    assert set(by_class) == {1, 2}  # class 6 is sensitive but has no photo
    assert (by_class[1]["n"], by_class[1]["top1_before"], by_class[1]["top1_after"]) == (1, 1.0, 1.0)
    assert (by_class[2]["n"], by_class[2]["top1_before"], by_class[2]["top1_after"]) == (1, 1.0, 0.0)
    images = {im["name"]: im for im in run["images"]}
    assert [c for c, _ in images["b.png"]["clean_top5"][evaluation.attack_model]] == [2, 3, 1, 4, 0]
    assert images["b.png"]["protected_top5"][evaluation.attack_model][0][0] == 3
    assert images["d.png"]["file"] == "hand_d.png" and images["d.png"]["label"] == 0


def test_without_labels_the_clean_prediction_is_the_reference(case):
    evaluation = evaluate(hand_options(case, list_path=None))
    results = evaluation.summary()
    acc = results["runs"]["protector"]["models"][evaluation.attack_model]
    assert acc["labels_clean_prediction"] == 4
    assert "clean prediction" in results["settings"]["labels"]
    assert (acc["top1_before"], acc["top1_after"], acc["top5_after"]) == (1.0, 0.5, 1.0)


def test_labels_file_fills_in_ground_truth(case, tmp_path):
    (tmp_path / "places365_val.txt").write_text("".join(f"{n}.png {LABELS[n]}\n" for n in LEVELS))
    evaluation = evaluate(hand_options(case, list_path=None, labels=tmp_path / "places365_val.txt"))
    acc = evaluation.summary()["runs"]["protector"]["models"][evaluation.attack_model]
    assert (acc["labels_ground_truth"], acc["top1_before"], acc["top1_after"]) == (4, 0.75, 0.5)


def test_missing_protected_file_is_an_error_unless_allowed(case):
    (case["protected"] / "hand_c.png").unlink()
    with pytest.raises(EvaluationError, match=r"c\.png"):
        evaluate(hand_options(case))
    evaluation = evaluate(hand_options(case, allow_missing=True))
    assert evaluation.pairing.missing == ["c.png"]
    assert evaluation.summary()["runs"]["protector"]["n_images"] == 3


def test_original_given_as_a_list_next_to_its_images(case):
    (case["originals"] / "labelled.csv").write_text("".join(f"{n}.png,{LABELS[n]}\n" for n in LEVELS))
    evaluation = evaluate(hand_options(case, original=case["originals"] / "labelled.csv", list_path=None))
    acc = evaluation.summary()["runs"]["protector"]["models"][evaluation.attack_model]
    assert (acc["n"], acc["top1_before"], acc["top1_after"]) == (4, 0.75, 0.5)


def test_wrong_run_code_matches_nothing(case):
    with pytest.raises(EvaluationError, match="--run-code"):
        evaluate(hand_options(case, run_code="other"))


def test_transfer_model_is_scored_beside_the_attack_model(case):
    # Centres k/8: a -> 2, b -> 3, c -> 4, d -> 6 before and after: only c is right (25%).
    transfer = "intensity_net.ShiftedIntensityNet"
    evaluation = evaluate(hand_options(case, transfer=[transfer]))
    models = evaluation.summary()["runs"]["protector"]["models"]
    assert models[transfer]["role"] == "transfer" and models[evaluation.attack_model]["role"] == "attack"
    assert (models[transfer]["top1_before"], models[transfer]["top1_after"]) == (0.25, 0.25)
    with pytest.raises(EvaluationError, match="already evaluated"):
        evaluate(hand_options(case, transfer=[ATTACK]))


def test_nima_without_weights_fails_loudly(case, tmp_path):
    with pytest.raises(EvaluationError, match="leave --nima out"):
        evaluate(hand_options(case, nima=tmp_path / "no_such_weights.hdf5"))


@pytest.mark.slow
def test_nima_scores_match_the_model_on_the_files(case, shared):
    from protector.nima import load_nima, nima_scores

    weights = shared.path("nima/weights_mobilenet_aesthetic_0.07.hdf5")
    evaluation = evaluate(hand_options(case, nima=weights, nima_preprocess="idealo"))
    results = evaluation.summary()
    assert results["settings"]["nima"] == "NIMA-MobileNet (idealo, AVA), preprocess=idealo"
    nima = load_nima(weights, preprocess="idealo")
    images = {im["name"]: im for im in results["runs"]["protector"]["images"]}
    with torch.no_grad():
        for name in LEVELS:
            for key, path in (("nima_clean", case["originals"] / f"{name}.png"),
                              ("nima_protected", case["protected"] / f"hand_{name}.png")):
                x = torch.from_numpy(read_photo(path).pixels).permute(2, 0, 1)[None].float() / 255
                mean, std = nima_scores(nima(x))
                assert images[f"{name}.png"][key] == pytest.approx([float(mean), float(std)], abs=1e-5)
    appeal = results["runs"]["protector"]["appeal"]
    diffs = [images[f"{n}.png"]["nima_protected"][0] - images[f"{n}.png"]["nima_clean"][0] for n in LEVELS]
    assert appeal["nima_diff_mean"] == pytest.approx(np.mean(diffs), abs=1e-9)


def test_baselines_are_saved_reread_and_compared(case):
    evaluation = evaluate(hand_options(case, baselines=["fgsm", "pgd", "eot-pgd"], eps=8 / 255))
    results = evaluation.summary()
    assert list(results["runs"]) == ["protector", "fgsm", "pgd", "eot-pgd"]
    for name in ("fgsm", "pgd", "eot-pgd"):
        folder = case["out"] / "baselines" / name
        assert sorted(p.name for p in folder.iterdir()) == [f"hand_{n}.png" for n in LEVELS]
        run = results["runs"][name]
        assert run["n_images"] == 4 and run["fidelity"]["max_delta_8bit"] <= 8
        assert run["seconds_per_image"] > 0
    # FGSM moves every pixel of a uniform photo by exactly eps: PSNR = 10 log10(255^2 / 8^2).
    assert results["runs"]["fgsm"]["fidelity"]["psnr_mean"] == pytest.approx(10 * math.log10(255**2 / 64), abs=1e-3)
    assert "torchattacks.PGD(eps=0.0313725, alpha=0.00784314, steps=10" in results["settings"]["baselines"]["pgd"]
    assert "through a differentiable JPEG" in results["settings"]["baselines"]["eot-pgd"]


def test_baselines_need_eps(case):
    with pytest.raises(EvaluationError, match="--eps"):
        evaluate(hand_options(case, baselines=["fgsm"]))


def test_the_baselines_bench_uses_are_evaluates(tiny_classifier, tmp_path):
    # bench/ builds its FGSM/PGD/EOT-PGD rows and writes its files through these functions.
    from protector.evaluation.baselines import (
        baseline_attack, baseline_spec, eot_pgd_step_size, write_attacked)
    from protector.losses import UntargetedCE

    eps = 4 / 255
    assert baseline_spec("eot-pgd", eps).alpha == eot_pgd_step_size(eps, 10) == 2.5 * eps / 10
    assert [eot_pgd_step_size(eps, k) for k in (1, 2)] == [eps, eps / 2]
    assert baseline_spec("eot-pgd", eps, steps=2).steps == 2 and baseline_spec("pgd", eps, steps=10).steps == 10
    with pytest.raises(ValueError, match="10 step"):
        baseline_spec("pgd", eps, steps=5)
    with pytest.raises(ValueError, match="only eot-pgd takes a loss"):
        baseline_attack(baseline_spec("fgsm", eps), tiny_classifier, torch.device("cpu"), loss=UntargetedCE())
    torch.manual_seed(0)
    x, y = torch.rand(2, 3, 32, 32), torch.tensor([0, 1])
    attack = baseline_attack(baseline_spec("eot-pgd", eps, steps=2), tiny_classifier, torch.device("cpu"),
                             jpeg_quality=90, loss=UntargetedCE())
    x_adv = attack(x, y)
    assert (x_adv - x).abs().max() <= eps + 1e-6 and not torch.equal(x_adv, x)
    path = write_attacked(x_adv[0], tmp_path / "sub" / "a.png", quality=90)
    expected = (x_adv[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    assert np.array_equal(read_photo(path).pixels, expected)  # PNG by its extension: lossless


def test_evaluate_command_writes_the_report(case, capsys):
    import argparse

    from protector.commands import evaluate as evaluate_command

    parser = argparse.ArgumentParser()
    evaluate_command.add_arguments(parser)
    args = parser.parse_args([
        "--protected", str(case["protected"]), "--run-code", "hand", "--original", str(case["originals"]),
        "--list", str(case["list"]), "--classifier", ATTACK, "--classifier-path", str(case["models"]),
        "--categories", str(case["categories"]), "--senscats", str(case["senscats"]),
        "--criteria", str(case["criteria"]), "--device", "cpu", "--out", str(case["out"]),
    ])
    assert evaluate_command.run(args) == 0
    printed = capsys.readouterr().out
    assert "75.0% → 50.0%" in printed and "42.11 dB" in printed
    for name in ("results.json", "summary.md", "report.html", "plots/accuracy.png", "plots/leakage.png"):
        assert (case["out"] / name).is_file()
    assert "## Privacy leakage" in printed


def test_hand_computed_privacy_leakage(case):
    evaluation = evaluate(hand_options(case))
    leak = evaluation.summary()["runs"]["protector"]["leakage"][evaluation.attack_model]
    assert leak["k"] == 5
    assert leak["sensitive"] == {"n": 2, "top1_sensitive": 0.5, "topk_sensitive": 1.0,
                                 "same_criterion_top1": 0.5, "same_criterion_topk": 1.0}
    assert leak["other"] == {"n": 2, "top1_sensitive": 0.5, "topk_sensitive": 1.0}
    rows = {row["criterion"]: row for row in leak["per_criterion"]}
    assert set(rows) == {"home", "health"}  # no photo is predicted "alcohol" (class 6) before protection
    assert (rows["home"]["n"], rows["home"]["still_in_criterion_top1"], rows["home"]["top1_sensitive"]) == (2, 0.5, 0.5)
    assert (rows["health"]["n"], rows["health"]["still_in_criterion_top1"]) == (1, 0.0)  # b: 2 -> 3
    assert rows["health"]["still_in_criterion_topk"] == 1.0  # class 2 is still in b's top-5
    by_class = {row["class"]: row for row in leak["per_category"]}
    assert by_class[1]["top1_sensitive"] == 1.0 and by_class[2]["top1_sensitive"] == 0.0
    assert by_class[2]["criteria"] == ["home", "health"]


def test_without_senscats_there_is_no_leakage(case):
    evaluation = evaluate(hand_options(case, senscats=None, criteria=None))
    assert evaluation.summary()["runs"]["protector"]["leakage"] is None


def test_senscats_without_criteria_are_refused_by_name(case, tmp_path):
    (tmp_path / "partial.csv").write_text("category,index,criteria\n/c/class_1,1,home\n")
    with pytest.raises(ValueError, match="class_2.*--criteria"):
        evaluate(hand_options(case, criteria=tmp_path / "partial.csv"))
    with pytest.raises(ValueError, match="no privacy criteria"):  # the packaged mapping knows Places365 only
        evaluate(hand_options(case, criteria=None))


def test_brisque_scores_a_degraded_photo_worse(shared) -> None:
    from protector.evaluation.quality import brisque_scores
    from protector.images import read_photo

    photo = read_photo(shared.path("standin/images/bsds500_100075.jpg")).pixels
    noisy = np.clip(photo + np.random.default_rng(0).normal(0, 12, photo.shape), 0, 255).astype(np.uint8)
    clean_score, noisy_score = brisque_scores([photo, noisy])
    assert np.isfinite(clean_score) and noisy_score > clean_score + 5


def test_files_the_run_record_does_not_account_for_are_not_scored(tmp_path):
    from protector.export import save_protector
    from protector.generator import BoundedProtector, UNetGenerator
    from protector.paths import sha256_file
    from protector.protect import ProtectOptions, protect

    case = build_hand_case(tmp_path)
    torch.manual_seed(0)
    protector_file = save_protector(tmp_path / "protector.pt",
                                    BoundedProtector(UNetGenerator(base_channels=8, depth=2), 4 / 255))
    protected = tmp_path / "protected_by_protector"
    protect(ProtectOptions(output=protected, inputs=[case["originals"]], protector=protector_file, fmt="png",
                           run_code="hand", num_workers=0, progress=False))
    evaluation = evaluate(hand_options(case, protected=protected, gallery=0))
    assert evaluation.settings["protected_by"]["protector"] == {"sha256": sha256_file(protector_file), "eps": 4 / 255}
    # The budget comes from the run record when --eps is not given: the baselines attack with the protector's own.
    assert evaluation.settings["eps"] == 4 / 255 and evaluation.settings["eps_source"] == "protect-run.json"
    with_baseline = evaluate(hand_options(case, protected=protected, gallery=0, baselines=["fgsm"]))
    assert with_baseline.runs["fgsm"].images and with_baseline.settings["eps_8bit"] == pytest.approx(4.0)

    # The original put back at a protected name would be scored as the protector's work: refused.
    (protected / "hand_b.png").write_bytes((case["originals"] / "b.png").read_bytes())
    with pytest.raises(EvaluationError, match=r"1 file\(s\) are not what protector protect wrote there .*"
                                              r"protect-run.json \(hand_b.png\)"):
        evaluate(hand_options(case, protected=protected, gallery=0))
    # A folder with no record (another team's submission, files made by hand) is scored as before.
    assert evaluate(hand_options(case, gallery=0)).settings["protected_by"] is None


def test_clean_accuracy_far_from_the_official_models_is_a_warning(tmp_path) -> None:
    """Judged by what the photos are (all in MEPP19test / MEPP18val beside the data), not by the list's file name."""
    from protector.evaluation.records import ImageEval, RunEval
    from protector.evaluation.run import clean_accuracy_warnings

    def run_with(correct: int, total: int, start: int = 0) -> RunEval:
        images = [ImageEval(name=f"Places365_val_{start + i:08d}.jpg", file=f"x{i}.jpg", label=7, reference=7,
                            width=8, height=8, clean={"resnet50": [(7 if i < correct else 3, 0.9)]}, protected={},
                            fidelity=None)
                  for i in range(total)]
        return RunEval("protector", "out", "as given", images)

    data = tmp_path / "data"
    data.mkdir()
    (data / "MEPP19test.csv").write_text("".join(f"Places365_val_{i:08d}.jpg\n" for i in range(600)))
    (data / "MEPP18val.csv").write_text("".join(f'"Places365_val_{i:08d}.jpg","7"\n' for i in range(1000, 4000)))
    subset = tmp_path / "my_40_photos.csv"  # any name, anywhere: the photos are MEPP19test's
    places = [subset, data / "places365_val.txt", data / "val_256.tar"]
    (warning,) = clean_accuracy_warnings(run_with(1, 40), "resnet50", places)
    assert "is 2.5%" in warning and "100.00% on MEPP19test" in warning and "40 of its photos" in warning
    assert "not the task's" in warning
    assert clean_accuracy_warnings(run_with(40, 40), "resnet50", places) == []
    assert clean_accuracy_warnings(run_with(55, 100, start=1000), "resnet50", places) == []  # 55% vs 59.6%
    (warning,) = clean_accuracy_warnings(run_with(1, 100, start=1000), "resnet50", places)
    assert "59.60% on MEPP18val" in warning
    # Photos of neither list (or no lists found): no reference, no warning.
    assert clean_accuracy_warnings(run_with(1, 40, start=5000), "resnet50", places) == []
    assert clean_accuracy_warnings(run_with(1, 40), "resnet50", [tmp_path / "elsewhere" / "x.csv"]) == []


def test_accuracy_command_warns_on_a_wrong_checkpoint(tmp_path) -> None:
    from protector.commands.accuracy import _checkpoint_warning
    from protector.evaluation.accuracy import AccuracyResult, ImageResult

    (tmp_path / "MEPP19test.csv").write_text("".join(f"Places365_val_{i:08d}.jpg\n" for i in range(600)))
    result = AccuracyResult(images=[ImageResult(f"val_256/Places365_val_{i:08d}.jpg", 7, [3, 7]) for i in range(30)])
    warning = _checkpoint_warning(result, "resnet50", [tmp_path / "sub.csv", None])
    assert warning is not None and "is 0.0%" in warning and "MEPP19test" in warning
    result.images = [ImageResult(im.name, 7, [7]) for im in result.images]
    assert _checkpoint_warning(result, "resnet50", [tmp_path / "sub.csv"]) is None


def evaluate_cli(capsys, case: dict[str, Path], *more: str) -> tuple[int, str, str]:
    from protector.cli import main

    try:
        code = main(["evaluate", "--protected", str(case["protected"]), "--run-code", "hand", "--original",
                     str(case["originals"]), "--classifier", ATTACK, "--classifier-path", str(case["models"]),
                     "--device", "cpu", "--gallery", "2", *more])
    except SystemExit as exit_:
        code = exit_.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("where", ["same", "inside"])
def test_a_report_inside_the_protected_folder_is_refused(case, capsys, where):
    """The gallery holds the unprotected originals: inside the published folder they would be published."""
    out = case["protected"] if where == "same" else case["protected"] / "report"
    before = sorted(p.name for p in case["protected"].iterdir())
    code, stdout, stderr = evaluate_cli(capsys, case, "--list", str(case["list"]), "--out", str(out))
    assert code == 2 and stdout == "" and "Traceback" not in stderr
    assert stderr.strip() == (f"protector evaluate: error: --out {out} is inside --protected {case['protected']}: "
                              "the report's gallery holds the unprotected originals, which must not land in the "
                              "folder that is published; give a report folder outside it")
    assert sorted(p.name for p in case["protected"].iterdir()) == before


def test_a_report_folder_that_is_a_file_or_read_only_is_refused(case, capsys, monkeypatch):
    import errno
    import os

    import protector.images as images_module

    a_file = case["out"].parent / "report.txt"
    a_file.write_text("mine\n")
    code, _, stderr = evaluate_cli(capsys, case, "--list", str(case["list"]), "--out", str(a_file))
    assert code == 2 and stderr.strip() == (f"protector evaluate: error: --out {a_file} is a file, not a folder: "
                                            "give a folder (one that does not exist yet is created)")

    def read_only(folder, name, data):  # the one low-level write (see test_user_mistakes._fail_writes)
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr(images_module, "_write_temporary", read_only)
    code, _, stderr = evaluate_cli(capsys, case, "--list", str(case["list"]), "--out", str(case["out"]))
    assert code == 2 and stderr.strip() == (f"protector evaluate: error: --out {case['out']}: cannot write there "
                                            "(Read-only file system: choose another place)")

    real = monkeypatch.undo() or images_module._write_temporary

    def full_at_the_summary(folder, name, data):  # the disk fills while the report is written
        if name == "summary.md":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(folder, name, data)

    monkeypatch.setattr(images_module, "_write_temporary", full_at_the_summary)
    code, stdout, stderr = evaluate_cli(capsys, case, "--list", str(case["list"]), "--out", str(case["out"]))
    assert code == 2 and stdout == "" and "Traceback" not in stderr
    assert stderr.strip() == (f"protector evaluate: error: the report in {case['out']}: cannot be written (No space "
                              "left on device: free some space)")


def test_without_a_list_originals_without_a_protected_file_are_reported(case, capsys):
    """Before: 1 of 4 originals scored and `missing=[]`, with nothing said."""
    for name in ("b", "c", "d"):
        (case["protected"] / f"hand_{name}.png").unlink()
    code, stdout, _ = evaluate_cli(capsys, case, "--out", str(case["out"]))
    assert code == 0
    line = ("scored 1 of 4 originals (every original in --original): 3 have no protected file (see Problems)")
    assert line in stdout  # the printed summary
    summary = (case["out"] / "summary.md").read_text()
    assert line in summary and "- missing protected file: b.png" in summary
    assert line in (case["out"] / "report.html").read_text()
    results = json.loads((case["out"] / "results.json").read_text())
    assert results["missing"] == ["b.png", "c.png", "d.png"]
    assert results["coverage"] == {"originals": 4, "paired": 1, "missing": 3, "ambiguous": 0,
                                   "unreadable_originals": 0, "of": "every original in --original"}
    assert results["runs"]["protector"]["n_images"] == 1


def test_an_unreadable_original_fails_alone(case, capsys):
    import os

    os.symlink("/proc/self/mem", case["originals"] / "e.png")  # reading fails with EIO, even as root
    Image.fromarray(np.full((64, 64, 3), 120, np.uint8)).save(case["protected"] / "hand_e.png")
    with open(case["list"], "a") as f:
        f.write("e.png,3\n")
    code, stdout, stderr = evaluate_cli(capsys, case, "--list", str(case["list"]), "--out", str(case["out"]))
    assert code == 2 and stdout == "" and "Traceback" not in stderr
    assert stderr.startswith("protector evaluate: error: 1 original(s) cannot be read:\n"
                             "  e.png: cannot be read (Input/output error)\n")
    assert stderr.rstrip().endswith("(--allow-missing evaluates the others)")

    code, stdout, _ = evaluate_cli(capsys, case, "--list", str(case["list"]), "--out", str(case["out"]),
                                   "--allow-missing")
    assert code == 0
    assert "scored 4 of 5 originals (the listed originals): 1 cannot be read (see Problems)" in stdout
    assert "unreadable original: e.png: cannot be read (Input/output error)" in stdout
    results = json.loads((case["out"] / "results.json").read_text())
    assert results["unreadable_originals"] == ["e.png: cannot be read (Input/output error)"]
    assert results["runs"]["protector"]["n_images"] == 4


def test_the_submission_zip_is_evaluated_like_its_folder(tmp_path, capsys) -> None:
    import zipfile

    case = build_hand_case(tmp_path)
    folder_code, folder_out, _ = evaluate_cli(capsys, case, "--out", str(tmp_path / "r1"))
    archive = tmp_path / "hand.zip"
    with zipfile.ZipFile(archive, "w") as out:
        for path in sorted(case["protected"].iterdir()):
            out.write(path, path.name)
    zip_case = {**case, "protected": archive}
    zip_code, zip_out, err = evaluate_cli(capsys, zip_case, "--out", str(tmp_path / "r2"))
    assert folder_code == zip_code == 0, err
    first = json.loads((tmp_path / "r1" / "results.json").read_text())["runs"]["protector"]["models"][ATTACK]
    second = json.loads((tmp_path / "r2" / "results.json").read_text())["runs"]["protector"]["models"][ATTACK]
    assert first == second
    assert "protected files: `…/" in zip_out and "hand.zip`" in zip_out  # the report names the zip, shortened

    # The task's TEAM_RUN.zip of TEAM_RUN_NAME files gives its run code by its name.
    from protector.cli import main

    assert main(["evaluate", "--protected", str(archive), "--original", str(case["originals"]), "--classifier",
                 ATTACK, "--classifier-path", str(case["models"]), "--device", "cpu", "--out", str(tmp_path / "r5")]) == 0
    third = json.loads((tmp_path / "r5" / "results.json").read_text())
    assert third["runs"]["protector"]["models"][ATTACK] == first and third["settings"]["run_code"] == "hand"

    (tmp_path / "bad.zip").write_bytes(b"not a zip")
    code, _, err = evaluate_cli(capsys, {**case, "protected": tmp_path / "bad.zip"}, "--out", str(tmp_path / "r3"))
    assert code == 2 and "bad.zip: --protected is a file but not a zip" in err
    with zipfile.ZipFile(tmp_path / "evil.zip", "w") as out:
        out.writestr("../escape.png", b"x")
    code, _, err = evaluate_cli(capsys, {**case, "protected": tmp_path / "evil.zip"}, "--out", str(tmp_path / "r4"))
    assert code == 2 and "unsafe name" in err and not (tmp_path / "escape.png").exists()


def test_views_are_reported_with_their_control_in_every_output(case):
    """Uniform photos and a classifier of mean intensity: a resize, crop or upload changes nothing,
    so every view changes exactly the photos the file as it is changes, and the control none."""
    from protector.evaluation.report import write_report
    from protector.views import EVALUATION_VIEWS

    evaluation = evaluate(hand_options(case, views=[]))
    paths = write_report(evaluation, case["out"])
    views = json.loads(paths["results"].read_text())["views"]
    assert [v["view"] for v in views] == [v.name for v in EVALUATION_VIEWS]
    as_is = views[0]
    assert as_is["photos"] == len(LEVELS) and 0 < as_is["top1_changed"] < 1
    for view in views:
        assert view["top1_changed"] == as_is["top1_changed"] and view["control_top1_changed"] == 0
    assert "## Under each view" in paths["summary"].read_text()
    assert "Under each view" in paths["html"].read_text() and paths["views"].is_file()
