"""Cross-entropy of the heads' logits scored at the label size band by band: the same loss and
gradient as upsampling the whole batch first, without holding the full-resolution logits."""

import pytest
import torch
import torch.nn.functional as F

from segkit.engine.losses import Criterion, OutputWeight, WeightedLoss
from segkit.label_map import IGNORE_INDEX
from segkit.segmentor import resize_logits
from segkit_plugins.losses.cross_entropy import CrossEntropyLoss
from segkit_plugins.losses.dice import DiceLoss
from segkit_plugins.losses.upsampled_ce import upsampled_cross_entropy_sum

TOLERANCE = 1e-5


def head_logits(seed, n=2, c=5, h=7, w=9, scale=3.0):
    generator = torch.Generator().manual_seed(seed)
    return (torch.randn(n, c, h, w, generator=generator) * scale).requires_grad_()


def labels(seed, n, c, height, width, ignored=0.3):
    generator = torch.Generator().manual_seed(seed + 1000)
    target = torch.randint(0, c, (n, height, width), generator=generator)
    target[torch.rand(n, height, width, generator=generator) < ignored] = IGNORE_INDEX
    return target


def relative_error(value, reference):
    return ((value - reference).abs().max() / reference.abs().max()).item()


def reference_sum(logits, target, align_corners, weight=None, label_smoothing=0.0):
    upsampled = F.interpolate(
        logits, size=target.shape[-2:], mode="bilinear", align_corners=align_corners
    )
    return F.cross_entropy(
        upsampled.float(),
        target,
        weight=weight,
        ignore_index=IGNORE_INDEX,
        reduction="sum",
        label_smoothing=label_smoothing,
    )


@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize(
    "low, full",
    [((7, 9), (53, 61)), ((8, 8), (64, 64)), ((9, 8), (4, 3)), ((1, 5), (6, 11)), ((5, 5), (5, 5))],
)
def test_loss_and_gradient_equal_upsampling_first(align_corners, low, full):
    logits = head_logits(seed=sum(low + full), h=low[0], w=low[1])
    target = labels(1, 2, 5, *full)
    weight = torch.tensor([0.5, 2.0, 1.0, 0.1, 3.0])
    options = {"weight": weight, "label_smoothing": 0.1}
    expected = reference_sum(logits, target, align_corners, **options)
    (expected_grad,) = torch.autograd.grad(expected, logits)
    # A band of a few rows, so that most sizes here take several bands.
    value = upsampled_cross_entropy_sum(
        logits,
        target,
        ignore_index=IGNORE_INDEX,
        align_corners=align_corners,
        band_elements=2 * 5 * full[1] * 3,
        **options,
    )
    (grad,) = torch.autograd.grad(value, logits)
    assert value.item() == pytest.approx(expected.item(), rel=TOLERANCE)
    assert relative_error(grad, expected_grad) < TOLERANCE


def test_the_band_size_changes_nothing_but_rounding():
    logits, target = head_logits(seed=3, h=8, w=8), labels(3, 2, 5, 64, 64)
    values = [
        upsampled_cross_entropy_sum(
            logits,
            target,
            weight=None,
            ignore_index=IGNORE_INDEX,
            label_smoothing=0.0,
            align_corners=False,
            band_elements=band,
        ).item()
        for band in (1, 2 * 5 * 64 * 7, 10**9)
    ]
    assert values == pytest.approx([values[0]] * 3, rel=1e-6)


def test_bf16_logits_score_as_the_bf16_upsampled_logits_did():
    """Under autocast the heads return bf16 and F.interpolate used to upsample in bf16; the
    banded loss rounds each band to bf16 the same way, so bf16 training scores what it did."""
    conv = torch.nn.Conv2d(4, 6, 1)
    features = torch.randn(2, 4, 9, 11, generator=torch.Generator().manual_seed(4))
    target = labels(4, 2, 6, 72, 88)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = conv(features) * 4
        upsampled = resize_logits(logits, target.shape[-2:])
    assert logits.dtype == upsampled.dtype == torch.bfloat16
    loss = CrossEntropyLoss(IGNORE_INDEX)
    expected = loss(upsampled, target)
    (expected_grad,) = torch.autograd.grad(expected, conv.weight, retain_graph=True)
    value = loss(logits, target)
    (grad,) = torch.autograd.grad(value, conv.weight)
    assert value.dtype == torch.float32
    assert value.item() == pytest.approx(expected.item(), rel=TOLERANCE)
    # The gradient reaches the head through bf16 tensors: equal to bf16 rounding.
    assert relative_error(grad, expected_grad) < 1e-2


def test_an_all_ignored_batch_gives_zero_loss_and_zero_gradient():
    logits = head_logits(seed=5)
    target = torch.full((2, 20, 30), IGNORE_INDEX)
    value = CrossEntropyLoss(IGNORE_INDEX)(logits, target)
    (grad,) = torch.autograd.grad(value, logits)
    assert value.item() == 0.0 and torch.equal(grad, torch.zeros_like(grad))


