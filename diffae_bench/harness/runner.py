"""`bench run`: evaluate tasks on models and write one record per (task, model, data set).

Everything that can be checked cheaply is checked before any work starts
(task and model names, task options, checkpoints, the data set and the
attributes a task needs), so bad input costs nothing and writes nothing.
Each record is written atomically as soon as its task finishes.
"""

from __future__ import annotations

import importlib
import json
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import torch

from . import records as R
from .. import distributed as dist
from .cache import Cache
from ..checkpoint import atomic_write_json, to_jsonable
from .context import EvalContext, model_fingerprint
from ..data import DATASETS, load_dataset
from ..device import describe_device, resolve_device
from ..errors import BenchError, DataError
from ..models import MODELS, DiffusionAutoencoder, load_model, model_names
from .profiles import profile_options
from ..numerics import apply_numeric_modes, numerics_fingerprint, parse_modes, pinned_threads
from ..provenance import git_state, library_versions, machine
from .task import T_override, get_task, takes_T


@dataclass(frozen=True)
class RunOptions:
    tasks: tuple[str, ...]  # task names (bench ls tasks)
    models: tuple  # run directories / checkpoint files, committed reference names, module:factory, or model objects
    dataset: str | None = None  # data set name; None = the one the (first) model was trained on
    data_root: str | None = None  # folder of the data set's files
    limit: int | None = None  # cap on images per split for every task (quick runs, CI)
    T: tuple[int, ...] | None = None  # DDIM steps for every task that takes T (task.T_override)
    seed: int = 0  # seeds noise, probe draws and bootstrap resamples
    out: str | None = None  # run directory; default runs/bench/<UTC time>
    device: str = "auto"  # auto, cpu, cuda, cuda:N
    batch_size: int = 64  # images per network batch
    threads: int | None = None  # torch's CPU threads for the run (restored after); None: torch's default, one per core.
    #   Numbers agree across counts to float rounding, bit for bit only at the same count (numerics.cpu_threads)
    cache_dir: str | None = None  # default: $DIFFAE_BENCH_CACHE or ~/.cache/diffae_bench
    use_cache: bool = True  # False recomputes everything (and stores nothing)
    leaderboard: str | None = None  # CSV to append the records' rows to (e.g. results/leaderboard.csv)
    task_options: dict = field(default_factory=dict)  # {task: {field: value}} overrides of task configs
    profile: str | None = None  # a named set of smaller task sizes (profiles.PROFILES); task_options override it
    progress: bool = True  # progress bars
    numeric_mode: str = "auto"  # auto = numerics.default_modes(device); a mode name; or decode=..,invert=..,encode=..
    dataset_options: dict = field(default_factory=dict)  # loader options, e.g. {"download": True} (--dataset-args)
    write: bool = True  # False: keep records in memory only (no run directory, figures or leaderboard rows)
    command: str | None = None  # the command line that started the run (recorded in run.json)
    offline: bool = False  # never download LPIPS / FID weights (also DIFFAE_BENCH_OFFLINE=1); diffae_bench.metrics.weights
    lpips_weights: str | None = None  # AlexNet backbone file to use instead of torch.hub's cache (sha256-checked)
    inception_weights: str | None = None  # torch-fidelity InceptionV3 file likewise


@dataclass
class LoadedModel:
    model: DiffusionAutoencoder
    label: str  # the name in tables and leaderboards
    info: dict  # what the record says about the model


REFERENCE_MODELS = Path(__file__).resolve().parents[2] / "results" / "models"  # in a source checkout


