"""What :func:`~smetool.algorithms.derive.derive_sme` refuses: updates and noise laws outside
Li, Tai & E's theorem, checked at one state before anything runs.

* the shape of ``A = update(x, ξ)`` (that of ``x``) and its dtype (floating);
* a finite ``Σ``: ``A`` finite at every support point of a :class:`FiniteNoise` (then ``Σ`` is
  an exact finite sum) or at 256 draws of a :class:`SampledNoise` — a sampled law's variance can
  be refuted by draws (an ``inf``), never established, so a heavy-tailed law with finite draws
  passes;
* the form ``x + lr · A``: an ``update`` whose Jacobian at the state is the identity to 25 %
  almost surely returns the new iterate ``x + lr A`` instead of ``A`` (an increment whose
  Jacobian is close to ``+I`` would make ``x`` grow like ``e^t``);
* at order 2, differentiability in ``x``: the Jacobian of ``b₀`` (of ``A`` at fixed draws for a
  sampled law) by :func:`torch.func.jvp` must exist, be finite and agree with central
  differences, column by column, so a failure names the input coordinate. This is a check at one
  point: a kink elsewhere (a ReLU) is not seen.

References
----------
Q. Li, C. Tai, W. E, "Stochastic modified equations and dynamics of stochastic gradient algorithms
I: mathematical foundations", JMLR 20 (2019).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from ..device import functorch_exclusive
from .derive_batch import BatchMean, BatchMeanSupport, batch_factor, support_for
from .derive_core import DifferentiableUpdate, Update, check_order, evaluate
from .noise_laws import FiniteNoise, NoiseLaw, Tree, tree_map

__all__ = ["check_update", "as_probe_state", "FORM_TOLERANCE", "SAMPLED_PROBE_DRAWS"]

FORM_TOLERANCE = 0.25
"""An ``update`` with ``‖J u − u‖ < 0.25 ‖u‖`` for every probe direction ``u`` (``J`` its
Jacobian in ``x``) is refused as returning the new iterate."""

SAMPLED_PROBE_DRAWS = 256
"""Draws of a :class:`SampledNoise` at which ``A`` must be finite."""

_MAX_JACOBIAN_COLUMNS = 256


def as_probe_state(x0: object, owner: str = "x0") -> Tensor:
    """``x0`` as one floating, finite state ``(1, D)`` (the first row of a ``(P, D)`` batch)."""
    if not isinstance(x0, Tensor) or not x0.is_floating_point() or x0.ndim not in (1, 2) \
            or x0.numel() == 0:
        shape = tuple(x0.shape) if isinstance(x0, Tensor) else type(x0).__name__
        raise ValueError(f"`{owner}` must be a floating-point tensor of shape (D,) or (P, D); "
                         f"got {shape}.")
    if not bool(torch.isfinite(x0).all()):
        raise ValueError(f"`{owner}` must be finite; got NaN or inf.")
    return x0.reshape(-1, x0.shape[-1])[:1].detach()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"


class _Probe:
    """``x ↦ b₀(x)`` (exact) or ``x ↦ A(x, ξ)`` at fixed draws (sampled), on any number of rows
    that is a multiple of the draws."""

    def __init__(self, update: Update, law: NoiseLaw, x: Tensor, draws: int):
        self.update, self.law = update, law
        self.support = support_for(update, law) if isinstance(law, FiniteNoise) else None
        self.xi: Tree | None = None
        if self.support is None:
            gen = torch.Generator(device=x.device).manual_seed(0)
            self.xi = law.draw(draws, gen, dtype=x.dtype, device=x.device)
        self.draws = 1 if self.support is not None else draws

    def __call__(self, y: Tensor) -> Tensor:
        if self.support is not None:
            return self.support.mean(y)
        reps = y.shape[0] // self.draws
        xi = tree_map(lambda leaf: leaf.repeat(reps, *([1] * (leaf.ndim - 1))), self.xi)
        return self.update(y, xi)


def check_update(update: Update, law: NoiseLaw, x0: Tensor, *, order: int,
                 check_form: bool = True) -> None:
    """Refuse, with a one-line ``ValueError``, what the theorem does not cover (see the module).

    Parameters
    ----------
    update : callable ``(x (N, D), ξ) -> A (N, D)``
    law : FiniteNoise or SampledNoise
    x0 : Tensor, (D,) or (P, D)
        The state at which to check (its first row).
    order : {1, 2}
    check_form : bool
        Also refuse an update whose Jacobian is the identity (:data:`FORM_TOLERANCE`).
    """
    order = check_order(order)
    x = as_probe_state(x0)
    if isinstance(update, BatchMean):
        _check_batch_mean(update, law, x)
    _check_finite(update, law, x)
    if check_form:
        _check_form(update, law, x)
    if order == 2:
        _check_differentiable(update, law, x)


def _check_finite(update: Update, law: NoiseLaw, x: Tensor) -> None:
    if isinstance(law, FiniteNoise):
        support = support_for(update, law)
        exact = support.examples if isinstance(support, BatchMeanSupport) else support
        for A, _, index in exact.blocks(x):
            _floating(A)
            bad = ~torch.isfinite(A).all(dim=-1)[0]
            if bool(bad.any()):
                i = int(index[bad.nonzero()[0, 0]])
                raise ValueError(f"`update(x0, ξ_{i})` is not finite (support point {i}): Σ = "
                                 "Cov A would not be finite, which the SME theorem excludes.")
        return
    gen = torch.Generator(device=x.device).manual_seed(0)
    xi = law.draw(SAMPLED_PROBE_DRAWS, gen, dtype=x.dtype, device=x.device)
    A = evaluate(update, x.expand(SAMPLED_PROBE_DRAWS, -1).clone(), xi)
    _floating(A)
    count = int((~torch.isfinite(A).all(dim=-1)).sum())
    if count:
        raise ValueError(f"`update(x0, ξ)` is not finite for {count} of {SAMPLED_PROBE_DRAWS} draws "
                         "of ξ: Σ = Cov A is not finite, which the SME theorem excludes.")


def _check_batch_mean(update: BatchMean, law: NoiseLaw, x: Tensor) -> None:
    """The declaration of :class:`BatchMean`: on 4 drawn batches, ``A`` is the mean of its
    values on the batch's single examples (to round-off)."""
    found = batch_factor(law)
    if found is None:
        raise ValueError("BatchMean: the noise law must end with FiniteNoise.minibatches(n, B) "
                         f"(the batch the update averages over); got {law!r}.")
    gen = torch.Generator(device=x.device).manual_seed(3)
    xi = law.draw(4, gen, dtype=x.dtype, device=x.device)
    rows = x.expand(4, -1).clone()
    whole = evaluate(update, rows, xi)
    batch = xi[-1] if isinstance(xi, tuple) else xi
    parts = []
    for j in range(batch.shape[1]):
        one = batch[:, j:j + 1]
        parts.append(evaluate(update, rows, (*xi[:-1], one) if isinstance(xi, tuple) else one))
    mean = torch.stack(parts).mean(dim=0)
    gap = float((whole - mean).abs().max() / whole.abs().max().clamp_min(1e-300))
    if gap > 1e3 * torch.finfo(x.dtype).eps:
        raise ValueError("BatchMean: `update(x, ξ)` must be the mean of its values on the batch's "
                         f"single examples; at x0 they differ by {gap:.2g} (relative).")


