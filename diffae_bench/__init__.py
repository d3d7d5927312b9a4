"""diffae_bench: a benchmark suite for the representations of diffusion autoencoders.

`from diffae_bench import evaluate` is the Python API (diffae_bench/api.py);
the CLI is `bench` (diffae_bench/cli/commands.py). Imported lazily, so that importing
one module of the suite does not import all of it.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("diffae-bench")  # one source of truth: pyproject.toml
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "unknown"


def __getattr__(name: str):
    if name in ("evaluate", "Results"):
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'diffae_bench' has no attribute {name!r}")
