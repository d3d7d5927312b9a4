"""`bench`, the command line: commands.py (run, train, ls, perf, demo, ... and the entry point main),
results.py (table, compare, leaderboard, findings, criteria), report.py, weights.py.

The CLI is the outermost layer: it parses, calls the harness / reporting / training code, and turns
BenchError into one line and an exit code. `python -m diffae_bench.cli` runs it too (__main__.py).
"""

from .commands import CRASH_EXIT_CODE, app, main

__all__ = ["CRASH_EXIT_CODE", "app", "main"]
