import numpy as np
import pytest
import torch

from proxyseg.dictionary.nmf import beta_divergence, fit_activations, nmf_cost, normalise_columns, sparse_nmf

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _data(F=40, T=120, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(F, T, generator=g).square() * 3 + 0.01


def _planted(F=48, K=4, T=300, seed=0):
    """X = W H with atoms on disjoint frequency bands (identifiable) and sparse activations."""
    rng = np.random.default_rng(seed)
    W = np.zeros((F, K))
    band = F // K
    for k in range(K):
        W[k * band:(k + 1) * band, k] = rng.uniform(0.5, 1.5, band)
    W /= np.linalg.norm(W, axis=0)
    H = rng.uniform(0, 2, (K, T)) * (rng.random((K, T)) < 0.6)
    return torch.tensor(W, dtype=torch.float32), torch.tensor(H, dtype=torch.float32), \
        torch.tensor(W @ H, dtype=torch.float32)


@pytest.mark.parametrize("beta", [2.0, 1.0, 0.0])
@pytest.mark.parametrize("mu", [0.0, 0.5])
def test_cost_non_increasing(beta, mu):
    X = _data()
    res = sparse_nmf(X, 6, beta=beta, mu=mu, iterations=150, seed=3)
    c = np.array(res.costs)
    assert len(c) == 150 and np.isfinite(c).all()
    tol = 1e-5 * abs(c[0])
    assert (np.diff(c) <= tol).all(), np.diff(c).max()
    assert c[-1] < c[0]
    # the reported cost is the true cost of the returned factors
    assert nmf_cost(X, res.W, res.H, beta, mu) == pytest.approx(c[-1], rel=1e-4)


@pytest.mark.parametrize("beta", [2.0, 1.0, 0.0])
def test_non_negative_and_unit_columns(beta):
    res = sparse_nmf(_data(), 5, beta=beta, mu=1.0, iterations=50)
    assert res.W.shape == (40, 5) and res.H.shape == (5, 120)
    assert (res.W >= 0).all() and (res.H >= 0).all()
    assert torch.allclose(res.W.norm(dim=0), torch.ones(5), atol=1e-5)
    assert res.W.dtype == torch.float32 and res.H.dtype == torch.float32


def test_recovers_planted_factorisation():
    W_true, H_true, X = _planted()
    res = sparse_nmf(X, 4, beta=2.0, mu=0.0, iterations=300, seed=1)
    rel = torch.linalg.norm(X - res.W @ res.H) / torch.linalg.norm(X)
    assert rel < 0.02
    sim = (W_true.T @ res.W)  # cosine similarities (unit columns)
    assert (sim.max(dim=1).values > 0.98).all()  # every true atom is found
    assert (sim.max(dim=0).values > 0.98).all()  # every learnt atom is a true one


def test_recovers_planted_factorisation_kl():
    W_true, H_true, X = _planted(seed=2)
    res = sparse_nmf(X, 4, beta=1.0, mu=0.0, iterations=300, seed=1)
    sim = (W_true.T @ res.W)
    assert (sim.max(dim=1).values > 0.95).all()


def test_same_seed_same_result():
    X = _data()
    a = sparse_nmf(X, 5, iterations=30, seed=7)
    b = sparse_nmf(X, 5, iterations=30, seed=7)
    c = sparse_nmf(X, 5, iterations=30, seed=8)
    assert torch.equal(a.W, b.W) and torch.equal(a.H, b.H) and a.costs == b.costs
    assert not torch.equal(a.W, c.W)


def test_numpy_input_and_zero_iterations():
    X = _data().numpy()
    res = sparse_nmf(X, 3, iterations=0)
    assert res.costs == [] and res.W.shape == (40, 3)
    assert torch.allclose(res.W.norm(dim=0), torch.ones(3), atol=1e-6)
    # the start is scaled to the data: mean(W H) = mean(X)
    assert float((res.W @ res.H).mean()) == pytest.approx(float(X.mean()), rel=1e-4)


def test_fit_activations_with_true_W():
    W_true, H_true, X = _planted()
    H = fit_activations(X, W_true, beta=2.0, mu=0.0, iterations=300)
    assert H.shape == H_true.shape and (H >= 0).all()
    rel = torch.linalg.norm(X - W_true @ H) / torch.linalg.norm(X)
    assert rel < 1e-2
    assert nmf_cost(X, W_true, H, 2.0, 0.0) < 1e-4 * float((X ** 2).sum())
    # a sparsity weight shrinks H but keeps a good fit
    H_sparse = fit_activations(X, W_true, beta=2.0, mu=1.0, iterations=300)
    assert H_sparse.sum() < H.sum()
    for beta in (1.0, 0.0):
        Hb = fit_activations(X + 0.01, W_true, beta=beta, mu=0.0, iterations=300)
        assert torch.linalg.norm(X + 0.01 - W_true @ Hb) / torch.linalg.norm(X) < 0.05


def test_update_W_false_keeps_W():
    W_true, _, X = _planted()
    res = sparse_nmf(X, 4, W_init=W_true * 3.0, update_W=False, iterations=20)
    assert torch.allclose(res.W, W_true, atol=1e-6)  # normalised, then fixed


def test_beta_divergence_values():
    X = torch.tensor([[1.0, 2.0], [0.0, 4.0]])
    Y = torch.tensor([[2.0, 2.0], [1.0, 1.0]])
    assert float(beta_divergence(X, Y, 2)) == pytest.approx(0.5 * (1 + 0 + 1 + 9))  # ½ ||X - Y||²
    kl = (1 * np.log(1 / 2) - 1 + 2) + 0 + (0 - 0 + 1) + (4 * np.log(4) - 4 + 1)
    assert float(beta_divergence(X, Y, 1)) == pytest.approx(kl, rel=1e-6)
    Xp = X + 1
    IS = sum(x / y - np.log(x / y) - 1 for x, y in zip(Xp.flatten().tolist(), Y.flatten().tolist()))
    assert float(beta_divergence(Xp, Y, 0)) == pytest.approx(IS, rel=1e-6)
    for beta in (2, 1, 0):
        assert float(beta_divergence(Xp, Xp, beta)) == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError):
        beta_divergence(X, Y, 1.5)