def load_model_spec(spec, device: torch.device) -> LoadedModel:
    """A run directory / checkpoint file, a committed reference's name, `module:factory`, or a model object."""
    if isinstance(spec, DiffusionAutoencoder):
        label = getattr(spec, "label", None) or type(spec).__name__
        return LoadedModel(spec.to(device).eval(), label, {"source": f"in-memory {type(spec).__qualname__}",
                                                           "checkpoint_sha256": getattr(spec, "checkpoint_sha256", None),
                                                           "train": {}})
    if not isinstance(spec, (str, Path)):
        raise BenchError(f"a model is a run directory, a reference name, module:factory or a DiffusionAutoencoder, "
                         f"not {type(spec).__name__}")
    spec = str(spec)
    path = Path(spec)
    if not path.exists() and "/" not in spec and (REFERENCE_MODELS / spec).is_dir():
        path = REFERENCE_MODELS / spec  # a committed reference model, e.g. diffae-small-shapes
    if path.exists():
        model = load_model(path, device)
        run_dir = path if path.is_dir() else path.parent
        meta = getattr(model, "train_meta", {}) or {}
        train = {k: meta.get(k) for k in ("preset", "step", "images_seen", "loss_ema", "seed", "batch_size", "lr")}
        train["dataset"] = (meta.get("dataset") or {}).get("name")
        info = {"source": str(run_dir.resolve()), "checkpoint_sha256": model.checkpoint_sha256, "train": train}
        return LoadedModel(model, run_dir.resolve().name, info)
    if ":" in spec and not spec.startswith((".", "/")):
        module_name, factory_name = spec.split(":", 1)
        if str(Path.cwd()) not in sys.path:
            sys.path.insert(0, str(Path.cwd()))  # a researcher's module beside their shell
        try:
            factory = getattr(importlib.import_module(module_name), factory_name)
        except (ImportError, AttributeError) as e:
            raise BenchError(f"cannot load model factory '{spec}': {type(e).__name__}: {e}") from None
        model = factory()
        if not isinstance(model, DiffusionAutoencoder):
            raise BenchError(f"factory '{spec}' returned {type(model).__name__}, not a DiffusionAutoencoder")
        return LoadedModel(model.to(device).eval(), spec, {"source": spec, "checkpoint_sha256": None, "train": {}})
    if spec in model_names():
        raise BenchError(f"'{spec}' is a model kind, not a trained model: train one with "
                         f"`bench train --kind {spec} --out DIR` and pass --model DIR")
    hint = MODELS.unknown_message(spec).split(";", 1)[1].split("(")[0].strip() if ";" in MODELS.unknown_message(spec) else ""
    raise BenchError(f"no trained model at '{spec}' (not a run directory, checkpoint or module:factory)"
                     + (f"; {hint}" if hint else ""))


def _model_info(lm: LoadedModel) -> dict:
    m = lm.model
    return {"label": lm.label, "kind": m.kind, "latent_type": m.latent_type, "z_dim": m.z_dim,
            "fingerprint": model_fingerprint(m), "describe": to_jsonable(m.describe()), **lm.info}


def _resolve_configs(opts: RunOptions) -> list[tuple[type, object]]:
    """Every task's config, and its --limit minimum, checked before any task runs (so none writes a record)."""
    out = []
    for name in opts.tasks:
        cls = get_task(name)
        overrides = {**profile_options(opts.profile).get(name, {}), **opts.task_options.get(name, {})}
        if opts.T is not None and takes_T(cls) and "T" not in overrides:
            overrides["T"] = T_override(cls, opts.T)
        elif opts.T is not None and not takes_T(cls):
            print(f"note: task {cls.name} takes no T (it runs no DDIM sampler); --T does not apply to it",
                  file=sys.stderr)
        cfg = cls.make_config(overrides)
        need = cls.min_images_for(cfg)
        if opts.limit is not None and opts.limit < need:
            raise BenchError(f"task {cls.name}: --limit {opts.limit} leaves too few images; "
                             f"at least {need} needed per split")
        out.append((cls, cfg))
    unknown = set(opts.task_options) - set(opts.tasks)
    if unknown:
        raise BenchError(f"options given for task(s) not being run: {', '.join(sorted(unknown))}")
    return out


