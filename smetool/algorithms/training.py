"""The one training loop of smetool's analyses: :func:`train`, built on :meth:`Algorithm.step`.

Every path starts at its own row of ``θ0 (P, D)`` (one initialisation per seed) and is advanced by
the plug-in's own step, batched over paths, for a fixed number of steps or until its training loss
``f = landscape.loss`` first falls to a target (the comparison of several algorithms at the same
training loss). A path that reached the target is frozen there; the others go on. The loss is
checked every ``check_every`` steps, which is also where the iterates are checked to be finite
(the one non-finite check of the analyses) and where the loss curve is recorded.

References
----------
Q. Li, C. Tai, W. E, "Stochastic modified equations and dynamics of stochastic gradient
algorithms I: mathematical foundations", JMLR 20 (2019) (``t = k · lr``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from ..checks import check_lr, check_nonnegative_int, check_positive, check_positive_int
from ..jsonutil import json_safe
from .base import Algorithm
from .capabilities import HasLandscape

__all__ = ["Trajectory", "train", "landscape_of"]


def landscape_of(algorithm: Algorithm):
    """The algorithm's :class:`~smetool.models.landscape.Landscape`.

    Raises
    ------
    TypeError
        ``algorithm`` is not an :class:`Algorithm` with a landscape (a ``HasLandscape``).
    """
    if not isinstance(algorithm, Algorithm) or not isinstance(algorithm, HasLandscape):
        raise TypeError(f"`algorithm` must be an smetool Algorithm with a landscape (HasLandscape);"
                        f" got {type(algorithm).__name__}.")
    return algorithm.landscape()


@dataclass(frozen=True)
class Trajectory:
    """One algorithm's batched training run.

    Attributes
    ----------
    label : str
    lr : float
    steps : Tensor, (K,) int64
        Where the loss was recorded (0 is the start).
    loss : Tensor, (K, P)
        The training loss there.
    final : Tensor, (P, D)
        The end points (each path's, frozen where it reached the target).
    stopped : Tensor, (P,) int64
        The step at which each path stopped: where it reached the target, or the last step.
    reached : Tensor, (P,) bool
        Whether it reached the target (all ``True`` without one).
    window : Tensor, (T, P, D) or None
        The last ``T = keep_last`` iterates (random trajectory data).
    target : float or None
    """

    label: str
    lr: float
    steps: Tensor
    loss: Tensor
    final: Tensor
    stopped: Tensor
    reached: Tensor
    window: Tensor | None = None
    target: float | None = None

    def to_dict(self) -> dict:
        """Strict-JSON record (the end points and window are left out)."""
        return json_safe({"label": self.label, "lr": self.lr, "target": self.target,
                          "steps": self.steps, "loss": self.loss, "stopped": self.stopped,
                          "reached": self.reached})

    def __repr__(self) -> str:
        P = self.final.shape[0]
        return (f"Trajectory({self.label}, lr={self.lr:g}, paths={P}, reached "
                f"{int(self.reached.sum())}/{P}, final loss {float(self.loss[-1].median()):.4g})")


def _check_every(steps: int, check_every: int | None, n_records: int) -> int:
    if check_every is None:
        return max(1, steps // n_records)
    return check_positive_int(check_every, "check_every")


def train(algorithm: Algorithm, theta0: Tensor, *, lr: float, steps: int,
          generator: torch.Generator, target: float | None = None,
          check_every: int | None = None, n_records: int = 40, keep_last: int = 0,
          label: str | None = None,
          progress: Callable[[int], None] | None = None) -> Trajectory:
    """Train ``algorithm`` from ``θ0 (P, D)`` with :meth:`Algorithm.step`.

    Parameters
    ----------
    algorithm : Algorithm
        With a landscape (``HasLandscape``): its loss is recorded and compared with ``target``.
    theta0 : Tensor, (P, D)
        One initial point per path.
    lr : float
    steps : int
        Steps (with ``target``: the most steps a path may take).
    generator : torch.Generator
        The randomness of every step (all paths draw from it, batched).
    target : float, optional
        Stop each path at the first check where its loss is ``≤ target``.
    check_every : int, optional
        Steps between checks (loss, finiteness, target); default ``steps // n_records``.
    n_records : int
        Checks along the run when ``check_every`` is not given.
    keep_last : int
        Also keep the last ``keep_last`` iterates of every path (``window``).
    label : str, optional
        Default: the algorithm's name.
    progress : callable, optional
        Called with the number of steps just done.

    Returns
    -------
    Trajectory

    Raises
    ------
    ValueError
        Invalid arguments (each named), or non-finite iterates (the message names the algorithm,
        the step and the learning rate).
    """
    landscape = landscape_of(algorithm)
    lr = check_lr(lr)
    steps = check_positive_int(steps, "steps")
    keep_last = check_nonnegative_int(keep_last, "keep_last")
    every = _check_every(steps, check_every, check_positive_int(n_records, "n_records"))
    if target is not None:
        target = check_positive(target, "target")
    if theta0.ndim != 2 or theta0.shape[1] != landscape.n_params:
        raise ValueError(f"`theta0` must have shape (P, {landscape.n_params}); got "
                         f"{tuple(theta0.shape)}.")
    label = label or algorithm.name
    P = theta0.shape[0]
    theta = theta0.clone()
    active = torch.ones(P, dtype=torch.bool, device=theta.device)
    stopped = torch.full((P,), steps, dtype=torch.int64)
    rec_steps, rec_loss = [0], [landscape.loss(theta)]
    kept: list[Tensor] = []
    done = 0
    for k in range(1, steps + 1):
        new = algorithm.step(theta, lr, generator)
        theta = new if target is None else torch.where(active.unsqueeze(1), new, theta)
        if keep_last and k > steps - keep_last:
            kept.append(theta)
        if k % every and k != steps:
            continue
        if not bool(torch.isfinite(theta).all()):
            raise ValueError(f"{label} training produced non-finite parameters by step {k} "
                             f"(lr={lr:g}); lower `lr`.")
        loss = landscape.loss(theta)
        rec_steps.append(k)
        rec_loss.append(loss)
        if target is not None:
            now = active & (loss <= target)
            stopped[now.cpu()] = k
            active = active & ~now
        if progress is not None:
            progress(k - done)
            done = k
        if target is not None and not bool(active.any()):
            if progress is not None:
                progress(steps - done)
            break
    reached = ~active.cpu() if target is not None else torch.ones(P, dtype=torch.bool)
    return Trajectory(label, lr, torch.tensor(rec_steps), torch.stack(rec_loss).detach(), theta,
                      stopped, reached, torch.stack(kept) if kept else None, target)

