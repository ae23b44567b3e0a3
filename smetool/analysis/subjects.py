"""What the network analyses need of a trained model, for any ``nn.Module`` and for the two-layer
closed forms: one interface, :class:`Subject`.

* :class:`NetSubject` wraps :class:`~smetool.models.NetDropoutModel` (the ``dropout-net``
  plug-in's model of a user's network): dropout steps with masks from the caller's generator,
  ``R_S``, Hessian–vector products and dense Hessians by :mod:`torch.func`, mask-gradient samples
  (random gradient data), and the first parametrized layer's units for condensation.
* :class:`ProblemSubject` wraps :class:`~smetool.models.DropoutProblem` (the embedded 1-D
  two-layer problem of ``smetool analyze dropout``), whose losses, gradients and Hessians are in
  closed form and several times faster; it is the same network as ``mlp`` on ``toy`` data.

Every method is batched over paths ``θ (P, D)``; large batches of parameter vectors (the interval
flatness evaluates thousands) are cut into chunks of ``chunk`` rows to bound memory.

References
----------
Z. Zhang, Y. Li, T. Luo, Z.-Q. J. Xu, "Stochastic modified equations and dynamics of dropout
algorithm", ICLR 2024.
"""

from __future__ import annotations

import abc

import torch
from torch import Tensor, nn

from ..checks import check_positive_int
from ..models.builtin_nets import cnn, mlp
from ..models.data import digits_data, toy_data
from ..models.dropout_problem import DropoutProblem, default_problem
from ..models.net_dropout import MaskSlot, NetDropoutModel
from ..models.spectral import dense_hessian
from .condensation import is_odd_activation
from .hessian import loss_hessian
from .variance import sample_dropout_gradients

__all__ = ["Subject", "NetSubject", "ProblemSubject", "builtin_subject", "ARCHITECTURES",
           "BUILTIN_SETTINGS"]

ARCHITECTURES = ("two-layer", "mlp", "cnn")
"""The networks of :func:`builtin_subject`."""

BUILTIN_SETTINGS = {
    "two-layer": {"lr": 0.2, "steps": 20_000, "n_seeds": 8, "width": 16, "n_samples": 16},
    "mlp": {"lr": 0.1, "steps": 8_000, "n_seeds": 6, "width": 16, "n_samples": 64},
    "cnn": {"lr": 0.2, "steps": 8_000, "n_seeds": 6, "width": 4, "n_samples": 64},
}
"""Defaults of ``smetool analyze dropout --model NAME`` and ``scripts/findings_beyond.py``.

The two-layer settings are those of ``smetool analyze dropout``. On the first 64 digits (squared
loss on one-hot targets, keep probability 0.9), learning rate 0.2 diverged for some MLP seeds
(the top Hessian eigenvalue of R_S sits near 2/lr, the edge of stability) and 0.1 did not; the
CNN (4 channels) trains stably at 0.2. 8,000 steps keep the three architectures within the
20-minute budget of the full regeneration on 2 CPU cores; the losses are still slowly decreasing
there, which the trajectory diagnostics report (a drift, growth exponent near 2)."""


def _rows(fn, X: Tensor, chunk: int) -> Tensor:
    return torch.cat([fn(x) for x in X.split(chunk)]) if X.shape[0] else fn(X)


class Subject(abc.ABC):
    """The interface of the network analyses (see the module docstring).

    Attributes
    ----------
    label : str
    n_params : int
        ``D``.
    antipodal : bool
        Whether a unit and its negation are the same feature (odd activation), for condensation.
    """

    label: str = ""
    n_params: int = 0
    antipodal: bool = True

    @abc.abstractmethod
    def dropout_step(self, theta: Tensor, lr: float, generator: torch.Generator) -> Tensor:
        """One full-batch dropout step per path (fresh masks from ``generator``), ``(P, D)``."""

    @abc.abstractmethod
    def gd_step(self, theta: Tensor, lr: float) -> Tensor:
        """One gradient-descent step on ``R_S`` per path, ``(P, D)``."""

    @abc.abstractmethod
    def loss(self, theta: Tensor) -> Tensor:
        """``R_S`` (no dropout) of parameter vectors ``(N, D) -> (N,)``."""

    @abc.abstractmethod
    def hvp(self, theta: Tensor, V: Tensor) -> Tensor:
        """``∇²R_S(θ_p) v`` for blocks ``V (P, s, D)``, ``(P, s, D)``."""

    @abc.abstractmethod
    def hessian(self, theta: Tensor) -> Tensor:
        """``∇²R_S(θ)``, ``(P, D, D)``."""

    @abc.abstractmethod
    def gradient_samples(self, theta: Tensor, n: int, generator: torch.Generator) -> Tensor:
        """Random gradient data: ``n`` dropout gradients per path at fixed ``θ``, ``(P, n, D)``."""

    @abc.abstractmethod
    def units(self, theta: Tensor) -> tuple[Tensor, Tensor]:
        """The first layer's units: weight vectors (bias appended) ``(P, m, d)`` and amplitudes
        ``(P, m)`` (input-weight norm times outgoing-weight norm)."""


