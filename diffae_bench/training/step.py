"""One optimisation step as `bench train` runs it, and what makes it fast on a GPU (issue 21).

The step is the same on every device: the model's loss (L_simple), backward,
global grad-norm clip, Adam, EMA. What the step setup (`StepSetup`) changes is
only how it runs:

  numeric_mode  network precision (diffae_bench.numerics). bf16 is autocast:
                the weights, the Adam state and the loss stay float32 (the
                master copy); "-cl" adds channels_last weights and inputs.
  compile_mode  torch.compile of the model's loss (None: eager);
                "reduce-overhead" adds CUDA graphs.
  on_device     CUDA: the training images sit on the GPU, batch indices, t and
                noise come from a CUDA generator, Adam is fused, and the loss is
                read back every `log_every` steps only (and cudnn.benchmark picks
                each conv's algorithm once). Each removes host work or a host
                round trip from every step: the small preset's step, with all of
                it on the host, ran at 687 img/s on an H200 (about 1 % of the chip).
                Off on the CPU: draws come from the CPU generator as before, so
                CPU runs and their checkpoints stay bit for bit what they were.

`bench perf` times exactly this step (diffae_bench.perf.throughput.measure_train), so its
numbers are bench train's numbers.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.utils.data

from ..data import ImageDataset
from ..errors import BenchError, TrainingDiverged
from ..numerics import autocast, get_mode, to_memory_format
from ..rng import derive_seed

COMPILE_MODES = ("default", "reduce-overhead", "max-autotune-no-cudagraphs")


@dataclass(frozen=True)
class StepSetup:
    numeric_mode: str = "fp32"  # network precision (numerics.MODES); fp32 = the reference
    compile_mode: str | None = None  # torch.compile mode of the loss (COMPILE_MODES); None = eager
    on_device: bool = False  # GPU-resident data, device RNG, fused Adam, deferred loss reads (CUDA only)

    def __post_init__(self):
        get_mode(self.numeric_mode)
        if self.compile_mode is not None and self.compile_mode not in COMPILE_MODES:
            raise BenchError(f"unknown compile mode '{self.compile_mode}'; use one of {', '.join(COMPILE_MODES)}")

    def describe(self) -> dict:
        """What the checkpoint's meta records ("numerics")."""
        return {"mode": self.numeric_mode, "compile": self.compile_mode is not None, "compile_mode": self.compile_mode,
                "on_device": self.on_device, "fused_adam": self.on_device, "rng": "device" if self.on_device else "cpu"}


def step_setup(device: torch.device, numeric_mode: str = "fp32", compile_mode: str | None = None) -> StepSetup:
    """bench train's setup on a device: on_device wherever it is CUDA."""
    return StepSetup(numeric_mode=numeric_mode, compile_mode=compile_mode, on_device=device.type == "cuda")


@contextlib.contextmanager
def device_flags(setup: StepSetup):
    """cudnn.benchmark for the on-device step (static shapes: each conv's fastest algorithm is timed once); restored after."""
    old = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = old or setup.on_device
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = old


def make_generator(seed: int, device: torch.device, setup: StepSetup) -> torch.Generator:
    """The run's generator (batch order, t, noise): on the GPU when on_device, else the CPU's."""
    return torch.Generator(device=device if setup.on_device else "cpu").manual_seed(seed)


def make_optimizer(params: list, lr: float, setup: StepSetup) -> torch.optim.Adam:
    # Fused Adam: one kernel for all parameters instead of a few per tensor;
    # the same update as the foreach/for-loop Adam up to float rounding.
    return torch.optim.Adam(params, lr=lr, fused=True) if setup.on_device else torch.optim.Adam(params, lr=lr)


def compile_loss(loss: Callable, setup: StepSetup) -> Callable:
    if setup.compile_mode is None:
        return loss
    return torch.compile(loss, mode=None if setup.compile_mode == "default" else setup.compile_mode)


class _StepIndices:
    """A lazy data set's batches: step s's indices from their own generator (seed, s), uniform with replacement.

    Known ahead of the step (so DataLoader workers decode them in advance) and
    from (seed, step) alone (so a resumed run continues the same stream).
    """

    def __init__(self, n: int, batch_size: int, seed: int, start_step: int):
        self.n, self.batch_size, self.seed, self.start = n, batch_size, seed, start_step

    def __iter__(self):
        step = self.start
        while True:
            g = torch.Generator().manual_seed(derive_seed(self.seed, "lazy-batches", step))
            yield torch.randint(self.n, (self.batch_size,), generator=g).tolist()
            step += 1


