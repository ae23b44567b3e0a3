"""The sides of a weak-error test of an SME: the discrete algorithm, its SME, negative controls.

Each is a path producer for :func:`~smetool.weak_error`. With control variates the discrete and
SME producers also return the tangent along their noise-free path
(:mod:`smetool.montecarlo.control`): its deterministic part (the noise-free path, the linear maps,
the covariance recursion) is the same for every chunk and is computed once per producer.
"""

from __future__ import annotations

import dataclasses
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from ..algorithms.base import Algorithm, SeparableNoise
from ..integrate import LinearTangent, solve_coupled
from ..montecarlo import PathSample, TangentPaths, VarianceReduction
from ..montecarlo.control import linearize_sde, row_jacobian
from ..sde import SDE, NoiseFree, NoiseKind
from ..solvers import Solver

__all__ = ["AlgorithmProducer", "CoupledSMEProducer", "FlowProducer", "separable",
           "supports_tangent"]


def supports_tangent(algorithm: Algorithm, sde: SDE) -> tuple[bool, bool]:
    """Whether the discrete side and the SME side of a check can carry a tangent."""
    return separable(algorithm), sde.noise_kind is not NoiseKind.SAMPLED


def separable(algorithm: Algorithm) -> bool:
    """Whether the discrete side can carry a tangent: a :class:`SeparableNoise` plug-in whose
    mean step is exact for this instance."""
    return isinstance(algorithm, SeparableNoise) and bool(algorithm.has_exact_mean())


class _MeanStep:
    """``x ↦ mean_step(x, lr)`` (a map for :func:`~smetool.montecarlo.control.row_jacobian`)."""

    def __init__(self, algorithm: SeparableNoise, lr: float):
        self.algorithm, self.lr = algorithm, lr

    def __call__(self, x: Tensor) -> Tensor:
        return self.algorithm.mean_step(x, self.lr)


@dataclass(frozen=True)
class _DiscreteLinearization:
    mean: Tensor  # (K + 1, D): θ̄_k
    jacobians: Tensor  # (K, D, D): ∂ mean_step at θ̄_k
    covariance: Tensor | None  # (D, D): C_K, exact


_SHARED: OrderedDict[tuple[str, str], Any] = OrderedDict()
_SHARED_LOCK = threading.Lock()
_SHARED_ENTRIES = 32
"""At most this many shared values are kept per process (the least recently used go first)."""


class SharedWork:
    """What every chunk of a producer shares (its linearisation, its one noise-free path),
    computed once per process.

    An executor pickles the producer into every chunk. Its ``_cache`` stays out of the pickle
    (megabytes of Jacobians for an order-2 check), and a token drawn when the producer is built
    keys a small per-process cache instead: a worker computes each shared value once for all the
    chunks of that producer it runs (recomputing it per chunk cost ≈ 170 ms per order-2 dropout
    chunk, shipping it ≈ 10 MB per submission). The values are deterministic, so where they are
    computed changes no number.
    """

    _cache: dict[str, Any]
    _token: str

    def shared(self, name: str, compute: Callable[[], Any]) -> Any:
        """``compute()``, once per producer and process."""
        if name not in self._cache:
            key = (self._token, name)
            with _SHARED_LOCK:
                found = _SHARED.get(key)
                if found is not None:
                    _SHARED.move_to_end(key)
            if found is None:
                found = compute()
                with _SHARED_LOCK:
                    _SHARED[key] = found
                    while len(_SHARED) > _SHARED_ENTRIES:
                        _SHARED.popitem(last=False)
            self._cache[name] = found
        return self._cache[name]

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_cache": {}}


def _token() -> str:
    return uuid.uuid4().hex


