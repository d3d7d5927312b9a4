"""Shared fixtures: tiny models trained once per test session on `shapes`.

Training is the slow part of the suite (about a minute per model on 2 CPU
cores), so every test that needs a trained model shares these run
directories instead of training its own.

The fast lane, `pytest -m "not slow"` (make test-fast), leaves out every test
marked slow: those that train a model, start a process or run a large network.
Tests that use a trained fixture below are marked here, by
pytest_collection_modifyitems, so none can forget it; the others carry
@pytest.mark.slow themselves.
"""

from __future__ import annotations

import os

import pytest
import torch

from diffae_bench.training.train import TrainOptions, train_autoencoder, train_latent

# One intra-op thread in the test process (subprocesses keep torch's default): the suite's
# tensors are tiny, and on a shared, oversubscribed machine OpenMP's waiting threads made
# them far slower (one test: 44 s with 2 threads vs 0.25 s with 1, at load 12 on 2 cores).
# DIFFAE_BENCH_TEST_THREADS=N gives the tests N threads.
torch.set_num_threads(int(os.environ.get("DIFFAE_BENCH_TEST_THREADS", "1")))

# Tests never download pretrained weights (bench run would fetch LPIPS / FID weights on
# first use): offline for this process and every `bench` it starts. tests/test_weights.py
# lifts it inside single tests that serve stand-in files from a local HTTP server.
os.environ["DIFFAE_BENCH_OFFLINE"] = "1"

# Enough for the tiny preset to begin using z_sem on shapes: the decoder's
# output convs start at zero and the encoder's code barely varies across
# images at init, so z only starts to matter after a few hundred steps
# (measured at 16 px: loss gap true-vs-shuffled z at z-score ~2 after 100
# steps, ~4-5 after 500; about a minute on 2 cores).
IMAGE_SIZE = 16
TRAIN_STEPS = 500
TRAIN_IMAGES = 512
LATENT_STEPS = 300


# Training the fixtures is the one place where the tensors are large enough for a second
# thread to pay: on 2 idle cores the two fixtures took 62 + 71 s with 2 threads against
# 99 + 117 s with 1 (2026-11-27). DIFFAE_BENCH_FIXTURE_THREADS=N overrides it (1 on a
# loaded, shared machine). The tests only use what the fixtures learnt, never their bits.
FIXTURE_THREADS = int(os.environ.get("DIFFAE_BENCH_FIXTURE_THREADS", str(min(2, os.cpu_count() or 1))))


def _train(root, model: str, latent: bool = False, **kw) -> dict:
    out = root / model
    opts = TrainOptions(model=model, preset="tiny", dataset="shapes", image_size=IMAGE_SIZE, steps=TRAIN_STEPS,
                        train_limit=TRAIN_IMAGES,
                        seed=0, out=str(out), ckpt_every=TRAIN_STEPS, device="cpu", progress=False,
                        threads=FIXTURE_THREADS, **kw)
    summary = train_autoencoder(opts)
    if latent:
        summary["latent"] = train_latent(TrainOptions(**{**opts.__dict__, "steps": LATENT_STEPS}))
    return {**summary, "dir": out}


@pytest.fixture(scope="session")
def runs_root(tmp_path_factory):
    return tmp_path_factory.mktemp("runs")


@pytest.fixture(scope="session")
def trained_diffae(runs_root) -> dict:
    """A tiny Diff-AE with its latent DDIM; returns the training summary plus 'dir'."""
    return _train(runs_root, "diffae", latent=True)


@pytest.fixture(scope="session")
def trained_ddim(runs_root) -> dict:
    """The tiny DDIM baseline trained the same way."""
    return _train(runs_root, "ddim")


# Fixtures that train a model: a test using one (directly or through another fixture) is slow.
TRAINING_FIXTURES = {"trained_diffae", "trained_ddim"}
# Slow tests in tests/test_references.py, a file the lead engineer owns: the reference
# subset check evaluates six models in subprocesses (minutes).
SLOW_TESTS = {"test_references.py::test_reference_subset_reproduces_committed_results"}


def pytest_collection_modifyitems(items):
    for item in items:
        if TRAINING_FIXTURES & set(getattr(item, "fixturenames", ())) or \
                f"{item.path.name}::{getattr(item, 'originalname', item.name)}" in SLOW_TESTS:
            item.add_marker(pytest.mark.slow)
