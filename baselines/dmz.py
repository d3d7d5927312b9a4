"""The DMZ-style Bernoulli-latent diffusion autoencoder (Proszewska, Malkin & Siddharth).

What PROTOCOL ("DMZ-style Bernoulli-latent variant") and
../shared/papers/dmz-summary.txt fix, and how this file does it:

- Encoder: Diff-AE's `SemanticEncoder` with z_dim = d, read as logits of d
  independent binary latents (paper: 64 bits on CelebA-64, 16 on CIFAR-10).
  `logit_norm="batch"` (the default since issue 15; a departure: PROTOCOL has
  no such layer) standardises each logit with BatchNorm1d (batch statistics in
  training, running ones at evaluation). Without it a bit's sign is its bias:
  the logits differ across images by ~0.02 against logistic noise of std
  pi / sqrt(3) = 1.8, and every image got the same code (README, "Departures").
  Centred logits give each bit both values across images, as the Bernoulli(0.5)
  prior assumes; the affine scale lets training outgrow the noise.
- Training: Gumbel-softmax relaxed samples with tau = 1. For two classes
  (logits l and 0) Gumbel-softmax is the binary concrete / relaxed Bernoulli,
  since the difference of two Gumbel(0, 1) variables is Logistic(0, 1):
      b~ = sigmoid((l + log u - log(1 - u)) / tau),   u ~ U(0, 1).
  `code_sample` picks what the decoder sees in training: b~ itself
  ("relaxed", PROTOCOL, the default) or the hard sample 1[b~ > 1/2] with the
  gradient of b~ ("straight_through"; measured no better, README). No KL or
  prior term: the loss is L_simple alone, so the encoder learns only through
  the sample.
- Evaluation: hard bits b = 1[l > 0] (= 1[sigmoid(l) > 0.5]). `encode()` gives
  them and the decoder is conditioned on them; `decode()` takes whatever code
  it is handed (hard bits, or soft codes on a lerp path).
- Decoder: the Diff-AE UNet with z fed through cross-attention at the
  attention resolutions, the code alone as keys and values
  (`z_mode="xattn_code"`, the default; diffae_bench/nets/code_attention.py), or
  added to the time embedding (`z_mode="temb"`, the AdaGN-style ablation).
  `z_mode="xattn"` is the form before issue 15 (z one extra key/value token
  beside the pixels inside the self-attention, where it got ~0.4 % of the
  attention at init and the decoder ignored the code): checkpoints store their
  z_mode, so the ones trained with it keep it (and a stored config without
  `logit_norm` is read as "none": DMZConfig.ABSENT_FIELD_VALUES).
- Generation needs no latent model. Priors (`model.prior.mode`, BitPrior):
  "bernoulli" i.i.d. Bernoulli(0.5) (default), "empirical" independent bits
  with the training codes' per-bit frequencies, "codes" re-used training codes
  drawn uniformly. The last two are handed encode() of the train split at
  sampling time (`prior.uses_train_codes`; the EvalContext does it).
- Probes get {"soft": sigmoid(logits), "hard": bits}; interpolation has a
  Hamming path (differing bits flipped one at a time) beside lerp.
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass
from typing import ClassVar

import torch
from torch import nn

from diffae_bench import rng
from diffae_bench.errors import BenchError
from diffae_bench.models import DiffusionAutoencoder, LatentPrior, ModelKind, Representation
from diffae_bench.models.loss import DiffusionLoss, draw_device, sharded
from diffae_bench.nets import EncoderConfig, SemanticEncoder, UNet, UNetConfig
from diffae_bench.presets import Preset

# cross-attention to the code (DMZ), added to t_emb (ablation), or the pre-issue-15 token beside the pixels
DMZ_Z_MODES = ("xattn_code", "temb", "xattn")
CODE_SAMPLES = ("relaxed", "straight_through")  # what the decoder sees in training (see module doc)
LOGIT_NORMS = ("none", "batch")  # normalisation of the encoder's logits (see module doc)
PRIORS = ("bernoulli", "empirical", "codes")
MAX_BITS = 64  # the paper's largest code (CelebA-64); see dmz_config_from_preset


@dataclass(frozen=True)
class DMZConfig:
    unet: UNetConfig = UNetConfig(z_dim=64, z_mode="xattn_code")  # decoder eps(x_t, t, z); z_dim = n_bits, z_mode = z_mode
    encoder: EncoderConfig = EncoderConfig(z_dim=64)  # logits of the bits; z_dim = n_bits
    n_bits: int = 64  # d binary latents (paper: 64 on CelebA-64, 16 on CIFAR-10)
    tau: float = 1.0  # Gumbel-softmax temperature in training (paper: 1)
    z_mode: str = "xattn_code"  # how z enters the decoder: xattn_code (DMZ), temb (ablation), xattn (pre-issue 15)
    code_sample: str = "relaxed"  # training code: relaxed (PROTOCOL) or straight_through (hard forward)
    logit_norm: str = "batch"  # batch: BatchNorm1d on the logits (see module doc); none (pre-issue 15)

    # Checkpoints written before issue 15 have no logit_norm (and store z_mode "xattn"):
    # they are rebuilt without the layer (checkpoint.from_dict), as they were trained.
    ABSENT_FIELD_VALUES: ClassVar[dict] = {"logit_norm": "none"}

    def __post_init__(self):
        # One source of truth would be nicer, but the UNet and encoder configs
        # are stored whole in checkpoints; refuse inconsistent combinations
        # instead of silently overriding one of them.
        if self.z_mode not in DMZ_Z_MODES:
            raise ValueError(f"DMZ z_mode must be one of {DMZ_Z_MODES}, got {self.z_mode!r}")
        if self.unet.z_dim != self.n_bits or self.encoder.z_dim != self.n_bits:
            raise ValueError(f"decoder z_dim ({self.unet.z_dim}) and encoder z_dim ({self.encoder.z_dim}) "
                             f"must equal n_bits ({self.n_bits}); build configs with dmz_config_from_preset")
        if self.unet.z_mode != self.z_mode:
            raise ValueError(f"decoder z_mode ({self.unet.z_mode}) must equal the DMZ z_mode ({self.z_mode})")
        if self.code_sample not in CODE_SAMPLES:
            raise ValueError(f"DMZ code_sample must be one of {CODE_SAMPLES}, got {self.code_sample!r}")
        if self.logit_norm not in LOGIT_NORMS:
            raise ValueError(f"DMZ logit_norm must be one of {LOGIT_NORMS}, got {self.logit_norm!r}")
        if self.tau <= 0:
            raise ValueError(f"tau must be positive, got {self.tau}")


def dmz_config_from_preset(preset: Preset, n_bits: int | None = None, z_mode: str = "xattn_code",
                           tau: float = 1.0, code_sample: str = "relaxed", logit_norm: str = "batch") -> DMZConfig:
    """A preset's decoder and encoder, sized for d bits.

    The preset's encoder.z_dim is sized for a continuous Diff-AE code, far
    wider than DMZ's binary ones. Default d = min(64, preset.encoder.z_dim):
    tiny -> 32, small -> 64, paper64 -> 64 (the paper's CelebA-64 figure; its
    CIFAR-10 models use 16, pass n_bits=16 for that). For z_mode="xattn_code"
    the UNet needs an attention resolution (all presets have 16 px).
    """
    d = n_bits if n_bits is not None else min(MAX_BITS, preset.encoder.z_dim)
    return DMZConfig(unet=dataclasses.replace(preset.unet, z_dim=d, z_mode=z_mode),
                     encoder=dataclasses.replace(preset.encoder, z_dim=d), n_bits=d, tau=tau, z_mode=z_mode,
                     code_sample=code_sample, logit_norm=logit_norm)


def relaxed_bernoulli(logits: torch.Tensor, tau: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Binary-concrete sample sigmoid((l + Logistic noise) / tau), differentiable in the logits.

    The uniforms come from the generator's device, like DiffusionLoss's noise
    (a CPU generator: the same run on any device; a CUDA one: no copy a step);
    clamped away from 0 and 1 so the logistic noise stays finite.
    """
    u = sharded(lambda n: torch.rand((n, *logits.shape[1:]), generator=generator, device=draw_device(generator)),
                logits.shape[0])
    u = u.clamp_(1e-6, 1 - 1e-6).to(logits.device, logits.dtype)
    return torch.sigmoid((logits + torch.log(u) - torch.log1p(-u)) / tau)