class ProblemSubject(Subject):
    """The two-layer dropout problem, all in closed form (:class:`~smetool.models.DropoutProblem`).

    Parameters
    ----------
    problem : DropoutProblem
    label : str
    """

    def __init__(self, problem: DropoutProblem, label: str = "two-layer"):
        if not isinstance(problem, DropoutProblem):
            raise TypeError(f"`problem` must be a DropoutProblem; got {type(problem).__name__}.")
        self.problem, self.label = problem, label
        self.n_params = problem.n_params
        self.antipodal = is_odd_activation(problem.net)

    def dropout_step(self, theta, lr, generator):
        return self.problem.step(theta, lr, generator)

    def gd_step(self, theta, lr):
        X, y = self.problem.X.to(theta), self.problem.y.to(theta)
        return theta - lr * self.problem.net.loss_grad(theta, X, y)[1]

    def loss(self, theta):
        return self.problem.loss(theta)

    def hessian(self, theta):
        return loss_hessian(self.problem.net, theta, self.problem.X.to(theta),
                            self.problem.y.to(theta))

    def hvp(self, theta, V):
        return torch.einsum("pde,pse->psd", self.hessian(theta), V)

    def gradient_samples(self, theta, n, generator):
        return sample_dropout_gradients(self.problem, theta, n, generator)

    def units(self, theta):
        a, W = self.problem.net.split(theta)
        return W, a.abs() * W.norm(dim=-1)


class NetSubject(Subject):
    """A user's network with dropout layers (:class:`~smetool.models.NetDropoutModel`).

    Parameters
    ----------
    model : NetDropoutModel
    label : str
    chunk : int
        Rows per batched call (parameter vectors, masks or tangent vectors at once).
    """

    def __init__(self, model: NetDropoutModel, label: str = "network", *, chunk: int = 256):
        if not isinstance(model, NetDropoutModel):
            raise TypeError(f"`model` must be a NetDropoutModel; got {type(model).__name__}.")
        self.model, self.label = model, label
        self.n_params = model.n_params
        self.chunk = check_positive_int(chunk, "chunk")
        self.antipodal = _odd_only(model.module)
        self._first, self._next = _first_layers(model)

    def dropout_step(self, theta, lr, generator):
        return theta - lr * self.model.stochastic_gradient(theta, generator)

    def gd_step(self, theta, lr):
        return theta - lr * self.model.loss_grad(theta)

    def loss(self, theta):
        return _rows(self.model.loss, theta, self.chunk)

    def _loss_one(self, theta: Tensor):
        X, y = self.model.data(theta)
        ones = tuple(t[0] for t in self.model.ones_masks(1, theta))
        return lambda th: self.model.loss_one(th, ones, X, y)

    def hessian(self, theta):
        return dense_hessian(self._loss_one(theta), theta)

    def hvp(self, theta, V):
        P, s, D = V.shape
        rep = theta.repeat_interleave(s, dim=0)
        flat = V.reshape(P * s, D)
        out = [self.model.loss_hvp(t, v) for t, v in zip(rep.split(self.chunk),
                                                          flat.split(self.chunk))]
        return torch.cat(out).reshape(P, s, D)

    def gradient_samples(self, theta, n, generator):
        n = check_positive_int(n, "n")
        per = max(1, self.chunk // theta.shape[0])
        parts = [self.model.mask_gradient_samples(theta, min(per, n - i), generator)
                 for i in range(0, n, per)]
        return torch.cat(parts).transpose(0, 1)

    def units(self, theta):
        slices = self.model.parameter_slices()
        (w_name, b_name, m), nxt = self._first, self._next
        P = theta.shape[0]
        W = theta[:, slices[w_name]].reshape(P, m, -1)
        if b_name is not None:
            W = torch.cat([W, theta[:, slices[b_name]].unsqueeze(-1)], dim=-1)
        amp = W.norm(dim=-1)
        if nxt is not None:
            n_name, rows = nxt
            out = theta[:, slices[n_name]].reshape(P, rows, -1)
            if out.shape[2] % m == 0:  # a linear map of the units' (flattened) outputs
                amp = amp * out.reshape(P, rows, m, -1).norm(dim=(1, 3))
        return W, amp


def _odd_only(module: nn.Module) -> bool:
    """Whether every activation of ``module`` is odd (tanh), so ``w`` and ``−w`` are one feature."""
    acts = [m for m in module.modules() if not list(m.children())
            and not isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Flatten,
                                   nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d, nn.Identity))
            and not isinstance(m, MaskSlot)]
    return bool(acts) and all(isinstance(m, nn.Tanh) for m in acts)


