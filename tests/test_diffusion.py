"""The diffusion process against PROTOCOL.md and against a denoiser known in closed form.

For Gaussian data x0 ~ N(mu, s^2 I) the optimal epsilon predictor is exact:
x_t ~ N(sqrt(a) mu, a s^2 + 1 - a), so E[eps | x_t] = sqrt(1-a) (x_t - sqrt(a) mu) / (a s^2 + 1 - a).
With it, DDIM is a discretisation of the true probability-flow ODE, so the
only errors left are the sampler's own, which is what these tests measure.
"""

import numpy as np
import pytest
import torch

from diffae_bench import diffusion as D
from diffae_bench.errors import BenchError

MU, SIG = 0.1, 0.3


def gaussian_eps(alpha_bar_full: np.ndarray, calls: list | None = None):
    ab = torch.from_numpy(alpha_bar_full)

    def eps_fn(x, t):
        if calls is not None:
            calls.append(int(t[0]))
        a = ab[t].to(x.dtype).reshape(-1, *([1] * (x.ndim - 1)))
        return (1 - a).sqrt() * (x - a.sqrt() * MU) / (a * SIG**2 + 1 - a)

    return eps_fn


@pytest.mark.parametrize("T,stride", [(10, 100), (20, 50), (50, 20), (100, 10)])
def test_ddimT_respacing(T, stride):
    sched = D.respace(T)
    assert D.ddim_stride(T) == stride
    assert sched.steps.tolist() == list(range(0, 1000, stride))
    assert sched.steps[-1] == 1000 - stride  # sampling starts at 900 for T = 10, not 999
    full = D.alphas_cumprod(D.linear_betas())
    np.testing.assert_array_equal(sched.alpha_bar.numpy(), full[::stride])


def test_stride_is_smallest_integer_giving_T():
    # T = 3: strides 334..499 all give 3 steps; the smallest is taken.
    assert D.ddim_stride(3) == 334
    assert D.respace(3).steps.tolist() == [0, 334, 668]


@pytest.mark.parametrize("T", [0, 400, 999, 1001, -5])
def test_impossible_T_is_an_error(T):
    with pytest.raises(BenchError):
        D.ddim_stride(T)


def test_linear_schedule_endpoints():
    b = D.linear_betas()
    assert len(b) == 1000 and b[0] == pytest.approx(1e-4) and b[-1] == pytest.approx(0.02)
    assert D.constant_betas()[123] == 0.008


def test_network_sees_original_timesteps():
    calls: list[int] = []
    eps = gaussian_eps(D.alphas_cumprod(D.linear_betas()), calls)
    x = torch.zeros(2, 4, dtype=torch.float64)
    D.ddim_sample(eps, x, D.respace(10))
    assert calls == [900, 800, 700, 600, 500, 400, 300, 200, 100, 0]
    calls.clear()
    D.ddim_invert(eps, x, D.respace(10))
    assert calls == [0, 100, 200, 300, 400, 500, 600, 700, 800, 900]


def test_q_sample_moments():
    ab = torch.from_numpy(D.alphas_cumprod(D.linear_betas()))
    g = torch.Generator().manual_seed(0)
    x0 = torch.full((200_000, 1), 0.5, dtype=torch.float64)
    t = torch.full((200_000,), 300)
    xt = D.q_sample(x0, t, torch.randn(x0.shape, generator=g, dtype=torch.float64), ab)
    a = ab[300].item()
    assert xt.mean().item() == pytest.approx(np.sqrt(a) * 0.5, abs=0.01)
    assert xt.var().item() == pytest.approx(1 - a, rel=0.02)


def test_eq4_solved_for_x0_and_for_eps_invert_q_sample():
    """x0_from_eps and eps_from_x0 recover what q_sample mixed, at low and high t (where sqrt(a) is ~0.006)."""
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.rand(6, 3, 4, 4, generator=g) * 2 - 1, torch.randn(6, 3, 4, 4, generator=g)
    ab = torch.from_numpy(D.alphas_cumprod(D.linear_betas()))
    t = torch.tensor([0, 10, 300, 600, 900, 999])
    x_t = D.q_sample(x0.double(), t, eps.double(), ab)
    a = ab[t].reshape(-1, 1, 1, 1)
    assert torch.allclose(D.x0_from_eps(x_t, eps.double(), a), x0.double(), atol=1e-9)
    assert torch.allclose(D.eps_from_x0(x_t, x0.double(), a), eps.double(), atol=1e-9)
    # Anti-oracle: another image's eps gives another x0.
    assert not torch.allclose(D.x0_from_eps(x_t, eps.double().roll(1, 0), a), x0.double(), atol=1e-3)