def hamming_path(a_bits: torch.Tensor, b_bits: torch.Tensor, n_points: int) -> torch.Tensor:
    """Frames from a to b flipping the differing bits one at a time, resampled to n_points.

    a_bits, b_bits: (B, d) or (d,) codes; they are binarised at 0.5, so soft
    codes give the path between their hard bits. The differing bits are
    flipped in index order; with k of them, frame j (0..n_points-1) has the
    first round(j * k / (n_points - 1)) flipped (round half up, in exact
    integer arithmetic), so frame 0 is a, the last frame is b, the Hamming
    distance from a never decreases, and consecutive frames differ by at most
    ceil(k / (n_points - 1)) bits. Returns (n_points, *a_bits.shape).
    """
    if n_points < 2:
        raise BenchError(f"a path needs n_points >= 2 (both ends), got {n_points}")
    if a_bits.shape != b_bits.shape:
        raise BenchError(f"codes to interpolate differ in shape: {tuple(a_bits.shape)} vs {tuple(b_bits.shape)}")
    dtype = a_bits.dtype if a_bits.is_floating_point() else torch.float32
    a, b = (a_bits > 0.5), (b_bits > 0.5)
    diff = a != b  # (..., d)
    rank = diff.long().cumsum(-1) - 1  # index of each differing bit among its row's differing bits
    k = diff.long().sum(-1, keepdim=True)  # (..., 1)
    j = torch.arange(n_points, device=a.device).view(-1, *([1] * a.ndim))  # (n_points, 1, ..., 1)
    m = 2 * j * k + (n_points - 1)  # floor(j k / (n-1) + 1/2) = (2 j k + n - 1) // (2 (n - 1))
    m = torch.div(m, 2 * (n_points - 1), rounding_mode="floor")  # bits flipped at frame j
    flipped = diff & (rank < m)  # (n_points, ..., d)
    return torch.where(flipped, b, a).to(dtype)


