"""Benchmark tasks, one file each (installed as diffae_bench.tasks); importing registers them."""

from . import linear_probe, reconstruction  # noqa: F401
