"""`bench`: the command line. Errors in user input print one line and exit non-zero."""

from __future__ import annotations

import json
import shlex
import sys
from enum import Enum
from typing import Optional

import typer

from ..errors import BenchError
from .results import OutputFormat

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, no_args_is_help=True,
                  help="Benchmark the representations of diffusion autoencoders.")


def _version(value: bool) -> None:
    if value:
        from .. import __version__

        typer.echo(f"diffae-bench {__version__}")
        raise typer.Exit()


@app.callback()
def _main(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="print the version and exit")):
    """Benchmark the representations of diffusion autoencoders."""


def progress_default(quiet: bool) -> bool:
    """Progress bars only where someone watches: not with --quiet, not when stderr is a file or a pipe (CI logs)."""
    return not quiet and sys.stderr.isatty()


def deprecated(old: str, new: str) -> None:
    typer.echo(f"warning: {old} is deprecated and goes in the next release; use {new}", err=True)


def parse_dataset_args(text: str | None) -> dict:
    """--dataset-args download=true,seed=3 -> {"download": True, "seed": 3} (bools and integers converted)."""
    out: dict = {}
    for item in (text or "").split(","):
        if not item.strip():
            continue
        key, eq, raw = item.partition("=")
        if not eq or not key.strip():
            raise BenchError(f"--dataset-args expects key=value[,key=value], got '{item}'")
        raw = raw.strip()
        low = raw.lower()
        out[key.strip()] = True if low in ("true", "yes", "1") else False if low in ("false", "no", "0") else (
            int(raw) if raw.lstrip("-").isdigit() else raw)
    return out


class Stage(str, Enum):
    autoencoder = "autoencoder"
    latent = "latent"


