"""Benchmark tasks, one file each (installed as diffae_bench.tasks).

Each module exposes `TASK`; diffae_bench.harness.task.TASKS lists them by name and
imports a module only when its task is asked for.
"""
