"""The SGD plug-ins: mini-batch SGD on a finite sum and its SMEs (orders 1 and 2).

For ``f(x) = (1/n) Σ_i f_i(x)`` one step draws ``B`` indices uniformly **with replacement** and
moves ``x ← x − lr (1/B) Σ_{j ≤ B} ∇f_{i_j}(x)``. Its SMEs (Li, Tai & E), in time ``t = k · lr``:

* order 1: ``dX = −∇f(X) dt + √lr Σ(X)^{1/2} dW``;
* order 2: ``dX = −∇(f + (lr/4) ‖∇f‖²)(X) dt + √lr Σ(X)^{1/2} dW``, drift
  ``−∇f − (lr/2) ∇²f ∇f`` (a Hessian–vector product);

with the mini-batch gradient covariance ``Σ(x) = (1/B) (1/n) Σ_i (∇f_i − ∇f)(∇f_i − ∇f)ᵀ``. The
diffusion is written **factored** from the per-sample gradients: ``Σ = F Fᵀ`` with
``F = (Bn)^{-1/2} [∇f_1 − ∇f, …, ∇f_n − ∇f]`` of shape ``(D, n)``, i.e. GENERAL noise with
``M = n`` Brownian motions. No ``D × D`` matrix or square root is formed, and when ``n < D`` the
factor is the cheaper object. ``F`` is polynomial in the per-sample gradients, hence smooth, so
weak order-2 solvers (:class:`~smetool.solvers.PlatenWeak2`) apply at their declared order.

Two problems: :class:`SGDLeastSquares` (``f_i = ½ (a_iᵀx − y_i)²``, whose moments are also known
exactly, :mod:`smetool.exact.sgd_moments`) and
:class:`~smetool.algorithms.sgd_two_layer.SGDTwoLayer` (a two-layer network,
``f_i = ½ (f_θ(x_i) − y_i)²``).

References
----------
Q. Li, C. Tai, W. E, "Stochastic modified equations and adaptive stochastic gradient algorithms",
ICML 2017; "Stochastic modified equations and dynamics of stochastic gradient algorithms I:
mathematical foundations", JMLR 20 (2019).
"""

from __future__ import annotations

import abc
import math
import types
from typing import Any

import torch
from torch import Tensor

from ..bibliography import LI_TAI_E_2019
from ..checks import check_batch_size, check_lr, check_positive_int
from ..exact import LeastSquaresSGDMoments
from ..models.landscape import Landscape
from ..sde import SDE, NoiseKind
from .base import HasExactMoments, SeparableStochasticGradient, TestFunction
from .capabilities import HasLandscape, Regularizer
from .gradient import MinibatchSGD, sgd_regularizer
from .spec import AnalysisSpec, Option, PluginSpec, positive_int_option

__all__ = [
    "FiniteSumSGD",
    "SGDSME",
    "SGDLeastSquares",
    "DEFAULT_LEAST_SQUARES",
    "PLUGINS",
]

DEFAULT_LEAST_SQUARES = types.MappingProxyType({
    "A": ((1.0, 0.2), (0.3, -0.8), (-0.5, 0.6), (1.2, 0.4), (0.1, 1.0), (-0.7, -0.3)),
    "y": (0.8, -0.5, 0.3, 1.1, 0.6, -0.4),
    "x0": (2.0, -2.0),
    "batch_size": 1,
})
"""The embedded default least-squares problem (``n = 6``, ``d = 2``, ``B = 1``).

Hand-picked, well conditioned (Hessian eigenvalues 0.35 and 0.58, minimiser ≈ (0.56, 0.72)),
started far from the minimiser so that the drift phase dominates over ``T = 1``. Exact SME-1
weak errors at ``T = 1`` (``lr = 2^-3 … 2^-6``): ``E x_0`` −1.03e-2 … −1.25e-3 (local slopes
1.02, 1.01, 1.01), ``E f`` −1.20e-2 … −1.63e-3 (0.93, 0.97, 0.99); the per-path standard deviation
of ``x_0`` is 0.11 … 0.04, so ~10⁵ paths resolve every error."""


