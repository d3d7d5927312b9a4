"""Throughput benchmark (`bench perf`): the project's own speed measurement.

Prints, per preset, model and numeric mode, on this machine: training
images/s (one full optimisation step: forward, backward, Adam, EMA), network
evaluations/s of batched DDIM sampling and inversion (one evaluation = one
image through the UNet once), each as a ratio to eager fp32, and the peak
memory of the measurement. Numbers are whole; the machine is printed above
them. Timings are medians over repeated timed windows after a warm-up, on
random inputs (speed does not depend on pixel content).

Rows (variants): eager fp32, the baseline, run as bench train ran its step
before issue 21 (batch indices, t and noise drawn on the CPU and copied,
loss read every step); the numeric modes (diffae_bench.numerics): by default
fp32-cl and whatever this device's defaults use, `--modes` names others
(bf16 on a CPU without native bf16 is very slow); on CUDA (or with `--fast`)
"fast", bench train's GPU step (train_step.py: `--fast-mode` autocast with
float32 master weights, GPU-resident data and draws, fused Adam, no per-step
host sync); `--compile` adds its torch.compile'd form. `--train-batches`
measures several training batches (the sampling / inversion rows are measured
once, at the first). `bench perf --accuracy` (perf_accuracy.py) prints the
metric deltas that decide the per-path defaults, and the cost slopes.
"""

from __future__ import annotations

import copy
import platform
import statistics
import time
from dataclasses import dataclass, replace

import pandas as pd
import torch

from ..data import ImageDataset
from ..device import describe_device, resolve_device
from ..models import build_model, get_kind
from ..numerics import PathModes, apply_numeric_modes, default_modes, get_mode, native_bf16
from ..presets import PRESETS
from ..provenance import machine
from ..training.step import (BatchSource, LossLog, StepSetup, device_flags, make_generator, make_loss_fn, make_optimizer,
                         optimisation_step)


def machine_line(device: torch.device) -> str:
    m = machine()
    return (f"machine: {m['node']} | {m['cpu']} | {torch.get_num_threads()} torch threads | "
            f"device {describe_device(device)} | native bf16: {'yes' if native_bf16(device) else 'no'} | "
            f"torch {torch.__version__} | python {platform.python_version()}")


class PeakMemory:
    """Peak memory (MiB) of what runs inside: CUDA allocations, or the process's peak RSS above its start (Linux VmHWM)."""

    def __init__(self, device: torch.device):
        self.device, self.mib = device, None

    @staticmethod
    def _status(key: str) -> float | None:
        try:
            with open("/proc/self/status") as f:
                return next(float(l.split()[1]) / 1024 for l in f if l.startswith(key + ":"))
        except (OSError, StopIteration):
            return None

    def __enter__(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats(self.device)
            self._base = torch.cuda.memory_allocated(self.device) / 2**20
        else:
            try:  # hand freed heap back first, so that an earlier measurement's pages do not hide this one's
                import ctypes

                ctypes.CDLL("libc.so.6").malloc_trim(0)
            except (OSError, AttributeError):
                pass
            try:  # "5" resets the peak RSS (VmHWM) to the current RSS (Linux >= 4.0)
                with open("/proc/self/clear_refs", "w") as f:
                    f.write("5")
            except OSError:
                pass
            self._base = self._status("VmRSS")
        return self

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            self.mib = torch.cuda.max_memory_allocated(self.device) / 2**20 - self._base
        else:
            peak = self._status("VmHWM")
            self.mib = peak - self._base if peak is not None and self._base is not None else None


def _timed(fn, seconds: float, warmup: int = 1, min_calls: int = 2) -> float:
    """Median seconds per call of fn over ~`seconds` of repeated calls."""
    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    for _ in range(warmup):
        fn()
    sync()
    times, t_end = [], time.perf_counter() + seconds
    while time.perf_counter() < t_end or len(times) < min_calls:
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _random_images(n: int, image_shape: tuple[int, int, int]) -> ImageDataset:
    """n random uint8 images as a data set (speed does not depend on pixel content)."""
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, *image_shape), generator=g, dtype=torch.uint8).numpy()
    return ImageDataset(name="random", split="train", attributes=pd.DataFrame(index=range(n)), image_shape=image_shape,
                        images=images, source="perf")


STEPS_PER_CALL = 10  # training steps per timed call (one device sync a call)


def measure_train(model_name: str, preset_name: str, setup: StepSetup, seconds: float, device: torch.device,
                  batch_size: int | None = None, steps_per_call: int = STEPS_PER_CALL) -> dict:
    """Training images/s of bench train's step (train_step.py) in a step setup.

    Timed in calls of `steps_per_call` steps with one device sync per call, so
    a setup that never syncs per step (on_device) is timed as bench train runs
    it; the eager fp32 baseline reads its loss every step, as bench train did
    before issue 21. Random images stand in for data (1,024, on the device when on_device).
    """
    with device_flags(setup):
        return _measure_train(model_name, preset_name, setup, seconds, device, batch_size, steps_per_call)


