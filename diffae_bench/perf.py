"""Throughput benchmark (`bench perf`): the project's own speed measurement.

Prints, per preset and model, on this machine: training images/s (one full
optimisation step: forward, backward, Adam, EMA) and network evaluations/s of
batched DDIM sampling and inversion (one evaluation = one image through the
UNet once). Numbers are whole; the machine is printed above them. Timings are
medians over repeated timed windows after a warm-up, on random inputs (speed
does not depend on pixel content).

Any registered model can be measured through the common interface, e.g.
`bench perf --presets tiny --models diffae,ddim,dmz`: the DDIM baseline samples
and inverts without a code, the DMZ-style model with its hard bits.
"""

from __future__ import annotations

import copy
import platform
import statistics
import time

import torch

from .device import describe_device, resolve_device
from .models import build_model, get_kind
from .presets import PRESETS
from .provenance import machine
from .train import ema_update


def machine_line(device: torch.device) -> str:
    m = machine()
    return (f"machine: {m['node']} | {m['cpu']} | {torch.get_num_threads()} torch threads | "
            f"device {describe_device(device)} | torch {torch.__version__} | python {platform.python_version()}")


def _timed(fn, seconds: float, warmup: int = 2) -> float:
    """Median seconds per call of fn over ~`seconds` of repeated calls."""
    for _ in range(warmup):
        fn()
    times, t_end = [], time.perf_counter() + seconds
    while time.perf_counter() < t_end or len(times) < 3:
        t0 = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def measure(model_name: str, preset_name: str, batch_size: int, seconds: float, device: torch.device) -> dict:
    preset = PRESETS.get(preset_name)
    model = build_model(model_name, preset).to(device)
    train_bs = preset.train.batch_size
    c, s = model.image_shape[0], model.image_shape[1]
    x = torch.rand(train_bs, c, s, s, device=device) * 2 - 1
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    ema = copy.deepcopy(model).requires_grad_(False)
    model.train()

    def train_step():
        loss = model.loss(x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        ema_update(ema, model, 0.999, 1000)

    t_train = _timed(train_step, seconds)
    model.eval()
    xb = torch.randn(batch_size, c, s, s, device=device)
    T = 10
    z = model.encode(xb) if model.has_semantic_latent else None
    # Time the samplers themselves through the model interface (T network calls each).
    t_dec = _timed(lambda: model.decode(z, xb, T), seconds)
    t_inv = _timed(lambda: model.encode_stochastic(xb, T, z), seconds)
    n_params = sum(p.numel() for p in model.parameters())
    return {"model": model_name, "preset": preset_name, "params_M": n_params / 1e6,
            "train_images_s": train_bs / t_train, "train_batch": train_bs,
            "sample_evals_s": batch_size * T / t_dec, "invert_evals_s": batch_size * T / t_inv, "eval_batch": batch_size}


def run_perf(presets: list[str], models: list[str], batch_size: int, seconds: float, device: str = "auto") -> list[dict]:
    dev = resolve_device(device)
    for m in models:  # fail on a misspelt model or preset name before minutes of timing, not after
        get_kind(m)
    for p in presets:
        PRESETS.get(p)
    print(machine_line(dev))
    rows = []
    header = f"{'model':8s} {'preset':8s} {'params':>8s} {'train img/s':>12s} {'sample eval/s':>14s} {'invert eval/s':>14s}"
    print(header)
    for p in presets:
        for m in models:
            r = measure(m, p, batch_size, seconds, dev)
            rows.append(r)
            print(f"{m:8s} {p:8s} {r['params_M']:7.1f}M {r['train_images_s']:12.0f} "
                  f"{r['sample_evals_s']:14.0f} {r['invert_evals_s']:14.0f}", flush=True)
    print(f"(train batch = preset's; eval batch {batch_size}, T = 10; float32 eager; medians over ~{seconds:.0f} s each)")
    return rows
