"""A library of SDE test problems with exact references, for every noise kind.

Each problem is a :class:`LibraryProblem`: the SDE (drift, diffusion, noise kind), the initial
state, the time span and what is known about it exactly — the solution as a function of the
Brownian path when it exists (a strong reference), and test functions with their expectations
``E g(X_t)`` in closed form (a weak reference).

Two groups of problems:

* **SDEProblemLibrary ports.** The problems with analytic solutions of SciML's
  DiffEqProblemLibrary.jl (``prob_sde_linear``, ``prob_sde_2Dlinear``, ``prob_sde_cubic``,
  ``prob_sde_wave``, ``prob_sde_additive``, ``prob_sde_additivesystem``), with that library's
  default parameters. The formulas (drift, diffusion, solution) are taken from its documentation
  as facts and re-derived here; the expectations are computed from the solution's Gaussian law.
* **Time-dependent, non-symmetric and parameterised problems**, which the ports lack for most
  noise kinds: the additive problem with a full matrix ``B`` in every layout (additive, general,
  covariance, sampled), geometric Brownian motion with time-dependent rates, a scalar-noise
  problem whose diffusion Jacobian is not symmetric (a random rotation), and the non-commutative
  problem of Debrabant & Rößler run on a time-dependent clock.

Every parameter may be a float or a 0-d tensor with ``requires_grad=True``; the SDE then
differentiates with respect to it (the references use its value).

``structure`` tells how a scheme's own moments can be computed exactly on the problem (the tests
use it): ``"affine"`` — drift affine in ``x`` and diffusion independent of ``x``, so one step of
any of smetool's schemes is ``Y ↦ F Y + c + G ΔW`` and the scheme's mean and covariance follow a
linear recursion; ``"linear"`` — drift and diffusion linear in ``x``, so a step is ``Y ↦ G Y``
with a random matrix polynomial in ``ΔW``; ``"nonlinear"`` — neither.

References
----------
C. Rackauckas, Q. Nie et al., DiffEqProblemLibrary.jl, ``SDEProblemLibrary``
(https://github.com/SciML/DiffEqProblemLibrary.jl), the source of the ported problems.
P. E. Kloeden, E. Platen, *Numerical Solution of Stochastic Differential Equations*, Springer
1992, §4.2–4.4 (explicitly solvable SDEs: the linear, cubic and additive problems are among them).
K. Debrabant, A. Rößler, Appl. Numer. Math. 59 (2009), arXiv:1303.5103 (the non-commutative
problem).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..sde import SDE, FunctionSDE, NoiseKind, parse_noise_kind
from .sde_references import NONCOMMUTATIVE_A, NONCOMMUTATIVE_B, linear_sde_moment_tensor

__all__ = [
    "Observable",
    "LibraryProblem",
    "gaussian_expectation",
    "sciml_linear",
    "sciml_linear_2d",
    "sciml_cubic",
    "sciml_wave",
    "sciml_additive",
    "sciml_additive_system",
    "additive_problem",
    "time_dependent_gbm",
    "rotation_problem",
    "time_changed_noncommutative",
    "ROTATION",
]

_SCIML = ("SciML DiffEqProblemLibrary.jl, SDEProblemLibrary `{}` (formulas re-derived; "
          "Kloeden & Platen (1992) §4.4)")

# The generator of the rotation problem: B² = −I, and B is antisymmetric, so the diffusion
# σ(x) = β B x has a Jacobian that is not symmetric.
ROTATION = np.array([[0.0, 1.0], [-1.0, 0.0]])


@dataclass(frozen=True)
class Observable:
    """A test function with its exact expectation.

    Attributes
    ----------
    name : str
    g : callable ``(P, D) -> (P,)``
    expectation : callable ``t -> float``
        ``E g(X_t)`` for the problem's initial state.
    on_path : callable ``(t, W_t) -> (P,)``, optional
        ``g(X_t)`` as a function of the Brownian path's value ``W_t − W_0`` ``(P, M)`` where
        the problem has no full solution but ``g`` of it is one (the first component of the
        non-commutative problem is a geometric Brownian motion): an exact value on the scheme's
        own Brownian path, a control variate with known mean. Default: ``g`` of the problem's
        solution, when it has one (:meth:`LibraryProblem.path_value`).
    """

    name: str
    g: Callable[[Tensor], Tensor]
    expectation: Callable[[float], float]
    on_path: Callable[[float, Tensor], Tensor] | None = field(default=None, repr=False)

    def __repr__(self) -> str:
        return f"Observable({self.name!r})"


@dataclass(frozen=True)
class LibraryProblem:
    """An SDE with its initial state, time span and exact references.

    Attributes
    ----------
    name : str
    sde : SDE
    x0 : tuple of float
        The deterministic initial state, ``D`` numbers.
    t_span : (float, float)
    noise_dim : int or None
        ``M``, the Brownian dimension (``None`` for SAMPLED noise).
    observables : tuple of Observable
        Test functions with closed-form expectations.
    solution : callable ``(t, W_t) -> X_t`` or None
        The exact solution as a function of ``W_t − W_0`` ``(P, M)``, returning ``(P, D)``, when it
        depends on the path through ``W_t`` alone (a strong reference); else ``None``.
    structure : {"affine", "linear", "nonlinear"}
        See the module docstring.
    time_dependent : bool
        Whether drift or diffusion depend on ``t``.
    source : str
        Where the problem and its formulas come from.
    """

    name: str
    sde: SDE
    x0: tuple[float, ...]
    t_span: tuple[float, float]
    noise_dim: int | None
    observables: tuple[Observable, ...]
    solution: Callable[[float, Tensor], Tensor] | None = field(default=None, repr=False)
    structure: str = "nonlinear"
    time_dependent: bool = False
    source: str = ""

    @property
    def dim(self) -> int:
        return len(self.x0)

    @property
    def noise_kind(self) -> NoiseKind:
        return self.sde.noise_kind

    def observable(self, name: str) -> Observable:
        """The observable called ``name``; the error lists the available ones."""
        for obs in self.observables:
            if obs.name == name:
                return obs
        names = ", ".join(o.name for o in self.observables)
        raise KeyError(f"`name` must be one of {names}; got {name!r}.")

    def path_value(self, name: str) -> Callable[[float, Tensor], Tensor] | None:
        """``(t, W_t) -> g(X_t)`` ``(P,)`` for the observable ``name``: its own
        :attr:`Observable.on_path`, else ``g`` of :attr:`solution`; ``None`` when neither exists
        (no exact value on a path)."""
        obs = self.observable(name)
        if obs.on_path is not None:
            return obs.on_path
        solution = self.solution
        if solution is None:
            return None
        return functools.partial(_on_solution, obs.g, solution)

    def initial_state(self, n_paths: int, *, dtype: torch.dtype = torch.float64,
                      device: torch.device | str = "cpu") -> Tensor:
        """``x0`` repeated for ``n_paths`` paths, ``(P, D)``."""
        if isinstance(n_paths, bool) or int(n_paths) != n_paths or n_paths < 1:
            raise ValueError(f"`n_paths` must be a positive integer; got {n_paths!r}.")
        return torch.tensor(self.x0, dtype=dtype, device=device).repeat(int(n_paths), 1)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "noise_kind": self.noise_kind.value, "dim": self.dim,
                "noise_dim": self.noise_dim, "x0": list(self.x0), "t_span": list(self.t_span),
                "observables": [o.name for o in self.observables],
                "strong_reference": self.solution is not None, "structure": self.structure,
                "time_dependent": self.time_dependent, "source": self.source}

    def __repr__(self) -> str:
        return (f"LibraryProblem({self.name!r}, dim={self.dim}, "
                f"noise_kind={self.noise_kind.value!r}, t_span={self.t_span})")


# --------------------------------------------------------------------------------------------
# Helpers


def _on_solution(g: Callable[[Tensor], Tensor], solution: Callable[[float, Tensor], Tensor],
                 t: float, W: Tensor) -> Tensor:
    return g(solution(t, W))


def gaussian_expectation(f: Callable[[np.ndarray], np.ndarray], mean: float, var: float,
                         nodes: int = 96) -> float:
    """``E f(Z)`` for ``Z ~ N(mean, var)`` by Gauss–Hermite quadrature (no sampling).

    With ``nodes`` nodes the rule is exact for polynomials of degree ``< 2·nodes``; for the
    analytic integrands of this module (``tanh``, ``arctan`` of an affine function of ``Z``) its
    error is at rounding level (the tests compare it with adaptive quadrature).
    """
    if not (math.isfinite(var) and var >= 0):
        raise ValueError(f"`var` must be a finite number >= 0; got {var!r}.")
    z, w = np.polynomial.hermite_e.hermegauss(int(nodes))
    return float(np.sum(w * f(mean + math.sqrt(var) * z)) / math.sqrt(2.0 * math.pi))


def _value(p: float | Tensor) -> float:
    return float(p.detach()) if isinstance(p, Tensor) else float(p)


def _param(p: float | Tensor, like: Tensor) -> Tensor:
    """A parameter as a tensor on ``like``'s dtype and device, keeping its autograd graph."""
    if isinstance(p, Tensor):
        return p.to(like)
    # Built in the state's dtype directly: a float32 detour would round 0.87 to 0.8700000047.
    return torch.tensor(float(p), dtype=like.dtype, device=like.device)