class BitPrior(LatentPrior):
    """The DMZ-style model's code priors (no parameters, nothing to train).

    mode "bernoulli": i.i.d. Bernoulli(0.5) bits (the paper's prior, default);
    "empirical": independent bits with the training codes' per-bit frequencies;
    "codes": training codes re-used, drawn uniformly with replacement. The last
    two are derived from encode() of the training split, which sample() is
    handed (the EvalContext passes it: uses_train_codes), so the model object
    holds no data-derived state that one task could leave behind for the next.
    The mode is a sampling choice, not part of the trained model: it is not in
    the config or the checkpoint, and records carry it (describe()).
    """

    uses_T_latent = False  # bits are drawn directly: no latent sampler, no steps
    modes = PRIORS  # the paper's Bernoulli(0.5) first (the default), then PROTOCOL's two alternatives

    def __init__(self, n_bits: int, mode: str = "bernoulli"):
        super().__init__()
        self.n_bits = n_bits
        self.mode = mode

    @property
    def mode(self) -> str:
        return self._mode

    @mode.setter
    def mode(self, name: str) -> None:
        if name not in PRIORS:
            raise BenchError(f"unknown DMZ prior {name!r}; use one of {', '.join(PRIORS)}")
        self._mode = name

    @property
    def uses_train_codes(self) -> bool:
        return self._mode != "bernoulli"

    def _check_codes(self, codes: torch.Tensor | None) -> torch.Tensor:
        if codes is None:
            raise BenchError(f"the {self._mode!r} prior is derived from training codes: pass "
                             f"train_codes=model.encode(train images), or use the 'bernoulli' prior")
        codes = codes.detach().float().cpu()
        if codes.ndim != 2 or codes.shape[1] != self.n_bits or len(codes) == 0:
            raise BenchError(f"the {self._mode!r} prior needs (N, {self.n_bits}) training codes, "
                             f"got shape {tuple(codes.shape)}")
        if not bool(((codes == 0) | (codes == 1)).all()):
            raise BenchError(f"the {self._mode!r} prior needs hard 0/1 codes (encode() of the train split), not soft codes")
        return codes

    @staticmethod
    def bit_frequencies(train_codes: torch.Tensor) -> torch.Tensor:
        """Per-bit frequency of 1 in the training codes: the empirical prior's parameters."""
        return train_codes.float().mean(0)

    @torch.no_grad()
    def sample(self, n: int, generator: rng.Generator = None, *, T_latent: int = 0,
               train_codes: torch.Tensor | None = None) -> torch.Tensor:
        """n codes (n, n_bits) of exact 0/1, on the CPU; T_latent is ignored (no latent model)."""
        if self._mode == "bernoulli":
            z = rng.rand((n, self.n_bits), generator) < 0.5
        elif self._mode == "empirical":
            z = rng.rand((n, self.n_bits), generator) < self.bit_frequencies(self._check_codes(train_codes))
        else:  # re-used training codes, drawn uniformly with replacement
            codes = self._check_codes(train_codes)
            z = codes[rng.randint(len(codes), (n,), generator)]
        return z.float()

    def describe(self) -> dict:
        return {"prior": self._mode}


