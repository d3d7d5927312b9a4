"""torchrun support: one process per device, gloo on CPUs, NCCL on GPUs.

Training (training/train.py) shards every global batch across ranks and averages
gradients with DistributedDataParallel; evaluation (harness/context.py) splits each
batched model call across ranks by item index and gathers the results on every
rank, so the tasks' scoring code runs unchanged and rank 0 alone writes
records, figures, cache entries and checkpoints. With per-item seeds
(diffae_bench.rng) and batch boundaries that do not depend on the number of
processes, records are identical for 1, 2 or N processes.

Nothing here is active in a plain `bench ...` process (WORLD_SIZE unset or 1).
"""

from __future__ import annotations

import os
from datetime import timedelta

import torch
import torch.distributed as dist

from .errors import BenchError


def launched() -> bool:
    """Started by torchrun (or SLURM's srun with the torchrun variables) with more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init(device: torch.device) -> None:
    """Join the process group torchrun describes (idempotent); pins each rank to its GPU."""
    if not launched() or dist.is_initialized():
        return
    if device.type == "cuda":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    backend = "nccl" if device.type == "cuda" else "gloo"
    try:
        dist.init_process_group(backend, timeout=timedelta(minutes=30))
    except Exception as e:  # noqa: BLE001 - a launch problem, said in one line
        raise BenchError(f"cannot join the torchrun process group ({backend}): {type(e).__name__}: {e}") from None


def local_device(device: torch.device) -> torch.device:
    """This rank's device: cuda:LOCAL_RANK under torchrun on GPUs."""
    if device.type == "cuda" and launched():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return device


def active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if active() else 0


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def is_main() -> bool:
    return rank() == 0


def barrier() -> None:
    if active():
        dist.barrier()


def agree(flag: bool) -> bool:
    """True on every rank when rank 0 says so (cache hits, stop requests): every rank takes the same path."""
    if not active():
        return flag
    t = torch.tensor([int(flag)], dtype=torch.int64, device=_comm_device())
    dist.broadcast(t, src=0)
    return bool(t.item())


def any_rank(flag: bool) -> bool:
    """True on every rank when any rank says so (a Ctrl-C, SIGTERM or time budget on one rank stops all)."""
    if not active():
        return flag
    t = torch.tensor([int(flag)], dtype=torch.int64, device=_comm_device())
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def mean(t: torch.Tensor) -> torch.Tensor:
    """The mean of a tensor over ranks (the global loss of equal shards)."""
    if not active():
        return t
    t = t.clone()
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t / world_size()


def shard(n_chunks: int) -> range:
    """The chunks (batches) this rank computes: a contiguous block, so gathering keeps the order."""
    w, r = world_size(), rank()
    per = -(-n_chunks // w)
    return range(min(r * per, n_chunks), min((r + 1) * per, n_chunks))


def gather_cat(local: torch.Tensor | None) -> torch.Tensor:
    """Concatenate every rank's float32 rows in rank order (ranks may hold different counts, or none)."""
    if not active():
        return local
    dev = _comm_device()
    n = torch.tensor([0 if local is None else len(local)], device=dev)
    counts = [torch.zeros_like(n) for _ in range(world_size())]
    dist.all_gather(counts, n)
    counts = [int(c.item()) for c in counts]
    # Every rank needs the row shape and dtype: take them from the first non-empty rank.
    first = next(i for i, c in enumerate(counts) if c > 0)
    meta = torch.zeros(8, dtype=torch.int64, device=dev)
    if rank() == first:
        meta[0] = local.ndim - 1
        meta[1:local.ndim] = torch.tensor(local.shape[1:])
    dist.broadcast(meta, src=first)
    row_shape = tuple(int(v) for v in meta[1:1 + int(meta[0])])
    dtype = torch.float32  # map_batches' outputs
    biggest = max(counts)
    buf = torch.zeros((biggest, *row_shape), dtype=dtype, device=dev)
    if local is not None and len(local):
        buf[:len(local)] = local.to(dev)
    parts = [torch.zeros_like(buf) for _ in range(world_size())]
    dist.all_gather(parts, buf)
    return torch.cat([p[:c] for p, c in zip(parts, counts)]).cpu()


def _comm_device() -> torch.device:
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
