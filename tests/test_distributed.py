"""Scale-out (issue 17): DDP training and sharded evaluation under torchrun (gloo on CPUs), chunked samples."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from diffae_bench.harness import context as C
from diffae_bench.harness.cache import Cache
from diffae_bench.checkpoint import load_checkpoint, split_prefix
from diffae_bench.data import load_dataset
from diffae_bench.models import build_model
from diffae_bench.presets import PRESETS
from diffae_bench.training.train import _StopFlag
from diffae_bench.training.step import BatchSource, LossModule, ShardedLoss, StepSetup, make_loss_fn

TINY16 = PRESETS.get("tiny").for_data(3, 16)
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def _grads(model, fn, runs_backward):
    model.zero_grad()
    loss = fn()
    if not runs_backward:
        loss.backward()
    return loss.detach(), [p.grad.clone() for p in model.parameters() if p.grad is not None]


@pytest.mark.parametrize("accumulate", [2, 4])
def test_sharded_loss_is_the_single_process_loss_and_gradient(accumulate):
    """Micro-batches with the global batch's draws sliced (models.loss.draw_shard): the same loss, gradient and RNG."""
    torch.manual_seed(0)
    model = build_model("diffae", TINY16).train()
    model.prior.requires_grad_(False)
    data, setup, cpu = load_dataset("shapes", "train", image_size=16, limit=64), StepSetup(), torch.device("cpu")
    g1 = torch.Generator().manual_seed(1)
    loss1, grad1 = _grads(model, make_loss_fn(model, BatchSource(data, 8, cpu, g1, setup), g1, setup, cpu), False)
    g2 = torch.Generator().manual_seed(1)
    sharded = ShardedLoss(LossModule(model), BatchSource(data, 8, cpu, g2, setup), g2, setup, cpu, 0, 1, accumulate)
    loss2, grad2 = _grads(model, sharded, True)
    assert torch.allclose(loss1, loss2, rtol=1e-5)
    for a, b in zip(grad1, grad2):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-7)
    assert torch.equal(g1.get_state(), g2.get_state())  # the next step draws what a single process draws


def test_sigterm_asks_for_a_clean_stop():
    with _StopFlag() as flag:
        os.kill(os.getpid(), signal.SIGTERM)
        assert flag.stop


# ---------------------------------------------------------------- samples: cached per batch, resumable, shared
def test_samples_are_cached_per_batch_and_an_interrupted_run_resumes(tmp_path, monkeypatch):
    monkeypatch.setattr(C, "ROWS_PER_WRITE", 6)  # stored every 2 batches of 3
    torch.manual_seed(0)
    model = build_model("ddim", TINY16).eval()
    ctx = C.EvalContext(model, "shapes", cache=Cache(tmp_path / "a"), progress=False, batch_size=3)
    fresh = ctx.samples(10, T=2)

    calls = {"n": 0}
    plain = type(model).sample

    def interrupted(self, *a, **k):  # the third batch dies: [0:3) and [3:6) are stored, [6:9) is not
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return plain(self, *a, **k)

    ctx2 = C.EvalContext(model, "shapes", cache=Cache(tmp_path / "b"), progress=False, batch_size=3)
    monkeypatch.setattr(type(model), "sample", interrupted)
    with pytest.raises(KeyboardInterrupt):
        ctx2.samples(10, T=2)
    monkeypatch.setattr(type(model), "sample", plain)
    hits = ctx2.cache.hits
    resumed = ctx2.samples(10, T=2)
    assert ctx2.cache.hits - hits == 2 and torch.equal(resumed, fresh)  # the two finished batches served


def test_a_smaller_n_reads_the_full_batches_of_a_larger_one_and_never_depends_on_order(tmp_path):
    torch.manual_seed(0)
    model = build_model("ddim", TINY16).eval()
    big_first = C.EvalContext(model, "shapes", cache=Cache(tmp_path / "a"), progress=False, batch_size=3)
    twelve = big_first.samples(12, T=2)
    hits = big_first.cache.hits
    seven = big_first.samples(7, T=2)
    assert big_first.cache.hits - hits == 2  # [0:3) and [3:6) read; only the partial batch [6:7) computed
    assert torch.equal(seven[:6], twelve[:6])
    alone = C.EvalContext(model, "shapes", cache=Cache(tmp_path / "b"), progress=False, batch_size=3).samples(7, T=2)
    assert torch.equal(alone, seven)  # what ran before never changes a result, not even in the last bit