class _Decoded(torch.utils.data.Dataset):
    def __init__(self, data: ImageDataset):
        self.data = data

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int) -> torch.Tensor:
        return torch.from_numpy(self.data.uint8(np.array([i]))[0])


class BatchSource:
    """Random training batches in [-1, 1], as bench train draws them.

    In-memory data sets: indices from the run's generator (uniform with
    replacement), pixels from the uint8 array, on the GPU when on_device
    (every in-memory data set here fits: MNIST at 32 px is 61 MB). Lazily
    loaded data sets (image files): with `workers` > 0 a DataLoader decodes
    the next batches in worker processes while the step runs (_StepIndices);
    with 0, each batch is decoded on the host in the step.
    """

    def __init__(self, data: ImageDataset, batch_size: int, device: torch.device, generator: torch.Generator,
                 setup: StepSetup, workers: int = 0, seed: int = 0, start_step: int = 0):
        self.data, self.batch_size, self.device, self.gen, self.setup = data, batch_size, device, generator, setup
        self.images = torch.from_numpy(data.images) if data.images is not None else None
        if self.images is not None and setup.on_device:
            self.images = self.images.to(device)
        self._loader = None
        if self.images is None and workers > 0:
            self._loader = iter(torch.utils.data.DataLoader(
                _Decoded(data), batch_sampler=_StepIndices(len(data), batch_size, seed, start_step),
                num_workers=workers, prefetch_factor=2, persistent_workers=True, pin_memory=device.type == "cuda"))
        self._current: torch.Tensor | None = None  # the prefetched global batch (lazy data sets with workers)

    def __call__(self) -> torch.Tensor:
        return self.at(self.indices())

    def indices(self) -> torch.Tensor:
        """The next global batch: image indices (the same on every rank: one generator state), or
        positions in the prefetched batch when a DataLoader decodes ahead."""
        if self._loader is not None:
            self._current = next(self._loader)
            return torch.arange(self.batch_size)
        return torch.randint(len(self.data), (self.batch_size,), generator=self.gen, device=self.gen.device)

    def at(self, idx: torch.Tensor) -> torch.Tensor:
        """The images at these indices, on the device, in [-1, 1]."""
        if self._loader is not None:
            x = self._current[idx.cpu()]
        elif self.images is not None:
            x = self.images[idx]
        else:
            x = torch.from_numpy(self.data.uint8(idx.cpu().numpy()))
        x = x.to(self.device, non_blocking=True).float().div_(127.5).sub_(1.0)
        return to_memory_format(x, self.setup.numeric_mode)


def make_loss_fn(model: torch.nn.Module, batches: BatchSource, generator: torch.Generator, setup: StepSetup,
                 device: torch.device) -> Callable[[], torch.Tensor]:
    """The loss of one fresh batch, float32, in the setup's numeric mode (and compiled if asked)."""
    loss_call = compile_loss(model.loss, setup)

    def loss_fn() -> torch.Tensor:
        x = batches()
        with autocast(setup.numeric_mode, device.type):
            return loss_call(x, generator).float()

    return loss_fn