def _first_layers(model: NetDropoutModel):
    """The first layer with a weight: (weight name, bias name, units); the next such layer:
    (weight name, output rows) or ``None``."""
    layers = [(name, m) for name, m in model.module.named_modules()
              if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d))]
    if not layers:
        raise ValueError("the network has no nn.Linear or nn.Conv layer to count orientations of.")
    name, first = layers[0]
    prefix = f"{name}." if name else ""
    bias = f"{prefix}bias" if first.bias is not None else None
    nxt = (f"{layers[1][0]}.weight", layers[1][1].weight.shape[0]) if len(layers) > 1 else None
    return (f"{prefix}weight", bias, first.weight.shape[0]), nxt


def builtin_subject(model: str = "mlp", data: str = "digits", *, n_seeds: int = 6, seed: int = 0,
                    width: int = 16, depth: int = 1, keep_prob: float = 0.9, n_samples: int = 64,
                    placement: str = "last", out_scale: float = 1.0,
                    dtype: torch.dtype = torch.float64) -> tuple[Subject, Tensor]:
    """A built-in network and ``n_seeds`` initializations ``(P, D)`` (seed ``seed + s``).

    Parameters
    ----------
    model : {"two-layer", "mlp", "cnn"}
        ``"two-layer"``: the embedded 1-D problem of ``smetool analyze dropout`` in closed form
        (16 tanh neurons with a bias input, no output bias; ``a ~ N(0, 0.2²)``, ``W ~ N(0, 1)``);
        ``"mlp"``/``"cnn"``: :func:`~smetool.models.builtin_nets.mlp` (``depth`` tanh layers of
        ``width`` units) or :func:`~smetool.models.builtin_nets.cnn` (``width`` channels), weights
        ``N(0, 1/fan_in)``, wrapped by :class:`NetSubject`.
    data : {"digits", "toy"}
        The first ``n_samples`` digits (8×8 images for the CNN, one-hot targets, squared loss) or
        the embedded 1-D task (``"two-layer"`` always uses it).
    keep_prob : float
        ``p``; the layers are ``nn.Dropout(1 − p)``.
    placement, out_scale
        As :func:`~smetool.algorithms.dropout_net.builtin_problem`.

    Raises
    ------
    ValueError
        An unknown name or a combination that does not exist (a CNN on the 1-D task).
    ImportError
        ``data="digits"`` without scikit-learn.
    """
    if model not in ARCHITECTURES:
        raise ValueError(f"`model` must be one of {', '.join(ARCHITECTURES)}; got {model!r}.")
    if data not in ("digits", "toy"):
        raise ValueError(f"`data` must be 'digits' or 'toy'; got {data!r}.")
    n_seeds = check_positive_int(n_seeds, "n_seeds")
    if model == "two-layer":
        problem, _ = default_problem(dtype, keep_prob=keep_prob)
        inits = torch.stack([problem.net.init_params(
            a_std=0.2, w_std=1.0, generator=torch.Generator().manual_seed(seed + s), dtype=dtype)
            for s in range(n_seeds)])
        return ProblemSubject(problem, "two-layer (toy)"), inits
    if data == "toy" and model == "cnn":
        raise ValueError("`data`='toy' is a 1-D regression task: it takes model='mlp' or "
                         "'two-layer'; got model='cnn'.")
    ds = toy_data(dtype=dtype) if data == "toy" else digits_data(
        n_samples, image=model == "cnn", one_hot=True, dtype=dtype)

    def build(s: int) -> nn.Module:
        if model == "mlp":
            return mlp(ds.X.shape[1], width, ds.n_classes, keep_prob=keep_prob, depth=depth,
                       placement=placement, out_bias=data != "toy", out_scale=out_scale,
                       seed=seed + s)
        return cnn(width, ds.n_classes, keep_prob=keep_prob, placement=placement,
                   out_scale=out_scale, seed=seed + s)

    net = NetDropoutModel(build(0).to(dtype), ds.X, ds.y, loss="mse")
    inits = torch.stack([torch.cat([p.detach().reshape(-1) for p in build(s).parameters()])
                         for s in range(n_seeds)]).to(dtype)
    return NetSubject(net, f"{model} ({ds.name})"), inits
