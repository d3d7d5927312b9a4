"""Training: stage 1 (the autoencoder or any image model) and stage 2 (a trainable latent prior).

One optimisation loop serves both stages: Adam(W), EMA with warm-up, progress
bar with loss and images/s, atomic checkpoints every `ckpt_every` steps, clean
stop on Ctrl-C or at a wall-clock budget (checkpoint, then exit; the same
command resumes), and a hard stop on a non-finite loss that keeps the last
good checkpoint. The step itself and its GPU speed settings live in
train_step.py; stage 1 also logs the high-t x0 diagnostic (x0_diagnostic.py).
"""

from __future__ import annotations

import copy
import dataclasses
import os
import json
import math
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from tqdm import tqdm

from ..checkpoint import (atomic_write_json, file_sha256, from_dict, load_checkpoint, load_state_strict, optimizer_from_tensors,
                         optimizer_to_tensors, save_checkpoint, split_prefix, to_jsonable)
from ..data import load_dataset
from ..device import describe_device, resolve_device
from ..diffusion import PREDICTIONS
from ..errors import BenchError, CheckpointError
from ..models import CHECKPOINT, LATENT_CHECKPOINT, canonical_config, get_kind, has_latent_stage, load_model
from ..numerics import cpu_threads, get_mode, pinned_threads
from ..presets import PRESETS, TrainConfig
from .. import distributed as dist
from .step import (BatchSource, LossLog, LossModule, ShardedLoss, device_flags, make_generator, make_loss_fn,
                         make_optimizer, optimisation_step, step_setup)
from .legs import leg_seed, start_leg, steps_to_total, total_images
from ..provenance import machine
from .x0_diagnostic import X0Diagnostic


@dataclass(frozen=True)
class TrainOptions:
    model: str = "diffae"  # model registry name (diffae, ddim, dmz, or a plugin)
    preset: str = "tiny"  # network preset: tiny, small, paper64
    dataset: str = "shapes"  # data set registry name
    data_root: str | None = None  # folder holding the data set (None: the usual places)
    image_size: int | None = None  # train resolution (None: the preset's)
    steps: int = 1000  # optimisation steps of this stage (total, counting resumed ones)
    batch_size: int | None = None  # None: the preset's (latent stage: latent_batch_size)
    lr: float | None = None  # None: the preset's
    seed: int = 0  # seeds init, batch order and noise
    out: str = "runs/diffae-tiny-shapes"  # run directory (resumed when it exists)
    ckpt_every: int = 500  # steps between checkpoints
    device: str = "auto"  # auto, cpu, cuda, cuda:N
    threads: int | None = None  # torch's CPU threads (restored after; recorded); None: torch's default, one per core.
    #                             A CPU run's bits depend on the count (numerics.cpu_threads): resume with the same one
    train_limit: int | None = None  # use only the first N training images
    progress: bool = True  # show a progress bar
    numeric_mode: str = "fp32"  # network precision of the loss (diffae_bench.numerics); fp32 = the reference
    compile: bool = False  # torch.compile the loss: 1.09-1.18x on the tiny preset here after a 2-4 min compile, so opt-in
    compile_mode: str = "default"  # with compile: default, reduce-overhead (CUDA graphs), max-autotune-no-cudagraphs
    log_every: int | None = None  # steps between reads of the loss (progress, non-finite check); None: 1 on CPU, 50 on CUDA
    diag_every: int = 500  # steps between high-t x0 checks (x0_diagnostic; also at the end); 0: off
    max_seconds: float | None = None  # stop cleanly (checkpoint) after this much training wall time; None: run all steps
    accumulate: int = 1  # micro-batches per step (gradient accumulation): the global batch is batch_size either way
    workers: int = min(4, os.cpu_count() or 1)  # DataLoader workers decoding lazy data sets (image files) ahead; 0: in the step
    init_from: str | None = None  # a trained model (run dir, checkpoint, exported folder) whose EMA weights start this run: a new leg (legs.py)
    images: int | None = None  # instead of steps: stop at this many images over all legs (init_from's count), in whole batches
    prediction: str = "eps"  # what the image network outputs: eps (the paper) or v (Salimans & Ho 2022, a departure:
    #                          black shapes backgrounds at budgets where eps leaves grey ones; README "Departures")
    warmup_steps: int = 0  # linear lr warm-up from 0 over this run's first N steps; 0: none. A new leg (init_from)
    #                        starts Adam afresh, whose first steps move every weight by about lr (a bump in the x0 log)


