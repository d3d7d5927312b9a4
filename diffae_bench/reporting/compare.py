"""The regression gate: new results against a baseline, main metrics only. It fails closed.

A main metric regresses when the new value is worse than the baseline by
more than the baseline's own uncertainty (its bootstrap CI) plus a tolerance:
  higher is better:  new < ci_low  - tolerance
  lower is better:   new > ci_high + tolerance
  with an ideal value (copy_auc: 0.5):  |new - ideal| > max |CI bound - ideal| + tolerance,
                     so moving toward the ideal is never a regression; and a new value whose own
                     CI lies wholly on the bad side of the ideal (copying: copy_auc above 0.5)
                     is one unless the baseline's was there too
(a baseline without a CI uses its value for both bounds). Non-main metrics
are reported but never fail the gate.

Fail closed:
- a main metric the baseline has for a (task, data set, model) that the new
  run measured, but that the new run lacks (e.g. LPIPS no longer computed), is
  MISSING and fails like a regression;
- numbers are only comparable when they mean the same thing on the same
  images, so matched rows that differ in task version, task options, data
  hash, seed, numeric mode or pretrained / feature-network weights are refused
  (exit 2, with the reason) rather than compared. Rows from other CPU kernels
  or devices (the numerics fingerprint) are compared: that is what the CIs
  and tolerances are for;
- a comparison that matches nothing (or no main metric) is an error, because
  a gate that compares nothing must not pass.
Exit codes (cli): 0 pass, 1 regression or missing, 2 incomparable / bad input,
70 an unexpected crash.
"""

from __future__ import annotations

import math

import pandas as pd

from ..errors import BenchError
from .tables import latest_rows, plain_table

DIFF_COLUMNS = ["task", "dataset", "model", "metric", "main", "baseline", "new", "delta", "direction", "status",
                "baseline_ci_low", "baseline_ci_high"]
REGRESSION = "REGRESSION"
MISSING = "MISSING"  # a main metric of the baseline that the new run did not produce: fails like a regression
FAILING = (REGRESSION, MISSING)


def _num(x) -> float:
    return float("nan") if x is None or pd.isna(x) else float(x)


def _status(new: float, base: float, lo: float, hi: float, higher_is_better: bool, main: bool, tolerance: float,
            ideal: float = float("nan"), new_ci: tuple[float, float] = (float("nan"), float("nan"))) -> str:
    lo = base if math.isnan(lo) else lo  # no CI: the point value is the bound
    hi = base if math.isnan(hi) else hi
    worse_label = REGRESSION if main else "worse"  # non-main metrics are shown, not gated
    if math.isnan(new):
        return "ok" if math.isnan(base) else worse_label  # a main score that stopped being computed fails
    if math.isnan(base):
        return "better"
    if not math.isnan(ideal):
        # Distance from the ideal: the baseline's CI maps to [near, far] (near = 0 when it covers the ideal).
        far = max(abs(lo - ideal), abs(hi - ideal))
        near = 0.0 if lo <= ideal <= hi else min(abs(lo - ideal), abs(hi - ideal))
        dist = abs(new - ideal)
        # The bad side of the ideal is the direction's: above it for lower-is-better (copying).
        bad_side = (lambda v_lo, v_hi: v_hi < ideal) if higher_is_better else (lambda v_lo, v_hi: v_lo > ideal)
        new_lo, new_hi = (new if math.isnan(b) else b for b in new_ci)
        if bad_side(new_lo, new_hi) and not bad_side(lo, hi):
            return worse_label
        return worse_label if dist > far + tolerance else "better" if dist < near - tolerance else "ok"
    if higher_is_better:
        return worse_label if new < lo - tolerance else "better" if new > hi + tolerance else "ok"
    return worse_label if new > hi + tolerance else "better" if new < lo - tolerance else "ok"


def _first_few(items: list[str], k: int = 2) -> str:
    more = f" (and {len(items) - k} more)" if len(items) > k else ""
    return "; ".join(items[:k]) + more


# Row columns that must agree for two numbers to be comparable, and how to say that they do not.
MUST_MATCH = {
    "seed": "a different seed",
    "numeric_mode": "a different numeric mode",
    "weights": "different pretrained / feature-network weights",
}
# Everything two rows must share to measure the same thing: the task's version, options and images (each refused
# with its own message below), then MUST_MATCH. The replacement rule (reporting.replacement) reads the same list.
SAME_MEASUREMENT = {"task_version": "another task version", "config_hash": "other task options",
                    "data_hash": "other images", **MUST_MATCH}


def _refuse_incomparable(both: pd.DataFrame) -> None:
    """Matched rows must measure the same thing (task version, options, seed, numeric mode, weights) on the same images."""
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
    for col, what in MUST_MATCH.items():
        differ = both[both[f"{col}_new"].astype(str) != both[f"{col}_base"].astype(str)]
        for (task, v_new, v_base), _ in differ.groupby(["task", f"{col}_new", f"{col}_base"]):
            problems.append(f"'{task}' ran with {what} ({col} {v_new or '-'} vs baseline {v_base or '-'})")
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

    group = ["task", "dataset"] + (["model"] if "model" in key else [])
    new_measurements = set(map(tuple, new[group].drop_duplicates().itertuples(index=False, name=None)))
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
            # Fail closed: a main metric of a measurement the new run made, but that it no longer reports.
            measured = (side["task"], side["dataset"]) + ((side["model"],) if "model" in key else ())
            status = MISSING if main and measured in new_measurements else "baseline-only"
        else:
            status = _status(value_new, value_base, lo, hi, hib, main, tolerance, _num(pick("ideal")),
                             (_num(side["ci_low_new"]), _num(side["ci_high_new"])))
        diff.append({"task": side["task"], "dataset": side["dataset"], "model": model, "metric": side["metric"],
                     "main": main, "baseline": value_base, "new": value_new, "delta": value_new - value_base,
                     "direction": "↑" if hib else "↓", "status": status, "baseline_ci_low": lo, "baseline_ci_high": hi})
    table = pd.DataFrame(diff, columns=DIFF_COLUMNS).sort_values(["task", "dataset", "model", "metric"], kind="stable")
    table = table.reset_index(drop=True)
    return table, int(table["status"].isin(FAILING).sum())


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
    worst = [f"{r.metric} on {r.dataset} ({r.model}) " + (f"{r.new:.4g} vs {r.baseline:.4g}" if r.status == REGRESSION
                                                           else "missing in the new results")
             for r in diff[diff["status"].isin(FAILING)].itertuples()]
    return (f"FAIL: {n_regressions} of {len(compared)} main metrics regressed or went missing (baseline CI"
            f" + tolerance {tolerance:g}): " + _first_few(worst, 3))
