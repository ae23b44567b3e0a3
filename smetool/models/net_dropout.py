"""Dropout on any PyTorch network: a functional, path-batched wrapper of an ``nn.Module``.

The user's module is copied and every dropout layer in it (``nn.Dropout``, ``nn.Dropout1d/2d/3d``)
is replaced by an explicit mask slot: a buffer multiplied into the layer's input. Parameters are
flattened to one vector per path, ``θ (P, D)``, and every batched quantity is one
:func:`torch.func.functional_call` under :func:`torch.func.vmap` over paths, with gradients by
:func:`torch.func.grad`, per-sample Jacobians by :func:`torch.func.jacrev` and Hessian–vector
products by :func:`torch.func.jvp` of the gradient: no Python loop over paths. Masks are drawn from
the caller's :class:`torch.Generator`, never from torch's global random state, so a run is
reproducible and can be split into chunks of paths.

Keep-probability convention (Zhang, Li, Luo & Xu, ICLR 2024): ``p`` is the probability of
**keeping** a unit, and a kept unit is multiplied by ``1/p``. ``torch.nn.Dropout(q)`` drops with
probability ``q``, so **its keep probability is p = 1 − q**: ``nn.Dropout(0.1)`` is ``p = 0.9``.
Each layer keeps its own ``q``.

Masks are those of *full-batch* dropout gradient descent as in the papers: one mask per step and
path, shared by every data point (``nn.Dropout`` draws elementwise over the layer's feature shape,
``nn.Dropout1d/2d/3d`` one value per channel). ``torch.nn.Dropout`` in training mode draws a new
mask for every example of a batch instead; that is a different algorithm (the same expected loss,
a different noise covariance) and is not what this wrapper simulates.

References
----------
Z. Zhang, Y. Li, T. Luo, Z.-Q. J. Xu, "Stochastic modified equations and dynamics of dropout
algorithm", ICLR 2024. N. Srivastava et al., "Dropout: a simple way to prevent neural networks from
overfitting", JMLR 15 (2014).
"""

from __future__ import annotations

import copy
import itertools
import math
from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.func import functional_call, grad, jacrev, jvp, vmap

from ..checks import check_batch_size, check_positive_int
from ..device import functorch_exclusive
from .landscape import FiniteSum, Units
from .net_audit import check_channel_layout, describe_modules, refuse_unmodelled
from .net_parts import (
    CHANNEL_DROPOUTS,
    LOSSES,
    DropoutLayer,
    MaskSlot,
    cross_entropy_loss,
    dropout_layers,
    mse_loss,
    set_submodule,
)
from .net_units import FirstLayer, lecun_init, odd_activations
from .spectral import dense_hessian

__all__ = ["NetDropoutModel", "MaskSlot", "DropoutLayer", "LOSSES", "mse_loss", "cross_entropy_loss"]