@app.command()
def train(
    kind: str = typer.Option("diffae", "--kind", help="what to train: diffae, ddim, dmz, or a plugin (bench ls models)"),
    model: Optional[str] = typer.Option(None, "--model", hidden=True, help="deprecated: --kind"),
    preset: str = typer.Option("tiny", help="network preset: tiny, small, paper64"),
    dataset: str = typer.Option("shapes", help="data set (bench ls datasets)"),
    data_root: Optional[str] = typer.Option(None, help="folder holding the data set's files"),
    image_size: Optional[int] = typer.Option(None, help="training resolution (default: the preset's)"),
    steps: Optional[int] = typer.Option(None, help="optimisation steps (total; default 1000)"),
    images: Optional[int] = typer.Option(None, help="alternatively: images to see over all legs (with --init-from the "
                                                    "earlier legs count; rounded up to whole batches)"),
    batch_size: Optional[int] = typer.Option(None, help="default: the preset's"),
    lr: Optional[float] = typer.Option(None, help="learning rate (default: the preset's)"),
    seed: int = typer.Option(0),
    out: str = typer.Option(..., help="run directory; an existing one is resumed"),
    stage: Stage = typer.Option(Stage.autoencoder, help="autoencoder, or latent (Diff-AE's latent DDIM, after stage 1)"),
    ckpt_every: int = typer.Option(500, help="steps between checkpoints"),
    train_limit: Optional[int] = typer.Option(None, "--train-limit", help="train on the first N training images only"),
    limit: Optional[int] = typer.Option(None, "--limit", hidden=True, help="deprecated: --train-limit"),
    quiet: bool = typer.Option(False, help="no progress bar"),
    device: str = typer.Option("auto", help="auto, cpu, cuda, cuda:N"),
    threads: Optional[int] = typer.Option(None, help="torch CPU threads (default: one per core; recorded): a CPU run's "
                                          "bits depend on it, so resume with the same count"),
    numeric_mode: str = typer.Option("fp32", help="network precision of the loss: fp32, fp32-cl, bf16, bf16-cl (recorded)"),
    compile_: bool = typer.Option(False, "--compile", help="torch.compile the loss (slow to start; recorded)"),
    compile_mode: str = typer.Option("default", help="with --compile: default, reduce-overhead (CUDA graphs), "
                                                     "max-autotune-no-cudagraphs"),
    log_every: Optional[int] = typer.Option(None, help="steps between loss reads (default: 1 on CPU, 50 on CUDA)"),
    diag_every: int = typer.Option(500, help="steps between high-t x0 checks (x0_diagnostic.jsonl; 0: off)"),
    max_seconds: Optional[float] = typer.Option(None, help="stop cleanly after this much training time (resumable)"),
    accumulate: int = typer.Option(1, help="micro-batches per step (gradient accumulation; the global batch stays "
                                           "--batch-size); under torchrun each process takes its share"),
    workers: Optional[int] = typer.Option(None, help="DataLoader workers decoding image-file data sets ahead "
                                                     "(default: up to 4; 0: decode in the step)"),
    prediction: str = typer.Option("eps", help="what the image network outputs: eps (the paper) or v (Salimans & Ho "
                                   "2022; a departure, README \"Departures\"); recorded in the model config"),
    warmup_steps: int = typer.Option(0, help="linear learning-rate warm-up over this run's first N steps (a new "
                                     "--init-from leg starts Adam afresh); 0: none"),
    init_from: Optional[str] = typer.Option(None, help="start from this trained model's EMA weights (run dir, checkpoint "
                                                       "or exported folder): a new leg of its training, recorded"),
):
    """Train a model (stage 1) or Diff-AE's latent DDIM (stage 2); resumes an existing run.

    On CUDA the step runs GPU-resident (data, noise, fused Adam, loss read every
    --log-every steps); --numeric-mode bf16-cl [--compile] is the fast path.
    """
    from ..numerics import get_mode
    from ..training.train import TrainOptions, train_autoencoder, train_latent

    if model is not None:
        deprecated("bench train --model (a kind here, a trained model in bench run)", "--kind")
        kind = model
    if limit is not None:
        deprecated("bench train --limit (images per split in bench run)", "--train-limit")
        train_limit = limit if train_limit is None else train_limit
    if steps is not None and images is not None:
        raise BenchError("give --steps or --images, not both")
    if images is not None and stage is Stage.latent:
        raise BenchError("--images counts images; for the latent stage give --steps")
    opts = TrainOptions(model=kind, preset=preset, dataset=dataset, data_root=data_root, image_size=image_size,
                        steps=1000 if steps is None else steps, batch_size=batch_size, lr=lr, seed=seed, out=out,
                        ckpt_every=ckpt_every, device=device, threads=threads, train_limit=train_limit, progress=progress_default(quiet),
                        numeric_mode=get_mode(numeric_mode).name, compile=compile_, compile_mode=compile_mode,
                        log_every=log_every, diag_every=diag_every, max_seconds=max_seconds,
                        accumulate=accumulate, init_from=init_from, images=images, warmup_steps=warmup_steps,
                        prediction=prediction,
                        **({} if workers is None else {"workers": workers}))
    summary = (train_latent if stage is Stage.latent else train_autoencoder)(opts)
    from ..training.x0_diagnostic import summary_lines

    for line in summary_lines(summary.get("x0_diagnostic")):
        typer.echo(line)
    speed = f", {summary['images_per_s']:.0f} images/s" if summary["images_per_s"] else ""
    loss = f"{summary['loss_ema']:.4f}" if summary["loss_ema"] is not None else "n/a"
    if summary["interrupted"]:
        typer.echo(f"interrupted at step {summary['step']} (loss {loss}{speed}); checkpoint saved, "
                   "run the same command to resume", err=True)
        raise typer.Exit(130)
    budget = " (time budget reached; the same command resumes)" if summary.get("out_of_time") else ""
    typer.echo(f"done: step {summary['step']}, loss {loss}{speed} -> {summary['checkpoint']}{budget}")


def _first_line(doc: str | None) -> str:
    return (doc or "").strip().splitlines()[0] if (doc or "").strip() else ""


