"""Batched two-layer networks ``f_θ(x) = Σ_r a_r σ(w_r · x)``.

Every function here works on a *batch of parameter vectors* at once (one per sample path), so
that the discrete training algorithms and their SMEs can simulate many paths with a few batched
matrix products and no per-path autograd.

Conventions (``design.md`` §1, following Zhang, Li, Luo & Xu, ICLR 2024):

* no ``1/m`` scaling of the output;
* a bias enters as a constant input feature, ``x̄ = (x, 1)`` (see :func:`add_bias_feature`);
* the parameters of one path are flattened as ``θ = concat(a, W.flatten())`` with ``a ∈ R^m``
  and ``W ∈ R^{m×d}`` row-major, so ``D = m (d + 1)``;
* the loss is ``R_S(θ) = 1/(2n) Σ_i (f_θ(x_i) − y_i)²``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = [
    "Activation",
    "ACTIVATIONS",
    "get_activation",
    "TwoLayerNet",
    "NeuronTerms",
    "add_bias_feature",
    "is_odd",
]


@dataclass(frozen=True)
class Activation:
    """An activation function with its first two derivatives.

    Attributes
    ----------
    name : str
        Name used on the command line and in reports.
    fn, d1, d2 : callable
        ``σ``, ``σ'`` and ``σ''``, elementwise on tensors.
    smooth : bool
        Whether ``σ`` is C^∞. The SME theory (weak approximation of any order) assumes a smooth
        activation; a non-smooth one is allowed but warned about where an SME is built.
    d1_from_value : callable ``(z, σ(z)) -> σ'(z)``, optional
        A cheaper ``σ'`` when ``σ(z)`` is already known (tanh: ``1 − σ²``); the hot loop uses it.
    d2_from_value : callable ``(z, σ(z), σ'(z)) -> σ''(z)``, optional
        The same for ``σ''`` (tanh: ``−2 σ σ'``), used by the Hessian–vector products.
    """

    name: str
    fn: Callable[[Tensor], Tensor]
    d1: Callable[[Tensor], Tensor]
    d2: Callable[[Tensor], Tensor]
    smooth: bool = True
    d1_from_value: Callable[[Tensor, Tensor], Tensor] | None = None
    d2_from_value: Callable[[Tensor, Tensor, Tensor], Tensor] | None = None


def _tanh_d1(z: Tensor) -> Tensor:
    return 1.0 - torch.tanh(z) ** 2


def _tanh_d2(z: Tensor) -> Tensor:
    t = torch.tanh(z)
    return -2.0 * t * (1.0 - t * t)


def _sigmoid_d1(z: Tensor) -> Tensor:
    s = torch.sigmoid(z)
    return s * (1.0 - s)


def _sigmoid_d2(z: Tensor) -> Tensor:
    s = torch.sigmoid(z)
    return s * (1.0 - s) * (1.0 - 2.0 * s)


def _gelu(z: Tensor) -> Tensor:
    return torch.nn.functional.gelu(z)


def _gelu_d1(z: Tensor) -> Tensor:
    pdf = torch.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi)
    cdf = 0.5 * (1.0 + torch.erf(z / math.sqrt(2.0)))
    return cdf + z * pdf


def _gelu_d2(z: Tensor) -> Tensor:
    pdf = torch.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi)
    return pdf * (2.0 - z * z)


ACTIVATIONS: dict[str, Activation] = {
    "tanh": Activation("tanh", torch.tanh, _tanh_d1, _tanh_d2,
                       d1_from_value=lambda z, s: torch.addcmul(s.new_ones(()), s, s, value=-1.0),
                       d2_from_value=lambda z, s, ds: -2.0 * s * ds),
    "sigmoid": Activation("sigmoid", torch.sigmoid, _sigmoid_d1, _sigmoid_d2,
                          d1_from_value=lambda z, s: s * (1.0 - s),
                          d2_from_value=lambda z, s, ds: ds * (1.0 - 2.0 * s)),
    "softplus": Activation("softplus", torch.nn.functional.softplus, torch.sigmoid, _sigmoid_d1),
    "gelu": Activation("gelu", _gelu, _gelu_d1, _gelu_d2),
    "identity": Activation("identity", lambda z: z, torch.ones_like, torch.zeros_like),
    "relu": Activation(
        "relu",
        torch.relu,
        lambda z: (z > 0).to(z.dtype),
        torch.zeros_like,
        smooth=False,
    ),
}


def is_odd(activation: Activation) -> bool:
    """Whether ``σ(−z) = −σ(z)`` (checked on a grid in float64): then ``a σ(w·x)`` and
    ``(−a) σ(−w·x)`` are one feature, and condensation merges antipodal units."""
    z = torch.linspace(-4.0, 4.0, 33, dtype=torch.float64)
    return bool(torch.allclose(activation.fn(-z), -activation.fn(z), atol=1e-12))


def get_activation(activation: str | Activation) -> Activation:
    """Return the :class:`Activation` for a name (or pass an :class:`Activation` through).

    Raises
    ------
    ValueError
        If the name is unknown; the message lists the known names.
    """
    if isinstance(activation, Activation):
        return activation
    try:
        return ACTIVATIONS[activation]
    except KeyError:
        known = ", ".join(sorted(ACTIVATIONS))
        raise ValueError(f"`activation` must be one of {known}; got {activation!r}.") from None


def add_bias_feature(X: Tensor) -> Tensor:
    """Append the constant feature 1 to every input: ``(n, d0) -> (n, d0 + 1)``."""
    return torch.cat([X, torch.ones_like(X[:, :1])], dim=1)


@dataclass(frozen=True)
class NeuronTerms:
    """Per-neuron quantities of a batch of networks on a data set, computed once and reused.

    Shapes use ``P`` paths, ``m`` neurons, ``n`` data points.

    Attributes
    ----------
    a : Tensor, (P, m)
        Output weights.
    W : Tensor, (P, m, d)
        Input weights.
    z : Tensor, (P, m, n)
        Pre-activations ``w_r · x_i``.
    s, ds : Tensor, (P, m, n)
        ``σ(z)`` and ``σ'(z)``.
    h : Tensor, (P, m, n)
        Neuron outputs ``h_ri = a_r σ(w_r · x_i)``.
    """

    a: Tensor
    W: Tensor
    z: Tensor
    s: Tensor
    ds: Tensor
    h: Tensor


class TwoLayerNet:
    """A two-layer network of width ``m`` on inputs of dimension ``d``, batched over paths.

    Parameters
    ----------
    input_dim : int
        ``d``, the number of input features *including* the constant bias feature if one is used.
    width : int
        ``m``, the number of hidden neurons.
    activation : str or Activation
        ``"tanh"`` (default, smooth as the SME theory needs), ``"sigmoid"``, ``"softplus"``,
        ``"gelu"``, ``"identity"`` or ``"relu"``.

    Notes
    -----
    The per-neuron gradient ``g_ri = ∇_θ h_ri`` is supported on neuron ``r``'s own parameters
    ``(a_r, w_r)``: ``∂h_ri/∂a_r = σ(w_r·x_i)`` and ``∂h_ri/∂w_r = a_r σ'(w_r·x_i) x_i``. All
    gradients here are assembled from those two pieces, never from autograd.

    References
    ----------
    Z. Zhang, Y. Li, T. Luo, Z.-Q. J. Xu, "Stochastic modified equations and dynamics of dropout
    algorithm", ICLR 2024.
    """

    def __init__(self, input_dim: int, width: int, activation: str | Activation = "tanh"):
        if int(input_dim) != input_dim or input_dim < 1:
            raise ValueError(f"`input_dim` must be a positive integer; got {input_dim!r}.")
        if int(width) != width or width < 1:
            raise ValueError(f"`width` must be a positive integer; got {width!r}.")
        self.input_dim = int(input_dim)
        self.width = int(width)
        self.activation = get_activation(activation)

    @property
    def n_params(self) -> int:
        """``D = m (d + 1)``."""
        return self.width * (self.input_dim + 1)

    def __repr__(self) -> str:
        return (
            f"TwoLayerNet(input_dim={self.input_dim}, width={self.width}, "
            f"activation={self.activation.name!r})"
        )

    # ----------------------------------------------------------------------------- layout
    def split(self, theta: Tensor) -> tuple[Tensor, Tensor]:
        """``θ (P, D) -> (a (P, m), W (P, m, d))`` (views, no copy)."""
        self._check_theta(theta)
        m, d = self.width, self.input_dim
        return theta[:, :m], theta[:, m:].reshape(theta.shape[0], m, d)

    def join(self, a: Tensor, W: Tensor) -> Tensor:
        """``(a (P, m), W (P, m, d)) -> θ (P, D)``."""
        return torch.cat([a, W.reshape(W.shape[0], -1)], dim=1)

    def _check_theta(self, theta: Tensor) -> None:
        if theta.ndim != 2 or theta.shape[1] != self.n_params:
            raise ValueError(
                f"`theta` must have shape (paths, {self.n_params}) for width {self.width} and "
                f"input_dim {self.input_dim}; got {tuple(theta.shape)}."
            )

    def init_params(
        self,
        *,
        a_std: float,
        w_std: float,
        generator: torch.Generator,
        dtype: torch.dtype = torch.float64,
        device: torch.device | str | None = None,
    ) -> Tensor:
        """One parameter vector with ``a ~ N(0, a_std²)``, ``W ~ N(0, w_std²)``; shape ``(D,)``.

        Drawn in float64 whatever ``dtype`` and then rounded to it, so every precision starts from
        the same point (to its rounding): a generator gives different numbers in different dtypes.
        """
        a = torch.randn(self.width, generator=generator, dtype=torch.float64) * a_std
        W = torch.randn(self.width, self.input_dim, generator=generator, dtype=torch.float64) * w_std
        return torch.cat([a, W.flatten()]).to(dtype=dtype, device=device)

    # ----------------------------------------------------------------------------- forward
    def terms(self, theta: Tensor, X: Tensor) -> NeuronTerms:
        """Compute the :class:`NeuronTerms` of ``θ (P, D)`` on inputs ``X (n, d)``."""
        a, W = self.split(theta)
        if X.ndim != 2 or X.shape[1] != self.input_dim:
            raise ValueError(f"`X` must have shape (n, {self.input_dim}); got {tuple(X.shape)}.")
        z = torch.einsum("pmd,nd->pmn", W, X)
        act = self.activation
        s = act.fn(z)
        ds = act.d1(z) if act.d1_from_value is None else act.d1_from_value(z, s)
        return NeuronTerms(a=a, W=W, z=z, s=s, ds=ds, h=a.unsqueeze(-1) * s)

    def forward(self, theta: Tensor, X: Tensor) -> Tensor:
        """Network outputs ``f_θ(x_i)``, shape ``(P, n)``."""
        return self.terms(theta, X).h.sum(dim=1)

    def loss(self, theta: Tensor, X: Tensor, y: Tensor) -> Tensor:
        """``R_S(θ) = 1/(2n) Σ_i (f_θ(x_i) − y_i)²``, shape ``(P,)``."""
        e = self.forward(theta, X) - y
        return 0.5 * (e * e).mean(dim=1)

    def scaled_loss_grad(
        self, terms: NeuronTerms, X: Tensor, y: Tensor, scale: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """Loss and gradient with neuron ``r``'s output multiplied by ``scale[:, r]``.

        With ``scale = b/p`` (a dropout mask over the keep probability) this is the dropout loss
        ``R_S^drop(θ; η)`` with ``1 + η = scale``; with ``scale=None`` it is ``R_S``.

        Parameters
        ----------
        terms : NeuronTerms
            From :meth:`terms` on the same ``X``.
        X : Tensor, (n, d)
        y : Tensor, (n,)
        scale : Tensor, (P, m), optional

        Returns
        -------
        loss : Tensor, (P,)
        grad : Tensor, (P, D)
        """
        n = X.shape[0]
        h, s, ds, a = terms.h, terms.s, terms.ds, terms.a
        if scale is None:
            f = h.sum(dim=1)
        else:
            f = torch.einsum("pm,pmn->pn", scale, h)
        e = f - y
        loss = 0.5 * (e * e).mean(dim=1)
        grad_a = torch.einsum("pmn,pn->pm", s, e) / n
        # ∂/∂w_r = a_r Σ_i e_i σ'(z_ri) x_i / n
        grad_W = torch.einsum("pmn,nd->pmd", ds * e.unsqueeze(1), X) * (a / n).unsqueeze(-1)
        if scale is not None:
            grad_a = grad_a * scale
            grad_W = grad_W * scale.unsqueeze(-1)
        return loss, self.join(grad_a, grad_W)

    def loss_grad(self, theta: Tensor, X: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """``(R_S (P,), ∇R_S (P, D))``."""
        return self.scaled_loss_grad(self.terms(theta, X), X, y)

    def warn_if_not_smooth(self, what: str) -> None:
        """Warn that ``what`` (e.g. "the dropout SME") assumes a smooth activation."""
        if not self.activation.smooth:
            warnings.warn(
                f"{what} with the non-smooth activation {self.activation.name!r}: the weak "
                "approximation theory assumes a smooth activation; orders are not guaranteed.",
                stacklevel=3,
            )
