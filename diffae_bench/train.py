"""Training: stage 1 (the autoencoder or any image model) and stage 2 (Diff-AE's latent DDIM).

One optimisation loop serves both stages: Adam(W), EMA with warm-up, progress
bar with loss and images/s, atomic checkpoints every `ckpt_every` steps, clean
stop on Ctrl-C (checkpoint, then exit; the same command resumes), and a hard
stop on a non-finite loss that keeps the last good checkpoint.
"""

from __future__ import annotations

import copy
import json
import math
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from tqdm import tqdm

from .checkpoint import (atomic_write_json, file_sha256, from_dict, load_checkpoint, load_state_strict, optimizer_from_tensors,
                         optimizer_to_tensors, save_checkpoint, split_prefix, to_jsonable)
from .data import load_dataset
from .device import resolve_device
from .errors import BenchError, CheckpointError, TrainingDiverged
from .models import CHECKPOINT, LATENT_CHECKPOINT, get_kind, load_model
from .numerics import autocast, get_mode, to_memory_format
from .presets import PRESETS, TrainConfig


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
    train_limit: int | None = None  # use only the first N training images
    progress: bool = True  # show a progress bar
    numeric_mode: str = "fp32"  # network precision of the loss (diffae_bench.numerics); fp32 = the reference
    compile: bool = False  # torch.compile the loss: 1.09-1.18x on the tiny preset here after a 2-4 min compile, so opt-in


class _StopFlag:
    """First Ctrl-C asks for a clean stop at the end of the step; a second one aborts."""

    def __init__(self):
        self.stop = False

    def __enter__(self):
        self._old = signal.getsignal(signal.SIGINT)

        def handler(signum, frame):
            if self.stop:
                raise KeyboardInterrupt
            self.stop = True

        try:
            signal.signal(signal.SIGINT, handler)
        except ValueError:  # not the main thread: no clean-stop support
            self._old = None
        return self

    def __exit__(self, *exc):
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)


@torch.no_grad()
def ema_update(ema: torch.nn.Module, online: torch.nn.Module, decay: float, step: int) -> None:
    # Warm-up (as in timm / many DDPM codes): early EMA tracks the online weights
    # closely so that short runs evaluate something trained, not the init.
    d = min(decay, (1 + step) / (10 + step))
    ep = [p for p in ema.parameters()]
    op = [p.detach() for p in online.parameters()]
    torch._foreach_lerp_(ep, op, 1 - d)
    for eb, ob in zip(ema.buffers(), online.buffers()):
        eb.copy_(ob)


def _optimise(*, loss_fn: Callable[[], torch.Tensor], params: list, opt: torch.optim.Optimizer,
              ema: torch.nn.Module, online: torch.nn.Module, ema_decay: float, grad_clip: float,
              start: int, steps: int, batch_size: int, ckpt_every: int,
              save: Callable[[int, float], None], desc: str, progress: bool) -> dict:
    """The loop shared by both stages. Returns a summary (steps, losses, speed)."""
    step, last_saved, loss_avg, first_loss = start, start, None, None
    t0 = time.perf_counter()
    bar = tqdm(total=steps, initial=start, desc=desc, unit="step", disable=not progress, mininterval=1.0, dynamic_ncols=True)
    with _StopFlag() as flag:
        while step < steps and not flag.stop:
            loss = loss_fn()
            value = float(loss.detach())
            if not math.isfinite(value):
                bar.close()
                kept = f"the last good checkpoint (step {last_saved}) is kept" if last_saved else "no checkpoint was written"
                raise TrainingDiverged(f"loss became {value} at step {step + 1}; stopped, {kept}")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if grad_clip:
                torch.nn.utils.clip_grad_norm_(params, grad_clip)
            opt.step()
            ema_update(ema, online, ema_decay, step)
            step += 1
            first_loss = value if first_loss is None else first_loss
            loss_avg = value if loss_avg is None else 0.98 * loss_avg + 0.02 * value
            elapsed = time.perf_counter() - t0
            bar.update(1)
            bar.set_postfix(loss=f"{loss_avg:.4f}", img_s=f"{(step - start) * batch_size / elapsed:.1f}", refresh=False)
            if step % ckpt_every == 0 or step == steps:
                save(step, loss_avg)
                last_saved = step
        if flag.stop and step != last_saved:
            save(step, loss_avg if loss_avg is not None else float("nan"))
    bar.close()
    elapsed = time.perf_counter() - t0
    return {"step": step, "interrupted": step < steps, "first_loss": first_loss, "loss_ema": loss_avg,
            "images_per_s": (step - start) * batch_size / elapsed if elapsed > 0 and step > start else None,
            "wall_s": elapsed}


def _run_identity(meta: dict) -> dict:
    """What must match for a run directory to be resumed rather than refused."""
    keys = ("model", "model_config", "dataset", "seed", "batch_size", "lr")
    return {k: meta.get(k) for k in keys}


