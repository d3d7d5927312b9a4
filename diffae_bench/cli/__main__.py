"""`python -m diffae_bench.cli ...` (torchrun uses this form): the same as `bench ...`."""

from .commands import main

main()
