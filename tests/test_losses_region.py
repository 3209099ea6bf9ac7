"""Focal, Lovász-softmax and Tversky losses against values worked out by hand on four pixels.

The pixels, one image of 1 x 4, two classes, given as softmax probabilities (p0, p1):
  a: (0.8, 0.2) label 0      b: (0.3, 0.7) label 1      c: (0.6, 0.4) label 1
  d: (0.5, 0.5) ignored
Logits are the logs of these probabilities, whose softmax gives them back.
"""

from __future__ import annotations

import math

import pytest
import torch

from segkit.cli import main
from segkit.engine.losses import build_criterion
from segkit.label_map import IGNORE_INDEX
from segkit_plugins.losses.cross_entropy import CrossEntropyLoss
from segkit_plugins.losses.focal import FocalLoss
from segkit_plugins.losses.lovasz import LovaszSoftmaxLoss
from segkit_plugins.losses.tversky import TverskyLoss

A, B, C, D = (0.8, 0.2), (0.3, 0.7), (0.6, 0.4), (0.5, 0.5)
X = IGNORE_INDEX


def pixels(*images):
    """Logits (N, 2, 1, W) and target (N, 1, W) from images given as [(probabilities, label)]."""
    probabilities = torch.tensor([[p for p, _ in image] for image in images], dtype=torch.float64)
    logits = probabilities.log().permute(0, 2, 1).unsqueeze(2).requires_grad_()
    target = torch.tensor([[label for _, label in image] for image in images]).unsqueeze(1)
    return logits, target


def four_pixels():
    return pixels([(A, 0), (B, 1), (C, 1), (D, X)])


# ---- focal -------------------------------------------------------------------------------------


def test_focal_matches_the_hand_computed_value():
    logits, target = four_pixels()
    # -(1 - p)^2 log p at the true class: a p=0.8, b p=0.7, c p=0.4; d ignored; mean of three
    expected = -(0.2**2 * math.log(0.8) + 0.3**2 * math.log(0.7) + 0.6**2 * math.log(0.4)) / 3
    assert expected == pytest.approx(0.123630, abs=1e-6)
    assert FocalLoss(X)(logits, target).item() == pytest.approx(expected, rel=1e-12)


def test_focal_alpha_weighs_each_class_and_still_divides_by_the_pixel_count():
    logits, target = four_pixels()
    # class 0 weighs 0.25, class 1 weighs 1; gamma 1
    expected = -(0.25 * 0.2 * math.log(0.8) + 0.3 * math.log(0.7) + 0.6 * math.log(0.4)) / 3
    loss = FocalLoss(X, gamma=1.0, alpha=[0.25, 1.0])(logits, target)
    assert loss.item() == pytest.approx(expected, rel=1e-12)


def test_focal_with_gamma_zero_is_cross_entropy():
    logits, target = four_pixels()
    assert FocalLoss(X, gamma=0.0)(logits, target).item() == pytest.approx(
        CrossEntropyLoss(X)(logits, target).item(),
        rel=1e-6,  # float32: CE sums band by band
    )


# ---- Lovász-softmax ----------------------------------------------------------------------------


def test_lovasz_matches_the_hand_computed_extension():
    logits, target = four_pixels()
    # class 0, errors sorted: c 0.6 (not 0), b 0.3 (not 0), a 0.2 (is 0); |class| = 1.
    #   Jaccard loss of the first k as mistakes: 1/2, 2/3, 3/3 -> gradient 1/2, 1/6, 1/3
    #   loss 0.6/2 + 0.3/6 + 0.2/3 = 5/12
    # class 1, errors sorted: c 0.6 (is 1), b 0.3 (is 1), a 0.2 (not 1); |class| = 2.
    #   Jaccard losses 1/2, 2/2, 3/3 -> gradient 1/2, 1/2, 0; loss 0.3 + 0.15 = 9/20
    # mean of the two: 13/30
    assert LovaszSoftmaxLoss(X)(logits, target).item() == pytest.approx(13 / 30, rel=1e-12)


def test_lovasz_classes_present_all_or_a_list():
    logits, target = pixels([(A, 0), (B, 0), (C, X), (D, X)])
    # class 0: errors b 0.7, a 0.2, both of class 0 -> Jaccard 1/2, 2/2 -> 0.35 + 0.1 = 0.45
    # class 1 is absent: every error counts fully at the top, loss = its largest p1 = 0.7
    assert LovaszSoftmaxLoss(X)(logits, target).item() == pytest.approx(0.45, rel=1e-12)
    assert LovaszSoftmaxLoss(X, classes="all")(logits, target).item() == pytest.approx(
        (0.45 + 0.7) / 2, rel=1e-12
    )
    assert LovaszSoftmaxLoss(X, classes=[1])(logits, target).item() == pytest.approx(0.7, rel=1e-12)