def check_tensor(value: Any, name: str, ndim: int, owner: str, dtype=None) -> Tensor:
    """``value`` as a finite floating tensor of ``ndim`` dimensions (float64 for arrays)."""
    if not isinstance(value, Tensor):
        try:
            value = torch.as_tensor(value, dtype=torch.float64 if dtype is None else dtype)
        except (TypeError, ValueError, RuntimeError):
            raise TypeError(f"{owner}: `{name}` must be a real tensor; got {type(value).__name__}.") from None
    if not value.is_floating_point():
        value = value.to(torch.float64 if dtype is None else dtype)
    if value.ndim != ndim:
        raise ValueError(f"{owner}: `{name}` must be {ndim}-dimensional; got shape {tuple(value.shape)}.")
    if not bool(torch.isfinite(value).all()):
        raise ValueError(f"{owner}: `{name}` must be finite; it holds NaN or inf.")
    return value


class FiniteSumSGD(SeparableStochasticGradient, Landscape, HasLandscape):
    """Mini-batch SGD (with replacement) on ``f = (1/n) Σ_i f_i``, paired with its SMEs.

    Subclasses provide the per-sample quantities; this class supplies the step, the SMEs
    (:class:`SGDSME`), the noise factor and covariance, and the test functions. The problem is
    its own :class:`~smetool.models.landscape.Landscape` (loss, gradient, Hessian–vector products,
    minibatches of ``B`` indices), so the analyses measure it like a network.

    Attributes
    ----------
    n_points : int
        ``n``.
    batch_size : int
        ``B``.
    x0 : Tensor, (D,)
        The common initial point.
    """

    name = "sgd"
    references = (LI_TAI_E_2019,)
    sme_orders = (1, 2)
    n_points: int
    batch_size: int
    x0: Tensor

    # ---------------------------------------------------------------- per-sample (subclasses)
    @property
    def dim(self) -> int:
        """``D``, the dimension of the state."""
        return self.x0.shape[0]

    @abc.abstractmethod
    def loss(self, x: Tensor) -> Tensor:
        """``f(x)``: ``(P, D) -> (P,)``."""

    @abc.abstractmethod
    def per_sample_gradients(self, x: Tensor) -> Tensor:
        """``∇f_i(x)`` for every data point: ``(P, D) -> (P, n, D)``."""

    @abc.abstractmethod
    def batch_gradient(self, x: Tensor, index: Tensor) -> Tensor:
        """``(1/B) Σ_j ∇f_{index[:, j]}(x)`` for indices ``(P, B)``: ``(P, D)``."""

    @abc.abstractmethod
    def hessian_vector_product(self, x: Tensor, v: Tensor) -> Tensor:
        """``∇²f(x) v``: ``(P, D), (P, D) -> (P, D)``."""

    def gradient(self, x: Tensor) -> Tensor:
        """``∇f(x)``: ``(P, D) -> (P, D)``."""
        return self.per_sample_gradients(x).mean(dim=1)

    # ---------------------------------------------------------------- the landscape
    @property
    def n_params(self) -> int:
        return self.dim

    def landscape(self) -> FiniteSumSGD:
        """The problem itself."""
        return self

    def hvp(self, x: Tensor, V: Tensor) -> Tensor:
        """``∇²f(x) v`` for blocks ``V (P, s, D)``, one :meth:`hessian_vector_product` per block."""
        return torch.stack([self.hessian_vector_product(x, V[:, k]) for k in range(V.shape[1])],
                           dim=1)

    def draw_minibatch(self, n_paths: int, generator: torch.Generator, *, dtype: torch.dtype,
                       device: torch.device | str) -> Tensor:
        """``B`` indices per path (:meth:`sample_indices`)."""
        return self.sample_indices(n_paths, generator, device)

    def minibatch_gradient(self, x: Tensor, batch: Tensor) -> Tensor:
        """:meth:`batch_gradient` of the indices ``batch``."""
        return self.batch_gradient(x, batch)

    def random_init(self, generator: torch.Generator) -> Tensor:
        """``x0 + N(0, I)``, ``(D,)``."""
        return self.x0.double().cpu() + torch.randn(self.dim, generator=generator,
                                                    dtype=torch.float64)

    def implicit_regularizer(self, lr: float) -> Regularizer:
        """``(lr/4) E_γ‖∇f_γ‖²`` (:func:`~smetool.algorithms.gradient.sgd_regularizer`)."""
        return sgd_regularizer(self, lr)

    # ---------------------------------------------------------------- derived
    def noise_factor(self, x: Tensor) -> Tensor:
        """``F(x)`` with ``F Fᵀ = Σ(x)``: ``(P, D) -> (P, D, n)``, columns ``(∇f_i − ∇f)/√(Bn)``."""
        g = self.per_sample_gradients(x)
        centred = g - g.mean(dim=1, keepdim=True)
        return centred.transpose(1, 2) / math.sqrt(self.batch_size * self.n_points)

    def noise_factor_matvec(self, x: Tensor, dW: Tensor) -> Tensor:
        """``F(x) dW`` for ``dW (P, n)`` without forming ``F``: ``(P, D)``."""
        g = self.per_sample_gradients(x)
        out = torch.einsum("pnd,pn->pd", g, dW) - g.mean(dim=1) * dW.sum(dim=1, keepdim=True)
        return out / math.sqrt(self.batch_size * self.n_points)

    def noise_covariance(self, x: Tensor) -> Tensor:
        """``Σ(x) = F Fᵀ``, ``(P, D, D)`` (for tests and analysis; the SME uses the factor)."""
        F = self.noise_factor(x)
        return F @ F.transpose(1, 2)

    def sample_indices(self, n_paths: int, generator: torch.Generator, device=None) -> Tensor:
        """``B`` indices per path, uniform on ``{0, …, n−1}`` with replacement: ``(P, B)``."""
        return torch.randint(self.n_points, (n_paths, self.batch_size), generator=generator,
                             device=device)

    # ---------------------------------------------------------------- the contract
    def initial_state(self, n_paths: int, *, dtype: torch.dtype | None = None,
                      device: torch.device | str | None = None) -> Tensor:
        """``x0`` on every path, ``(P, D)`` (a fresh tensor)."""
        n_paths = check_positive_int(n_paths, "n_paths", type(self).__name__)
        x0 = self.x0.to(dtype=self.x0.dtype if dtype is None else dtype,
                        device=self.x0.device if device is None else device)
        return x0.unsqueeze(0).repeat(int(n_paths), 1)

    def draw_gradient_noise(self, n_paths: int, generator: torch.Generator, *,
                            dtype: torch.dtype, device: torch.device) -> Tensor:
        """The minibatch indices of one step, ``(P, B)``."""
        return self.sample_indices(n_paths, generator, device)

    def gradient_with(self, x: Tensor, noise: Tensor) -> Tensor:
        """The gradient of the minibatch ``noise`` (indices ``(P, B)``) per path, ``(P, D)``."""
        return self.batch_gradient(x, noise)

    def mean_gradient(self, x: Tensor) -> Tensor:
        """``∇f``, the full-batch gradient, ``(P, D)``."""
        return self.gradient(x)

    def gradient_covariance(self, x: Tensor) -> Tensor:
        """The minibatch gradient covariance ``Σ(x)``, ``(P, D, D)``."""
        return self.noise_covariance(x)

    def step(self, x: Tensor, lr: float, generator: torch.Generator) -> Tensor:
        """One SGD step on every path with an independent mini-batch per path."""
        lr = check_lr(lr, type(self).__name__)
        return x - lr * self.stochastic_gradient(x, generator)

    def sme(self, lr: float, order: int = 1) -> SGDSME:
        """The SME of ``order`` (1 or 2) for learning rate ``lr``; see :class:`SGDSME`."""
        return SGDSME(self, lr, order)

    def test_functions(self) -> dict[str, TestFunction]:
        """``"f"`` (the loss), ``"norm_sq"`` (``‖x‖²``) and ``"x[0]"``; each ``(P, D) -> (P,)``."""
        return {
            "f": self.loss,
            "norm_sq": lambda x: (x * x).sum(dim=1),
            "x[0]": lambda x: x[:, 0],
        }


