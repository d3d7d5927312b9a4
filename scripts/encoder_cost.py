"""Training throughput of Diff-AE variants that differ only in the semantic encoder (issue 15).

Single-threaded, interleaved rounds (every variant times a few steps per round), so
a shared machine's load hits all variants alike; report the median per variant.
Full Adam steps of the stage-1 loss at the preset's batch size, as `bench train` runs them.

    python scripts/encoder_cost.py --preset small --rounds 3 --steps 2 \\
        --variant 1blk:res_block=official --variant 2blk:res_block=official,num_res_blocks=2
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from encoder_ab import parse_variant  # noqa: E402
from diffae_bench.models import get_kind  # noqa: E402
from diffae_bench.presets import PRESETS  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="small")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=2, help="timed steps per variant per round")
    ap.add_argument("--variant", action="append", required=True)
    a = ap.parse_args()
    torch.set_num_threads(1)
    preset = PRESETS.get(a.preset).for_data(3, PRESETS.get(a.preset).image_size)
    bs, kind = preset.train.batch_size, get_kind("diffae")
    runs = {}
    for spec in a.variant:
        name, overrides = parse_variant(spec)
        torch.manual_seed(0)
        model = kind.cls(kind.from_preset(dataclasses.replace(preset, encoder=dataclasses.replace(preset.encoder, **overrides))))
        opt = torch.optim.Adam([p for n, p in model.named_parameters() if not n.startswith("prior.")], lr=1e-4)
        runs[name] = (model.train(), opt, [])
    x = torch.rand(bs, 3, preset.image_size, preset.image_size) * 2 - 1
    gen = torch.Generator().manual_seed(0)

    def step(model, opt):
        loss = model.loss(x, gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for model, opt, _ in runs.values():  # warm-up
        step(model, opt)
    for _ in range(a.rounds):
        for model, opt, times in runs.values():
            t0 = time.perf_counter()
            for _ in range(a.steps):
                step(model, opt)
            times.append(a.steps * bs / (time.perf_counter() - t0))
    print(f"{a.preset}, batch {bs}, 1 thread, {a.rounds} rounds x {a.steps} steps (median train img/s)")
    for name, (model, _, times) in runs.items():
        enc = sum(p.numel() for p in model.encoder.parameters())
        print(f"{name}: encoder {enc:,} params, {statistics.median(times):.1f} img/s (rounds: "
              + ", ".join(f"{t:.1f}" for t in times) + ")")


if __name__ == "__main__":
    main()