def _check_positive(name: str, value: float) -> float:
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"`{name}` must be a positive finite number; got {value!r}.")
    return value


def _power(k: int, idx: int = 0) -> Callable[[Tensor], Tensor]:
    return lambda x: x[..., idx] ** k


# --------------------------------------------------------------------------------------------
# Geometric Brownian motion: SciML's linear problems and a time-dependent variant


def time_dependent_gbm(mu: float | Tensor = 0.8, mu_t: float | Tensor = -0.6,
                       sigma: float | Tensor = 0.5, sigma_t: float | Tensor = 0.4,
                       x0: float = 1.0, dim: int = 1, T: float = 1.0,
                       noise_kind: NoiseKind | str = "diagonal") -> LibraryProblem:
    """``dX_i = μ(t) X_i dt + σ(t) X_i dW_i`` with ``μ(t) = μ + μ_t t``, ``σ(t) = σ + σ_t t``.

    ``X_t = x0 exp(∫μ − ½∫σ² + ∫σ dW)``, so ``E X_t^p = x0^p exp(p m(t) + ½ p(p−1) s(t))`` with
    ``m = μt + μ_t t²/2``, ``s = ∫σ² = σ²t + σσ_t t² + σ_t² t³/3`` (Kloeden & Platen (4.4.6) with
    time-dependent coefficients). The solution is a function of ``W_t`` only when ``σ_t = 0``.

    Parameters
    ----------
    noise_kind : {"diagonal", "covariance"}
        DIAGONAL (``D`` independent copies), or COVARIANCE with ``Σ = diag(σ(t)² x_i²)``, whose
        symmetric root is ``diag(σ(t) |x_i|)`` — the same SDE while ``x > 0``.
    """
    kind = parse_noise_kind(noise_kind)
    if kind not in (NoiseKind.DIAGONAL, NoiseKind.COVARIANCE):
        raise ValueError(f"`noise_kind` must be 'diagonal' or 'covariance'; got {kind.value!r}.")
    if int(dim) != dim or dim < 1:
        raise ValueError(f"`dim` must be a positive integer; got {dim!r}.")
    _check_positive("x0", float(x0))
    m0, m1, s0, s1 = (_value(p) for p in (mu, mu_t, sigma, sigma_t))

    def drift(t, x):
        return (_param(mu, x) + _param(mu_t, x) * t) * x

    def rate(t, x):
        return _param(sigma, x) + _param(sigma_t, x) * t

    if kind is NoiseKind.DIAGONAL:
        sde = FunctionSDE(drift, lambda t, x: rate(t, x) * x, noise_kind=kind)
    else:
        sde = FunctionSDE(drift, lambda t, x: torch.diag_embed((rate(t, x) * x) ** 2),
                          noise_kind=kind)

    def moment(p):
        def value(t):
            m = m0 * t + m1 * t * t / 2
            s = s0 * s0 * t + s0 * s1 * t * t + s1 * s1 * t**3 / 3
            return float(x0) ** p * math.exp(p * m + 0.5 * p * (p - 1) * s)
        return value

    solution = None
    if s1 == 0.0:
        def solution(t, W):
            t = float(t)
            return x0 * torch.exp((m0 - s0 * s0 / 2) * t + m1 * t * t / 2 + s0 * W)
    return LibraryProblem(
        f"time_dependent_gbm({kind.value}, D={dim})", sde, (float(x0),) * int(dim), (0.0, float(T)),
        int(dim), (Observable("x", _power(1), moment(1)), Observable("x^2", _power(2), moment(2)),
                   Observable("x^3", _power(3), moment(3))),
        solution, "linear", m1 != 0.0 or s1 != 0.0,
        "Kloeden & Platen (1992), (4.4.6), with time-dependent rates")


