"""Figures a reader would rather look at than read: image grids and metric-against-T plots.

Written as PNG beside the record (the run directory); matplotlib with the
non-interactive Agg backend so nothing needs a display.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from .data import unit_to_uint8


def grid_scale(side: int) -> int:
    """Nearest-neighbour upscaling of an image grid: 4x at 32 px and below, 2x to 64 px (small images are unreadable at 1x)."""
    return 4 if side <= 32 else 2 if side <= 64 else 1


SCALE_KEY = "diffae_bench_scale"  # PNG text chunk: the upscaling a grid was written with (the report reads it)
LABEL_FONT_PX = 14  # label text height: readable beside 128-px (4 x 32) rows


def save_image_rows(path: Path, rows: list[torch.Tensor], labels: list[str], pad: int = 2, label_width: int = 110,
                    scale: int | None = None) -> Path:
    """Rows of images in [-1, 1] (each (n, C, H, W), same n) as one PNG, a text label left of each row.

    Images are upscaled by `scale` (default grid_scale(H)) with nearest-neighbour
    (pixels stay pixels); the label column widens to fit its text.
    """
    from PIL import ImageFont
    from PIL.PngImagePlugin import PngInfo

    n = max(len(r) for r in rows)
    c, h, w = rows[0].shape[1:]
    s = scale or grid_scale(h)
    font = ImageFont.load_default(size=LABEL_FONT_PX)
    text_w = max((int(font.getlength(label)) for label in labels), default=0) + 8
    hs, ws, label_w = h * s, w * s, max(label_width, text_w)
    canvas = np.full((len(rows) * (hs + pad) + pad, label_w + n * (ws + pad) + pad, 3), 255, dtype=np.uint8)
    for i, r in enumerate(rows):
        imgs = unit_to_uint8(r)  # (n, C, H, W)
        if imgs.shape[1] == 1:
            imgs = np.repeat(imgs, 3, axis=1)
        imgs = imgs.repeat(s, axis=2).repeat(s, axis=3)  # nearest-neighbour upscaling
        for j, im in enumerate(imgs):
            y, x = pad + i * (hs + pad), label_w + pad + j * (ws + pad)
            canvas[y:y + hs, x:x + ws] = im.transpose(1, 2, 0)
    img = Image.fromarray(canvas)
    draw = ImageDraw.Draw(img)
    for i, label in enumerate(labels):
        draw.text((4, pad + i * (hs + pad) + max(0, hs // 2 - LABEL_FONT_PX // 2 - 2)), label, fill=(0, 0, 0), font=font)
    path.parent.mkdir(parents=True, exist_ok=True)
    info = PngInfo()
    info.add_text(SCALE_KEY, str(s))
    img.save(path, pnginfo=info)
    return path


def save_metric_plot(path: Path, series: dict[str, tuple[list, list]], xlabel: str, ylabel: str, title: str = "") -> Path:
    """Line plot of named series {label: (xs, ys)}; log-scaled x when it spans a decade (T)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 3.2), dpi=120)
    for label, (xs, ys) in series.items():
        ax.plot(xs, ys, marker="o", label=label)
    xs_all = [x for xs, _ in series.values() for x in xs]
    if xs_all and min(xs_all) > 0 and max(xs_all) / min(xs_all) >= 10:
        ax.set_xscale("log")
        ax.set_xticks(sorted(set(xs_all)))
        ax.set_xticklabels([str(x) for x in sorted(set(xs_all))])
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def save_cross_model_plot(path_or_file, series: dict[str, dict], xlabel: str, ylabel: str, title: str,
                          chance: float | None = None, chance_label: str = "chance") -> None:
    """One metric against T for every model on one axis, with 95% CI error bars.

    series: {label: {"x": [...], "y": [...], "lo": [...], "hi": [...], "dashed": bool, "color_of": model}};
    labels sharing color_of share a colour (a model's two conditions). chance: a
    horizontal reference line, drawn only where the title says so. Writes a PNG
    to a path or a binary file object.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=100)
    colours = {}
    for i, (label, sr) in enumerate(series.items()):
        key = sr.get("color_of", label)
        colours.setdefault(key, f"C{len(colours) % 10}")
        y, lo, hi = (np.asarray(sr[k], dtype=float) for k in ("y", "lo", "hi"))
        yerr = np.stack([np.clip(y - lo, 0, None), np.clip(hi - y, 0, None)])
        yerr = np.where(np.isfinite(yerr), yerr, 0.0)
        # Dodge each series by a few percent of T so that overlapping CIs stay apart; the ticks mark the true T.
        x = np.asarray(sr["x"], dtype=float) * (1 + 0.025 * (i - (len(series) - 1) / 2))
        ax.errorbar(x, y, yerr=yerr, marker="o", ms=4, capsize=3, lw=1.4, color=colours[key],
                    ls="--" if sr.get("dashed") else "-", label=label)
    if chance is not None:
        ax.axhline(chance, color="0.35", lw=1, ls=":", label=chance_label)
    xs_all = sorted({x for sr in series.values() for x in sr["x"]})
    if xs_all and min(xs_all) > 0 and max(xs_all) / min(xs_all) >= 10:
        ax.set_xscale("log")
    ax.set_xticks(xs_all)
    ax.set_xticklabels([str(x) for x in xs_all])
    ax.minorticks_off()
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    if isinstance(path_or_file, (str, Path)):
        Path(path_or_file).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path_or_file, format="png")
    plt.close(fig)
