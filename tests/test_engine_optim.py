import math

import pytest
import torch
from torch import nn

from segkit.builder import build_lr_scheduler, build_optimizer


def lrs(schedule_spec, max_iters=10, optimizer_spec=None, model=None):
    model = model or nn.Linear(2, 2)
    config = {
        "optimizer": optimizer_spec or {"type": "sgd", "lr": 0.1},
        "lr_scheduler": schedule_spec,
        "train": {"max_iters": max_iters},
    }
    optimizer = build_optimizer(config, model)
    scheduler = build_lr_scheduler(config, optimizer)
    seen = []
    for _ in range(max_iters):
        seen.append([group["lr"] for group in optimizer.param_groups])
        optimizer.step()
        scheduler.step()
    return seen, optimizer


@pytest.fixture(autouse=True)
def builtins(use_plugins):
    use_plugins({}, load_entry_points=True)


def test_poly_decays_with_power_to_min_lr():
    seen, _ = lrs({"type": "poly", "power": 0.9, "min_lr": 0.001})
    expected = [0.001 + (0.1 - 0.001) * (1 - t / 10) ** 0.9 for t in range(10)]
    assert [s[0] for s in seen] == pytest.approx(expected)


def test_linear_warmup_scales_the_schedule_up_from_the_ratio():
    seen, _ = lrs({"type": "constant", "warmup_iters": 4, "warmup_ratio": 0.2})
    assert [s[0] for s in seen] == pytest.approx([0.02, 0.04, 0.06, 0.08] + [0.1] * 6)


def test_cosine_goes_from_the_base_rate_to_min_lr():
    seen, _ = lrs({"type": "cosine", "min_lr": 0.0}, max_iters=4)
    expected = [0.1 * 0.5 * (1 + math.cos(math.pi * t / 4)) for t in range(4)]
    assert [s[0] for s in seen] == pytest.approx(expected)


def test_step_multiplies_by_gamma_at_each_milestone():
    seen, _ = lrs({"type": "step", "milestones": [3, 6], "gamma": 0.5}, max_iters=8)
    assert [s[0] for s in seen] == pytest.approx([0.1] * 3 + [0.05] * 3 + [0.025] * 2)


def test_bad_schedule_options_are_rejected_with_the_key():
    from segkit.errors import ConfigError

    with pytest.raises(ConfigError, match="lr_scheduler: .*milestones must be increasing"):
        lrs({"type": "step", "milestones": [5, 2]})
    with pytest.raises(ConfigError, match="warmup_iters must be in 0..max_iters"):
        lrs({"type": "poly", "warmup_iters": 50})


class TwoParts(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
        self.head = nn.Conv2d(4, 2, 1)


def test_lr_multiplier_per_part_is_kept_through_the_schedule():
    spec = {"type": "sgd", "lr": 0.01, "lr_mult": {"head": 10.0}}
    seen, optimizer = lrs({"type": "poly", "min_lr": 0.001}, optimizer_spec=spec, model=TwoParts())
    rates = {group["name"]: group["lr"] for group in optimizer.param_groups}
    assert set(rates) == {"default", "head"}
    names = [g["name"] for g in optimizer.param_groups]
    head, default = names.index("head"), names.index("default")
    assert seen[0][head] == pytest.approx(0.1) and seen[0][default] == pytest.approx(0.01)
    # The floor scales with the multiplier too, so the ratio stays 10 to the end.
    assert seen[-1][head] / seen[-1][default] == pytest.approx(10.0)


def test_sgd_options_and_no_decay_on_norms_and_biases():
    spec = {
        "type": "sgd",
        "lr": 0.01,
        "momentum": 0.8,
        "nesterov": True,
        "weight_decay": 0.001,
        "decay_norm_and_bias": False,
    }
    _, optimizer = lrs({"type": "constant"}, optimizer_spec=spec, model=TwoParts())
    assert isinstance(optimizer, torch.optim.SGD)
    decays = {}
    for group in optimizer.param_groups:
        assert group["momentum"] == 0.8 and group["nesterov"]
        for parameter in group["params"]:
            decays[parameter.ndim] = group["weight_decay"]
    assert decays == {4: 0.001, 1: 0.0}


def test_adamw_is_available_with_its_options():
    spec = {"type": "adamw", "lr": 0.001, "betas": [0.8, 0.9], "weight_decay": 0.05}
    _, optimizer = lrs({"type": "constant"}, optimizer_spec=spec)
    assert isinstance(optimizer, torch.optim.AdamW)
    assert optimizer.param_groups[0]["betas"] == (0.8, 0.9)
    assert optimizer.param_groups[0]["weight_decay"] == 0.05


def test_scheduler_state_round_trips_through_a_weights_only_load(tmp_path):
    model = nn.Linear(2, 2)
    config = {
        "optimizer": {"type": "sgd", "lr": 0.1},
        "lr_scheduler": {"type": "poly", "warmup_iters": 2},
        "train": {"max_iters": 10},
    }
    optimizer = build_optimizer(config, model)
    scheduler = build_lr_scheduler(config, optimizer)
    for _ in range(3):
        optimizer.step()
        scheduler.step()
    torch.save({"s": scheduler.state_dict(), "o": optimizer.state_dict()}, tmp_path / "state.pt")
    loaded = torch.load(tmp_path / "state.pt", weights_only=True)
    fresh_optimizer = build_optimizer(config, model)
    fresh = build_lr_scheduler(config, fresh_optimizer)
    fresh_optimizer.load_state_dict(loaded["o"])
    fresh.load_state_dict(loaded["s"])
    optimizer.step(), scheduler.step(), fresh_optimizer.step(), fresh.step()
    assert fresh.get_last_lr() == pytest.approx(scheduler.get_last_lr())