def sciml_linear(alpha: float | Tensor = 1.01, beta: float | Tensor = 0.87,
                 x0: float = 0.5) -> LibraryProblem:
    """SciML ``prob_sde_linear``: ``dX = αX dt + βX dW``, ``X_0 = 1/2`` on ``[0, 1]``.

    ``X_t = X_0 exp((α − β²/2) t + β W_t)``; ``E X_t^p = X_0^p exp(pαt + ½p(p−1)β²t)``.
    """
    base = time_dependent_gbm(alpha, 0.0, beta, 0.0, x0)
    return _renamed(base, "sciml_linear", _SCIML.format("prob_sde_linear"))


def sciml_linear_2d(alpha: float | Tensor = 1.01, beta: float | Tensor = 0.87,
                    x0: float = 0.5) -> LibraryProblem:
    """SciML ``prob_sde_2Dlinear``: eight independent copies of :func:`sciml_linear` (its 4×2
    state flattened to ``D = 8``), DIAGONAL noise. The observables read component 0."""
    base = time_dependent_gbm(alpha, 0.0, beta, 0.0, x0, dim=8)
    return _renamed(base, "sciml_linear_2d", _SCIML.format("prob_sde_2Dlinear"))


def _renamed(problem: LibraryProblem, name: str, source: str) -> LibraryProblem:
    return LibraryProblem(name, problem.sde, problem.x0, problem.t_span, problem.noise_dim,
                          problem.observables, problem.solution, problem.structure,
                          problem.time_dependent, source)