class SGDSME(SDE):
    """The SME of mini-batch SGD with learning rate ``lr``, in time ``t = k · lr``.

    * order 1: drift ``−∇f``; order 2: drift ``−∇f − (lr/2) ∇²f ∇f``
      (``= −∇(f + (lr/4)‖∇f‖²)``);
    * diffusion ``√lr F(x)`` (GENERAL noise, ``M = n``), ``F Fᵀ = Σ`` the mini-batch gradient
      covariance; :meth:`diffusion_product` gives ``√lr F dW`` in ``O(nD)`` without forming ``F``.

    Parameters
    ----------
    algorithm : FiniteSumSGD
    lr : float
    order : {1, 2}

    Raises
    ------
    TypeError
        If ``algorithm`` is not a :class:`FiniteSumSGD`.
    ValueError
        Bad ``lr`` or ``order``.

    References
    ----------
    Q. Li, C. Tai, W. E, "Stochastic modified equations and adaptive stochastic gradient
    algorithms", ICML 2017; JMLR 20(40), 2019 (orders 1 and 2).
    """

    noise_kind = NoiseKind.GENERAL

    def __init__(self, algorithm: FiniteSumSGD, lr: float, order: int = 1):
        if not isinstance(algorithm, FiniteSumSGD):
            raise TypeError(f"SGDSME: `algorithm` must be a FiniteSumSGD; got {type(algorithm).__name__}.")
        self.lr = check_lr(lr, "SGDSME")
        if isinstance(order, bool) or order not in (1, 2):
            raise ValueError(f"SGDSME: `order` must be 1 or 2; got {order!r}.")
        self.algorithm = algorithm
        self.order = int(order)
        self.noise_dim = algorithm.n_points

    def drift(self, t: float, x: Tensor) -> Tensor:
        grad = self.algorithm.gradient(x)
        if self.order == 1:
            return -grad
        return -grad - 0.5 * self.lr * self.algorithm.hessian_vector_product(x, grad)

    def diffusion(self, t: float, x: Tensor) -> Tensor:
        return math.sqrt(self.lr) * self.algorithm.noise_factor(x)

    def diffusion_product(self, t: float, x: Tensor, dW: Tensor) -> Tensor:
        return math.sqrt(self.lr) * self.algorithm.noise_factor_matvec(x, dW)

    def __repr__(self) -> str:
        return f"SGDSME({type(self.algorithm).__name__}, order={self.order}, lr={self.lr:g})"


