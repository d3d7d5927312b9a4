"""Reference models besides Diff-AE: the DDIM baseline and the DMZ-style variant.

Importing this package registers them in diffae_bench.models.MODELS (done by
`diffae_bench.models._load_plugins`, i.e. on the first registry lookup), so
`bench train --model ddim|dmz` and `load_model(run_dir)` find them. Neither has
a second training stage: `kind.latent_keys` is empty and the generic training
loop optimises all parameters.
"""

from diffae_bench.models import MODELS, ModelKind

from .ddim import DDIM, DDIMConfig, ddim_config_from_preset
from .dmz import DMZ, DMZConfig, PRIORS, dmz_config_from_preset, hamming_path, relaxed_bernoulli

__all__ = ["DDIM", "DDIMConfig", "ddim_config_from_preset", "DMZ", "DMZConfig", "dmz_config_from_preset",
           "hamming_path", "relaxed_bernoulli", "PRIORS"]

# Guarded so that importing this package directly before the registry's own
# plugin loading (which imports it again as a no-op) never double-registers.
if "ddim" not in MODELS:
    MODELS.add("ddim", ModelKind(
        name="ddim",
        cls=DDIM,
        config_cls=DDIMConfig,
        from_preset=ddim_config_from_preset,
        description="DDIM baseline: the Diff-AE decoder without z_sem (same UNet, schedule and sampler)",
    ))

if "dmz" not in MODELS:
    MODELS.add("dmz", ModelKind(
        name="dmz",
        cls=DMZ,
        config_cls=DMZConfig,
        from_preset=dmz_config_from_preset,  # n_bits = min(64, preset.encoder.z_dim), xattn_code, relaxed, batch
        description="DMZ-style: binary latents (Gumbel-softmax, tau 1), cross-attention to the code, Bernoulli(0.5) prior",
    ))
