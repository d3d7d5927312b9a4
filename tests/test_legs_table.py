"""results/legs/*/README.md quote scripts/leg_table.py's table over the records they commit, not typed numbers."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"<!-- leg-table: (.+?) -->\n(.*?)\n<!-- leg-table:end -->", re.S)


def _leg_table():
    spec = importlib.util.spec_from_file_location("leg_table", ROOT / "scripts" / "leg_table.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_leg_pages_quote_the_generated_table():
    leg_table = _leg_table()
    pages = sorted((ROOT / "results" / "legs").glob("*/README.md"))
    assert pages, "no results/legs page to check"
    for page in pages:
        blocks = BLOCK.findall(page.read_text())
        assert blocks, f"{page}: no generated leg table"
        for spec, quoted in blocks:
            model, *columns = [part.strip() for part in spec.split("|")]
            cols = [(c.split("=", 1)[0], ROOT / c.split("=", 1)[1]) for c in columns]
            assert all(folder.is_dir() for _, folder in cols), cols
            assert quoted == leg_table.table(model, cols), f"{page}: regenerate with scripts/leg_table.py"


def test_leg_table_reads_only_the_named_model(tmp_path):
    """A record of another model in the same folder is not read (anti-oracle), a missing metric shows '-',
    and two records of one measurement are refused rather than resolved by file order."""
    import json

    import pytest

    src = ROOT / "results" / "legs" / "2026-11-27_cpu_diffae-small-mnist" / "records" / "leg2"
    mine = json.loads((src / "z_usage__diffae-small-mnist__mnist.json").read_text())
    other = json.loads(json.dumps(mine))
    other["model"]["label"] = "other"
    for m in other["metrics"]:
        m["value"], m["ci_low"], m["ci_high"] = 9.0, 8.0, 10.0
    (tmp_path / "sub").mkdir()
    (tmp_path / "z_other.json").write_text(json.dumps(other))
    (tmp_path / "sub" / "z_mine.json").write_text(json.dumps(mine))
    leg_table = _leg_table()
    text = leg_table.table("diffae-small-mnist", [("a", tmp_path)])
    row = next(l for l in text.splitlines() if "| gap/t=700 |" in l)
    gap = next(m for m in mine["metrics"] if m["key"] == "gap/t=700")
    assert row.endswith(f"| {gap['value']:.3g} [{gap['ci_low']:.3g}, {gap['ci_high']:.3g}] |")
    assert "| reconstruction | ssim/T=100/xT=random | F3: >= 0.5 | - |" in text
    (tmp_path / "z_mine_again.json").write_text(json.dumps(mine))
    with pytest.raises(SystemExit, match="two records"):
        leg_table.table("diffae-small-mnist", [("a", tmp_path)])
