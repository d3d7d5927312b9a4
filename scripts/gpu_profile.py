"""What limits bench train's step on a GPU (issue 21, part 1): a batch sweep and a profile.

1. Training images/s of the step (bench perf's measure_train) at several batches, eager fp32 and the
   fast step: if images/s grows in proportion to the batch, the step is bound by per-step overhead
   (kernel launches, Python), not by the GPU's arithmetic.
2. torch.profiler over a few steps at one batch: the top operators by GPU time and by CPU time, and
   the GPU's busy fraction (kernel time / wall time).

    python scripts/gpu_profile.py --device cuda            # about 60 s on an H200
    OMP_NUM_THREADS=1 python scripts/gpu_profile.py --device cpu --preset tiny --batches 8 --seconds 0.3
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from torch.autograd import DeviceType

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from diffae_bench.perf.throughput import machine_line, measure_train, train_steps  # noqa: E402
from diffae_bench.training.step import device_flags, step_setup  # noqa: E402


def profile(preset_name: str, mode: str, batch: int, device: torch.device, steps: int) -> None:
    setup = step_setup(device, mode)
    with device_flags(setup):
        run, _ = train_steps("diffae", preset_name, setup, device, batch)
        run(5)  # warm-up (cudnn.benchmark's choices, allocator)
        acts = [torch.profiler.ProfilerActivity.CPU] + ([torch.profiler.ProfilerActivity.CUDA] if device.type == "cuda" else [])
        with torch.profiler.profile(activities=acts) as prof:
            t0 = time.perf_counter()
            run(steps)  # ends with the loss read-back: the device has finished
            wall = time.perf_counter() - t0
    ka = prof.key_averages()
    # Kernels are the events on the device itself; summing the operators' self times as well would
    # count each kernel twice (the 2026-11-26 run's "60 % of wall" did; its table said 206 ms = 30 %).
    kernels = [e for e in prof.events() if e.device_type == DeviceType.CUDA]
    gpu_us = sum(e.device_time_total for e in kernels)
    n_kernels = len(kernels)
    print(f"\n## profile diffae/{preset_name} {mode} batch {batch}: {steps} steps in {wall * 1e3:.0f} ms "
          f"({wall / steps * 1e3:.1f} ms/step, {batch * steps / wall:.0f} img/s under the profiler); "
          f"GPU kernel time {gpu_us / 1e3:.0f} ms = {gpu_us / 1e6 / wall:.0%} of wall; "
          f"{n_kernels / steps:.0f} kernels per step")
    if device.type == "cuda":
        print(ka.table(sort_by="self_device_time_total", row_limit=18, max_name_column_width=60))
    print(ka.table(sort_by="self_cpu_time_total", row_limit=15, max_name_column_width=60))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--preset", default="small")
    ap.add_argument("--batches", default="64,256,1024")
    ap.add_argument("--modes", default="fp32,bf16-cl")
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--profile-batch", type=int, default=256)
    ap.add_argument("--profile-steps", type=int, default=5)
    a = ap.parse_args()
    device = torch.device(a.device)
    print(machine_line(device))
    print("mode      batch  train img/s  ms/step")
    for mode in a.modes.split(","):
        for b in (int(x) for x in a.batches.split(",")):
            r = measure_train("diffae", a.preset, step_setup(device, mode), a.seconds, device, b)
            print(f"{mode:8s} {b:6d} {r['train_images_s']:12.0f} {b / r['train_images_s'] * 1e3:8.1f}", flush=True)
    for mode in a.modes.split(","):
        profile(a.preset, mode, a.profile_batch, device, a.profile_steps)


if __name__ == "__main__":
    main()
