"""Networks: the ADM UNet with AdaGN, the semantic encoder, the latent MLP."""

from .latent_mlp import LatentMLP, LatentMLPConfig
from .unet import EncoderConfig, SemanticEncoder, UNet, UNetConfig

__all__ = ["UNet", "UNetConfig", "SemanticEncoder", "EncoderConfig", "LatentMLP", "LatentMLPConfig"]
