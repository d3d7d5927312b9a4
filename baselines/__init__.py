"""Reference models besides Diff-AE: the DDIM baseline and the DMZ-style variant.

Importing this package registers them in diffae_bench.models.MODELS.
"""