# --------------------------------------------------------------------------------------------
# Nonlinear scalar problems with solutions in closed form


def sciml_cubic(x0: float = 0.5) -> LibraryProblem:
    """SciML ``prob_sde_cubic``: ``dX = −¼X(1 − X²) dt + ½(1 − X²) dW``, ``X_0 = 1/2`` on ``[0, 1]``.

    ``X_t = tanh(atanh X_0 + W_t/2)`` (Itô's formula: ``d tanh Y = (1 − X²) dY − X(1 − X²) d⟨Y⟩``),
    which is SciML's ``((1+X_0)e^W + X_0 − 1)/((1+X_0)e^W + 1 − X_0)``. Expectations of ``x`` and
    ``x²`` by Gauss–Hermite quadrature over ``W_t ~ N(0, t)``. (The library's docstring prints the
    drift with a plus sign; its code, and the solution, have the minus.)
    """
    if not -1.0 < x0 < 1.0:
        raise ValueError(f"`x0` must be in (-1, 1); got {x0!r}.")
    c = math.atanh(x0)
    sde = FunctionSDE(lambda t, x: -0.25 * x * (1 - x * x), lambda t, x: 0.5 * (1 - x * x))

    def expectation(k):
        return lambda t: gaussian_expectation(lambda w: np.tanh(c + w / 2) ** k, 0.0, float(t))

    return LibraryProblem(
        "sciml_cubic", sde, (float(x0),), (0.0, 1.0), 1,
        (Observable("x", _power(1), expectation(1)), Observable("x^2", _power(2), expectation(2))),
        lambda t, W: torch.tanh(c + W / 2), "nonlinear", False, _SCIML.format("prob_sde_cubic"))


