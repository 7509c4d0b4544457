"""topk_margin_loss, untargeted_ce_loss and SensitiveSafe."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from protector.losses import (
    L2Fidelity,
    SensitiveSafe,
    SSIMFidelity,
    TopKMargin,
    UntargetedCE,
    attack_loss_by_name,
    fidelity_by_name,
    topk_margin,
    topk_margin_loss,
    untargeted_ce_loss,
)


def test_margin_is_true_minus_best_other() -> None:
    logits = torch.tensor([[3.0, 1.0, 2.0], [0.0, 5.0, 1.0]])
    y = torch.tensor([0, 0])
    # sample 0: 3 - 2 = 1 (still top-1); sample 1: 0 - 5 = -5 (fooled), clamped at -kappa
    assert topk_margin_loss(logits, y, k=1, kappa=0.0) == pytest.approx((1.0 + 0.0) / 2)
    assert topk_margin_loss(logits, y, k=1, kappa=10.0) == pytest.approx((1.0 - 5.0) / 2)


def test_topk_margin_uses_kth_largest_other() -> None:
    logits = torch.tensor([[5.0, 4.0, 3.0, 2.0, 1.0]])
    y = torch.tensor([2])  # others sorted: 5, 4, 2, 1
    assert topk_margin(logits, y, k=1).item() == pytest.approx(3 - 5)
    assert topk_margin(logits, y, k=2).item() == pytest.approx(3 - 4)
    assert topk_margin(logits, y, k=3).item() == pytest.approx(3 - 2)
    assert topk_margin_loss(logits, y, k=3, kappa=0.0).item() == pytest.approx(1.0)


@settings(max_examples=60, deadline=None)
@given(
    batch=st.integers(1, 6),
    classes=st.integers(3, 12),
    k=st.integers(1, 5),
    seed=st.integers(0, 10_000),
)
def test_negative_topk_margin_means_out_of_topk(batch: int, classes: int, k: int, seed: int) -> None:
    k = min(k, classes - 1)
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(batch, classes, generator=gen)
    y = torch.randint(0, classes, (batch,), generator=gen)
    out_of_topk = (logits.topk(k, dim=1).indices != y[:, None]).all(dim=1)
    assert torch.equal(topk_margin(logits, y, k) < 0, out_of_topk)


def test_gradient_pushes_true_logit_down_and_stops_beyond_kappa() -> None:
    logits = torch.tensor([[4.0, 1.0, 0.0], [0.0, 9.0, 1.0]], requires_grad=True)
    y = torch.tensor([0, 0])
    topk_margin_loss(logits, y, k=1, kappa=2.0).backward()
    grad = logits.grad
    assert grad[0, 0] > 0 and grad[0, 1] < 0  # descent lowers the true logit, raises the rival
    assert torch.all(grad[1] == 0)  # already beaten by 9 > kappa: no pull


def test_class_weights_weight_each_sample_by_its_class() -> None:
    logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 4.0, 0.0]])
    y = torch.tensor([0, 1])  # margins 2 and 4
    weights = torch.tensor([1.0, 3.0, 1.0])
    expected = (1 * 2 + 3 * 4) / (1 + 3)
    assert topk_margin_loss(logits, y, k=1, class_weights=weights).item() == pytest.approx(expected)
    assert topk_margin_loss(logits, y, k=1, class_weights=torch.ones(3)).item() == pytest.approx(3.0)


@pytest.mark.parametrize(
    ("logits", "y", "k", "kappa", "weights", "match"),
    [
        (torch.zeros(2, 3), torch.tensor([0, 3]), 1, 0.0, None, "labels must be in"),
        (torch.zeros(2, 3), torch.tensor([0, -1]), 1, 0.0, None, "labels must be in"),
        (torch.zeros(2, 3), torch.tensor([0, 1]), 3, 0.0, None, "k must be in"),
        (torch.zeros(2, 3), torch.tensor([0, 1]), 1, -1.0, None, "kappa"),
        (torch.zeros(2, 3), torch.tensor([0]), 1, 0.0, None, "y must have shape"),
        (torch.zeros(6), torch.tensor([0]), 1, 0.0, None, r"\(B, C\)"),
        (torch.zeros(2, 3), torch.tensor([0, 1]), 1, 0.0, torch.ones(4), "class_weights"),
    ],
)
def test_bad_inputs_raise_clear_errors(logits, y, k, kappa, weights, match) -> None:
    with pytest.raises(ValueError, match=match):
        topk_margin_loss(logits, y, k=k, kappa=kappa, class_weights=weights)


def test_bf16_logits_are_handled_in_float32() -> None:
    logits = torch.tensor([[1000.0, 999.0, 0.0]]).to(torch.bfloat16)
    out = topk_margin_loss(logits, torch.tensor([0]), k=1)
    assert out.dtype == torch.float32


def test_untargeted_ce_loss_is_minus_the_cross_entropy_and_relativistic_ignores_the_clean_offset() -> None:
    import torch.nn.functional as F

    from protector.losses import untargeted_ce_loss

    torch.manual_seed(0)
    logits, clean = torch.randn(4, 10), torch.randn(4, 10)
    y = torch.tensor([0, 3, 5, 9])
    assert untargeted_ce_loss(logits, y).item() == pytest.approx(-F.cross_entropy(logits, y).item())
    relativistic = untargeted_ce_loss(logits, y, clean_logits=clean)
    assert relativistic.item() == pytest.approx(-F.cross_entropy(logits - clean, y).item())
    # Only the change from the clean logits counts: the clean photo itself scores log(1/C).
    assert untargeted_ce_loss(clean, y, clean_logits=clean).item() == pytest.approx(-math.log(10), abs=1e-6)


def test_loss_objects_compute_what_their_functions_do() -> None:
    torch.manual_seed(0)
    logits, clean = torch.randn(6, 10), torch.randn(6, 10)
    y = torch.randint(0, 10, (6,))
    weights = torch.rand(10) + 0.5
    assert torch.equal(TopKMargin(3, 1.0)(logits, y, class_weights=weights),
                       topk_margin_loss(logits, y, k=3, kappa=1.0, class_weights=weights))
    assert torch.equal(UntargetedCE()(logits, y, clean), untargeted_ce_loss(logits, y))  # clean logits unused
    assert torch.equal(UntargetedCE(relativistic=True)(logits, y, clean), untargeted_ce_loss(logits, y, clean))
    assert UntargetedCE(relativistic=True).needs_clean_logits and not TopKMargin().needs_clean_logits
    with pytest.raises(ValueError, match="clean"):
        UntargetedCE(relativistic=True)(logits, y)
    with pytest.raises(ValueError, match="kappa"):
        TopKMargin(kappa=-1.0)


@pytest.mark.parametrize(("name", "expected"), [("margin", (1, 2.0)), ("topk", (4, 2.0))])
def test_short_loss_names_build_the_margin_objects(name: str, expected: tuple[int, float]) -> None:
    loss = attack_loss_by_name(name, top_k=4, kappa=2.0)
    assert (loss.k, loss.kappa) == expected
    assert attack_loss_by_name("relativistic").relativistic
    with pytest.raises(ValueError, match="loss must be one of"):
        attack_loss_by_name("hinge")


def test_fidelity_terms_are_zero_at_the_reference_and_grow_with_the_delta() -> None:
    torch.manual_seed(0)
    reference = torch.rand(2, 3, 32, 32)
    eps = 4 / 255
    at_budget = (reference + eps).clamp(0, 1)
    assert L2Fidelity()(reference, reference, eps) == 0
    assert L2Fidelity()(reference + eps, reference, eps) == pytest.approx(1.0)
    assert SSIMFidelity()(reference, reference, eps) == pytest.approx(0.0, abs=1e-6)
    noisy = (reference + eps * torch.randn_like(reference).sign()).clamp(0, 1)
    assert SSIMFidelity()(noisy, reference, eps) > SSIMFidelity()(at_budget, reference, eps) >= 0
    with pytest.raises(ValueError, match="fidelity must be one of"):
        fidelity_by_name("l1")


@settings(max_examples=60, deadline=None)
@given(batch=st.integers(1, 6), k=st.integers(1, 3), seed=st.integers(0, 10_000))
def test_negative_sensitive_safe_means_the_avoided_mass_is_below_the_kth_other(batch: int, k: int, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    logits = 3 * torch.randn(batch, 10, generator=gen)
    y = torch.randint(0, 10, (batch,), generator=gen)
    sensitive = [0, 1, 2, 3]
    per_sample = torch.stack([SensitiveSafe(sensitive, k=k, kappa=100.0)(row[None], label[None])
                              for row, label in zip(logits, y)])
    for row, label, value in zip(logits.softmax(1), y, per_sample):
        avoided = sorted(set(sensitive) | {int(label)})
        others = sorted(set(range(10)) - set(avoided), key=lambda c: -row[c])
        assert bool(value < 0) == bool(row[avoided].sum() < row[others[k - 1]])
        if value < 0:  # then no avoided class is in the top k
            assert not set(row.topk(k).indices.tolist()) & set(avoided)


def test_sensitive_safe_by_hand_and_its_scopes(tmp_path) -> None:
    logits = torch.tensor([[2.0, 1.0, 0.0, 0.5, -1.0]])
    # avoided {0, 1} (label 0 is sensitive): log(e^2 + e^1) - 0.5
    assert SensitiveSafe([0, 1])(logits, torch.tensor([0])).item() == pytest.approx(math.log(math.e**2 + math.e) - 0.5)
    # a label outside the list is avoided with them: log(e^2 + e^1 + e^0.5) - 0
    assert SensitiveSafe([0, 1])(logits, torch.tensor([3])).item() == pytest.approx(
        math.log(math.e**2 + math.e + math.e**0.5))
    # k = 2: below the second best other class (class 2, logit 0)
    assert SensitiveSafe([0, 1], k=2)(logits, torch.tensor([0])).item() == pytest.approx(math.log(math.e**2 + math.e))
    beaten = torch.tensor([[-5.0, -5.0, 3.0, 0.0, 0.0]])
    assert SensitiveSafe([0, 1], kappa=0.5)(beaten, torch.tensor([0])).item() == -0.5  # clamped at -kappa

    criteria = tmp_path / "criteria.csv"
    criteria.write_text("category,index,criteria\n/x/zero,0,home\n/x/one,1,health\n/x/two,2,home;alcohol\n")
    loss = SensitiveSafe([0, 1, 2], kappa=100.0, scope="criteria", criteria=str(criteria))
    assert loss.related == {0: (0, 2), 1: (1,), 2: (0, 2)}
    # label 1 (health) avoids itself only: its top-1 margin against the best other class, 2
    assert loss(logits, torch.tensor([1])).item() == pytest.approx(1.0 - 2.0)
    # label 3 is not sensitive: the plain top-1 margin
    assert loss(logits, torch.tensor([3])).item() == pytest.approx(
        topk_margin_loss(logits, torch.tensor([3]), k=1, kappa=100.0).item())


def test_sensitive_safe_reads_the_real_senscats_and_criteria(shared) -> None:
    path = shared.path("data/mepp/MEPP18senscats.txt")
    loss = SensitiveSafe(str(path), k=5, scope="criteria")
    assert len(loss.sensitive) == 60 and 52 in loss.related[45]  # bedroom and bathroom: both "home"
    assert 178 not in loss.related[52]  # hospital is not a home
    built = attack_loss_by_name("sensitive_safe", top_k=5, kappa=2.0, sensitive=str(path))
    assert isinstance(built, SensitiveSafe) and (built.k, built.kappa, built.scope) == (5, 2.0, "all")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"sensitive": []}, "non-empty list"),
        ({"sensitive": [-1]}, "non-empty list"),
        ({"sensitive": [0], "k": 0}, "k must be"),
        ({"sensitive": [0], "kappa": -1.0}, "kappa"),
        ({"sensitive": [0], "scope": "some"}, "scope"),
    ],
)
def test_sensitive_safe_refuses_bad_settings(kwargs, match) -> None:
    with pytest.raises(ValueError, match=match):
        SensitiveSafe(**kwargs)


def test_sensitive_safe_checks_the_classifier_size() -> None:
    with pytest.raises(ValueError, match="do not exist"):
        SensitiveSafe([0, 7])(torch.zeros(1, 5), torch.tensor([0]))
    with pytest.raises(ValueError, match="leaves 1"):
        SensitiveSafe([0, 1, 2], k=2)(torch.zeros(1, 5), torch.tensor([3]))
    with pytest.raises(ValueError, match="needs the sensitive categories"):
        attack_loss_by_name("sensitive_safe")