def _check_options(opts: RunOptions) -> None:
    """The run's own numbers and paths: one-line errors before any model is loaded or file written."""
    if not opts.tasks:
        raise BenchError("no task given (bench ls tasks)")
    if not opts.models:
        raise BenchError("no model given: pass a run directory from `bench train` or module:factory")
    if opts.limit is not None and opts.limit < 1:
        raise BenchError(f"--limit must be a positive integer, got {opts.limit}")
    if opts.batch_size < 1:
        raise BenchError(f"--batch-size must be a positive integer, got {opts.batch_size}")
    if opts.seed < 0:  # numpy's generators, which draw probe sets and bootstrap resamples, refuse negative seeds
        raise BenchError(f"--seed must not be negative, got {opts.seed}")
    if opts.T is not None and (not opts.T or min(opts.T) < 1):
        raise BenchError(f"--T expects positive integers, got {','.join(map(str, opts.T))}")
    # Paths that would only fail when the first record, cache entry or leaderboard row is written.
    cache_dir = opts.cache_dir if opts.use_cache else None
    for flag, path, want_dir in (("--out", opts.out, True), ("--cache-dir", cache_dir, True),
                                 ("--leaderboard", opts.leaderboard, False)):
        if path is not None and Path(path).exists() and Path(path).is_dir() != want_dir:
            raise BenchError(f"{flag} {path} is {'a file' if want_dir else 'a directory'}; "
                             f"give {'a directory' if want_dir else 'a CSV file'}")
    if opts.dataset is not None:
        DATASETS.get(opts.dataset)  # unknown name: a suggestion, before any model is loaded


def run(opts: RunOptions) -> tuple[Path | None, list[dict]]:
    """Evaluate every task on every model; returns the run directory (None with write=False) and the records."""
    from ..metrics import weights as W

    with W.using(offline=opts.offline, paths={"alexnet": opts.lpips_weights, "inception": opts.inception_weights},
                 progress=opts.progress), pinned_threads(opts.threads):
        return _run(opts)