def sciml_wave(x0: float = 1.0) -> LibraryProblem:
    """SciML ``prob_sde_wave``: ``dX = −sin X cos³X / 100 dt + cos²X / 10 dW``, ``X_0 = 1`` on
    ``[0, 1]``; ``X_t = arctan(W_t/10 + tan X_0)``. Expectations by Gauss–Hermite quadrature."""
    if not abs(x0) < math.pi / 2:
        raise ValueError(f"`x0` must be in (-π/2, π/2); got {x0!r}.")
    c = math.tan(x0)
    sde = FunctionSDE(lambda t, x: -0.01 * torch.sin(x) * torch.cos(x) ** 3,
                      lambda t, x: 0.1 * torch.cos(x) ** 2)

    def expectation(k):
        return lambda t: gaussian_expectation(lambda w: np.arctan(0.1 * w + c) ** k, 0.0, float(t))

    return LibraryProblem(
        "sciml_wave", sde, (float(x0),), (0.0, 1.0), 1,
        (Observable("x", _power(1), expectation(1)), Observable("x^2", _power(2), expectation(2))),
        lambda t, W: torch.atan(0.1 * W + c), "nonlinear", False, _SCIML.format("prob_sde_wave"))


# --------------------------------------------------------------------------------------------
# The additive problem: time-dependent noise in every layout


