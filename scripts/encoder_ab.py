"""A/B of semantic-encoder variants at one seed and step budget (issue 15): does the decoder use z?

For each variant (overrides of the preset's EncoderConfig fields), at the same seed:

1. z spread at init: the Diff-AE is built as `bench train` builds it and encodes
   n held-out images; spread = mean over dimensions of the std across images,
   divided by the mean |z|. A code that hardly varies across images gives the
   decoder nothing to use.
2. Stage 1 is trained with diffae_bench.training.train.train_autoencoder; the seed fixes
   the batches and the (t, noise) draws, so every variant sees the same ones.
3. Use of z, with the EMA weights on the same n held-out images: at each t the
   denoising MSE with the image's own z and with another image's z (a fixed
   derangement), same x_t and noise. Gap = L_shuffled / L_own - 1, with a 95 %
   paired bootstrap CI over images. 0 means the decoder ignores z.

    python scripts/encoder_ab.py --preset tiny --dataset shapes --steps 900 --threads 1 \\
        --variant old:res_block=legacy --variant new:res_block=official,head_channels_per_group=none

Overrides: res_block=official|legacy, head_channels_per_group=none|16|..., num_res_blocks=2,
channel_mult=1-2-2. Writes <out>/results.json and prints a markdown table.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from diffae_bench import diffusion as D  # noqa: E402
from diffae_bench.data import load_dataset  # noqa: E402
from diffae_bench.models import get_kind, load_model  # noqa: E402
from diffae_bench.presets import PRESETS  # noqa: E402
from diffae_bench.training.train import TrainOptions, train_autoencoder  # noqa: E402


def parse_variant(spec: str) -> tuple[str, dict]:
    """'name:key=value,key=value' -> (name, EncoderConfig overrides)."""
    name, _, body = spec.partition(":")
    overrides = {}
    for item in filter(None, body.split(",")):
        key, value = item.split("=")
        if key == "channel_mult":
            overrides[key] = tuple(int(v) for v in value.split("-"))
        elif value == "none":
            overrides[key] = None
        elif value.lstrip("-").isdigit():
            overrides[key] = int(value)
        else:
            overrides[key] = value
    return name, overrides


def z_spread(z: torch.Tensor) -> float:
    """Mean over dimensions of the std across images, over the mean |z|."""
    return float(z.std(0).mean() / z.abs().mean())


def derangement(n: int, seed: int) -> torch.Tensor:
    """A permutation with no fixed point: each image gets another image's code."""
    p = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    out = torch.empty_like(p)
    out[p] = p.roll(1)
    return out