@dataclass(frozen=True)
class AlgorithmProducer(SharedWork):
    """``n`` paths of the discrete algorithm after ``steps`` steps of learning rate ``lr``.

    Returns the final states ``(1, n, D)``; with ``variance_reduction`` other than ``NONE`` (the
    algorithm must be :class:`~smetool.algorithms.SeparableNoise`) a
    :class:`~smetool.montecarlo.PathSample` with the tangents on the same draws ``ω_k``:
    ``M_{k+1} = J_k M_k + (x_{k+1} − mean_step(x_k))`` and, for the quadratic control variate,
    ``δ_{k+1} = J_k δ_k + (step_with(θ̄_k, ω_k) − θ̄_{k+1})`` (:mod:`smetool.montecarlo.control`).
    """

    algorithm: Algorithm
    lr: float
    steps: int
    dtype: torch.dtype
    device: torch.device
    variance_reduction: VarianceReduction = VarianceReduction.NONE
    _cache: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)
    _token: str = field(default_factory=_token, init=False, repr=False, compare=False)

    def linearization(self) -> _DiscreteLinearization:
        """The noise-free path, the Jacobians and the exact covariance (computed once)."""
        return self.shared("lin", self._linearize)

    def _linearize(self) -> _DiscreteLinearization:
        """The noise-free path, the Jacobians ``J_k`` and the exact covariance, from scratch."""
        alg = self.algorithm
        if not isinstance(alg, SeparableNoise) or not separable(alg):
            raise TypeError(f"{alg.name}: control variates need a SeparableNoise plug-in with "
                            "an exact mean step.")
        theta = alg.initial_state(1, dtype=self.dtype, device=self.device)[0]
        D = theta.numel()
        mean, jacs = [theta], []
        quadratic = self.variance_reduction is VarianceReduction.QUADRATIC
        C = torch.zeros(D, D, dtype=self.dtype, device=self.device) if quadratic else None
        for _ in range(self.steps):
            J = row_jacobian(_MeanStep(alg, self.lr), theta)
            if C is not None:
                Q = alg.step_covariance(theta.unsqueeze(0), self.lr)
                C = None if Q is None else J @ C @ J.T + Q[0]
            theta = alg.mean_step(theta.unsqueeze(0), self.lr)[0]
            mean.append(theta)
            jacs.append(J)
        return _DiscreteLinearization(torch.stack(mean), torch.stack(jacs), C)

    def one_step(self) -> AlgorithmProducer:
        """The same producer cut to one step, for a memory probe (a step's working memory is the
        whole loop's). Its linearisation is the first step of this producer's (computed here,
        once, outside the probe); the covariance kept is the final one, of the right shape: a
        probe's values are discarded."""
        cache: dict[str, Any] = {}
        if self.variance_reduction is not VarianceReduction.NONE and isinstance(
                self.algorithm, SeparableNoise):
            lin = self.linearization()
            cache["lin"] = _DiscreteLinearization(lin.mean[:2], lin.jacobians[:1], lin.covariance)
        return dataclasses.replace(self, steps=1, _cache=cache)

    def __call__(self, n: int, generator: torch.Generator) -> Tensor | PathSample:
        alg = self.algorithm
        x = alg.initial_state(n, dtype=self.dtype, device=self.device)
        if self.variance_reduction is VarianceReduction.NONE or not isinstance(alg, SeparableNoise) \
                or not separable(alg):
            for _ in range(self.steps):
                x = alg.step(x, self.lr, generator)
            return x.unsqueeze(0)
        lin = self.linearization()
        quadratic = lin.covariance is not None
        m = torch.zeros_like(x)
        delta = torch.zeros_like(x) if quadratic else None
        for k in range(self.steps):
            noise = alg.draw(n, self.lr, generator, dtype=x.dtype, device=x.device)
            x_next = alg.step_with(x, self.lr, noise)
            m = m @ lin.jacobians[k].T + (x_next - alg.mean_step(x, self.lr))
            if delta is not None:
                at_mean = alg.step_with(lin.mean[k].expand(n, -1).clone(), self.lr, noise)
                delta = delta @ lin.jacobians[k].T + (at_mean - lin.mean[k + 1])
            x = x_next
        tangent = TangentPaths(lin.mean[-1:], m.unsqueeze(0),
                               None if delta is None else delta.unsqueeze(0),
                               None if lin.covariance is None else lin.covariance.unsqueeze(0))
        return PathSample(x.unsqueeze(0), tangent=tangent)


