"""bench report: the page built from the committed records, its structure, its figures, and the per-data-set leaderboard."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from diffae_bench.reporting import report as RP
from diffae_bench.errors import BenchError
from diffae_bench.reporting.report_check import find_chromium, parse, structure_problems

RECORDS = Path(__file__).resolve().parent.parent / "results" / "records"


def _row(model, metric, value, lo=None, hi=None, task="reconstruction", dataset="shapes", main=True):
    return {"task": task, "dataset": dataset, "model": model, "metric": metric, "value": value, "ci_low": lo,
            "ci_high": hi, "main": main}


def test_parse_key():
    assert RP.parse_key("ssim/T=10/xT=inferred") == ("ssim", {"T": "10", "xT": "inferred"})
    assert RP.parse_key("mean_gap") == ("mean_gap", {})


def test_metric_vs_T_picks_one_condition_and_sorts_by_T():
    rows = pd.DataFrame([_row("a", "ssim/T=20/xT=inferred", 0.7, 0.6, 0.8), _row("a", "ssim/T=10/xT=inferred", 0.5, 0.4, 0.6),
                         _row("a", "ssim/T=10/xT=random", 0.1), _row("a", "mse/T=10/xT=inferred", 9.0),
                         _row("b", "ssim/T=10/xT=inferred", 0.3), _row("b", "ssim/T=10/xT=inferred", 0.3, task="other")])
    got = RP.metric_vs_T(rows, "reconstruction", "ssim", {"xT": "inferred"})
    assert got["a"] == {"x": [10, 20], "y": [0.5, 0.7], "lo": [0.4, 0.6], "hi": [0.6, 0.8]}
    assert got["b"]["x"] == [10] and set(got) == {"a", "b"}
    assert RP.metric_vs_T(rows, "reconstruction", "ssim", {"xT": "other"}) == {}


def test_headline_takes_each_models_own_code_and_drops_empty_columns():
    rows = pd.DataFrame([_row("diffae", "mean_auroc/rep=z_sem", 0.9, 0.88, 0.92, task="linear_probe"),
                         _row("dmz", "mean_auroc/rep=soft", 0.8, task="linear_probe"),
                         _row("ddim", "mean_auroc/rep=x_T", 0.95, task="linear_probe"),
                         _row("ddim", "ssim/T=20/xT=inferred", 0.5, task="not_reconstruction")])
    headers, body = RP.headline(rows)
    assert headers == ["model", "probe mean AUROC, own code ↑", "probe mean AUROC, x_T ↑"]  # SSIM: wrong task, no column
    assert body == [["ddim", "-", "0.95"], ["diffae", "0.9 ± 0.02", "-"], ["dmz", "0.8", "-"]]


def test_every_chance_line_is_promised_by_its_title_and_back():
    for spec in RP.FIGURES:
        assert (spec.chance is not None) == ("chance" in spec.title), spec.name
        assert "{dataset}" in spec.title  # titles name the data set


def test_structure_check_catches_what_it_should():
    png = io.BytesIO()
    Image.new("RGB", (2, 2)).save(png, format="PNG")
    good_img = RP._img(png.getvalue(), "a", "a")
    good = f'<a href="#x">x</a><section id="x"><table><tr><td>1</td></tr></table>{good_img}</section>'
    assert structure_problems(good) == []
    bad = ('<a href="#nowhere">n</a><a href="https://example.org">e</a><img src="figure.png" alt="f">'
           '<img src="data:image/png;base64,aGVsbG8=" alt="h"><script src="x.js"></script>')
    problems = structure_problems(bad, datasets=["shapes"])
    for expect in ("no <table>", "broken anchor", "outside the page", "not an embedded PNG", "not PNG data",
                   "<script> loads", "no section for data set shapes"):
        assert any(expect in p for p in problems), expect


@pytest.fixture(scope="module")
def page() -> str:
    return RP.build_html([RECORDS])


def test_the_committed_records_make_a_sound_page(page):
    datasets = sorted(p.name for p in RECORDS.iterdir() if p.is_dir())
    assert structure_problems(page, datasets) == []
    c = parse(page)
    assert c.tags["table"] >= 2 * len(datasets) and c.tags["section"] == len(datasets)
    for d in datasets:  # a figure per spec for each data set, titles naming it
        for spec in RP.FIGURES:
            assert any(img["alt"].startswith(f"{d}: ") and spec.task.split("_")[0] in img["alt"].replace("-", "_")
                       for img in c.imgs), (d, spec.name)
    assert "LPIPS not computed" in page  # the records' notes


def test_old_grids_are_shown_4x_and_new_grids_carry_their_scale(tmp_path):
    from diffae_bench.figures import SCALE_KEY, save_image_rows

    old = tmp_path / "old.png"  # a grid from before the 4x scale: 1 px per pixel, no scale key
    Image.fromarray(np.zeros((2 * 34 + 2, 3 * 34 + 40, 3), np.uint8)).save(old)
    assert RP.grid_display_width(old, 32) == 4 * Image.open(old).width
    g = torch.Generator().manual_seed(0)
    rows = [torch.rand(3, 3, 32, 32, generator=g) * 2 - 1 for _ in range(2)]
    path = save_image_rows(tmp_path / "grid.png", rows, ["original", "a much longer label than the default column"])
    img = Image.open(path)
    assert img.info[SCALE_KEY] == "4" and img.height == 2 * (128 + 2) + 2
    assert RP.grid_display_width(path, 32) == img.width  # already 4x: shown as it is
    a = np.asarray(img)
    label_w = img.width - 3 * (128 + 2) - 2
    assert label_w > 110  # widened to fit the long label
    block = a[2:130, label_w + 2:label_w + 130]  # first image: each source pixel is a 4x4 block
    assert (block == block[::4, ::4].repeat(4, 0).repeat(4, 1)).all()


def test_markdown_leaderboard_is_split_per_dataset(tmp_path):
    from diffae_bench.reporting.leaderboard import build_leaderboard
    from diffae_bench.reporting.tables import LEGEND

    build_leaderboard([RECORDS], tmp_path / "lb.csv", tmp_path / "lb.md")
    md = (tmp_path / "lb.md").read_text()
    sections = md.split("\n## ")[1:]
    assert [s.split("\n", 1)[0] for s in sections] == ["mnist", "shapes"]
    mnist, shapes = sections
    assert "is_circle" not in mnist and "digit_0" not in shapes  # no other data set's columns
    assert "| shapes |" not in mnist and "| mnist |" not in shapes
    assert md.count(LEGEND) == 1


def test_bench_report_command(tmp_path, capsys):
    from diffae_bench.cli import main

    out = tmp_path / "r.html"
    with pytest.raises(SystemExit) as e:
        main(["report", str(RECORDS), "-o", str(out), "--dataset", "mnist", "--figures-dir", str(tmp_path / "figs")])
    assert e.value.code == 0
    text = out.read_text()
    assert 'id="data-mnist"' in text and 'id="data-shapes"' not in text and structure_problems(text) == []
    assert sorted(p.name for p in (tmp_path / "figs").iterdir()) == sorted(f"mnist_{s.name}.png" for s in RP.FIGURES)
    for argv in (["report", str(RECORDS), "-o", str(out), "--dataset", "celeba"],
                 ["report", str(RECORDS.parent / "leaderboard.csv"), "-o", str(out)]):
        with pytest.raises(SystemExit) as e:
            main(argv)
        assert e.value.code == 2
    with pytest.raises(BenchError, match="no result records"):
        RP.build_html([tmp_path / "figs"])


@pytest.mark.slow  # starts a browser
@pytest.mark.skipif(find_chromium() is None, reason="no chromium binary on PATH (apt-get install chromium)")
def test_the_page_renders_in_headless_chromium(tmp_path, page):
    from diffae_bench.reporting.report_check import dump_dom, screenshot, section_tops

    path = tmp_path / "report.html"
    path.write_text(page, encoding="utf-8")
    browser = find_chromium()
    dom = dump_dom(browser, path)
    datasets = sorted(p.name for p in RECORDS.iterdir() if p.is_dir())
    assert structure_problems(dom, datasets) == []  # the DOM as the browser built it
    assert len(parse(dom).imgs) == len(parse(page).imgs)
    shot = screenshot(browser, path, tmp_path / "shot.png", height=3000)
    grey = np.asarray(Image.open(shot).convert("L"))
    assert section_tops(shot)[0] < 400  # the first section's rule drawn near the top
    assert (grey < 250).mean() > 0.05  # tables and figures painted, not a blank page


def test_section_tops_finds_thin_rules_not_dark_image_bands(tmp_path):
    """A section's 2-px rule is found; a tall band of black-background image grids (MNIST) is not one."""
    import numpy as np
    from PIL import Image

    from diffae_bench.reporting.report_check import section_tops

    page = np.full((600, 400), 255, np.uint8)
    page[50:52] = 40  # the first section's rule
    page[200:320, 10:] = 0  # an image grid: dark across 97 % of the width, but 120 px tall
    page[400:402] = 40  # the second section's rule
    Image.fromarray(page).save(tmp_path / "shot.png")
    assert section_tops(tmp_path / "shot.png") == [50, 400]