def _dataset_meta(data, opts: TrainOptions) -> dict:
    return {"name": data.name, "split": data.split, "n_images": len(data), "image_shape": list(data.image_shape),
            "content_hash": data.content_hash(), "root": opts.data_root, "limit": opts.train_limit, "meta": data.meta}


def train_autoencoder(opts: TrainOptions) -> dict:
    """Stage 1: fit the image model with L_simple; resumable."""
    device = resolve_device(opts.device)
    preset = PRESETS.get(opts.preset)
    kind = get_kind(opts.model)
    image_size = opts.image_size or preset.image_size
    data = load_dataset(opts.dataset, "train", root=opts.data_root, image_size=image_size, limit=opts.train_limit)
    preset = preset.for_data(data.image_shape[0], image_size)
    tc = preset.train
    batch_size, lr = opts.batch_size or tc.batch_size, opts.lr or tc.lr
    torch.manual_seed(opts.seed)
    model = kind.cls(kind.from_preset(preset)).to(device)
    mode = get_mode(opts.numeric_mode)
    if mode.channels_last:
        model = model.to(memory_format=torch.channels_last)
    # How the model was trained, for the manifest; not part of the run identity, so a
    # run may be resumed in another mode (the latest is recorded).
    numerics = {"mode": mode.name, "compile": opts.compile, "torch_threads": torch.get_num_threads()}
    meta = {"model": kind.name, "model_config": to_jsonable(model.cfg), "preset": preset.name,
            "dataset": _dataset_meta(data, opts), "seed": opts.seed, "batch_size": batch_size, "lr": lr,
            "train": to_jsonable(tc), "stage": "autoencoder", "numerics": numerics}
    params = [p for n, p in model.named_parameters() if not n.startswith(kind.latent_keys)] if kind.latent_keys \
        else list(model.parameters())
    opt = torch.optim.Adam(params, lr=lr)
    ema = copy.deepcopy(model).eval().requires_grad_(False)
    gen = torch.Generator().manual_seed(opts.seed)
    out = Path(opts.out)
    ckpt = out / CHECKPOINT
    start = 0
    if ckpt.exists():
        tensors, old = load_checkpoint(ckpt)
        if _run_identity(old) != _run_identity(meta):
            diff = [k for k in _run_identity(meta) if _run_identity(old)[k] != _run_identity(meta)[k]]
            raise CheckpointError(f"{out} holds a different run (differs in {', '.join(diff)}); use another --out")
        load_state_strict(model, split_prefix(tensors, "online"), f"checkpoint {ckpt}")
        load_state_strict(ema, split_prefix(tensors, "ema"), f"checkpoint {ckpt}")
        optimizer_from_tensors(opt, split_prefix(tensors, "optim"), old["optim_groups"])
        gen.set_state(tensors["rng"])
        start = old["step"]
        print(f"resuming {out} from step {start}")
    elif out.exists() and any(out.iterdir()):
        raise CheckpointError(f"{out} exists and is not a resumable run directory; use another --out")
    atomic_write_json(out / "config.json", {**meta, "options": to_jsonable(opts)})
    images = torch.from_numpy(data.images) if data.images is not None else None
    model.train()
    loss_call = torch.compile(model.loss) if opts.compile else model.loss

    def loss_fn():
        # Batches are indexed from the in-memory uint8 tensor: ~1 ms, never the bottleneck.
        idx = torch.randint(len(data), (batch_size,), generator=gen)
        x = (images[idx] if images is not None else torch.from_numpy(data.uint8(idx.numpy())))
        x = to_memory_format(x.to(device, non_blocking=True).float().div_(127.5).sub_(1.0), mode.name)
        with autocast(mode.name, device.type):
            return loss_call(x, gen).float()

    t_start = time.time()

    def save(step, loss_avg):
        opt_t, groups = optimizer_to_tensors(opt)
        tensors = {**{f"ema.{k}": v for k, v in ema.state_dict().items()},
                   **{f"online.{k}": v for k, v in model.state_dict().items()},
                   **{f"optim.{k}": v for k, v in opt_t.items()}, "rng": gen.get_state()}
        save_checkpoint(ckpt, tensors, {**meta, "step": step, "images_seen": step * batch_size,
                                        "loss_ema": loss_avg, "optim_groups": groups})
        with open(out / "train_log.jsonl", "a") as f:
            f.write(json.dumps({"stage": "autoencoder", "step": step, "loss_ema": loss_avg,
                                "wall_s": round(time.time() - t_start, 2)}) + "\n")

    summary = _optimise(loss_fn=loss_fn, params=params, opt=opt, ema=ema, online=model, ema_decay=tc.ema_decay,
                        grad_clip=tc.grad_clip, start=start, steps=opts.steps, batch_size=batch_size,
                        ckpt_every=opts.ckpt_every, save=save, desc=f"train {kind.name}/{preset.name}",
                        progress=opts.progress)
    return {**summary, "out": str(out), "checkpoint": str(ckpt)}