class LossModule(torch.nn.Module):
    """The model's training loss as forward(), the call DistributedDataParallel wraps and synchronises."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x0: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        return self.model.loss(x0, generator)


class ShardedLoss:
    """One step's loss over a global batch split into shards: DDP ranks x accumulation micro-batches.

    The global batch's indices are drawn once from the run's generator (every
    rank holds the same generator state); shard j of J = world x accumulate
    takes the global rows j, j + J, ... Each micro-batch's loss call starts
    from the same generator state and draws its t / noise for the whole global
    batch, keeping its own rows (models.loss.draw_shard), so every sample gets
    the draws a single process gives it and the generator ends where a single
    process leaves it. Gradients: (1/accumulate) per micro-batch, averaged over
    ranks by DDP (synchronised on the last micro-batch only): the gradient of
    the global batch's mean loss, equal shards being required.
    """

    runs_backward = True

    def __init__(self, module: torch.nn.Module, batches: BatchSource, generator: torch.Generator, setup: StepSetup,
                 device: torch.device, rank: int, world: int, accumulate: int):
        if batches.batch_size % (world * accumulate):
            raise BenchError(f"the global batch ({batches.batch_size}) must divide into {world} process(es) x "
                             f"{accumulate} micro-batch(es)")
        self.module, self.batches, self.gen, self.setup, self.device = module, batches, generator, setup, device
        self.rank, self.world, self.accumulate = rank, world, accumulate

    def __call__(self) -> torch.Tensor:
        from ..distributed import mean
        from ..models.loss import draw_shard

        idx = self.batches.indices()
        state = self.gen.get_state()
        n_shards = self.world * self.accumulate
        total = torch.zeros((), device=self.device)
        for k in range(self.accumulate):
            j = self.rank * self.accumulate + k
            x = self.batches.at(idx[j::n_shards])
            self.gen.set_state(state)
            last = k == self.accumulate - 1
            sync = contextlib.nullcontext() if last or not hasattr(self.module, "no_sync") else self.module.no_sync()
            with sync, draw_shard(j, n_shards), autocast(self.setup.numeric_mode, self.device.type):
                loss = self.module(x, self.gen).float()
                (loss / self.accumulate).backward()
            total = total + loss.detach()
        return mean(total / self.accumulate)  # the global batch's mean loss, the same on every rank


@torch.no_grad()
def ema_update(ema: torch.nn.Module, online: torch.nn.Module, decay: float, step: int) -> None:
    # Warm-up (as in timm / many DDPM codes): early EMA tracks the online weights
    # closely so that short runs evaluate something trained, not the init.
    d = min(decay, (1 + step) / (10 + step))
    ep = [p for p in ema.parameters()]
    op = [p.detach() for p in online.parameters()]
    torch._foreach_lerp_(ep, op, 1 - d)  # one fused kernel per group of tensors, no host sync
    for eb, ob in zip(ema.buffers(), online.buffers()):  # a few small buffers (Diff-AE: 3)
        eb.copy_(ob)


def optimisation_step(loss_fn: Callable[[], torch.Tensor], params: list, opt: torch.optim.Optimizer,
                      ema: torch.nn.Module, online: torch.nn.Module, ema_decay: float, grad_clip: float,
                      step: int) -> torch.Tensor:
    """One step; returns the (detached, float32) loss without reading it on the host.

    A loss_fn with `runs_backward` (ShardedLoss) computes its gradients itself
    (micro-batches, DDP); any other returns the loss to differentiate.
    """
    opt.zero_grad(set_to_none=True)
    if getattr(loss_fn, "runs_backward", False):
        loss = loss_fn()
    else:
        loss = loss_fn()
        loss.backward()
    if grad_clip:
        torch.nn.utils.clip_grad_norm_(params, grad_clip)  # foreach on CUDA; no host sync
    opt.step()
    ema_update(ema, online, ema_decay, step)
    # A copy: with CUDA graphs the loss's buffer is overwritten by the next replay.
    return loss.detach().clone()


class LossLog:
    """Step losses kept on the device and read back in one transfer (`flush`).

    Reading each one in order keeps the running average and the non-finite
    check exactly what a per-step read gives: same values, same first bad step.
    """

    def __init__(self):
        self.pending: list[tuple[int, torch.Tensor]] = []  # (step number, 0-d loss) not yet read
        self.first: float | None = None  # the first loss of this process
        self.avg: float | None = None  # running average, 0.98 / 0.02 per step

    def add(self, step: int, loss: torch.Tensor) -> None:
        self.pending.append((step, loss))

    def flush(self, last_saved: int) -> int:
        """Read the pending losses; raises TrainingDiverged at the first non-finite one. Returns how many were read."""
        if not self.pending:
            return 0
        steps = [s for s, _ in self.pending]
        values = torch.stack([v for _, v in self.pending]).tolist()
        self.pending = []
        for step, value in zip(steps, values):
            if not math.isfinite(value):
                kept = f"the last good checkpoint (step {last_saved}) is kept" if last_saved else "no checkpoint was written"
                raise TrainingDiverged(f"loss became {value} at step {step}; stopped, {kept}")
            self.first = value if self.first is None else self.first
            self.avg = value if self.avg is None else 0.98 * self.avg + 0.02 * value
        return len(values)
