"""Which codes the DMZ-style decoder decodes well: a diagnostic of sample_fid's "+autoencoding" row (issue 21).

On shapes the v DMZ-style models decode real test codes worse than Bernoulli(0.5) bits (fd_cnn 26.8
against 12 at 256,000 images). The decoder is trained on relaxed Bernoulli samples of the encoder's
logits (PROTOCOL: Gumbel-softmax, tau = 1) and evaluated on hard bits. This script decodes n test
images' codes in several forms with the same per-image x_T ~ N(0, I) (EvalContext.noise, the stream
of the autoencoding row) and scores each decode set with sample_fid's fd_cnn against n training images:

  bernoulli   i.i.d. fair bits (the prior row's kind of code; its own draw, so not the record's samples)
  hard        encode() of the test images: the autoencoding row's codes
  hard_own    hard bits with the logit BatchNorm's statistics refitted to these images' logits (models
              with logit_norm="batch"): the EMA encoder is normalised by the ONLINE encoder's running
              statistics (training/step.ema_update copies buffers), so its thresholds may be off
  shuffled    the hard bits, each bit permuted across images: per-bit frequencies kept, joint structure gone
  relaxed     one relaxed Bernoulli sample (tau = 1) of the test logits: what the decoder saw in training
  soft        sigmoid(logits): the probe's representation

    python scripts/dmz_codes.py compute --model RUN_OR_REFERENCE --dataset shapes --out codes.json [--grid codes.png]
    python scripts/dmz_codes.py table A.json B.json ...     # a Markdown table, one row per file
    python scripts/dmz_codes.py rewrite PAGE.md              # every <!-- dmz-codes: A | B --> block

fd_cnn is biased upward at small n: only rows of one n compare. Not a task: PROTOCOL evaluates hard bits,
and so does the suite; this only explains that row.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CODE_SETS = ("bernoulli", "hard", "hard_own", "shuffled", "relaxed", "soft")


def shuffle_bits(codes: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Each column (bit) permuted across rows (images) independently: per-bit frequencies kept exactly."""
    n = codes.shape[0]
    return torch.stack([codes[torch.randperm(n, generator=generator), j] for j in range(codes.shape[1])], 1)


def own_stats_logits(raw: torch.Tensor, bn: torch.nn.BatchNorm1d) -> torch.Tensor:
    """bn applied with the statistics of `raw` itself (biased variance, as BatchNorm1d in training mode)."""
    mean, var = raw.mean(0), raw.var(0, unbiased=False)
    return (raw - mean) / torch.sqrt(var + bn.eps) * bn.weight + bn.bias


def code_sets(model, x: torch.Tensor, generator: torch.Generator) -> tuple[dict[str, torch.Tensor], dict]:
    """The codes of CODE_SETS for images x (a DMZ-style model in eval mode), and BatchNorm facts where it has one."""
    from diffae_bench.baselines.dmz import relaxed_bernoulli

    with torch.no_grad():
        logits = model.logits(x)
        hard = (logits > 0).to(x.dtype)
        sets = {"bernoulli": torch.bernoulli(torch.full_like(hard, 0.5), generator=generator), "hard": hard}
        facts: dict = {"logit_norm": "none"}
        bn = getattr(model, "logit_norm", None)
        if bn is not None:
            raw = model.encoder(x)
            own = own_stats_logits(raw, bn)
            sets["hard_own"] = (own > 0).to(x.dtype)
            shift = (raw.mean(0) - bn.running_mean).abs() / raw.std(0)
            facts = {"logit_norm": "batch", "median_mean_shift_over_std": float(shift.median()),
                     "bits_differing_from_hard_own": float((sets["hard_own"] != hard).float().mean())}
        sets["shuffled"] = shuffle_bits(hard, generator)
        sets["relaxed"] = relaxed_bernoulli(logits, model.cfg.tau, generator)
        sets["soft"] = torch.sigmoid(logits)
    return sets, facts


