"""Benchmark tasks, one file each (installed as diffae_bench.tasks)."""
