"""Per-image reconstruction scores behind a `reconstruction` record's mean (a diagnostic, issue 21).

A record keeps the mean SSIM / MSE over its test images and a bootstrap CI; this script keeps each
image's score, so a mean that moved can be read as "every image a little" or "a few images a lot".
It asks the suite for the decodes the task makes (EvalContext.reconstruction: the same images, per-image
noise seeds, numeric mode and model), so its mean is the record's (tests/test_recon_per_image.py checks
the committed files against their records). With the task's --cache-dir it may re-use the task's
decodes; where any part of the cache key differs (harness/cache.py: the suite's sources, libraries,
CPU kernels, threads, weight files), it recomputes them (100 images at T = 100: minutes on a CPU). The scores are the task's own
pure core (tasks/reconstruction.score_reconstruction, without LPIPS).

    python scripts/recon_per_image.py compute --model <run or reference> --dataset shapes --T 100 \
        --cache-dir <the task's cache> --out per_image.json [--grid worst.png]
    python scripts/recon_per_image.py table A.json B.json ...     # a Markdown table, one row per file
    python scripts/recon_per_image.py rewrite PAGE.md              # every <!-- recon-per-image: A | B --> block

tests/test_recon_per_image.py checks that the pages quoting the table quote this script's output.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

GRID_WORST = 6  # default --grid-worst: images with the lowest SSIM in the grid, then as many around the median
# An inversion that came back as another image: the v DDIM on shapes flips a shape's colour (yellow to
# purple, blue to green) and scores 0.55-0.86; every other image of the four DDIMs on the legs page
# scores >= 0.91 (their per-image files). The count separates "a few images lost" from "every image a little".
FAILED_SSIM = 0.9


def compute(a: argparse.Namespace) -> None:
    import torch

    from diffae_bench.device import resolve_device
    from diffae_bench.figures import save_image_rows
    from diffae_bench.harness.cache import Cache
    from diffae_bench.harness.context import EvalContext
    from diffae_bench.harness.runner import load_model_spec
    from diffae_bench.metrics import weights as W
    from diffae_bench.numerics import apply_numeric_modes, parse_modes, pinned_threads
    from diffae_bench.tasks.reconstruction import ReconstructionConfig, score_reconstruction

    n_wanted = a.n_images or ReconstructionConfig().n_images
    # Offline: this script scores without LPIPS, so it never fetches weights.
    with W.using(offline=True, paths={"alexnet": None, "inception": None}, progress=False), pinned_threads(a.threads):
        device = resolve_device("cpu")
        modes = parse_modes(a.numeric_mode, device)
        lm = load_model_spec(a.model, device)
        apply_numeric_modes(lm.model, modes)
        ctx = EvalContext(model=lm.model, dataset_name=a.dataset, seed=a.seed, cache=Cache(a.cache_dir),
                          progress=False, numeric_mode=modes.describe())
        n = ctx.n_images("test", n_wanted)
        x = ctx.images("test", n)
        rec = ctx.reconstruction("test", n, a.T, "inferred")
        scores = score_reconstruction(x, rec)
    out = {"label": a.label or lm.label, "model": lm.label, "checkpoint_sha256": lm.info["checkpoint_sha256"],
           "dataset": a.dataset, "split": "test", "T": a.T, "xT": "inferred", "seed": a.seed, "numeric_mode": modes.describe(), "n": n,
           "cache": {"hits": ctx.cache.hits, "misses": ctx.cache.misses},
           "ssim": [round(float(v), 6) for v in scores["ssim"]], "mse": [float(f"{v:.6g}") for v in scores["mse"]]}
    Path(a.out).write_text(json.dumps(out) + "\n")
    print(table([Path(a.out)]))
    if a.grid:
        order = np.argsort(scores["ssim"], kind="stable")
        k = a.grid_worst
        mid = n // 2 - k // 2
        idx = torch.as_tensor(np.concatenate([order[:k], order[mid:mid + k]]))
        err = ((rec[idx] - x[idx]).abs() * 10 - 1).clamp(-1, 1)  # |error| x 10 ([-1, 1] units), black = exact
        save_image_rows(Path(a.grid), [x[idx], rec[idx], err],
                        ["input", f"T={a.T} inferred", "|error| x 10"])
        print(f"grid: {a.grid} (the {k} lowest-SSIM images, then {k} around the median)")


def table(paths: list[Path]) -> str:
    """One row per per-image file: the mean (as the record reports it) and the distribution behind it."""
    head = ["model", "T", "n", "SSIM mean", "SSIM median", "SSIM 5th pct", "SSIM min", "MSE mean", "MSE median",
            "MSE max", f"SSIM < {FAILED_SSIM}", "lowest-SSIM images"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for p in paths:
        d = json.loads(Path(p).read_text())
        s, m = np.asarray(d["ssim"]), np.asarray(d["mse"])
        worst = ", ".join(str(i) for i in np.argsort(s, kind="stable")[:3])
        lines.append(f"| {d.get('label', d['model'])} | {d['T']} | {d['n']} | {s.mean():.3f} | {np.median(s):.3f} | "
                     f"{np.percentile(s, 5):.3f} | {s.min():.3f} | {m.mean():.2e} | {np.median(m):.2e} | "
                     f"{m.max():.2e} | {int((s < FAILED_SSIM).sum())} | {worst} |")
    return "\n".join(lines)


def rewrite(page: Path) -> int:
    """Regenerate every recon-per-image block of a page from the files its comment names (from the repository root)."""
    from diffae_bench.reporting import page_blocks

    return page_blocks.rewrite(page, "recon-per-image", lambda args: table([ROOT / f for f in page_blocks.arguments(args)]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("compute", help="per-image SSIM and MSE of one model's reconstructions")
    c.add_argument("--model", required=True, help="run directory, export or committed reference name")
    c.add_argument("--label", default=None, help="the model's name in the table (default: its folder's)")
    c.add_argument("--dataset", default="shapes")
    c.add_argument("--T", type=int, default=100, help="DDIM steps for inversion and decoding")
    c.add_argument("--n-images", type=int, default=None, help="default: the task's (ReconstructionConfig.n_images)")
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--numeric-mode", default="fp32")
    c.add_argument("--threads", type=int, default=None)
    c.add_argument("--cache-dir", required=True, help="a cache folder (the task's: its decodes may be re-used)")
    c.add_argument("--out", required=True, help="JSON with each image's scores")
    c.add_argument("--grid", default=None, help="PNG of the lowest-SSIM and median images")
    c.add_argument("--grid-worst", type=int, default=GRID_WORST, help="lowest-SSIM images in the grid (and as many around the median)")
    t = sub.add_parser("table", help="Markdown table of per-image files")
    t.add_argument("files", nargs="+")
    r = sub.add_parser("rewrite", help="regenerate a page's recon-per-image blocks")
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