def test_lovasz_per_image_averages_image_losses_and_skips_unlabelled_images():
    logits, target = pixels(
        [(A, 0), (B, 0), (C, X), (D, X)],  # 0.45, as above
        [(A, X), (B, X), (C, 1), (D, X)],  # class 1 only, error 0.6 -> 0.6
        [(A, X), (B, X), (C, X), (D, X)],  # nothing labelled: left out
    )
    per_image = LovaszSoftmaxLoss(X, per_image=True)(logits, target)
    assert per_image.item() == pytest.approx((0.45 + 0.6) / 2, rel=1e-12)
    # the batch as one set of pixels a:0, b:0, c:1:
    #   class 0 sorted b 0.7 (is), c 0.6 (not), a 0.2 (is), |class| 2: Jaccard 1/2, 2/3, 3/3
    #     -> 0.7/2 + 0.6/6 + 0.2/3 = 31/60
    #   class 1 sorted b 0.7 (not), c 0.6 (is), a 0.2 (not), |class| 1: Jaccard 1/2, 2/2, 3/3
    #     -> 0.35 + 0.3 = 39/60
    batch = LovaszSoftmaxLoss(X)(logits, target)
    assert batch.item() == pytest.approx((31 / 60 + 39 / 60) / 2, rel=1e-12)


# ---- Tversky -----------------------------------------------------------------------------------


def test_tversky_matches_the_hand_computed_index():
    logits, target = four_pixels()
    # class 0: TP 0.8, FP 0.3 + 0.6 = 0.9, FN 0.2; TI = 1.8 / (0.8 + 0.3*0.9 + 0.7*0.2 + 1)
    # class 1: TP 0.7 + 0.4 = 1.1, FP 0.2, FN 0.3 + 0.6 = 0.9; TI = 2.1 / (1.1 + 0.06 + 0.63 + 1)
    ti0, ti1 = 1.8 / 2.21, 2.1 / 2.79
    loss = TverskyLoss(X)(logits, target)
    assert loss.item() == pytest.approx(((1 - ti0) + (1 - ti1)) / 2, rel=1e-12)
    focal = TverskyLoss(X, gamma=2.0)(logits, target)
    assert focal.item() == pytest.approx(((1 - ti0) ** 2 + (1 - ti1) ** 2) / 2, rel=1e-12)


def test_tversky_counts_an_absent_class_by_its_false_positives():
    logits, target = pixels([(A, 0), (B, 0), (C, X), (D, X)])
    # class 1 absent: TP 0, FN 0, FP 0.2 + 0.7 = 0.9; TI = 1 / (0.3 * 0.9 + 1)
    # class 0: TP 0.8 + 0.3 = 1.1, FP 0, FN 0.2 + 0.7 = 0.9; TI = 2.1 / (1.1 + 0.7 * 0.9 + 1)
    expected = ((1 - 2.1 / 2.73) + (1 - 1 / 1.27)) / 2
    assert TverskyLoss(X)(logits, target).item() == pytest.approx(expected, rel=1e-12)


# ---- what all three share ----------------------------------------------------------------------

LOSSES = {
    "focal": lambda: FocalLoss(X, alpha=[0.5, 1.0, 2.0]),
    "lovasz": lambda: LovaszSoftmaxLoss(X),
    "lovasz_per_image_all": lambda: LovaszSoftmaxLoss(X, classes="all", per_image=True),
    "tversky": lambda: TverskyLoss(X, gamma=1.5),
}


def random_batch(seed=0, dtype=torch.float32):
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(2, 3, 3, 4, generator=generator, dtype=dtype, requires_grad=True)
    target = torch.randint(0, 3, (2, 3, 4), generator=generator)
    target[torch.rand(2, 3, 4, generator=generator) < 0.3] = X
    return logits, target


@pytest.mark.parametrize("name", LOSSES)
def test_ignored_pixels_change_nothing_whatever_their_logits(name):
    logits, target = random_batch()
    changed = logits.detach().clone()
    changed[(target == X).unsqueeze(1).expand_as(changed)] = 1000.0
    changed.requires_grad_()
    loss = LOSSES[name]()
    before, after = loss(logits, target), loss(changed, target)
    assert after.item() == pytest.approx(before.item(), rel=1e-6)
    after.backward()
    assert (changed.grad[(target == X).unsqueeze(1).expand_as(changed)] == 0).all()


