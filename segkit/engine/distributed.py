"""Several processes training one model: torchrun's environment, the process group, and the few
collectives the engine needs.

``torchrun`` (``python -m torch.distributed.run``) starts one process per device and tells each
its place through environment variables (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``LOCAL_WORLD_SIZE``). Without them, or with a world of one, segkit runs as a single process and
nothing here communicates. With several, every process joins one torch process group: NCCL for
CUDA tensors (with Gloo beside it for the few host-side messages), Gloo on CPUs.

Whatever one process decides alone (a signal it received, an error while preparing the run) is
shared before anyone acts on it, so that the processes never wait at a collective for one that
has left.
"""

from __future__ import annotations

import gc
import os
import signal
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from segkit.engine.precision import resolve_device
from segkit.errors import ConfigError, SegkitError

# Gloo reports a vanished peer as a plain RuntimeError; these phrases identify it.
_LOST_PEER_PHRASES = ("gloo/transport", "Connection reset by peer", "Connection closed by peer")


class LostContact(SegkitError):
    """Another process of the run died or stopped answering."""


@dataclass
class World:
    """This process's place among the processes of a run (``size`` 1: a plain single process)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    local_size: int = 1
    device: torch.device | None = field(default=None, compare=False)
    started: bool = field(default=False, compare=False)

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> World:
        """The world torchrun describes in the environment; one process if it describes none."""
        environ = os.environ if environ is None else environ
        if "WORLD_SIZE" not in environ:
            return cls()
        try:
            size = int(environ["WORLD_SIZE"])
            rank = int(environ.get("RANK", "0"))
            local_rank = int(environ.get("LOCAL_RANK", str(rank)))
            local_size = int(environ.get("LOCAL_WORLD_SIZE", str(size)))
        except ValueError:
            raise SegkitError(
                "RANK, WORLD_SIZE, LOCAL_RANK and LOCAL_WORLD_SIZE must be whole numbers; start "
                "several processes with torchrun (or segkit train --nproc N)"
            ) from None
        if size < 1 or not 0 <= rank < size or not 0 <= local_rank < local_size:
            raise SegkitError(
                f"inconsistent process environment: RANK={rank}, WORLD_SIZE={size}, "
                f"LOCAL_RANK={local_rank}, LOCAL_WORLD_SIZE={local_size}"
            )
        return cls(rank, size, local_rank, local_size)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def backend(self) -> str | None:
        """``nccl`` or ``gloo`` once started; ``None`` for a single process."""
        if not self.started:
            return None
        return "nccl" if self.device is not None and self.device.type == "cuda" else "gloo"

    # ---- set-up ------------------------------------------------------------------------------

    def resolve_device(self, requested: str) -> torch.device:
        """This process's device: with several processes on a machine, ``auto`` and ``cuda``
        give each its own GPU (``cuda:LOCAL_RANK``), or the CPU where there is no GPU."""
        if self.size == 1:
            return resolve_device(requested)
        if requested in ("auto", "cuda") and torch.cuda.is_available():
            count = torch.cuda.device_count()
            if self.local_rank >= count:
                raise ConfigError(
                    f"train.device: this machine runs {self.local_size} processes but has "
                    f"{count} CUDA GPU(s); start at most {count} per machine (--nproc_per_node)"
                )
            return torch.device("cuda", self.local_rank)
        if requested == "auto":
            return torch.device("cpu")
        device = resolve_device(requested)
        if device.type == "mps":
            raise ConfigError("train.device: MPS cannot be shared by several processes; use cpu")
        if device.type == "cuda" and self.local_size > 1:
            raise ConfigError(
                f"train.device: {requested} puts all {self.local_size} processes of this machine "
                "on one GPU; use cuda or auto, which give each process its own"
            )
        return device

    def start(self, device: torch.device) -> None:
        """Join the process group (a no-op for a single process)."""
        self.device = device
        if self.size == 1 or self.started:
            return
        if not dist.is_available():
            raise SegkitError("this PyTorch build has no torch.distributed; run one process")
        if device.type == "cuda":
            torch.cuda.set_device(device)
            dist.init_process_group("cpu:gloo,cuda:nccl", device_id=device)
        else:
            dist.init_process_group("gloo")
        self.started = True

    def close(self) -> None:
        """Leave the process group. Whatever still refers to it (a DDP wrapper) must be
        dropped before: a group left alive until the interpreter exits can abort the process
        at exit."""
        if self.started:
            gc.collect()  # DDP's reference cycles hold the group
            dist.destroy_process_group()
            self.started = False

    # ---- collectives (each a no-op for a single process) -------------------------------------

    def sum_(self, tensor: torch.Tensor) -> torch.Tensor:
        """Replace ``tensor`` by its sum over the processes, in place."""
        return self._reduce(tensor, "SUM")

    def max_(self, tensor: torch.Tensor) -> torch.Tensor:
        return self._reduce(tensor, "MAX")

    def min_(self, tensor: torch.Tensor) -> torch.Tensor:
        return self._reduce(tensor, "MIN")

    def broadcast_(self, tensor: torch.Tensor, source: int = 0) -> torch.Tensor:
        """Replace ``tensor`` by process ``source``'s, in place."""
        if self.started:
            dist.broadcast(tensor, src=source)
        return tensor

    def _reduce(self, tensor: torch.Tensor, op: str) -> torch.Tensor:
        if self.started:
            dist.all_reduce(tensor, op=getattr(dist.ReduceOp, op))
        return tensor

    def gather(self, obj: Any) -> list[Any] | None:
        """Every process's ``obj`` (picklable), in rank order, on rank 0; ``None`` elsewhere."""
        if not self.started:
            return [obj]
        gathered = [None] * self.size if self.is_main else None
        dist.gather_object(obj, gathered, dst=0)
        return gathered

    def all_gather(self, obj: Any) -> list[Any]:
        """Every process's ``obj`` (picklable), in rank order, on every process."""
        if not self.started:
            return [obj]
        gathered: list[Any] = [None] * self.size
        dist.all_gather_object(gathered, obj)
        return gathered

    @contextmanager
    def together(self, what: str) -> Iterator[None]:
        """Run a block on every process; if it fails on one, it fails on all. The processes
        where it failed raise their own error, the others say that another one failed, instead
        of waiting at the next collective for a process that has left."""
        failure: BaseException | None = None
        try:
            yield
        except Exception as error:  # shared below, then raised again
            failure = error
        if self.started:
            flag = torch.tensor([0 if failure is None else 1], dtype=torch.int32)
            failed_somewhere = bool(self.max_(flag).item())
        else:
            failed_somewhere = failure is not None
        if failure is not None:
            raise failure
        if failed_somewhere:
            raise SegkitError(f"another process failed while {what}; see its message")

    def agree_ints(self, values: list[int], what: str) -> None:
        """Check that every process holds the same ``values``."""
        if not self.started:
            return
        mine = torch.tensor(values, dtype=torch.int64)
        low, high = self.min_(mine.clone()), self.max_(mine.clone())
        if not torch.equal(low, high):
            raise SegkitError(
                f"the processes disagree about {what}: from {low.tolist()} to {high.tolist()}"
            )

    def lost_contact(self, error: BaseException) -> bool:
        """Whether ``error`` says that another process died or stopped answering."""
        if not self.started:
            return False
        seen = set()
        # the peer's loss may surface inside another error (a data worker stopped while the
        # process was handling it), so the whole chain of causes is read
        while error is not None and id(error) not in seen:
            seen.add(id(error))
            if isinstance(error, getattr(dist, "DistError", ())):
                return True
            if isinstance(error, RuntimeError) and any(p in str(error) for p in _LOST_PEER_PHRASES):
                return True
            error = error.__cause__ or error.__context__
        return False


