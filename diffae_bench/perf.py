"""Throughput benchmark (`bench perf`): the project's own speed measurement.

Prints, per preset, model and numeric mode, on this machine: training
images/s (one full optimisation step: forward, backward, Adam, EMA), network
evaluations/s of batched DDIM sampling and inversion (one evaluation = one
image through the UNet once), each as a ratio to eager fp32, and the peak
memory of the measurement. Numbers are whole; the machine is printed above
them. Timings are medians over repeated timed windows after a warm-up, on
random inputs (speed does not depend on pixel content).

Modes (diffae_bench.numerics): by default fp32, fp32-cl and whatever this
device's defaults use; `--modes` names others (bf16 on a CPU without native
bf16 is measured too when asked, and is very slow there). `--compile` adds a
torch.compile'd training row. `bench perf --accuracy` (perf_accuracy.py)
prints the metric deltas that decide the per-path defaults, and the cost slopes.
"""

from __future__ import annotations

import copy
import platform
import statistics
import time

import torch

from .device import describe_device, resolve_device
from .models import build_model, get_kind
from .numerics import PathModes, apply_numeric_modes, autocast, default_modes, get_mode, native_bf16, to_memory_format
from .presets import PRESETS
from .provenance import machine
from .train import ema_update


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


def measure_train(model_name: str, preset_name: str, mode: str, seconds: float, device: torch.device,
                  compile_: bool = False) -> dict:
    """Training images/s as bench train runs a step (optimizer, EMA), in a numeric mode."""
    preset = PRESETS.get(preset_name)
    torch.manual_seed(0)
    mem = PeakMemory(device).__enter__()  # model, optimizer, EMA copy and activations
    model = build_model(model_name, preset).to(device)
    if get_mode(mode).channels_last:
        model = model.to(memory_format=torch.channels_last)
    bs = preset.train.batch_size
    c, s = model.image_shape[0], model.image_shape[1]
    x = to_memory_format(torch.rand(bs, c, s, s, device=device) * 2 - 1, mode)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    ema = copy.deepcopy(model).requires_grad_(False)
    loss_call = torch.compile(model.loss) if compile_ else model.loss
    model.train()

    def step():
        with autocast(mode, device.type):
            loss = loss_call(x).float()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        ema_update(ema, model, 0.999, 1000)

    t_first = time.perf_counter()
    step()  # the first step (includes compilation when compiling)
    t_first = time.perf_counter() - t_first
    t = _timed(step, seconds)
    mem.__exit__()
    return {"train_images_s": bs / t, "train_batch": bs, "train_mem_mib": mem.mib, "first_step_s": t_first}


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


def _modes_for(device: torch.device, modes: list[str] | None) -> list[str]:
    if modes:
        names = [get_mode(m).name for m in modes]
    else:
        d = default_modes(device)
        names = ["fp32-cl"] + [getattr(d, p) for p in ("train", "decode", "invert", "encode")]
    return ["fp32"] + sorted(set(names) - {"fp32"})


def run_perf(presets: list[str], models: list[str], batch_size: int, seconds: float, device: str = "auto",
             modes: list[str] | None = None, compile_: bool = False) -> list[dict]:
    dev = resolve_device(device)
    for m in models:  # fail on a misspelt model, preset or mode before minutes of timing, not after
        get_kind(m)
    for p in presets:
        PRESETS.get(p)
    names = _modes_for(dev, modes)
    print(machine_line(dev))
    print(f"default numeric modes on this device: {default_modes(dev)}")
    print(f"{'model':7s} {'preset':7s} {'mode':12s} {'train img/s':>11s} {'x':>5s} {'sample ev/s':>11s} {'x':>5s} "
          f"{'invert ev/s':>11s} {'x':>5s} {'train MiB':>9s} {'eval MiB':>8s}", flush=True)
    rows = []
    fmt_mem = lambda v: f"{v:9.0f}" if v is not None else f"{'n/a':>9s}"
    for p in presets:
        for m in models:
            ref = None
            variants = [(n, False) for n in names] + ([("fp32", True)] if compile_ else [])
            for name, comp in variants:
                r = {"model": m, "preset": p, "mode": name + ("+compile" if comp else ""),
                     **measure_train(m, p, name, seconds, dev, comp)}
                if not comp:
                    r.update(measure_eval(m, p, name, batch_size, seconds, dev))
                ref = ref or r
                ratio = lambda k: (f"{r[k] / ref[k]:5.2f}" if k in r else f"{'':5s}")
                num = lambda k: (f"{r[k]:11.0f}" if k in r else f"{'-':>11s}")
                rows.append(r)
                print(f"{m:7s} {p:7s} {r['mode']:12s} {num('train_images_s')} {ratio('train_images_s')} "
                      f"{num('sample_evals_s')} {ratio('sample_evals_s')} {num('invert_evals_s')} {ratio('invert_evals_s')} "
                      f"{fmt_mem(r['train_mem_mib'])} {fmt_mem(r.get('eval_mem_mib'))}"
                      + (f"  (first step {r['first_step_s']:.0f} s)" if comp else ""), flush=True)
    print(f"(x = ratio to eager fp32; train batch = preset's; eval batch {batch_size}, T = 10; "
          f"memory: peak above start, {'CUDA allocations' if dev.type == 'cuda' else 'process RSS'}; "
          f"medians over ~{seconds:.0f} s each)")
    return rows
