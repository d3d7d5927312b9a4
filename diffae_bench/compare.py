"""The regression gate: new results against a baseline, main metrics only.

A main metric regresses when the new value is worse than the baseline by
more than the baseline's own uncertainty (its bootstrap CI) plus a tolerance:
  higher is better:  new < ci_low  - tolerance
  lower is better:   new > ci_high + tolerance
(a baseline without a CI uses its value for both bounds). Non-main metrics
are reported but never fail the gate.

Numbers are only comparable when they mean the same thing on the same images,
so matched rows of different task versions or data hashes are refused rather
than compared; and a comparison that matches nothing (or no main metric) is an
error, because a gate that compares nothing must not pass.
"""

from __future__ import annotations

import math

import pandas as pd

from .errors import BenchError
from .tables import latest_rows, plain_table

DIFF_COLUMNS = ["task", "dataset", "model", "metric", "main", "baseline", "new", "delta", "direction", "status",
                "baseline_ci_low", "baseline_ci_high"]
REGRESSION = "REGRESSION"


def _num(x) -> float:
    return float("nan") if x is None or pd.isna(x) else float(x)


def _status(new: float, base: float, lo: float, hi: float, higher_is_better: bool, main: bool, tolerance: float) -> str:
    lo = base if math.isnan(lo) else lo  # no CI: the point value is the bound
    hi = base if math.isnan(hi) else hi
    worse_label = REGRESSION if main else "worse"  # non-main metrics are shown, not gated
    if math.isnan(new):
        return "ok" if math.isnan(base) else worse_label  # a main score that stopped being computed fails
    if math.isnan(base):
        return "better"
    if higher_is_better:
        return worse_label if new < lo - tolerance else "better" if new > hi + tolerance else "ok"
    return worse_label if new > hi + tolerance else "better" if new < lo - tolerance else "ok"


def _first_few(items: list[str], k: int = 2) -> str:
    more = f" (and {len(items) - k} more)" if len(items) > k else ""
    return "; ".join(items[:k]) + more


def _refuse_incomparable(both: pd.DataFrame) -> None:
    """Matched rows must measure the same thing (task version, options) on the same images (data hash)."""
    problems = []
    versions = both[both["task_version_new"] != both["task_version_base"]]
    for (task, v_new, v_base), _ in versions.groupby(["task", "task_version_new", "task_version_base"]):
        problems.append(f"task '{task}' is v{v_new} in the new results but v{v_base} in the baseline")
    configs = both[both["config_hash_new"] != both["config_hash_base"]]
    for (task, c_new, c_base), _ in configs.groupby(["task", "config_hash_new", "config_hash_base"]):
        problems.append(f"task '{task}' ran with different options (config_hash {c_new} vs baseline {c_base})")
    hashes = both[both["data_hash_new"] != both["data_hash_base"]]
    for (task, dataset, h_new, h_base), _ in hashes.groupby(["task", "dataset", "data_hash_new", "data_hash_base"]):
        problems.append(f"'{task}' on '{dataset}' used different images (data_hash {h_new} vs baseline {h_base})")
    if problems:
        raise BenchError("refusing to compare: " + _first_few(problems))


def compare_rows(new: pd.DataFrame, base: pd.DataFrame, tolerance: float = 0.0,
                 baseline_model: str | None = None) -> tuple[pd.DataFrame, int]:
    """The diff table (DIFF_COLUMNS) of new against base, and how many main metrics regressed."""
    if not tolerance >= 0:
        raise BenchError(f"--tolerance must be >= 0, not {tolerance}")
    key = ["task", "dataset", "model", "metric"]
    new = latest_rows(new, key)
    if baseline_model is not None:
        if baseline_model not in set(base["model"]):
            raise BenchError(f"the baseline has no rows for model '{baseline_model}' "
                             f"(models: {', '.join(sorted(set(base['model'])))})")
        base = base[base["model"] == baseline_model]
        key = ["task", "dataset", "metric"]  # every new model against that one
    base = latest_rows(base, key)  # several baseline runs of one measurement: the most recent counts
    merged = new.merge(base, on=key, how="outer", suffixes=("_new", "_base"), indicator=True)
    both = merged[merged["_merge"] == "both"]
    if both.empty:
        raise BenchError("nothing to compare: no (task, data set, model, metric) of the new results is in the baseline"
                         + ("" if baseline_model else "; use --baseline-model to compare against another model"))
    _refuse_incomparable(both)
    if not both["main_base"].astype(bool).any():
        raise BenchError("nothing to gate: none of the matched metrics is a main metric")

    diff = []
    for side in merged.to_dict("records"):
        origin = side["_merge"]
        pick = lambda col: side[f"{col}_new"] if origin != "right_only" else side[f"{col}_base"]
        model = side["model"] if "model" in key else pick("model")
        hib, main = bool(pick("higher_is_better")), bool(pick("main"))
        value_new, value_base = _num(side["value_new"]), _num(side["value_base"])
        lo, hi = _num(side["ci_low_base"]), _num(side["ci_high_base"])
        if origin == "left_only":
            status = "new-only"
        elif origin == "right_only":
            status = "baseline-only"
        else:
            status = _status(value_new, value_base, lo, hi, hib, main, tolerance)
        diff.append({"task": side["task"], "dataset": side["dataset"], "model": model, "metric": side["metric"],
                     "main": main, "baseline": value_base, "new": value_new, "delta": value_new - value_base,
                     "direction": "↑" if hib else "↓", "status": status, "baseline_ci_low": lo, "baseline_ci_high": hi})
    table = pd.DataFrame(diff, columns=DIFF_COLUMNS).sort_values(["task", "dataset", "model", "metric"], kind="stable")
    table = table.reset_index(drop=True)
    return table, int((table["status"] == REGRESSION).sum())


def format_diff(diff: pd.DataFrame) -> str:
    """The diff as aligned text; the baseline shown with its CI, since that is what the gate compares against."""
    def num(x):
        return "-" if math.isnan(x) else f"{x:.4g}"

    def base_cell(r):
        if math.isnan(r.baseline_ci_low) or math.isnan(r.baseline_ci_high):
            return num(r.baseline)
        return f"{num(r.baseline)} [{num(r.baseline_ci_low)}, {num(r.baseline_ci_high)}]"

    headers = ["task", "dataset", "model", "metric", "baseline [CI]", "new", "delta", "dir", "status"]
    body = [[r.task, r.dataset, r.model, r.metric + ("*" if r.main else ""), base_cell(r), num(r.new),
             "-" if math.isnan(r.delta) else f"{r.delta:+.3g}", r.direction, r.status] for r in diff.itertuples()]
    return plain_table(headers, body, n_left=4) + "\n* main metric (gated)"


def verdict(diff: pd.DataFrame, n_regressions: int, tolerance: float) -> str:
    """One line: PASS/FAIL, how many main metrics were compared, and the first regressions."""
    compared = diff[diff["main"] & ~diff["status"].isin(["new-only", "baseline-only"])]
    if not n_regressions:
        return f"PASS: {len(compared)} main metrics compared, none regressed (tolerance {tolerance:g})"
    worst = [f"{r.metric} on {r.dataset} ({r.model}) {r.new:.4g} vs {r.baseline:.4g}"
             for r in diff[diff["status"] == REGRESSION].itertuples()]
    return (f"FAIL: {n_regressions} of {len(compared)} main metrics regressed beyond the baseline CI"
            f" + tolerance {tolerance:g}: " + _first_few(worst, 3))
