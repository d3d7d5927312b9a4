"""The high-t x0 diagnostic of a training leg as a Markdown table (issue 21).

Reads `bench train`'s x0_diagnostic.jsonl (diffae_bench/training/x0_diagnostic.py: mean |x0_hat - x0| in [0, 1]
on 16 fixed test images noised at each t; with another image's code as a control where the model has
one), after optional labelled starting rows (the same check run on the models the leg is compared
with, each line with a "label"). results/legs/*/README.md quote it; tests/test_legs_table.py checks
that they do.

    python scripts/x0_table.py results/legs/<leg>/x0_diagnostic.jsonl --start results/legs/<leg>/x0_start.jsonl \
        --images-before 133632
    python scripts/x0_table.py LEG3.jsonl LEG4.jsonl --images-before 421824 --first-leg 3   # consecutive legs
    python scripts/x0_table.py --rewrite results/legs/<leg>/README.md   # every <!-- x0-table: LOGS | START | BEFORE -->
    python scripts/x0_table.py --measure ddim-small-shapes --label "eps reference" --images-seen-total 164992 >> START
    python scripts/x0_table.py --measure mean-image --dataset shapes --label "x0 = the train split's mean image" >> START

--measure runs the same check (X0Diagnostic, EMA weights, CPU) once on a finished model (run directory,
export or reference name) and prints one labelled line. `mean-image` is the oracle that knows only the
data's mean image: its x0_hat is that image at every t, so its row is the floor a model that has learnt
nothing about the image beats.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MEAN_IMAGE = "mean-image"  # --measure's oracle (see the module doc)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def table(log: Path | list[Path], start: Path | None = None, images_before: int = 0, first_leg: int | None = None) -> str:
    """Rows: each starting model (by label), then each check of the leg (images this leg and over all legs).

    Several logs are consecutive legs of one model: each leg's images before it are the previous leg's
    total (its last row is logged at its last step), and a first column names the leg (from first_leg).
    """
    logs = [Path(p) for p in log] if isinstance(log, (list, tuple)) else [Path(log)]
    first = read_jsonl(start) if start else []
    legs = [read_jsonl(p) for p in logs]
    everything = first + [r for rows in legs for r in rows]
    ts = list(everything[0]["x0_mae"])
    other = any("x0_mae_other_z" in r for r in everything)
    leg_col = len(logs) > 1 or first_leg is not None
    head = (["leg"] if leg_col else []) + ["images (this leg)", "images in all"] + [f"t = {t}" for t in ts]
    head += [f"t = {t}, another image's z" for t in ts] if other else []
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def values(r: dict) -> list[str]:
        cells = [f"{r['x0_mae'][t]:.3f}" for t in ts]
        if other:
            cells += [f"{r['x0_mae_other_z'][t]:.3f}" if "x0_mae_other_z" in r else "-" for t in ts]
        return cells

    for r in first:
        seen = r.get("images_seen_total")
        lines.append("| " + " | ".join((["-"] if leg_col else []) + [r["label"], f"{seen:,}" if seen else "-"]
                                       + values(r)) + " |")
    before = images_before
    for i, rows in enumerate(legs):
        for r in rows:  # every diag_every steps, and at the leg's last step
            lines.append("| " + " | ".join(([str((first_leg or 1) + i)] if leg_col else [])
                                           + [f"{r['images_seen']:,}", f"{before + r['images_seen']:,}"]
                                           + values(r)) + " |")
        before += rows[-1]["images_seen"]
    return "\n".join(lines)


def render(args: str) -> str:
    """The table a block's comment names: LOG[,LOG...] | START or - | IMAGES_BEFORE [| FIRST_LEG], paths from the root."""
    from diffae_bench.reporting.page_blocks import arguments  # the suite only where a page is remade

    log, start, before, *first_leg = arguments(args)
    return table([ROOT / p.strip() for p in log.split(",")], None if start == "-" else ROOT / start, int(before),
                 int(first_leg[0]) if first_leg else None)


def measure(spec: str, label: str, dataset: str | None = None, images_seen_total: int | None = None) -> dict:
    """One labelled x0-diagnostic line for a finished model, or for the mean-image oracle (spec MEAN_IMAGE)."""
    sys.path.insert(0, str(ROOT))
    import torch

    from diffae_bench.data import load_dataset
    from diffae_bench.training.x0_diagnostic import X0Diagnostic

    cpu = torch.device("cpu")
    if spec == MEAN_IMAGE:
        if dataset is None:
            raise SystemExit("--measure mean-image needs --dataset")
        model, size = MeanImageOracle(load_dataset(dataset, "train", image_size=32).tensor().mean(0, keepdim=True)), 32
    else:
        from diffae_bench.harness.runner import load_model_spec

        lm = load_model_spec(spec, cpu)
        model, size = lm.model, lm.model.image_shape[1]
        dataset = dataset or lm.info["train"].get("dataset")
    rec = X0Diagnostic(dataset, None, size, None, cpu)(model, step=0, images_seen=0)
    return {"label": label, **({"images_seen_total": images_seen_total} if images_seen_total is not None else {}), **rec}


class MeanImageOracle:
    """eps implied by x0 = the data's mean image at every t: (x_t - sqrt(a_t) mean) / sqrt(1 - a_t)."""

    has_semantic_latent = False

    def __init__(self, mean_image):
        self.mean_image = mean_image

    def denoise(self, x_t, t, z):
        from diffae_bench import diffusion as D

        ab = D.image_alpha_bar(x_t.device)[t].view(-1, 1, 1, 1).to(x_t.dtype)
        return D.eps_from_x0(x_t, self.mean_image, ab)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("log", type=Path, nargs="*", help="the leg's x0_diagnostic.jsonl (several: consecutive legs)")
    ap.add_argument("--rewrite", type=Path, action="append", default=[], help="regenerate a page's x0-table blocks")
    ap.add_argument("--start", type=Path, default=None, help="labelled rows of the models it is compared with")
    ap.add_argument("--images-before", type=int, default=0, help="images the model saw in the legs before this one")
    ap.add_argument("--first-leg", type=int, default=None, help="number of the first log's leg (adds a leg column)")
    ap.add_argument("--measure", default=None, help=f"run the check once on a model, or on '{MEAN_IMAGE}'; print a line")
    ap.add_argument("--label", default=None, help="--measure: the row's label (default: the model)")
    ap.add_argument("--dataset", default=None, help="--measure: the data set (default: the model's)")
    ap.add_argument("--images-seen-total", type=int, default=None, help="--measure: the model's images seen")
    a = ap.parse_args()
    if a.measure:
        print(json.dumps(measure(a.measure, a.label or a.measure, a.dataset, a.images_seen_total)))
        return
    if a.rewrite:
        sys.path.insert(0, str(ROOT))
        from diffae_bench.reporting import page_blocks

        for page in a.rewrite:
            print(f"{page}: {page_blocks.rewrite(page, 'x0-table', render)} table(s) regenerated")
        return
    if not a.log:
        ap.error("give the leg's x0_diagnostic.jsonl, or --rewrite PAGE")
    print(table(a.log, a.start, a.images_before, a.first_leg))


if __name__ == "__main__":
    main()
