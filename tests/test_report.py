"""protector.evaluation.report: results.json, summary.md and report.html carry the hand-computed numbers."""

from __future__ import annotations

import html
import json
import math
from html.parser import HTMLParser
from pathlib import Path

import pytest
from PIL import Image

from protector.evaluation.report import select_examples, write_report
from protector.evaluation.run import evaluate
from test_evaluate import build_hand_case, hand_options


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.sources: list[str] = []
        self.open_tags: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.sources.append(attrs["src"])
        elif tag == "a" and "href" in attrs:
            self.sources.append(attrs["href"])
        if tag not in ("img", "meta", "br"):
            self.open_tags.append(tag)

    def handle_endtag(self, tag):
        assert self.open_tags and self.open_tags[-1] == tag, f"</{tag}> closes <{self.open_tags[-1:]}>"
        self.open_tags.pop()


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> tuple[Path, dict]:
    case = build_hand_case(tmp_path_factory.mktemp("hand"))
    evaluation = evaluate(hand_options(case, baselines=["fgsm"], eps=4 / 255))
    paths = write_report(evaluation, case["out"])
    return case["out"], paths


def test_results_json_holds_the_hand_numbers(report):
    out, paths = report
    results = json.loads(paths["results"].read_text())
    run = results["runs"]["protector"]
    model = results["settings"]["attack_model"]
    assert run["models"][model]["top1_before"] == 0.75 and run["models"][model]["top1_after"] == 0.5
    assert run["fidelity"]["psnr_mean"] == pytest.approx(10 * math.log10(255**2 / 4), abs=1e-4)
    assert results["runs"]["fgsm"]["fidelity"]["psnr_mean"] == pytest.approx(10 * math.log10(255**2 / 16), abs=1e-3)
    assert len(run["images"]) == 4 and "created" in results


def test_summary_markdown_states_numbers_and_settings(report):
    _, paths = report
    text = paths["summary"].read_text()
    assert "| protector | 4 | 75.0% → 50.0% | 75.0% → 75.0% | 50.0% | 0.0% | 42.11 dB |" in text
    assert "| fgsm | 4 |" in text and "36.09 dB" in text  # 10 log10(255^2 / 4^2)
    assert "labels: ground truth" in text and "scikit-image" in text
    assert "NIMA not measured" in text
    assert "| 2 | /c/class_2 | 1 | 100.0% | 0.0% |" in text  # per-category row: b fooled
    # privacy leakage: of a and b (predicted sensitive) a is still class 1; c and d: d moved to 6
    assert "| protector | 2 | 50.0% | 100.0% | 50.0% | 100.0% | 2 | 50.0% | 100.0% |" in text
    assert "| health | 1 | 0.0% | 0.0% |" in text
    assert "| 2 | /c/class_2 | home; health | 1 | 0.0% | 100.0% |" in text


def test_html_page_is_complete_and_self_contained(report):
    out, paths = report
    page = paths["html"].read_text()
    for number in ("75.0% → 50.0%", "42.11 dB", "50.0%", "fgsm"):
        assert number in page
    parser = _Links()
    parser.feed(page)
    assert parser.open_tags == []
    images = [s for s in parser.sources if s.endswith(".png")]
    assert len([s for s in images if s.startswith("gallery/")]) >= 3 * 4  # original, protected, difference
    assert "plots/accuracy.png" in images and "plots/per_category.png" in images and "plots/leakage.png" in images
    assert "Privacy leakage" in page and "still sensitive" in page
    for source in parser.sources:
        assert not source.startswith(("/", "file:", "http")), source  # relative links only
        target = out / source
        assert target.is_file(), source
        if source.endswith(".png"):
            Image.open(target).verify()


def test_gallery_shows_the_decoded_pixels(report):
    out, _ = report
    original = Image.open(out / "gallery" / "000_original.png")
    protected = Image.open(out / "gallery" / "000_protected.png")
    # The first example is a fooled photo (b or d); its protected file is its level + 2.
    level = original.getpixel((0, 0))[0]
    assert level in (94, 190) and protected.getpixel((0, 0)) == (level + 2,) * 3


def test_select_examples_fooled_first_then_recognized(tmp_path):
    case = build_hand_case(tmp_path)
    evaluation = evaluate(hand_options(case))
    images = evaluation.runs["protector"].images
    chosen = select_examples(images, evaluation.attack_model, 3)
    assert [im.name for im in chosen] == ["b.png", "a.png", "c.png"]  # fooled: b; recognized: a, c
    assert [im.name for im in select_examples(images, evaluation.attack_model, 10)] == ["b.png", "a.png", "c.png",
                                                                                       "d.png"]
    assert select_examples(images, evaluation.attack_model, 0) == []


def test_one_meaning_of_fooled_and_a_verdict(report):
    """Hand case: a, b, c recognized before; b is not after (fooled); b and d changed (d was wrong already)."""
    _, paths = report
    page, text = html.unescape(paths["html"].read_text()), paths["summary"].read_text()
    verdict = "Verdict: protection fooled the attack model on 1 of the 3 photos it recognized"
    assert verdict in page and verdict in text and "from 75.0% to 50.0%" in page
    assert '"fooled" on this page: the attack model' in page and '"changed": the top-1 differs' in page
    assert "fooling rate" not in page and "fooled (top-1)" not in page + text
    assert ">33.3%<" in page and "1 of the 3 photos recognized before (true label)" in page  # the fooled card
    assert ">50.0%<" in page and "changed (top-1)" in page  # changed: b and d
    assert page.count('<span class="tag fooled">fooled</span>') == 1  # the gallery agrees with the card


def test_no_machine_paths_in_what_is_shared(report):
    out, paths = report
    case_root = str(out.parent)
    for kind in ("results", "summary", "html"):
        assert case_root not in paths[kind].read_text(), kind
    settings = json.loads(paths["results"].read_text())["settings"]
    assert settings["original"] == "…/" + "/".join(Path(out.parent / "originals").parts[-2:])
    assert "/c/class_2" in paths["summary"].read_text()  # class names that look like paths stay


def test_wrong_checkpoint_warning_is_a_box_and_comes_from_the_photos(tmp_path):
    case = build_hand_case(tmp_path)
    # The four photos are the task's MEPP19test here (the official model gets 100% there); the list has another name.
    (tmp_path / "MEPP19test.csv").write_text("a.png\nb.png\nc.png\nd.png\n")
    paths = write_report(evaluate(hand_options(case, gallery=0)), case["out"])
    page, text = html.unescape(paths["html"].read_text()), paths["summary"].read_text()
    assert '<div class="warnbox" role="alert"><strong>Warning</strong>clean top-1 of' in page
    assert "is 75.0%, but the task's ResNet50-places365 gets 100.00% on MEPP19test" in page
    assert "> **Warning:** clean top-1 of" in text
    assert "(see the warning: the attack model is probably not the task's)" in text