def check_options(opts: TrainOptions) -> None:
    """Numbers that cannot describe a run fail here, before data is loaded or a file written.

    (Without this, --steps 0 trained the CLI's default 1000 steps, and
    --ckpt-every 0 failed with a ZeroDivisionError at the first step.)
    """
    counts = {"--steps": opts.steps, "--ckpt-every": opts.ckpt_every, "--batch-size": opts.batch_size,
              "--accumulate": opts.accumulate, "--images": opts.images,
              "--warmup-steps": opts.warmup_steps or None,
              "--image-size": opts.image_size, "--train-limit": opts.train_limit}
    for flag, value in counts.items():
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise BenchError(f"{flag} must be a positive integer, got {value}")
    if isinstance(opts.workers, bool) or not isinstance(opts.workers, int) or opts.workers < 0:
        raise BenchError(f"--workers must be 0 or a positive integer, got {opts.workers}")
    if opts.prediction not in PREDICTIONS:
        raise BenchError(f"--prediction must be one of {', '.join(PREDICTIONS)}, got {opts.prediction!r}")
    if opts.lr is not None and not (math.isfinite(opts.lr) and opts.lr > 0):
        raise BenchError(f"--lr must be a positive number, got {opts.lr}")


class _StopFlag:
    """First Ctrl-C (or SIGTERM, what SLURM sends before pre-emption) asks for a clean stop at the end of
    the step: checkpoint, then exit; a second one aborts."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.stop = False

    def __enter__(self):
        self._old = {}

        def handler(signum, frame):
            if self.stop:
                raise KeyboardInterrupt
            self.stop = True

        for sig in self.SIGNALS:
            try:
                self._old[sig] = signal.getsignal(sig)
                signal.signal(sig, handler)
            except ValueError:  # not the main thread: no clean-stop support
                self._old.pop(sig, None)
        return self

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)


def _optimise(*, loss_fn: Callable[[], torch.Tensor], params: list, opt: torch.optim.Optimizer,
              ema: torch.nn.Module, online: torch.nn.Module, ema_decay: float, grad_clip: float,
              start: int, steps: int, batch_size: int, ckpt_every: int,
              save: Callable[[int, float], None], desc: str, progress: bool, log_every: int = 1,
              max_seconds: float | None = None, diagnose: Callable[[int], None] | None = None,
              diag_every: int = 0, lr_at: Callable[[int], float] | None = None) -> dict:
    """The loop shared by both stages. Returns a summary (steps, losses, speed).

    The loss is read on the host every `log_every` steps and before every
    checkpoint (LossLog: the same running average and first bad step as a
    per-step read), so a NaN stops the run before anything is saved.
    lr_at(step): the learning rate of 0-based step `step` (a warm-up), set before it; None: the optimiser's own.
    """
    if log_every < 1:
        raise BenchError(f"log_every must be >= 1, got {log_every}")
    step, last_saved, log = start, start, LossLog()
    t0 = time.perf_counter()
    bar = tqdm(total=steps, initial=start, desc=desc, unit="step", disable=not progress, mininterval=1.0, dynamic_ncols=True)

    def flush():
        read = log.flush(last_saved)
        if read:
            bar.update(read)
            bar.set_postfix(loss=f"{log.avg:.4f}", img_s=f"{(step - start) * batch_size / (time.perf_counter() - t0):.1f}",
                            refresh=False)

    out_of_time = False
    try:
        with _StopFlag() as flag:
            while step < steps and not flag.stop and not out_of_time:
                if lr_at is not None:
                    for group in opt.param_groups:
                        group["lr"] = lr_at(step)  # a Python float: no host sync, no recompilation
                log.add(step + 1, optimisation_step(loss_fn, params, opt, ema, online, ema_decay, grad_clip, step))
                step += 1
                out_of_time = max_seconds is not None and time.perf_counter() - t0 >= max_seconds
                if dist.active():  # every rank stops at the same step (a signal or a clock on one rank stops all)
                    out_of_time, flag.stop = dist.any_rank(out_of_time), dist.any_rank(flag.stop)
                at_save = step % ckpt_every == 0 or step == steps
                if step % log_every == 0 or at_save or out_of_time:
                    flush()
                if at_save:
                    save(step, log.avg)
                    last_saved = step
                if diagnose is not None and diag_every and (step % diag_every == 0 or step == steps):
                    diagnose(step)
            if step != last_saved:  # Ctrl-C or the time budget
                flush()
                save(step, log.avg if log.avg is not None else float("nan"))
                last_saved = step
                if diagnose is not None and diag_every and step % diag_every:
                    diagnose(step)
    finally:
        bar.close()
    elapsed = time.perf_counter() - t0
    return {"step": step, "interrupted": step < steps and not out_of_time, "out_of_time": out_of_time and step < steps,
            "first_loss": log.first, "loss_ema": log.avg,
            "images_per_s": (step - start) * batch_size / elapsed if elapsed > 0 and step > start else None,
            "wall_s": elapsed}


def _run_identity(meta: dict) -> dict:
    """What must match for a run directory to be resumed rather than refused."""
    keys = ("model", "dataset", "seed", "batch_size", "lr", "init_from")
    # warmup_steps: 0 where a run predates the option, and the config as today's code reads it
    # (canonical_config), so those runs still resume
    config = canonical_config(meta) if meta.get("model") and meta.get("model_config") else meta.get("model_config")
    return {**{k: meta.get(k) for k in keys}, "model_config": config,
            "warmup_steps": meta.get("warmup_steps") or 0}


def _dataset_meta(data, opts: TrainOptions) -> dict:
    return {"name": data.name, "split": data.split, "n_images": len(data), "image_shape": list(data.image_shape),
            "content_hash": data.content_hash(), "root": opts.data_root, "limit": opts.train_limit, "meta": data.meta}


def _recipe_change(batch_size: int, lr: float, tc: TrainConfig, warmup_steps: int = 0) -> str | None:
    """How the optimisation recipe differs from the preset's (None: it does not), for the manifest."""
    parts = [f"{name} {mine:g} (preset {theirs:g})" for name, mine, theirs in
             (("batch_size", batch_size, tc.batch_size), ("lr", lr, tc.lr)) if mine != theirs]
    parts += [f"lr warm-up over the first {warmup_steps} steps (preset: none)"] if warmup_steps else []
    return ", ".join(parts) or None


