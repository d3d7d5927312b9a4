"""Checks of a `bench report` page: its structure (any HTML parser) and its rendering in headless Chromium.

`structure_problems` is pure (HTML text in, list of problems out): tables
present, every <img> a data: URI that decodes as a PNG, every link an anchor
on the page, nothing loaded from outside. The browser functions run the
system's Chromium (apt: chromium) without a sandbox, GPU or network.
"""

from __future__ import annotations

import base64
import binascii
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")
_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
          "--disable-extensions", "--disable-background-networking", "--mute-audio")


class _Collect(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: dict[str, int] = {}
        self.ids: set[str] = set()
        self.imgs: list[dict] = []
        self.links: list[str] = []
        self.sources: list[tuple[str, str]] = []  # (tag, url) of anything else that loads a resource

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags[tag] = self.tags.get(tag, 0) + 1
        if a.get("id"):
            self.ids.add(a["id"])
        if tag == "img":
            self.imgs.append(a)
        elif tag == "a" and "href" in a:
            self.links.append(a["href"] or "")
        elif tag in ("script", "link", "iframe", "source", "video", "audio", "embed", "object") and \
                (a.get("src") or a.get("href") or a.get("data")):
            self.sources.append((tag, a.get("src") or a.get("href") or a.get("data")))


def parse(html_text: str) -> _Collect:
    c = _Collect()
    c.feed(html_text)
    c.close()
    return c


def structure_problems(html_text: str, datasets: list[str] | None = None) -> list[str]:
    """What is wrong with a report page (empty when nothing is)."""
    c = parse(html_text)
    problems = []
    if not c.tags.get("table"):
        problems.append("no <table>")
    if not c.imgs:
        problems.append("no <img>")
    for i, img in enumerate(c.imgs):
        src, alt = img.get("src") or "", img.get("alt")
        if not src.startswith("data:image/png;base64,"):
            problems.append(f"img {i} ({alt}): not an embedded PNG: {src[:60]!r}")
            continue
        try:
            data = base64.b64decode(src.split(",", 1)[1], validate=True)
        except (binascii.Error, ValueError):
            problems.append(f"img {i} ({alt}): base64 does not decode")
            continue
        if not data.startswith(PNG_MAGIC):
            problems.append(f"img {i} ({alt}): not PNG data")
        if not alt:
            problems.append(f"img {i}: no alt text")
    for href in c.links:
        if not href.startswith("#"):
            problems.append(f"link to outside the page: {href!r}")
        elif href[1:] not in c.ids:
            problems.append(f"broken anchor: {href!r}")
    problems += [f"<{tag}> loads {url!r}" for tag, url in c.sources]
    for d in datasets or []:
        if f"data-{d}" not in c.ids:
            problems.append(f"no section for data set {d}")
    return problems


# ---------------------------------------------------------------- headless Chromium
def find_chromium() -> str | None:
    """Path of a Chromium / Chrome binary on PATH, or None."""
    return next((p for p in map(shutil.which, CHROMIUM_NAMES) if p), None)


def _run(browser: str, args: list[str], timeout: float) -> subprocess.CompletedProcess:
    """The browser with a throw-away profile and XDG folders: nothing written to the user's home."""
    import os
    import tempfile

    with tempfile.TemporaryDirectory(prefix="diffae-bench-chromium-") as tmp:
        env = {**os.environ, "XDG_CONFIG_HOME": tmp, "XDG_CACHE_HOME": tmp, "HOME": tmp}
        return subprocess.run([browser, *_FLAGS, f"--user-data-dir={tmp}/profile", *args], capture_output=True,
                              timeout=timeout, check=True, env=env)


def dump_dom(browser: str, page: Path, timeout: float = 180) -> str:
    """The DOM as the browser parsed it (serialised after load)."""
    return _run(browser, ["--dump-dom", Path(page).resolve().as_uri()], timeout).stdout.decode("utf-8", "replace")


def screenshot(browser: str, page: Path, out_png: Path, width: int = 1400, height: int = 40000,
               timeout: float = 300) -> Path:
    """A screenshot of the page's top `height` pixels at `width` (a tall window: the whole page)."""
    out_png = Path(out_png).resolve()
    _run(browser, [f"--window-size={width},{height}", f"--screenshot={out_png}", Path(page).resolve().as_uri()], timeout)
    return out_png


def section_tops(png: Path, min_dark_fraction: float = 0.9, max_rule_px: int = 4) -> list[int]:
    """y of each data-set section's top rule in a screenshot of a report.

    The rule is a thin dark line across the page (the section's 2-px border). Image grids of
    black-background data (MNIST) give dark rows too, but in bands taller than a rule and with the
    label column and gaps light: runs of dark rows taller than max_rule_px are not rules.
    """
    import numpy as np
    from PIL import Image

    grey = np.asarray(Image.open(png).convert("L"))
    rows = np.where((grey < 100).mean(1) > min_dark_fraction)[0]
    runs: list[list[int]] = []
    for y in rows:
        if runs and y == runs[-1][1] + 1:
            runs[-1][1] = int(y)
        else:
            runs.append([int(y), int(y)])
    return [a for a, b in runs if b - a + 1 <= max_rule_px]
