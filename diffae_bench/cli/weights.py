"""`bench weights download|verify|path`: the LPIPS and FID weights, for machines with and without internet.

Kept out of cli.py so it loads no model code; cli.py adds it with `register(app)`.
"""

from __future__ import annotations

from typing import List, Optional

import typer

from ..errors import BenchError


def _names(names: list[str]) -> list[str]:
    from ..metrics import weights as W

    return [W.get(n).name for n in names] if names else list(W.KNOWN)


def register(app: typer.Typer) -> None:
    """Add `bench weights ...` to a typer app."""
    weights_app = typer.Typer(no_args_is_help=True, help="LPIPS (AlexNet) and FID (InceptionV3) weights: "
                                                          "download, verify, show where they go.")
    app.add_typer(weights_app, name="weights")

    @weights_app.command("path")
    def path(names: List[str] = typer.Argument(None, help="alexnet (LPIPS) and/or inception (FID); default: both")):
        """Where each file is looked for, and whether the published file is there."""
        from ..metrics import weights as W

        for name in _names(names):
            w, p = W.KNOWN[name], W.where(name)
            state = "missing" if not p.is_file() else (W.check_file(p, w) or "ok")
            typer.echo(f"{name:10s} {w.metric:6s} {p}  [{state}]")

    @weights_app.command("verify")
    def verify(
        names: List[str] = typer.Argument(None, help="alexnet and/or inception; default: both"),
        file: Optional[str] = typer.Option(None, "--file", help="check this file instead of the cache (one name)"),
    ):
        """Check each file's sha256 against the published one; exit 1 when one is missing or different."""
        from pathlib import Path

        from ..metrics import weights as W

        chosen = _names(names)
        if file is not None and len(chosen) != 1:
            raise BenchError("--file checks one file: name which weights it should be (alexnet or inception)")
        bad = 0
        for name in chosen:
            w = W.KNOWN[name]
            p = Path(file).expanduser() if file else W.where(name)
            problem = "missing" if not p.is_file() else W.check_file(p, w)
            bad += problem is not None
            typer.echo(f"{name:10s} {p}: " + (f"ok (sha256 {w.sha256})" if problem is None else problem))
        if bad:
            raise typer.Exit(1)

    @weights_app.command("download")
    def download(
        names: List[str] = typer.Argument(None, help="alexnet and/or inception; default: both"),
        quiet: bool = typer.Option(False, help="no progress bar"),
    ):
        """Fetch the published files through torch.hub into its cache, checked by sha256 (nothing kept if wrong)."""
        from ..metrics import weights as W

        if W.offline_from_env():
            raise BenchError(f"{W.OFFLINE_ENV} is set: nothing is downloaded (unset it, or place the files by hand)")
        for name in _names(names):
            w, p = W.KNOWN[name], W.hub_checkpoint_dir() / W.KNOWN[name].file
            if p.is_file() and W.check_file(p, w) is None:
                typer.echo(f"{name:10s} {p}: already there (sha256 ok)")
                continue
            if p.is_file():
                raise BenchError(f"{p} is there but is not the published file ({W.check_file(p, w)}); delete it first")
            W.download(name, progress=not quiet)
            typer.echo(f"{name:10s} {p}: downloaded from {w.url}, sha256 ok")