@app.command("ls")
def ls(what: str = typer.Argument(..., help="tasks, models, presets or datasets"),
       fmt: str = typer.Option("text", "--format", help="text or json")):
    """List registered tasks, models, presets or data sets."""
    from ..data import DATASETS
    from ..models import MODELS
    from ..presets import PRESETS
    from ..registry import Registry, warn_plugin_errors
    from ..harness.task import TASKS

    lists = Registry("list")
    lists.add("tasks", lambda: [(n, f"v{t.version}  {t.description}") for n, t in TASKS.load_all().items()])
    lists.add("models", lambda: [(n, k.description) for n, k in MODELS.load_all().items()])
    lists.add("presets", lambda: [(n, f"{p.image_size}px, decoder {p.unet.base_channels}ch x {p.unet.channel_mult}, "
                                      f"z_dim {p.encoder.z_dim}") for n, p in ((n, PRESETS.get(n)) for n in PRESETS)])
    lists.add("datasets", lambda: [(n, _first_line(sys.modules[f.__module__].__doc__)) for n, f in DATASETS.load_all().items()])
    if fmt not in ("text", "json"):
        raise BenchError(f"--format must be text or json, got '{fmt}'")
    items = lists.get(what)()
    if fmt == "json":
        typer.echo(json.dumps([{"name": n, "description": d} for n, d in items], indent=1))
    else:
        for name, desc in items:
            typer.echo(f"{name:16s} {desc}")
    warn_plugin_errors(TASKS, MODELS, DATASETS, PRESETS)  # plugins that cannot be used, by name


@app.command()
def run(
    task: str = typer.Option(..., help="comma-separated tasks (bench ls tasks)"),
    model: str = typer.Option(..., help="comma-separated run directories from `bench train`, or module:factory"),
    dataset: Optional[str] = typer.Option(None, help="data set (default: the one the first model was trained on)"),
    data_root: Optional[str] = typer.Option(None, help="folder holding the data set's files"),
    limit: Optional[int] = typer.Option(None, help="at most N images per split for every task (quick runs)"),
    T: Optional[str] = typer.Option(None, "--T", help="DDIM steps for every task that takes T: comma-separated for "
                                                     "tasks that sweep T (e.g. 10,20), one value for the others"),
    steps: Optional[str] = typer.Option(None, "--steps", hidden=True, help="deprecated: --T"),
    seed: int = typer.Option(0, help="seeds noise, probe draws and bootstrap resamples"),
    out: Optional[str] = typer.Option(None, help="run directory for records and figures (default runs/bench/<time>)"),
    device: str = typer.Option("auto", help="auto, cpu, cuda, cuda:N"),
    batch_size: int = typer.Option(64, help="images per network batch"),
    threads: Optional[int] = typer.Option(None, help="torch CPU threads (default: one per core); numbers agree across "
                                          "counts to float rounding, bit for bit only at the same count (recorded)"),
    set_: list[str] = typer.Option([], "--set", help="task option, e.g. --set reconstruction.n_images=64 (repeatable)"),
    profile: Optional[str] = typer.Option(None, help="quick: smaller task sizes, ~4x less work, wider CIs (never "
                                                     "compared with default-size records); --set overrides it"),
    leaderboard: Optional[str] = typer.Option(None, help="append the records' rows to this CSV (e.g. results/leaderboard.csv)"),
    cache_dir: Optional[str] = typer.Option(None, help="cache folder (default $DIFFAE_BENCH_CACHE or ~/.cache/diffae_bench)"),
    no_cache: bool = typer.Option(False, "--no-cache", help="recompute everything, store nothing"),
    fmt: OutputFormat = typer.Option(OutputFormat.terminal, "--format", help="terminal, markdown, csv, latex, or json "
                                                                              "(the records, on stdout)"),
    quiet: bool = typer.Option(False, help="no progress bars (also off when stderr is not a terminal)"),
    dataset_args: Optional[str] = typer.Option(None, help="data set loader options, e.g. download=true (MNIST)"),
    all_metrics: bool = typer.Option(False, help="print every metric, not only the main ones (bench table RUN_DIR does too)"),
    numeric_mode: str = typer.Option("auto", help="auto (the measured per-path defaults), fp32, fp32-cl, bf16, bf16-cl, "
                                                  "or per path: decode=bf16,invert=fp32,encode=fp32"),
    offline: bool = typer.Option(False, "--offline", help="never download LPIPS / FID weights (also DIFFAE_BENCH_OFFLINE=1)"),
    lpips_weights: Optional[str] = typer.Option(None, help="AlexNet backbone file for LPIPS (sha256-checked; bench weights)"),
    inception_weights: Optional[str] = typer.Option(None, help="torch-fidelity InceptionV3 file for FID (sha256-checked)"),
):
    """Evaluate tasks on trained models: writes one record per (task, model, data set) and prints a table."""
    from ..harness.runner import RunOptions, parse_task_options, run as run_tasks

    if steps is not None:
        if T is not None:
            raise BenchError("give --T only (--steps is its deprecated name)")
        typer.echo("warning: --steps is deprecated and goes in the next release; use --T", err=True)
        T = steps
    try:
        T_values = tuple(int(v) for v in T.split(",")) if T else None
    except ValueError:
        raise BenchError(f"--T expects comma-separated integers, got '{T}'") from None
    opts = RunOptions(tasks=tuple(t.strip() for t in task.split(",") if t.strip()),
                      models=tuple(m.strip() for m in model.split(",") if m.strip()), dataset=dataset,
                      data_root=data_root, limit=limit, T=T_values, seed=seed, out=out, device=device,
                      batch_size=batch_size, threads=threads, cache_dir=cache_dir, use_cache=not no_cache, leaderboard=leaderboard,
                      task_options=parse_task_options(set_), profile=profile, progress=progress_default(quiet), numeric_mode=numeric_mode,
                      dataset_options=parse_dataset_args(dataset_args),
                      offline=offline, lpips_weights=lpips_weights, inception_weights=inception_weights,
                      command=shlex.join(["bench", *sys.argv[1:]]) if sys.argv else None)
    out_dir, records = run_tasks(opts)
    from ..harness.records import record_rows
    from ..reporting.tables import render, rows_frame

    if fmt is OutputFormat.json:
        typer.echo(json.dumps({"run_dir": str(out_dir), "records": records}, indent=1, default=str))
    else:
        rows = rows_frame([r for rec in records for r in record_rows(rec)])
        typer.echo(render(rows, fmt.value, main_only=not all_metrics))
    # Each distinct note once, with the (task / model) pairs it came from.
    notes: dict[str, list[str]] = {}
    for rec in records:
        for note in rec["notes"]:
            notes.setdefault(note, []).append(f"{rec['task']['name']} / {rec['model']['label']}")
    for note, where in notes.items():
        shown = ", ".join(where[:3]) + (f" and {len(where) - 3} more" if len(where) > 3 else "")
        typer.echo(f"note [{shown}]: {note}", err=True)
    hits = sum(r["cache"]["hits"] for r in records)
    misses = sum(r["cache"]["misses"] for r in records)
    wall = sum(r["wall_s"] for r in records)
    typer.echo(f"{len(records)} record(s) in {out_dir} ({wall:.1f} s; cache: {hits} hit(s), {misses} computed)", err=True)