@pytest.mark.parametrize("kind, shared", [("ddim", True), ("dmz", True), ("diffae", False)])
def test_samples_are_shared_across_T_latent_only_where_no_latent_sampler_uses_it(tmp_path, kind, shared):
    torch.manual_seed(0)
    model = build_model(kind, TINY16).eval()
    if kind == "diffae":
        model.prior.trained.fill_(True)  # an untrained latent DDIM refuses to sample; its draws still depend on T_latent
    ctx = C.EvalContext(model, "shapes", cache=Cache(tmp_path), progress=False, batch_size=4)
    a = ctx.samples(4, T=2, T_latent=20)
    hits = ctx.cache.hits
    b = ctx.samples(4, T=2, T_latent=50)
    assert (ctx.cache.hits - hits == 1) == shared
    if shared:
        assert torch.equal(a, b)


# ---------------------------------------------------------------- torchrun with 2 gloo processes
def _torchrun(*args, nproc=2, port=29561, cwd=None):
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}", f"--master_port={port}",
           "-m", "diffae_bench.cli", *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, env=ENV, cwd=cwd, timeout=900)


def _bench(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "diffae_bench.cli", *map(str, args)], capture_output=True, text=True,
                          env=ENV, cwd=cwd, timeout=900)


def _online(run: Path) -> dict:
    return split_prefix(load_checkpoint(run / "checkpoint.safetensors")[0], "online")


TRAIN = ["train", "--kind", "diffae", "--preset", "tiny", "--image-size", "16", "--batch-size", "8", "--train-limit",
         "64", "--device", "cpu", "--quiet", "--diag-every", "0", "--seed", "3"]


@pytest.mark.slow
def test_ddp_training_matches_one_process_and_resumes_with_another_count(tmp_path):
    one = _bench(*TRAIN, "--steps", "3", "--out", tmp_path / "one")
    assert one.returncode == 0, one.stderr
    two = _torchrun(*TRAIN, "--steps", "3", "--out", tmp_path / "two")
    assert two.returncode == 0, two.stderr
    acc = _bench(*TRAIN, "--steps", "3", "--accumulate", "2", "--out", tmp_path / "acc")
    assert acc.returncode == 0, acc.stderr
    # 2 steps with 2 processes, then the third with 1: resuming does not depend on the process count.
    assert _torchrun(*TRAIN, "--steps", "2", "--out", tmp_path / "mixed", port=29562).returncode == 0
    resumed = _bench(*TRAIN, "--steps", "3", "--out", tmp_path / "mixed")
    assert resumed.returncode == 0 and "resuming" in resumed.stdout + resumed.stderr
    ref = _online(tmp_path / "one")
    for other in ("two", "acc", "mixed"):
        w = _online(tmp_path / other)
        # Float tolerance: the same gradient summed in another order, through 3 Adam steps at lr 2e-3.
        worst = max((ref[k].float() - w[k].float()).abs().max().item() for k in ref)
        assert worst < 1e-3, (other, worst)
    meta = load_checkpoint(tmp_path / "two" / "checkpoint.safetensors")[1]
    assert meta["parallel"] == {"processes": 2, "accumulate": 1, "per_process_micro_batch": 4}
    assert meta["images_seen"] == 3 * 8  # the global batch


@pytest.mark.slow
def test_sharded_bench_run_writes_the_single_process_records(tmp_path):
    args = ["run", "--task", "reconstruction,z_usage", "--model", "diffae-small-shapes", "--limit", "12", "--T", "10",
            "--set", "reconstruction.n_images=12", "--set", "reconstruction.lpips=false", "--device", "cpu",
            "--offline", "--quiet", "--batch-size", "4"]
    one = _bench(*args, "--out", tmp_path / "one", "--cache-dir", tmp_path / "c1")
    assert one.returncode == 0, one.stderr
    two = _torchrun(*args, "--out", tmp_path / "two", "--cache-dir", tmp_path / "c2", port=29563)
    assert two.returncode == 0, two.stderr
    for task in ("reconstruction", "z_usage"):
        name = f"{task}__diffae-small-shapes__shapes.json"
        a, b = (json.loads((tmp_path / d / name).read_text()) for d in ("one", "two"))
        strip = lambda rec: [(m["key"], m["value"], m["ci_low"], m["ci_high"], m["n"]) for m in rec["metrics"]]
        assert strip(a) == strip(b), task