class NetDropoutModel(FiniteSum):
    """Full-batch dropout training of a user's ``nn.Module`` on fixed data, batched over paths.

    Parameters
    ----------
    module : torch.nn.Module
        The network, with one or more ``nn.Dropout`` (or ``Dropout1d/2d/3d``) layers anywhere.
        It is deep-copied (the caller's module is not changed) and cast to the dtype and device
        of ``X``; its current parameters (all of them, in ``named_parameters()`` order) are
        :attr:`theta0`. The dropout layers are replaced by mask slots; everything else must
        behave the same in training and evaluation mode and be deterministic (checked; see
        Raises). **Keep probability p = 1 − q** for ``nn.Dropout(q)``.
    X : Tensor, (n, …)
        Inputs, in the layout the module expects; floating point.
    y : Tensor
        Targets: ``(n, C)`` or ``(n,)`` (one output) for ``"mse"``, integer labels ``(n,)`` for
        ``"cross_entropy"``.
    loss : {"mse", "cross_entropy"}
        ``"mse"`` is ``1/(2n) Σ_i ‖f(x_i) − y_i‖²``; ``"cross_entropy"`` the mean over the data.
    batch_size : int, optional
        ``B`` of the landscape's minibatch gradients (SGD, SAM, SignSGD on this network); ``None``
        (default): none, full-batch dropout needs no minibatch.
    label : str, optional
        A short name for reports (default: the module's class name).

    Attributes
    ----------
    layers : tuple of DropoutLayer
    module_report : tuple of str
        Lines naming the dropout layers modelled and the modules run unchanged.
    theta0 : Tensor, (D,)
    n_params : int
        ``D``.

    Raises
    ------
    TypeError
        ``module`` is not an ``nn.Module``; ``X`` not floating point.
    ValueError
        No dropout layer, a dropout layer with ``q = 1`` (nothing kept), non-finite data, ``y`` of
        the wrong length or ``loss`` unknown; and, naming the module, anything the dropout SME
        cannot model (:mod:`smetool.models.net_audit`): alpha dropout, batch normalisation,
        channel dropout on another layout than torch's, functional dropout or other random calls
        in ``forward``, any output that differs between ``train()`` and ``eval()``.

    Notes
    -----
    Memory grows linearly in paths: a dropout gradient holds ``P × (activations of n points)``
    plus ``P × D`` parameters; per-sample gradients are ``P × n × D``. Chunk paths (the Monte-Carlo
    engine does) to bound it.

    References
    ----------
    Z. Zhang, Y. Li, T. Luo, Z.-Q. J. Xu, "Stochastic modified equations and dynamics of dropout
    algorithm", ICLR 2024.
    """

    def __init__(self, module: nn.Module, X: Tensor, y: Tensor, *, loss: str = "mse",
                 batch_size: int | None = None, label: str | None = None):
        if not isinstance(module, nn.Module):
            raise TypeError(f"`module` must be a torch.nn.Module; got {type(module).__name__}.")
        X, y = torch.as_tensor(X), torch.as_tensor(y)
        if not X.is_floating_point():
            raise TypeError(f"`X` must be a floating-point tensor; got {X.dtype}.")
        if X.ndim < 2 or X.shape[0] == 0:
            raise ValueError(f"`X` must have shape (n, ...) with n ≥ 1; got {tuple(X.shape)}.")
        if y.shape[:1] != X.shape[:1]:
            raise ValueError(f"`y` must have len(y) == len(X) = {X.shape[0]}; got shape "
                             f"{tuple(y.shape)}.")
        if loss not in LOSSES:
            raise ValueError(f"`loss` must be one of {', '.join(LOSSES)}; got {loss!r}.")
        if not bool(torch.isfinite(X).all()):
            raise ValueError("`X` must be finite; got NaN or inf entries.")
        if loss == "cross_entropy":
            if y.ndim != 1 or y.is_floating_point():
                raise ValueError(f"`y` must hold integer class labels (n,) for loss='cross_entropy'; "
                                 f"got {y.dtype} of shape {tuple(y.shape)}.")
            y = y.to(device=X.device, dtype=torch.long)
        else:
            y = y.to(dtype=X.dtype, device=X.device)
            if not bool(torch.isfinite(y).all()):
                raise ValueError("`y` must be finite; got NaN or inf entries.")
        net = copy.deepcopy(module).to(dtype=X.dtype, device=X.device)
        net.eval()
        with torch.no_grad():
            out_shape = tuple(net(X[:8]).shape[1:])
        if loss == "mse" and tuple(y.shape[1:]) != out_shape:
            if y[:1].numel() != math.prod(out_shape):
                raise ValueError(f"`y` must have the module's output shape per example, {out_shape}, "
                                 f"for loss='mse'; got {tuple(y.shape[1:])}.")
            y = y.reshape(y.shape[0], *out_shape)
        found = dropout_layers(net)
        if not found:
            raise ValueError("`module` must contain an nn.Dropout layer (or Dropout1d/2d/3d); got "
                             f"none in {type(module).__name__}.")
        shapes = self._layer_inputs(net, [name for name, _ in found], X[:8])
        layers, described = [], []
        for name, layer in found:
            q = float(layer.p)
            if q >= 1.0:
                raise ValueError(f"dropout layer {name!r} has p = {q:g} (drops everything); torch's "
                                 "p is the drop probability, smetool's keep probability is 1 − p.")
            shape = shapes[name]
            if isinstance(layer, CHANNEL_DROPOUTS):
                check_channel_layout(name, layer, shape)
                shape = (shape[0],) + (1,) * (len(shape) - 1)
            layers.append(DropoutLayer(name, 1.0 - q, tuple(shape)))
            described.append((name, f"{type(layer).__name__}(p={q:g}): keep probability "
                                    f"{1.0 - q:g}, masks of shape {tuple(shape)}"))
            set_submodule(net, name, MaskSlot(tuple(shape)).to(dtype=X.dtype, device=X.device))
        # What else could make the output random, or differ from training, is refused here.
        refuse_unmodelled(net, X[:8], MaskSlot)
        self.module_report = tuple(describe_modules(net, MaskSlot, described))
        self.module = net
        self.X, self.y, self.loss_name = X, y, loss
        self.loss_fn = LOSSES[loss]
        self.layers = tuple(layers)
        self._names = [n for n, p in net.named_parameters()]
        self._shapes = [p.shape for _, p in net.named_parameters()]
        self._sizes = [p.numel() for _, p in net.named_parameters()]
        self.theta0 = torch.cat([p.detach().reshape(-1) for _, p in net.named_parameters()])
        self._mask_keys = [f"{layer.name}.mask" for layer in self.layers]
        self.batch_size = None if batch_size is None else check_batch_size(
            batch_size, self.n_points, "NetDropoutModel")
        self.label = label or type(module).__name__
        self._units: FirstLayer | None = None

    @staticmethod
    def _layer_inputs(net: nn.Module, names: list[str], x: Tensor) -> dict[str, tuple[int, ...]]:
        """The per-example input shape of each dropout layer, from one forward pass on ``x``."""
        shapes: dict[str, tuple[int, ...]] = {}
        hooks = [net.get_submodule(n).register_forward_pre_hook(
            lambda mod, args, n=n: shapes.__setitem__(n, tuple(args[0].shape[1:]))) for n in names]
        try:
            with torch.no_grad():
                net(x)
        finally:
            for h in hooks:
                h.remove()
        return shapes

    # ----------------------------------------------------------------------------- layout
    @property
    def n_params(self) -> int:
        """``D``, the number of parameters."""
        return int(self.theta0.numel())

    @property
    def n_points(self) -> int:
        """``n``, the number of data points."""
        return int(self.X.shape[0])

    @property
    def parameter_names(self) -> tuple[str, ...]:
        """The module's parameter names in the order of ``θ``."""
        return tuple(self._names)

    def parameter_slices(self) -> dict[str, slice]:
        """Where each named parameter sits in ``θ``."""
        starts = itertools.accumulate([0] + self._sizes)
        return {n: slice(a, a + s) for n, a, s in zip(self._names, starts, self._sizes)}

    def unflatten(self, theta: Tensor) -> dict[str, Tensor]:
        """One path's ``θ (D,)`` as the module's named parameters (views)."""
        return {n: t.view(s) for n, t, s in zip(self._names, theta.split(self._sizes), self._shapes)}

    def check_theta(self, theta: Tensor) -> None:
        """Raise unless ``theta`` is a floating ``(P, D)`` tensor."""
        if not isinstance(theta, Tensor) or not theta.is_floating_point():
            raise TypeError(f"`theta` must be a floating-point Tensor; got {type(theta).__name__}.")
        if theta.ndim != 2 or theta.shape[1] != self.n_params:
            raise ValueError(f"`theta` must have shape (paths, {self.n_params}); got "
                             f"{tuple(theta.shape)}.")

    def data(self, like: Tensor) -> tuple[Tensor, Tensor]:
        """The data on the device (and, for ``X``, the dtype) of ``like``."""
        X = self.X.to(dtype=like.dtype, device=like.device)
        y = self.y.to(device=like.device)
        return X, (y if self.loss_name == "cross_entropy" else y.to(like.dtype))

    # ----------------------------------------------------------------------------- masks
    def sample_masks(self, n_paths: int, generator: torch.Generator, *, dtype: torch.dtype,
                     device: torch.device | str) -> tuple[Tensor, ...]:
        """Dropout multipliers ``b/p`` of every layer, one fresh mask per path.

        Layer by layer, ``torch.rand(P, *mask_shape, generator=generator) < p`` divided by ``p``.

        Returns
        -------
        tuple of Tensor
            One ``(P, *mask_shape)`` tensor per layer, entries ``1/p`` (kept) or ``0``.
        """
        n_paths = check_positive_int(n_paths, "n_paths")
        out = []
        for layer in self.layers:
            u = torch.rand((n_paths, *layer.mask_shape), generator=generator, dtype=dtype,
                           device=device)
            out.append((u < layer.keep_prob).to(dtype) / layer.keep_prob)
        return tuple(out)

    def ones_masks(self, n_paths: int, like: Tensor) -> tuple[Tensor, ...]:
        """Masks of ones (no dropout), ``(P, *mask_shape)`` per layer."""
        return tuple(like.new_ones((n_paths, *layer.mask_shape)) for layer in self.layers)

    # ----------------------------------------------------------------------------- one path
    def forward_one(self, theta: Tensor, masks: tuple[Tensor, ...], X: Tensor) -> Tensor:
        """Outputs of one path, ``θ (D,)`` with ``masks`` (one per layer) on inputs ``X``."""
        buffers = dict(zip(self._mask_keys, masks))
        return functional_call(self.module, (self.unflatten(theta), buffers), (X,))

    def loss_one(self, theta: Tensor, masks: tuple[Tensor, ...], X: Tensor, y: Tensor) -> Tensor:
        """``R_S^drop(θ; η)`` of one path (``R_S`` with masks of ones)."""
        return self.loss_fn(self.forward_one(theta, masks, X), y)

    @functorch_exclusive
    def _sample_losses_one(self, theta: Tensor, masks: tuple[Tensor, ...], X: Tensor,
                           y: Tensor) -> Tensor:
        # ℓ_i with R = (1/n) Σ_i ℓ_i: per-example losses of one path, (n,).
        out = self.forward_one(theta, masks, X)
        return vmap(lambda o, t: self.loss_fn(o.unsqueeze(0), t.unsqueeze(0)))(out, y)

    # ----------------------------------------------------------------------------- batched
    @functorch_exclusive
    def loss(self, theta: Tensor) -> Tensor:
        """``R_S(θ)``, the training loss without dropout, ``(P,)``; differentiable by autograd."""
        self.check_theta(theta)
        X, y = self.data(theta)
        ones = tuple(t[0] for t in self.ones_masks(1, theta))
        return vmap(lambda th: self.loss_one(th, ones, X, y))(theta)

    @functorch_exclusive
    def loss_grad(self, theta: Tensor) -> Tensor:
        """``∇R_S(θ)``, ``(P, D)``."""
        self.check_theta(theta)
        X, y = self.data(theta)
        ones = tuple(t[0] for t in self.ones_masks(1, theta))
        return vmap(grad(lambda th: self.loss_one(th, ones, X, y)))(theta)

    @functorch_exclusive
    def dropout_loss_grad(self, theta: Tensor, masks: tuple[Tensor, ...]) -> tuple[Tensor, Tensor]:
        """``R_S^drop(θ; η)`` and its gradient for given masks (one row per path).

        Parameters
        ----------
        theta : Tensor, (P, D)
        masks : tuple of Tensor
            ``(P, *mask_shape)`` per layer (e.g. from :meth:`sample_masks`).

        Returns
        -------
        loss : Tensor, (P,)
        grad : Tensor, (P, D)
        """
        self.check_theta(theta)
        self._check_masks(masks, theta.shape[0])
        X, y = self.data(theta)
        g, value = vmap(torch.func.grad_and_value(lambda th, m: self.loss_one(th, m, X, y)))(
            theta, masks)
        return value, g

    @functorch_exclusive
    def batch_dropout_loss_grad(self, theta: Tensor, masks: tuple[Tensor, ...],
                                index: Tensor) -> Tensor:
        """The gradient of the dropout loss on each path's own mini-batch, ``(P, D)``.

        Parameters
        ----------
        theta : Tensor, (P, D)
        masks : tuple of Tensor
            ``(P, *mask_shape)`` per layer, one mask per path shared by its batch.
        index : Tensor, (P, B)
            The examples of each path's batch.
        """
        self.check_theta(theta)
        self._check_masks(masks, theta.shape[0])
        if index.ndim != 2 or index.shape[0] != theta.shape[0] or index.is_floating_point():
            raise ValueError(f"`index` must be integer indices of shape ({theta.shape[0]}, B); got "
                             f"{index.dtype} {tuple(index.shape)}.")
        X, y = self.data(theta)

        def one(th: Tensor, m: tuple[Tensor, ...], idx: Tensor) -> Tensor:
            return self.loss_one(th, m, X[idx], y[idx])

        return vmap(grad(one))(theta, masks, index.to(theta.device))

    def _check_masks(self, masks: tuple[Tensor, ...], P: int) -> None:
        want = [(P, *layer.mask_shape) for layer in self.layers]
        got = [tuple(m.shape) for m in masks] if isinstance(masks, (tuple, list)) else masks
        if got != want:
            raise ValueError(f"`masks` must be a tuple of tensors of shapes {want}; got {got}.")

    def stochastic_gradient(self, theta: Tensor, generator: torch.Generator) -> Tensor:
        """``∇R_S^drop(θ; η)`` with a fresh mask per path, ``(P, D)``."""
        masks = self.sample_masks(theta.shape[0], generator, dtype=theta.dtype, device=theta.device)
        return self.dropout_loss_grad(theta, masks)[1]

    def mask_gradient_samples(self, theta: Tensor, n_masks: int,
                              generator: torch.Generator) -> Tensor:
        """``K`` dropout gradients per path with independent masks, ``(K, P, D)``.

        The paths are repeated ``K`` times and treated as one batch (memory ``K×``).
        """
        n_masks = check_positive_int(n_masks, "n_masks")
        self.check_theta(theta)
        P = theta.shape[0]
        rep = theta.repeat(n_masks, 1)
        masks = self.sample_masks(n_masks * P, generator, dtype=theta.dtype, device=theta.device)
        return self.dropout_loss_grad(rep, masks)[1].reshape(n_masks, P, -1)

    @functorch_exclusive
    def per_sample_gradients(self, theta: Tensor, masks: tuple[Tensor, ...] | None = None) -> Tensor:
        """Gradients of the per-example losses ``ℓ_i`` (``R = (1/n) Σ_i ℓ_i``), ``(P, n, D)``.

        Without ``masks``, of the training loss (no dropout); with them, of the dropout loss.
        Memory ``P n D``: chunk the paths for large networks.
        """
        self.check_theta(theta)
        X, y = self.data(theta)
        if masks is None:
            masks = self.ones_masks(theta.shape[0], theta)
        self._check_masks(masks, theta.shape[0])
        return vmap(jacrev(lambda th, m: self._sample_losses_one(th, m, X, y)))(theta, masks)

    def loss_hvp(self, theta: Tensor, vec: Tensor) -> Tensor:
        """``∇²R_S(θ) u`` by forward-over-reverse differentiation, ``(P, D)``."""
        self.check_theta(theta)
        X, y = self.data(theta)
        ones = tuple(t[0] for t in self.ones_masks(1, theta))
        return hvp(lambda th: self.loss_one(th, ones, X, y), theta, vec)


    # ----------------------------------------------------------------------------- landscape
    def gradient(self, theta: Tensor) -> Tensor:
        """``∇R_S(θ)``, ``(P, D)`` (the :class:`~smetool.models.landscape.Landscape` contract)."""
        return self.loss_grad(theta)

    def _loss_fn(self, like: Tensor) -> Callable[[Tensor], Tensor]:
        X, y = self.data(like)
        ones = tuple(t[0] for t in self.ones_masks(1, like))
        return lambda th: self.loss_one(th, ones, X, y)

    def hessian_matrix(self, theta: Tensor) -> Tensor:
        """``∇²R_S(θ)`` by forward-over-reverse differentiation, ``(P, D, D)``."""
        self.check_theta(theta)
        return dense_hessian(self._loss_fn(theta), theta)

    def hvp(self, theta: Tensor, V: Tensor) -> Tensor:
        """``∇²R_S(θ_p) v`` for blocks ``V (P, s, D)``, :attr:`hessian_chunk` rows per call."""
        P, s, D = V.shape
        rows, flat = theta.repeat_interleave(s, dim=0), V.reshape(P * s, D)
        c = self.hessian_chunk
        out = [self.loss_hvp(t, v) for t, v in zip(rows.split(c), flat.split(c))]
        return torch.cat(out).reshape(P, s, D)

    @functorch_exclusive
    def weighted_gradient(self, theta: Tensor, weights: Tensor) -> Tensor:
        """``∇ Σ_i w_pi ℓ_i(θ_p)`` (no dropout), ``(P, D)``: one backward pass per path."""
        self.check_theta(theta)
        X, y = self.data(theta)
        ones = tuple(t[0] for t in self.ones_masks(1, theta))
        fn = lambda th, w: (w * self._sample_losses_one(th, ones, X, y)).sum()  # noqa: E731
        return vmap(grad(fn))(theta, weights)

    def random_init(self, generator: torch.Generator) -> Tensor:
        """Every weighted layer ``N(0, 1/fan_in)``, biases 0, other parameters as in
        :attr:`theta0`, drawn layer by layer in module order (the built-in networks'
        initialisation); ``(D,)`` float64."""
        net = lecun_init(copy.deepcopy(self.module), generator)
        return torch.cat([p.detach().reshape(-1) for _, p in net.named_parameters()]).double()

    def units(self, theta: Tensor) -> Units:
        """The first ``nn.Linear``/``nn.Conv`` layer's units (:class:`~.net_units.FirstLayer`)."""
        if self._units is None:
            self._units = FirstLayer(self.module, self.parameter_slices(),
                                     odd_activations(self.module, (MaskSlot,)))
        return self._units(theta)

    @functorch_exclusive
    def accuracy(self, theta: Tensor) -> Tensor | None:
        """The share of data points whose largest output is the target class, ``(P,)``; ``None``
        for a network with one output."""
        self.check_theta(theta)
        X, y = self.data(theta)
        ones = tuple(t[0] for t in self.ones_masks(1, theta))
        out = vmap(lambda th: self.forward_one(th, ones, X))(theta)
        if out.ndim != 3 or out.shape[2] < 2:
            return None
        labels = y if self.loss_name == "cross_entropy" else y.argmax(dim=-1)
        return (out.argmax(dim=-1) == labels).to(theta.dtype).mean(dim=1)

@functorch_exclusive
def hvp(fn: Callable[[Tensor], Tensor], theta: Tensor, vec: Tensor) -> Tensor:
    """``∇²fn(θ) u`` per path for a scalar function of one path's ``θ (D,)``: the derivative of
    ``∇fn`` along ``u`` (:func:`torch.func.jvp` of :func:`torch.func.grad`), ``(P, D)``."""
    if vec.shape != theta.shape:
        raise ValueError(f"`vec` must have the shape of `theta`, {tuple(theta.shape)}; got "
                         f"{tuple(vec.shape)}.")
    return vmap(lambda th, u: jvp(grad(fn), (th,), (u,))[1])(theta, vec)