@app.command()
def perf(
    presets: str = typer.Option("tiny,small", help="comma-separated presets"),
    models: str = typer.Option("diffae,ddim,dmz", help="comma-separated models"),
    batch_size: int = typer.Option(32, help="batch for the sampling measurement"),
    seconds: float = typer.Option(10.0, help="time per measurement"),
    device: str = typer.Option("auto"),
    modes: Optional[str] = typer.Option(None, help="numeric modes to compare with fp32 (default: fp32-cl and this device's defaults)"),
    compile_: bool = typer.Option(False, "--compile", help="also time a torch.compile'd training step (of the fast path)"),
    compile_mode: str = typer.Option("default", help="--compile's mode: default, reduce-overhead, max-autotune-no-cudagraphs"),
    fast: Optional[bool] = typer.Option(None, "--fast/--no-fast", help="time bench train's GPU step (default: on CUDA)"),
    fast_mode: str = typer.Option("bf16-cl", help="numeric mode of the fast step"),
    train_batches: Optional[str] = typer.Option(None, help="comma-separated training batches (default: the preset's)"),
    eval_: bool = typer.Option(True, "--eval/--no-eval", help="also time sampling and inversion"),
    steps_per_call: int = typer.Option(10, help="training steps per timed call (one device sync a call)"),
    accuracy: bool = typer.Option(False, "--accuracy", help="instead: metric deltas of each mode per path (PASS/FAIL) and cost slopes"),
    steps: int = typer.Option(300, help="--accuracy: training steps of the tiny 16-px model"),
    run_dir: Optional[str] = typer.Option(None, "--run", help="--accuracy: only the train path's loss/gradient check, "
                                                                "on this trained run (batches of --batch-size)"),
    batches: int = typer.Option(4, help="--accuracy --run: batches compared"),
):
    """Throughput benchmark: training images/s and sampling network evaluations/s, fp32 vs optimised."""
    mode_list = [m.strip() for m in modes.split(",") if m.strip()] if modes else None
    if accuracy:
        from ..perf.accuracy import accuracy as run_accuracy, train_agreement_report

        if run_dir:
            train_agreement_report(run_dir, mode_list or ["bf16-cl", "bf16"], device, batch_size, batches)
        else:
            run_accuracy(mode_list or ["bf16", "fp32-cl"], device=device, steps=steps)
        return
    from ..perf.throughput import run_perf

    try:
        batches = [int(b) for b in train_batches.split(",")] if train_batches else None
    except ValueError:
        raise BenchError(f"--train-batches expects comma-separated integers, got '{train_batches}'") from None
    run_perf(presets.split(","), models.split(","), batch_size, seconds, device, mode_list, compile_, fast=fast,
             fast_mode=fast_mode, compile_mode=compile_mode, train_batches=batches, eval_=eval_,
             steps_per_call=steps_per_call)