# ---------------------------------------------------------------- lazy data sets: decoded ahead, hashed once
def _image_folder(tmp_path: Path, n: int = 24) -> Path:
    from PIL import Image

    folder = tmp_path / "images"
    folder.mkdir()
    g = torch.Generator().manual_seed(0)
    for i in range(n):
        arr = (torch.rand(20, 20, 3, generator=g) * 255).to(torch.uint8).numpy()
        Image.fromarray(arr).save(folder / f"{i:03d}.png")
    return folder


def test_a_lazy_data_sets_hash_is_computed_once_per_file_list(tmp_path, monkeypatch):
    from diffae_bench import paths

    monkeypatch.setenv("DIFFAE_BENCH_CACHE", str(tmp_path / "cache"))
    folder = _image_folder(tmp_path)
    first = load_dataset("imagefolder", "train", root=folder, image_size=16)
    h = first.content_hash()
    assert len(list(paths.hash_cache_dir().iterdir())) == 1
    again = load_dataset("imagefolder", "train", root=folder, image_size=16)
    monkeypatch.setattr(again, "load_uint8", lambda idx: (_ for _ in ()).throw(AssertionError("decoded again")))
    assert again.content_hash() == h  # served from the hash cache, no image decoded
    victim = folder / again.attributes["filename"][0]
    victim.write_bytes((folder / again.attributes["filename"][1]).read_bytes())  # a file's content changes
    changed = load_dataset("imagefolder", "train", root=folder, image_size=16)
    assert changed.content_hash() != h


@pytest.mark.slow
def test_training_on_image_files_prefetches_and_resumes_identically(tmp_path):
    folder = _image_folder(tmp_path, 40)
    common = ["train", "--kind", "ddim", "--preset", "tiny", "--dataset", "imagefolder", "--data-root", folder,
              "--image-size", "16", "--batch-size", "4", "--device", "cpu", "--quiet", "--diag-every", "0",
              "--workers", "2", "--ckpt-every", "2"]
    assert _bench(*common, "--steps", "4", "--out", tmp_path / "straight").returncode == 0
    assert _bench(*common, "--steps", "2", "--out", tmp_path / "resumed").returncode == 0
    r = _bench(*common, "--steps", "4", "--out", tmp_path / "resumed")
    assert r.returncode == 0, r.stderr
    a, b = _online(tmp_path / "straight"), _online(tmp_path / "resumed")
    assert all(torch.equal(a[k], b[k]) for k in a)  # batch s's images depend on (seed, s) only


def test_codes_z_and_x_T_share_batches_across_n(tmp_path):
    torch.manual_seed(0)
    model = build_model("diffae", TINY16).eval()
    ctx = C.EvalContext(model, "shapes", cache=Cache(tmp_path / "a"), progress=False, batch_size=4)
    z12, x12, c12 = ctx.z("test", 12), ctx.x_T("test", 12, 2), ctx.codes("test", 12)
    def new_hits(fn):
        before = ctx.cache.hits
        return fn(), ctx.cache.hits - before

    (z6, h_z), (c6, h_c) = new_hits(lambda: ctx.z("test", 6)), new_hits(lambda: ctx.codes("test", 6))
    assert h_z == 1 and h_c == 1  # the full batch [0:4) is read; [4:6) is its own entry
    x6, h_x = new_hits(lambda: ctx.x_T("test", 6, 2))
    assert h_x == 3  # x_T [0:4), then z [0:4) and [4:6) (now cached) for the missing x_T batch
    assert torch.equal(z6[:4], z12[:4]) and torch.equal(x6[:4], x12[:4])
    assert list(c6) == [r.name for r in model.codes] and all(torch.equal(c6[k][:4], c12[k][:4]) for k in c6)
    fresh = C.EvalContext(model, "shapes", cache=Cache(tmp_path / "b"), progress=False, batch_size=4)
    assert torch.equal(fresh.z("test", 6), z6) and torch.equal(fresh.x_T("test", 6, 2), x6)
