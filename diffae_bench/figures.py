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


def save_image_rows(path: Path, rows: list[torch.Tensor], labels: list[str], pad: int = 2, label_width: int = 110) -> Path:
    """Rows of images in [-1, 1] (each (n, C, H, W), same n) as one PNG, a text label left of each row."""
    n = max(len(r) for r in rows)
    c, h, w = rows[0].shape[1:]
    canvas = np.full((len(rows) * (h + pad) + pad, label_width + n * (w + pad) + pad, 3), 255, dtype=np.uint8)
    for i, r in enumerate(rows):
        imgs = unit_to_uint8(r)  # (n, C, H, W)
        if imgs.shape[1] == 1:
            imgs = np.repeat(imgs, 3, axis=1)
        for j, im in enumerate(imgs):
            y, x = pad + i * (h + pad), label_width + pad + j * (w + pad)
            canvas[y:y + h, x:x + w] = im.transpose(1, 2, 0)
    img = Image.fromarray(canvas)
    draw = ImageDraw.Draw(img)
    for i, label in enumerate(labels):
        draw.text((4, pad + i * (h + pad) + max(0, h // 2 - 6)), label, fill=(0, 0, 0))
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
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