def compute(a: argparse.Namespace) -> None:
    from diffae_bench.device import resolve_device
    from diffae_bench.figures import save_image_rows
    from diffae_bench.harness.cache import Cache
    from diffae_bench.harness.context import EvalContext
    from diffae_bench.harness.runner import load_model_spec
    from diffae_bench.harness.task import TaskResult
    from diffae_bench.metrics import weights as W
    from diffae_bench.metrics.frechet import FeatureNetConfig, extract, feature_spaces, features_distance
    from diffae_bench.metrics.image import corner_means
    from diffae_bench.numerics import pinned_threads

    with W.using(offline=True, paths={"alexnet": None, "inception": None}, progress=False), pinned_threads(a.threads):
        lm = load_model_spec(a.model, resolve_device("cpu"))
        if lm.model.kind != "dmz":
            raise SystemExit(f"error: {a.model} is a {lm.model.kind} model; this diagnostic reads DMZ-style codes")
        ctx = EvalContext(model=lm.model, dataset_name=a.dataset, data_root=a.data_root, seed=a.seed,
                          cache=Cache(a.cache_dir), progress=False, numeric_mode="fp32")
        n = ctx.n_images("test", a.n)
        space = feature_spaces(ctx, FeatureNetConfig(), TaskResult(), inception=False)[0]
        real = ctx.real_features(space, "train", n)
        real_corner = corner_means(ctx.images("train", n)).mean().item()
        x = ctx.images("test", n)
        sets, facts = code_sets(lm.model, x, torch.Generator().manual_seed(a.seed + 1))
        x_T = ctx.noise(n, "recon/test")  # the autoencoding row's noise
        rows, grid = {}, [x[:12]]
        for name, z in sets.items():
            images = ctx.decode(z, x_T, a.T, desc=name)
            rows[name] = {"fd_cnn": features_distance(extract(space, images, ctx.batch_size), real),
                          "corner_gap": abs(corner_means(images).mean().item() - real_corner),
                          "mean_code": float(z.mean())}
            grid.append(images[:12])
            print(f"{name:10s} fd_cnn {rows[name]['fd_cnn']:8.2f}", flush=True)
    meta = lm.model.train_meta if hasattr(lm.model, "train_meta") else {}
    out = {"label": a.label or lm.label, "model": lm.label, "checkpoint_sha256": lm.info["checkpoint_sha256"],
           "step": (meta or {}).get("step"), "images_seen": (meta or {}).get("images_seen"),
           "dataset": a.dataset, "n": n, "T": a.T, "seed": a.seed, "bn": facts, "rows": rows}
    Path(a.out).write_text(json.dumps(out, indent=1) + "\n")
    print(table([Path(a.out)]))
    if a.grid:
        save_image_rows(Path(a.grid), grid, ["test images", *sets])


def table(paths: list[Path]) -> str:
    """One row per file: fd_cnn of each code set (the same n and T within a file), and the BatchNorm facts."""
    head = ["model", "n", "T", *CODE_SETS, "bits differing (hard vs hard_own)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for p in paths:
        d = json.loads(Path(p).read_text())
        cells = [f"{d['rows'][c]['fd_cnn']:.1f}" if c in d["rows"] else "-" for c in CODE_SETS]
        differ = d["bn"].get("bits_differing_from_hard_own")
        lines.append(f"| {d['label']} | {d['n']} | {d['T']} | " + " | ".join(cells)
                     + f" | {'-' if differ is None else f'{100 * differ:.1f} %'} |")
    return "\n".join(lines)


def rewrite(page: Path) -> int:
    """Regenerate every dmz-codes block of a page from the files its comment names (from the repository root)."""
    from diffae_bench.reporting import page_blocks

    return page_blocks.rewrite(page, "dmz-codes", lambda args: table([ROOT / f for f in page_blocks.arguments(args)]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("compute", help="fd_cnn of one DMZ-style model's decodes of each code set")
    c.add_argument("--model", required=True, help="run directory, export or committed reference name")
    c.add_argument("--label", default=None, help="the model's name in the table (default: its folder's)")
    c.add_argument("--dataset", default="shapes")
    c.add_argument("--data-root", default=None)
    c.add_argument("--n", type=int, default=500, help="test codes decoded, and training images (sample_fid's n)")
    c.add_argument("--T", type=int, default=20, help="DDIM steps of the decoder")
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--threads", type=int, default=None)
    c.add_argument("--cache-dir", required=True, help="a cache folder (images, features, the fd_cnn network)")
    c.add_argument("--out", required=True)
    c.add_argument("--grid", default=None, help="PNG: 12 test images and their decodes from each code set")
    t = sub.add_parser("table", help="Markdown table of result files")
    t.add_argument("files", nargs="+")
    r = sub.add_parser("rewrite", help="regenerate a page's dmz-codes blocks")
    r.add_argument("page", type=Path)
    a = ap.parse_args()
    if a.cmd == "compute":
        compute(a)
    elif a.cmd == "rewrite":
        print(f"{a.page}: {rewrite(a.page)} table(s) regenerated")
    else:
        print(table([Path(p) for p in a.files]))


if __name__ == "__main__":
    main()
