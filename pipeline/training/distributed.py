"""One fold trained data-parallel: the ranks torchrun starts, and what they share.

    torchrun --nproc_per_node 2 -m pipeline.train --model stanet --protocol patient --fold 1

torchrun sets RANK, WORLD_SIZE and LOCAL_RANK in each process it starts; a plain
`python -m pipeline.train` sees none of them and is a world of one, which starts no process group
and goes through the same code as before. In a world of N, every rank draws the same permutation
and the same augmentation randoms for the whole global batch (pipeline/training/batches.py) and trains on
its own slice of it; DistributedDataParallel averages the gradients (nccl on CUDA, gloo on the
CPU). Rank 0 alone validates, checkpoints and writes the outputs.

Batch norm: SyncBatchNorm on CUDA, so that every rank normalises with the global batch's
statistics, as one process would. On the CPU each rank normalises with its own slice's statistics,
because torch's SyncBatchNorm refuses CPU modules (torch 2.14: "SyncBatchNorm layers only work
with GPU modules"); DDP then copies rank 0's running statistics to the other ranks at every step.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from datetime import timedelta
from dataclasses import dataclass
from typing import Any, Iterator

import torch
import torch.distributed as dist

from pipeline.core.errors import TrainingError

# what torchrun sets in every process it starts; a world of more than one needs all of them
LAUNCH_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
# how long a rank waits for its peers to join (and at each collective) before giving up, in seconds;
# MYOBENCH_JOIN_TIMEOUT_S overrides it (a big model's first step on a slow node may need more)
JOIN_TIMEOUT_S = 300


@dataclass(frozen=True)
class World:
    """This process's place among the ranks of one training; the default is a plain, single process."""
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        """More than one rank: gradients are averaged across processes."""
        return self.size > 1

    @property
    def main(self) -> bool:
        """Rank 0: the one that validates, checkpoints, writes the outputs and prints."""
        return self.rank == 0

    def part(self, n: int) -> slice:
        """This rank's rows of a global batch of `n`: contiguous, disjoint, sizes differing by at most one."""
        return slice(self.rank * n // self.size, (self.rank + 1) * n // self.size)

    def device(self, device: torch.device) -> torch.device:
        """The device this rank trains on: its own GPU of the node (LOCAL_RANK) when training on CUDA."""
        return torch.device("cuda", self.local_rank) if self.distributed and device.type == "cuda" else device

    def wrap(self, model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
        """`model` under DistributedDataParallel, its batch norm layers made SyncBatchNorm on CUDA (in place:
        `model` stays the module the optimiser, validation and checkpoints use); `model` itself in a world of one."""
        if not self.distributed:
            return model
        from torch.nn.parallel import DistributedDataParallel

        if device.type == "cuda":
            from timm.layers import convert_sync_batchnorm   # also converts timm's BatchNormAct2d

            model = convert_sync_batchnorm(model)
        return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)

    def average(self, values: torch.Tensor) -> torch.Tensor:
        """The mean of `values` over the ranks, in place (every rank gets it); unchanged in a world of one."""
        if self.distributed:
            dist.all_reduce(values, op=dist.ReduceOp.SUM)   # gloo has no AVG in every torch build
            values.div_(self.size)
        return values

    def share(self, obj: Any) -> Any:
        """Rank 0's `obj` on every rank (pickled; for small state such as a checkpoint)."""
        if not self.distributed:
            return obj
        box = [obj if self.main else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]


def from_environment() -> World:
    """The world torchrun describes in RANK, WORLD_SIZE and LOCAL_RANK; a single process without them."""
    env = os.environ
    present = [v for v in LAUNCH_VARIABLES if v in env]
    if not present:
        return World()
    values = {}
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        text = env.get(name, "0" if name != "WORLD_SIZE" else "1")
        if not text.strip().isdigit():
            raise TrainingError(f"environment variable {name}={text!r} is not accepted; expected a whole number "
                                f"(torchrun sets it)")
        values[name] = int(text)
    size = values["WORLD_SIZE"]
    missing = [v for v in LAUNCH_VARIABLES if v not in env]
    if size > 1 and missing:
        raise TrainingError(f"the environment describes a data-parallel run ({', '.join(f'{v}={env[v]}' for v in present)}) "
                            f"but lacks {', '.join(missing)}; start it with torchrun, which sets {', '.join(LAUNCH_VARIABLES)}, "
                            f"or unset {', '.join(present)} for a plain single-process run")
    if size < 1 or not 0 <= values["RANK"] < size:
        raise TrainingError(f"RANK={values['RANK']} with WORLD_SIZE={size} is not accepted; expected "
                            f"WORLD_SIZE >= 1 and RANK in 0..WORLD_SIZE-1")
    return World(rank=values["RANK"], size=size, local_rank=values["LOCAL_RANK"])


def join_timeout() -> timedelta:
    """How long to wait for the peers (MYOBENCH_JOIN_TIMEOUT_S, else JOIN_TIMEOUT_S)."""
    text = os.environ.get("MYOBENCH_JOIN_TIMEOUT_S", str(JOIN_TIMEOUT_S))
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not 0 < seconds <= 86_400:
        raise TrainingError(f"MYOBENCH_JOIN_TIMEOUT_S={text!r} is not accepted; expected seconds in (0, 86400]")
    return timedelta(seconds=seconds)


@contextmanager
def process_group(world: World, device: torch.device) -> Iterator[None]:
    """Join the ranks for the body (nccl on CUDA, gloo on the CPU) and leave together at its end.

    Nothing happens in a world of one. A rank that fails leaves at once: torchrun stops the others."""
    if not world.distributed:
        yield
        return
    if device.type == "cuda":
        torch.cuda.set_device(device)
    timeout = join_timeout()
    try:
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo", timeout=timeout)
    except (RuntimeError, ValueError, OSError) as e:   # DistStoreError is a RuntimeError
        raise TrainingError(f"rank {world.rank} of {world.size} could not join its peers at "
                            f"{os.environ.get('MASTER_ADDR')}:{os.environ.get('MASTER_PORT')} within "
                            f"{timeout.total_seconds():g} s ({type(e).__name__}: {str(e).splitlines()[0][:200]}); "
                            f"start every rank with torchrun, or unset {', '.join(LAUNCH_VARIABLES)} for a plain "
                            f"single-process run") from None
    yield
    # rank 0 may still be writing the last fold's outputs: nobody leaves before it is done
    dist.barrier(device_ids=[device.index] if device.type == "cuda" else None)
    dist.destroy_process_group()
