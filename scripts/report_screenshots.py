"""Build results/report.html from results/records and screenshot each data set's section in headless Chromium.

    python scripts/report_screenshots.py [--records results/records] [--height 2000]

Writes results/report.html (not committed: it embeds every record figure) and
results/report-<dataset>.png (committed, shown in the README): the top of each
data set's section (main table and cross-model figures), cut from one
full-page screenshot at the section's top rule.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from diffae_bench.reporting.report import build_html  # noqa: E402
from diffae_bench.reporting.report_check import find_chromium, screenshot, section_tops, structure_problems  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", default=str(ROOT / "results" / "records"))
    ap.add_argument("--out-dir", default=str(ROOT / "results"))
    ap.add_argument("--height", type=int, default=2000, help="pixels of each section kept")
    args = ap.parse_args()
    from PIL import Image

    from diffae_bench.reporting.report import load

    out_dir = Path(args.out_dir)
    page = out_dir / "report.html"
    text = build_html([args.records])
    page.write_text(text, encoding="utf-8")
    datasets = sorted(set(load([args.records]).rows["dataset"]))
    problems = structure_problems(text, datasets)
    if problems:
        sys.exit("report structure: " + "; ".join(problems))
    browser = find_chromium()
    if browser is None:
        sys.exit("no chromium binary on PATH (apt-get install chromium)")
    full = screenshot(browser, page, out_dir / "report-full.tmp.png")
    tops = section_tops(full)
    if len(tops) != len(datasets):
        sys.exit(f"found {len(tops)} section rules in the screenshot for {len(datasets)} data sets")
    img = Image.open(full).convert("RGB")
    for i, (d, top) in enumerate(zip(datasets, tops)):
        bottom = min(top + args.height, tops[i + 1] if i + 1 < len(tops) else img.height)
        shot = img.crop((0, top, img.width, bottom)).quantize(colors=256)
        shot.save(out_dir / f"report-{d}.png", optimize=True)
        print(f"{out_dir / f'report-{d}.png'}: {img.width}x{bottom - top}, section top at y={top}")
    full.unlink()


if __name__ == "__main__":
    main()
