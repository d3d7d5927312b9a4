"""Benchmark tasks, one file each (installed as diffae_bench.tasks); importing registers them."""

from . import (attribute_manipulation, disentanglement, fake_detection, fewshot_fid, interpolation,  # noqa: F401
               linear_probe, memorization, reconstruction, sample_fid, z_usage)