class DMZ(DiffusionAutoencoder):
    kind = "dmz"
    latent_type = "binary"

    def __init__(self, cfg: DMZConfig):
        super().__init__(cfg.unet.prediction)
        self.cfg = cfg
        self.z_dim = cfg.n_bits
        self.encoder = SemanticEncoder(cfg.encoder)  # x0 -> logits (B, n_bits)
        self.logit_norm = nn.BatchNorm1d(cfg.n_bits) if cfg.logit_norm == "batch" else None
        self.unet = UNet(cfg.unet)
        self._loss = DiffusionLoss()
        self.prior = BitPrior(cfg.n_bits)  # no parameters or buffers: the checkpoint is unchanged

    @property
    def image_shape(self) -> tuple[int, int, int]:
        c = self.cfg.unet
        return (c.in_channels, c.image_size, c.image_size)

    # -- training ----------------------------------------------------------------
    def logits(self, x0: torch.Tensor) -> torch.Tensor:
        """Encoder output: one logit per bit, (B, n_bits). The encoder sees the clean x0."""
        logits = self.encoder(x0)
        return self.logit_norm(logits) if self.logit_norm is not None else logits

    def relaxed_code(self, x0: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """A tau-relaxed Bernoulli sample of the encoder's bits, in (0, 1)."""
        return relaxed_bernoulli(self.logits(x0), self.cfg.tau, generator)

    def training_code(self, x0: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """The code the decoder is trained on: the relaxed sample, or its hard bits with the relaxed gradient."""
        soft = self.relaxed_code(x0, generator)
        if self.cfg.code_sample == "relaxed":
            return soft
        # Straight-through: the forward value is the hard sample 1[b~ > 1/2], the
        # backward pass differentiates b~ (Gumbel-softmax "hard", Jang et al. 2017 Sec. 2.2).
        return (soft > 0.5).to(soft.dtype) - soft.detach() + soft

    def loss(self, x0: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """L_simple conditioned on the training code; no KL / prior term (PROTOCOL).

        Always the sampled code, in train and eval mode alike: this is the
        training objective, not an evaluation of the hard-bit model.
        """
        z = self.training_code(x0, generator)
        return self._loss(lambda x_t, t: self.output_as_eps(self.unet(x_t, t, z), x_t, t), x0, generator)

    def denoise(self, x_t: torch.Tensor, t: torch.Tensor, z: torch.Tensor | None) -> torch.Tensor:
        """The decoder on a code z (encode()'s hard bits at evaluation; soft codes on a lerp path)."""
        if z is None:
            raise BenchError("the dmz model's decoder needs a code z (its hard bits: model.encode(x0))")
        return self.output_as_eps(self.unet(x_t, t, z.to(x_t.dtype)), x_t, t)

    # -- codes -------------------------------------------------------------------
    @torch.no_grad()
    def encode(self, x0: torch.Tensor) -> torch.Tensor:
        """Hard bits 1[logit > 0] as float 0/1, (B, n_bits): what the decoder sees at evaluation."""
        return (self.logits(x0) > 0).to(x0.dtype)

    @property
    def codes(self) -> tuple[Representation, ...]:
        """The soft code is the one paths walk (PROTOCOL: "continuous lerp of the soft codes")."""
        return (Representation("soft", self.z_dim, "probability", interpolate=True),
                Representation("hard", self.z_dim, "binary"))

    @torch.no_grad()
    def representations(self, x0: torch.Tensor) -> dict[str, torch.Tensor]:
        """PROTOCOL: probes use the soft (probability) code; hard-bit probes are reported too."""
        logits = self.logits(x0)
        return {"soft": torch.sigmoid(logits), "hard": (logits > 0).to(x0.dtype)}

    def latent_paths(self, z_a: torch.Tensor, z_b: torch.Tensor, n_points: int) -> dict[str, torch.Tensor]:
        """{"hamming": bit-flip path between the hard bits, "lerp": lerp of the codes as given}.

        Pass the SOFT codes (representations()["soft"]): "lerp" is then the
        continuous path of PROTOCOL ("continuous lerp of the soft codes"), and
        "hamming" binarises them at 0.5, i.e. uses the hard bits (identical to
        encode() except for a logit so small that its sigmoid rounds to 0.5).
        Passing hard bits gives the same Hamming path and a lerp between bits.
        """
        return {"hamming": hamming_path(z_a, z_b, n_points), **super().latent_paths(z_a, z_b, n_points)}

    def describe(self) -> dict:
        return {**super().describe(), "config": asdict(self.cfg)}


KIND = ModelKind(name="dmz", cls=DMZ, config_cls=DMZConfig, from_preset=dmz_config_from_preset,
                 description="DMZ-style: binary latents (Gumbel-softmax, tau 1), cross-attention to the code, "
                             "Bernoulli(0.5) prior")