@app.command()
def demo(
    preset: str = typer.Option("tiny", help="preset to train"),
    steps: int = typer.Option(1500, help="autoencoder training steps"),
    latent_steps: int = typer.Option(1000, help="latent DDIM training steps"),
    out: str = typer.Option("runs/demo", help="run directory (resumed if present)"),
    device: str = typer.Option("auto"),
):
    """The quick start: train a small Diff-AE on `shapes`, then show what it learned."""
    from ..demo import run_demo

    run_demo(preset=preset, steps=steps, latent_steps=latent_steps, out=out, device=device)


from .results import register as _register_results  # noqa: E402  (table, compare, leaderboard)

_register_results(app)

from .weights import register as _register_weights  # noqa: E402  (weights download|verify|path)

_register_weights(app)

from .report import register as _register_report  # noqa: E402  (report)

_register_report(app)


CRASH_EXIT_CODE = 70  # EX_SOFTWARE: a bug, distinct from "regression" (1) and "bad input / incomparable" (2)

# typer's own usage errors (a value that is not an integer, a --format not among
# the choices, an unknown option): the class is found through BadParameter so
# that this works with typer's vendored click and with click itself.
UsageError = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError")


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def main(argv: list[str] | None = None) -> None:
    """The `bench` entry point: a user error is one line on stderr and exit 2 (3: training diverged; 70: a crash)."""
    try:
        rv = app(args=argv, prog_name="bench", standalone_mode=False)
    except UsageError as e:
        if type(e).__name__ == "NoArgsIsHelpError":  # `bench` alone: the help (typer's rich help already printed itself)
            if e.format_message().strip():
                typer.echo(e.format_message(), err=True)
            sys.exit(e.exit_code)
        command = f" {e.ctx.info_name}" if e.ctx is not None and e.ctx.parent is not None else ""
        print(f"error: {_one_line(e.format_message())} (bench{command} --help)", file=sys.stderr)
        sys.exit(2)
    except BenchError as e:
        print(f"error: {_one_line(e)}", file=sys.stderr)
        sys.exit(e.exit_code)
    except typer.Abort:
        print("aborted", file=sys.stderr)
        sys.exit(1)
    except Exception:  # a bug, not the user's input: keep the traceback, and say so in the exit code
        import traceback

        traceback.print_exc()
        print(f"bench crashed (exit {CRASH_EXIT_CODE}): this is a bug, not a regression or bad input", file=sys.stderr)
        sys.exit(CRASH_EXIT_CODE)
    # standalone_mode=False returns typer.Exit's code (compare's 1, an interrupt's 130) instead of exiting
    sys.exit(rv if isinstance(rv, int) else 0)

