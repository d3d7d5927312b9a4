"""`bench report`: one static, self-contained HTML page generated from result records alone.

Per data set: a headline table (one row per model, the figures a paper would
quote, with 95% CIs), the cross-model figures (a metric against T for every
model on one axis, with CI error bars), the image grids the records reference,
every task's main metrics, and the records' notes. Images are PNGs embedded as
base64 data URIs and the style sheet is inline, so the file can be mailed or
attached as it is: it links to nothing outside itself.
"""

from __future__ import annotations

import base64
import html
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ..errors import BenchError
from ..harness.records import find_records, load_record, record_rows
from .tables import LEGEND, format_cell, latest_rows, rows_frame, wide_table


def parse_key(key: str) -> tuple[str, dict[str, str]]:
    """'ssim/T=10/xT=inferred' -> ('ssim', {'T': '10', 'xT': 'inferred'})."""
    family, *parts = key.split("/")
    return family, dict(p.split("=", 1) for p in parts if "=" in p)


@dataclass(frozen=True)
class CrossModelFigure:
    name: str  # file stem when written to disk
    task: str  # task whose records it plots
    families: tuple[str, ...]  # metric family plotted: the first one present (fid before fd_cnn)
    solid: dict  # parameters (besides T) of the solid series
    title: str  # {dataset} and {family} are filled in; it states what every line means
    ylabel: str
    dashed: dict | None = None  # parameters of a second series per model, drawn dashed
    chance: float | None = None  # a dotted reference line; the title must promise it


FIGURES = (
    CrossModelFigure("reconstruction_ssim_vs_T", "reconstruction", ("ssim",), {"xT": "inferred"},
                     "{dataset}: reconstruction SSIM vs T (solid: inferred x_T; dashed: x_T ~ N(0, I))", "SSIM (higher is better)",
                     dashed={"xT": "random"}),
    CrossModelFigure("fake_detection_auroc_vs_T", "fake_detection", ("auroc",), {},
                     "{dataset}: fake-detection AUROC vs T (dotted: chance, 0.5)", "AUROC (lower: samples harder to tell)",
                     chance=0.5),
    CrossModelFigure("sample_fd_vs_T", "sample_fid", ("fid", "fd_cnn"), {"z": "prior"},
                     "{dataset}: sample {family} vs T (z from the prior)", "{family} (lower is better)"),
)


@dataclass(frozen=True)
class Column:
    label: str  # header ({family} filled in with the metric found)
    task: str
    keys: tuple[str, ...]  # candidate metric keys, first present per model (a model's own code differs by kind)


HEADLINE = (
    Column("SSIM, T=20, inferred x_T ↑", "reconstruction", ("ssim/T=20/xT=inferred",)),
    Column("LPIPS, T=20, inferred x_T ↓", "reconstruction", ("lpips/T=20/xT=inferred",)),
    Column("probe mean AUROC, own code ↑", "linear_probe", ("mean_auroc/rep=z_sem", "mean_auroc/rep=soft")),
    Column("probe mean AUROC, x_T ↑", "linear_probe", ("mean_auroc/rep=x_T",)),
    Column("sample FID, T=20 ↓", "sample_fid", ("fid/T=20/z=prior",)),
    Column("sample fd_cnn, T=20 ↓", "sample_fid", ("fd_cnn/T=20/z=prior",)),
    Column("interpolation step ratio ↓", "interpolation", ("step_ratio/path=z_lerp+xT_slerp", "step_ratio/path=xT_slerp")),
    Column("copy_auc, pixels (0.5 ideal)", "memorization", ("copy_auc/space=pixel_mse",)),
    Column("fake-detection AUROC, T=20 ↓", "fake_detection", ("auroc/T=20",)),
    Column("z_usage mean gap ↑", "z_usage", ("mean_gap",)),
)


@dataclass
class Loaded:
    records: list[tuple[Path, dict]]  # (record file, record)
    rows: pd.DataFrame = field(default_factory=pd.DataFrame)  # their long rows, latest per (task, data set, model, metric)


def load(paths) -> Loaded:
    """Records (with their files, for the figures beside them) under files or directories; other JSON is skipped."""
    found = []
    for p in find_records(paths):
        if p.suffix.lower() == ".csv":
            raise BenchError(f"{p} is a CSV: a report is built from record files or directories (notes and figures live there)")
        try:
            head = json.loads(p.read_text())
        except (OSError, json.JSONDecodeError):
            head = None
        if isinstance(head, dict) and "metrics" not in head and "schema_version" not in head:
            continue  # a training run's config.json and the like
        found.append((p, load_record(p)))
    if not found:
        raise BenchError(f"no result records in {', '.join(map(str, paths))}")
    rows = rows_frame([r for _, rec in found for r in record_rows(rec)])
    return Loaded(found, latest_rows(rows, ["task", "dataset", "model", "metric"]))