class StopVote:
    """Agreement on stopping: a SIGINT or SIGTERM may reach one process, or all of them at
    slightly different moments, yet every process must stop after the same iteration.

    After each iteration every process contributes the signal it received (0 for none) to an
    all-reduce (maximum) on the host, through Gloo, started without waiting; the result is read
    one iteration later, when it has long arrived. So all processes stop after the same
    iteration, one after the one where the first signal arrived, and the loop never waits for
    the device or the network to decide."""

    def __init__(self, world: World):
        self.world = world
        self.pending: tuple[Any, torch.Tensor] | None = None

    def __call__(self, received: int | None) -> int | None:
        """The signal all processes act on now (``None``: carry on)."""
        if not self.world.started:
            return received
        agreed = self.settle()
        mine = torch.tensor([received or 0], dtype=torch.int32)
        self.pending = (dist.all_reduce(mine, op=dist.ReduceOp.MAX, async_op=True), mine)
        return agreed

    def settle(self) -> int | None:
        """Wait for the vote under way (every process calls it as often), and return its
        result."""
        if self.pending is None:
            return None
        work, votes = self.pending
        self.pending = None
        work.wait()
        value = int(votes.item())
        return signal.Signals(value) if value else None


def rank_seed(seed: int, rank: int, step: int = 0) -> int:
    """The seed of process ``rank``'s own random stream (dropout and the like), derived from the
    run's seed (and the iteration, for a stream started afresh on resuming) so that processes
    draw differently but reproducibly."""
    entropy = np.random.SeedSequence([seed, rank, step])
    return int(entropy.generate_state(1, dtype=np.uint64)[0] >> 1)