def train_steps(model_name: str, preset_name: str, setup: StepSetup, device: torch.device,
                batch_size: int | None = None):
    """bench train's step on random images (1,024, on the device when on_device): (steps(n), batch size).

    steps(n) runs n optimisation steps and reads the losses back once at the end (every step when the
    setup is not on_device, as bench train did before issue 21). Build it inside device_flags(setup).
    """
    preset = PRESETS.get(preset_name)
    torch.manual_seed(0)
    model = build_model(model_name, preset).to(device)
    if get_mode(setup.numeric_mode).channels_last:
        model = model.to(memory_format=torch.channels_last)
    bs = batch_size or preset.train.batch_size
    gen = make_generator(0, device, setup)
    loss_fn = make_loss_fn(model, BatchSource(_random_images(1024, model.image_shape), bs, device, gen, setup),
                           gen, setup, device)
    params = list(model.parameters())
    opt = make_optimizer(params, preset.train.lr, setup)
    ema = copy.deepcopy(model).requires_grad_(False)
    model.train()
    log, state = LossLog(), {"step": 0}

    def steps(n: int) -> None:
        for _ in range(n):
            loss = optimisation_step(loss_fn, params, opt, ema, model, preset.train.ema_decay, preset.train.grad_clip,
                                     state["step"])
            state["step"] += 1
            log.add(state["step"], loss)
            if not setup.on_device:
                log.flush(0)
        log.flush(0)

    return steps, bs


def _measure_train(model_name: str, preset_name: str, setup: StepSetup, seconds: float, device: torch.device,
                   batch_size: int | None, steps_per_call: int) -> dict:
    mem = PeakMemory(device).__enter__()  # model, optimizer, EMA copy, data and activations
    steps, bs = train_steps(model_name, preset_name, setup, device, batch_size)
    t_first = time.perf_counter()
    steps(1)  # the first step (includes compilation when compiling)
    t_first = time.perf_counter() - t_first
    t = _timed(lambda: steps(steps_per_call), seconds)
    mem.__exit__()
    return {"train_images_s": bs * steps_per_call / t, "train_batch": bs, "train_mem_mib": mem.mib,
            "first_step_s": t_first}


def measure_eval(model_name: str, preset_name: str, mode: str, batch_size: int, seconds: float, device: torch.device,
                 T: int = 10) -> dict:
    """Sampling and inversion evaluations/s (batched, T steps) with every eval path in `mode`."""
    preset = PRESETS.get(preset_name)
    torch.manual_seed(0)
    mem = PeakMemory(device).__enter__()  # model and one batch's activations
    model = build_model(model_name, preset).to(device).eval()
    apply_numeric_modes(model, PathModes(decode=mode, invert=mode, encode=mode))
    c, s = model.image_shape[0], model.image_shape[1]
    xb = torch.randn(batch_size, c, s, s, device=device)
    z = model.encode(xb) if model.has_semantic_latent else None
    t_dec = _timed(lambda: model.decode(z, xb, T), seconds)
    mem.__exit__()
    t_inv = _timed(lambda: model.encode_stochastic(xb, T, z), seconds)
    return {"sample_evals_s": batch_size * T / t_dec, "invert_evals_s": batch_size * T / t_inv,
            "eval_batch": batch_size, "eval_mem_mib": mem.mib}


def denoise_rate(model, batch_size: int, seconds: float, device: torch.device, t: int = 500) -> float:
    """Bare denoise evaluations/s of a loaded model as it is (its own numeric mode): batch_size random
    images at timestep t, median over ~`seconds` of calls after one warm-up (scripts/suite_cost.py
    divides its evaluation counts by this)."""
    x = torch.randn(batch_size, *model.image_shape, generator=torch.Generator().manual_seed(0)).to(device)
    steps = torch.full((batch_size,), t, dtype=torch.long, device=device)
    with torch.no_grad():
        z = model.encode(x) if model.has_semantic_latent else None
        return batch_size / _timed(lambda: model.denoise(x, steps, z), seconds)


def _modes_for(device: torch.device, modes: list[str] | None) -> list[str]:
    if modes:
        names = [get_mode(m).name for m in modes]
    else:
        d = default_modes(device)
        names = ["fp32-cl"] + [getattr(d, p) for p in ("train", "decode", "invert", "encode")]
    return ["fp32"] + sorted(set(names) - {"fp32"})


@dataclass(frozen=True)
class Variant:
    label: str  # the row's name
    setup: StepSetup  # how the training step runs
    eval_mode: str | None  # numeric mode of the sampling / inversion measurement; None: not measured