def metric_vs_T(rows: pd.DataFrame, task: str, family: str, fixed: dict) -> dict[str, dict]:
    """{model: {x, y, lo, hi}} of one data set's rows: the family's values at each T with the other parameters fixed."""
    out: dict[str, dict] = {}
    for r in rows[rows["task"] == task].itertuples():
        fam, params = parse_key(r.metric)
        if fam != family or "T" not in params or {k: v for k, v in params.items() if k != "T"} != fixed:
            continue
        out.setdefault(r.model, []).append((int(params["T"]), r.value, r.ci_low, r.ci_high))
    return {m: dict(zip(("x", "y", "lo", "hi"), map(list, zip(*sorted(pts))))) for m, pts in sorted(out.items())}


def cross_model_figures(rows: pd.DataFrame, dataset: str) -> list[tuple[CrossModelFigure, str, bytes, bool]]:
    """(spec, title, PNG bytes, whether any point has a CI) of every figure this data set's rows can fill."""
    from ..figures import save_cross_model_plot

    out = []
    for spec in FIGURES:
        family = next((f for f in spec.families if not metric_vs_T(rows, spec.task, f, spec.solid) == {}), None)
        if family is None:
            continue
        series = {m: {**s, "color_of": m} for m, s in metric_vs_T(rows, spec.task, family, spec.solid).items()}
        if spec.dashed:
            for m, s in metric_vs_T(rows, spec.task, family, spec.dashed).items():
                series[f"{m} ({', '.join(f'{k}={v}' for k, v in spec.dashed.items())})"] = {**s, "dashed": True, "color_of": m}
        title = spec.title.format(dataset=dataset, family=family)
        buf = io.BytesIO()
        save_cross_model_plot(buf, series, "T (DDIM steps)", spec.ylabel.format(family=family), title, chance=spec.chance)
        has_ci = any(pd.notna(v) for sr in series.values() for v in sr["lo"] + sr["hi"])
        out.append((spec, title, buf.getvalue(), has_ci))
    return out