class SGDLeastSquares(FiniteSumSGD, HasExactMoments):
    """Mini-batch SGD on finite-sum least squares ``f(x) = (1/n) Σ_i ½ (a_iᵀx − y_i)²``.

    ``∇f_i(x) = a_i (a_iᵀx − y_i)``, ``∇²f = AᵀA/n``. The exact moments of the iterates and of
    both SMEs are available from :meth:`exact_moments`.

    Parameters
    ----------
    A : Tensor or array-like, (n, d)
        Rows ``a_i``; dtype/device of the computation follow ``A`` (float64 for arrays).
    y : Tensor or array-like, (n,)
    x0 : Tensor or array-like, (d,)
    batch_size : int
        ``B`` in ``[1, n]``.

    Raises
    ------
    ValueError
        Wrong shapes, non-finite values, ``batch_size`` outside ``[1, n]``.

    References
    ----------
    Li, Tai & E, JMLR 20 (2019).

    Examples
    --------
    >>> algo = SGDLeastSquares.default()
    >>> x = algo.step(algo.initial_state(4), 0.1, torch.Generator().manual_seed(0))
    >>> algo.sme(0.1, order=2).diffusion(0.0, x).shape
    torch.Size([4, 2, 6])
    """

    def __init__(self, A: Any, y: Any, x0: Any, *, batch_size: int = 1):
        owner = type(self).__name__
        A = check_tensor(A, "A", 2, owner)
        y = check_tensor(y, "y", 1, owner, A.dtype).to(A.dtype)
        x0 = check_tensor(x0, "x0", 1, owner, A.dtype).to(A.dtype)
        n, d = A.shape
        if y.shape != (n,):
            raise ValueError(
                f"{owner}: `y` must have shape ({n},) to match `A` {tuple(A.shape)}"
                f"; got {tuple(y.shape)}.")
        if x0.shape != (d,):
            raise ValueError(f"{owner}: `x0` must have shape ({d},); got {tuple(x0.shape)}.")
        self.batch_size = check_batch_size(batch_size, n, owner)
        self.A, self.y, self.x0 = A, y.to(A.device), x0.to(A.device)
        self.n_points = n
        self.label = "least squares"
        self.hessian = A.T @ A / n
        self._b = A.T @ self.y / n

    @classmethod
    def default(cls, dtype: torch.dtype = torch.float64, device=None, **kwargs) -> SGDLeastSquares:
        """The plug-in on :data:`DEFAULT_LEAST_SQUARES` (keywords ``A``, ``y``, ``x0``,
        ``batch_size`` override its entries)."""
        unknown = sorted(set(kwargs) - set(DEFAULT_LEAST_SQUARES))
        if unknown:
            raise TypeError(
                f"SGDLeastSquares.default: unknown keyword {unknown[0]!r}; the keywords are "
                f"{', '.join(DEFAULT_LEAST_SQUARES)}."
            )
        spec = {**DEFAULT_LEAST_SQUARES, **kwargs}
        as_t = lambda v: torch.tensor(v, dtype=dtype, device=device)  # noqa: E731
        return cls(as_t(spec["A"]), as_t(spec["y"]), as_t(spec["x0"]), batch_size=spec["batch_size"])

    def _data(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(
                f"SGDLeastSquares: `x` must have shape (paths, {self.dim})"
                f"; got {tuple(x.shape)}.")
        return self.A.to(x), self.y.to(x)

    def loss(self, x: Tensor) -> Tensor:
        A, y = self._data(x)
        r = x @ A.T - y
        return 0.5 * (r * r).mean(dim=1)

    def gradient(self, x: Tensor) -> Tensor:
        self._data(x)
        return x @ self.hessian.to(x) - self._b.to(x)

    def per_sample_gradients(self, x: Tensor) -> Tensor:
        A, y = self._data(x)
        return (x @ A.T - y).unsqueeze(-1) * A

    def batch_gradient(self, x: Tensor, index: Tensor) -> Tensor:
        A, y = self._data(x)
        a = A[index]  # (P, B, d)
        r = torch.einsum("pbd,pd->pb", a, x) - y[index]
        return (r.unsqueeze(-1) * a).mean(dim=1)

    def hessian_vector_product(self, x: Tensor, v: Tensor) -> Tensor:
        self._data(x)
        return v @ self.hessian.to(x)

    def noise_factor_matvec(self, x: Tensor, dW: Tensor) -> Tensor:
        # Σ_i (r_i a_i − ∇f) dW_i = (r ∘ dW) A − ∇f Σ_i dW_i: O(nd), no (P, n, d) tensor.
        A, y = self._data(x)
        r = x @ A.T - y
        out = (r * dW) @ A - self.gradient(x) * dW.sum(dim=1, keepdim=True)
        return out / math.sqrt(self.batch_size * self.n_points)

    def exact_moments(self):
        """The exact-moment model of this problem
        (:class:`~smetool.exact.linear_moments.LeastSquaresSGDMoments`)."""
        return LeastSquaresSGDMoments(self.A.cpu(), self.y.cpu(), self.batch_size)

    def __repr__(self) -> str:
        n, d = self.A.shape
        return f"SGDLeastSquares(n={n}, d={d}, batch_size={self.batch_size})"


def _factory(*, dtype: torch.dtype, device: Any, batch_size: int) -> SGDLeastSquares:
    return SGDLeastSquares.default(dtype, device=device, batch_size=batch_size)


def _on_landscape(landscape: Landscape, theta0: Tensor, *, batch_size: int) -> MinibatchSGD:
    # the landscape's own minibatch law (its batch size) is SGD's noise on a network
    return MinibatchSGD(landscape, theta0)


BATCH_SIZE = Option("batch_size", positive_int_option("batch_size"), 1, "SGD minibatch size")

PLUGINS = (
    PluginSpec(
        name="sgd",
        factory=_factory,
        description="minibatch SGD on a 6-point least-squares problem (Li, Tai & E, 2017/2019)",
        orders=(1, 2),
        lrs=(2.0**-3, 2.0**-4, 2.0**-5, 2.0**-6, 2.0**-7),
        horizon=1.0,
        n_paths=2_000,
        steps_per_lr=4,
        order_defaults={2: {"lrs": (2.0**-2, 2.0**-3, 2.0**-4, 2.0**-5), "n_paths": 30_000,
                            "steps_per_lr": 8}},
        options=(BATCH_SIZE,),
        algorithm=SGDLeastSquares,
        describe=lambda alg: {"problem": repr(alg)},
        analysis=AnalysisSpec(lr=0.125, steps=400, on_landscape=_on_landscape),
    ),
)
"""The ``sgd`` plug-in of the command line."""

