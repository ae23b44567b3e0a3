"""Closed-form references for SDEs and for schemes applied to them (no Monte Carlo).

Every function here returns an exact number (up to floating-point rounding and, for the linear
SDEs, the accuracy of ``scipy.linalg.expm``). They are the backbone of the solver tests: the
moments of the SDE itself, and, where they exist in closed form, the moments of a scheme's
discrete iterates, so that a weak error can be computed without sampling.

Problems
--------
* Ornstein–Uhlenbeck ``dX = −A (X − μ̄) dt + B dW`` (additive noise): Gaussian, mean and covariance
  from the matrix exponential (the covariance solves the vec-ODE ``Ċ = −AC − CAᵀ + BBᵀ``).
* Geometric Brownian motion ``dX = μ X dt + σ X dW`` (diagonal noise): ``E X_t^p`` and the exact
  moments of Euler–Maruyama and of Platen's weak order-2 scheme on it.
* Homogeneous linear SDEs ``dX = A X dt + Σ_j B_j X dW^j`` (general, non-commutative noise): every
  tensor moment ``E X^{⊗k}`` solves a closed linear ODE.
* The three test problems of Debrabant & Rößler (the nonlinear ``sinh`` problem, the 2-d
  non-commutative problem and the diagonal linear problem) as :class:`ReferenceProblem` objects.

References
----------
P. E. Kloeden, E. Platen, *Numerical Solution of Stochastic Differential Equations*, Springer 1992,
§4.4 (linear SDEs), §14.1 and §15.1 (weak schemes).
K. Debrabant, A. Rößler, "Families of efficient second order Runge–Kutta methods for the weak
approximation of Itô stochastic differential equations", Appl. Numer. Math. 59 (2009);
arXiv:1303.5103 (the test problems of §2.5 of the project's numerics references).
C. F. Van Loan, "Computing integrals involving the matrix exponential", IEEE Trans. Automat.
Control 23 (1978) (the block-exponential for the OU covariance).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.linalg
import torch
from torch import Tensor

from ..sde import SDE, FunctionSDE, NoiseKind

__all__ = [
    "Moments",
    "ReferenceProblem",
    "ou_sde",
    "ou_moments",
    "ou_em_moments",
    "gbm_sde",
    "gbm_moment",
    "gbm_em_moments",
    "gbm_platen_moments",
    "linear_sde",
    "linear_sde_moments",
    "linear_sde_moment_tensor",
    "sinh_sde",
    "sinh_test_function",
    "sinh_expectation",
    "sinh_moments",
    "gbm_problem",
    "sinh_problem",
    "noncommutative_problem",
    "diagonal_linear_problem",
    "NONCOMMUTATIVE_A",
    "NONCOMMUTATIVE_B",
]


@dataclass(frozen=True)
class Moments:
    """First and second moments of a ``D``-dimensional random vector.

    Attributes
    ----------
    mean : ndarray, (D,)
        ``E X``.
    cov : ndarray, (D, D)
        ``Cov X``.
    """

    mean: np.ndarray
    cov: np.ndarray

    @property
    def second(self) -> np.ndarray:
        """``E X Xᵀ = Cov X + E X E Xᵀ``, ``(D, D)``."""
        return self.cov + np.outer(self.mean, self.mean)

    def to_dict(self) -> dict[str, Any]:
        return {"mean": self.mean.tolist(), "cov": self.cov.tolist()}

    def __repr__(self) -> str:
        return f"Moments(mean={np.array2string(self.mean, precision=6)}, cov=<{self.cov.shape}>)"


@dataclass(frozen=True)
class ReferenceProblem:
    """An SDE with a test function whose expectation is known in closed form.

    Attributes
    ----------
    name : str
    sde : SDE
    x0 : tuple of float
        The deterministic initial state, ``D`` numbers.
    test_function : callable ``(P, D) -> (P,)``
        ``g``.
    expectation : callable ``t -> float``
        ``E g(X_t)`` for ``X_0 = x0``.
    reference : str
        Where the problem and its closed form come from.
    """

    name: str
    sde: SDE
    x0: tuple[float, ...]
    test_function: Callable[[Tensor], Tensor]
    expectation: Callable[[float], float]
    reference: str = ""

    @property
    def dim(self) -> int:
        return len(self.x0)

    def initial_state(
        self, n_paths: int, *, dtype: torch.dtype = torch.float64,
        device: torch.device | str = "cpu",
    ) -> Tensor:
        """``x0`` repeated for ``n_paths`` paths, ``(P, D)``."""
        if int(n_paths) != n_paths or n_paths < 1:
            raise ValueError(f"`n_paths` must be a positive integer; got {n_paths!r}.")
        x0 = torch.tensor(self.x0, dtype=dtype, device=device)
        return x0.unsqueeze(0).repeat(int(n_paths), 1)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "noise_kind": self.sde.noise_kind.value, "x0": list(self.x0),
                "reference": self.reference}

    def __repr__(self) -> str:
        return (f"ReferenceProblem(name={self.name!r}, dim={self.dim}, "
                f"noise_kind={self.sde.noise_kind.value!r})")


# --------------------------------------------------------------------------------------------
# Helpers


def _matrix(a: float | Sequence | np.ndarray, name: str) -> np.ndarray:
    m = np.atleast_2d(np.asarray(a, dtype=np.float64))
    if m.ndim != 2:
        raise ValueError(f"`{name}` must be a number or a matrix; got an array of shape {m.shape}.")
    return m


def _vector(a: float | Sequence | np.ndarray, dim: int, name: str) -> np.ndarray:
    v = np.asarray(a, dtype=np.float64).reshape(-1)
    if v.size == 1 and dim > 1:
        v = np.full(dim, float(v[0]))
    if v.shape != (dim,):
        raise ValueError(f"`{name}` must have {dim} entries; got shape {v.shape}.")
    return v


def _check_time(t: float, name: str = "t") -> float:
    t = float(t)
    if not (math.isfinite(t) and t >= 0):
        raise ValueError(f"`{name}` must be a finite number >= 0; got {t!r}.")
    return t


def _check_steps(h: float, n: int) -> tuple[float, int]:
    if not (math.isfinite(h) and h > 0):
        raise ValueError(f"`h` must be a positive finite number; got {h!r}.")
    if int(n) != n or n < 0:
        raise ValueError(f"`n` must be a non-negative integer; got {n!r}.")
    return float(h), int(n)


# --------------------------------------------------------------------------------------------
# Ornstein–Uhlenbeck


def _ou_parts(A, B, x0, mean):
    A = _matrix(A, "A")
    D = A.shape[0]
    if A.shape != (D, D):
        raise ValueError(f"`A` must be square (D, D); got {A.shape}.")
    B = _matrix(B, "B")
    if B.shape[0] != D:
        raise ValueError(f"`B` must have shape (D, M) = ({D}, M); got {B.shape}.")
    x0 = _vector(x0, D, "x0")
    mu = np.zeros(D) if mean is None else _vector(mean, D, "mean")
    return A, B, x0, mu


def ou_sde(A, B, mean=None) -> FunctionSDE:
    """The Ornstein–Uhlenbeck SDE ``dX = −A (X − μ̄) dt + B dW`` with additive noise.

    Parameters
    ----------
    A : float or array, (D, D)
        Mean-reversion matrix (``θ`` in the scalar case).
    B : float or array, (D, M)
        Constant diffusion matrix (``σ`` in the scalar case).
    mean : float or array, (D,), optional
        Long-run mean ``μ̄`` (default 0).

    Returns
    -------
    FunctionSDE
        ADDITIVE noise; ``diffusion`` returns the ``(D, M)`` matrix in ``x``'s dtype and device.
    """
    A, B, _, mu = _ou_parts(A, B, 0.0, mean)
    A_t, B_t, mu_t = (torch.as_tensor(v) for v in (A, B, mu))

    def drift(t, x):
        return -(x - mu_t.to(x)) @ A_t.to(x).T

    def diffusion(t, x):
        return B_t.to(x)

    return FunctionSDE(drift, diffusion, noise_kind=NoiseKind.ADDITIVE, noise_dim=B.shape[1])


def ou_moments(A, B, x0, t: float, mean=None) -> Moments:
    """Exact mean and covariance of the OU process ``dX = −A (X − μ̄) dt + B dW`` at time ``t``.

    ``E X_t = μ̄ + e^{−At} (x0 − μ̄)``; ``Cov X_t = ∫_0^t e^{−As} B Bᵀ e^{−Aᵀs} ds``, computed as one
    block matrix exponential of the vec-ODE ``vec Ċ = −(A ⊗ I + I ⊗ A) vec C + vec(BBᵀ)`` (Van Loan
    1978), which needs neither an invertible ``A`` nor a stable one.

    Parameters
    ----------
    A : float or array, (D, D)
    B : float or array, (D, M)
    x0 : float or array, (D,)
    t : float
        Time ``≥ 0``.
    mean : float or array, (D,), optional

    Returns
    -------
    Moments
        Scalar case ``θ, σ``: mean ``μ̄ + (x0 − μ̄) e^{−θt}``, variance ``σ²(1 − e^{−2θt})/(2θ)``.
    """
    A, B, x0, mu = _ou_parts(A, B, x0, mean)
    t = _check_time(t)
    D = A.shape[0]
    m = mu + scipy.linalg.expm(-A * t) @ (x0 - mu)
    K = np.kron(A, np.eye(D)) + np.kron(np.eye(D), A)
    q = (B @ B.T).reshape(-1)
    n = D * D
    block = np.zeros((n + 1, n + 1))
    block[:n, :n] = -K
    block[:n, n] = q
    cov = (scipy.linalg.expm(block * t)[:n, n]).reshape(D, D)
    return Moments(m, 0.5 * (cov + cov.T))


def ou_em_moments(A, B, x0, h: float, n: int, mean=None) -> Moments:
    """Exact moments of ``n`` Euler–Maruyama steps of size ``h`` on the OU process.

    The iterates are linear in the increments, so for *any* increments with mean 0 and covariance
    ``h I`` (Gaussian, Rademacher, three-point): ``m_{k+1} = μ̄ + (I − hA)(m_k − μ̄)`` and
    ``C_{k+1} = (I − hA) C_k (I − hA)ᵀ + h B Bᵀ``. Scalar case: mean ``μ̄ + (x0 − μ̄)(1 − θh)^n``,
    variance ``σ²(1 − (1 − θh)^{2n}) / (θ(2 − θh))``.

    Parameters
    ----------
    A, B, x0, mean
        As in :func:`ou_moments`.
    h : float
        Step size.
    n : int
        Number of steps.

    Returns
    -------
    Moments
    """
    A, B, x0, mu = _ou_parts(A, B, x0, mean)
    h, n = _check_steps(h, n)
    D = A.shape[0]
    G = np.eye(D) - h * A
    Q = h * (B @ B.T)
    m, C = x0 - mu, np.zeros((D, D))
    for _ in range(n):
        m, C = G @ m, G @ C @ G.T + Q
    return Moments(mu + m, C)


# --------------------------------------------------------------------------------------------
# Geometric Brownian motion


def gbm_sde(mu: float, sigma: float) -> FunctionSDE:
    """Geometric Brownian motion ``dX_i = μ X_i dt + σ X_i dW_i``, componentwise (DIAGONAL noise)."""
    mu, sigma = float(mu), float(sigma)
    return FunctionSDE(lambda t, x: mu * x, lambda t, x: sigma * x, noise_kind=NoiseKind.DIAGONAL)


def gbm_moment(mu: float, sigma: float, x0: float, t: float, p: int = 1) -> float:
    """``E X_t^p = x0^p exp(p μ t + ½ p (p − 1) σ² t)`` for geometric Brownian motion.

    References
    ----------
    Kloeden & Platen (1992), §4.4, (4.4.6).
    """
    t = _check_time(t)
    return float(x0) ** p * math.exp(p * mu * t + 0.5 * p * (p - 1) * sigma**2 * t)


def gbm_em_moments(mu: float, sigma: float, x0: float, h: float, n: int) -> tuple[float, float]:
    """Exact ``(E Y_n, E Y_n²)`` of ``n`` Euler–Maruyama steps on GBM.

    ``Y_{k+1} = Y_k (1 + μh + σΔW_k)`` with independent increments of mean 0 and variance ``h`` (of
    any law), so ``E Y_n = x0 (1 + μh)^n`` and ``E Y_n² = x0² ((1 + μh)² + σ²h)^n``.
    """
    h, n = _check_steps(h, n)
    return x0 * (1 + mu * h) ** n, x0**2 * ((1 + mu * h) ** 2 + sigma**2 * h) ** n


def gbm_platen_moments(mu: float, sigma: float, x0: float, h: float, n: int) -> tuple[float, float]:
    """Exact ``(E Y_n, E Y_n²)`` of ``n`` steps of Platen's weak order-2 scheme on scalar GBM.

    With ``a = μx``, ``b = σx`` the scheme (Kloeden & Platen (15.1.1)) is multiplicative,
    ``Y_{k+1} = Y_k G_k`` with ``G = α + βΔW + γΔW²``, ``α = 1 + μh + ½μ²h² − ½σ²h``,
    ``β = σ(1 + μh)``, ``γ = ½σ²``. For increments whose first four moments are Gaussian (Gaussian or
    three-point): ``E G = 1 + μh + ½μ²h²`` and ``E G² = α² + (β² + 2αγ) h + 3γ²h²``. Both agree with
    ``e^{μh}`` and ``e^{(2μ+σ²)h}`` to ``O(h³)``, i.e. global weak order 2; the mean's error is
    ``−μ³T e^{μT} h² / 6 + O(h³)``.
    """
    h, n = _check_steps(h, n)
    alpha = 1 + mu * h + 0.5 * mu**2 * h**2 - 0.5 * sigma**2 * h
    beta = sigma * (1 + mu * h)
    gamma = 0.5 * sigma**2
    g1 = 1 + mu * h + 0.5 * mu**2 * h**2
    g2 = alpha**2 + (beta**2 + 2 * alpha * gamma) * h + 3 * gamma**2 * h**2
    return x0 * g1**n, x0**2 * g2**n


# --------------------------------------------------------------------------------------------
# Homogeneous linear SDEs with multiplicative, possibly non-commutative noise


def _linear_parts(A, Bs, x0=None):
    A = _matrix(A, "A")
    D = A.shape[0]
    if A.shape != (D, D):
        raise ValueError(f"`A` must be square (D, D); got {A.shape}.")
    Bs = np.asarray(Bs, dtype=np.float64)
    if Bs.ndim != 3 or Bs.shape[1:] != (D, D):
        raise ValueError(f"`Bs` must have shape (M, D, D) = (M, {D}, {D}); got {Bs.shape}.")
    if x0 is None:
        return A, Bs
    return A, Bs, _vector(x0, D, "x0")


def linear_sde(A, Bs) -> FunctionSDE:
    """The linear SDE ``dX = A X dt + Σ_j B_j X dW^j`` as a GENERAL-noise SDE.

    Parameters
    ----------
    A : array, (D, D)
    Bs : array, (M, D, D)
        ``B_j``; column ``j`` of the diffusion matrix is ``b^j(x) = B_j x``. The noise is
        commutative exactly when all ``B_j`` commute.

    Returns
    -------
    FunctionSDE
        ``diffusion(t, x)`` has shape ``(P, D, M)``.
    """
    A, Bs = _linear_parts(A, Bs)
    A_t, B_t = torch.as_tensor(A), torch.as_tensor(Bs)

    def drift(t, x):
        return x @ A_t.to(x).T

    def diffusion(t, x):
        return torch.einsum("jde,pe->pdj", B_t.to(x), x)

    return FunctionSDE(drift, diffusion, noise_kind=NoiseKind.GENERAL, noise_dim=Bs.shape[0])


def _embed(C: np.ndarray, position: int, order: int) -> np.ndarray:
    D = C.shape[0]
    out = np.ones((1, 1))
    for p in range(order):
        out = np.kron(out, C if p == position else np.eye(D))
    return out


def linear_sde_moment_tensor(A, Bs, x0, t: float, order: int) -> np.ndarray:
    """``E X_t^{⊗k}`` for ``dX = A X dt + Σ_j B_j X dW^j``, ``X_0 = x0``, exactly.

    By Itô's formula the monomials of degree ``k`` are closed under the generator: with ``C_(p)``
    the matrix ``C`` acting on the ``p``-th tensor factor,
    ``d/dt E X^{⊗k} = (Σ_p A_(p) + Σ_{p<q} Σ_j (B_j)_(p) (B_j)_(q)) E X^{⊗k}``, a ``D^k``-dimensional
    linear ODE solved by one matrix exponential. Use it for non-quadratic test functions
    (``order = 3, 4``), which see moments of the noise that quadratic ones do not.

    Parameters
    ----------
    A : array, (D, D)
    Bs : array, (M, D, D)
    x0 : array, (D,)
    t : float
    order : int
        ``k ≥ 1``.

    Returns
    -------
    ndarray, (D,) * k
        Entry ``[i_1, …, i_k]`` is ``E X_{i_1} ⋯ X_{i_k}``.
    """
    A, Bs, x0 = _linear_parts(A, Bs, x0)
    t = _check_time(t)
    if int(order) != order or order < 1:
        raise ValueError(f"`order` must be a positive integer; got {order!r}.")
    D, k = A.shape[0], int(order)
    L = sum(_embed(A, p, k) for p in range(k))
    for p in range(k):
        for q in range(p + 1, k):
            for B in Bs:
                L = L + _embed(B, p, k) @ _embed(B, q, k)
    start = np.ones(1)
    for _ in range(k):
        start = np.kron(start, x0)
    return (scipy.linalg.expm(L * t) @ start).reshape((D,) * k)


def linear_sde_moments(A, Bs, x0, t: float) -> Moments:
    """Mean and covariance of ``dX = A X dt + Σ_j B_j X dW^j`` at time ``t``, exactly.

    ``E X_t = e^{At} x0`` and ``M = E X Xᵀ`` solves ``Ṁ = AM + MAᵀ + Σ_j B_j M B_jᵀ``
    (:func:`linear_sde_moment_tensor` with ``order=2``).
    """
    A, Bs, x0 = _linear_parts(A, Bs, x0)
    mean = scipy.linalg.expm(A * _check_time(t)) @ x0
    second = linear_sde_moment_tensor(A, Bs, x0, t, 2)
    cov = second - np.outer(mean, mean)
    return Moments(mean, 0.5 * (cov + cov.T))


# --------------------------------------------------------------------------------------------
# The nonlinear sinh problem


def sinh_sde() -> FunctionSDE:
    """``dX = (½X + √(X²+1)) dt + √(X²+1) dW``, whose solution is ``X_t = sinh(asinh X_0 + t + W_t)``.

    Scalar state (``D = 1``), DIAGONAL noise. References: Debrabant & Rößler (2009), §2.5 of the
    project's numerics references.
    """
    return FunctionSDE(
        lambda t, x: 0.5 * x + torch.sqrt(x * x + 1),
        lambda t, x: torch.sqrt(x * x + 1),
        noise_kind=NoiseKind.DIAGONAL,
    )


def sinh_test_function(x: Tensor) -> Tensor:
    """``g(x) = φ(asinh x)`` with ``φ(y) = y³ − 6y² + 8y``, for states ``(P, 1)`` → ``(P,)``."""
    y = torch.asinh(x[..., 0])
    return y**3 - 6 * y**2 + 8 * y


def sinh_expectation(t: float, x0: float = 0.0) -> float:
    """``E g(X_t)`` for :func:`sinh_test_function`: with ``c = asinh x0 + t``, ``W_t ~ N(0, t)``,
    ``E φ(c + W_t) = c³ + 3ct − 6(c² + t) + 8c``; for ``x0 = 0`` this is ``t³ − 3t² + 2t``."""
    t = _check_time(t)
    c = math.asinh(x0) + t
    return c**3 + 3 * c * t - 6 * (c**2 + t) + 8 * c


def sinh_moments(t: float, x0: float = 0.0) -> tuple[float, float]:
    """``(E X_t, E X_t²)`` for :func:`sinh_sde`: ``sinh(c) e^{t/2}`` and ``(cosh(2c) e^{2t} − 1)/2``
    with ``c = asinh x0 + t`` (Gaussian moment generating function)."""
    t = _check_time(t)
    c = math.asinh(x0) + t
    return math.sinh(c) * math.exp(t / 2), 0.5 * (math.cosh(2 * c) * math.exp(2 * t) - 1)


# --------------------------------------------------------------------------------------------
# Named reference problems

_DR = "Debrabant & Rößler (2009), arXiv:1303.5103; StochasticDiffEq.jl weak-order tests"

NONCOMMUTATIVE_A = np.array([[-273 / 512, 0.0], [-1 / 160, 785 / 512 - math.sqrt(2) / 8]])
NONCOMMUTATIVE_B = np.array([
    [[1 / 4, 0.0], [(1 - 2 * math.sqrt(2)) / 4, 0.0]],   # b^1(u) = (u1/4, (1 − 2√2) u1/4)
    [[1 / 16, 0.0], [1 / 10, 1 / 16]],                  # b^2(u) = (u1/16, u1/10 + u2/16)
])


def gbm_problem(mu: float = 1.0, sigma: float = 0.5, x0: float = 1.0, power: int = 1) -> ReferenceProblem:
    """Scalar GBM with ``g(x) = x^power`` and ``E g(X_t)`` from :func:`gbm_moment`."""
    return ReferenceProblem(
        name=f"gbm(mu={mu:g}, sigma={sigma:g}, power={power})",
        sde=gbm_sde(mu, sigma),
        x0=(float(x0),),
        test_function=lambda x: x[..., 0] ** power,
        expectation=lambda t: gbm_moment(mu, sigma, x0, t, power),
        reference="Kloeden & Platen (1992), (4.4.6)",
    )


def sinh_problem() -> ReferenceProblem:
    """The nonlinear problem ``X_t = sinh(t + W_t)``, ``g = φ(asinh x)``, ``E g(X_t) = t³ − 3t² + 2t``.

    The expectation vanishes at ``t = 1, 2``: measure absolute errors there.
    """
    return ReferenceProblem("sinh", sinh_sde(), (0.0,), sinh_test_function,
                            lambda t: sinh_expectation(t, 0.0), _DR)


def noncommutative_problem() -> ReferenceProblem:
    """The 2-d linear SDE with two non-commuting noise terms; ``g = x_1²``, ``E g(X_t) = e^{−t}``.

    Drift ``(−273/512 u_1, −u_1/160 + (785/512 − √2/8) u_2)``, diffusion
    ``[[u_1/4, u_1/16], [(1 − 2√2) u_1/4, u_1/10 + u_2/16]]``, ``u_0 = (1, 1)``. ``X_1`` alone is a GBM
    with ``2μ + σ² = −1``. Every other polynomial moment follows from
    :func:`linear_sde_moment_tensor` with ``NONCOMMUTATIVE_A`` and ``NONCOMMUTATIVE_B``.
    """
    return ReferenceProblem(
        "noncommutative", linear_sde(NONCOMMUTATIVE_A, NONCOMMUTATIVE_B), (1.0, 1.0),
        lambda x: x[..., 0] ** 2, lambda t: math.exp(-_check_time(t)), _DR,
    )


def diagonal_linear_problem() -> ReferenceProblem:
    """``dX_i = 3/2 X_i dt + X_i/10 dW_i``, ``X_0 = (0.1, 0.1)``; ``E X_1(t)² = e^{3.01 t}/100``.

    The published problem writes the noise of both components with ``X_1``; here it is the truly
    diagonal ``X_i/10`` (so that it meets the DIAGONAL contract); ``E X_1²`` is the same.
    """
    sde = FunctionSDE(lambda t, x: 1.5 * x, lambda t, x: 0.1 * x, noise_kind=NoiseKind.DIAGONAL)
    return ReferenceProblem(
        "diagonal_linear", sde, (0.1, 0.1), lambda x: x[..., 0] ** 2,
        lambda t: 0.01 * math.exp(3.01 * _check_time(t)), _DR,
    )
