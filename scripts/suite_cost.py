"""What the suite costs: per task and model, seconds in each stage (issue 19).

    OMP_NUM_THREADS=1 .venv/bin/python scripts/suite_cost.py --dataset shapes            # the default suite
    .venv/bin/python scripts/suite_cost.py --dataset shapes --limit 64 --out results/perf/suite_cost_cpu_limit64.md

Runs `bench run`'s code (diffae_bench.harness.runner) on the committed reference
models with a fresh, empty cache (every stage computed once; what one task
shares with another, e.g. samples, is served from the cache as in a real
first run) and no records written, and times
the stages by wrapping the functions that do them, exclusive of the stages
they call (the decoding inside sample() counts as "decode"; "sample" is the
latent prior's share):

  encode / invert / decode / sample   the model's encode, encode_stochastic, decode, sample
  probe fits                          scikit-learn LogisticRegression.fit (probes, few-shot, manipulation)
  classifier training                 fake_detection's detector training
  features                            Frechet feature extraction (fd_cnn, Inception) and feature-net training
  bootstrap                           stats.resample_indices and the CI helpers
  other                               the rest of the task's wall time (z_usage's direct denoiser calls included)

Whole seconds, with the machine line. Measure on an idle machine: timings
taken while other work runs are meaningless.

`--estimate` gives the whole default suite's cost where timing it would take hours (this CPU): the
network is stubbed as with `--count`, every other stage runs and is timed as above (the
decode / invert / sample columns are then the samplers' own arithmetic), and the network's share
is each (task, model)'s evaluation count divided by that model's denoise rate, measured in the
same process just before (eager float32, the run's batch size, `--rate-seconds` per model). Two
limits: probe fits run on the stub's images, so their iteration counts (and seconds) can differ
from a real run's; and the sum assumes the network's time does not depend on its inputs.

`--count` instead counts the image network's evaluations (rows x calls of denoise) per task and
model, with the network replaced by one that returns zeros, so the default suite's work is known
in minutes on any machine, whatever its load; encoders and latent priors run as they are. The
counts are exact and machine-independent; divide by a measured evals/s (`bench perf`) for time.
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

STAGES = ("encode", "invert", "decode", "sample", "probe fits", "classifier training", "features", "bootstrap")


class StageTimer:
    """Exclusive wall time per (task, model, stage): a stage's time excludes the stages it calls."""

    def __init__(self):
        self.seconds = defaultdict(float)
        self.where = ("", "")  # (task, model) being run
        self._stack: list[list] = []  # [stage, start, child seconds]

    @contextmanager
    def stage(self, name: str):
        entry = [name, time.perf_counter(), 0.0]
        self._stack.append(entry)
        try:
            yield
        finally:
            self._stack.pop()
            total = time.perf_counter() - entry[1]
            self.seconds[(*self.where, name)] += total - entry[2]
            if self._stack:
                self._stack[-1][2] += total

    def wrap(self, owner, attr: str, name: str) -> None:
        fn = getattr(owner, attr)

        def timed(*args, **kwargs):
            with self.stage(name):
                return fn(*args, **kwargs)

        setattr(owner, attr, timed)


def instrument(timer: StageTimer) -> None:
    """Wrap the stage functions. Module functions first: tasks bind them by name when they are imported."""
    import sklearn.linear_model

    from diffae_bench.metrics import frechet, stats

    for attr in ("resample_indices", "mean_ci", "percentile_ci"):
        timer.wrap(stats, attr, "bootstrap")
    timer.wrap(frechet, "features_distance_ci", "bootstrap")
    for attr in ("extract", "train_feature_net"):
        timer.wrap(frechet, attr, "features")
    timer.wrap(sklearn.linear_model.LogisticRegression, "fit", "probe fits")

    from diffae_bench.models.base import DiffusionAutoencoder
    from diffae_bench.tasks import fake_detection

    timer.wrap(fake_detection, "train_detector", "classifier training")
    for attr, name in (("encode", "encode"), ("representations", "encode"), ("encode_stochastic", "invert"),
                       ("decode", "decode"), ("sample", "sample")):
        timer.wrap(DiffusionAutoencoder, attr, name)
    for cls in _subclasses(DiffusionAutoencoder):  # models that override encode / representations
        for attr in ("encode", "representations"):
            if attr in vars(cls):
                timer.wrap(cls, attr, "encode")


def count_network_evaluations(counts: dict, timer: StageTimer) -> None:
    """--count: every model's denoise returns zeros and adds its rows to counts[(task, model)]."""
    from diffae_bench.models.base import DiffusionAutoencoder

    for cls in _subclasses(DiffusionAutoencoder):
        if "denoise" in vars(cls):
            def stub(self, x_t, t, z=None):
                counts[timer.where] += x_t.shape[0]
                return torch.zeros_like(x_t)

            cls.denoise = stub


def measure_rates(models: list[str], device: str, batch_size: int, seconds: float) -> dict[str, float]:
    """Denoise evaluations per second of each model (perf.denoise_rate: eager float32, batch_size images)."""
    from diffae_bench.device import resolve_device
    from diffae_bench.perf.throughput import denoise_rate
    from diffae_bench.harness.runner import load_model_spec

    dev = resolve_device(device)
    return {(loaded := load_model_spec(spec, dev)).label: denoise_rate(loaded.model, batch_size, seconds, dev)
            for spec in models}


