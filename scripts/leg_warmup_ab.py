"""A tiny A/B of `bench train --warmup-steps` at a new leg's start (results/legs/2026-11-27_h200_two-legs).

The tiny DDIM on shapes at 16 px: a base run, then two legs from its EMA weights (fresh Adam), one without
and one with an lr warm-up; each run's x0_diagnostic.jsonl is the comparison. One thread, ~5 min here.

    python scripts/leg_warmup_ab.py OUT_DIR [--base-steps 1500] [--leg-steps 400] [--warmup 100]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from diffae_bench.training.train import TrainOptions, train_autoencoder  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--base-steps", type=int, default=1500)
    ap.add_argument("--leg-steps", type=int, default=400)
    ap.add_argument("--warmup", type=int, default=100)
    a = ap.parse_args()
    torch.set_num_threads(1)
    base = dict(model="ddim", preset="tiny", dataset="shapes", image_size=16, batch_size=32, seed=0, device="cpu",
                progress=False, train_limit=4096)
    train_autoencoder(TrainOptions(**base, steps=a.base_steps, out=str(a.out / "base"), ckpt_every=a.base_steps,
                                   diag_every=a.base_steps // 3))
    for name, warm in (("leg-nowarm", 0), (f"leg-warm{a.warmup}", a.warmup)):
        train_autoencoder(TrainOptions(**base, steps=a.leg_steps, out=str(a.out / name), ckpt_every=a.leg_steps,
                                       diag_every=50, init_from=str(a.out / "base"), warmup_steps=warm))
    print(f"x0 logs: {a.out}/*/x0_diagnostic.jsonl")


if __name__ == "__main__":
    main()