def variants(device: torch.device, modes: list[str] | None, fast: bool, fast_mode: str, compile_: bool,
             compile_mode: str) -> list[Variant]:
    """fp32 (eager, the baseline) first; then each numeric mode as bench train ran before issue 21 (host-side
    draws, loss read every step); then the fast path (train_step: on_device) and its compiled form."""
    rows = [Variant(m, StepSetup(numeric_mode=m), m) for m in _modes_for(device, modes)]
    if fast:
        rows.append(Variant("fast", StepSetup(numeric_mode=fast_mode, on_device=True), fast_mode))
    if compile_:
        base = StepSetup(numeric_mode=fast_mode, on_device=True) if fast else StepSetup()
        rows.append(Variant(("fast" if fast else "fp32") + "+compile", replace(base, compile_mode=compile_mode), None))
    return rows


def run_perf(presets: list[str], models: list[str], batch_size: int, seconds: float, device: str = "auto",
             modes: list[str] | None = None, compile_: bool = False, fast: bool | None = None,
             fast_mode: str = "bf16-cl", compile_mode: str = "default", train_batches: list[int] | None = None,
             eval_: bool = True, steps_per_call: int = STEPS_PER_CALL) -> list[dict]:
    """The table: per preset, model and train batch, each variant's train img/s (and sampling / inversion
    evaluations/s at the first train batch) with its ratio to eager fp32 and its peak memory."""
    dev = resolve_device(device)
    for m in models:  # fail on a misspelt model, preset or mode before minutes of timing, not after
        get_kind(m)
    for p in presets:
        PRESETS.get(p)
    fast = dev.type == "cuda" if fast is None else fast
    rows_of = variants(dev, modes, fast, get_mode(fast_mode).name, compile_, compile_mode)
    print(machine_line(dev))
    print(f"default numeric modes on this device: {default_modes(dev)}")
    if fast:
        print(f"fast = bench train's GPU step: {fast_mode} autocast (fp32 master weights), data/noise/t drawn on the "
              f"device, fused Adam, loss read once per {steps_per_call} steps" + (f"; +compile: torch.compile mode {compile_mode}"
                                                                    if compile_ else ""))
    print(f"{'model':7s} {'preset':7s} {'variant':14s} {'batch':>5s} {'train img/s':>11s} {'x':>5s} {'sample ev/s':>11s} "
          f"{'x':>5s} {'invert ev/s':>11s} {'x':>5s} {'train MiB':>9s} {'eval MiB':>8s}", flush=True)
    rows = []
    fmt_mem = lambda v: f"{v:9.0f}" if v is not None else f"{'n/a':>9s}"
    for p in presets:
        for m in models:
            evals: dict[str, dict] = {}
            for bs in train_batches or [None]:
                ref: dict = {}  # the eager fp32 row at this batch: every ratio's denominator
                for v in rows_of:
                    r = {"model": m, "preset": p, "variant": v.label, "mode": v.setup.numeric_mode}
                    try:
                        r.update(measure_train(m, p, v.setup, seconds, dev, batch_size=bs, steps_per_call=steps_per_call))
                        if eval_ and v.eval_mode is not None and v.label not in evals:
                            evals[v.label] = measure_eval(m, p, v.eval_mode, batch_size, seconds, dev)
                            r.update(evals[v.label])
                    except Exception as e:  # one failed row (out of memory, a compile error) must not lose the table
                        r["error"] = f"{type(e).__name__}: {str(e).strip().splitlines()[0][:160] if str(e).strip() else ''}"
                        rows.append(r)
                        print(f"{m:7s} {p:7s} {v.label:14s} {bs or PRESETS.get(p).train.batch_size:5d} failed: {r['error']}",
                              flush=True)
                        if dev.type == "cuda":
                            torch.cuda.empty_cache()
                        continue
                    ref = r if v is rows_of[0] else ref
                    ref_eval = evals.get(rows_of[0].label, {})
                    ratio = lambda k, base: (f"{r[k] / base[k]:5.2f}" if k in r and k in base else f"{'':5s}")
                    num = lambda k: (f"{r[k]:11.0f}" if k in r else f"{'-':>11s}")
                    rows.append(r)
                    print(f"{m:7s} {p:7s} {v.label:14s} {r['train_batch']:5d} {num('train_images_s')} "
                          f"{ratio('train_images_s', ref)} {num('sample_evals_s')} {ratio('sample_evals_s', ref_eval)} "
                          f"{num('invert_evals_s')} {ratio('invert_evals_s', ref_eval)} "
                          f"{fmt_mem(r['train_mem_mib'])} {fmt_mem(r.get('eval_mem_mib'))}"
                          + (f"  (first step {r['first_step_s']:.0f} s)" if v.setup.compile_mode else ""), flush=True)
    print(f"(x = ratio to eager fp32 at the same batch; batch = training batch (default the preset's); eval batch "
          f"{batch_size}, T = 10, measured at the first training batch; memory: peak above start, "
          f"{'CUDA allocations' if dev.type == 'cuda' else 'process RSS'}; medians over ~{seconds:g} s each)")
    return rows