@dataclass(frozen=True)
class CoupledSMEProducer(SharedWork):
    """``n`` paths of an SME at step ``h`` and, on the same Brownian path, at ``2h, 4h, …``.

    Returns a :class:`~smetool.montecarlo.PathSample` with the final states ``(1, n, D)`` of
    every level (``levels`` of them; the coarse ones give the Richardson estimate of the SME
    solver's own error, for the expansion ``c_p h^p + c_{p+1} h^{p+1} + …`` of a solver of weak
    order ``p`` on this SDE; with ``extrapolate`` the Richardson combination is the estimate) and,
    with control variates, every level's tangent ``δ_{j+1} = (I + h_l ∂b(θ̄_j)) δ_j + σ(θ̄_j) ΔW_j``
    along that level's own noise-free path ``θ̄`` and on its increments, so that every term of the
    combination carries its control variates.
    Non-finite paths are carried on (``on_nonfinite="continue"``) so that the Monte-Carlo engine
    counts them per side.
    """

    algorithm: Algorithm
    sde: SDE
    solver: Solver
    horizon: float
    h: float
    dtype: torch.dtype
    device: torch.device
    variance_reduction: VarianceReduction = VarianceReduction.NONE
    extrapolate: bool = False
    levels: int = 2
    _cache: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)
    _token: str = field(default_factory=_token, init=False, repr=False, compare=False)

    @property
    def uses_tangent(self) -> bool:
        return (self.variance_reduction is not VarianceReduction.NONE
                and self.sde.noise_kind is not NoiseKind.SAMPLED)

    def linearization(self) -> tuple[tuple[Tensor, LinearTangent, Tensor | None], ...]:
        """Per level: the noise-free scheme path, the tangent's maps and its covariance
        (computed once)."""
        def compute() -> tuple[tuple[Tensor, LinearTangent, Tensor | None], ...]:
            x0 = self.algorithm.initial_state(1, dtype=self.dtype, device=self.device)[0]
            quadratic = self.variance_reduction is VarianceReduction.QUADRATIC
            return linearize_sde(self.sde, self.solver, x0, 0.0, self.h,
                                 round(self.horizon / self.h), quadratic=quadratic,
                                 levels=self.levels)
        return self.shared("lin", compute)

    def one_step(self) -> CoupledSMEProducer:
        """The same producer cut to one block of ``2^{L−1}`` fine steps (a memory probe), with the
        first steps of this producer's linearisations (computed here, once)."""
        cache: dict[str, Any] = {}
        if self.uses_tangent:
            short = []
            for level, (mean, maps, cov) in enumerate(self.linearization()):
                k = 2 ** (self.levels - 1 - level)
                short.append((mean[:k + 1], LinearTangent(
                    maps.A[:k], None if maps.B is None else maps.B[:k]),
                    None if cov is None else cov[-1:]))  # a probe's values are discarded
            cache["lin"] = tuple(short)
        return dataclasses.replace(self, horizon=2 ** (self.levels - 1) * self.h, _cache=cache)

    def __call__(self, n: int, generator: torch.Generator) -> PathSample:
        x0 = self.algorithm.initial_state(n, dtype=self.dtype, device=self.device)
        lin = self.linearization() if self.uses_tangent else ()
        sol = solve_coupled(self.sde, x0, (0.0, self.horizon), dt=self.h, method=self.solver,
                            generator=generator, on_nonfinite="continue", levels=self.levels,
                            tangent=[maps for _, maps, _ in lin] or None)
        tangents = tuple(
            TangentPaths(mean[-1:], m.unsqueeze(0), None if d is None else d.unsqueeze(0),
                         None if cov is None else cov[-1:])
            for (mean, _, cov), m, d in zip(
                lin, sol.martingales, sol.tangents or (None,) * len(sol.martingales)))
        return PathSample(
            states=sol.fine.unsqueeze(0), coarse=tuple(x.unsqueeze(0) for x in sol.levels[1:]),
            tangent=tangents[0] if tangents else None, coarse_tangents=tangents[1:],
            solver_order=self.solver.weak_order_for(self.sde.noise_kind) if self.levels > 1 else None,
            extrapolate=self.extrapolate)


@dataclass(frozen=True)
class FlowProducer(SharedWork):
    """A noise-free flow (an ODE), solved once on one path at step ``h`` and repeated for every
    path: its samples have zero variance. For the noise-free negative control."""

    algorithm: Algorithm
    sde: NoiseFree
    solver: Solver
    horizon: float
    h: float
    dtype: torch.dtype
    device: torch.device
    _cache: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)
    _token: str = field(default_factory=_token, init=False, repr=False, compare=False)

    def __call__(self, n: int, generator: torch.Generator) -> PathSample:
        final = self.shared("flow", self._solve)
        return PathSample(states=final.expand(n, -1).unsqueeze(0))

    def _solve(self) -> Tensor:
        x0 = self.algorithm.initial_state(1, dtype=self.dtype, device=self.device)
        sol = solve_coupled(self.sde, x0, (0.0, self.horizon), dt=self.h, method=self.solver,
                            generator=torch.Generator(device=self.device).manual_seed(0),
                            on_nonfinite="continue", levels=1)
        return sol.fine

    def one_step(self) -> FlowProducer:
        """Itself, with its one path solved (a memory probe then measures only the per-path
        views: the flow is shared by every path and computed once)."""
        self(1, torch.Generator(device=self.device))
        return self
