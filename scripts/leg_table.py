"""One model's issue-21 criteria metrics, side by side across versions of it (e.g. training legs).

Each column is a label and a folder of records (searched recursively); the rows, chosen by the
records' model kind, are the metrics the issue-21 goals read (results/criteria.md) plus a few
neighbours, each with its 95 % CI. It prints a Markdown table; results/legs/*/README.md quote it,
and tests/test_legs_table.py checks that they do.

    python scripts/leg_table.py diffae-small-mnist \
        "committed=results/records/mnist" "leg 1=results/legs/2026-11-27_cpu_diffae-small-mnist/records/leg1" ...
    python scripts/leg_table.py --rewrite results/legs/<page>/README.md    # every block, from its comment
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from diffae_bench.harness.records import record_rows  # noqa: E402
from diffae_bench.reporting import page_blocks  # noqa: E402
from diffae_bench.reporting.tables import records_under  # noqa: E402

# (task, metric, what it is for) by model kind: the metrics the issue-21 goals and the replacement rule
# (results/legs pages) read for that kind, then context
ROWS = {
    "diffae": (
        ("reconstruction", "ssim/T=100/xT=random", "F3: >= 0.5"),
        ("reconstruction", "ssim/T=20/xT=inferred", "F2: Diff-AE side (vs DDIM's SSIM at T = 100)"),
        ("reconstruction", "ssim/T=10/xT=inferred", ""),
        ("reconstruction", "ssim/T=100/xT=inferred", ""),
        ("z_usage", "gap/t=700", "z used at t = 700: CI excludes 0"),
        ("z_usage", "gap/t=900", ""),
        ("z_usage", "mean_gap", ""),
        ("linear_probe", "mean_auroc/rep=z_sem", "F4: z_sem side (vs DDIM's inverted-x_T probe)"),
        ("sample_fid", "fd_cnn/T=20/z=prior", "samples (main table)"),
        ("sample_fid", "fd_cnn/T=100/z=prior", "samples"),
        ("sample_fid", "corner_gap/T=100/z=prior", "samples' background vs the data's (shapes goal: <= 0.05)"),
        ("sample_fid", "fd_cnn_floor", "real vs real at this n"),
    ),
    "ddim": (
        ("reconstruction", "ssim/T=100/xT=inferred", "F2: DDIM side (vs Diff-AE's SSIM at T = 20)"),
        ("reconstruction", "ssim/T=20/xT=inferred", ""),
        ("linear_probe", "mean_auroc/rep=x_T", "F4: DDIM side (inverted x_T)"),
        ("sample_fid", "fd_cnn/T=20/z=prior", "samples (main table)"),
        ("sample_fid", "fd_cnn/T=100/z=prior", "samples: within 10x of the floor (shapes goal)"),
        ("sample_fid", "corner_gap/T=100/z=prior", "samples' background vs the data's"),
        ("sample_fid", "fd_cnn_floor", "real vs real at this n"),
        ("fake_detection", "auroc/T=50", "<= 0.9 (shapes goal)"),
    ),
    "dmz": (
        ("linear_probe", "mean_auroc/rep=hard", "hard-bit probe: >= 0.9 (shapes goal)"),
        ("linear_probe", "mean_auroc/rep=soft", ""),
        ("reconstruction", "ssim/T=100/xT=random", "the code alone"),
        ("reconstruction", "ssim/T=20/xT=inferred", ""),
        ("z_usage", "gap/t=700", "z used at t = 700: CI above 0"),
        ("z_usage", "gap/t=300", ""),
        ("z_usage", "mean_gap", ""),
        ("sample_fid", "fd_cnn/T=20/z=prior", "samples, Bernoulli(0.5) bits (main table)"),
        ("sample_fid", "fd_cnn/T=100/z=prior", "samples"),
        ("sample_fid", "fd_cnn/T=20/z=autoencoding", "the decoder on real test codes (rule v3's DMZ clause)"),
        ("prior_fid", "fd_cnn/T=20/prior=empirical", "samples, bits at the training codes' frequencies"),
        ("prior_fid", "fd_cnn/T=20/prior=codes", "samples, re-used training codes"),
        ("prior_fid", "bit_balance", "mean abs(p - 1/2) over the training codes' bits"),
        ("prior_fid", "bit_dependence", "mean abs(correlation) between pairs of bits"),
        ("prior_fid", "dead_bits", "fraction of bits that never change"),
        ("sample_fid", "fd_cnn_floor", "real vs real at this n"),
    ),
}


def load(folder: Path, model: str) -> dict[tuple[str, str], dict]:
    """{(task, metric): leaderboard row} of `model`'s records under `folder` (the suite's own record reader).

    Two records of the same measurement in one folder would make a column ambiguous: refused, not
    resolved by file order.
    """
    out = {}
    for row in (r for rec in records_under(folder) for r in record_rows(rec) if r["model"] == model):
        key = (row["task"], row["metric"])
        if key in out:
            raise SystemExit(f"{folder}: two records of {model} give {key[0]} {key[1]}; keep one")
        out[key] = row
    return out


def cell(m: dict | None) -> str:
    if m is None:
        return "-"
    if m.get("ci_low") is None:
        return f"{m['value']:.3g}"
    return f"{m['value']:.3g} [{m['ci_low']:.3g}, {m['ci_high']:.3g}]"


def table(model: str, columns: list[tuple[str, Path]]) -> str:
    found = [load(folder, model) for _, folder in columns]
    kinds = {row["model_kind"] for f in found for row in f.values()}
    if len(kinds) != 1 or not kinds <= set(ROWS):
        raise SystemExit(f"{model}: the records give model kind(s) {sorted(kinds) or 'none'}; "
                         f"one of {', '.join(ROWS)} is needed")
    lines = ["| task | metric | goal / use | " + " | ".join(label for label, _ in columns) + " |",
             "|---|---|---|" + "---|" * len(columns)]
    for task, metric, use in ROWS[kinds.pop()]:
        lines.append(f"| {task} | {metric} | {use} | " + " | ".join(cell(f.get((task, metric))) for f in found) + " |")
    return "\n".join(lines)


BLOCK = page_blocks.pattern("leg-table")  # <!-- leg-table: MODEL | LABEL=FOLDER ... --> (diffae_bench/reporting/page_blocks.py)


def rewrite(page: Path) -> int:
    """Regenerate every leg-table block of a page from the arguments in its comment; the number of blocks."""
    def render(args: str) -> str:
        model, *columns = page_blocks.arguments(args)
        return table(model, [(c.split("=", 1)[0], ROOT / c.split("=", 1)[1]) for c in columns])

    return page_blocks.rewrite(page, "leg-table", render)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model", nargs="?", help="the records' model label, e.g. diffae-small-mnist")
    ap.add_argument("columns", nargs="*", help="LABEL=FOLDER of records")
    ap.add_argument("--rewrite", type=Path, action="append", default=[],
                    help="regenerate the leg-table blocks of this page in place (from their comments)")
    a = ap.parse_args()
    for page in a.rewrite:
        print(f"{page}: {rewrite(page)} table(s) regenerated")
    if a.model:
        print(table(a.model, [(c.split("=", 1)[0], Path(c.split("=", 1)[1])) for c in a.columns]))


if __name__ == "__main__":
    main()