def additive_problem(B: Any = ((0.3, 0.1), (-0.2, 0.25)), beta: Any = (0.5, -0.3),
                     x0: Any = (1.0, 0.5), T: float = 1.0,
                     noise_kind: NoiseKind | str = "additive") -> LibraryProblem:
    """``dX = (β/√(1+t) − X/(2(1+t))) dt + B/√(1+t) dW`` — SciML's additive problem with a full
    (non-symmetric) ``D × M`` matrix ``B`` and a vector ``β``.

    ``Z = √(1+t) X`` solves ``dZ = β dt + B dW``, so ``X_t = (x0 + βt + B W_t)/√(1+t)``: Gaussian,
    mean ``(x0 + βt)/√(1+t)``, covariance ``BBᵀ t/(1+t)``. The diffusion depends on time, which is
    what a weak order-2 scheme must integrate with the trapezoidal ``½(b(t) + b(t+h)) ΔW``.

    Parameters
    ----------
    B : array, (D, M)
        May be a tensor with ``requires_grad``.
    beta, x0 : array, (D,)
    noise_kind : {"additive", "general", "covariance", "sampled"}
        The same SDE in each layout: ``(D, M)``; ``(P, D, M)``; ``Σ = BBᵀ/(1+t)`` (whose symmetric
        root drives a ``D``-dimensional Brownian motion, so the strong solution uses
        ``(BBᵀ)^{1/2}``); or SAMPLED noise ``ζ = B z/√(1+t)`` with Rademacher ``z`` (no path, no
        strong reference).
    """
    kind = parse_noise_kind(noise_kind)
    if kind in (NoiseKind.DIAGONAL, NoiseKind.SCALAR):
        raise ValueError(f"`noise_kind` must be additive, general, covariance or sampled; got "
                         f"{kind.value!r}.")
    B_t = B if isinstance(B, Tensor) else torch.as_tensor(np.asarray(B, dtype=np.float64))
    Bv = B_t.detach().cpu().double().numpy()
    if Bv.ndim != 2:
        raise ValueError(f"`B` must be a (D, M) matrix; got shape {tuple(Bv.shape)}.")
    D, M = Bv.shape
    beta_t = beta if isinstance(beta, Tensor) else torch.as_tensor(np.asarray(beta, dtype=np.float64))
    bv = beta_t.detach().cpu().double().numpy().reshape(-1)
    xv = np.asarray(x0, dtype=np.float64).reshape(-1)
    if bv.shape != (D,) or xv.shape != (D,):
        raise ValueError(f"`beta` and `x0` must have D = {D} entries; got {bv.shape} and {xv.shape}.")
    _check_positive("T", float(T))

    def drift(t, x):
        return beta_t.to(x) / math.sqrt(1 + t) - x / (2 * (1 + t))

    def scaled_B(t, x):
        return B_t.to(x) / math.sqrt(1 + t)

    if kind is NoiseKind.ADDITIVE:
        sde = FunctionSDE(drift, scaled_B, noise_kind=kind, noise_dim=M)
    elif kind is NoiseKind.GENERAL:
        sde = FunctionSDE(drift, lambda t, x: scaled_B(t, x).expand(x.shape[0], D, M),
                          noise_kind=kind, noise_dim=M)
    elif kind is NoiseKind.COVARIANCE:
        sde = FunctionSDE(drift, lambda t, x: (scaled_B(t, x) @ scaled_B(t, x).T).expand(
            x.shape[0], D, D), noise_kind=kind)
    else:
        def sample(t, x, generator):
            z = torch.randint(0, 2, (x.shape[0], M), generator=generator, device=x.device)
            return (2 * z.to(x.dtype) - 1) @ scaled_B(t, x).T
        sde = FunctionSDE(drift, noise_kind=kind, sample_noise=sample)

    root = Bv
    if kind is NoiseKind.COVARIANCE:
        evals, evecs = np.linalg.eigh(Bv @ Bv.T)
        root = (evecs * np.sqrt(np.clip(evals, 0, None))) @ evecs.T
    cov = Bv @ Bv.T

    def mean(i: int, t: float) -> float:
        return float((xv[i] + bv[i] * t) / math.sqrt(1 + t))

    def second(i: int, t: float) -> float:
        return float(mean(i, t) ** 2 + cov[i, i] * t / (1 + t))

    observables = [Observable(f"x{i + 1}", _power(1, i), functools.partial(mean, i))
                   for i in range(D)]
    observables += [Observable(f"x{i + 1}^2", _power(2, i), functools.partial(second, i))
                    for i in range(D)]
    if D > 1:
        observables.append(Observable(
            "x1*x2", lambda x: x[..., 0] * x[..., 1],
            lambda t: float(mean(0, t) * mean(1, t) + cov[0, 1] * t / (1 + t))))

    solution = None
    if kind is not NoiseKind.SAMPLED:
        root_t = torch.as_tensor(root)

        def solution(t, W):
            t = float(t)
            shift = torch.as_tensor(xv + bv * t).to(W)
            return (shift + W @ root_t.to(W).T) / math.sqrt(1 + t)

    return LibraryProblem(
        f"additive({kind.value}, D={D}, M={M})", sde, tuple(xv.tolist()), (0.0, float(T)),
        None if kind is NoiseKind.SAMPLED else (D if kind is NoiseKind.COVARIANCE else M),
        tuple(observables), solution, "affine", True,
        _SCIML.format("prob_sde_additive") + ", with a full matrix B")


def sciml_additive(alpha: float = 0.1, beta: float = 0.05, x0: float = 1.0) -> LibraryProblem:
    """SciML ``prob_sde_additive``: ``dX = (β/√(1+t) − X/(2(1+t))) dt + αβ/√(1+t) dW``,
    ``X_0 = 1`` on ``[0, 1]``, ``(α, β) = (0.1, 0.05)``; ``X_t = (X_0 + β(t + αW_t))/√(1+t)``."""
    base = additive_problem([[alpha * beta]], [beta], [x0])
    return _renamed(base, "sciml_additive", _SCIML.format("prob_sde_additive"))


