"""`bench`: the command line. Errors in user input print one line and exit non-zero."""

from __future__ import annotations

import sys
from enum import Enum
from typing import Optional

import typer

from .errors import BenchError

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, no_args_is_help=True,
                  help="Benchmark the representations of diffusion autoencoders.")


class Stage(str, Enum):
    autoencoder = "autoencoder"
    latent = "latent"


@app.command()
def train(
    model: str = typer.Option("diffae", help="model: diffae, ddim, dmz, or a plugin name"),
    preset: str = typer.Option("tiny", help="network preset: tiny, small, paper64"),
    dataset: str = typer.Option("shapes", help="data set (bench ls datasets)"),
    data_root: Optional[str] = typer.Option(None, help="folder holding the data set's files"),
    image_size: Optional[int] = typer.Option(None, help="training resolution (default: the preset's)"),
    steps: Optional[int] = typer.Option(None, help="optimisation steps (total; default 1000)"),
    images: Optional[int] = typer.Option(None, help="alternatively: images to see (steps = images / batch size)"),
    batch_size: Optional[int] = typer.Option(None, help="default: the preset's"),
    lr: Optional[float] = typer.Option(None, help="learning rate (default: the preset's)"),
    seed: int = typer.Option(0),
    out: str = typer.Option(..., help="run directory; an existing one is resumed"),
    stage: Stage = typer.Option(Stage.autoencoder, help="autoencoder, or latent (Diff-AE's latent DDIM, after stage 1)"),
    ckpt_every: int = typer.Option(500, help="steps between checkpoints"),
    limit: Optional[int] = typer.Option(None, help="train on the first N training images only"),
    device: str = typer.Option("auto", help="auto, cpu, cuda, cuda:N"),
):
    """Train a model (stage 1) or Diff-AE's latent DDIM (stage 2); resumes an existing run."""
    from .presets import PRESETS
    from .train import TrainOptions, train_autoencoder, train_latent

    if steps is not None and images is not None:
        raise BenchError("give --steps or --images, not both")
    if images is not None:
        if stage is Stage.latent:
            raise BenchError("--images counts images; for the latent stage give --steps")
        bs = batch_size or PRESETS.get(preset).train.batch_size
        steps = -(-images // bs)
    opts = TrainOptions(model=model, preset=preset, dataset=dataset, data_root=data_root, image_size=image_size,
                        steps=steps or 1000, batch_size=batch_size, lr=lr, seed=seed, out=out,
                        ckpt_every=ckpt_every, device=device, train_limit=limit)
    summary = (train_latent if stage is Stage.latent else train_autoencoder)(opts)
    if summary["interrupted"]:
        typer.echo(f"interrupted at step {summary['step']}; checkpoint saved, run the same command to resume", err=True)
        raise typer.Exit(130)
    speed = f", {summary['images_per_s']:.0f} images/s" if summary["images_per_s"] else ""
    typer.echo(f"done: step {summary['step']}, loss {summary['loss_ema']:.4f}{speed} -> {summary['checkpoint']}")


def _first_line(doc: str | None) -> str:
    return (doc or "").strip().splitlines()[0] if (doc or "").strip() else ""


@app.command("ls")
def ls(what: str = typer.Argument(..., help="models, presets or datasets")):
    """List registered models, presets or data sets."""
    from .data import DATASETS
    from .models import get_kind, model_names
    from .presets import PRESETS
    from .registry import Registry

    lists = Registry("list")
    lists.add("models", lambda: [(n, get_kind(n).description) for n in model_names()])
    lists.add("presets", lambda: [(n, f"{p.image_size}px, decoder {p.unet.base_channels}ch x {p.unet.channel_mult}, "
                                      f"z_dim {p.encoder.z_dim}") for n, p in ((n, PRESETS.get(n)) for n in PRESETS)])
    lists.add("datasets", lambda: [(n, _first_line(sys.modules[DATASETS.get(n).__module__].__doc__)) for n in DATASETS])
    for name, desc in lists.get(what)():
        typer.echo(f"{name:12s} {desc}")


@app.command()
def perf(
    presets: str = typer.Option("tiny,small", help="comma-separated presets"),
    models: str = typer.Option("diffae", help="comma-separated models"),
    batch_size: int = typer.Option(32, help="batch for the sampling measurement"),
    seconds: float = typer.Option(10.0, help="time per measurement"),
    device: str = typer.Option("auto"),
):
    """Throughput benchmark: training images/s and sampling network evaluations/s."""
    from .perf import run_perf

    run_perf(presets.split(","), models.split(","), batch_size, seconds, device)


@app.command()
def demo(
    preset: str = typer.Option("tiny", help="preset to train"),
    steps: int = typer.Option(1500, help="autoencoder training steps"),
    latent_steps: int = typer.Option(2000, help="latent DDIM training steps"),
    out: str = typer.Option("runs/demo", help="run directory (resumed if present)"),
    device: str = typer.Option("auto"),
):
    """The quick start: train a small Diff-AE on `shapes`, then show what it learned."""
    from .demo import run_demo

    run_demo(preset=preset, steps=steps, latent_steps=latent_steps, out=out, device=device)


def main() -> None:
    try:
        app()
    except BenchError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(e.exit_code)


if __name__ == "__main__":
    main()
