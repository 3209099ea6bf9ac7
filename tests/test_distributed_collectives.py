"""The engine's collectives on two CPU processes (Gloo, spawned here): synchronised batch norm
against plain batch norm on the whole batch, and split evaluation against one process."""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.multiprocessing
from engine_toys import CLASSES, ToyCNN, ToyHead, ToyShapes
from torch import nn

from segkit.data import TransformedDataset
from segkit.engine.distributed import World
from segkit.engine.evaluator import Evaluator, validation_loader
from segkit.engine.inference import InferenceSettings, InputNormalizer
from segkit.engine.sync_bn import CPUSyncBatchNorm
from segkit.errors import DataError
from segkit.segmentor import Segmentor

WORLD = 2


def spawn(case, tmp_path) -> None:
    """Run ``case(rank)`` in two fresh processes joined by a Gloo group; a failed assertion in
    either fails the test with its traceback."""
    torch.multiprocessing.spawn(_join, args=(case, str(tmp_path / "rendezvous")), nprocs=WORLD)


def _join(rank: int, case, rendezvous: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{rendezvous}", rank=rank, world_size=WORLD)
    try:
        case(rank)
    finally:
        dist.destroy_process_group()


# ---- synchronised batch norm -------------------------------------------------------------------


def _batch_norm_case(rank: int) -> None:
    # Uneven shares, an empty one, channels-last; inputs far from zero mean (cancellation).
    for sizes, channels_last in (((3, 5), False), ((0, 4), True), ((2, 2), True)):
        generator = torch.Generator().manual_seed(sum(sizes))
        inputs = torch.randn(sum(sizes), 4, 5, 6, generator=generator) * 3 + 50
        upstream = torch.randn(inputs.shape, generator=generator)
        reference = nn.BatchNorm2d(4, momentum=0.3)
        with torch.no_grad():
            reference.weight.uniform_(0.5, 1.5, generator=generator)
            reference.bias.uniform_(-1, 1, generator=generator)
        synced = CPUSyncBatchNorm(4, momentum=0.3)
        synced.load_state_dict(reference.state_dict())

        whole = inputs.clone().requires_grad_()
        (reference(whole) * upstream).sum().backward()
        begin = sum(sizes[:rank])
        end = begin + sizes[rank]
        mine = inputs[begin:end].clone()
        if channels_last:
            mine = mine.contiguous(memory_format=torch.channels_last)
        mine.requires_grad_()
        output = synced(mine)
        (output * upstream[begin:end]).sum().backward()

        with torch.no_grad():
            expected = reference(inputs)  # training mode, so recompute the whole-batch output
        torch.testing.assert_close(output, expected[begin:end], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(mine.grad, whole.grad[begin:end], atol=1e-5, rtol=1e-5)
        weight_grad, bias_grad = synced.weight.grad.clone(), synced.bias.grad.clone()
        dist.all_reduce(weight_grad)  # what DDP does with these, up to its division
        dist.all_reduce(bias_grad)
        torch.testing.assert_close(weight_grad, reference.weight.grad, atol=1e-4, rtol=1e-5)
        torch.testing.assert_close(bias_grad, reference.bias.grad, atol=1e-4, rtol=1e-5)
        # The reference ran twice in training mode: compare one update of the statistics.
        fresh = nn.BatchNorm2d(4, momentum=0.3)
        fresh(inputs)
        torch.testing.assert_close(synced.running_mean, fresh.running_mean)
        torch.testing.assert_close(synced.running_var, fresh.running_var)
        assert int(synced.num_batches_tracked) == 1


def test_synchronised_batch_norm_equals_batch_norm_over_the_whole_batch(tmp_path):
    spawn(_batch_norm_case, tmp_path)


# ---- evaluation split over processes -----------------------------------------------------------


class BadLabelAt:
    """ToyShapes whose image ``index`` has a label that is no class."""

    def __init__(self, dataset, index: int):
        self.dataset, self.index = dataset, index
        self.classes, self.palette = dataset.classes, dataset.palette

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, index):
        sample = self.dataset[index]
        if index == self.index:
            sample["mask"][3, 3] = 7
        return sample


def _evaluation_case(rank: int) -> None:
    torch.manual_seed(0)
    model = Segmentor(ToyCNN(), ToyHead(16, len(CLASSES))).eval()
    toys = ToyShapes(count=5, sizes=[[32, 32], [24, 40]], seed=3)
    dataset = TransformedDataset(toys, [])
    normalizer = InputNormalizer([120.0] * 3, [60.0] * 3, torch.device("cpu"))
    world = World(rank=rank, size=WORLD, started=True)

    alone = Evaluator(InferenceSettings(), CLASSES, normalizer)
    expected, _ = alone.confusion(model, validation_loader(dataset, 2, 0, False, False))
    shard = validation_loader(dataset, 2, 0, False, False, 0, rank, WORLD)
    assert len(shard.sampler) == (3, 2)[rank]
    together = Evaluator(InferenceSettings(), CLASSES, normalizer, world=world)
    combined, samples = together.confusion(model, shard)
    assert torch.equal(combined.matrix, expected.matrix)
    assert int(expected.matrix.sum()) > 0
    assert [s["name"] for s in samples] == [f"toy_{i:03d}" for i in (0, 1, 2, 3, 4)[rank * 3 :][:3]]

    # Every image's matrix reaches rank 0 in the dataset's order, as one process would keep them.
    kept = Evaluator(InferenceSettings(), CLASSES, normalizer, per_image=True, boundary=0.02)
    alone_tally = kept.count(model, validation_loader(dataset, 2, 0, False, False))
    shared = Evaluator(
        InferenceSettings(), CLASSES, normalizer, world=world, per_image=True, boundary=0.02
    )
    shared_tally = shared.count(model, shard)
    assert torch.equal(shared_tally.boundary.counts, alone_tally.boundary.counts)
    if rank == 0:
        assert shared_tally.per_image.names == [f"toy_{i:03d}" for i in range(5)]
        assert (shared_tally.per_image.dense() == alone_tally.per_image.dense()).all()
    else:
        assert shared_tally.per_image is None

    # A bad label in rank 1's share stops both processes, not just rank 1.
    broken = TransformedDataset(BadLabelAt(toys, index=4), [])
    try:
        together.confusion(model, validation_loader(broken, 2, 0, False, False, 0, rank, WORLD))
    except DataError as error:
        assert "1 labelled pixels hold values outside 0..2" in str(error)
    else:
        raise AssertionError(f"rank {rank} did not raise")


def test_split_evaluation_sums_to_exactly_the_single_process_confusion_matrix(tmp_path):
    spawn(_evaluation_case, tmp_path)