def headline(rows: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    """Headers and cells of one data set's headline table; columns no model has are left out."""
    cells = {(r.task, r.model, r.metric): format_cell(r.value, r.ci_low, r.ci_high) for r in rows.itertuples()}
    models = sorted(set(rows["model"]))
    cols = []
    for col in HEADLINE:
        vals = [next((cells[(col.task, m, k)] for k in col.keys if (col.task, m, k) in cells), "-") for m in models]
        if any(v != "-" for v in vals):
            cols.append((col.label, vals))
    return ["model"] + [c for c, _ in cols], [[m] + [vals[i] for _, vals in cols] for i, m in enumerate(models)]


def is_plot(name: str) -> bool:
    """A task's per-model metric plot (reconstruction's ssim_vs_T.png, ...), not an image grid."""
    return name.endswith("_vs_T.png")


def grid_display_width(path: Path, image_side: int) -> int:
    """Display width of an image grid: 4x (nearest, CSS pixelated) at 32 px for grids written at 1x, as new grids are."""
    from PIL import Image

    from ..figures import SCALE_KEY, grid_scale

    with Image.open(path) as img:
        return img.width * max(1, grid_scale(image_side) // int(img.info.get(SCALE_KEY, 1)))


# ---------------------------------------------------------------- HTML
STYLE = """body{font:14px/1.45 system-ui,sans-serif;margin:24px auto;max-width:1400px;padding:0 16px;color:#222}
table{border-collapse:collapse;margin:8px 0 18px}th,td{border:1px solid #ccc;padding:3px 8px}
td.num{text-align:right;font-variant-numeric:tabular-nums}th{background:#f3f3f3}
figure{display:inline-block;margin:6px 14px 14px 0;vertical-align:top}figcaption{font-size:12px;color:#555;max-width:720px}
img{max-width:100%;height:auto}img.grid{image-rendering:pixelated}section{border-top:2px solid #444;margin-top:28px}
details{margin:8px 0}.note{font-size:13px}nav a{margin-right:14px}code{background:#f3f3f3;padding:0 3px}"""


def _table(headers: list[str], body: list[list[str]], n_left: int = 1) -> str:
    e = html.escape
    head = "".join(f"<th>{e(h)}</th>" for h in headers)
    rows = "".join("<tr>" + "".join(f"<td{'' if i < n_left else ' class=num'}>{e(str(c))}</td>" for i, c in enumerate(r))
                   + "</tr>" for r in body)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"


def _img(png: bytes, alt: str, caption: str, cls: str = "", width: int | None = None) -> str:
    src = "data:image/png;base64," + base64.b64encode(png).decode()
    c = (f' class="{cls}"' if cls else "") + (f' width="{width}"' if width else "")
    return f'<figure><img{c} src="{src}" alt="{html.escape(alt)}"><figcaption>{html.escape(caption)}</figcaption></figure>'


def dataset_section(loaded: Loaded, dataset: str, figures_dir: Path | None = None) -> str:
    rows = loaded.rows[loaded.rows["dataset"] == dataset]
    recs = [(p, r) for p, r in loaded.records if r["dataset"]["name"] == dataset]
    e = html.escape
    parts = [f'<section id="data-{e(dataset)}"><h2>{e(dataset)}</h2>', "<h3>Main table</h3>",
             _table(*headline(rows)),
             "<h3>Figures: every model on one axis</h3>"]
    for spec, title, png, has_ci in cross_model_figures(rows, dataset):
        parts.append(_img(png, title, title + (". Error bars: 95% CI." if has_ci else ". These records carry no CI.")))
        if figures_dir is not None:
            (Path(figures_dir) / f"{dataset}_{spec.name}.png").parent.mkdir(parents=True, exist_ok=True)
            (Path(figures_dir) / f"{dataset}_{spec.name}.png").write_bytes(png)
    grids, plots = [], []
    for p, rec in sorted(recs, key=lambda pr: (pr[1]["task"]["name"], pr[1]["model"]["label"])):
        for name in rec.get("figures", []):
            f, cap = p.parent / name, f"{rec['task']['name']} / {rec['model']['label']}: {name}"
            if not f.is_file():
                grids.append(f'<p class="note">missing figure: {e(cap)}</p>')
            elif is_plot(name):
                plots.append(_img(f.read_bytes(), cap, cap))
            else:
                grids.append(_img(f.read_bytes(), cap, cap, "grid", grid_display_width(f, rec["dataset"]["image_shape"][-1])))
    parts += ["<h3>Image grids</h3>"] + grids
    if plots:
        parts += ["<details><summary>Per-model plots (the same numbers as the figures above)</summary>"] + plots + ["</details>"]
    parts.append("<h3>Main metrics by task</h3>")
    for (task, version), group in rows[rows["main"]].groupby(["task", "task_version"], sort=True):
        headers, body = wide_table(group)
        parts.append(f"<h4>{e(task)} (v{version})</h4>" + _table(headers[1:], [b[1:] for b in body]))
    parts.append("<h3>Notes</h3><ul>")
    seen: dict[str, list[str]] = {}
    for _, rec in recs:
        for n in rec.get("notes", []):
            seen.setdefault(n, []).append(f"{rec['task']['name']} / {rec['model']['label']}")
    parts += [f'<li class="note">{e(n)} <i>({e(", ".join(sorted(set(w))))})</i></li>' for n, w in seen.items()]
    return "\n".join(parts + ["</ul></section>"])


def build_html(paths, datasets: list[str] | None = None, figures_dir: Path | None = None) -> str:
    loaded = load(paths)
    names = sorted(set(loaded.rows["dataset"]))
    if datasets:
        unknown = sorted(set(datasets) - set(names))
        if unknown:
            raise BenchError(f"no records for data set(s) {', '.join(unknown)} (records hold: {', '.join(names)})")
        names = [n for n in names if n in datasets]
    commits = sorted({(r.get("git") or {}).get("commit", "")[:12] for _, r in loaded.records} - {""})
    when = sorted(str(r["created_at"]) for _, r in loaded.records)
    nav = "".join(f'<a href="#data-{html.escape(n)}">{html.escape(n)}</a>' for n in names)
    head = (f"<h1>diffae_bench report</h1><p>Generated by <code>bench report</code> from {len(loaded.records)} records "
            f"({html.escape(when[0])} to {html.escape(when[-1])}; git {html.escape(', '.join(commits) or 'unknown')}). "
            f"{html.escape(LEGEND.replace('`', ''))}</p><nav>{nav}</nav>")
    body = "\n".join(dataset_section(loaded, n, figures_dir) for n in names)
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>diffae_bench report</title>'
            f"<style>{STYLE}</style></head><body>\n{head}\n{body}\n</body></html>\n")