def _floating(A: Tensor) -> None:
    if not A.is_floating_point():
        raise ValueError(f"`update(x, ξ)` must return a floating-point A; got {A.dtype}.")


def _central_difference(fn: Callable[[Tensor], Tensor], x: Tensor, U: Tensor) -> Tensor:
    """``(fn(x + δu) − fn(x − δu)) / 2δ`` for the rows ``u`` of ``U``, ``δ = ε^{1/3} max(1, |x|)``."""
    step = torch.finfo(x.dtype).eps ** (1.0 / 3.0) * max(1.0, float(x.abs().max()))
    rows = x.expand(U.shape[0], -1)
    both = fn(torch.cat([rows + step * U, rows - step * U]))
    return (both[: U.shape[0]] - both[U.shape[0]:]) / (2.0 * step)


def _check_form(update: Update, law: NoiseLaw, x: Tensor) -> None:
    D = x.shape[1]
    gen = torch.Generator(device=x.device).manual_seed(1)
    U = torch.randn(3, D, generator=gen, dtype=x.dtype, device=x.device)
    U = U / U.norm(dim=1, keepdim=True)
    probe = _Probe(update, law, x, 3)
    JU = _central_difference(probe, x, U)
    deviation = float((JU - U).norm(dim=1).max())
    if deviation < FORM_TOLERANCE:
        raise ValueError(
            "`update(x, ξ)` must return the increment A of x_{k+1} = x_k + lr·A(x_k, ξ_k), not "
            f"the new iterate: its Jacobian at x0 is the identity to {deviation:.2g} "
            f"(< {FORM_TOLERANCE}); pass check_form=False if A really is close to x.")