def _run(opts: RunOptions) -> tuple[Path | None, list[dict]]:
    from ..metrics import weights as W

    _check_options(opts)
    configs = _resolve_configs(opts)
    device = resolve_device(opts.device)
    dist.init(device)  # under torchrun: every rank computes its share of each batched call; rank 0 writes
    device = dist.local_device(device)
    modes = parse_modes(opts.numeric_mode, device)  # a bad value fails here, before any model is loaded
    models = [load_model_spec(s, device) for s in opts.models]
    labels = [m.label for m in models]
    if len(set(labels)) != len(labels):
        raise BenchError(f"two models share the name {labels}: give run directories distinct names")
    dataset = opts.dataset or (models[0].info["train"].get("dataset") or "shapes")
    DATASETS.get(dataset)  # unknown name: suggestion, before any work
    for lm in models:
        # Fail early when the data cannot feed this model (missing files, channels, attributes).
        probe = load_dataset(dataset, "test", root=opts.data_root, image_size=lm.model.image_shape[1], limit=1,
                             **opts.dataset_options)
        if probe.image_shape[0] != lm.model.image_shape[0]:
            raise DataError(f"{dataset} has {probe.image_shape[0]} channels but model {lm.label} takes {lm.model.image_shape[0]}")
        for cls, _ in configs:
            if cls.needs_attributes and not probe.binary_attributes:
                raise DataError(f"task {cls.name} needs binary attributes and data set {dataset} has none")

    # Fetch the LPIPS / FID weights the tasks ask for before any cache key is made, so keys see them.
    W.prepare(W.needed_by([cfg for _, cfg in configs]))
    out = Path(opts.out or f"runs/bench/{datetime.now(timezone.utc).strftime('%Y%m%d-%H%M%S')}") if opts.write else None
    if out is not None and dist.active():  # one run directory for all ranks: rank 0's name
        out = Path(_broadcast_text(str(out)))
    cache = Cache(opts.cache_dir, enabled=opts.use_cache)
    mode = modes.describe()  # recorded with every number and in every cache key
    numerics = numerics_fingerprint(device, mode)  # what else decides the exact bits (CPU kernels, torch)
    for lm in models:
        apply_numeric_modes(lm.model, modes)
    run_started = _now()
    records = []
    shared_data: dict = {}
    for lm in models:
        for cls, cfg in configs:
            ctx = EvalContext(model=lm.model, dataset_name=dataset, data_root=opts.data_root,
                              dataset_options=dict(opts.dataset_options), seed=opts.seed,
                              limit=opts.limit, batch_size=opts.batch_size, cache=cache, out_dir=out,
                              figure_prefix=f"{cls.name}__{lm.label}__", progress=opts.progress, numeric_mode=mode,
                              _data=shared_data)
            torch.manual_seed(opts.seed)
            hits, misses = cache.hits, cache.misses
            started, t0 = _now(), time.perf_counter()
            result, used_n, weights = _run_task(cls, cfg, ctx, cache, device, out)
            wall = time.perf_counter() - t0
            used = {s: ctx.data_info(s, n) for s, n in used_n.items()}
            rec = R.build_record(
                task_cls=cls, cfg=cfg, result=result, model_info=_model_info(lm),
                dataset_info={"name": dataset, "image_shape": list(lm.model.image_shape), "root": opts.data_root,
                              "splits": used},
                seed=opts.seed, numeric_mode=mode, numerics=numerics, device=describe_device(device), wall_s=wall, created_at=started,
                environment=library_versions(), git=git_state(), machine=machine(),
                pretrained_weights=weights,
                cache={"dir": str(cache.root) if cache.enabled else None, "hits": cache.hits - hits,
                       "misses": cache.misses - misses})
            rec = json.loads(json.dumps(rec, default=str))  # in memory exactly as on disk (tuples -> lists)
            if out is not None and dist.is_main():
                R.write_record(out, rec)
            records.append(rec)
    if out is None:
        return None, records
    if not dist.is_main():
        return out, records
    # The run's summary is written last: a run directory with run.json is complete.
    options = {**to_jsonable({k: v for k, v in vars(opts).items() if k != "models"}),
               "models": [m if isinstance(m, str) else lm.label for m, lm in zip(opts.models, models)]}
    atomic_write_json(out / "run.json", {"command": opts.command, "options": options, "dataset": dataset, "models": labels,
                                         "started_at": run_started, "finished_at": _now(),
                                         "records": [R.record_filename(r) for r in records],
                                         "environment": library_versions(), "git": git_state(),
                                         "device": describe_device(device)})
    if opts.leaderboard:
        from ..reporting.leaderboard import append_records

        append_records(opts.leaderboard, records)
    return out, records


def _run_task(cls, cfg, ctx: EvalContext, cache: Cache, device: torch.device, out: Path):
    """(result, images used per split, pretrained weights used): computed, or served whole from the cache.

    Both paths return the result as it went through the cache's JSON, so a
    served record is identical to the one first computed (diffae_bench.harness.result_cache).
    """
    from . import result_cache as RC

    def compute():
        res = cls().run(ctx, cfg)
        return RC.pack(res, dict(ctx.used), dict(res.pretrained_weights), out)

    return RC.unpack(cache.get_or_compute("task_result", RC.task_key(cls, cfg, ctx, device), compute), out)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def parse_task_options(items: list[str]) -> dict:
    """--set task.field=value -> {task: {field: "value"}}.

    Values stay strings here: Task.make_config converts each to its config
    field's type (diffae_bench.harness.options), so "False" is False for a bool field,
    "10,20" is (10, 20) for a tuple of ints, and "abc" for an int is an error.
    """
    out: dict = {}
    for item in items:
        key, eq, raw = item.partition("=")
        task, dot, fld = key.strip().partition(".")
        if not eq or not dot or not task or not fld:
            raise BenchError(f"--set expects task.field=value, got '{item}'")
        out.setdefault(task, {})[fld] = raw
    return out


def _broadcast_text(text: str) -> str:
    """Rank 0's string on every rank (the default run directory carries a time stamp)."""
    import torch.distributed as tdist

    box = [text]
    tdist.broadcast_object_list(box, src=0)
    return box[0]
