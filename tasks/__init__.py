"""Benchmark tasks, one file each (installed as diffae_bench.tasks); importing registers them."""

from . import fake_detection, interpolation, linear_probe, memorization, reconstruction  # noqa: F401
