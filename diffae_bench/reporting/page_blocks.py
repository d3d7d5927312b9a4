"""Generated blocks in Markdown pages: `<!-- NAME: ARGS -->`, the generated text, `<!-- NAME:end -->`.

Results pages (results/legs, results/diagnostics) quote tables that scripts make from committed files,
never typed figures; each block's comment holds the arguments that remake it, so a page can be
regenerated (`rewrite`) and a test can check every block (`blocks`). A comment's arguments are separated
by "|" (`arguments`). Used by scripts/leg_table.py, scripts/x0_table.py, scripts/replacement_rule.py,
scripts/recon_per_image.py and scripts/dmz_codes.py.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Callable


def pattern(name: str) -> re.Pattern:
    """A block: its comment, then anything up to its end marker that is not another block's comment (so an
    empty block, the comment directly above its end marker, never swallows the next block)."""
    n = re.escape(name)
    return re.compile(rf"<!-- {n}: (.+?) -->\n((?:(?!<!-- {n}).)*?)<!-- {n}:end -->", re.S)


def blocks(text: str, name: str) -> list[tuple[str, str]]:
    """(arguments, quoted text without its final newline) of every NAME block in text."""
    return [(args, body[:-1] if body.endswith("\n") else body) for args, body in pattern(name).findall(text)]


def arguments(args: str) -> list[str]:
    """A block comment's arguments: `A | B | C` -> ["A", "B", "C"]."""
    return [part.strip() for part in args.split("|")]


def rewrite(page: Path, name: str, render: Callable[[str], str]) -> int:
    """Regenerate every NAME block of a page with render(arguments); returns the number of blocks."""
    def block(m: re.Match) -> str:
        return f"<!-- {name}: {m.group(1)} -->\n{render(m.group(1))}\n<!-- {name}:end -->"

    text, n = pattern(name).subn(block, page.read_text())
    page.write_text(text)
    return n
