"""Dropout on a two-layer network: exact expectations, the noise covariance and its factors.

Convention (Zhang, Li, Luo & Xu, ICLR 2024, which differs from ``torch.nn.Dropout``):
``keep_prob = p`` is the probability of **keeping** a neuron. At every step and on every path each
hidden neuron's output is multiplied by ``b_r / p`` with ``b_r ~ Bernoulli(p)`` drawn afresh;
``p = 0.9`` drops 10 % of the neurons, like ``torch.nn.Dropout(0.1)``.

Notation. With ``η_r = b_r/p − 1`` (``E η = 0``, ``v = E η² = (1−p)/p``), ``h_ri = a_r σ(w_r·x_i)``,
residuals ``e_i = f(x_i) − y_i`` and per-neuron gradients ``g_ri = ∇_θ h_ri`` (supported on neuron
``r``'s parameters ``(a_r, w_r)``), the dropout gradient is a quadratic polynomial in ``η``:

.. math::

    G(η) = ∇R_S + Σ_r η_r A_r + Σ_{r,q} η_r η_q B_{rq},\\quad
    A_r = \\tfrac1n Σ_i (e_i g_{ri} + h_{ri} Σ_s g_{si}),\\quad
    B_{rq} = \\tfrac1n Σ_i h_{qi} g_{ri}.

Since ``η_r`` takes only two values, ``η_r² − v = c η_r`` with ``c = (1−2p)/p`` (so the covariance
of ``(η_r, η_r²)`` has rank one: ``κ3 = c v``, ``κ4 − v² = c² v``). Hence, exactly,

* ``E G = ∇R_S + v Σ_r B_rr = ∇L_S`` with ``L_S = R_S + R_1``,
  ``R_1 = (1−p)/(2np) Σ_{i,r} h_ri²`` (the implicit regularizer);
* ``G − E G = Σ_r η_r Ã_r + Σ_{r<q} η_r η_q S_rq`` with ``Ã_r = A_r + c B_rr`` and
  ``S_rq = B_rq + B_qr``, where the ``m + m(m−1)/2`` coefficients ``η_r`` and ``η_r η_q`` are
  uncorrelated with variances ``v`` and ``v²``;
* ``Σ = Cov G = v Σ_r Ã_r Ã_rᵀ + v² Σ_{r<q} S_rq S_rqᵀ = F Fᵀ`` with the polynomial (smooth)
  factor ``F = [√v Ã_1 … √v Ã_m, v S_12 … v S_{m−1,m}]`` of ``M = m(m+1)/2`` columns.

Every vector above is assembled block by block: its block on neuron ``s`` is
``(1/n) Σ_i g_si u_si`` for a weight array ``u``, so nothing of size ``D × D`` is formed unless
:meth:`DropoutProblem.noise_covariance` is asked for.

References
----------
Z. Zhang, Y. Li, T. Luo, Z.-Q. J. Xu, "Stochastic modified equations and dynamics of dropout
algorithm", ICLR 2024.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch
from torch import Tensor

from ..checks import (
    check_batch_size,
    check_keep_prob,
    check_lr,
    check_nonnegative,
    check_positive_int,
)
from .dropout_kernels import (
    blocks,
    loss_hvp,
    mean_gradient,
    network_terms,
    pair_index,
    pair_matrix,
    weighted_blocks,
)
from .two_layer import Activation, NeuronTerms, TwoLayerNet, add_bias_feature
from .two_layer_landscape import TwoLayerLandscape

__all__ = ["DropoutProblem", "DropoutTerms", "GradSecondMoment", "default_problem"]


@dataclass(frozen=True, eq=False)
class GradSecondMoment:
    """``E_η ‖∇R_S^drop(θ; η)‖² = ‖∇L_S(θ)‖² + tr Σ(θ)``, the two parts kept apart.

    Attributes
    ----------
    grad_norm_sq : Tensor, (P,)
        ``‖∇L_S‖²``, the squared norm of the mean gradient.
    trace_sigma : Tensor, (P,)
        ``tr Σ``, the total variance of the dropout gradient.
    """

    grad_norm_sq: Tensor
    trace_sigma: Tensor

    @property
    def total(self) -> Tensor:
        """``E_η ‖∇R_S^drop‖²``, shape ``(P,)``."""
        return self.grad_norm_sq + self.trace_sigma

    def to_dict(self) -> dict:
        """JSON-ready lists, one entry per path."""
        return {
            "grad_norm_sq": self.grad_norm_sq.tolist(),
            "trace_sigma": self.trace_sigma.tolist(),
            "total": self.total.tolist(),
        }

    def __repr__(self) -> str:
        def show(t: Tensor) -> str:
            if t.numel() == 1:
                return f"{float(t):.6g}"
            return f"<{t.numel()} paths, mean {float(t.mean()):.6g}>"

        return (
            f"GradSecondMoment(grad_norm_sq={show(self.grad_norm_sq)}, "
            f"trace_sigma={show(self.trace_sigma)})"
        )


@dataclass(frozen=True)
class DropoutTerms:
    """Quantities of a batch ``θ (P, D)`` shared by every closed form (blocks of ``k = d + 1``).

    Computed once per state by :meth:`DropoutProblem.terms` and passed to the gradient, the
    Hessian–vector product and the noise, which then skip the network's forward pass.
    """

    terms: NeuronTerms
    e: Tensor  # (P, n) residuals
    X: Tensor  # (n, d) the inputs, in the dtype and on the device of θ

    @functools.cached_property
    def g(self) -> Tensor:
        """``g_ri`` restricted to neuron ``r``'s block ``(a_r, w_r)``, ``(P, m, n, k)`` (formed only
        where a dense result needs it)."""
        t = self.terms
        g_w = (t.a.unsqueeze(-1) * t.ds).unsqueeze(-1) * self.X  # (P, m, n, d): a_r σ'(z_ri) x_i
        return torch.cat([t.s.unsqueeze(-1), g_w], dim=-1)


class DropoutProblem(TwoLayerLandscape):
    """Full-batch dropout on a two-layer network ``f_θ(x) = Σ_r a_r σ(w_r·x)``, with exact moments.

    Parameters
    ----------
    X : Tensor, (n, d0)
        Inputs (without the bias feature). Its dtype and device are those of the stored data;
        methods cast the data to the dtype and device of ``theta``.
    y : Tensor, (n,)
        Targets.
    width : int
        ``m``, the number of hidden neurons (all of them subject to dropout).
    keep_prob : float
        ``p ∈ (0, 1]``, the probability of **keeping** a neuron (``p = 1``: no dropout).
    activation : str or Activation
        See :class:`~smetool.models.two_layer.TwoLayerNet`; default ``"tanh"``.
    bias : bool
        Append the constant feature 1 to every input (default ``True``), so ``d = d0 + 1``.
    batch_size : int, optional
        ``B`` of the landscape's minibatch gradients (SGD, SAM, SignSGD on this network); ``None``
        (default): none, full-batch dropout needs no minibatch.

    Attributes
    ----------
    X : Tensor, (n, d)
        The inputs including the bias feature.
    y : Tensor, (n,)

    Raises
    ------
    ValueError
        If ``X`` is not 2-D, ``y`` not 1-D with ``len(y) == len(X)``, there are no data, the data
        are not finite, ``width`` is not a positive integer or ``keep_prob`` is outside ``(0, 1]``.
    TypeError
        If ``keep_prob`` is not a real number.

    Notes
    -----
    All methods take a batch of parameter vectors ``θ (P, D)``, ``θ = concat(a, W.flatten())``,
    ``D = m (d + 1)``, and work on all ``P`` paths at once. Costs per
    path: gradients and samples ``O(n m d + n m²)``, the factor :meth:`noise_factor`
    ``O(n m² d)`` time and ``O(m³ d)`` memory, :meth:`noise_covariance` ``O(m³ d² + m² d² n)``.

    References
    ----------
    Z. Zhang, Y. Li, T. Luo, Z.-Q. J. Xu, "Stochastic modified equations and dynamics of dropout
    algorithm", ICLR 2024.

    Examples
    --------
    >>> problem, theta0 = default_problem()
    >>> theta = theta0.expand(4, -1)
    >>> problem.expected_loss(theta).shape
    torch.Size([4])
    """

    def __init__(
        self,
        X: Tensor,
        y: Tensor,
        *,
        width: int,
        keep_prob: float,
        activation: str | Activation = "tanh",
        bias: bool = True,
        batch_size: int | None = None,
    ):
        X = torch.as_tensor(X)
        y = torch.as_tensor(y)
        if X.ndim != 2:
            raise ValueError(f"`X` must be 2-D, (n, d0); got shape {tuple(X.shape)}.")
        if y.ndim != 1 or y.shape[0] != X.shape[0]:
            raise ValueError(
                f"`y` must be 1-D with len(y) == len(X) = {X.shape[0]}; got shape {tuple(y.shape)}."
            )
        if X.shape[0] == 0 or X.shape[1] == 0:
            raise ValueError(
                "`X` must have at least one point and one feature; "
                f"got shape {tuple(X.shape)}."
            )
        if not X.is_floating_point():
            X = X.to(torch.get_default_dtype())
        y = y.to(dtype=X.dtype, device=X.device)
        if not bool(torch.isfinite(X).all()):
            raise ValueError("`X` must be finite; got NaN or inf entries.")
        if not bool(torch.isfinite(y).all()):
            raise ValueError("`y` must be finite; got NaN or inf entries.")
        width = check_positive_int(width, "width")
        p = check_keep_prob(keep_prob)
        self.X = add_bias_feature(X) if bias else X
        self.y = y
        self.bias = bool(bias)
        self.net = TwoLayerNet(self.X.shape[1], width, activation)
        self._p = p
        self._index: dict[torch.device, Tensor] = {}
        self.batch_size = None if batch_size is None else check_batch_size(
            batch_size, self.n_points, "DropoutProblem")

    # ----------------------------------------------------------------------------- properties
    @property
    def keep_prob(self) -> float:
        """``p``, the keep probability."""
        return self._p

    @property
    def width(self) -> int:
        """``m``, the number of hidden neurons."""
        return self.net.width

    @property
    def n_points(self) -> int:
        """``n``, the number of data points."""
        return self.X.shape[0]

    @property
    def n_params(self) -> int:
        """``D = m (d + 1)``."""
        return self.net.n_params

    @property
    def v(self) -> float:
        """``E η² = (1−p)/p``."""
        return (1.0 - self._p) / self._p

    @property
    def kappa3(self) -> float:
        """``E η³ = (1−p)(1−2p)/p²``."""
        p = self._p
        return (1.0 - p) * (1.0 - 2.0 * p) / p**2

    @property
    def kappa4(self) -> float:
        """``E η⁴ = (1−p)(1−3p+3p²)/p³``."""
        p = self._p
        return (1.0 - p) * (1.0 - 3.0 * p + 3.0 * p * p) / p**3

    @property
    def _c(self) -> float:
        # η² − v = c η for the two-point law of η.
        return (1.0 - 2.0 * self._p) / self._p

    @property
    def noise_dim(self) -> int:
        """``M = m(m+1)/2``, the columns of :meth:`noise_factor` (``m`` singles, then pairs)."""
        m = self.width
        return m * (m + 1) // 2

    def __repr__(self) -> str:
        return (
            f"DropoutProblem(n={self.n_points}, input_dim={self.net.input_dim}, "
            f"width={self.width}, keep_prob={self._p:g}, "
            f"activation={self.net.activation.name!r}, bias={self.bias})"
        )

    # ----------------------------------------------------------------------------- internals
    def _data(self, theta: Tensor) -> tuple[Tensor, Tensor]:
        return (
            self.X.to(dtype=theta.dtype, device=theta.device),
            self.y.to(dtype=theta.dtype, device=theta.device),
        )

    def terms(self, theta: Tensor) -> DropoutTerms:
        """The network terms of ``θ (P, D)`` that the closed forms share (activations, residuals,
        per-neuron gradients): compute them once per state and pass them on."""
        X, y = self._data(theta)
        a, W = self.net.split(theta)
        z, s, ds, h, e = network_terms(a, W, X, y, self.net.activation)
        return DropoutTerms(terms=NeuronTerms(a=a, W=W, z=z, s=s, ds=ds, h=h), e=e, X=X)

    def _pair_index(self, device: torch.device) -> Tensor:
        """:func:`~smetool.models.dropout_kernels.pair_index` on ``device`` (made once)."""
        if device not in self._index:
            self._index[device] = pair_index(self.width, device)
        return self._index[device]

    def _noise_matrix(self, z: Tensor, diag_shift: float = 0.0) -> Tensor:
        """``N(z) − diag_shift · I`` ``(P, m, m)``, the batched matrix of ``F z``'s weights
        (:mod:`~smetool.models.dropout_kernels`)."""
        m, rv = self.width, math.sqrt(self.v)
        zs = z[:, :m]
        diag = zs * (rv * self._c)
        if diag_shift:
            diag = diag - diag_shift
        return pair_matrix(diag, self.v * z[:, m:], rv * zs, self._pair_index(z.device))

    def _contract(self, parts: DropoutTerms, u: Tensor) -> Tensor:
        """Blocks ``(1/n) Σ_i g_si u_si`` for weights ``u (..., P, m, n)``: ``(..., P, m, k)``.

        ``g_si = (σ(w_s·x_i), a_s σ'(w_s·x_i) x_i)``, so the block is
        ``(Σ_i σ_si u_si, a_s Σ_i σ'_si u_si x_i) / n``: two contractions over the data, without
        forming the ``(P, m, n, k)`` array ``g``.
        """
        t, X = parts.terms, parts.X
        n = X.shape[0]
        first = (t.s * u).sum(dim=-1, keepdim=True)
        rest = torch.matmul(t.ds * u, X) * t.a.unsqueeze(-1)
        return torch.cat([first, rest], dim=-1) / n

    @staticmethod
    def _to_theta(blk: Tensor) -> Tensor:
        """Blocks ``(..., m, k)`` -> parameters ``(..., D)``, ``θ = concat(a, W.flatten())``."""
        lead = blk.shape[:-2]
        return torch.cat([blk[..., 0], blk[..., 1:].reshape(*lead, -1)], dim=-1)

    def _check_theta(self, theta: Tensor) -> None:
        if not isinstance(theta, Tensor) or not theta.is_floating_point():
            raise TypeError(f"`theta` must be a floating-point Tensor; got {type(theta).__name__}.")
        if theta.ndim != 2 or theta.shape[1] != self.n_params:
            raise ValueError(
                f"`theta` must have shape (paths, {self.n_params}); got {tuple(theta.shape)}."
            )

    def _pairs(self, device) -> tuple[Tensor, Tensor]:
        # Column order of the pair part: (r, q) with r < q, row-major (torch.triu_indices).
        idx = torch.triu_indices(self.width, self.width, offset=1, device=device)
        return idx[0], idx[1]

    @staticmethod
    def _B(parts: DropoutTerms) -> Tensor:
        """``B[p, r, q] = (1/n) Σ_i h_qi g_ri`` restricted to block ``r``: ``(P, m, m, k)``."""
        g, h = parts.g, parts.terms.h
        return torch.einsum("prnk,pqn->prqk", g, h) / g.shape[2]

    def _e_tilde(self, parts: DropoutTerms) -> Tensor:
        """``Ẽ_r = (1/n) Σ_i g_ri (e_i + c h_ri)``, ``(P, m, k)``.

        ``Ã_r`` on neuron ``r``'s own block is ``Ẽ_r + B_rr``.
        """
        u = parts.e.unsqueeze(1) + self._c * parts.terms.h
        return self._contract(parts, u)

    # ----------------------------------------------------------------------------- the algorithm
    def sample_scale(
        self,
        n_paths: int,
        generator: torch.Generator,
        *,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> Tensor:
        """Draw the dropout multipliers ``b/p``, one fresh mask per path.

        Parameters
        ----------
        n_paths : int
            ``P``.
        generator : torch.Generator
            The source of randomness (on ``device``).
        dtype, device : optional
            Default: those of the stored data.

        Returns
        -------
        Tensor, (P, m)
            Entries ``1/p`` (kept, probability ``p``) or ``0`` (dropped).
        """
        n_paths = check_positive_int(n_paths, "n_paths")
        dtype = self.X.dtype if dtype is None else dtype
        device = self.X.device if device is None else device
        u = torch.rand(n_paths, self.width, generator=generator, dtype=dtype, device=device)
        return (u < self._p).to(dtype) / self._p

    def dropout_loss_grad(self, theta: Tensor, scale: Tensor) -> tuple[Tensor, Tensor]:
        """The dropout loss ``R_S^drop(θ; η)`` and its gradient for given multipliers ``1 + η``.

        Parameters
        ----------
        theta : Tensor, (P, D)
        scale : Tensor, (P, m)
            Neuron ``r``'s output is multiplied by ``scale[:, r]`` (e.g. from :meth:`sample_scale`).

        Returns
        -------
        loss : Tensor, (P,)
        grad : Tensor, (P, D)

        Raises
        ------
        ValueError
            If ``scale`` does not have shape ``(P, m)``.
        """
        self._check_theta(theta)
        if scale.shape != (theta.shape[0], self.width):
            raise ValueError(
                f"`scale` must have shape ({theta.shape[0]}, {self.width}); "
                f"got {tuple(scale.shape)}."
            )
        X, y = self._data(theta)
        return self.net.scaled_loss_grad(self.net.terms(theta, X), X, y, scale)

    def step(self, theta: Tensor, lr: float, generator: torch.Generator) -> Tensor:
        """One step of full-batch dropout GD, ``θ − lr ∇R_S^drop(θ; η)``, a fresh mask per path.

        Parameters
        ----------
        theta : Tensor, (P, D)
        lr : float
            The learning rate ``ε > 0``.
        generator : torch.Generator
            On the device of ``theta``.

        Returns
        -------
        Tensor, (P, D)

        Raises
        ------
        ValueError
            If ``lr`` is not a positive finite number.
        """
        lr = check_lr(lr)
        return theta - lr * self.stochastic_gradient(theta, generator)

    def stochastic_gradient(self, theta: Tensor, generator: torch.Generator) -> Tensor:
        """``∇_θ R_S^drop(θ; η)`` with a fresh dropout mask per path, ``(P, D)``."""
        self._check_theta(theta)
        scale = self.sample_scale(theta.shape[0], generator, dtype=theta.dtype, device=theta.device)
        return self.dropout_loss_grad(theta, scale)[1]

    # ----------------------------------------------------------------------------- expectations
    def loss(self, theta: Tensor) -> Tensor:
        """``R_S(θ) = 1/(2n) Σ_i (f_θ(x_i) − y_i)²``, shape ``(P,)``."""
        self._check_theta(theta)
        X, y = self._data(theta)
        return self.net.loss(theta, X, y)

    def implicit_regularizer(self, theta: Tensor) -> Tensor:
        """The implicit regularizer ``R_1(θ) = (1−p)/(2np) Σ_i Σ_r a_r² σ(w_r·x_i)²``, ``(P,)``."""
        self._check_theta(theta)
        X, _ = self._data(theta)
        h = self.net.terms(theta, X).h
        return 0.5 * self.v * (h * h).sum(dim=(1, 2)) / X.shape[0]

    def expected_loss(self, theta: Tensor) -> Tensor:
        """``L_S = E_η R_S^drop = R_S + R_1``, shape ``(P,)``; differentiable by autograd."""
        self._check_theta(theta)
        X, y = self._data(theta)
        h = self.net.terms(theta, X).h
        e = h.sum(dim=1) - y
        return 0.5 * (e * e).mean(dim=1) + 0.5 * self.v * (h * h).sum(dim=(1, 2)) / X.shape[0]

    def expected_loss_grad(self, theta: Tensor, terms: DropoutTerms | None = None) -> Tensor:
        """``∇L_S = E_η ∇R_S^drop``, closed form, shape ``(P, D)``.

        Block ``r`` is ``(1/n) Σ_i g_ri (e_i + v h_ri)``. ``terms``: :meth:`terms` of ``theta``
        when already computed.
        """
        self._check_theta(theta)
        parts = self.terms(theta) if terms is None else terms
        t = parts.terms
        return mean_gradient(t.s, t.ds, t.h, parts.e, t.a, parts.X, self.v)

    def expected_loss_hvp(self, theta: Tensor, vec: Tensor,
                          terms: DropoutTerms | None = None) -> Tensor:
        """The Hessian–vector product ``∇²L_S(θ) u``, closed form, shape ``(P, D)``.

        With ``ḣ_ri = g_ri·u``, ``ė_i = Σ_r ḣ_ri`` and ``ġ_ri`` the derivative of ``g_ri`` along
        ``u`` (it needs ``σ''``), block ``r`` is
        ``(1/n) Σ_i [ġ_ri (e_i + v h_ri) + g_ri (ė_i + v ḣ_ri)]``. Cost ``O(n m d)`` per path,
        no autograd (so it also runs under ``torch.no_grad``).

        Parameters
        ----------
        theta, vec : Tensor, (P, D)
        terms : DropoutTerms, optional
            :meth:`terms` of ``theta`` when already computed.

        Raises
        ------
        ValueError
            If ``vec`` does not have the shape of ``theta``.
        """
        self._check_theta(theta)
        if vec.shape != theta.shape:
            raise ValueError(
                f"`vec` must have the shape of `theta`, {tuple(theta.shape)}; "
                f"got {tuple(vec.shape)}."
            )
        parts = self.terms(theta) if terms is None else terms
        t = parts.terms
        a_dot, W_dot = self.net.split(vec)
        return loss_hvp(t.z, t.s, t.ds, t.h, parts.e, t.a, parts.X, a_dot, W_dot, self.v,
                        self.net.activation)

    # ----------------------------------------------------------------------------- noise
    def noise_factor(self, theta: Tensor) -> Tensor:
        """A factor ``F(θ)`` with ``F Fᵀ = Σ(θ) = Cov_η ∇R_S^drop``, polynomial in ``σ, σ', a, W``.

        Columns ``0 … m−1`` are ``√v Ã_r`` (one per neuron); then ``v S_rq`` for ``r < q`` in
        row-major order. Because ``F`` is a smooth function of ``θ`` for a smooth activation (no
        matrix square root), it is a valid GENERAL diffusion for weak order-2 schemes.

        Parameters
        ----------
        theta : Tensor, (P, D)

        Returns
        -------
        Tensor, (P, D, M)
            ``M = m(m+1)/2`` (:attr:`noise_dim`). Zero when ``p = 1``.

        Notes
        -----
        Cost ``O(n m² d)`` time and ``O(m³ d)`` memory per path; a pair column touches only the
        two blocks of its neurons.
        """
        self._check_theta(theta)
        parts = self.terms(theta)
        B = self._B(parts)  # (P, s, r, k)
        Et = self._e_tilde(parts)
        m = self.width
        P, D, Mp = theta.shape[0], self.n_params, m * (m - 1) // 2
        ar = torch.arange(m, device=theta.device)
        # Single column r, block s: √v (B_sr + δ_sr Ẽ_s), with Ẽ_s + B_ss = Ã_s's own block.
        singles = B.clone()
        singles[:, ar, ar, :] += Et
        singles = math.sqrt(self.v) * singles.permute(0, 1, 3, 2)  # (P, s, k, r)
        F = theta.new_zeros(P, D, m + Mp)
        F[:, :, :m] = self._to_theta(singles.permute(0, 3, 1, 2)).transpose(1, 2)
        # Pair column (r, q): v B_rq on block r and v B_qr on block q, zero elsewhere, so only
        # those 2k entries are written (the dense pair part is mostly zeros).
        ri, qi = self._pairs(theta.device)
        cols = (m + torch.arange(Mp, device=theta.device)).unsqueeze(1)
        F[:, self._block_rows(ri), cols] = self.v * B[:, ri, qi, :]
        F[:, self._block_rows(qi), cols] = self.v * B[:, qi, ri, :]
        return F

    def _block_rows(self, neurons: Tensor) -> Tensor:
        """Parameter indices ``(J, k)`` of the blocks of ``neurons (J,)``: ``a_r``, then ``w_r``."""
        m, d = self.width, self.net.input_dim
        w_rows = m + neurons.unsqueeze(1) * d + torch.arange(d, device=neurons.device)
        return torch.cat([neurons.unsqueeze(1), w_rows], dim=1)

    def noise_factor_matvec(self, theta: Tensor, z: Tensor,
                            terms: DropoutTerms | None = None) -> Tensor:
        """``F(θ) z`` without forming ``F``: ``(P, D)`` for ``z (P, M)``.

        Block ``s`` of the result is ``(1/n) Σ_i g_si u_si`` with
        ``u_si = √v (z_s (e_i + c h_si) + Σ_r z_r h_ri) + v Σ_q Z_sq h_qi``, where ``z_s`` are the
        first ``m`` entries of ``z`` and ``Z`` is the symmetric, zero-diagonal matrix holding the
        pair entries (column order of :meth:`noise_factor`). Cost ``O(n m² + n m d)`` per path,
        against ``O(n m² d + m³ d)`` for forming ``F``. ``terms``: :meth:`terms` of ``theta``
        when already computed.

        Raises
        ------
        ValueError
            If ``z`` does not have shape ``(P, M)``.
        """
        self._check_theta(theta)
        if z.shape != (theta.shape[0], self.noise_dim):
            raise ValueError(
                f"`z` must have shape ({theta.shape[0]}, {self.noise_dim}); got {tuple(z.shape)}."
            )
        return self._factor_matvec(self.terms(theta) if terms is None else terms, z)

    def _factor_matvec(self, parts: DropoutTerms, z: Tensor) -> Tensor:
        t = parts.terms
        coef = z[:, : self.width] * math.sqrt(self.v)
        return weighted_blocks(t.s, t.ds, t.h, parts.e, t.a, parts.X, coef, self._noise_matrix(z))

    def euler_increment(self, theta: Tensor, dt: float, z: Tensor,
                        terms: DropoutTerms | None = None) -> Tensor:
        """``−∇L_S(θ) dt + F(θ) z`` ``(P, D)`` in one contraction (an Euler–Maruyama increment of
        the order-1 SME with ``z = √lr ΔW``), instead of one for the drift and one for the noise.

        Its weights are ``(√v z_s − dt) e_i + Σ_q (N_sq − dt v δ_sq) h_qi`` (the drift's
        ``−dt (e_i + v h_si)`` folded into those of ``F z``, see
        :mod:`~smetool.models.dropout_kernels`). ``terms``: :meth:`terms` of ``theta`` when known.

        Raises
        ------
        ValueError
            If ``z`` does not have shape ``(P, M)``.
        """
        self._check_theta(theta)
        if z.shape != (theta.shape[0], self.noise_dim):
            raise ValueError(
                f"`z` must have shape ({theta.shape[0]}, {self.noise_dim}); got {tuple(z.shape)}.")
        parts = self.terms(theta) if terms is None else terms
        t = parts.terms
        coef = z[:, : self.width] * math.sqrt(self.v) - dt
        N = self._noise_matrix(z, dt * self.v)
        return weighted_blocks(t.s, t.ds, t.h, parts.e, t.a, parts.X, coef, N)

    def noise_covariance(self, theta: Tensor) -> Tensor:
        """The dropout gradient covariance ``Σ(θ) = Cov_η[∇R_S^drop(θ; η)]``, shape ``(P, D, D)``.

        Assembled blockwise from the closed form (not as ``F Fᵀ``): for neurons ``s, q``,

        ``Σ_sq = v [δ_sq Ẽ_s Ẽ_sᵀ + Ẽ_s B_qsᵀ + B_sq Ẽ_qᵀ + Σ_r B_sr B_qrᵀ]
        + v² [δ_sq Σ_{t≠s} B_st B_stᵀ + (1 − δ_sq) B_sq B_qsᵀ]``,

        with ``Ẽ_s = (1/n) Σ_i g_si (e_i + c h_si)``. Cost ``O(m³ d² + n m² d)`` per path and
        ``O(D²)`` memory; prefer :meth:`noise_factor` or :meth:`sample_noise` for large ``D``.
        """
        self._check_theta(theta)
        parts = self.terms(theta)
        B = self._B(parts)
        Et = self._e_tilde(parts)
        v, m = self.v, self.width
        eye = torch.eye(m, dtype=theta.dtype, device=theta.device)
        blk = v * (
            torch.einsum("psk,pqsl->pskql", Et, B)
            + torch.einsum("psqk,pql->pskql", B, Et)
            + torch.einsum("psrk,pqrl->pskql", B, B)
        )
        off_diag = (1.0 - eye)[None, :, None, :, None]
        blk = blk + v * v * off_diag * torch.einsum("psqk,pqsl->pskql", B, B)
        Bd = torch.diagonal(B, dim1=1, dim2=2).transpose(1, 2)  # (P, m, k): B_ss
        diag = v * torch.einsum("psk,psl->pskl", Et, Et) + v * v * (
            torch.einsum("pstk,pstl->pskl", B, B) - torch.einsum("psk,psl->pskl", Bd, Bd)
        )
        blk = blk + diag[:, :, :, None, :] * eye[None, :, None, :, None]
        cols = self._to_theta(blk)  # (P, s, k, D)
        sigma = self._to_theta(cols.permute(0, 3, 1, 2)).transpose(1, 2)
        return 0.5 * (sigma + sigma.transpose(1, 2))

    def sample_gaussian_noise(self, theta: Tensor, generator: torch.Generator) -> Tensor:
        """Gaussian draws ``ζ = F(θ) z``, ``z ~ N(0, I_M)``: mean 0, covariance exactly ``Σ(θ)``.

        One ``torch.randn(P, M)`` draw, multiplied by the factor matrix-free
        (:meth:`noise_factor_matvec`); cost ``O(n m² + n m d)`` per path.

        Parameters
        ----------
        theta : Tensor, (P, D)
        generator : torch.Generator
            On the device of ``theta``.

        Returns
        -------
        Tensor, (P, D)
        """
        self._check_theta(theta)
        z = torch.randn(theta.shape[0], self.noise_dim, generator=generator, dtype=theta.dtype,
                        device=theta.device)
        return self._factor_matvec(self.terms(theta), z)

    def sample_mask_noise(self, theta: Tensor, generator: torch.Generator, n_pairs: int = 1) -> Tensor:
        """Mask-pair draws ``ζ = (2k)^{-1/2} Σ_{j≤k} (G(η_j) − G(η'_j))`` with independent masks.

        Symmetric with mean 0 and covariance exactly ``Σ(θ)``, but not Gaussian; cost ``2k``
        dropout gradients per path.

        Parameters
        ----------
        theta : Tensor, (P, D)
        generator : torch.Generator
        n_pairs : int
            ``k``, the number of mask pairs.

        Returns
        -------
        Tensor, (P, D)

        Raises
        ------
        ValueError
            A non-positive ``n_pairs``.
        """
        n_pairs = check_positive_int(n_pairs, "n_pairs")
        self._check_theta(theta)
        parts = self.terms(theta)
        P, m = theta.shape[0], self.width
        h, e = parts.terms.h, parts.e
        scale = self.sample_scale(2 * n_pairs * P, generator, dtype=theta.dtype,
                                  device=theta.device)
        scale = scale.reshape(2 * n_pairs, P, m)
        e_drop = e + torch.einsum("jpr,prn->jpn", scale - 1.0, h)  # residuals under each mask
        t = parts.terms
        grads = blocks(t.s, t.ds, t.a, parts.X, scale.unsqueeze(-1) * e_drop.unsqueeze(2))
        return (grads[0::2] - grads[1::2]).sum(dim=0) / math.sqrt(2 * n_pairs)

    def grad_second_moment(self, theta: Tensor) -> GradSecondMoment:
        """``E_η ‖∇R_S^drop‖² = ‖∇L_S‖² + tr Σ``, both parts in closed form, ``O(n m² d)`` per path.

        ``tr Σ = v Σ_r ‖Ã_r‖² + v² Σ_{r≠q} ‖B_rq‖²`` with
        ``‖Ã_r‖² = ‖Ẽ_r + B_rr‖² + Σ_{s≠r} ‖B_sr‖²``.

        Returns
        -------
        GradSecondMoment
        """
        self._check_theta(theta)
        parts = self.terms(theta)
        v = self.v
        grad = self._contract(parts, parts.e.unsqueeze(1) + v * parts.terms.h)
        B = self._B(parts)
        Et = self._e_tilde(parts)
        Bn = (B * B).sum(dim=-1)  # (P, m, m)
        off = Bn.sum(dim=(1, 2)) - torch.diagonal(Bn, dim1=1, dim2=2).sum(dim=-1)
        Bd = torch.diagonal(B, dim1=1, dim2=2).transpose(1, 2)
        own = ((Et + Bd) ** 2).sum(dim=(1, 2))
        return GradSecondMoment(
            grad_norm_sq=(grad * grad).sum(dim=(1, 2)),
            trace_sigma=v * (own + off) + v * v * off,
        )


def default_problem(
    dtype: torch.dtype = torch.float64,
    *,
    n_points: int = 16,
    width: int = 16,
    keep_prob: float = 0.9,
    a_std: float = 0.2,
    w_std: float = 1.0,
    target_scale: float = 1.0,
    seed: int = 0,
    activation: str | Activation = "tanh",
    device: torch.device | str | None = None,
) -> tuple[DropoutProblem, Tensor]:
    """The embedded 1-D dropout task of smetool's verification runs.

    Target ``target_scale · (½ ReLU(−x − ⅓) + ½ ReLU(x − ⅓))`` on ``n_points`` evenly spaced points in
    ``[−1, 1]``, input ``(x, 1)``, ``width`` neurons, ``a ~ N(0, a_std²)``, ``W ~ N(0, w_std²)``
    drawn from ``torch.Generator().manual_seed(seed)`` on the CPU in float64 and then rounded to
    ``dtype`` (so ``θ0`` does not depend on the device, and float32 starts from float64's ``θ0``
    rounded).

    Parameters
    ----------
    dtype : torch.dtype
        Default ``float64``.
    n_points, width, keep_prob, a_std, w_std, target_scale, seed, activation
        See above; defaults 16, 16, 0.9, 0.2, 1.0, 1.0, 0, ``"tanh"``.
    device : optional
        Where the data and ``θ0`` live.

    Returns
    -------
    problem : DropoutProblem
    theta0 : Tensor, (D,)

    References
    ----------
    Z. Zhang, Y. Li, T. Luo, Z.-Q. J. Xu, "Stochastic modified equations and dynamics of dropout
    algorithm", ICLR 2024 (the same kind of 1-D task).
    """
    n_points = check_positive_int(n_points, "n_points")
    for name, val in (("a_std", a_std), ("w_std", w_std), ("target_scale", target_scale)):
        check_nonnegative(val, name)
    # The data and θ0 are made in float64 and rounded to `dtype`, so that every precision verifies
    # the same problem (a float32 generator draws other numbers than a float64 one).
    x = torch.linspace(-1.0, 1.0, n_points, dtype=torch.float64)
    y = target_scale * (0.5 * torch.relu(-x - 1.0 / 3.0) + 0.5 * torch.relu(x - 1.0 / 3.0))
    problem = DropoutProblem(
        x.unsqueeze(1).to(dtype=dtype, device=device), y.to(dtype=dtype, device=device),
        width=width, keep_prob=keep_prob, activation=activation, bias=True,
    )
    gen = torch.Generator().manual_seed(int(seed))
    theta0 = problem.net.init_params(a_std=a_std, w_std=w_std, generator=gen, dtype=dtype)
    return problem, theta0.to(device)