def _directional(update: Update, probe: _Probe, rows: Tensor, U: Tensor) -> Tensor:
    """The derivative the SME will use: the update's closed form (a :class:`DifferentiableUpdate`,
    whose formula is then what the central differences check) or :func:`torch.func.jvp`."""
    if isinstance(update, DifferentiableUpdate):
        if probe.support is not None:
            return probe.support.directional(rows, U)
        reps = rows.shape[0] // probe.draws
        xi = tree_map(lambda leaf: leaf.repeat(reps, *([1] * (leaf.ndim - 1))), probe.xi)
        return update.directional(rows, xi, U)
    return functorch_exclusive(torch.func.jvp)(probe, (rows,), (U,))[1]


def _check_differentiable(update: Update, law: NoiseLaw, x: Tensor) -> None:
    D = x.shape[1]
    columns = torch.arange(D, device=x.device)
    if D > _MAX_JACOBIAN_COLUMNS:
        gen = torch.Generator(device=x.device).manual_seed(2)
        columns = torch.randperm(D, generator=gen, device=x.device)[:_MAX_JACOBIAN_COLUMNS]
    draws = 1 if isinstance(law, FiniteNoise) else 4
    probe = _Probe(update, law, x, draws)
    eye = torch.eye(D, dtype=x.dtype, device=x.device)[columns]
    U = eye.repeat_interleave(draws, dim=0)  # row j·draws + k: column j, draw k
    rows = x.expand(U.shape[0], -1).clone()
    try:
        jvp = _directional(update, probe, rows, U)
    except Exception as exc:  # noqa: BLE001 — any failure of the transform is the user's A
        raise ValueError("`update` must be differentiable in x at order 2 (the drift needs "
                         f"(∇b₀) b₀ by torch.func.jvp); at x0 the jvp raised {_first_line(exc)}"
                         ) from exc
    fd = _central_difference(probe, x, U)
    scale = float(torch.maximum(jvp.abs().max(), fd.abs().max()).clamp_min(1e-300))
    rtol = 1e-5 if x.dtype == torch.float64 else 1e-2
    gap = (jvp - fd).abs().amax(dim=1)
    finite = torch.isfinite(jvp).all(dim=1)
    bad = (~finite) | (gap > rtol * scale)
    if bool(bad.any()):
        k = int(columns[int(bad.nonzero()[0, 0]) // draws])
        what = ("is not finite" if not bool(finite.all()) else
                f"differs from a central difference by {float(gap.max()) / scale:.2g} (relative)")
        raise ValueError(f"`update` is not differentiable in x at x0 at order 2: its derivative "
                         f"along input x[{k}] {what}; the order-2 SME needs a smooth A.")
