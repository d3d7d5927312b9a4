"""A network that outputs v (UNetConfig.prediction = "v"): read as eps everywhere, and eps models unchanged.

The v reading (diffusion.eps_from_v) is checked against the definition of v
(Salimans & Ho 2022) on every model kind, end to end through the base class's
sampler with an oracle v network, and for what an old checkpoint (no
`prediction` field) becomes: an eps model that resumes and continues as before.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from diffae_bench import diffusion as D
from diffae_bench.checkpoint import load_checkpoint, save_checkpoint
from diffae_bench.errors import CheckpointError
from diffae_bench.models import build_model, canonical_config, load_model
from diffae_bench.presets import PRESETS
from diffae_bench.training.export import export_run
from diffae_bench.training.train import TrainOptions, train_autoencoder

ALPHA_BAR = torch.from_numpy(D.alphas_cumprod(D.linear_betas()))  # float64
IMAGE_SIZE, TRAIN_IMAGES = 16, 512  # the trained fixtures' (conftest.py)


def _tiny(kind: str, prediction: str):
    preset = PRESETS.get("tiny").for_data(3, IMAGE_SIZE)
    preset = dataclasses.replace(preset, unet=dataclasses.replace(preset.unet, prediction=prediction))
    return build_model(kind, preset).eval()


def test_eps_from_v_inverts_the_definition_of_v():
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.rand((6, 3, 8, 8), generator=g, dtype=torch.float64) * 2 - 1, torch.randn((6, 3, 8, 8), generator=g,
                                                                                                dtype=torch.float64)
    t = torch.tensor([0, 1, 300, 700, 998, 999])
    a = ALPHA_BAR[t].view(-1, 1, 1, 1)
    x_t = D.q_sample(x0, t, eps, ALPHA_BAR)
    v = a.sqrt() * eps - (1 - a).sqrt() * x0  # Salimans & Ho 2022, Sec. 4
    torch.testing.assert_close(D.eps_from_v(x_t, v, ALPHA_BAR[t]), eps, rtol=0, atol=1e-12)
    # Anti-oracle: reading the same v as eps is far off (the grey-background failure's other side).
    assert (v - eps).abs().mean() > 0.1


@pytest.mark.parametrize("kind", ["diffae", "ddim", "dmz"])
def test_every_model_hands_its_v_output_to_tasks_and_the_loss_as_eps(kind):
    torch.manual_seed(0)
    model = _tiny(kind, "v")
    assert model.prediction == "v" and model.describe()["config"]["unet"]["prediction"] == "v"
    x = torch.randn(4, 3, IMAGE_SIZE, IMAGE_SIZE)
    x0 = torch.rand(4, 3, IMAGE_SIZE, IMAGE_SIZE) * 2 - 1
    t = torch.tensor([0, 400, 900, 999])
    z = model.encode(x0) if model.has_semantic_latent else None
    out = model.unet(x, t, z) if z is not None else model.unet(x, t)
    a = ALPHA_BAR[t].float().view(-1, 1, 1, 1)
    with torch.no_grad():
        torch.testing.assert_close(model.denoise(x, t, z), (1 - a).sqrt() * x + a.sqrt() * out)
    if kind == "ddim":  # the loss: L_simple on the eps the v output means, with the loss's own draws of t and eps
        loss = model.loss(x0, torch.Generator().manual_seed(3))
        g = torch.Generator().manual_seed(3)
        t_, noise = torch.randint(0, D.T_TRAIN, (4,), generator=g), torch.randn(x0.shape, generator=g)
        x_t = D.q_sample(x0, t_, noise, ALPHA_BAR)
        a_ = ALPHA_BAR[t_].float().view(-1, 1, 1, 1)
        expected = F.mse_loss((1 - a_).sqrt() * x_t + a_.sqrt() * model.unet(x_t, t_), noise)
        torch.testing.assert_close(loss, expected)
    # The same weights read as eps give the raw output: an eps model is what it was.
    eps_model = _tiny(kind, "eps")
    eps_model.load_state_dict(model.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(eps_model.denoise(x, t, z), out)


class _OracleV(torch.nn.Module):
    """The exact v for data that hold one image: v = (sqrt(a) x_t - x0) / sqrt(1 - a)."""

    def __init__(self, target: torch.Tensor):
        super().__init__()
        self.target = target
        self.anchor = torch.nn.Parameter(torch.zeros(()))  # the model finds its device from a parameter

    def forward(self, x_t, t, z=None):
        a = ALPHA_BAR[t].float().view(-1, 1, 1, 1)
        return (a.sqrt() * x_t - self.target) / (1 - a).sqrt()


def test_the_sampler_with_an_oracle_v_network_returns_the_data():
    model = _tiny("ddim", "v")
    target = torch.rand(1, 3, IMAGE_SIZE, IMAGE_SIZE) * 2 - 1
    model.unet = _OracleV(target)
    for T in (1, 10, 100):
        samples = model.sample(3, T, generator=torch.Generator().manual_seed(T))
        torch.testing.assert_close(samples, target.expand(3, -1, -1, -1), rtol=0, atol=1e-4)
    # The x0 each step starts from: the target at every t under the v reading. Anti-oracle: read as eps,
    # the same output implies another x0 at high t (the last step, t = 0, recovers the target either way).
    x_t = torch.randn(3, 3, IMAGE_SIZE, IMAGE_SIZE, generator=torch.Generator().manual_seed(0))
    for t in (999, 500):
        x0_v, _ = D._x0_and_eps(model._eps_fn(None), x_t, t, ALPHA_BAR[t], clip=False)
        torch.testing.assert_close(x0_v, target.expand(3, -1, -1, -1), rtol=0, atol=1e-4)
        model.prediction = "eps"
        x0_eps, _ = D._x0_and_eps(model._eps_fn(None), x_t, t, ALPHA_BAR[t], clip=False)
        model.prediction = "v"
        assert (x0_eps - target).abs().mean() > 0.1


def _opts(out, **kw) -> TrainOptions:
    base = dict(model="ddim", preset="tiny", dataset="shapes", image_size=IMAGE_SIZE, steps=2, train_limit=TRAIN_IMAGES,
                seed=0, out=str(out), ckpt_every=2, device="cpu", progress=False, diag_every=0)
    return TrainOptions(**{**base, **kw})


def test_an_old_checkpoint_is_an_eps_model_that_resumes_and_continues(trained_ddim, tmp_path):
    # An old checkpoint: the fixture's, with the field a checkpoint written before it existed lacks.
    tensors, meta = load_checkpoint(trained_ddim["dir"] / "checkpoint.safetensors")
    assert meta["model_config"]["unet"].pop("prediction") == "eps"
    old = tmp_path / "old"
    old.mkdir()
    save_checkpoint(old / "checkpoint.safetensors", tensors, meta)
    model = load_model(old)
    assert model.prediction == "eps" and canonical_config(meta)["unet"]["prediction"] == "eps"
    # It continues as a leg of an eps run, and resumes as the same run with more steps...
    train_autoencoder(_opts(tmp_path / "leg", init_from=str(old)))
    resumed = train_autoencoder(_opts(old, steps=meta["step"] + 1, ckpt_every=1))
    assert resumed["step"] == meta["step"] + 1
    # ...but a v run is another network: neither a leg of it nor a resume of it.
    with pytest.raises(CheckpointError, match="different network configuration"):
        train_autoencoder(_opts(tmp_path / "vleg", init_from=str(old), prediction="v"))
    with pytest.raises(CheckpointError, match="differs in model_config"):
        train_autoencoder(_opts(old, steps=meta["step"] + 2, prediction="v"))


def test_a_v_run_records_its_reading_and_loads_as_v(tmp_path):
    summary = train_autoencoder(_opts(tmp_path / "v", prediction="v", threads=1))
    _, meta = load_checkpoint(summary["checkpoint"])
    assert meta["model_config"]["unet"]["prediction"] == "v"
    model = load_model(tmp_path / "v")
    assert model.prediction == "v" and model.describe()["config"]["unet"]["prediction"] == "v"
    # The export's manifest gives the command that repeats it; an eps run's command has no flag (as before).
    assert "--prediction v " in export_run(tmp_path / "v", tmp_path / "export")["train_commands"][0]
    train_autoencoder(_opts(tmp_path / "eps", threads=1))
    assert "--prediction" not in export_run(tmp_path / "eps", tmp_path / "export_eps")["train_commands"][0]
