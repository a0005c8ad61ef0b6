"""Sparse NMF with unit-norm atoms, by multiplicative updates (Le Roux, Weninger & Hershey 2015).

Model
-----
``X ≈ W̄ H`` with ``X`` (F x T), ``H`` (K x T) non-negative and ``W̄`` (F x K) the column-wise
L2-normalised dictionary, minimising

    C(W, H) = D_β(X | W̄ H) + μ ||H||_1,      β ∈ {2, 1, 0}

with ``D_2(X|Y) = ½ ||X - Y||_F^2`` (the β-divergence's own ½, ``d_2(x|y) = ½ (x - y)²``: the cost of
docs/method.md §4, of Le Roux et al. and of the authors' code, so that ``μ`` here is their ``μ``), ``D_1`` the
generalised Kullback-Leibler divergence ``Σ x log(x/y) - x + y`` and ``D_0`` the Itakura-Saito divergence
``Σ x/y - log(x/y) - 1``.

Because the cost depends on ``W`` only through ``W̄``, the unit norm is part of the model: the
"well done" W update of Le Roux et al. follows the gradient of ``C`` with respect to the *unnormalised*
``W`` (which projects out the radial direction), split into its positive and negative parts,

    G⁻ = (X ⊙ Λ^{β-2}) Hᵀ,  G⁺ = Λ^{β-1} Hᵀ,  Λ = W̄ H
    W ← W ⊙ (G⁻ + W̄ ⊙ 1ᵀ(W̄ ⊙ G⁺)) / (G⁺ + W̄ ⊙ 1ᵀ(W̄ ⊙ G⁻)),   then W̄ = W / ||W||_col,

rather than rescaling ``W`` and ``H`` after an update that ignored the norm (the "half-baked" variant,
which changes ``μ||H||_1`` behind the update's back). The H update is the usual penalised one,

    H ← H ⊙ [ W̄ᵀ(X ⊙ Λ^{β-2}) / (W̄ᵀ Λ^{β-1} + μ) ]^γ,

(for β = 2: ``H ← H ⊙ W̄ᵀX / (W̄ᵀW̄H + μ)``, the authors' update, μ entering unchanged), with the exponent
``γ = 1`` for β ∈ {1, 2}, ``γ = 1/2`` for β = 0 (Févotte & Idier 2011): with it the H step is a
majorisation-minimisation step and never increases ``C``. Le Roux et al. use γ = 1 throughout; for IS
that step can overshoot, so we use the MM exponent (and the same exponent on the W factor for IS).

The W step has no such guarantee. Each iteration therefore checks that it lowered the cost and, if it
did not, retries with the multiplicative factor raised to the power 1/2, 1/4, ... (a backtracking line
search along the same direction, which is a descent direction); if 4 halvings fail, W is kept for this
iteration. Away from convergence this rarely fires; near convergence, where the change is at the level of
float rounding, it does (``NMFResult.n_backtracks`` counts the halvings). A change within rounding
(``2 eps(dtype) * cost``) counts as no increase. This makes ``costs`` non-increasing by construction, up
to float rounding.

Entries of H or W that fall below the smallest normal float are set to 0 (flush-to-zero): multiplicative
updates shrink unused activations geometrically, and subnormal numbers make CPU arithmetic many times
slower while contributing nothing at float32 precision. A zero stays zero under multiplicative updates.

Without a penalty (μ = 0) the cost does not depend on how the scale of each atom is split between W and
H, so there the W step is Lee & Seung's majorisation-minimisation step on W (guaranteed descent) followed
by moving the column norms of W into the rows of H (W H unchanged). That "half-baked" normalisation is
exact when μ = 0 and converges faster per iteration than the damped normalised update (on a 60 s log
spectrogram, K = 128, 200 iterations: data term ½||X - W̄H||² 3.65e3 against 4.9e3); for μ > 0 it would
change μ||H||_1 behind the update's back, so the normalised update above is used.

Iteration order: H then W (Le Roux et al.). ``costs[i]`` is ``C`` after iteration ``i``.

Implementation notes: for β = 2 no F x T product is ever formed: each iteration costs two F·K·T
matrix products (``W̄ᵀX`` and ``X Hᵀ``) plus K²·T ones, and the cost is computed from those same
products (``½||X||² - ⟨W̄, X Hᵀ⟩ + ½⟨W̄ᵀW̄, H Hᵀ⟩``, in float64). For β ∈ {0, 1}, ``Λ`` (F x T) is formed
(4 F·K·T products an iteration for KL, 6 for IS). Nothing of size F·K·T is ever allocated.

The authors' code ignored its β argument and normalised the rows of W instead of its columns; neither
defect is reproduced here.

Before 2026-11-29 the β = 2 cost had no ½ (``||X - W̄H||² + μ||H||_1``, H update with ``μ/2``), so a
given μ was half as sparse as the authors' μ: old μ = 1 is new μ = 0.5.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from proxyseg.core.device import device_of

__all__ = ["NMFResult", "sparse_nmf", "fit_activations", "beta_divergence", "nmf_cost", "normalise_columns"]

_BETAS = (0.0, 1.0, 2.0)
_MAX_HALVINGS = 4


@dataclass
class NMFResult:
    """Result of :func:`sparse_nmf`: ``W`` (F x K, unit-norm columns), ``H`` (K x T), both non-negative.

    ``costs[i]`` = D_β(X | W H) + μ ||H||_1 after iteration ``i`` (for β = 2, ``D_2 = ½ ||X - W H||²``;
    float64, from the iteration's own products). ``n_backtracks`` counts step halvings of the W update
    (see the module docstring).
    """

    W: torch.Tensor
    H: torch.Tensor
    costs: list[float] = field(default_factory=list)
    beta: float = 2.0
    mu: float = 1.0
    n_backtracks: int = 0


def _check_beta(beta: float) -> float:
    beta = float(beta)
    if beta not in _BETAS:
        raise ValueError(f"beta must be 2 (Euclidean), 1 (Kullback-Leibler) or 0 (Itakura-Saito), got {beta}")
    return beta


def _to(x, device, dtype) -> torch.Tensor:
    return torch.as_tensor(x).to(device=device, dtype=dtype)


def normalise_columns(W: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """``W`` with each column divided by its L2 norm (all-zero columns stay zero)."""
    return W / torch.linalg.vector_norm(W, dim=0, keepdim=True).clamp_min(eps)


def beta_divergence(X: torch.Tensor, Y: torch.Tensor, beta: float, eps: float = 1e-10) -> torch.Tensor:
    """``D_β(X | Y)`` summed over all entries (a 0-dim tensor, differentiable in ``Y``).

    β = 2: ``½ ||X - Y||_F^2`` (the β-divergence's ½). β = 1: ``Σ x log(x/y) - x + y`` (``0 log 0 = 0``).
    β = 0: ``Σ x/y - log(x/y) - 1``. For β < 2, ``Y`` is clamped to ``>= eps``; for β = 0 ``X`` too.
    The sum is taken in the inputs' dtype; :func:`nmf_cost` gives a float64 figure for reports.
    """
    beta = _check_beta(beta)
    if beta == 2.0:
        return 0.5 * (X - Y).square().sum()
    Y = Y.clamp_min(eps)
    if beta == 1.0:
        return (torch.xlogy(X, X) - torch.xlogy(X, Y) - X + Y).sum()
    Xc = X.clamp_min(eps)
    R = Xc / Y
    return (R - torch.log(R) - 1.0).sum()


def nmf_cost(X, W, H, beta: float = 2.0, mu: float = 1.0, eps: float = 1e-10, chunk: int = 16384) -> float:
    """``D_β(X | W H) + μ ||H||_1`` (β = 2: ``½ ||X - W H||² + μ ||H||_1``) as a Python float, computed
    in float64, ``chunk`` frames at a time.

    ``W`` is used as given (not normalised): to compare a solution whose atoms are not unit-norm with
    one of :func:`sparse_nmf`, first move the column norms of ``W`` into the rows of ``H``.
    """
    beta = _check_beta(beta)
    device = device_of(None, X, W, H)
    X, H = torch.as_tensor(X), torch.as_tensor(H)
    W = _to(W, device, torch.float64)
    total, l1 = 0.0, 0.0
    for start in range(0, X.shape[1], chunk):
        sl = slice(start, start + chunk)
        Hc = _to(H[:, sl], device, torch.float64)
        total += float(beta_divergence(_to(X[:, sl], device, torch.float64), W @ Hc, beta, eps))
        l1 += float(Hc.sum())
    return total + float(mu) * l1


def _init_H(X: torch.Tensor, W: torch.Tensor, K: int, gen: torch.Generator) -> torch.Tensor:
    """|N(0,1)| entries (drawn on CPU from ``gen``, so a seed gives the same start on any device),
    scaled so that ``mean(W H) = mean(X)``."""
    H = torch.randn(K, X.shape[1], generator=gen, dtype=torch.float64).abs_()
    Wd = W.double().cpu()
    mean_wh = float(Wd.sum(0) @ H.sum(1)) / (X.shape[0] * X.shape[1])
    mean_x = _sum64(X) / (X.shape[0] * X.shape[1])
    H *= mean_x / max(mean_wh, 1e-300)
    return H.to(device=X.device, dtype=X.dtype)


def sparse_nmf(X, K: int, beta: float = 2.0, mu: float = 1.0, iterations: int = 200, seed: int = 0,
               device=None, W_init=None, update_W: bool = True, H_init=None,
               dtype: torch.dtype = torch.float32, eps: float = 1e-10) -> NMFResult:
    """Sparse NMF ``X ≈ W H`` with unit-norm columns of W (see the module docstring).

    X: (F, T) non-negative, tensor or array. K: number of atoms. beta: 2, 1 or 0. mu: L1 weight on H
    (for β = 2 the cost is ``½ ||X - W H||² + μ ||H||_1``, the H update ``H ⊙ WᵀX / (WᵀWH + μ)``).
    seed: seeds the random start (W: |N(0,1)| then column-normalised; H: |N(0,1)| scaled so that
    mean(WH) = mean(X)), drawn on CPU so that the start is the same on every device. device: where to
    compute (default: X's device, CPU for arrays). W_init: (F, K) start for W (normalised here);
    update_W=False keeps it fixed (then only H is fitted). H_init: (K, T) start for H.
    Returns an :class:`NMFResult` with tensors on ``device`` in ``dtype``.
    """
    beta = _check_beta(beta)
    if mu < 0:
        raise ValueError(f"mu must be >= 0, got {mu}")
    if iterations < 0:
        raise ValueError(f"iterations must be >= 0, got {iterations}")
    dev = device_of(device, X)
    X = _to(X, dev, dtype).contiguous()  # row-major F x T: the layout the BLAS calls below are fastest on
    if X.dim() != 2:
        raise ValueError(f"X must be 2-D (F, T), got shape {tuple(X.shape)}")
    if bool((X < 0).any()) or not bool(torch.isfinite(X).all()):
        raise ValueError("X must be finite and non-negative")
    F, T = X.shape
    gen = torch.Generator().manual_seed(int(seed))
    if W_init is None:
        if not update_W:
            raise ValueError("update_W=False needs W_init")
        W = torch.randn(F, K, generator=gen, dtype=torch.float64).abs_().to(device=dev, dtype=dtype)
    else:
        W = _to(W_init, dev, dtype).clone()
        if W.shape != (F, K) or bool((W < 0).any()):
            raise ValueError(f"W_init must be non-negative of shape ({F}, {K}), got {tuple(W.shape)}")
    W = normalise_columns(W)
    if H_init is None:
        H = _init_H(X, W, K, gen)
    else:
        H = _to(H_init, dev, dtype).clone()
        if H.shape != (K, T) or bool((H < 0).any()):
            raise ValueError(f"H_init must be non-negative of shape ({K}, {T}), got {tuple(H.shape)}")

    if beta == 2.0:
        return _euclidean(X, W, H, mu, iterations, update_W, eps)
    return _beta01(X, W, H, beta, mu, iterations, update_W, eps)


def _w_factor(W: torch.Tensor, G_minus: torch.Tensor, G_plus: torch.Tensor, eps: float) -> torch.Tensor:
    """Le Roux et al.'s multiplicative factor for unit-norm columns: (G⁻ + W̄·Σ_f W̄G⁺) / (G⁺ + W̄·Σ_f W̄G⁻)."""
    num = G_minus + W * (W * G_plus).sum(0, keepdim=True)
    den = G_plus + W * (W * G_minus).sum(0, keepdim=True)
    return num.div_(den.clamp_min_(eps))


def _dot64(a: torch.Tensor, b: torch.Tensor) -> float:
    """<a, b> accumulated in float64 (for the small F x K and K x K matrices)."""
    return float(torch.sum(a * b, dtype=torch.float64))


def _sum64(H: torch.Tensor) -> float:
    """Sum of a large matrix: float32 row sums, then a float64 total (a float64 pass over K x T is slow)."""
    return float(H.sum(1).double().sum())


def _flush_subnormal_(A: torch.Tensor) -> torch.Tensor:
    """Set entries below the smallest normal float to 0, in place.

    Multiplicative updates drive unused activations towards 0 geometrically; once they become subnormal
    (< 1.2e-38 in float32) every arithmetic operation on them is many times slower on x86 CPUs, and they
    contribute nothing to W H or to ||H||_1 at float32 precision. This is flush-to-zero, applied to H and W.
    """
    return torch.nn.functional.threshold_(A, torch.finfo(A.dtype).tiny, 0.0)


def _move_norms_(W: torch.Tensor, H: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Unit-norm columns of W, their norms multiplied into the rows of H in place (W H unchanged)."""
    norms = torch.linalg.vector_norm(W, dim=0).clamp_min_(1e-12)
    H.mul_(norms[:, None])
    return _flush_subnormal_(W / norms), H


def _euclidean(X, W, H, mu, iterations, update_W, eps) -> NMFResult:
    """β = 2. Per iteration: W̄ᵀX and X Hᵀ (F·K·T each), W̄ᵀW̄ H and H Hᵀ (K²·T each)."""
    XX = float(torch.sum(X * X, dtype=torch.float64))
    costs: list[float] = []
    n_back = 0
    WtW = W.T @ W
    shift = torch.tensor(mu, dtype=X.dtype, device=X.device)
    rounding = 2.0 * torch.finfo(X.dtype).eps
    for _ in range(iterations):
        # --- H step (MM, exact for this cost) ---
        WtX = W.T @ X  # K x T
        if mu >= eps:
            den = torch.addmm(shift, WtW, H)  # W̄ᵀW̄ H + μ, the shift fused into the product
        else:
            den = (WtW @ H).clamp_min_(eps)
        _flush_subnormal_(H.mul_(WtX).div_(den))
        del WtX, den
        HHt = H @ H.T  # K x K
        XHt = X @ H.T  # F x K
        sum_H = _sum64(H)
        # cost after the H step, from the same products: ½||X||² - <W, X Hᵀ> + ½<WᵀW, H Hᵀ> + μ ΣH
        cost = 0.5 * XX - _dot64(W, XHt) + 0.5 * _dot64(WtW, HHt) + mu * sum_H
        if update_W and mu == 0:
            # --- W step without penalty: Lee & Seung's MM step, then the column norms moved into H ---
            W_new = W * (XHt / (W @ HHt).clamp_min_(eps))
            WtW_new = W_new.T @ W_new
            cost += -_dot64(W_new - W, XHt) + 0.5 * _dot64(WtW_new - WtW, HHt)
            W, H = _move_norms_(W_new, H)
            WtW = W.T @ W
        elif update_W:
            # --- W step: gradient of ½||X - W̄H||² w.r.t. W is (G⁺ - G⁻), projected onto unit norm ---
            factor = _w_factor(W, XHt, W @ HHt, eps)
            step = 1.0
            tol = rounding * abs(cost)
            for _half in range(_MAX_HALVINGS + 1):
                W_new = _flush_subnormal_(normalise_columns(W * (factor if step == 1.0 else factor.pow(step))))
                WtW_new = W_new.T @ W_new
                # change of the ½ cost, computed as differences (no cancellation against ½||X||²)
                delta = -_dot64(W_new - W, XHt) + 0.5 * _dot64(WtW_new - WtW, HHt)
                if delta <= tol:
                    W, WtW = W_new, WtW_new
                    cost += delta
                    break
                n_back += 1
                step /= 2.0
        costs.append(cost)
    return NMFResult(W=W, H=H, costs=costs, beta=2.0, mu=float(mu), n_backtracks=n_back)


def _lam(W, H, eps):
    return (W @ H).clamp_min_(eps)


def _div64(X, lam, beta, eps) -> float:
    # elementwise terms in the working dtype, summed in float64
    if beta == 1.0:
        terms = torch.xlogy(X, X) - torch.xlogy(X, lam) - X + lam
    else:
        R = X.clamp_min(eps) / lam
        terms = R - torch.log(R) - 1.0
    return _sum64(terms)


def _beta01(X, W, H, beta, mu, iterations, update_W, eps) -> NMFResult:
    """β ∈ {0, 1}: Λ = W̄H is formed (F x T); γ = 1/(2-β) on the H step (MM), same exponent on W."""
    gamma = 1.0 / (2.0 - beta) if beta < 1.0 else 1.0
    costs: list[float] = []
    n_back = 0
    rounding = 2.0 * torch.finfo(X.dtype).eps
    lam = _lam(W, H, eps)
    for _ in range(iterations):
        # --- H step ---
        if beta == 1.0:
            num = W.T @ (X / lam)
            den = W.sum(0)[:, None] + mu
        else:
            inv = lam.reciprocal()
            num = W.T @ (X * inv.square())
            den = (W.T @ inv).add_(mu)
            del inv
        ratio = num.div_(den.clamp_min_(eps))
        _flush_subnormal_(H.mul_(ratio if gamma == 1.0 else ratio.pow_(gamma)))
        del num, den, ratio
        lam = _lam(W, H, eps)
        sum_H = _sum64(H)
        cost = _div64(X, lam, beta, eps) + mu * sum_H
        if update_W:
            # --- W step ---
            if beta == 1.0:
                G_minus = (X / lam) @ H.T
                G_plus = H.sum(1)[None, :].expand_as(W)
            else:
                inv = lam.reciprocal()
                G_minus = (X * inv.square()) @ H.T
                G_plus = inv @ H.T
                del inv
            if mu == 0:
                # no penalty: MM step (exponent γ) on W, then the column norms moved into H (W H unchanged)
                ratio = G_minus.div_(G_plus.clamp_min(eps))
                W_new = W * (ratio if gamma == 1.0 else ratio.pow_(gamma))
                del G_minus, G_plus, ratio
                lam = _lam(W_new, H, eps)
                cost = _div64(X, lam, beta, eps)
                W, H = _move_norms_(W_new, H)
                costs.append(cost)
                continue
            factor = _w_factor(W, G_minus, G_plus, eps)
            del G_minus, G_plus
            step = gamma
            tol = rounding * abs(cost)
            for _half in range(_MAX_HALVINGS + 1):
                W_new = _flush_subnormal_(normalise_columns(W * (factor if step == 1.0 else factor.pow(step))))
                lam_new = _lam(W_new, H, eps)
                cost_new = _div64(X, lam_new, beta, eps) + mu * sum_H
                if cost_new <= cost + tol:
                    W, lam, cost = W_new, lam_new, cost_new
                    break
                n_back += 1
                step /= 2.0
            del factor
        costs.append(cost)
    return NMFResult(W=W, H=H, costs=costs, beta=beta, mu=float(mu), n_backtracks=n_back)


def fit_activations(X, W, beta: float = 2.0, mu: float = 1.0, iterations: int = 200, seed: int = 0,
                    device=None, H_init=None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Activations ``H`` (K x T) of ``X`` for a fixed dictionary ``W`` (F x K), same cost and H update.

    ``W``'s columns are L2-normalised first (the model is defined on unit-norm atoms, so pass the W of a
    :func:`sparse_nmf` result as it is). Returns H on ``device`` (default: X's device).
    """
    W_t = torch.as_tensor(W)
    res = sparse_nmf(X, W_t.shape[1], beta=beta, mu=mu, iterations=iterations, seed=seed,
                     device=device_of(device, X, W), W_init=W_t, update_W=False, H_init=H_init,
                     dtype=dtype)
    return res.H
