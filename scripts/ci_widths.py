"""CI widths of two sets of records side by side: what a smaller profile costs in precision (issue 19).

    .venv/bin/python scripts/ci_widths.py DEFAULT_RECORDS QUICK_RECORDS --out results/perf/x.md

For every main metric present in both (same task, model, data set and metric key; the configs
differ by design), the 95 % CI width (ci_high - ci_low) of each and their ratio; then per task the
median ratio over its metrics and models. Metrics whose keys name a T that one side lacks are
absent from the other and so left out. Records are read with diffae_bench.reporting.tables (any folder of
record JSONs).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from diffae_bench.reporting.tables import load_rows  # noqa: E402

KEY = ["task", "model", "dataset", "metric"]


def widths(path: str):
    rows = load_rows([path])
    rows = rows[rows["main"].astype(bool)].copy()
    rows["width"] = rows["ci_high"] - rows["ci_low"]
    return rows[KEY + ["task_version", "n", "value", "width"]]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("default", help="records at the tasks' default sizes")
    ap.add_argument("other", help="records at the smaller profile's sizes")
    ap.add_argument("--out", default=None, help="also write the Markdown here")
    a = ap.parse_args()
    both = widths(a.default).merge(widths(a.other), on=KEY, suffixes=("_default", "_other"))
    both = both[(both["width_default"] > 0) & both["width_other"].notna()]
    both["ratio"] = both["width_other"] / both["width_default"]
    per_task = both.groupby("task").agg(metrics=("ratio", "size"), median_ratio=("ratio", "median"),
                                        min_ratio=("ratio", "min"), max_ratio=("ratio", "max"),
                                        n_default=("n_default", "max"), n_other=("n_other", "max"))
    lines = ["| task | main metrics compared | n (default -> other) | CI width ratio, median [min, max] |",
             "|---|---:|---|---|"]
    for task, r in per_task.iterrows():
        lines.append(f"| {task} | {r.metrics} | {r.n_default:.0f} -> {r.n_other:.0f} | "
                     f"{r.median_ratio:.2f} [{r.min_ratio:.2f}, {r.max_ratio:.2f}] |")
    detail = ["| task | model | metric | value (default) | width (default) | value (other) | width (other) | ratio |",
              "|---|---|---|---:|---:|---:|---:|---:|"]
    for r in both.sort_values(KEY).itertuples(index=False):
        detail.append(f"| {r.task} | {r.model} | {r.metric} | {r.value_default:.4g} | {r.width_default:.3g} | "
                      f"{r.value_other:.4g} | {r.width_other:.3g} | {r.ratio:.2f} |")
    text = "\n".join(lines) + "\n\nEvery metric:\n\n" + "\n".join(detail) + "\n"
    print(text)
    if a.out:
        Path(a.out).write_text(text)


if __name__ == "__main__":
    main()
