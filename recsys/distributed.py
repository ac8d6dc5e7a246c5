"""Data-parallel training over torch.distributed, as started by ``torchrun``.

``torchrun --nproc-per-node N -m recsys train ...`` starts N processes with ``RANK``,
``WORLD_SIZE`` and ``LOCAL_RANK`` in their environment. `init` reads them and joins the process
group (gloo on CPU, NCCL on GPU, where each process takes ``cuda:LOCAL_RANK``); without them it
returns a single-process `Dist` whose every method is a no-op, so ``python -m recsys train``
runs exactly as before and pays nothing.

The scheme keeps the update of N processes equal to that of one process on the same global
batch (Goyal et al., "Accurate, Large Minibatch SGD", 2017, for the averaging):

* every rank draws the same seeded global batch (reading all of its rows) and keeps its rows
  ``[rank::world]`` (`Dist.shard`), so the global batch size stays ``config.batch_size``;
* a task's loss on a rank is the sum over its rows divided by the *global* count of observed
  labels (``task_losses(..., denominators=...)``), times ``world``; `Dist.global_losses` then
  gives it the global loss as its value, ``global + (local - local.detach())``, so a strategy
  that reads loss values (uncertainty, DWA, GradNorm's training rates) sees the same numbers on
  every rank as one process would, and a task absent from the whole batch is absent everywhere;
* `Dist.average_gradients` averages every gradient (model and weighting strategy) in one
  flattened all-reduce before the optimiser step.

For a weighting that is linear in the losses with weights read from loss values (equal, static,
uncertainty, DWA) the averaged gradient is the one-process gradient, up to float summation
order. For uncertainty, d/ds_t of ``c_t exp(-s_t) L_t + s_t / 2`` is ``-c_t exp(-s_t) L_t + 1/2``
with L_t the global value: the same on every rank, so the average is the one-process gradient
(a sum would count the 1/2 N times). Strategies that act on per-task gradients (PCGrad, MGDA,
CAGrad, GradNorm's gradient-norm term) see each rank's shard only and their results are
averaged: an approximation, as in per-GPU implementations of them.

Shape letters: B rows, N rows of a whole split.

Example:
    >>> d = init("cpu", batch_size=64)       # no torchrun variables: one process
    >>> d.world, d.is_main, d.shard(torch.arange(5)).tolist()
    (1, True, [0, 1, 2, 3, 4])
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor

from recsys.data.tensors import TensorData
from recsys.errors import ConfigError


def is_main_process() -> bool:
    """Whether this process is rank 0 (or not started by torchrun); readable before `init`."""
    return os.environ.get("RANK", "0") == "0"


@dataclass(frozen=True)
class Dist:
    """This process's place in the group; the defaults are the single-process no-op.

    Attributes:
        rank: global rank, 0 .. world - 1.
        world: number of processes.
        local_rank: rank on this machine (picks the GPU).
        device: the device this rank trains on; None = leave it to the caller (single process).
        owner: `init` created the process group, so `close` destroys it.
    """

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device | None = None
    owner: bool = False

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def shard(self, rows: Tensor | TensorData) -> Tensor | TensorData:
        """This rank's rows ``[rank::world]`` of a global batch: [B] row indices or a `TensorData`."""
        if not self.enabled:
            return rows
        part = slice(self.rank, None, self.world)
        return rows.subset(part) if isinstance(rows, TensorData) else rows[part]

    def all_reduce_sum(self, tensor: Tensor) -> Tensor:
        """Sum `tensor` over ranks, in place; returns it."""
        if self.enabled:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def count(self, flag: bool) -> int:
        """How many ranks pass a true `flag` (e.g. "I can see the checkpoint")."""
        if not self.enabled:
            return int(flag)
        return int(self.all_reduce_sum(torch.tensor([float(flag)], device=self.device)).item())

    def global_losses(self, losses: dict[str, Tensor]) -> dict[str, Tensor]:
        """Turn each rank's partial losses into losses valued at the global loss.

        Args:
            losses: task -> this rank's sum of row losses / global observed count; the same
                tasks on every rank.

        Returns:
            task -> a scalar whose value is the global loss (the sum over ranks, identical on
            every rank) and whose gradient is ``world`` times the partial loss's, so that the
            average of the ranks' gradients is the gradient of the global loss.
        """
        if not self.enabled or not losses:
            return losses
        total = self.all_reduce_sum(torch.stack([v.detach() for v in losses.values()]))
        return {t: total[i] + (self.world * v - (self.world * v).detach()) for i, (t, v) in enumerate(losses.items())}

    def average_gradients(self, params: Iterable[Tensor]) -> None:
        """Average ``.grad`` of `params` over ranks with one flattened all-reduce.

        A parameter that has no gradient on any rank keeps ``None`` (the optimiser skips it, as
        it would in one process); one that has a gradient on some ranks counts zeros elsewhere.
        """
        if not self.enabled:
            return
        params = list(params)
        if not params:
            return
        ref = next((p.grad for p in params if p.grad is not None), params[0])
        parts = [(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1).to(ref.dtype) for p in params]
        parts.append(torch.tensor([float(p.grad is not None) for p in params], dtype=ref.dtype, device=ref.device))
        flat = self.all_reduce_sum(torch.cat(parts))
        seen = flat[-len(params):]
        flat = flat[:-len(params)].div_(self.world)
        offset = 0
        for p, n_ranks in zip(params, seen.tolist()):
            g = flat[offset:offset + p.numel()].view_as(p).to(p.dtype)
            offset += p.numel()
            if n_ranks > 0:
                p.grad = g.clone() if p.grad is None else p.grad.copy_(g)

    def broadcast_(self, tensors: Iterable[Tensor]) -> None:
        """Overwrite `tensors` (parameters, buffers) in place with rank 0's values."""
        if not self.enabled:
            return
        with torch.no_grad():
            for t in tensors:
                dist.broadcast(t, src=0)

    def gather_rows(self, local: Tensor, n: int) -> Tensor:
        """Reassemble a split from the ranks' `shard` of ``range(n)``.

        Args:
            local: [ceil((n - rank) / world), ...] this rank's rows ``rank, rank + world, ...``.
            n: rows of the whole split.

        Returns:
            [n, ...] every rank's rows in their original order (on every rank).
        """
        if not self.enabled:
            return local
        m = -(-n // self.world)
        padded = local.new_zeros((m, *local.shape[1:]))
        padded[:len(local)] = local
        parts = [torch.empty_like(padded) for _ in range(self.world)]
        dist.all_gather(parts, padded)
        # row j of rank r is global row j * world + r: interleave the ranks, drop the padding
        return torch.stack(parts, dim=1).reshape(m * self.world, *local.shape[1:])[:n]

    def fork_rng(self, seed: int, step: int) -> None:
        """Give each rank > 0 its own random stream (dropout masks must differ between shards).

        Rank 0 keeps the stream of a single-process run; rank r > 0 reseeds from
        (seed, rank, step), so a resumed run is reproducible although only rank 0's random
        state is checkpointed.
        """
        if self.rank > 0:
            torch.manual_seed((int(seed) * 1_000_003 + int(step)) * 1_009 + self.rank)

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def close(self) -> None:
        """Leave the process group if `init` created it."""
        if self.owner and dist.is_initialized():
            dist.destroy_process_group()


def init(device: str, *, batch_size: int) -> Dist:
    """Join torchrun's process group, or return the single-process `Dist`.

    Args:
        device: the config's device: ``auto`` (CUDA when every process on this machine can
            have its own GPU, else CPU), ``cpu`` or ``cuda``.
        batch_size: the global batch size; every process needs at least one row of it.

    Returns:
        This process's `Dist`; ``Dist()`` when ``WORLD_SIZE`` is unset or 1.

    Raises:
        ConfigError: ``cuda`` with fewer GPUs than processes on this machine, or a batch size
            smaller than the number of processes.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", str(world)))
    if batch_size < world:
        raise ConfigError(f"batch_size {batch_size} is smaller than the {world} processes: each takes a slice "
                          f"of the global batch; use --batch-size >= {world} or fewer processes")
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if device == "cuda" and gpus < local_world:
        raise ConfigError(f"--device cuda with {local_world} processes on this machine, but torch sees {gpus} "
                          f"GPU(s); use --nproc-per-node <= {gpus} or --device cpu")
    use_cuda = device == "cuda" or (device == "auto" and gpus >= local_world)
    if use_cuda:
        dev = torch.device("cuda", local_rank)
        torch.cuda.set_device(dev)
    else:
        dev = torch.device("cpu")
    owner = not dist.is_initialized()
    if owner:
        dist.init_process_group("nccl" if use_cuda else "gloo", rank=rank, world_size=world,
                                **({"device_id": dev} if use_cuda else {}))
    return Dist(rank=rank, world=world, local_rank=local_rank, device=dev, owner=owner)


def tensors_of(modules: Sequence[torch.nn.Module]) -> list[Tensor]:
    """Every parameter and buffer of `modules` (what `Dist.broadcast_` makes identical)."""
    return [t for m in modules for t in (*m.parameters(), *m.buffers())]
