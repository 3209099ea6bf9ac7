from itertools import islice

from segkit.engine.sampler import InfiniteSampler


def take(sampler, count):
    return list(islice(iter(sampler), count))


def test_every_epoch_is_a_permutation_and_epochs_differ():
    keys = take(InfiniteSampler(10, seed=3), 30)
    epochs = [[index for index, _ in keys[i : i + 10]] for i in (0, 10, 20)]
    assert all(sorted(epoch) == list(range(10)) for epoch in epochs)
    assert epochs[0] != epochs[1] != epochs[2]
    assert [draw for _, draw in keys] == list(range(30))


def test_the_order_depends_on_the_seed_only():
    assert take(InfiniteSampler(10, seed=1), 25) == take(InfiniteSampler(10, seed=1), 25)
    assert take(InfiniteSampler(10, seed=1), 25) != take(InfiniteSampler(10, seed=2), 25)


def test_starting_at_a_position_continues_the_uninterrupted_stream():
    straight = take(InfiniteSampler(7, seed=0), 40)
    assert take(InfiniteSampler(7, seed=0, start=17), 23) == straight[17:]


def test_processes_share_one_stream_without_overlap():
    straight = take(InfiniteSampler(8, seed=5), 24)
    parts = [take(InfiniteSampler(8, seed=5, rank=r, world_size=3), 8) for r in range(3)]
    merged = sorted((draw, index) for part in parts for index, draw in part)
    assert merged == sorted((draw, index) for index, draw in straight)