def saved_for_backward(loss):
    """The sizes of the tensors the autograd graph of ``loss`` keeps for the backward pass."""
    sizes, todo, seen = [], [loss.grad_fn], set()
    while todo:
        node = todo.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        kept = list(getattr(node, "saved_tensors", ()))
        kept += [getattr(node, name) for name in dir(node) if name.startswith("_saved_")]
        sizes += [t.numel() for t in kept if isinstance(t, torch.Tensor)]
        todo += [next_node for next_node, _ in node.next_functions]
    return sizes


def test_the_backward_pass_keeps_no_full_resolution_tensor():
    logits, target = head_logits(seed=6, c=8, h=8, w=8), labels(6, 2, 8, 96, 96)
    kept = saved_for_backward(CrossEntropyLoss(IGNORE_INDEX)(logits, target))
    assert kept and max(kept) <= logits.numel()  # the low-resolution gradient, nothing larger
    full_resolution = 2 * 8 * 96 * 96
    assert max(saved_for_backward(reference_sum(logits, target, False))) >= full_resolution


class Recorder:
    """A full-resolution loss term that notes the logits it was given."""

    def __init__(self):
        self.seen = []

    def __call__(self, logits, target):
        self.seen.append(logits)
        return logits.mean() * 0


def test_the_criterion_upsamples_once_for_all_terms_that_need_it_and_never_for_ce():
    first, second = Recorder(), Recorder()
    terms = [
        WeightedLoss("ce", 1.0, CrossEntropyLoss(IGNORE_INDEX)),
        WeightedLoss("a", 1.0, first),
        WeightedLoss("b", 1.0, second),
    ]
    criterion = Criterion(terms, {"main": OutputWeight(1.0, False)}, max_iters=1)
    logits = head_logits(seed=7).to(torch.bfloat16)
    target = labels(7, 2, 5, 28, 36)
    criterion({"main": logits}, target, 0)
    (seen,) = first.seen
    assert second.seen[0] is seen
    assert seen.shape[-2:] == (28, 36) and seen.dtype == torch.float32
    assert torch.equal(seen, resize_logits(logits, (28, 36)).float())
    only_ce = Criterion(terms[:1], {"main": OutputWeight(1.0, False)}, max_iters=1)
    only_ce({"main": logits}, target, 0)
    assert len(first.seen) == 1


def test_the_criterion_on_head_logits_equals_it_on_upsampled_logits():
    terms = [
        WeightedLoss("ce", 1.0, CrossEntropyLoss(IGNORE_INDEX, label_smoothing=0.05)),
        WeightedLoss("dice", 0.5, DiceLoss(IGNORE_INDEX)),
    ]
    weights = {"main": OutputWeight(1.0, False), "aux0": OutputWeight(0.4, False)}
    criterion = Criterion(terms, weights, max_iters=1)
    main, aux = head_logits(seed=8), head_logits(seed=9)
    target = labels(8, 2, 5, 40, 50)
    low, low_logs = criterion({"main": main, "aux0": aux}, target, 0)
    low_grads = torch.autograd.grad(low, (main, aux))
    upsampled = {n: resize_logits(t, (40, 50)) for n, t in (("main", main), ("aux0", aux))}
    full, full_logs = criterion(upsampled, target, 0)
    full_grads = torch.autograd.grad(full, (main, aux))
    assert low.item() == pytest.approx(full.item(), rel=TOLERANCE)
    assert low_logs.keys() == full_logs.keys()
    for low_grad, full_grad in zip(low_grads, full_grads):
        assert relative_error(low_grad, full_grad) < TOLERANCE


def test_without_gradients_the_loss_is_the_same():
    logits, target = head_logits(seed=10), labels(10, 2, 5, 56, 72)
    loss = CrossEntropyLoss(IGNORE_INDEX, label_smoothing=0.1)
    with torch.no_grad():
        value = loss(logits, target)
    assert value.item() == pytest.approx(loss(logits, target).item(), rel=1e-6)


def test_channels_last_logits_score_as_nchw_ones():
    """The heads return channels-last logits when the model trains in that layout."""
    logits, target = head_logits(seed=11, c=6, h=8, w=10), labels(11, 2, 6, 64, 80)
    loss = CrossEntropyLoss(IGNORE_INDEX)
    expected = loss(logits, target)
    (expected_grad,) = torch.autograd.grad(expected, logits)
    channels_last = logits.detach().contiguous(memory_format=torch.channels_last).requires_grad_()
    value = loss(channels_last, target)
    (grad,) = torch.autograd.grad(value, channels_last)
    assert value.item() == pytest.approx(expected.item(), rel=TOLERANCE)
    assert relative_error(grad, expected_grad) < TOLERANCE
