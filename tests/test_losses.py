import math

import pytest
import torch
import torch.nn.functional as F

from segkit.engine.losses import Criterion, OutputWeight, WeightedLoss, build_criterion
from segkit.label_map import IGNORE_INDEX
from segkit_plugins.losses.cross_entropy import CrossEntropyLoss, OhemCrossEntropyLoss
from segkit_plugins.losses.dice import DiceLoss


def batch(seed=0, n=2, c=4, h=6, w=7, ignored=0.3):
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, c, h, w, generator=generator, requires_grad=True)
    target = torch.randint(0, c, (n, h, w), generator=generator)
    target[torch.rand(n, h, w, generator=generator) < ignored] = IGNORE_INDEX
    return logits, target


def per_pixel_ce(logits, target):
    """-log softmax of the true class at every labelled pixel, computed by hand."""
    log_probs = logits.log_softmax(1).permute(0, 2, 3, 1)[target != IGNORE_INDEX]
    return -log_probs.gather(1, target[target != IGNORE_INDEX].unsqueeze(1)).squeeze(1)


def test_cross_entropy_is_the_mean_over_labelled_pixels_only():
    logits, target = batch()
    loss = CrossEntropyLoss(IGNORE_INDEX)(logits, target)
    assert loss.item() == pytest.approx(per_pixel_ce(logits, target).mean().item(), rel=1e-6)


def test_ignored_pixels_change_nothing_whatever_their_logits():
    logits, target = batch()
    changed = logits.detach().clone()
    changed[(target == IGNORE_INDEX).unsqueeze(1).expand_as(changed)] = 1000.0
    loss = CrossEntropyLoss(IGNORE_INDEX)
    assert loss(changed, target).item() == pytest.approx(loss(logits, target).item(), rel=1e-6)


def test_class_weights_scale_their_class_and_keep_dividing_by_the_pixel_count():
    logits, target = batch()
    weights = [1.0, 2.0, 0.5, 3.0]
    loss = CrossEntropyLoss(IGNORE_INDEX, class_weights=weights)(logits, target)
    labelled = target[target != IGNORE_INDEX]
    expected = (
        torch.tensor(weights)[labelled] * per_pixel_ce(logits, target)
    ).sum() / labelled.numel()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)


def test_class_weights_of_the_wrong_length_are_reported():
    logits, target = batch()
    with pytest.raises(
        ValueError, match="class_weights has 2 values but the model predicts 4 classes"
    ):
        CrossEntropyLoss(IGNORE_INDEX, class_weights=[1.0, 2.0])(logits, target)


def test_label_smoothing_matches_the_textbook_formula():
    logits, target = batch(ignored=0.0)
    eps = 0.1
    loss = CrossEntropyLoss(IGNORE_INDEX, label_smoothing=eps)(logits, target)
    log_probs = logits.log_softmax(1)
    expected = (1 - eps) * F.nll_loss(log_probs, target) - eps * log_probs.mean(1).mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_an_all_ignored_batch_gives_zero_and_a_usable_gradient():
    logits, target = batch()
    target.fill_(IGNORE_INDEX)
    for loss in (
        CrossEntropyLoss(IGNORE_INDEX),
        OhemCrossEntropyLoss(IGNORE_INDEX),
        DiceLoss(IGNORE_INDEX),
    ):
        value = loss(logits, target)
        value.backward()
        assert math.isfinite(value.item())
        assert torch.isfinite(logits.grad).all()
        logits.grad = None


def test_ohem_keeps_only_pixels_below_the_threshold():
    logits, target = batch(seed=3)
    probability = logits.softmax(1).permute(0, 2, 3, 1)[target != IGNORE_INDEX]
    true_probability = probability.gather(1, target[target != IGNORE_INDEX].unsqueeze(1)).squeeze(1)
    hard = true_probability < 0.3
    assert 0 < hard.sum() < hard.numel()
    loss = OhemCrossEntropyLoss(IGNORE_INDEX, threshold=0.3, min_kept=0)(logits, target)
    assert loss.item() == pytest.approx(per_pixel_ce(logits, target)[hard].mean().item(), rel=1e-6)


