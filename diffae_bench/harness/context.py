"""EvalContext: what a task may ask for, computed once and cached by content.

Tasks never touch model classes or loaders directly: they ask the context for
images, attributes, codes, inverted x_T and decodings of the first n images of
a split. The context streams the work in batches (progress bars, flat memory),
and stores results in the on-disk Cache under keys made of the model
fingerprint, the data set's content hash, the split, n, T, the seed and the
numeric mode, so a second `bench run` is served from disk and a changed
checkpoint never is.
"""

from __future__ import annotations

import hashlib
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from .. import distributed as dist
from .. import rng
from .cache import Cache
from ..checkpoint import state_dict_sha256
from ..data import ImageDataset, load_dataset
from ..errors import DataError
from ..models.base import DiffusionAutoencoder

PRIOR_TRAIN_CODES = 10_000  # training images whose codes a data-derived prior (prior.uses_train_codes) draws from


ROWS_PER_WRITE = 1024  # cached_rows: rows computed between cache writes (an interrupted run keeps what it finished)


def model_code_hash(model: DiffusionAutoencoder) -> str:
    """sha256 of the source files of the model's classes that live outside torch (plugins included).

    A checkpoint's sha256 says nothing about the code that runs it: a plugin's
    changed `decode` must not be served the old decodes from the cache. The
    suite's own files are in every cache key already (cache.environment_identity);
    this adds the files of a model defined elsewhere (`--model my_module:make`,
    entry points).

    Each file is named by its class's module, not its path on disk: the same code in
    two clones (a worktree, a CI checkout, another user's home) keys alike, so a
    shared cache serves it (keyed by absolute path, a clone never hit its twin's decodes).
    """
    import inspect

    h = hashlib.sha256()
    for cls in type(model).__mro__:
        if cls.__module__.split(".")[0] in ("torch", "builtins", "abc", "typing"):
            continue
        try:
            path = inspect.getsourcefile(cls)
        except TypeError:
            continue
        if path:
            h.update(f"{cls.__module__}.{cls.__qualname__}".encode())
            h.update(Path(path).read_bytes())
    return h.hexdigest()


def model_fingerprint(model: DiffusionAutoencoder) -> str:
    """sha256 of the checkpoint file(s) when loaded from disk, else of the weights and config."""
    sha = getattr(model, "checkpoint_sha256", None)
    if sha:
        return sha
    return state_dict_sha256(model, prefix=repr(model.describe()).encode())