@torch.no_grad()
def encode_dataset(model, data, batch_size: int = 256) -> torch.Tensor:
    """z_sem of every image of a data set, in order (frozen encoder, eval mode)."""
    zs = [model.encode(x.to(model.device)).float().cpu() for x in data.batches(batch_size)]
    return torch.cat(zs)


def train_latent(opts: TrainOptions) -> dict:
    """Stage 2: the latent DDIM on standardised z_sem of the frozen encoder (Diff-AE)."""
    device = resolve_device(opts.device)
    out = Path(opts.out)
    ckpt = out / CHECKPOINT
    if not ckpt.is_file():
        raise CheckpointError(f"no autoencoder checkpoint in {out}: train stage 1 first (bench train --out {out})")
    _, ae_meta = load_checkpoint(ckpt)
    kind = get_kind(ae_meta["model"])
    if not kind.latent_stage:
        raise BenchError(f"the {kind.name} model has no latent stage to train")
    ae_sha = file_sha256(ckpt)
    model = load_model(ckpt, device)
    dm = ae_meta["dataset"]
    img = dm["image_shape"][-1]
    data = load_dataset(dm["name"], "train", root=opts.data_root or dm.get("root"), image_size=img, limit=dm.get("limit"))
    if data.content_hash() != dm["content_hash"]:
        raise BenchError(f"the {dm['name']} training data differ from those stage 1 was trained on (content hash changed)")
    tc = from_dict(TrainConfig, ae_meta["train"])  # the preset's settings as stage 1 recorded them
    batch_size, lr = opts.batch_size or tc.latent_batch_size, opts.lr or tc.latent_lr
    print(f"encoding {len(data)} training images with the frozen encoder")
    z = encode_dataset(model, data).to(device)
    model.fit_latent_stats(z)
    torch.manual_seed(opts.seed)
    model.latent_net.reset_parameters()  # fresh init for the latent net, seeded
    net = model.latent_net.train().requires_grad_(True)
    ema = copy.deepcopy(net).eval().requires_grad_(False)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=tc.latent_weight_decay)
    gen = torch.Generator().manual_seed(opts.seed)
    lpath = out / LATENT_CHECKPOINT
    meta = {"model": kind.name, "autoencoder_sha256": ae_sha, "seed": opts.seed, "batch_size": batch_size, "lr": lr,
            "stage": "latent", "dataset": dm, "model_config": ae_meta["model_config"]}
    start = 0
    if lpath.exists():
        tensors, old = load_checkpoint(lpath)
        if _run_identity(old) != _run_identity(meta) or old.get("autoencoder_sha256") != ae_sha:
            raise CheckpointError(f"{lpath} belongs to a different run or autoencoder checkpoint; delete it to retrain")
        load_state_strict(net, split_prefix(tensors, "online.latent_net"), f"checkpoint {lpath}")
        load_state_strict(ema, split_prefix(tensors, "ema.latent_net"), f"checkpoint {lpath}")
        optimizer_from_tensors(opt, split_prefix(tensors, "optim"), old["optim_groups"])
        gen.set_state(tensors["rng"])
        start = old["step"]
        print(f"resuming latent DDIM in {out} from step {start}")

    def loss_fn():
        idx = torch.randint(len(z), (batch_size,), generator=gen).to(device)
        return model.latent_loss(z[idx], gen)

    def save(step, loss_avg):
        opt_t, groups = optimizer_to_tensors(opt)
        tensors = {**{f"ema.latent_net.{k}": v for k, v in ema.state_dict().items()},
                   **{f"online.latent_net.{k}": v for k, v in net.state_dict().items()},
                   "ema.z_mean": model.z_mean, "ema.z_std": model.z_std,
                   "ema.latent_trained": torch.ones((), dtype=torch.bool),
                   **{f"optim.{k}": v for k, v in opt_t.items()}, "rng": gen.get_state()}
        save_checkpoint(lpath, tensors, {**meta, "step": step, "latents_seen": step * batch_size,
                                         "loss_ema": loss_avg, "optim_groups": groups})
        with open(out / "train_log.jsonl", "a") as f:
            f.write(json.dumps({"stage": "latent", "step": step, "loss_ema": loss_avg}) + "\n")

    summary = _optimise(loss_fn=loss_fn, params=list(net.parameters()), opt=opt, ema=ema, online=net,
                        ema_decay=tc.latent_ema_decay, grad_clip=tc.grad_clip, start=start, steps=opts.steps,
                        batch_size=batch_size, ckpt_every=opts.ckpt_every, save=save,
                        desc=f"latent DDIM {kind.name}", progress=opts.progress)
    return {**summary, "out": str(out), "checkpoint": str(lpath)}
