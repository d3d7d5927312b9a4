#!/usr/bin/env python3
"""What a device call would send, measured here before any device time is spent.

A lent GPU machine receives a copy of the working tree: tracked files, untracked files that git
does not ignore, a shared/ folder inside the checkout, and the ignored paths a call names in
`carry`; together at most 64 MiB (the device tool's README, "Limits"). A call over that is refused
after the machine was asked for. A symbolic link travels only as a link, so data carried through a
link (`.refdata/mnist -> ../shared/data/mnist`) does not arrive.

    python scripts/device_payload.py                 # the tree alone (e.g. DATASETS=shapes gpu_leg.sh)
    python scripts/device_payload.py .refdata .whl   # with what a call carries

Prints each part in MiB and exits 1 when the total is over the limit or a carried path holds a
link to outside the checkout, 2 when a carried path does not exist.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

LIMIT_BYTES = 64 * 1024 * 1024  # the working tree that travels, carried paths included
ROOT = Path(__file__).resolve().parent.parent


def _git_files(root: Path, *args: str) -> list[Path]:
    out = subprocess.run(["git", "ls-files", "-z", *args], cwd=root, capture_output=True, check=True).stdout
    return [root / p for p in out.decode().split("\0") if p]


def _size(path: Path) -> int:
    """Bytes a file sends: a link sends itself (its target's name), not what it points to."""
    return len(os.readlink(path)) if path.is_symlink() else path.stat().st_size if path.is_file() else 0


def _files_under(path: Path) -> list[Path]:
    if path.is_symlink() or path.is_file():
        return [path]
    return [Path(d) / f for d, _, fs in os.walk(path) for f in fs]  # os.walk does not follow links


def payload(root: Path, carry: list[str]) -> dict:
    """{"tracked", "untracked", "shared", "carry": bytes, "total": bytes, "links_out": [paths]}."""
    root = root.resolve()
    tracked = [p for p in _git_files(root) if p.is_symlink() or p.exists()]  # a deleted file sends nothing
    untracked = _git_files(root, "--others", "--exclude-standard")
    seen = set(tracked) | set(untracked)
    shared = [p for p in _files_under(root / "shared") if p not in seen] if (root / "shared").is_dir() else []
    seen |= set(shared)
    carried, links_out = [], []
    for c in carry:
        path = root / c
        if not (path.exists() or path.is_symlink()):
            raise FileNotFoundError(c)
        for p in _files_under(path):
            if p in seen:
                continue
            seen.add(p)
            carried.append(p)
            if p.is_symlink() and root not in p.resolve().parents:
                links_out.append(str(p.relative_to(root)))
        if path.is_dir():  # a linked folder inside a carried one is not walked: report it too
            for d, dirs, _ in os.walk(path):
                links_out += [str((Path(d) / x).relative_to(root)) for x in dirs
                              if (Path(d) / x).is_symlink() and root not in (Path(d) / x).resolve().parents]
    parts = {"tracked": tracked, "untracked": untracked, "shared": shared, "carry": carried}
    sizes = {k: sum(_size(p) for p in v) for k, v in parts.items()}
    return {**sizes, "total": sum(sizes.values()), "links_out": sorted(set(links_out))}


def main(argv: list[str]) -> int:
    try:
        p = payload(ROOT, argv)
    except FileNotFoundError as e:
        print(f"error: carried path '{e.args[0]}' does not exist", file=sys.stderr)
        return 2
    mib = lambda b: b / 2**20  # noqa: E731
    for k in ("tracked", "untracked", "shared", "carry"):
        print(f"{k:>9}: {mib(p[k]):6.1f} MiB")
    print(f"{'total':>9}: {mib(p['total']):6.1f} MiB of {mib(LIMIT_BYTES):.0f} MiB")
    bad = 0
    if p["total"] > LIMIT_BYTES:
        print(f"error: {mib(p['total'] - LIMIT_BYTES):.1f} MiB over the device call's limit: carry less "
              "(e.g. DATASETS=shapes needs no MNIST) or commit smaller files", file=sys.stderr)
        bad = 1
    for link in p["links_out"]:
        print(f"error: {link} is a link to outside the checkout: it travels as a link, not its data; copy it",
              file=sys.stderr)
        bad = 1
    return bad


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
