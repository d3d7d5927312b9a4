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
    """A record of another model in the same folder is not read (anti-oracle), and a missing metric shows '-'."""
    import json

    rec = {"model": {"label": "other"}, "task": {"name": "z_usage"},
           "metrics": [{"key": "gap/t=700", "value": 9.0, "ci_low": 8.0, "ci_high": 10.0}]}
    (tmp_path / "z.json").write_text(json.dumps(rec))
    mine = {**rec, "model": {"label": "mine"}, "metrics": [{"key": "gap/t=700", "value": 0.5, "ci_low": 0.25, "ci_high": 0.75}]}
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "m.json").write_text(json.dumps(mine))
    text = _leg_table().table("mine", [("a", tmp_path)])
    assert "| z_usage | gap/t=700 | z used at t = 700: CI excludes 0 | 0.5 [0.25, 0.75] |" in text
    assert "9" not in text.split("gap/t=700")[1].split("\n")[0]
    assert "| reconstruction | ssim/T=100/xT=random | F3: >= 0.5 | - |" in text