@pytest.mark.parametrize("name", LOSSES)
def test_the_gradient_matches_finite_differences(name):
    logits, target = random_batch(seed=1, dtype=torch.float64)
    loss = LOSSES[name]()
    assert torch.autograd.gradcheck(lambda x: loss(x, target), (logits,), eps=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", LOSSES)
def test_an_all_ignored_batch_gives_zero_and_a_usable_gradient(name):
    logits, target = random_batch()
    target.fill_(X)
    value = LOSSES[name]()(logits, target)
    value.backward()
    assert math.isfinite(value.item()) and torch.isfinite(logits.grad).all()


@pytest.mark.parametrize("loss", [FocalLoss(X, gamma=0.5), TverskyLoss(X, gamma=0.5, smooth=1e-9)])
def test_a_gamma_below_one_keeps_the_gradient_finite_at_a_saturated_pixel(loss):
    logits = torch.tensor([[[[40.0]], [[-40.0]]]], requires_grad=True)  # p = 1 in float32
    loss(logits, torch.zeros(1, 1, 1, dtype=torch.long)).backward()
    assert torch.isfinite(logits.grad).all()


def test_lovasz_is_a_weighted_term_beside_cross_entropy(use_plugins):
    use_plugins({}, load_entry_points=True)
    config = {
        "loss": [
            {"type": "cross_entropy", "loss_weight": 1.0},
            {"type": "lovasz_softmax", "loss_weight": 0.5},
        ],
        "model": {},
        "train": {"max_iters": 10},
    }
    criterion = build_criterion(config)
    logits, target = random_batch(seed=2)
    total, logs = criterion({"main": logits}, target, step=0)
    ce, lovasz = CrossEntropyLoss(X)(logits, target), LovaszSoftmaxLoss(X)(logits, target)
    assert total.item() == pytest.approx((ce + 0.5 * lovasz).item(), rel=1e-6)
    assert logs["loss_main.lovasz_softmax"].item() == pytest.approx(lovasz.item(), rel=1e-6)


# ---- bad options -------------------------------------------------------------------------------

QUICK = "configs/quickstart.yaml"


@pytest.mark.parametrize(
    "loss, key, says",
    [
        (
            "{type: focal, alpha: [1.0, 2.0]}",
            "loss.alpha",
            "has 2 value(s) but model.num_classes is 8",
        ),
        ("{type: focal, gamma: -1}", "loss.gamma", "at least 0"),
        ("{type: tversky, smooth: 0}", "loss.smooth", "above 0"),
        ("{type: tversky, beta: -0.5}", "loss.beta", "at least 0"),
        ("{type: lovasz, classes: some}", "loss.classes", "'present' or 'all'"),
        ("{type: lovasz, classes: [1, 9]}", "loss.classes", "beyond model.num_classes 8"),
        (
            "[{type: cross_entropy}, {type: focal, alpha: [1, 1, 1]}]",
            "loss.1.alpha",
            "has 3 value(s)",
        ),
    ],
)
def test_bad_options_are_config_errors_naming_the_key(loss, key, says, tmp_path, capsys):
    import pathlib

    root = pathlib.Path(__file__).resolve().parents[1]
    config = tmp_path / "run.yaml"
    config.write_text(f"_base_: {root / QUICK}\nloss: {loss}\n", encoding="utf-8")
    assert main(["config", str(config), "--check"]) == 2
    err = capsys.readouterr().err
    assert f"run.yaml:2: {key}: " in err and says in err, err
    assert "Traceback" not in err


# ---- training with them ------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(
    "loss",
    [
        "{type: focal, gamma: 2.0}",
        "[{type: cross_entropy, loss_weight: 1}, {type: lovasz, loss_weight: 0.5}]",
        "{type: tversky, alpha: 0.3, beta: 0.7, gamma: 0.75}",
    ],
)
def test_the_quickstart_trains_with_the_loss(loss, tmp_path):
    import json
    import pathlib

    root = pathlib.Path(__file__).resolve().parents[1]
    run = tmp_path / "run"
    small = [
        "train.max_iters=3",
        "train.eval_interval=0",
        "train.device=cpu",
        "data.train.size=[64, 64]",
        "data.val.size=[64, 64]",
        "data.val.length=2",
        "data.batch_size=2",
        "data.workers=0",
        "logging.loggers=[]",
    ]
    status = main(["train", str(root / QUICK), f"loss={loss}", *small, "--work-dir", str(run)])
    assert status == 0
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    losses = [line["loss"] for line in lines if line["split"] == "train"]
    assert losses and all(math.isfinite(value) and value > 0 for value in losses)