def warmup_lr(lr: float, warmup_steps: int) -> Callable[[int], float] | None:
    """Linear warm-up: step k (0-based) trains at lr * (k + 1) / warmup_steps until it reaches lr; None for 0."""
    if not warmup_steps:
        return None
    return lambda step: lr * min(1.0, (step + 1) / warmup_steps)


def train_autoencoder(opts: TrainOptions) -> dict:
    """Stage 1: fit the image model with L_simple; resumable."""
    check_options(opts)
    with pinned_threads(opts.threads):
        return _train_autoencoder(opts)


def _train_autoencoder(opts: TrainOptions) -> dict:
    device = resolve_device(opts.device)
    dist.init(device)  # under torchrun: join the process group (gloo on CPUs, NCCL on GPUs)
    device = dist.local_device(device)
    rank, world = dist.rank(), dist.world_size()
    preset = PRESETS.get(opts.preset)
    kind = get_kind(opts.model)
    image_size = opts.image_size or preset.image_size
    data = load_dataset(opts.dataset, "train", root=opts.data_root, image_size=image_size, limit=opts.train_limit)
    preset = preset.for_data(data.image_shape[0], image_size)
    preset = dataclasses.replace(preset, unet=dataclasses.replace(preset.unet, prediction=opts.prediction))
    tc = preset.train
    batch_size, lr = opts.batch_size or tc.batch_size, opts.lr or tc.lr
    setup = step_setup(device, get_mode(opts.numeric_mode).name, opts.compile_mode if opts.compile else None)
    log_every = opts.log_every or (50 if setup.on_device else 1)
    torch.manual_seed(opts.seed)
    model = kind.cls(kind.from_preset(preset)).to(device)
    if has_latent_stage(model):
        model.prior.requires_grad_(False)  # trained in stage 2; no gradient here (DDP syncs only what trains)
    if get_mode(setup.numeric_mode).channels_last:
        model = model.to(memory_format=torch.channels_last)
    # How the model was trained, for the manifest; not part of the run identity, so a
    # run may be resumed in another mode or on another device (the latest is recorded).
    numerics = {**setup.describe(), "log_every": log_every, "device": describe_device(device),
                "torch_threads": cpu_threads()}
    meta = {"model": kind.name, "model_config": to_jsonable(model.cfg), "preset": preset.name,
            "dataset": _dataset_meta(data, opts), "seed": opts.seed, "batch_size": batch_size, "lr": lr,
            "recipe_change": _recipe_change(batch_size, lr, tc, opts.warmup_steps), "warmup_steps": opts.warmup_steps,
            "train": to_jsonable(tc), "stage": "autoencoder", "numerics": numerics,
            # How the global batch (batch_size) was computed; not part of the run identity, so a run
            # may be resumed with another number of processes (every rank holds the same generator).
            "parallel": {"processes": world, "accumulate": opts.accumulate,
                         "per_process_micro_batch": batch_size // (world * opts.accumulate)}}
    # A trainable prior (Diff-AE's latent DDIM) is fitted in stage 2, on the frozen encoder's codes.
    params = [p for n, p in model.named_parameters() if not (has_latent_stage(model) and n.startswith("prior."))]
    opt = make_optimizer(params, lr, setup)
    ema = copy.deepcopy(model).eval().requires_grad_(False)
    gen = make_generator(opts.seed, device, setup)
    # The generator's state under its device's key: "rng" (CPU, as every earlier
    # checkpoint has it) or "rng_cuda".
    rng_key = "rng" if gen.device.type == "cpu" else f"rng_{gen.device.type}"
    out = Path(opts.out)
    ckpt = out / CHECKPOINT
    start, wall_before = 0, 0.0
    if opts.init_from is not None:  # a new leg: the weights (and the record of the legs) of a trained model
        meta.update(start_leg(opts.init_from, model, ema, meta))
        gen.manual_seed(leg_seed(opts.seed, meta))
    # An image budget counts every leg, so models compared with each other end at equal totals (issue 21).
    steps = opts.steps if opts.images is None else steps_to_total(opts.images, total_images({"legs": meta.get("legs")}),
                                                                  batch_size)
    if ckpt.exists():
        tensors, old = load_checkpoint(ckpt)
        if _run_identity(old) != _run_identity(meta):
            diff = [k for k in _run_identity(meta) if _run_identity(old)[k] != _run_identity(meta)[k]]
            raise CheckpointError(f"{out} holds a different run (differs in {', '.join(diff)}); use another --out")
        load_state_strict(model, model.upgrade_state(split_prefix(tensors, "online")), f"checkpoint {ckpt}")
        load_state_strict(ema, model.upgrade_state(split_prefix(tensors, "ema")), f"checkpoint {ckpt}")
        optimizer_from_tensors(opt, split_prefix(tensors, "optim"), old["optim_groups"])
        start, wall_before = old["step"], float(old.get("wall_s") or 0.0)
        if rng_key in tensors:
            gen.set_state(tensors[rng_key])
        else:  # resumed on another kind of device: a fresh stream, seeded by (seed, step)
            gen.manual_seed(opts.seed * 1_000_003 + start)
            print(f"note: {ckpt.name} holds no {rng_key} state (trained on another device type); "
                  f"batches and noise continue from a stream seeded by (seed, step)")
        print(f"resuming {out} from step {start}")
    elif out.exists() and any(out.iterdir()):
        raise CheckpointError(f"{out} exists and is not a resumable run directory; use another --out")
    dist.barrier()  # every rank has checked the directory before rank 0 writes into it
    if dist.is_main():
        atomic_write_json(out / "config.json", {**meta, "options": to_jsonable(opts)})
    model.train()
    batches = BatchSource(data, batch_size, device, gen, setup, workers=opts.workers, seed=opts.seed, start_step=start)
    if world > 1 or opts.accumulate > 1:
        if setup.compile_mode is not None:
            raise BenchError("--compile is not supported with torchrun or --accumulate yet; leave it out")
        module = LossModule(model)
        if world > 1:
            from torch.nn.parallel import DistributedDataParallel

            module = DistributedDataParallel(module, device_ids=[device.index] if device.type == "cuda" else None)
        loss_fn = ShardedLoss(module, batches, gen, setup, device, rank, world, opts.accumulate)
    else:  # one process, one batch: the step every earlier run took, bit for bit
        loss_fn = make_loss_fn(model, batches, gen, setup, device)
    diag = X0Diagnostic(opts.dataset, opts.data_root, image_size, out, device) if opts.diag_every and dist.is_main() \
        else None
    t_start = time.time()

    def save(step, loss_avg):
        if not dist.is_main():  # rank 0 writes; the others hold the same weights
            return
        opt_t, groups = optimizer_to_tensors(opt)
        tensors = {**{f"ema.{k}": v for k, v in ema.state_dict().items()},
                   **{f"online.{k}": v for k, v in model.state_dict().items()},
                   **{f"optim.{k}": v for k, v in opt_t.items()}, rng_key: gen.get_state()}
        leg = {"step": step, "images_seen": step * batch_size, "wall_s": round(wall_before + time.time() - t_start, 1),
               "machine": machine()["cpu"] if device.type == "cpu" else describe_device(device)}
        save_checkpoint(ckpt, tensors, {**meta, **leg, "images_seen_total": total_images({**meta, **leg}),
                                        "loss_ema": loss_avg, "optim_groups": groups})
        with open(out / "train_log.jsonl", "a") as f:
            f.write(json.dumps({"stage": "autoencoder", "step": step, "loss_ema": loss_avg,
                                "wall_s": round(time.time() - t_start, 2)}) + "\n")

    with device_flags(setup):
        summary = _optimise(loss_fn=loss_fn, params=params, opt=opt, ema=ema, online=model, ema_decay=tc.ema_decay,
                            grad_clip=tc.grad_clip, start=start, steps=steps, batch_size=batch_size,
                            ckpt_every=opts.ckpt_every, save=save, desc=f"train {kind.name}/{preset.name}",
                            progress=opts.progress, log_every=log_every, max_seconds=opts.max_seconds,
                            diagnose=(lambda step: diag(ema, step, step * batch_size)) if diag else None,
                            diag_every=opts.diag_every, lr_at=warmup_lr(lr, opts.warmup_steps))
    x0_check = diag.last if diag else None
    return {**summary, "out": str(out), "checkpoint": str(ckpt), "batch_size": batch_size, "x0_diagnostic": x0_check}


@torch.no_grad()
def encode_dataset(model, data, batch_size: int = 256) -> torch.Tensor:
    """z_sem of every image of a data set, in order (frozen encoder, eval mode)."""
    zs = [model.encode(x.to(model.device)).float().cpu() for x in data.batches(batch_size)]
    return torch.cat(zs)


def train_latent(opts: TrainOptions) -> dict:
    """Stage 2: the model's trainable latent prior on the frozen encoder's codes (Diff-AE: the latent DDIM).

    Generic: the prior's own fit (standardisation), reset_parameters and loss;
    the trainer knows no model's attribute names. The file holds the prior's
    state under "ema.prior." / "online.prior." (older files: models' LEGACY_STATE_KEYS).
    """
    check_options(opts)
    if opts.images is not None:
        raise BenchError("an image budget counts the autoencoder's images; for the latent stage give --steps")
    if opts.warmup_steps:
        raise BenchError("--warmup-steps warms up the autoencoder's learning rate; the latent stage has none")
    with pinned_threads(opts.threads):
        return _train_latent(opts)


def _train_latent(opts: TrainOptions) -> dict:
    device = resolve_device(opts.device)
    out = Path(opts.out)
    ckpt = out / CHECKPOINT
    if not ckpt.is_file():
        raise CheckpointError(f"no autoencoder checkpoint in {out}: train stage 1 first (bench train --out {out})")
    _, ae_meta = load_checkpoint(ckpt)
    kind = get_kind(ae_meta["model"])
    ae_sha = file_sha256(ckpt)
    model = load_model(ckpt, device)
    if not has_latent_stage(model):
        raise BenchError(f"the {kind.name} model has no latent stage to train (its prior has no parameters)")
    dm = ae_meta["dataset"]
    img = dm["image_shape"][-1]
    data = load_dataset(dm["name"], "train", root=opts.data_root or dm.get("root"), image_size=img, limit=dm.get("limit"))
    if data.content_hash() != dm["content_hash"]:
        raise BenchError(f"the {dm['name']} training data differ from those stage 1 was trained on (content hash changed)")
    tc = from_dict(TrainConfig, ae_meta["train"])  # the preset's settings as stage 1 recorded them
    batch_size, lr = opts.batch_size or tc.latent_batch_size, opts.lr or tc.latent_lr
    print(f"encoding {len(data)} training images with the frozen encoder")
    z = encode_dataset(model, data).to(device)
    prior = model.prior
    prior.fit(z)
    torch.manual_seed(opts.seed)
    prior.reset_parameters()  # a fresh, seeded init
    prior.train().requires_grad_(True)
    ema = copy.deepcopy(prior).eval().requires_grad_(False)
    opt = torch.optim.AdamW(prior.parameters(), lr=lr, weight_decay=tc.latent_weight_decay)
    gen = torch.Generator().manual_seed(opts.seed)
    lpath = out / LATENT_CHECKPOINT
    meta = {"model": kind.name, "autoencoder_sha256": ae_sha, "seed": opts.seed, "batch_size": batch_size, "lr": lr,
            "stage": "latent", "dataset": dm, "model_config": ae_meta["model_config"]}
    start = 0
    if lpath.exists():
        tensors, old = load_checkpoint(lpath)
        if _run_identity(old) != _run_identity(meta) or old.get("autoencoder_sha256") != ae_sha:
            raise CheckpointError(f"{lpath} belongs to a different run or autoencoder checkpoint; delete it to retrain")
        for module, part in ((prior, "online"), (ema, "ema")):
            state = split_prefix(model.upgrade_state(split_prefix(tensors, part)), "prior")
            # Files from before issue 14 kept the standardisation only under "ema.": same values.
            state = {**{k: v for k, v in module.state_dict().items() if k not in state}, **state}
            load_state_strict(module, state, f"checkpoint {lpath}")
        optimizer_from_tensors(opt, split_prefix(tensors, "optim"), old["optim_groups"])
        gen.set_state(tensors["rng"])
        start = old["step"]
        print(f"resuming the latent prior in {out} from step {start}")

    def loss_fn():
        idx = torch.randint(len(z), (batch_size,), generator=gen).to(device)
        return prior.loss(z[idx], gen)

    def save(step, loss_avg):
        opt_t, groups = optimizer_to_tensors(opt)
        ema_state = ema.state_dict()
        if "trained" in ema_state:  # what load_model and sample() check
            ema_state["trained"] = torch.ones((), dtype=torch.bool)
        tensors = {**{f"ema.prior.{k}": v for k, v in ema_state.items()},
                   **{f"online.prior.{k}": v for k, v in prior.state_dict().items()},
                   **{f"optim.{k}": v for k, v in opt_t.items()}, "rng": gen.get_state()}
        save_checkpoint(lpath, tensors, {**meta, "step": step, "latents_seen": step * batch_size,
                                         "loss_ema": loss_avg, "optim_groups": groups})
        with open(out / "train_log.jsonl", "a") as f:
            f.write(json.dumps({"stage": "latent", "step": step, "loss_ema": loss_avg}) + "\n")

    summary = _optimise(loss_fn=loss_fn, params=list(prior.parameters()), opt=opt, ema=ema, online=prior,
                        ema_decay=tc.latent_ema_decay, grad_clip=tc.grad_clip, start=start, steps=opts.steps,
                        batch_size=batch_size, ckpt_every=opts.ckpt_every, save=save,
                        desc=f"latent prior {kind.name}", progress=opts.progress)
    return {**summary, "out": str(out), "checkpoint": str(lpath)}
