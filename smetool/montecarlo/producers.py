"""Path producers: what a Monte-Carlo estimate samples, and the checks of what they return.

A *path producer* turns a number of paths and a :class:`torch.Generator` into states at ``S``
fixed save times, ``(S, P, D)``, or into a :class:`PathSample` that carries more on the same random
draws (the same paths at twice the step, for the solver's own error). All randomness must come
from the generator: that is what makes an estimate reproducible and its chunks independent.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor

from ..brownian import Increments, as_increments
from ..integrate import solve
from ..sde import NoiseKind, as_sde
from ..stats.extrapolation import richardson_weights
from .control import TangentPaths

__all__ = [
    "TestFunction",
    "PathProducer",
    "AntitheticPathProducer",
    "PathSample",
    "accepts_antithetic",
    "check_antithetic_producer",
    "produce",
    "evaluate_test_functions",
    "save_time_labels",
    "producer_device",
    "probe_producer",
    "SDEProducer",
]

TestFunction = Callable[[Tensor], Tensor]
"""A test function ``g``: states ``(N, D) -> (N,)``, row by row."""


@runtime_checkable
class PathProducer(Protocol):
    """Draws ``n_paths`` independent sample paths with the randomness of ``generator``.

    Returns states at ``S`` fixed save times, a floating tensor of shape ``(S, n_paths, D)`` on
    the generator's device. All randomness must come from ``generator`` (that is what makes a
    Monte-Carlo run reproducible and its chunks independent).
    """

    def __call__(self, n_paths: int, generator: torch.Generator) -> Tensor: ...


@runtime_checkable
class AntitheticPathProducer(Protocol):
    """A :class:`PathProducer` that can also produce the antithetic paths.

    With ``antithetic=True`` and a generator in the same state it must return the paths obtained
    with every Gaussian (or other symmetric) draw negated, consuming the generator identically.
    Any map of the draws that preserves their joint law is valid; negating symmetric increments is
    the usual one (it cancels the odd-order noise contributions).
    """

    def __call__(
        self, n_paths: int, generator: torch.Generator, *, antithetic: bool = False
    ) -> Tensor: ...


@dataclass(frozen=True)
class PathSample:
    """Paths drawn by a producer, with what else it computed on the same random draws.

    Attributes
    ----------
    states : Tensor, (S, P, D)
        The states at the save times (the finest level of a scheme).
    coarse : tuple of Tensor, (S, P, D) each
        The same paths (the same Brownian path) integrated at ``2h, 4h, …``: with
        ``solver_order`` they give the scheme's Richardson (Talay–Tubaro) combination
        ``Σ_l w_l g(level l)`` (:func:`~smetool.richardson_weights` for ``1 + len(coarse)``
        levels and leading order ``solver_order``), which removes the first ``len(coarse)`` terms
        of the scheme's weak-error expansion ``c_p h^p + c_{p+1} h^{p+1} + …``. The estimators
        accumulate the fine level's own error ``g(states) − Σ_l w_l g(level l)``.
    tangent : TangentPaths, optional
        The noise-free path and the tangent on the same draws: the estimators subtract the
        small-noise control variates (:mod:`smetool.montecarlo.control`).
    coarse_tangents : tuple of TangentPaths
        With ``tangent`` and ``coarse``: one per coarse level (its own noise-free path and
        tangent, driven by that level's increments), so that every level of the combination
        carries its control variates.
    solver_order : float, optional
        ``p``, the leading power of the scheme's error expansion (its weak order for this
        SDE); needed with ``coarse``.
    extrapolate : bool
        Estimate with the Richardson combination instead of the finest level.
    """

    states: Tensor
    coarse: tuple[Tensor, ...] = ()
    tangent: TangentPaths | None = None
    coarse_tangents: tuple[TangentPaths, ...] = ()
    solver_order: float | None = None
    extrapolate: bool = False

    def richardson_weights(self) -> tuple[float, ...]:
        """The weights of ``(states, *coarse)`` in the Richardson combination (finest first)."""
        if not self.coarse or self.solver_order is None:
            return (1.0,)
        return tuple(float(w) for w in richardson_weights(1 + len(self.coarse), self.solver_order))


def produce(producer: Callable, n: int, gen: torch.Generator, antithetic: bool | None,
            name: str = "producer") -> PathSample:
    """Call a producer and check that it returned floating ``(S, n, D)`` states.

    A plain tensor is wrapped into a :class:`PathSample`.

    Raises
    ------
    TypeError, ValueError
        Naming the producer and the shape or type it returned.
    """
    out = producer(n, gen) if antithetic is None else producer(n, gen, antithetic=antithetic)
    sample = out if isinstance(out, PathSample) else PathSample(out)
    if not isinstance(sample.coarse, tuple):
        raise TypeError(f"`{name}`: PathSample.coarse must be a tuple of tensors (2h, 4h, …); got "
                        f"{type(sample.coarse).__name__}.")
    for label, xs in (("states", sample.states),
                      *((f"coarse states {i}", c) for i, c in enumerate(sample.coarse))):
        if not isinstance(xs, Tensor):
            raise TypeError(
                f"`{name}` must return a Tensor of shape (S, P, D) or a PathSample; got "
                f"{type(xs).__name__}.")
        if xs.ndim != 3 or xs.shape[1] != n:
            raise ValueError(
                f"`{name}` must return {label} of shape (S, P, D) with P = {n} paths; got "
                f"{tuple(xs.shape)}.")
        if not xs.is_floating_point():
            raise ValueError(f"`{name}` must return a floating tensor; got {xs.dtype}.")
        if xs.shape != sample.states.shape:
            raise ValueError(
                f"`{name}`: the {label} must have the shape of the states "
                f"{tuple(sample.states.shape)}; got {tuple(xs.shape)}.")
    if sample.coarse and not (sample.solver_order is not None and sample.solver_order > 0):
        raise ValueError(f"`{name}`: coarse states need the scheme's solver_order > 0; got "
                         f"{sample.solver_order!r}.")
    if sample.extrapolate and not sample.coarse:
        raise ValueError(f"`{name}`: extrapolation needs coarse states.")
    if sample.coarse_tangents and (sample.tangent is None
                                   or len(sample.coarse_tangents) != len(sample.coarse)):
        raise ValueError(f"`{name}`: coarse_tangents need a tangent and one per coarse level "
                         f"({len(sample.coarse)}); got {len(sample.coarse_tangents)}.")
    for tangent in (sample.tangent, *sample.coarse_tangents):
        if tangent is None:
            continue
        S, _, D = sample.states.shape
        shapes = [tangent.martingale.shape] + ([] if tangent.delta is None else [tangent.delta.shape])
        if any(s != sample.states.shape for s in shapes) or tangent.mean.shape != (S, D):
            raise ValueError(
                f"`{name}`: the tangents must have the shape of the states "
                f"{tuple(sample.states.shape)} and the mean path (S, D) = ({S}, {D}); got "
                f"{[tuple(s) for s in shapes]} and {tuple(tangent.mean.shape)}.")
    return sample


def accepts_antithetic(producer: Callable) -> bool:
    """Whether ``producer`` takes the keyword ``antithetic`` (see :class:`AntitheticPathProducer`)."""
    try:
        params = inspect.signature(producer).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == "antithetic" or p.kind is p.VAR_KEYWORD for p in params)


def check_antithetic_producer(producer: Callable, name: str) -> None:
    """Refuse a producer that cannot make antithetic paths (see :class:`AntitheticPathProducer`)."""
    if not accepts_antithetic(producer):
        raise TypeError(
            f"antithetic=True needs `{name}` to accept the keyword `antithetic` and, when it is "
            "True, negate every symmetric random draw (see smetool.AntitheticPathProducer; "
            f"smetool.SDEProducer does this); got {producer!r}."
        )


def evaluate_test_functions(test_functions: Mapping[str, TestFunction], xs: Tensor) -> Tensor:
    """Values of every test function at every save time, float64 ``(K, S, P)``.

    Each function is called once on the states of all save times flattened to ``(S·P, D)``, so it
    must act row by row.
    """
    S, P, D = xs.shape
    flat = xs.reshape(S * P, D)
    out = []
    for name, g in test_functions.items():
        v = g(flat)
        if not isinstance(v, Tensor) or tuple(v.shape) != (S * P,):
            shape = tuple(v.shape) if isinstance(v, Tensor) else type(v).__name__
            raise ValueError(
                f"test function {name!r} must map states (N, D) to values (N,); called with "
                f"N = {S * P} (all {S} save times × {P} paths) it returned {shape}."
            )
        out.append(v.to(torch.float64).reshape(S, P))
    return torch.stack(out)


def producer_device(producer: Any) -> torch.device | None:
    """The device a producer computes on, when it says so: its ``device`` attribute, or the device
    of its ``x0`` (:class:`SDEProducer`); ``None`` for a plain function."""
    device = getattr(producer, "device", None)
    if isinstance(device, (torch.device, str)):
        return torch.device(device)
    x0 = getattr(producer, "x0", None)
    return x0.device if isinstance(x0, Tensor) else None


def probe_producer(producer: Callable) -> Callable:
    """What a memory probe runs for ``producer``: its ``one_step()`` (a producer of the same
    paths cut to one step, whose working memory is the whole loop's) when it has one, else the
    producer itself."""
    short = getattr(producer, "one_step", None)
    return short() if callable(short) else producer


def save_time_labels(times: Sequence[float] | Tensor | None, S: int) -> tuple[float, ...]:
    """The labels of ``S`` save times: ``times`` as floats, or ``0 … S−1``."""
    if times is None:
        return tuple(float(i) for i in range(S))
    labels = tuple(float(t) for t in (times.tolist() if isinstance(times, Tensor) else times))
    if len(labels) != S:
        raise ValueError(f"`times` must have one entry per save time ({S}); got {len(labels)}.")
    return labels


class SDEProducer:
    """A path producer that integrates an SDE with :func:`smetool.solve`.

    Every path starts at ``x0``; the states at ``save_at`` are returned. With ``antithetic=True``
    the Brownian increments are negated, which preserves their law (they are symmetric) and
    consumes the generator identically; the extra draws of a scheme (e.g. Platen's two-point
    variables) are then shared by the pair, which is also law-preserving.

    Parameters
    ----------
    sde : SDE
        Any SDE :func:`smetool.solve` accepts, except SAMPLED noise with ``antithetic`` (its noise
        is drawn inside the SDE and cannot be negated from outside).
    x0 : Tensor, (D,)
        The common initial state; its device and dtype are the computation's.
    t_span : (float, float)
    dt : float
    method : Solver or str, optional
    save_at : sequence of float, optional
        Default ``(t0, t1)``; :attr:`times` holds them.
    increments : str or Increments, optional
        As for :func:`smetool.solve`; torchsde Brownian objects are refused (they ignore the
        generator, so every chunk would repeat the same paths).

    Examples
    --------
    >>> import torch
    >>> from smetool import FunctionSDE
    >>> from smetool.montecarlo import SDEProducer
    >>> gbm = FunctionSDE(lambda t, x: -x, lambda t, x: 0.2 * x)
    >>> prod = SDEProducer(gbm, torch.ones(1, dtype=torch.float64), (0.0, 1.0), dt=0.1)
    >>> prod(4, torch.Generator().manual_seed(0)).shape
    torch.Size([2, 4, 1])
    """

    def __init__(self, sde: Any, x0: Tensor, t_span: tuple[float, float], *, dt: float,
                 method: Any = None, save_at: Sequence[float] | None = None,
                 increments: Any = None):
        if not isinstance(x0, Tensor) or x0.ndim != 1:
            shape = tuple(x0.shape) if isinstance(x0, Tensor) else type(x0).__name__
            raise ValueError(f"`x0` must be a 1-D tensor (D,) shared by every path; got {shape}.")
        inc = as_increments(increments)
        if inc.name == "torchsde":
            raise ValueError(
                "`increments` must draw from the generator; a torchsde Brownian object ignores it, "
                "so every Monte-Carlo chunk would repeat the same paths."
            )
        self.sde, self.x0, self.t_span, self.dt = as_sde(sde), x0, t_span, dt
        self.method, self.increments = method, inc
        t0, t1 = (float(t) for t in t_span)
        self.times = tuple(float(t) for t in save_at) if save_at is not None else (t0, t1)

    def __call__(self, n_paths: int, generator: torch.Generator, *,
                 antithetic: bool = False) -> Tensor:
        inc = self.increments
        if antithetic:
            if self.sde.noise_kind is NoiseKind.SAMPLED:
                raise ValueError(
                    "antithetic sampling needs the noise to come from Brownian increments; "
                    "noise_kind='sampled' draws it inside the SDE. Use antithetic=False."
                )
            inc = _Negated(inc)
        sol = solve(self.sde, self.x0, self.t_span, dt=self.dt, method=self.method,
                    generator=generator, save_at=self.times, increments=inc, n_paths=n_paths)
        return sol.xs

    def __repr__(self) -> str:
        return (f"SDEProducer({self.sde!r}, dt={self.dt:g}, method={self.method!r}, "
                f"times={self.times})")


class _Negated(Increments):
    """The increments of ``inner`` with their signs flipped (the same law for symmetric ones)."""

    def __init__(self, inner: Increments):
        self.inner = inner
        self.name = inner.name
        self.gaussian = inner.gaussian
        self.matched_moments = inner.matched_moments

    def sample(self, t0, t1, shape, generator, dtype, device):
        return -self.inner.sample(t0, t1, shape, generator, dtype, device)

    def __repr__(self) -> str:
        return f"Negated({self.inner!r})"