def _subclasses(cls):
    from diffae_bench.models import get_kind, model_names

    for name in model_names():
        get_kind(name)  # import the built-ins
    seen, todo = [], [cls]
    while todo:
        for sub in todo.pop().__subclasses__():
            seen.append(sub)
            todo.append(sub)
    return seen


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", default="shapes")
    ap.add_argument("--models", default=None, help="comma-separated; default the three <kind>-small-<dataset> references")
    ap.add_argument("--tasks", default=None, help="comma-separated; default every task")
    ap.add_argument("--limit", type=int, default=None, help="images per split (default: the tasks' own sizes)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--out", default=None, help="also write the table (Markdown) here")
    ap.add_argument("--count", action="store_true", help="count network evaluations (network stubbed) instead of timing")
    ap.add_argument("--estimate", action="store_true",
                    help="time every stage but the network, and add counts / measured denoise rate for it")
    ap.add_argument("--rate-seconds", type=float, default=20.0, help="with --estimate: seconds of denoise timing per model")
    ap.add_argument("--batch-size", type=int, default=64, help="images per network batch (bench run's default)")
    ap.add_argument("--profile", default=None, help="a suite profile (diffae_bench.harness.profiles), e.g. quick")
    a = ap.parse_args()
    if a.count and a.estimate:
        ap.error("--count and --estimate are exclusive")

    import diffae_bench.harness.runner as R
    from diffae_bench.device import describe_device, resolve_device
    from diffae_bench.numerics import cpu_capability
    from diffae_bench.provenance import machine
    from diffae_bench.harness.task import task_names

    timer = StageTimer()
    instrument(timer)
    counts = defaultdict(int)
    models = a.models.split(",") if a.models else [f"{k}-small-{a.dataset}" for k in ("diffae", "ddim", "dmz")]
    rates = measure_rates(models, a.device, a.batch_size, a.rate_seconds) if a.estimate else {}
    if a.count or a.estimate:
        count_network_evaluations(counts, timer)
    plain_run_task = R._run_task

    def run_task(cls, cfg, ctx, *args, **kwargs):
        timer.where = (cls.name, ctx.figure_prefix.split("__")[1])
        with timer.stage("other"):
            return plain_run_task(cls, cfg, ctx, *args, **kwargs)

    R._run_task = run_task
    tasks = a.tasks.split(",") if a.tasks else task_names()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="suite_cost_cache_") as cache_dir:
        _, records = R.run(R.RunOptions(tasks=tuple(tasks), models=tuple(models), dataset=a.dataset, limit=a.limit,
                                        device=a.device, batch_size=a.batch_size, cache_dir=cache_dir, write=False, profile=a.profile,
                                        offline=True, progress=False))
    total = time.perf_counter() - started
    device = resolve_device(a.device)
    dev = describe_device(device)
    m = machine()
    line = (f"machine: {m['cpu']}, {torch.get_num_threads()} torch thread(s), CPU kernels {cpu_capability()}, "
            f"device {dev.get('name', device.type) if isinstance(dev, dict) else dev}, torch {torch.__version__}, "
            f"Python {platform.python_version()}; dataset {a.dataset}, limit {a.limit or 'task defaults'}"
            + (f", profile {a.profile}" if a.profile else ""))
    if a.count:
        head = ["task", "model", "network evaluations (images x steps)"]
        body = [[rec["task"]["name"], rec["model"]["label"],
                 f"{counts.get((rec['task']['name'], rec['model']['label']), 0):,}"] for rec in records]
        body.append(["all", "all", f"{sum(counts.values()):,}"])
        line += " (network stubbed: evaluations counted, not timed)"
    elif a.estimate:
        head = ["task", "model", "evaluations", "network (est.)", *STAGES, "other", "total (est.)"]
        body, sums = [], defaultdict(float)
        for rec in records:
            task, model = rec["task"]["name"], rec["model"]["label"]
            cells = {s: timer.seconds.get((task, model, s), 0.0) for s in (*STAGES, "other")}
            n_eval = counts.get((task, model), 0)
            net = n_eval / rates[model]
            total_s = net + rec["wall_s"]
            for k, v in {**cells, "evaluations": n_eval, "network": net, "total": total_s}.items():
                sums[k] += v
            body.append([task, model, f"{n_eval:,}", f"{net:.0f}", *[f"{cells[s]:.0f}" for s in (*STAGES, "other")],
                         f"{total_s:.0f}"])
        body.append(["all", "all", f"{sums['evaluations']:,.0f}", f"{sums['network']:.0f}",
                     *[f"{sums[s]:.0f}" for s in (*STAGES, "other")], f"{sums['total']:.0f}"])
        line += ("; network stubbed, its seconds = evaluations / denoise rate measured here ("
                 + ", ".join(f"{m} {r:.0f} evals/s" for m, r in rates.items()) + f", batch {a.batch_size})")
        total += sums["network"]
    else:
        rows = []
        for rec in records:
            task, model = rec["task"]["name"], rec["model"]["label"]
            cells = {s: timer.seconds.get((task, model, s), 0.0) for s in (*STAGES, "other")}
            rows.append((task, model, cells, rec["wall_s"]))
        head = ["task", "model", *STAGES, "other", "total"]
        body = [[t, mdl, *[f"{c[s]:.0f}" for s in (*STAGES, "other")], f"{w:.0f}"] for t, mdl, c, w in rows]
        per_stage = [f"{sum(c[s] for _, _, c, _ in rows):.0f}" for s in (*STAGES, "other")]
        body.append(["all", "all", *per_stage, f"{sum(w for *_, w in rows):.0f}"])
    table = "\n".join(["| " + " | ".join(head) + " |", "|" + "---|" * len(head)] +
                      ["| " + " | ".join(r) + " |" for r in body])
    what = ("network evaluations" if a.count else "estimated: stages timed, network from counts" if a.estimate
            else "seconds per stage, exclusive")
    text = f"{line}\n\nwhole suite: {total:.0f} s wall ({what})\n\n{table}\n"
    print(text)
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(text)


if __name__ == "__main__":
    main()
