"""Training in legs: a new run that starts from a trained model's EMA weights (`bench train --init-from`).

A GPU here is lent for minutes at a time (issue 21), and only the exported EMA weights travel
(results/models: float16, no optimiser state), so a reference model is trained in legs: each leg
is a new run directory that starts from the previous leg's weights, with a fresh Adam state
(and the preset's warm-up of the EMA) and its own stream of batches and noise. Every leg's
checkpoint metadata carries the legs before it, so the export's manifest lists each leg's steps,
images, wall time, machine and command, and the total images seen.

Only a model of the same kind, configuration and training data can continue: anything else is a
different model, refused with a one-line error.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..checkpoint import file_sha256, load_checkpoint, load_state_strict, split_prefix
from ..errors import BenchError, CheckpointError
from ..models.registry import canonical_config, resolve_checkpoint

LEG_KEYS = ("step", "images_seen", "batch_size", "lr", "wall_s", "machine", "numerics", "command")


def this_leg(meta: dict) -> dict:
    """What a checkpoint's metadata says about its own leg (None where an older run did not record it)."""
    return {k: meta.get(k) for k in LEG_KEYS}


def start_leg(path: str | Path, model: torch.nn.Module, ema: torch.nn.Module, meta: dict) -> dict:
    """Load a trained model's EMA weights into model and ema; returns {"init_from", "legs"} for the new run's metadata.

    meta: the new run's metadata (model, model_config, dataset), checked against the old one's.
    A trainable latent prior (Diff-AE's latent DDIM) is not carried: stage 2 refits it on the new encoder.
    """
    ckpt = resolve_checkpoint(path)
    tensors, old = load_checkpoint(ckpt)
    if old.get("model") != meta["model"]:
        raise CheckpointError(f"--init-from {path}: a different model kind than this run's; it cannot continue it")
    # Compared as today's code reads them: a config stored before a field was added is the same network.
    if canonical_config(old) != canonical_config(meta):
        raise CheckpointError(f"--init-from {path}: a different network configuration than this run's "
                              "(e.g. eps against v prediction); it cannot continue it")
    if old.get("dataset", {}).get("content_hash") != meta["dataset"]["content_hash"]:
        raise CheckpointError(f"--init-from {path}: trained on other data than this run's ({meta['dataset']['name']})")
    own = model.state_dict()
    loaded = model.upgrade_state(split_prefix(tensors, "ema"))
    # The latent prior is trained in stage 2 and exported in its own file: keep this run's fresh one.
    state = {k: (loaded[k].to(v.dtype) if k in loaded else v) for k, v in own.items()
             if k in loaded or k.startswith("prior.")}
    state.update({k: v for k, v in loaded.items() if k not in own})  # unknown keys: load_state_strict names them
    for module in (model, ema):
        load_state_strict(module, state, f"--init-from {ckpt}")
    return {"init_from": {"path": str(path), "sha256": file_sha256(ckpt)},
            "legs": list(old.get("legs") or []) + [this_leg(old)]}


def total_images(meta: dict) -> int:
    """Images seen over every leg up to and including this checkpoint's."""
    return sum(int(leg.get("images_seen") or 0) for leg in meta.get("legs") or []) + int(meta.get("images_seen") or 0)


def steps_to_total(images: int, before: int, batch_size: int) -> int:
    """The steps of a new leg that bring a model from `before` images (its legs so far) to `images`.

    Models that are compared with each other are trained to the same total (issue 21), whatever each
    earlier leg's batch size was; a total that is not a whole number of batches is rounded up.
    """
    if images <= before:
        raise BenchError(f"a budget of {images} images: the model has seen {before} already; nothing to train")
    return -(-(images - before) // batch_size)


def unequal_budget(entries: dict[str, dict]) -> str | None:
    """Why a data set's models are not at one image budget (None when they are), from their manifest entries.

    The three models of a data set are compared, and replaced, at equal budgets (issue 21): each is
    trained to the same total over its legs, and a leg stops at the first step that reaches it
    (steps_to_total rounds up), so totals may differ by less than one batch of the last leg
    (shapes 2026-11-27: 700,416-700,928 images at batch 1024).
    """
    totals = {name: int(e.get("images_seen_total") or e.get("images_seen") or 0) for name, e in entries.items()}
    last_batch = max(int((e.get("legs") or [{}])[-1].get("batch_size") or 0) for e in entries.values())
    if max(totals.values()) - min(totals.values()) < max(last_batch, 1):
        return None
    seen = ", ".join(f"{name} {total:,}" for name, total in sorted(totals.items()))
    batch = f"{last_batch:,}" if last_batch else "not recorded"
    return f"the models are not at one image budget ({seen}; they may differ by less than one batch of the last leg: {batch})"


def images_before(path: str | Path) -> int:
    """Images an exported or trained model has seen over all its legs (its checkpoint's metadata)."""
    return total_images(load_checkpoint(resolve_checkpoint(path))[1])


def leg_seed(seed: int, meta: dict) -> int:
    """The generator seed of a new leg: its own stream (a leg that replayed leg 1's batches and noise would
    see the same (image, t, noise) triples again), fixed by the run's seed and the steps before it."""
    return seed * 1_000_003 + sum(int(leg.get("step") or 0) for leg in meta.get("legs") or []) + 7919
