"""Export a trained run directory as a small, committable reference model plus its manifest entry.

`bench train` writes everything needed to resume (online and EMA weights,
optimizer state, RNG) in float32. A reference model needs only the EMA weights
evaluation uses, so the export keeps those, optionally in float16 (halving the
file; `check_export` measures whether that changes any number), and records
how to get the same model again:

  <out>/checkpoint.safetensors  ema.* weights + the training metadata
  <out>/latent.safetensors      Diff-AE's latent DDIM (ema.*), tied to the exported checkpoint by sha256
  <out>/config.json, train_log.jsonl   copied from the run

and a manifest entry: sha256 and size of each file, the exact `bench train`
commands, seed, images seen, final loss, wall time, library versions and the
machine it was trained on.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from ..checkpoint import atomic_write_json, file_sha256, load_checkpoint, save_checkpoint, split_prefix
from ..errors import BenchError
from .legs import this_leg, total_images
from ..models import CHECKPOINT, LATENT_CHECKPOINT
from ..provenance import git_state, library_versions, machine

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


SMALL = 1024  # tensors with at most this many entries (biases, norms, z_mean / z_std) stay float32


def _ema_only(tensors: dict[str, torch.Tensor], dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """The EMA weights; large floating tensors cast to dtype (they are the bytes), small ones kept exact."""
    return {f"ema.{k}": (v.to(dtype) if v.is_floating_point() and v.numel() > SMALL else v)
            for k, v in split_prefix(tensors, "ema").items()}


def train_commands(config: dict, steps: int, latent_meta: dict | None, out: str) -> list[str]:
    """The `bench train` command line(s) that give this run's weights: its options, with the steps it reached."""
    o = config["options"]
    cmd = [f"bench train --kind {o['model']} --preset {o['preset']} --dataset {o['dataset']}"]
    if o.get("data_root"):
        cmd.append(f"--data-root {o['data_root']}")
    if o.get("image_size"):
        cmd.append(f"--image-size {o['image_size']}")
    cmd.append(f"--steps {steps} --seed {o['seed']}")
    for flag, key in (("--batch-size", "batch_size"), ("--lr", "lr"), ("--train-limit", "train_limit")):
        if o.get(key) is not None:
            cmd.append(f"{flag} {o[key]}")
    if o.get("prediction", "eps") != "eps":  # the network's output reading (UNetConfig.prediction): another model
        cmd.append(f"--prediction {o['prediction']}")
    if o.get("warmup_steps"):  # part of the recipe (the run's identity)
        cmd.append(f"--warmup-steps {o['warmup_steps']}")
    if o.get("init_from"):  # a later leg: it starts from the previous leg's weights
        cmd.append(f"--init-from {o['init_from']}")
    if o.get("numeric_mode", "fp32") != "fp32":  # how it was computed; the weights' recipe is the same
        cmd.append(f"--numeric-mode {o['numeric_mode']}")
    cmd.append(f"--out {out}")
    cmds = [" ".join(cmd)]
    if latent_meta is not None:
        latent = f"bench train --stage latent --steps {latent_meta['step']} --seed {latent_meta['seed']}"
        cmds.append(latent + f" --out {out}")
    return cmds