def test_single_ddim_step_matches_formula():
    """One step by hand: x_prev = sqrt(a_prev) x0_hat + sqrt(1 - a_prev) eps, eps re-derived after clipping."""
    sched = D.respace(2)  # steps [0, 500]
    a1, a0 = sched.alpha_bar[1].item(), sched.alpha_bar[0].item()
    const_eps = 0.7

    def eps_fn(x, t):
        return torch.full_like(x, const_eps)

    x = torch.tensor([[0.3, 5.0]], dtype=torch.float64)  # the second entry's x0 falls outside [-1, 1]
    out = D.ddim_sample(eps_fn, x, sched)
    # by hand for the first of the two steps (t = 500 -> 0), then the last step returns x0_hat at t = 0
    x0 = np.clip((x.numpy() - np.sqrt(1 - a1) * const_eps) / np.sqrt(a1), -1, 1)
    eps = (x.numpy() - np.sqrt(a1) * x0) / np.sqrt(1 - a1)
    x_prev = np.sqrt(a0) * x0 + np.sqrt(1 - a0) * eps
    x0_last = np.clip((x_prev - np.sqrt(1 - a0) * const_eps) / np.sqrt(a0), -1, 1)
    np.testing.assert_allclose(out.numpy(), x0_last, rtol=1e-12)


def test_sampling_gaussian_data_gives_its_moments():
    eps = gaussian_eps(D.alphas_cumprod(D.linear_betas()))
    g = torch.Generator().manual_seed(1)
    x_T = torch.randn(20_000, 4, generator=g, dtype=torch.float64)
    x0 = D.ddim_sample(eps, x_T, D.respace(100))
    assert x0.mean().item() == pytest.approx(MU, abs=0.01)
    assert x0.std().item() == pytest.approx(SIG, rel=0.05)


def test_inversion_then_decoding_improves_with_T():
    eps = gaussian_eps(D.alphas_cumprod(D.linear_betas()))
    g = torch.Generator().manual_seed(2)
    x0 = MU + SIG * torch.randn(2048, 8, generator=g, dtype=torch.float64)
    errors = []
    for T in (10, 20, 50, 100):
        sched = D.respace(T)
        rec = D.ddim_sample(eps, D.ddim_invert(eps, x0, sched), sched)
        errors.append(((rec - x0) ** 2).mean().item())
    assert all(later < 0.6 * earlier for earlier, later in zip(errors, errors[1:])), errors
    assert errors[-1] < 1e-3 < errors[0], errors


def test_inverted_latent_is_standard_normal_for_gaussian_data():
    """The ODE maps N(mu, s^2) to N(0, 1): inverted codes should look like noise."""
    eps = gaussian_eps(D.alphas_cumprod(D.linear_betas()))
    g = torch.Generator().manual_seed(3)
    x0 = MU + SIG * torch.randn(20_000, 4, generator=g, dtype=torch.float64)
    x_T = D.ddim_invert(eps, x0, D.respace(100))
    assert x_T.mean().item() == pytest.approx(0.0, abs=0.02)
    assert x_T.std().item() == pytest.approx(1.0, abs=0.06)


def test_latent_sampler_without_clipping_reaches_unbounded_values():
    """Latent DDIM works on standardised z: clipping to [-1, 1] would be wrong there."""
    ab = D.alphas_cumprod(D.constant_betas())
    const = 3.0  # data = 3 exactly: the optimal eps is (x_t - sqrt(a) * 3) / sqrt(1 - a)
    abt = torch.from_numpy(ab)

    def eps_fn(x, t):
        a = abt[t].to(x.dtype)[:, None]
        return (x - a.sqrt() * const) / (1 - a).sqrt()

    x_T = torch.randn(8, 2, dtype=torch.float64)
    z = D.ddim_sample(eps_fn, x_T, D.respace(10, D.constant_betas()), clip_x0=False)
    np.testing.assert_allclose(z.numpy(), const, rtol=1e-9)
    clipped = D.ddim_sample(eps_fn, x_T, D.respace(10, D.constant_betas()), clip_x0=True)
    assert clipped.max().item() <= 1.0 + 1e-9
