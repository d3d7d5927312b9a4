"""Reference models besides Diff-AE: the DDIM baseline and the DMZ-style variant.

Each module exposes a `KIND` (a diffae_bench.models.ModelKind) that the model
registry lists by name ("diffae_bench.baselines.ddim:KIND"), as it lists any
plugin; nothing here registers itself.
"""

from .ddim import DDIM, DDIMConfig, ddim_config_from_preset
from .dmz import DMZ, PRIORS, BitPrior, DMZConfig, dmz_config_from_preset, hamming_path, relaxed_bernoulli

__all__ = ["DDIM", "DDIMConfig", "ddim_config_from_preset", "DMZ", "DMZConfig", "dmz_config_from_preset",
           "hamming_path", "relaxed_bernoulli", "BitPrior", "PRIORS"]
