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


def test_cpu_training_figures_quote_the_perf_file():
    """The AVX-512 CPU training rates and the bf16 accuracy check the README quotes are the perf file's."""
    readme = " ".join((ROOT / "README.md").read_text().split())  # the README wraps lines anywhere
    text = (PERF / "cpu_avx512_train_2026-11-27.md").read_text()
    speed_part, accuracy_part = text.split("## The train path's accuracy check")

    def rows(part: str) -> dict[str, list[str]]:
        cells = [[c.strip() for c in l.strip("|").split("|")] for l in part.splitlines() if l.startswith("| ")]
        return {r[0]: r[1:] for r in cells}

    speed, accuracy = rows(speed_part), rows(accuracy_part)
    fp32, bf16, bf16_cl = (int(speed[k][0]) for k in ("fp32 (first call)", "bf16", "bf16-cl"))
    dloss, cosine, verdict = accuracy["bf16"]
    assert verdict == "FAIL"  # the README's "CPU training stays fp32" rests on this
    # x is the file's ratio (of unrounded rates), not fp32 / bf16 of the rounded ones
    assert f"trains {fp32} img/s in fp32 and {bf16} in bf16 ({speed['bf16'][1]}x; bf16-cl {bf16_cl})" in readme
    assert f"loss off by {float(dloss) * 100:.1f} %, gradient cosine {float(cosine):.3f}" in readme