def sciml_additive_system(alpha: Any = (0.1, 0.1, 0.1, 0.1),
                          beta: Any = (0.5, 0.25, 0.125, 0.1115)) -> LibraryProblem:
    """SciML ``prob_sde_additivesystem``: four independent copies of :func:`sciml_additive`
    with ``α = 0.1`` and ``β = (0.5, 0.25, 0.125, 0.1115)``, ``X_0 = (1, 1, 1, 1)``; ADDITIVE
    noise with the diagonal ``4 × 4`` matrix ``diag(αβ)/√(1+t)``."""
    a, b = np.asarray(alpha, dtype=np.float64), np.asarray(beta, dtype=np.float64)
    base = additive_problem(np.diag(a * b), b, np.ones(len(b)))
    return _renamed(base, "sciml_additive_system", _SCIML.format("prob_sde_additivesystem"))


# --------------------------------------------------------------------------------------------
# Scalar noise with a non-symmetric Jacobian


def rotation_problem(beta: float | Tensor = 1.0, beta_t: float | Tensor = 0.5,
                     lam: float | Tensor = 0.2, lam_t: float | Tensor = -0.4,
                     x0: tuple[float, float] = (1.0, 0.5), T: float = 1.0) -> LibraryProblem:
    """``dX = (λ(t) − ½β(t)²) X dt + β(t) R X dW`` with ``R = [[0, 1], [−1, 0]]`` (SCALAR noise).

    ``λ(t) = λ + λ_t t``, ``β(t) = β + β_t t``. Since ``R² = −I``, ``X_t = e^{Λ(t)} exp(θ_t R) x0``:
    a rotation by ``θ_t = ∫β dW ~ N(0, v(t))``, ``v = ∫β²``, scaled by ``e^Λ``, ``Λ = ∫λ``. The
    Jacobian of the diffusion is ``βR``, antisymmetric: ``(∂σ)σ = −β²x`` while ``(∂σ)ᵀσ = +β²x``,
    which tells a correct scalar-noise Milstein scheme from one that uses the transposed Jacobian.

    With ``x0 = (a, b)``: ``E X = e^{Λ−v/2} x0``, ``E X_1² = e^{2Λ}(a²c + b²s)``,
    ``E X_2² = e^{2Λ}(a²s + b²c)``, ``E X_1X_2 = e^{2Λ} ab e^{−2v}`` with ``c, s = (1 ± e^{−2v})/2``.
    The solution is a function of ``W_t`` when ``β_t = 0`` (then ``θ_t = βW_t``).
    """
    b0, b1, l0, l1 = (_value(p) for p in (beta, beta_t, lam, lam_t))
    a, b = (float(v) for v in x0)
    R = torch.as_tensor(ROTATION)

    def drift(t, x):
        rate = _param(beta, x) + _param(beta_t, x) * t
        return (_param(lam, x) + _param(lam_t, x) * t - 0.5 * rate * rate) * x

    def diffusion(t, x):
        return (_param(beta, x) + _param(beta_t, x) * t) * (x @ R.to(x).T)

    sde = FunctionSDE(drift, diffusion, noise_kind=NoiseKind.SCALAR)

    def parts(t):
        v = b0 * b0 * t + b0 * b1 * t * t + b1 * b1 * t**3 / 3
        return l0 * t + l1 * t * t / 2, v

    def first(i):
        return lambda t: math.exp(parts(t)[0] - parts(t)[1] / 2) * (a, b)[i]

    def second(name):
        def value(t):
            lam_int, v = parts(t)
            c, s = (1 + math.exp(-2 * v)) / 2, (1 - math.exp(-2 * v)) / 2
            scale = math.exp(2 * lam_int)
            return scale * {"x1^2": a * a * c + b * b * s, "x2^2": a * a * s + b * b * c,
                            "x1*x2": a * b * math.exp(-2 * v)}[name]
        return value

    observables = (
        Observable("x1", _power(1, 0), first(0)), Observable("x2", _power(1, 1), first(1)),
        Observable("x1^2", _power(2, 0), second("x1^2")),
        Observable("x2^2", _power(2, 1), second("x2^2")),
        Observable("x1*x2", lambda x: x[..., 0] * x[..., 1], second("x1*x2")),
    )
    solution = None
    if b1 == 0.0:
        def solution(t, W):
            t = float(t)
            theta = b0 * W[..., 0]
            scale = math.exp(l0 * t + l1 * t * t / 2)
            return scale * torch.stack([a * torch.cos(theta) + b * torch.sin(theta),
                                        -a * torch.sin(theta) + b * torch.cos(theta)], dim=-1)
    return LibraryProblem("rotation(scalar)", sde, (a, b), (0.0, float(T)), 1, observables,
                          solution, "linear", l1 != 0.0 or b1 != 0.0,
                          "Kloeden & Platen (1992) §4.4 (linear SDEs); exp(θR) is a rotation")


