"""The distributed pieces that need no second process: samplers, torchrun's environment, batch
norm conversion, the sync_bn switch, and ``segkit train --nproc`` refusals."""

from __future__ import annotations

from itertools import islice

import dist_toys
import engine_toys
import pytest
import torch
from torch import nn

from segkit.cli import main
from segkit.engine.distributed import World, rank_seed
from segkit.engine.sampler import InfiniteSampler, ShardSampler
from segkit.engine.sync_bn import CPUSyncBatchNorm, synchronize_batch_norms
from segkit.errors import ConfigError, SegkitError
from segkit.segmentor import Segmentor
from segkit.validation import load_config


@pytest.mark.parametrize("size", [0, 1, 5, 7, 16])
@pytest.mark.parametrize("world_size", [1, 2, 3, 8])
def test_evaluation_shards_cover_every_image_exactly_once_in_order(size, world_size):
    shards = [list(ShardSampler(size, rank, world_size)) for rank in range(world_size)]
    assert [index for shard in shards for index in shard] == list(range(size))
    lengths = [len(shard) for shard in shards]
    assert max(lengths) - min(lengths) <= 1 and lengths == sorted(lengths, reverse=True)
    assert lengths == [len(ShardSampler(size, rank, world_size)) for rank in range(world_size)]


@pytest.mark.parametrize("world_size, batch", [(2, 2), (3, 4), (4, 1)])
def test_each_global_batch_is_the_batch_of_one_process_with_all_the_images(world_size, batch):
    """The property that makes N processes x b images train like one process x N*b images."""
    for start in (0, 13):  # also after resuming mid-epoch
        alone = iter(InfiniteSampler(10, seed=4, start=start))
        ranks = [
            iter(InfiniteSampler(10, seed=4, start=start, rank=r, world_size=world_size))
            for r in range(world_size)
        ]
        for _ in range(7):  # several epochs of a 10-image dataset
            expected = sorted(islice(alone, batch * world_size))
            merged = sorted(key for rank in ranks for key in islice(rank, batch))
            assert merged == expected


def test_the_world_comes_from_torchrun_variables():
    assert World.from_environment({}) == World(0, 1, 0, 1)
    described = World.from_environment(
        {"RANK": "5", "WORLD_SIZE": "8", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "4"}
    )
    assert described == World(5, 8, 1, 4) and not described.is_main
    with pytest.raises(SegkitError, match="whole numbers"):
        World.from_environment({"WORLD_SIZE": "two"})
    with pytest.raises(SegkitError, match="inconsistent"):
        World.from_environment({"RANK": "2", "WORLD_SIZE": "2"})


def test_a_single_process_communicates_with_nobody():
    world = World.from_environment({})
    world.start(torch.device("cpu"))
    assert not world.started and world.backend is None
    values = torch.tensor([1.0, 2.0])
    assert world.sum_(values) is values and values.tolist() == [1.0, 2.0]
    assert world.gather("x") == ["x"] and world.all_gather("x") == ["x"]
    with pytest.raises(ValueError, match="own error"), world.together("doing it"):
        raise ValueError("own error")


def test_several_processes_without_gpus_train_on_the_cpu():
    world = World(rank=1, size=2, local_rank=1, local_size=2)
    assert world.resolve_device("auto") == torch.device("cpu")
    assert world.resolve_device("cpu") == torch.device("cpu")


def test_each_process_has_its_own_reproducible_random_stream():
    assert rank_seed(0, 0) == rank_seed(0, 0)
    seeds = {rank_seed(0, r) for r in range(4)} | {rank_seed(1, 0), rank_seed(0, 0, step=6)}
    assert len(seeds) == 6


def marked_model() -> Segmentor:
    backbone = dist_toys.SyncCNN(width=4, norm="syncbn")
    head = nn.Sequential(nn.Conv2d(8, 8, 1), nn.BatchNorm2d(8), nn.Conv2d(8, 3, 1))
    return Segmentor(backbone, head)


def test_batch_norms_are_converted_where_marked_or_everywhere_keeping_their_tensors():
    model = marked_model()
    before = model.state_dict()
    parameters = dict(model.named_parameters())
    assert synchronize_batch_norms(model, "marked", torch.device("cpu")) == 2
    assert isinstance(model.backbone.stage1[1], CPUSyncBatchNorm)
    assert type(model.head[1]) is nn.BatchNorm2d
    assert all(parameters[name] is p for name, p in model.named_parameters())
    assert model.state_dict().keys() == before.keys()
    assert synchronize_batch_norms(model, "all", torch.device("cpu")) == 1  # only the head's left
    assert isinstance(model.head[1], CPUSyncBatchNorm)


def test_a_converted_batch_norm_is_plain_batch_norm_in_one_process():
    torch.manual_seed(0)
    plain = nn.BatchNorm2d(3)
    synced = CPUSyncBatchNorm(3)
    inputs = torch.randn(4, 3, 5, 5) + 2
    torch.testing.assert_close(synced(inputs), plain(inputs))
    torch.testing.assert_close(synced.running_var, plain.running_var)


def test_sync_bn_accepts_auto_true_false_only(use_plugins, tmp_path):
    use_plugins({"toys": engine_toys}, load_entry_points=True)
    config = tmp_path / "toy.yaml"
    config.write_text(engine_toys.config_text(), encoding="utf-8")
    assert load_config(config)["train"]["sync_bn"] == "auto"
    assert load_config(config, ["train.sync_bn=false"])["train"]["sync_bn"] is False
    with pytest.raises(ConfigError, match="train.sync_bn"):
        load_config(config, ["train.sync_bn=sometimes"])


def test_nproc_is_refused_under_torchrun_and_below_one(use_plugins, tmp_path, monkeypatch, capsys):
    use_plugins({"toys": engine_toys}, load_entry_points=True)
    config = tmp_path / "toy.yaml"
    config.write_text(engine_toys.config_text(), encoding="utf-8")
    assert main(["train", str(config), "--nproc", "0"]) == 2
    assert "--nproc: needs at least 1 process" in capsys.readouterr().err
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert main(["train", str(config), "--nproc", "2"]) == 2
    assert "leave it out under torchrun" in capsys.readouterr().err
