"""Benchmark tasks, one file each (installed as diffae_bench.tasks); importing registers them."""

from . import fake_detection, fewshot_fid, interpolation, linear_probe, memorization, reconstruction, sample_fid, z_usage  # noqa: F401
