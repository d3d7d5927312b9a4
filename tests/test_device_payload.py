"""scripts/device_payload.py: what a device call would send, measured before device time is spent."""

from __future__ import annotations

import importlib.util
import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("device_payload", ROOT / "scripts" / "device_payload.py")
DP = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(DP)


def _write(path: Path, n: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * n)


def test_payload_counts_what_travels_and_nothing_else(tmp_path):
    repo = tmp_path / "repo"
    _write(repo / "a.py", 1000)
    _write(repo / "gone.bin", 7000)
    (repo / ".gitignore").write_text("/ignored/\n/.refdata/\n")  # 21 bytes, tracked
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    subprocess.run(["git", "add", "-A"], cwd=repo, check=True)
    (repo / "gone.bin").unlink()  # tracked but deleted: sends nothing
    _write(repo / "new.txt", 200)  # untracked, not ignored: travels
    _write(repo / "ignored" / "big.bin", 5000)  # ignored and not carried: stays
    _write(repo / "shared" / "d.bin", 40)  # shared/ inside the checkout travels
    _write(repo / ".refdata" / "mnist" / "f.gz", 300)
    outside = tmp_path / "outside"
    _write(outside / "g.gz", 9000)
    os.symlink(outside, repo / ".refdata" / "linked")

    p = DP.payload(repo, [".refdata"])
    assert p["tracked"] == 1000 + 21
    assert p["untracked"] == 200 + 40  # git lists shared/d.bin as untracked: counted once
    assert p["shared"] == 0 and p["carry"] == 300  # the linked folder's 9000 bytes do not travel
    assert p["total"] == 1021 + 240 + 300
    assert p["links_out"] == [".refdata/linked"]
    assert DP.payload(repo, [])["total"] == 1021 + 240


def test_the_checkout_alone_fits_a_device_call():
    """Tracked files always travel: past 64 MiB no device call can be made (issue 21's GPU legs)."""
    tracked = DP.payload(ROOT, [])["tracked"]
    assert tracked <= DP.LIMIT_BYTES, f"tracked files are {tracked / 2**20:.1f} MiB, over a device call's 64 MiB"
