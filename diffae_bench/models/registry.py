"""Model registry: build a model from a preset, or load one from a run directory.

A run directory (written by `bench train`) holds
  config.json              what was trained and how (human-readable copy)
  checkpoint.safetensors   stage 1: EMA + online weights, optimizer, RNG, meta
  latent.safetensors       stage 2 (models whose prior is trainable, e.g. Diff-AE's
                           latent DDIM): the prior, tied by sha256 to the stage-1
                           checkpoint it was fitted on
Evaluation uses the EMA weights.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from ..checkpoint import file_sha256, from_dict, load_checkpoint, load_state_strict, split_prefix, to_jsonable
from ..errors import CheckpointError
from ..presets import Preset
from ..registry import Registry
from .base import DiffusionAutoencoder

CHECKPOINT = "checkpoint.safetensors"
LATENT_CHECKPOINT = "latent.safetensors"


@dataclass(frozen=True)
class ModelKind:
    name: str  # registry name, e.g. "diffae"
    cls: type  # a DiffusionAutoencoder subclass taking config_cls
    config_cls: type  # frozen dataclass describing the architecture
    from_preset: Callable[[Preset], object]  # preset (already sized for the data) -> config
    description: str  # one line for `bench ls models`


# Built-ins are listed like plugins (diffae_bench.registry); third-party models
# come from the "diffae_bench.models" entry-point group (each loads a ModelKind).
MODELS: Registry[ModelKind] = Registry("model", group="diffae_bench.models", builtins={
    "diffae": "diffae_bench.models.diffae:KIND",
    "ddim": "diffae_bench.baselines.ddim:KIND",
    "dmz": "diffae_bench.baselines.dmz:KIND",
})


def get_kind(name: str) -> ModelKind:
    return MODELS.get(name)


def model_names() -> list[str]:
    return MODELS.names()


def has_latent_stage(model: DiffusionAutoencoder) -> bool:
    """Whether the model has a prior with parameters, fitted by `bench train --stage latent`."""
    return model.prior is not None and model.prior.trainable


def build_model(name: str, preset: Preset) -> DiffusionAutoencoder:
    kind = get_kind(name)
    return kind.cls(kind.from_preset(preset))


def build_from_meta(meta: dict) -> tuple[ModelKind, DiffusionAutoencoder]:
    kind = get_kind(meta["model"])
    cfg = from_dict(kind.config_cls, meta["model_config"])
    return kind, kind.cls(cfg)


def canonical_config(meta: dict) -> dict:
    """A stored model_config as today's code reads it (fields added since filled in), for comparing runs.

    A checkpoint written before a field existed (e.g. UNetConfig.prediction) stores
    no value for it; read back it gets the value it was trained with, so it is the
    same network as a new config with that value, and the comparison says so.
    """
    return to_jsonable(from_dict(get_kind(meta["model"]).config_cls, meta["model_config"]))


def resolve_checkpoint(path: str | Path) -> Path:
    p = Path(path)
    if p.is_dir():
        p = p / CHECKPOINT
    if not p.is_file():
        raise CheckpointError(f"no checkpoint at {p} (expected a run directory from `bench train` or a .safetensors file)")
    return p


def checkpoint_id(file_sha256s: list[str]) -> str:
    """A loaded model's id (records' `checkpoint_sha256`) from the sha256 of its weight files, in load order.

    One file (an autoencoder without a latent stage): that file's sha256, so the id can be checked
    against a manifest by eye. With a latent file: the sha256 of "ckpt_sha+latent_sha", so refitting
    the latent DDIM alone gives a new id (and new cache keys).
    """
    if not file_sha256s:
        raise ValueError("a checkpoint id needs at least one file's sha256")
    return file_sha256s[0] if len(file_sha256s) == 1 else hashlib.sha256("+".join(file_sha256s).encode()).hexdigest()


def load_model(path: str | Path, device: str | torch.device = "cpu", require_latent: bool = False) -> DiffusionAutoencoder:
    """Load a trained model (EMA weights) from a run directory or checkpoint file."""
    ckpt = resolve_checkpoint(path)
    tensors, meta = load_checkpoint(ckpt)
    if "model" not in meta or "model_config" not in meta:
        raise CheckpointError(f"{ckpt} is not a diffae_bench checkpoint (no model/model_config in its metadata)")
    kind, model = build_from_meta(meta)
    state = model.upgrade_state(split_prefix(tensors, "ema"))
    sha = file_sha256(ckpt)
    fingerprint = [sha]
    latent_path = ckpt.parent / LATENT_CHECKPOINT
    if has_latent_stage(model) and latent_path.is_file():
        lt, lmeta = load_checkpoint(latent_path)
        if lmeta.get("autoencoder_sha256") != sha:
            raise CheckpointError(
                f"{latent_path} was fitted on a different autoencoder checkpoint than {ckpt.name}; "
                "re-run `bench train --stage latent`"
            )
        latent_state = model.upgrade_state(split_prefix(lt, "ema"))
        own = {k for k in model.state_dict() if k.startswith("prior.")}
        if set(latent_state) != own:
            raise CheckpointError(f"{latent_path} does not match the model's latent prior")
        # The latent file's weights win; an exported autoencoder file may leave them out.
        state = {**state, **latent_state}
        fingerprint.append(file_sha256(latent_path))
    elif require_latent and has_latent_stage(model):
        raise CheckpointError(f"{ckpt.parent} has no {LATENT_CHECKPOINT}; run `bench train --stage latent --out {ckpt.parent}`")
    load_state_strict(model, state, f"checkpoint {ckpt}")
    model.checkpoint_path = str(ckpt)
    model.checkpoint_sha256 = checkpoint_id(fingerprint)
    model.train_meta = meta
    return model.to(device).eval()
