"""protector.evaluation.leakage on hand-made logits."""

from __future__ import annotations

import pytest
import torch

from protector.evaluation.leakage import leakage_summary, photo_leak

# 8 classes; 0, 1, 2 sensitive: 0 home, 1 home and health, 2 alcohol.
SENSITIVE = {0: "/b/bedroom", 1: "/h/hospital_room", 2: "/b/bar"}
CRITERIA = {0: ("home",), 1: ("home", "health"), 2: ("alcohol",)}


def _tops(logits: torch.Tensor, k: int = 5) -> list[list[int]]:
    return logits.topk(k, dim=1).indices.tolist()


def test_summary_from_hand_made_logits() -> None:
    clean = torch.tensor([
        [9.0, 1, 0, 0, 0, 0, 0, 0],  # p0: bedroom
        [0.0, 9, 0, 0, 0, 0, 0, 0],  # p1: hospital room
        [0.0, 0, 9, 0, 0, 0, 0, 0],  # p2: bar
        [0.0, 0, 0, 9, 0, 0, 0, 0],  # p3: class 3, not sensitive
    ])
    protected = torch.tensor([
        [1.0, 9, 0, 2, 3, 4, 5, 6],  # p0 -> hospital room: sensitive, same criterion (home)
        [0.0, 1, 2, 9, 8, 7, 6, 5],  # p1 -> 3; top-5 3 4 5 6 7: nothing sensitive
        [9.0, 1, 8, 2, 3, 4, 5, 6],  # p2 -> bedroom: sensitive, other criterion; bar still in top-5
        [0.0, 0, 9, 1, 0, 0, 0, 0],  # p3 -> bar: moved into the list
    ])
    pairs = list(zip(clean.argmax(1).tolist(), _tops(protected)))
    summary = leakage_summary(pairs, SENSITIVE, CRITERIA, ["home", "health", "alcohol", "military"])
    assert summary["k"] == 5
    assert summary["sensitive"]["n"] == 3
    assert summary["sensitive"]["top1_sensitive"] == pytest.approx(2 / 3)  # p0, p2
    assert summary["sensitive"]["topk_sensitive"] == pytest.approx(2 / 3)  # p1 has none in its top-5
    assert summary["sensitive"]["same_criterion_top1"] == pytest.approx(1 / 3)  # p0 only
    assert summary["sensitive"]["same_criterion_topk"] == pytest.approx(2 / 3)  # p0; p2's bar in top-5
    assert summary["other"] == {"n": 1, "top1_sensitive": 1.0, "topk_sensitive": 1.0}

    rows = {row["criterion"]: row for row in summary["per_criterion"]}
    assert list(rows) == ["home", "health", "alcohol"]  # no photo is predicted military
    assert rows["home"]["n"] == 2 and rows["home"]["still_in_criterion_top1"] == 0.5  # p0 yes, p1 no
    # only p1 (hospital room) is "health" before protection, and it went to class 3
    assert rows["health"]["n"] == 1 and rows["health"]["still_in_criterion_top1"] == 0.0
    assert rows["alcohol"]["still_in_criterion_top1"] == 0.0 and rows["alcohol"]["still_in_criterion_topk"] == 1.0

    by_class = {row["class"]: row for row in summary["per_category"]}
    assert set(by_class) == {0, 1, 2}
    assert by_class[1]["top1_sensitive"] == 0.0 and by_class[1]["criteria"] == ["home", "health"]
    assert by_class[2]["top1_sensitive"] == 1.0 and by_class[2]["same_criterion_top1"] == 0.0


def test_empty_groups_give_none() -> None:
    summary = leakage_summary([(5, [5, 6, 7])], SENSITIVE, CRITERIA)
    assert summary["sensitive"]["n"] == 0 and summary["sensitive"]["top1_sensitive"] is None
    assert summary["per_criterion"] == [] and summary["per_category"] == []
    assert summary["other"] == {"n": 1, "top1_sensitive": 0.0, "topk_sensitive": 0.0}


def test_photo_leak_needs_a_prediction() -> None:
    with pytest.raises(ValueError, match="empty"):
        photo_leak(0, [], SENSITIVE, CRITERIA)
