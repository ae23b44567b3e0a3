"""Dropout's implicit regularizers, and batched training runs to compare dropout with GD.

Zhang & Xu (TPAMI 2024) expand the dropout iteration to second order in the learning rate ``ε``:
dropout GD follows, in expectation, gradient descent on ``R_S + R_1 + R_2`` with

* ``R_1(θ) = (1 − p)/(2np) Σ_i Σ_r a_r² σ(w_r · x_i)²`` (so ``L_S = R_S + R_1 = E_η R_S^drop``);
* ``R_2(θ) = (ε/4) E_η ‖∇_θ R_S^drop(θ; η)‖² = (ε/4) (‖∇L_S‖² + tr Σ)`` — the first part is the
  regularizer that GD itself carries at order ``ε`` (Barrett & Dherin 2021), the second is due to
  the dropout noise alone.

The three training rules compared here, all full-batch and batched over paths:

* ``"dropout"``: ``θ ← θ − ε ∇R_S^drop(θ; η)`` with a fresh mask per step and path;
* ``"explicit"``: ``θ ← θ − ε ∇(R_S + R_1)(θ) = θ − ε ∇L_S(θ)`` (the explicit regularizer,
  no noise);
* ``"gd"``: ``θ ← θ − ε ∇R_S(θ)``.

References
----------
Z. Zhang, Z.-Q. J. Xu, "Implicit regularization of dropout", IEEE TPAMI 46(6), 2024.
Z. Zhang, Y. Li, T. Luo, Z.-Q. J. Xu, "Stochastic modified equations and dynamics of dropout
algorithm", ICLR 2024.
D. G. T. Barrett, B. Dherin, "Implicit gradient regularization", ICLR 2021.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = [
    "METHODS",
    "ImplicitRegularization",
    "implicit_regularization",
    "Trajectory",
    "train",
]

METHODS = ("dropout", "explicit", "gd")
"""Training rules of :func:`train`."""


def _stats(t: Tensor) -> str:
    if t.numel() == 1:
        return f"{float(t):.4g}"
    return f"{float(t.mean()):.4g}±{float(t.std()):.2g}"


@dataclass(frozen=True)
class ImplicitRegularization:
    """The implicit regularizers of dropout at a batch of points.

    Attributes
    ----------
    loss : Tensor, (P,)
        ``R_S``.
    r1 : Tensor, (P,)
        ``R_1``.
    grad_norm_sq : Tensor, (P,)
        ``‖∇L_S‖²``.
    trace_sigma : Tensor, (P,)
        ``tr Σ``.
    lr : float
        ``ε``.
    """

    loss: Tensor
    r1: Tensor
    grad_norm_sq: Tensor
    trace_sigma: Tensor
    lr: float

    @property
    def expected_loss(self) -> Tensor:
        """``L_S = R_S + R_1``, ``(P,)``."""
        return self.loss + self.r1

    @property
    def r2(self) -> Tensor:
        """``R_2 = (ε/4)(‖∇L_S‖² + tr Σ)``, ``(P,)``."""
        return 0.25 * self.lr * (self.grad_norm_sq + self.trace_sigma)

    def to_dict(self) -> dict:
        return {
            "loss": self.loss.tolist(),
            "r1": self.r1.tolist(),
            "expected_loss": self.expected_loss.tolist(),
            "grad_norm_sq": self.grad_norm_sq.tolist(),
            "trace_sigma": self.trace_sigma.tolist(),
            "r2": self.r2.tolist(),
            "lr": self.lr,
        }

    def __repr__(self) -> str:
        return (
            f"ImplicitRegularization(R_S={_stats(self.loss)}, R_1={_stats(self.r1)}, "
            f"‖∇L_S‖²={_stats(self.grad_norm_sq)}, trΣ={_stats(self.trace_sigma)}, lr={self.lr:g})"
        )


def _check_lr(lr) -> float:
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not math.isfinite(lr) or lr <= 0:
        raise ValueError(f"`lr` must be a positive finite number; got {lr!r}.")
    return float(lr)


def implicit_regularization(problem, theta: Tensor, lr: float) -> ImplicitRegularization:
    """``R_S``, ``R_1`` and the two parts of ``R_2`` at ``θ (P, D)``, all in closed form.

    Parameters
    ----------
    problem : DropoutProblem
    theta : Tensor, (P, D)
    lr : float
        ``ε > 0`` (enters ``R_2`` only).

    Returns
    -------
    ImplicitRegularization

    Raises
    ------
    ValueError
        If ``lr`` is not a positive finite number.

    References
    ----------
    Z. Zhang, Z.-Q. J. Xu, IEEE TPAMI 46(6), 2024.
    """
    lr = _check_lr(lr)
    second = problem.grad_second_moment(theta)
    return ImplicitRegularization(
        loss=problem.loss(theta),
        r1=problem.implicit_regularizer(theta),
        grad_norm_sq=second.grad_norm_sq,
        trace_sigma=second.trace_sigma,
        lr=lr,
    )


@dataclass(frozen=True)
class Trajectory:
    """Recorded iterates of a batched training run.

    Attributes
    ----------
    method : str
        One of :data:`METHODS`.
    lr : float
    steps : Tensor, (K,) int64
        Step numbers at which ``theta`` was recorded (0 is the start).
    theta : Tensor, (K, P, D)
    loss : Tensor, (K, P)
        ``R_S`` at the recorded iterates.
    """

    method: str
    lr: float
    steps: Tensor
    theta: Tensor
    loss: Tensor

    @property
    def final(self) -> Tensor:
        """The last recorded iterate, ``(P, D)``."""
        return self.theta[-1]

    def to_dict(self) -> dict:
        return {
            "method": self.method,
            "lr": self.lr,
            "steps": self.steps.tolist(),
            "loss": self.loss.tolist(),
            "final_theta": self.final.tolist(),
        }

    def __repr__(self) -> str:
        K, P, D = self.theta.shape
        return (
            f"Trajectory(method={self.method!r}, lr={self.lr:g}, records={K}, paths={P}, D={D}, "
            f"final R_S={_stats(self.loss[-1])})"
        )


def train(
    problem,
    theta0: Tensor,
    *,
    method: str,
    lr: float,
    steps: int,
    generator: torch.Generator | None = None,
    record_every: int = 1,
    progress: Callable[[int], None] | None = None,
) -> Trajectory:
    """Run one of the training rules of :data:`METHODS` on all paths at once.

    Parameters
    ----------
    problem : DropoutProblem
    theta0 : Tensor, (P, D)
        Initial parameters, one row per path (repeat a row to share an initialization).
    method : {"dropout", "explicit", "gd"}
        Dropout GD, GD on ``L_S = R_S + R_1``, or plain GD on ``R_S``.
    lr : float
        ``ε > 0``.
    steps : int
        Number of steps (≥ 0).
    generator : torch.Generator, optional
        Needed for ``"dropout"`` (on the device of ``theta0``); ignored otherwise.
    record_every : int
        Record every this many steps; the start and the last step are always recorded.
    progress : callable, optional
        Called with the number of steps just done (for a progress bar).

    Returns
    -------
    Trajectory

    Raises
    ------
    ValueError
        For an unknown ``method``, a bad ``lr``, ``steps`` or ``record_every``, a missing
        generator for dropout, or non-finite iterates (the message names the step).

    References
    ----------
    Z. Zhang, Z.-Q. J. Xu, IEEE TPAMI 46(6), 2024.
    """
    if method not in METHODS:
        raise ValueError(f"`method` must be one of {', '.join(METHODS)}; got {method!r}.")
    lr = _check_lr(lr)
    if isinstance(steps, bool) or int(steps) != steps or steps < 0:
        raise ValueError(f"`steps` must be a non-negative integer; got {steps!r}.")
    if isinstance(record_every, bool) or int(record_every) != record_every or record_every < 1:
        raise ValueError(f"`record_every` must be a positive integer; got {record_every!r}.")
    if method == "dropout" and generator is None:
        raise ValueError("`generator` is required for method='dropout'; got None.")
    if theta0.ndim != 2:
        raise ValueError(f"`theta0` must have shape (P, D); got {tuple(theta0.shape)}.")
    steps, record_every = int(steps), int(record_every)
    net = problem.net
    X = problem.X.to(dtype=theta0.dtype, device=theta0.device)
    y = problem.y.to(dtype=theta0.dtype, device=theta0.device)

    theta = theta0.clone()
    rec_steps, rec_theta = [0], [theta.clone()]
    chunk = 0
    for k in range(1, steps + 1):
        if method == "dropout":
            theta = problem.step(theta, lr, generator)
        elif method == "explicit":
            theta = theta - lr * problem.expected_loss_grad(theta)
        else:
            theta = theta - lr * net.loss_grad(theta, X, y)[1]
        if k % record_every == 0 or k == steps:
            if not bool(torch.isfinite(theta).all()):
                raise ValueError(
                    f"{method} training produced non-finite parameters by step {k} "
                    f"(lr={lr:g}); lower `lr`."
                )
            rec_steps.append(k)
            rec_theta.append(theta.clone())
        chunk += 1
        if progress is not None and (chunk == 256 or k == steps):
            progress(chunk)
            chunk = 0
    thetas = torch.stack(rec_theta)
    K, P, D = thetas.shape
    loss = net.loss(thetas.reshape(K * P, D), X, y).reshape(K, P)
    return Trajectory(
        method=method,
        lr=lr,
        steps=torch.tensor(rec_steps, dtype=torch.int64),
        theta=thetas,
        loss=loss,
    )
