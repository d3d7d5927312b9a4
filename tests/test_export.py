"""Reference-model export: EMA weights only, large tensors in float16, loadable, tied latent, manifest entry."""

from __future__ import annotations

import json

import torch

from diffae_bench.checkpoint import file_sha256, load_checkpoint
from diffae_bench.training.export import export_run, update_manifest
from diffae_bench.models import load_model


def test_export_is_small_loadable_and_described(trained_diffae, tmp_path):
    run = trained_diffae["dir"]
    entry = export_run(run, tmp_path / "ref" / "diffae-tiny", dtype="float16")
    out = tmp_path / "ref" / "diffae-tiny"
    tensors, meta = load_checkpoint(out / "checkpoint.safetensors")
    assert all(k.startswith("ema.") for k in tensors) and "optim_groups" not in meta
    big = [v for v in tensors.values() if v.numel() > 1024]
    assert big and all(v.dtype == torch.float16 for v in big)
    assert (out / "checkpoint.safetensors").stat().st_size < 0.4 * (run / "checkpoint.safetensors").stat().st_size
    ref, exp = load_model(run), load_model(out, require_latent=True)  # the latent is tied to the exported file
    assert next(exp.parameters()).dtype == torch.float32
    g = torch.Generator().manual_seed(0)
    x = torch.rand(8, 3, 16, 16, generator=g) * 2 - 1
    with torch.no_grad():
        assert torch.allclose(ref.encode(x), exp.encode(x), atol=1e-2)
        assert torch.equal(ref.prior.z_mean, exp.prior.z_mean) and torch.equal(ref.prior.z_std, exp.prior.z_std)  # small tensors exact
    assert entry["files"]["checkpoint.safetensors"]["sha256"] == file_sha256(out / "checkpoint.safetensors")
    assert entry["images_seen"] == trained_diffae["step"] * 32 and entry["seed"] == 0
    assert entry["train_commands"][0].startswith("bench train --kind diffae --preset tiny --dataset shapes")
    assert "--image-size 16" in entry["train_commands"][0] and "--train-limit 512" in entry["train_commands"][0]
    assert entry["train_commands"][1].startswith("bench train --stage latent --steps 300")
    update_manifest(tmp_path / "manifest.json", entry)
    update_manifest(tmp_path / "manifest.json", entry)  # replaces, never duplicates
    assert list(json.loads((tmp_path / "manifest.json").read_text())["models"]) == ["diffae-tiny"]


def test_train_commands_carry_the_warmup_and_the_leg():
    from diffae_bench.training.export import train_commands

    opts = {"model": "ddim", "preset": "small", "dataset": "shapes", "seed": 0, "batch_size": 1024, "lr": 4e-4,
            "warmup_steps": 50, "init_from": "prev/ddim-small-shapes"}
    cmd = train_commands({"options": opts}, 500, None, "runs/x")[0]
    assert "--warmup-steps 50" in cmd and "--init-from prev/ddim-small-shapes" in cmd and "--lr 0.0004" in cmd
    assert "--warmup-steps" not in train_commands({"options": {**opts, "warmup_steps": 0}}, 500, None, "runs/x")[0]


def test_a_resumed_runs_wall_time_counts_every_sitting(tmp_path, monkeypatch):
    """train_wall_s is the run's training time over all its sittings (the checkpoint's wall_s), not the last
    sitting's: train_log.jsonl's wall_s restarts at each resumption. A clock that ticks 10 s per reading makes
    the figures exact whatever the machine's load (real times here are fractions of a second)."""
    import itertools
    import time
    import types

    from diffae_bench.training import train as train_module
    from diffae_bench.training.train import TrainOptions, train_autoencoder

    tick = 10.0
    readings = itertools.count()
    monkeypatch.setattr(train_module, "time", types.SimpleNamespace(time=lambda: tick * next(readings),
                                                                    perf_counter=time.perf_counter))
    opts = dict(model="ddim", preset="tiny", dataset="shapes", train_limit=64, batch_size=8, seed=0,
                out=str(tmp_path / "run"), ckpt_every=1, device="cpu", progress=False)
    sittings = []  # each sitting's wall time: its last train_log.jsonl row
    for steps in (2, 4, 6):
        train_autoencoder(TrainOptions(**opts, steps=steps))
        rows = (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()
        sittings.append(json.loads(rows[-1])["wall_s"])
    entry = export_run(tmp_path / "run", tmp_path / "ref", dtype="float16")
    _, meta = load_checkpoint(tmp_path / "run" / "checkpoint.safetensors")
    assert entry["train_wall_s"] == meta["wall_s"] == entry["legs"][-1]["wall_s"]
    # Each sitting's log row is read from the clock once after its checkpoint's figure: one tick apart.
    assert sum(sittings) - tick * len(sittings) <= entry["train_wall_s"] <= sum(sittings)
    assert entry["train_wall_s"] > sittings[-1] + tick  # anti-oracle: the last sitting alone is less


def test_committed_manifests_give_each_runs_wall_time_over_all_its_sittings():
    """Every committed manifest's train_wall_s is its last leg's wall time (all sittings). Exports before the fix
    above wrote the last sitting's; the resumed v-shapes runs' manifests were corrected to their legs' figure.
    The two may differ by one checkpoint write (< 1 s): the legs' figure is taken just before it."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "results"
    entries = [(p, name, e) for p in sorted(root.rglob("manifest*.json"))
               for name, e in json.loads(p.read_text()).get("models", {}).items() if e.get("legs")]
    assert len(entries) >= 15  # the references and every leg's exports
    wrong = [(str(p.relative_to(root)), name, e["train_wall_s"], e["legs"][-1]["wall_s"]) for p, name, e in entries
             if not abs(e["train_wall_s"] - e["legs"][-1]["wall_s"]) < 1.0]
    assert not wrong, wrong