def test_nmf_cost_and_penalty():
    W_true, H_true, X = _planted()
    assert nmf_cost(X, W_true, H_true, 2.0, 0.0) == pytest.approx(0.0, abs=1e-3)
    assert nmf_cost(X, W_true, H_true, 2.0, 2.0) == pytest.approx(2.0 * float(H_true.double().sum()), rel=1e-5)


def test_nmf_cost_is_half_squared_error_plus_mu_l1():
    """β = 2: C = ½ ||X - W H||² + μ ||H||_1 (the β-divergence's ½, as in Le Roux et al. and the authors)."""
    X = _data()
    g = torch.Generator().manual_seed(1)
    W = normalise_columns(torch.rand(40, 5, generator=g))
    H = torch.rand(5, 120, generator=g)
    Xd, Wd, Hd = X.double(), W.double(), H.double()
    expected = 0.5 * float(((Xd - Wd @ Hd) ** 2).sum()) + 0.7 * float(Hd.sum())
    assert nmf_cost(X, W, H, 2.0, 0.7) == pytest.approx(expected, rel=1e-9)


def _fitted_with_mu(mu):
    """H fitted to a planted X (plus a positive floor) with the true W fixed, float64, to convergence."""
    W_true, _, X = _planted()
    W, X = W_true.double(), X.double() + 0.05
    H = fit_activations(X, W, beta=2.0, mu=mu, iterations=3000, dtype=torch.float64)
    return W, X, H


def test_mu_enters_the_h_update_unchanged():
    """Activations fitted with μ = 1 are a fixed point of the authors' update H ⊙ WᵀX / (WᵀWH + μ)."""
    W, X, H = _fitted_with_mu(1.0)
    step = H * (W.T @ X) / (W.T @ W @ H + 1.0)
    assert float(torch.linalg.norm(step - H) / torch.linalg.norm(H)) < 1e-8
    # the old convention's update (μ/2 in the denominator) moves it: not its fixed point
    old = H * (W.T @ X) / (W.T @ W @ H + 0.5)
    assert float(torch.linalg.norm(old - H) / torch.linalg.norm(H)) > 1e-3


def test_mu_is_the_kkt_multiplier_of_the_half_cost():
    """At the optimum of ½||X - WH||² + μ||H||_1, every active activation has Wᵀ(X - WH) = μ (not μ/2,
    as with the pre-2026-11-29 cost ||X - WH||² + μ||H||_1), and every inactive one Wᵀ(X - WH) <= μ."""
    for mu in (1.0, 0.3):
        W, X, H = _fitted_with_mu(mu)
        corr = W.T @ (X - W @ H)
        active = H > 1e-3 * float(H.max())
        assert int(active.sum()) > 100
        assert torch.allclose(corr[active], torch.full_like(corr[active], mu), rtol=0, atol=1e-6 * mu + 1e-9)
        assert float(corr[~active].max()) <= mu + 1e-6


def test_invalid_arguments():
    X = _data()
    with pytest.raises(ValueError):
        sparse_nmf(X, 3, beta=0.5)
    with pytest.raises(ValueError):
        sparse_nmf(-X, 3)
    with pytest.raises(ValueError):
        sparse_nmf(X, 3, W_init=torch.ones(5, 3))
    with pytest.raises(ValueError):
        sparse_nmf(X, 3, update_W=False)


def test_normalise_columns():
    W = torch.tensor([[3.0, 0.0], [4.0, 0.0]])
    Wn = normalise_columns(W)
    assert torch.allclose(Wn, torch.tensor([[0.6, 0.0], [0.8, 0.0]]))


@pytest.mark.parametrize("device", DEVICES)
def test_device_and_dtype(device):
    X = _data().numpy()
    res = sparse_nmf(X, 4, iterations=10, device=device)
    assert res.W.device.type == device and res.H.device.type == device
    H = fit_activations(torch.as_tensor(X, device=device), res.W, iterations=10)
    assert H.device.type == device and H.dtype == torch.float32


@pytest.mark.parametrize("beta", [2.0, 1.0, 0.0])
def test_w_update_follows_the_normalised_gradient(beta):
    """The W factor is > 1 exactly where the gradient of C(W / ||W||) w.r.t. W is negative (descent)."""
    from proxyseg.dictionary.nmf import _w_factor

    g = torch.Generator().manual_seed(0)
    X = torch.rand(12, 40, generator=g, dtype=torch.float64) + 0.1
    W = normalise_columns(torch.rand(12, 3, generator=g, dtype=torch.float64))
    H = torch.rand(3, 40, generator=g, dtype=torch.float64)
    Wp = W.clone().requires_grad_(True)
    beta_divergence(X, normalise_columns(Wp) @ H, beta).backward()
    lam = W @ H
    factor = _w_factor(W, (X * lam ** (beta - 2)) @ H.T, lam ** (beta - 1) @ H.T, 1e-12)
    big = Wp.grad.abs() > 1e-9
    assert torch.equal((factor[big] > 1), (Wp.grad[big] < 0))
    # and the radial component of the gradient is zero: the cost does not depend on the norms
    assert torch.allclose((Wp.grad * W).sum(0), torch.zeros(3, dtype=torch.float64), atol=1e-9)
