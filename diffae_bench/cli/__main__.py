"""`python -m diffae_bench.cli ...` (torchrun uses this form): the same as `bench ...`."""

from .commands import main

if __name__ == "__main__":  # importing this module (tests import every module) runs nothing
    main()