@dataclass
class EvalContext:
    model: DiffusionAutoencoder  # the model under test (eval mode, on `device`)
    dataset_name: str  # registry name of the data set
    data_root: str | None = None  # folder of the data set's files (None: the usual places)
    dataset_options: dict = field(default_factory=dict)  # loader options (bench run --dataset-args)
    seed: int = 0  # seeds every random draw a task makes (noise x_T, probe splits, bootstrap)
    limit: int | None = None  # cap on images per split (CLI --limit), applied to every request
    batch_size: int = 64  # images per network batch
    cache: Cache = field(default_factory=Cache)
    out_dir: Path | None = None  # where tasks save figures
    figure_prefix: str = ""  # file-name prefix for this (task, model, data set)
    progress: bool = True  # tqdm bars on long loops
    numeric_mode: str = "fp32"  # recorded with every number and in every cache key
    used: dict = field(default_factory=dict)  # split -> images this task used (for the record)
    _data: dict = field(default_factory=dict, repr=False)  # (split, size) -> ImageDataset, shared across tasks
    _fingerprint: str | None = field(default=None, repr=False)
    _model_key: str | None = field(default=None, repr=False)
    _scratch: str | None = field(default=None, repr=False)  # figures of ranks other than 0 (thrown away)

    # -- identity -------------------------------------------------------------
    @property
    def fingerprint(self) -> str:
        if self._fingerprint is None:
            self._fingerprint = model_fingerprint(self.model)
        return self._fingerprint

    @property
    def model_key(self) -> str:
        """The model in cache keys: its weights (fingerprint) and its code (model_code_hash)."""
        if self._model_key is None:
            self._model_key = f"{self.fingerprint}+code:{model_code_hash(self.model)}"
        return self._model_key

    @property
    def device(self) -> torch.device:
        return self.model.device

    # -- data -------------------------------------------------------------------
    def dataset(self, split: str) -> ImageDataset:
        """The split at the model's resolution (loaded once per context)."""
        c, h, _ = self.model.image_shape
        if (split, h) not in self._data:
            ds = load_dataset(self.dataset_name, split, root=self.data_root, image_size=h, **self.dataset_options)
            if ds.image_shape[0] != c:
                raise DataError(f"data set {self.dataset_name} has {ds.image_shape[0]} channels but the model takes {c}")
            self._data[(split, h)] = ds
        return self._data[(split, h)]

    def n_images(self, split: str, wanted: int, minimum: int = 1) -> int:
        """How many images a request gets: wanted, capped by --limit and the split's size."""
        n = min(wanted, len(self.dataset(split)), self.limit or wanted)
        if n < minimum:
            raise DataError(f"{self.dataset_name}/{split}: {n} images available (after --limit), "
                            f"at least {minimum} needed for this statistic")
        self.used[split] = max(self.used.get(split, 0), n)
        return n

    def images(self, split: str, n: int) -> torch.Tensor:
        """The first n images of a split, float32 in [-1, 1], on the CPU."""
        return self.dataset(split).tensor(np.arange(n))

    def attributes(self, split: str, n: int) -> pd.DataFrame:
        return self.dataset(split).attributes.iloc[:n].reset_index(drop=True)

    def data_info(self, split: str, n_used: int) -> dict:
        ds = self.dataset(split)
        return {"n_total": len(ds), "n_used": int(n_used), "content_hash": ds.content_hash(), "source": ds.source}

    # -- cached model outputs ---------------------------------------------------------
    def cache_key(self, split: str, n: int, **extra) -> dict:
        """Cache-key parts for an output of the first n images of a split (model, data, n, mode, extras)."""
        return {"model": self.model_key, "data": self.dataset(split).content_hash(), "split": split, "n": n,
                "numeric_mode": self.numeric_mode, **extra}

    def rows_key(self, split: str, **extra) -> dict:
        """Cache-key parts for a per-item output of a split, stored by cached_rows (the rows, not n, in each entry)."""
        return {k: v for k, v in self.cache_key(split, 0, **extra).items() if k != "n"}

    def batched(self, desc: str, n: int, fn, *inputs: torch.Tensor) -> torch.Tensor:
        """fn over batches of the inputs (first n rows), outputs concatenated on the CPU.

        Under torchrun each rank computes a contiguous block of the batches and
        every rank gets all rows (diffae_bench.distributed): the batches are the
        same as in one process, so the outputs are too.
        """
        def one(s: int) -> torch.Tensor:
            args = [x[s:s + self.batch_size].to(self.device) for x in inputs]
            return fn(*args)

        return self.map_batches(desc, range(0, n, self.batch_size), one)

    def map_batches(self, desc: str, starts: range, fn) -> torch.Tensor:
        """fn(start) for every batch start, without grad, concatenated in order on the CPU (sharded under torchrun)."""
        mine = [starts[i] for i in dist.shard(len(starts))]
        outs = []
        for s in tqdm(mine, desc=desc, unit="batch", disable=not (self.progress and dist.is_main()), leave=False,
                      dynamic_ncols=True):
            with torch.no_grad():  # inference only, whatever the model's own methods say
                outs.append(fn(s).float().cpu())
        local = torch.cat(outs) if outs else None
        return dist.gather_cat(local) if dist.active() else local

    def cached_rows(self, kind: str, base: dict, n: int, desc: str, rows, inputs=None) -> torch.Tensor:
        """Rows [0, n) of a per-item output, rows(s, e, prepared) computing one batch; cached one batch per entry.

        inputs() (optional) gathers what the batches need (codes, inverted x_T, ...); it runs once, on
        every rank, and only when some batch is not cached, so a fully cached output costs no model call.

        The batches lie on the grid of multiples of the batch size from 0, so row i is always computed
        in the same batch (bit for bit the same) whatever n a task asks for: a task that needs 200 rows
        reads the first 192 of another task's 500 (only a partial last batch, [192, 200), is its own
        entry), and no result depends on which task ran first. `base` must not hold n. Missing batches
        are computed ROWS_PER_WRITE rows at a time and stored as they finish, so an interrupted run
        resumes at its last finished group.
        """
        bs = self.batch_size
        batches = [(s, min(s + bs, n)) for s in range(0, n, bs)]
        out: list[torch.Tensor | None] = []
        for s, e in batches:
            hit = self.cache.get(kind, {**base, "rows": [s, e]})
            out.append(hit["rows"] if hit is not None else None)
        missing = [i for i, x in enumerate(out) if x is None]
        prepared = inputs() if missing and inputs is not None else None
        per_group = max(1, ROWS_PER_WRITE // bs)
        for g0 in range(0, len(missing), per_group):
            group = missing[g0:g0 + per_group]
            first, last = batches[group[0]][0], batches[group[-1]][1]
            x = self.map_batches(f"{desc} [{first}:{last}]", [batches[i][0] for i in group],
                                 lambda s: rows(s, min(s + bs, n), prepared))
            for i, part in zip(group, x.split([batches[i][1] - batches[i][0] for i in group])):
                self.cache.put(kind, {**base, "rows": list(batches[i])}, {"rows": part})
                out[i] = part
        return torch.cat(out) if out else torch.empty(0)

    def codes(self, split: str, n: int) -> dict[str, torch.Tensor]:
        """The model's declared representations (model.codes) of the first n images: {name: (n, dim)}; {} without."""
        specs = self.model.codes
        if not specs:
            return {}

        def rows(s: int, e: int, x: torch.Tensor) -> torch.Tensor:
            return torch.cat([v.float() for v in self.model.representations(x[s:e].to(self.device)).values()], 1)

        stacked = self.cached_rows("codes", self.rows_key(split), n, f"encode {split}", rows,
                                   lambda: self.images(split, n))
        return {r.name: v for r, v in zip(specs, stacked.split([r.dim for r in specs], dim=1))}

    def representation_arrays(self, names, n_train: int, n_test: int, T: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """(train, test) float64 arrays (n, D) of representations for probes, by name, in the order asked.

        "codes": every code the model declares (none without a semantic latent);
        "x_T": DDIM-inverted noise with T steps; "pixels"; "random_proj": pixels
        through a fixed Gaussian projection (seeded by the run's seed) to the
        code's width (512 without one), a control of the same width.
        """
        flat = lambda t: t.flatten(1).numpy().astype(np.float64)
        reps: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for rep in names:
            if rep == "codes":
                tr, te = self.codes("train", n_train), self.codes("test", n_test)
                reps.update({name: (flat(tr[name]), flat(te[name])) for name in tr})
            elif rep == "x_T":
                reps["x_T"] = (flat(self.x_T("train", n_train, T)), flat(self.x_T("test", n_test, T)))
            elif rep == "pixels":
                reps["pixels"] = (flat(self.images("train", n_train)), flat(self.images("test", n_test)))
            elif rep == "random_proj":
                width = self.model.z_dim or 512
                d = int(np.prod(self.model.image_shape))
                g = torch.Generator().manual_seed(self.seed)
                W = torch.randn(d, width, generator=g) / d**0.5  # fixed Gaussian projection
                reps["random_proj"] = (flat(self.images("train", n_train).flatten(1) @ W),
                                       flat(self.images("test", n_test).flatten(1) @ W))
            else:
                raise DataError(f"unknown representation '{rep}' (codes, x_T, pixels, random_proj)")
        return reps

    def path_code(self, split: str, n: int) -> torch.Tensor:
        """The representation the model's latent_paths() walks (declared interpolate=True; default the first)."""
        specs = self.model.codes
        name = next((r.name for r in specs if r.interpolate), specs[0].name)
        return self.codes(split, n)[name]

    def z(self, split: str, n: int) -> torch.Tensor:
        """encode(): the code the decoder is conditioned on (z_sem; the DMZ hard bits)."""
        return self.cached_rows("z", self.rows_key(split), n, f"encode {split}",
                                lambda s, e, x: self.model.encode(x[s:e].to(self.device)), lambda: self.images(split, n))

    def x_T(self, split: str, n: int, T: int) -> torch.Tensor:
        """DDIM-inverted x_T with T steps (the stochastic encoder), conditioned on z where the model has one."""
        def inputs():
            return self.images(split, n), self.z(split, n) if self.model.has_semantic_latent else None

        def rows(s: int, e: int, prepared) -> torch.Tensor:
            x, z = prepared
            xb = x[s:e].to(self.device)
            if z is None:
                return self.model.encode_stochastic(xb, T)
            return self.model.encode_stochastic(xb, T, z[s:e].to(self.device))

        return self.cached_rows("x_T", self.rows_key(split, T=T), n, f"invert T={T} {split}", rows, inputs)

    def decode(self, z: torch.Tensor | None, x_T: torch.Tensor, T: int, desc: str = "decode") -> torch.Tensor:
        """decode(z, x_T, T) of given codes and noises (not cached), in batches, on the CPU.

        For codes a task made itself (interpolation paths, edited codes); z is
        None for a model without a semantic latent.
        """
        if z is None:
            return self.batched(f"{desc} T={T}", len(x_T), lambda xb: self.model.decode(None, xb, T), x_T)
        return self.batched(f"{desc} T={T}", len(x_T), lambda zb, xb: self.model.decode(zb, xb, T), z, x_T)

    def noise(self, n: int, stream: str) -> torch.Tensor:
        """x_T ~ N(0, I) for n images; image i from its own CPU generator seeded by (seed, stream, i).

        Device independent, and image i's noise is the same whatever n or the batch size.
        """
        return rng.StackedGenerator.for_items(0, n, self.seed, stream).randn((n, *self.model.image_shape))

    def reconstruction(self, split: str, n: int, T: int, x_T_source: str) -> torch.Tensor:
        """decode(z, x_T, T) of the first n images; x_T inferred by inversion ('inferred') or drawn ('random')."""
        if x_T_source not in ("inferred", "random"):
            raise ValueError(x_T_source)
        def inputs():
            x_T = self.x_T(split, n, T) if x_T_source == "inferred" else self.noise(n, f"recon/{split}")
            return (self.z(split, n) if self.model.has_semantic_latent else None), x_T

        def rows(s: int, e: int, prepared) -> torch.Tensor:
            z, x_T = prepared
            zb = z[s:e].to(self.device) if z is not None else None
            return self.model.decode(zb, x_T[s:e].to(self.device), T)

        extra = {"T": T, "x_T": x_T_source} | ({"seed": self.seed} if x_T_source == "random" else {})
        return self.cached_rows("recon", self.rows_key(split, **extra), n, f"decode T={T} {x_T_source} {split}", rows, inputs)

    def _prior_train_codes(self) -> tuple[int, torch.Tensor | None]:
        """(n, encode() of the first n training images) for a prior derived from data; (0, None) otherwise."""
        prior = self.model.prior
        if prior is None or not prior.uses_train_codes:
            return 0, None
        n = self.n_images("train", PRIOR_TRAIN_CODES)
        return n, self.z("train", n)

    @property
    def prior_modes(self) -> tuple[str, ...]:
        """The sampling choices the model's latent prior offers (models/priors.py); () without a prior or a choice."""
        prior = self.model.prior
        return tuple(prior.modes) if prior is not None else ()

    def sampling_with(self, mode: str):
        """A block in which samples() and sample_codes() draw codes with the prior's `mode` (keyed by it in the cache)."""
        if not self.prior_modes:
            raise DataError(f"the {self.model.kind} model's prior offers no sampling modes")
        return self.model.prior.sampling_with(mode)

    def sample_codes(self, n: int, T_latent: int, generator: rng.Generator = None) -> torch.Tensor:
        """n codes from the model's latent prior (not cached), on the CPU."""
        _, train_codes = self._prior_train_codes()
        with torch.no_grad():
            return self.model.sample_latent(n, T_latent, generator, train_codes).float().cpu()

    def samples(self, n: int, T: int, T_latent: int = 100) -> torch.Tensor:
        """n unconditional samples (z from the model's latent prior, x_T ~ N(0, I), T-step decoding).

        Sample i is seeded by (seed, "samples", i), so the same run draws the
        same images on any device and with any batch size. A prior derived from data
        (prior.uses_train_codes) is handed encode() of the train split, so the key includes those data.
        T_latent is part of the key only where the draws depend on it (a latent sampler's steps), so a
        model without one shares its samples between tasks that ask for different T_latent.
        """
        n_prior = self._prior_train_codes()[0]
        prior = self.model.prior
        uses_T_latent = self.model.has_semantic_latent and prior is not None and prior.uses_T_latent
        base = {"model": self.model_key, "T": T, "T_latent": T_latent if uses_T_latent else None, "seed": self.seed,
                "numeric_mode": self.numeric_mode, "prior": self.model.describe().get("prior"),
                "prior_data": self.cache_key("train", n_prior) if n_prior else None}
        # Cached per batch (cached_rows): a task that needs 200 samples reads the first 192 of another's 500.
        def rows(s: int, e: int, train_codes) -> torch.Tensor:
            # Sample i draws its z and x_T from its own stream (seed, "samples", i): batch-size independent.
            g = rng.StackedGenerator.for_items(s, e, self.seed, "samples")
            return self.model.sample(e - s, T, T_latent, generator=g, train_codes=train_codes)

        return self.cached_rows("samples", base, n, f"sample T={T}", rows, lambda: self._prior_train_codes()[1])

    # -- figures ---------------------------------------------------------------------
    def figure_path(self, name: str) -> Path | None:
        """Where to save a figure (None when the run keeps no figures)."""
        if self.out_dir is None:
            return None
        if not dist.is_main():
            # Under torchrun every rank runs the same code (a figure may need cached model outputs,
            # whose computation is collective); rank 0's figures are kept, the others' thrown away.
            if self._scratch is None:
                self._scratch = tempfile.mkdtemp(prefix="diffae_bench_rank_figures_")
            return Path(self._scratch) / f"{self.figure_prefix}{name}"
        return Path(self.out_dir) / f"{self.figure_prefix}{name}"

    # -- Frechet distances ----------------------------------------------------------
    def real_features(self, space, split: str, n: int) -> torch.Tensor:
        """float64 features of the first n images of a split, cached by data hash and the network's hash."""
        from ..metrics.frechet import extract

        def compute():
            return {"f": extract(space, self.images(split, n), self.batch_size, self.progress,
                                 desc=f"{space.metric} features {split}")}

        key = {"data": self.dataset(split).content_hash(), "split": split, "n": n, "space": space.id}
        return self.cache.get_or_compute("real_features", key, compute)["f"]
