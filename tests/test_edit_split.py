"""evaluate --protector: the edit alone recomputed, the NIMA change split into edit and perturbation.

The photos are those of the hand-computed evaluation case (tests/test_evaluate.py), protected
here by a small appeal protector (an untrained U-Net and an enhancer with a random head, so
the edit moves every photo by far more than the budget).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from test_evaluate import LEVELS, build_hand_case, hand_options

from protector.enhance import ToneCurveEnhancer
from protector.evaluation.edit_split import recorded_strength
from protector.evaluation.report import write_report
from protector.evaluation.run import evaluate
from protector.export import save_protector
from protector.generator import BoundedProtector, UNetGenerator
from protector.images import read_photo, to_tensor, to_uint8

EPS = 4 / 255


def random_enhancer(seed: int = 0) -> ToneCurveEnhancer:
    torch.manual_seed(seed)
    enhancer = ToneCurveEnhancer(knots=8, thumbnail=32, width=4)
    torch.nn.init.normal_(enhancer.head.weight, std=0.5)
    torch.nn.init.normal_(enhancer.head.bias, std=0.5)
    return enhancer.eval()


@pytest.fixture
def appeal_case(tmp_path):
    """The hand case's originals protected as PNG by an appeal protector at strength 0.5."""
    from protector.protect import ProtectOptions, protect

    case = build_hand_case(tmp_path)
    torch.manual_seed(0)
    case["protector"] = save_protector(tmp_path / "appeal.pt",
                                       BoundedProtector(UNetGenerator(base_channels=8, depth=2), EPS,
                                                        enhancer=random_enhancer()))
    case["protected"] = tmp_path / "protected_by_appeal"
    protect(ProtectOptions(output=case["protected"], inputs=[case["originals"]], protector=case["protector"],
                           fmt="png", run_code="hand", num_workers=0, progress=False, enhance_strength=0.5))
    return case


def test_the_recomputed_edit_is_the_one_the_files_were_made_around(appeal_case):
    evaluation = evaluate(hand_options(appeal_case, protector=appeal_case["protector"], gallery=2))
    assert evaluation.settings["edit"]["strength"] == 0.5
    assert evaluation.settings["edit"]["strength_source"] == "protect-run.json"
    enhancer = random_enhancer()
    enhancer.strength = 0.5
    for name in LEVELS:
        original = read_photo(appeal_case["originals"] / f"{name}.png").pixels
        with torch.no_grad():
            expected = to_uint8(enhancer(to_tensor(original)[None]))[0]
        assert np.array_equal(evaluation.edit.edit([original])[0], expected)
    split = evaluation.summary()["runs"]["protector"]["edit_split"]
    fidelity = evaluation.summary()["runs"]["protector"]["fidelity"]
    # Lossless files: the budget holds exactly around the edit, not around the original.
    assert split["n"] == 4 and split["max_delta_8bit_vs_edit"] <= round(EPS * 255) < fidelity["max_delta_8bit"]
    assert split["psnr_vs_edit_mean"] > fidelity["psnr_mean"]
    assert split["nima_edit_mean"] is None and split["edit_change_mean"] is None  # no --nima


def test_report_shows_original_enhanced_protected_and_the_split(appeal_case):
    evaluation = evaluate(hand_options(appeal_case, protector=appeal_case["protector"], gallery=2))
    paths = write_report(evaluation, appeal_case["out"])
    gallery = sorted(p.name for p in (appeal_case["out"] / "gallery").iterdir())
    assert gallery == [f"{i:03d}_{kind}.png" for i in range(2) for kind in
                       ("difference", "enhanced", "original", "protected")]
    page = paths["html"].read_text(encoding="utf-8")
    assert "Appeal: the edit and the perturbation" in page and "000_enhanced.png" in page
    assert page.index("000_original.png") < page.index("000_enhanced.png") < page.index("000_protected.png")
    assert "## Appeal: the edit and the perturbation" in paths["summary"].read_text(encoding="utf-8")
    results = json.loads(paths["results"].read_text(encoding="utf-8"))
    assert results["runs"]["protector"]["edit_split"]["strength"] == 0.5
    # The difference image is taken against the edit: the perturbation alone, within the budget.
    enhanced = read_photo(appeal_case["out"] / "gallery" / "000_enhanced.png").pixels
    protected = read_photo(appeal_case["out"] / "gallery" / "000_protected.png").pixels
    assert np.abs(protected.astype(int) - enhanced.astype(int)).max() <= round(EPS * 255)


def test_without_an_enhancer_everything_stays_as_before(appeal_case, tmp_path):
    plain = save_protector(tmp_path / "plain.pt", BoundedProtector(UNetGenerator(base_channels=8, depth=2), EPS))
    for options in (hand_options(appeal_case, gallery=1), hand_options(appeal_case, protector=plain, gallery=1)):
        evaluation = evaluate(options)
        assert evaluation.edit is None and evaluation.settings["edit"] is None
        assert evaluation.summary()["runs"]["protector"]["edit_split"] is None
        paths = write_report(evaluation, options.out)
        assert "Appeal: the edit" not in paths["html"].read_text(encoding="utf-8")
        assert not (options.out / "gallery" / "000_enhanced.png").exists()


def test_another_protector_than_the_recorded_one_is_a_warning(appeal_case, tmp_path):
    other = save_protector(tmp_path / "other.pt",
                           BoundedProtector(UNetGenerator(base_channels=8, depth=2), EPS,
                                            enhancer=random_enhancer(seed=1)))
    evaluation = evaluate(hand_options(appeal_case, protector=other, gallery=0))
    assert any("is not the protector protect-run.json says made the files" in w
               for w in evaluation.settings["warnings"])


def test_recorded_strength() -> None:
    assert recorded_strength(None) == (1.0, "default (no protect-run.json in the protected folder)")
    assert recorded_strength({"enhance_strength": 0.25})[0] == 0.25
    assert recorded_strength({"enhance_strength": None})[0] == 0.0  # made with --enhance off


def test_the_nima_change_is_the_edits_plus_the_perturbations(appeal_case, shared):
    from protector.nima import load_nima, nima_scores

    weights = shared.path("nima/weights_mobilenet_aesthetic_0.07.hdf5")
    evaluation = evaluate(hand_options(appeal_case, protector=appeal_case["protector"], nima=weights, gallery=0))
    run = evaluation.summary()["runs"]["protector"]
    split, appeal = run["edit_split"], run["appeal"]
    assert split["nima_original_mean"] == pytest.approx(appeal["nima_before_mean"], abs=1e-9)
    assert split["nima_protected_mean"] == pytest.approx(appeal["nima_after_mean"], abs=1e-9)
    assert split["edit_change_mean"] + split["perturbation_change_mean"] == pytest.approx(appeal["nima_diff_mean"],
                                                                                          abs=1e-9)
    nima = load_nima(weights)
    original = read_photo(appeal_case["originals"] / "a.png").pixels
    with torch.no_grad():
        edit_score = float(nima_scores(nima(to_tensor(evaluation.edit.edit([original])[0])[None]))[0][0])
    assert evaluation.edit.photos["a.png"].nima_edit == pytest.approx(edit_score, abs=1e-5)
    assert split["edit_change_mean"] != 0.0