def bootstrap_ratio_ci(num: np.ndarray, den: np.ndarray, seed: int, reps: int = 2000) -> tuple[float, float]:
    """95 % percentile CI of mean(num) / mean(den) - 1, resampling images in pairs."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(num), size=(reps, len(num)))
    stats = num[idx].mean(1) / den[idx].mean(1) - 1
    return float(np.percentile(stats, 2.5)), float(np.percentile(stats, 97.5))


@torch.no_grad()
def z_usage(model, x0: torch.Tensor, ts: list[int], seed: int, batch: int = 128) -> dict:
    """Per t: own-z and shuffled-z denoising MSE per image, and the relative gap with its CI."""
    alpha_bar = torch.from_numpy(D.alphas_cumprod(D.linear_betas()))
    z = torch.cat([model.encoder(x0[i:i + batch]) for i in range(0, len(x0), batch)])
    z_shuf = z[derangement(len(z), seed).to(z.device)]
    out = {}
    for t_val in ts:
        noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(seed + t_val)).to(x0.device)
        t = torch.full((len(x0),), t_val, dtype=torch.long, device=x0.device)
        x_t = D.q_sample(x0, t, noise, alpha_bar)
        own, shuf = [], []
        for i in range(0, len(x0), batch):
            sl = slice(i, i + batch)
            for code, acc in ((z, own), (z_shuf, shuf)):
                eps = model.unet(x_t[sl], t[sl], code[sl])
                acc.append(F.mse_loss(eps, noise[sl], reduction="none").flatten(1).mean(1))
        own_l, shuf_l = torch.cat(own).cpu().numpy(), torch.cat(shuf).cpu().numpy()
        lo, hi = bootstrap_ratio_ci(shuf_l, own_l, seed + t_val)
        out[t_val] = {"loss_own": float(own_l.mean()), "loss_shuffled": float(shuf_l.mean()),
                      "gap": float(shuf_l.mean() / own_l.mean() - 1), "ci95": [lo, hi]}
    return out


def run_variant(name: str, overrides: dict, a, x_eval: torch.Tensor) -> dict:
    base = PRESETS.get(a.preset)
    preset_name = f"{a.preset}-ab-{name}"
    preset = dataclasses.replace(base, name=preset_name, encoder=dataclasses.replace(base.encoder, **overrides))
    PRESETS.add(preset_name, preset)
    kind = get_kind("diffae")
    torch.manual_seed(a.seed)  # the init train_autoencoder will draw
    sized = preset.for_data(x_eval.shape[1], x_eval.shape[-1])
    model = kind.cls(kind.from_preset(sized)).eval()
    with torch.no_grad():
        z0 = model.encoder(x_eval)
    out_dir = Path(a.out) / name
    summary = train_autoencoder(TrainOptions(
        model="diffae", preset=preset_name, dataset=a.dataset, image_size=x_eval.shape[-1], steps=a.steps, seed=a.seed,
        out=str(out_dir),
        ckpt_every=a.steps, device=a.device, progress=False))
    trained = load_model(out_dir, a.device)
    x_dev = x_eval.to(trained.device)
    return {"overrides": {k: list(v) if isinstance(v, tuple) else v for k, v in overrides.items()},
            "encoder_params": sum(p.numel() for p in model.encoder.parameters()),
            "z_spread_init": z_spread(z0), "z_spread_trained": z_spread(trained.encode(x_dev)),
            "train_images_per_s": summary["images_per_s"], "loss_ema": summary["loss_ema"],
            "z_usage": z_usage(trained, x_dev, a.t, a.seed)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--dataset", default="shapes")
    ap.add_argument("--image-size", type=int, default=None, help="train and test resolution (default: the preset's)")
    ap.add_argument("--steps", type=int, default=900)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n-eval", type=int, default=256, help="held-out (test split) images for the measurements")
    ap.add_argument("--t", type=lambda s: [int(v) for v in s.split(",")], default=[100, 300, 500, 700])
    ap.add_argument("--variant", action="append", required=True, help="name:key=value,... (EncoderConfig overrides)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (1 = a single-threaded img/s figure)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", default="runs/encoder_ab")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    size = a.image_size or PRESETS.get(a.preset).image_size
    x_eval = load_dataset(a.dataset, "test", image_size=size).tensor(np.arange(a.n_eval))
    results = {}
    for spec in a.variant:
        name, overrides = parse_variant(spec)
        results[name] = run_variant(name, overrides, a, x_eval)
        print(json.dumps({name: results[name]}), flush=True)
    Path(a.out).mkdir(parents=True, exist_ok=True)
    meta = {k: v for k, v in vars(a).items() if k != "variant"}
    (Path(a.out) / "results.json").write_text(json.dumps({"args": meta, "variants": results}, indent=2))
    print(f"\n{a.preset}/{a.dataset} at {size} px, {a.steps} steps, seed {a.seed}, {a.n_eval} test images "
          f"(gap = L(shuffled z) / L(own z) - 1, 95 % CI)\n")
    print("| variant | enc params | z spread init | z spread trained | " + " | ".join(f"gap t={t}" for t in a.t) + " | img/s |")
    print("|---" * (5 + len(a.t)) + "|")
    for name, r in results.items():
        gaps = " | ".join(f"{u['gap']:+.3f} [{u['ci95'][0]:+.3f}, {u['ci95'][1]:+.3f}]" for u in r["z_usage"].values())
        ips = f"{r['train_images_per_s']:.0f}" if r["train_images_per_s"] else "-"
        print(f"| {name} | {r['encoder_params']:,} | {r['z_spread_init']:.3f} | {r['z_spread_trained']:.3f} | {gaps} | {ips} |")


if __name__ == "__main__":
    main()