def export_run(run_dir: str | Path, out_dir: str | Path, dtype: str = "float16", name: str | None = None) -> dict:
    """Write the reference copy of a run; returns its manifest entry."""
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    if dtype not in DTYPES:
        raise BenchError(f"unknown export dtype {dtype!r}; use one of {', '.join(DTYPES)}")
    tensors, meta = load_checkpoint(run_dir / CHECKPOINT)
    config = json.loads((run_dir / "config.json").read_text())
    out_dir.mkdir(parents=True, exist_ok=True)
    meta_out = {k: v for k, v in meta.items() if k != "optim_groups"}
    meta_out["exported"] = {"from_sha256": file_sha256(run_dir / CHECKPOINT), "dtype": dtype}
    # The command of this leg, so that a leg started from this export (legs.py) can list it.
    meta_out["command"] = train_commands(config, meta["step"], None, f"runs/ref/{name or out_dir.name}")[0]
    weights = _ema_only(tensors, DTYPES[dtype])
    latent_meta = None
    if (run_dir / LATENT_CHECKPOINT).is_file():
        lt, latent_meta = load_checkpoint(run_dir / LATENT_CHECKPOINT)
        # The latent file supplies the latent DDIM: the autoencoder file need not carry its untrained copy.
        weights = {k: v for k, v in weights.items() if k not in lt}
    save_checkpoint(out_dir / CHECKPOINT, weights, meta_out)
    files = {CHECKPOINT: out_dir / CHECKPOINT}
    if latent_meta is not None:
        lmeta = {k: v for k, v in latent_meta.items() if k != "optim_groups"}
        lmeta["autoencoder_sha256"] = file_sha256(out_dir / CHECKPOINT)  # ties it to the exported weights
        lmeta["exported"] = {"from_sha256": file_sha256(run_dir / LATENT_CHECKPOINT), "dtype": dtype}
        save_checkpoint(out_dir / LATENT_CHECKPOINT, _ema_only(lt, DTYPES[dtype]), lmeta)
        files[LATENT_CHECKPOINT] = out_dir / LATENT_CHECKPOINT
    for extra in ("config.json", "train_log.jsonl"):
        if (run_dir / extra).is_file():
            shutil.copyfile(run_dir / extra, out_dir / extra)
    name = name or out_dir.name
    log = [json.loads(line) for line in (run_dir / "train_log.jsonl").read_text().splitlines()] \
        if (run_dir / "train_log.jsonl").is_file() else []
    ae_log = [r for r in log if r.get("stage") == "autoencoder"]
    entry = {
        "name": name,
        "model": meta["model"], "preset": meta.get("preset"), "dataset": meta["dataset"]["name"],
        "dataset_content_hash": meta["dataset"]["content_hash"],
        "image_shape": meta["dataset"]["image_shape"],
        "files": {k: {"sha256": file_sha256(p), "bytes": p.stat().st_size} for k, p in files.items()},
        "dtype": dtype,
        "train_commands": train_commands(config, meta["step"], latent_meta, f"runs/ref/{name}"),
        "seed": meta["seed"], "steps": meta["step"], "images_seen": meta["images_seen"],
        "final_loss_ema": meta.get("loss_ema"),
        "latent": None if latent_meta is None else {"steps": latent_meta["step"], "final_loss_ema": latent_meta.get("loss_ema")},
        # This leg's training wall time over all its sittings: the checkpoint's wall_s adds each resumed
        # sitting's time, while train_log.jsonl's wall_s restarts at every resumption (before 2026-11-28 this
        # field read the log, so a resumed run reported its last sitting only).
        "train_wall_s": meta["wall_s"] if meta.get("wall_s") is not None else (ae_log[-1].get("wall_s") if ae_log else None),
        # Training in legs (legs.py): every leg's steps, images, wall time, machine and command, and the total.
        "legs": list(meta.get("legs") or []) + [this_leg(meta_out)],
        "images_seen_total": total_images(meta),
        "trained_on": (json.loads((run_dir / "trained_on.json").read_text()) if (run_dir / "trained_on.json").is_file()
                       else "not recorded by this run"),
        "numerics": meta.get("numerics", "fp32 eager (not recorded by this run)"),
        "versions": {**library_versions(), "diffae_bench_commit": git_state()["commit"]},
        "exported_on": machine(),
    }
    return entry


def update_manifest(manifest_path: str | Path, entry: dict) -> None:
    """Insert or replace one entry (by name) in a JSON manifest, written atomically."""
    p = Path(manifest_path)
    data = json.loads(p.read_text()) if p.is_file() else {"models": {}}
    data["models"][entry["name"]] = entry
    atomic_write_json(p, data)
