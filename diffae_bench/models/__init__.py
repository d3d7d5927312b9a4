"""Models: the seam every variant plugs into, the reference Diff-AE, and loading from run directories.

  base.py      DiffusionAutoencoder (denoiser + encoder + prior; owns decode/invert/sample), Representation
  priors.py    LatentPrior and Diff-AE's latent DDIM prior
  loss.py      L_simple, shared by every image model
  diffae.py    Diff-AE
  registry.py  MODELS (built-ins diffae, ddim, dmz; plugins by entry point), build_model, load_model
The DDIM baseline and the DMZ-style model live in diffae_bench.baselines.
"""

from .base import DiffusionAutoencoder, NoSemanticLatent, Representation
from .priors import LatentDDIMPrior, LatentNotTrained, LatentPrior
from .registry import (CHECKPOINT, LATENT_CHECKPOINT, MODELS, ModelKind, build_from_meta, build_model, canonical_config,
                       get_kind, has_latent_stage, load_model, model_names, resolve_checkpoint)

__all__ = ["CHECKPOINT", "LATENT_CHECKPOINT", "MODELS", "DiffusionAutoencoder", "LatentDDIMPrior", "LatentNotTrained",
           "LatentPrior", "ModelKind", "NoSemanticLatent", "Representation", "build_from_meta", "build_model",
           "canonical_config", "get_kind", "has_latent_stage", "load_model", "model_names", "resolve_checkpoint"]
