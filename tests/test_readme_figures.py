"""The README's Speed figures for the whole suite are the committed cost tables' (results/perf), not typed.

Each figure quoted in the README's before/after table is read or derived here from the file it cites,
so re-measuring (a new file) without updating the README, or a slip in the arithmetic, fails.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PERF = ROOT / "results" / "perf"


def _table(name: str) -> tuple[int, list[dict]]:
    """(whole-suite seconds, rows as {column: cell}) of a scripts/suite_cost.py output file."""
    text = (PERF / name).read_text()
    whole = int(re.search(r"^whole suite: (\d+) s", text, re.M).group(1))
    lines = [l for l in text.splitlines() if l.startswith("| ")]
    head = [c.strip() for c in lines[0].strip("|").split("|")]
    rows = [dict(zip(head, (c.strip() for c in l.strip("|").split("|")))) for l in lines[1:]]
    return whole, rows


def _n(cell: str) -> int:
    return int(cell.replace(",", ""))


def _disentanglement_total(rows: list[dict], column: str) -> int:
    return sum(_n(r[column]) for r in rows if r["task"] == "disentanglement")


def test_speed_table_quotes_the_cost_files():
    readme = (ROOT / "README.md").read_text()
    before, est_rows = _table("suite_cost_cpu_shapes_estimate.md")
    _, after_rows = _table("suite_cost_cpu_shapes_disentanglement_after.md")
    quick, quick_rows = _table("suite_cost_cpu_shapes_quick.md")

    dis_before = _disentanglement_total(est_rows, "total (est.)")
    dis_after = _disentanglement_total(after_rows, "total (est.)")
    assert dis_after < dis_before  # the pixel sharing saved time; otherwise the README's claim is wrong
    default_after = before - dis_before + dis_after
    assert f"| {before:,} (" in readme
    assert f"about {default_after:,} (" in readme
    assert f"{dis_before:,} -> {dis_after:,} s" in readme
    assert f"**{quick:,} (" in readme and f"quick run's {quick:,} s" in readme

    everything = next(r for r in quick_rows if r["task"] == "all")
    main_stages = ("decode", "invert", "probe fits", "encode")
    rest = sum(_n(v) for k, v in everything.items() if k not in (*main_stages, "task", "model", "total"))
    quoted = (f"decode {_n(everything['decode'])}, invert {_n(everything['invert'])}, probe fits "
              f"{_n(everything['probe fits'])} (disentanglement's {_disentanglement_total(quick_rows, 'probe fits')} of them),"
              f"\nencode {_n(everything['encode'])}, everything else {rest}.")
    assert quoted in readme