# --------------------------------------------------------------------------------------------
# Non-commutative general noise on a time-dependent clock


def time_changed_noncommutative(c: float | Tensor = 1.0, c_t: float | Tensor = 1.0,
                                T: float = 1.0) -> LibraryProblem:
    """The non-commutative problem of Debrabant & Rößler run on the clock ``C(t) = ct + c_t t²/2``.

    ``dX = κ(t) A X dt + √κ(t) Σ_j B_j X dW^j`` with ``κ = c + c_t t > 0`` and ``A, B_j`` of
    :func:`~smetool.exact.noncommutative_problem`, ``X_0 = (1, 1)``. It is the time change
    ``X_t = Y_{C(t)}`` of the autonomous problem ``Y`` (same law), so every polynomial moment is
    :func:`~smetool.exact.linear_sde_moment_tensor` at time ``C(t)``: in particular
    ``E X_1(t)² = e^{−C(t)}``. GENERAL noise, non-commutative and time-dependent; no strong
    reference.
    """
    k0, k1 = _value(c), _value(c_t)
    if k0 <= 0 or k0 + k1 * float(T) <= 0:
        raise ValueError(f"`c + c_t t` must stay positive on [0, T]; got c={k0!r}, c_t={k1!r}.")
    A, Bs = torch.as_tensor(NONCOMMUTATIVE_A), torch.as_tensor(NONCOMMUTATIVE_B)
    x0 = (1.0, 1.0)

    def clock(t, x):
        return _param(c, x) + _param(c_t, x) * t

    def drift(t, x):
        return clock(t, x) * (x @ A.to(x).T)

    def diffusion(t, x):
        return torch.sqrt(clock(t, x)) * torch.einsum("jde,pe->pdj", Bs.to(x), x)

    def moment(idx):
        return lambda t: float(linear_sde_moment_tensor(
            NONCOMMUTATIVE_A, NONCOMMUTATIVE_B, x0, k0 * t + k1 * t * t / 2, len(idx))[idx])

    names = {"x1": (0,), "x2": (1,), "x1^2": (0, 0), "x1*x2": (0, 1), "x2^2": (1, 1),
             "x1^2*x2^2": (0, 0, 1, 1)}

    def g(idx):
        return lambda x: torch.prod(x[..., list(idx)], dim=-1)

    return LibraryProblem(
        "time_changed_noncommutative(general)", FunctionSDE(drift, diffusion, noise_kind="general",
                                                            noise_dim=2),
        x0, (0.0, float(T)), 2, tuple(Observable(n, g(i), moment(i)) for n, i in names.items()),
        None, "linear", k1 != 0.0,
        "Debrabant & Rößler (2009), arXiv:1303.5103, on the clock C(t) (a time change)")