def test_ohem_keeps_at_least_min_kept_hardest_pixels():
    logits, target = batch(seed=3)
    losses = per_pixel_ce(logits, target)
    hardest = losses.sort(descending=True).values[:10]
    loss = OhemCrossEntropyLoss(IGNORE_INDEX, threshold=1e-6, min_kept=10)(logits, target)
    assert loss.item() == pytest.approx(hardest.mean().item(), rel=1e-6)
    everything = OhemCrossEntropyLoss(IGNORE_INDEX, threshold=1e-6, min_kept=10**6)(logits, target)
    assert everything.item() == pytest.approx(losses.mean().item(), rel=1e-6)


def test_dice_matches_a_one_hot_computation_and_ignores_ignored_pixels():
    logits, target = batch(seed=5)
    labelled = (target != IGNORE_INDEX).unsqueeze(1).float()
    one_hot = F.one_hot(target.clamp(max=3), 4).permute(0, 3, 1, 2).float() * labelled
    probs = logits.softmax(1) * labelled
    dice = (2 * (probs * one_hot).sum((0, 2, 3)) + 1) / (
        (probs**2).sum((0, 2, 3)) + one_hot.sum((0, 2, 3)) + 1
    )
    assert DiceLoss(IGNORE_INDEX)(logits, target).item() == pytest.approx(
        (1 - dice.mean()).item(), rel=1e-6
    )


def test_dice_of_a_confident_correct_prediction_is_near_zero():
    _, target = batch(seed=2)
    logits = F.one_hot(target.clamp(max=3), 4).permute(0, 3, 1, 2).float() * 50
    assert DiceLoss(IGNORE_INDEX)(logits, target).item() < 1e-3


def constant_loss(value):
    return lambda logits, target: logits.sum() * 0 + value


def test_aux_outputs_are_weighted_and_the_weight_decays_linearly():
    criterion = Criterion(
        [WeightedLoss("a", 1.0, constant_loss(2.0))],
        {
            "main": OutputWeight(1.0, False),
            "aux0": OutputWeight(0.4, False),
            "aux1": OutputWeight(0.4, True),
        },
        max_iters=100,
    )
    outputs = {name: torch.zeros(1, 2, 2, 2) for name in ("main", "aux0", "aux1")}
    total, logs = criterion(outputs, torch.zeros(1, 2, 2, dtype=torch.long), step=25)
    # main 2 + aux0 0.4 * 2 + aux1 0.4 * (1 - 25/100) * 2
    assert total.item() == pytest.approx(2 + 0.8 + 0.6)
    assert {k: v.item() for k, v in logs.items()} == {
        "loss_main": 2.0,
        "loss_aux0": 2.0,
        "loss_aux1": 2.0,
    }
    assert criterion.output_weight("aux1", 100) == 0.0


def test_several_loss_terms_are_weighted_summed_and_each_logged():
    criterion = Criterion(
        [
            WeightedLoss("ce", 1.0, constant_loss(2.0)),
            WeightedLoss("dice", 0.5, constant_loss(4.0)),
        ],
        {"main": OutputWeight(1.0, False)},
        max_iters=10,
    )
    total, logs = criterion(
        {"main": torch.zeros(1, 2, 2, 2)}, torch.zeros(1, 2, 2, dtype=torch.long), 0
    )
    assert total.item() == pytest.approx(4.0)
    assert {k: v.item() for k, v in logs.items()} == {
        "loss_main.ce": 2.0,
        "loss_main.dice": 4.0,
        "loss_main": 4.0,
    }


def test_build_criterion_reads_loss_terms_and_aux_head_weights(use_plugins):
    use_plugins({}, load_entry_points=True)
    config = {
        "loss": [
            {"type": "cross_entropy", "loss_weight": 1.0},
            {"type": "dice", "loss_weight": 0.5},
            {"type": "dice", "loss_weight": 0.25},
        ],
        "model": {"aux_heads": [{"type": "x", "loss_weight": 0.4, "loss_decay": True}]},
        "train": {"max_iters": 50},
    }
    criterion = build_criterion(config)
    assert [(t.name, t.weight) for t in criterion.terms] == [
        ("cross_entropy", 1.0),
        ("dice", 0.5),
        ("dice_1", 0.25),
    ]
    assert criterion.outputs["aux0"] == OutputWeight(0.4, True)
    assert criterion.output_weight("aux0", 25) == pytest.approx(0.2)
