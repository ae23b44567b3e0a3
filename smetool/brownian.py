"""Sources of Brownian increments.

Weak schemes need only increments whose first moments match the Gaussian ones (Kloeden &
Platen 1992, (14.1.2) and (14.2.3)): two-point (Rademacher) increments keep weak order 1 and
three-point increments keep weak order 2, at lower cost than Gaussians. Strong schemes need true
Gaussian increments, or a torchsde Brownian object, which also makes a path reproducible when it
is queried on a different time grid.

References
----------
P. E. Kloeden, E. Platen, *Numerical Solution of Stochastic Differential Equations*, Springer 1992.
"""

from __future__ import annotations

import abc
import math
from typing import Any

import torch
from torch import Tensor

__all__ = [
    "Increments",
    "GaussianIncrements",
    "RademacherIncrements",
    "ThreePointIncrements",
    "TorchsdeBrownian",
    "as_increments",
    "brownian_bridge_split",
]


class Increments(abc.ABC):
    """A source of increments ``ΔW`` over ``[t0, t1]`` with ``E ΔW = 0``, ``Cov ΔW = (t1 − t0) I``.

    Attributes
    ----------
    name : str
    gaussian : bool
        True when the increments are exactly Gaussian (strong schemes need this).
    matched_moments : int
        The highest ``k`` such that ``E ΔW^j`` equals the Gaussian moment for all ``j ≤ k``
        (the weak order a scheme keeps with these increments is limited by it: ≥ 3 for weak order
        1, ≥ 5 for weak order 2).
    """

    name: str = "increments"
    gaussian: bool = False
    matched_moments: int = 0

    @abc.abstractmethod
    def sample(
        self, t0: float, t1: float, shape: tuple[int, int], generator: torch.Generator | None,
        dtype: torch.dtype, device: torch.device,
    ) -> Tensor:
        """Return increments of shape ``shape = (P, M)`` over ``[t0, t1]``."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class GaussianIncrements(Increments):
    """``ΔW ~ N(0, h I)``: exact Brownian increments."""

    name = "gaussian"
    gaussian = True
    matched_moments = 10**9

    def sample(self, t0, t1, shape, generator, dtype, device):
        # N(0, h) in the generator's one pass (the same numbers as √h · randn, one pass less).
        out = torch.empty(shape, dtype=dtype, device=device)
        return out.normal_(0.0, math.sqrt(t1 - t0), generator=generator)


class RademacherIncrements(Increments):
    """``ΔW = ±√h`` with probability ½ each (Kloeden & Platen (14.1.2)): weak order 1 only."""

    name = "rademacher"
    matched_moments = 3

    def sample(self, t0, t1, shape, generator, dtype, device):
        signs = torch.randint(0, 2, shape, generator=generator, device=device).to(dtype) * 2 - 1
        return signs * math.sqrt(t1 - t0)


class ThreePointIncrements(Increments):
    """``ΔW = ±√(3h)`` w.p. 1/6 each, ``0`` w.p. 2/3 (Kloeden & Platen (14.2.3)): weak order 2."""

    name = "three_point"
    matched_moments = 5

    def sample(self, t0, t1, shape, generator, dtype, device):
        u = torch.randint(0, 6, shape, generator=generator, device=device)
        values = (u == 0).to(dtype) - (u == 1).to(dtype)
        return values * math.sqrt(3.0 * (t1 - t0))


class TorchsdeBrownian(Increments):
    """Increments read from a torchsde Brownian object (``BrownianInterval``, ``BrownianPath``…).

    The object is queried as ``bm(t0, t1)`` and must return ``(P, M)`` increments; the solver's
    generator is not used. Use it to reproduce ``torchsde.sdeint`` exactly, or to refine the same
    Brownian path on several step sizes. Its dtype must be at least as precise as the state's:
    float32 increments driving a float64 state would carry float32 rounding into every step, so
    they are refused (a more precise object is rounded to the state's dtype).
    """

    name = "torchsde"
    gaussian = True
    matched_moments = 10**9

    def __init__(self, bm: Any):
        if not callable(bm):
            raise TypeError(f"`bm` must be a torchsde Brownian object (callable); got {bm!r}.")
        self.bm = bm

    def sample(self, t0, t1, shape, generator, dtype, device):
        dW = self.bm(t0, t1)
        if tuple(dW.shape) != tuple(shape):
            raise ValueError(
                f"the torchsde Brownian object returned increments of shape {tuple(dW.shape)}; "
                f"the SDE needs {tuple(shape)} (paths, Brownian dimension)."
            )
        if (dW.dtype != dtype and dW.is_floating_point()
                and torch.finfo(dW.dtype).eps > torch.finfo(dtype).eps):
            raise ValueError(
                f"`increments` must be at least as precise as the state ({dtype}); the torchsde "
                f"Brownian object returns {dW.dtype}. Create it with dtype={dtype}."
            )
        return dW.to(dtype=dtype, device=device)

    def __repr__(self) -> str:
        return f"TorchsdeBrownian({type(self.bm).__name__})"


_NAMED: dict[str, type[GaussianIncrements] | type[RademacherIncrements] | type[ThreePointIncrements]] = {
    "gaussian": GaussianIncrements,
    "rademacher": RademacherIncrements,
    "three_point": ThreePointIncrements,
}


def as_increments(increments: Increments | str | Any | None) -> Increments:
    """Turn a name, a torchsde Brownian object or ``None`` (Gaussian) into an :class:`Increments`."""
    if increments is None:
        return GaussianIncrements()
    if isinstance(increments, Increments):
        return increments
    if isinstance(increments, str):
        try:
            return _NAMED[increments]()
        except KeyError:
            raise ValueError(
                f"`increments` must be one of {', '.join(_NAMED)} or a torchsde Brownian object; "
                f"got {increments!r}."
            ) from None
    if callable(increments):
        return TorchsdeBrownian(increments)
    raise TypeError(
        "`increments` must be an Increments object, a name "
        f"({', '.join(_NAMED)}) or a torchsde Brownian object; got {type(increments).__name__}."
    )


def brownian_bridge_split(
    dW: Tensor, h: float, n_sub: int, generator: torch.Generator
) -> Tensor:
    """Split Brownian increments over a step ``h`` into ``n_sub`` consistent sub-increments.

    The result has the joint law of the increments of one Brownian path over ``n_sub`` equal
    sub-steps, conditioned on their sum being ``dW`` (a Brownian bridge), so a coarse and a fine
    simulation driven this way share one Brownian path (common random numbers, Giles 2008).

    Parameters
    ----------
    dW : Tensor, (P, M)
        Gaussian increments over a step of length ``h``.
    h : float
        The coarse step.
    n_sub : int
        Number of sub-steps (≥ 1).
    generator : torch.Generator

    Returns
    -------
    Tensor, (n_sub, P, M)
        Sub-increments whose sum over the first axis equals ``dW`` (to rounding).
    """
    if int(n_sub) != n_sub or n_sub < 1:
        raise ValueError(f"`n_sub` must be a positive integer; got {n_sub!r}.")
    if n_sub == 1:
        return dW.unsqueeze(0)
    z = torch.randn((n_sub,) + tuple(dW.shape), generator=generator, dtype=dW.dtype,
                    device=dW.device) * math.sqrt(h / n_sub)
    # Removing the sample mean of independent increments and adding dW/n gives exactly the
    # conditional law of the sub-increments given their sum.
    return z - z.mean(dim=0, keepdim=True) + dW.unsqueeze(0) / n_sub
