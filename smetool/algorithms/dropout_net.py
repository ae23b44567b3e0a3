"""Full-batch dropout gradient descent on any ``nn.Module``, paired with its SME.

:func:`dropout_net` takes a user's network with ``nn.Dropout`` layers, data and a loss, and returns
a plug-in that :func:`smetool.verify`, the solvers and the analyses accept:

* **exact** (:class:`ExactNetDropout`) when the only dropout is on the input of the final linear
  layer and the loss is the squared loss: ``L_S = R_S + R_1`` and ``Σ = F Fᵀ`` in closed form
  (:class:`~smetool.models.LastLayerDropout`); SMEs of orders 1 and 2 with Brownian (GENERAL)
  noise, any solver, and the control-variate contract (:class:`SeparableStochasticGradient`);
* **sampled** (:class:`NetDropout`) otherwise (deeper placements, several layers,
  cross-entropy): ``∇L_S = E_η ∇R_S^drop`` and ``Σ`` have no closed form. The order-1 SME is
  integrated with unbiased estimators whose per-step moments are exact: the drift is the mean of
  ``K`` dropout gradients (covariance ``Σ/K``) and the noise ``ζ`` comes from mask pairs
  (covariance ``lr Σ``), combined by Euler–Maruyama as ``x + h b̂ + √(h − h²/(lr K)) ζ``, so every
  step has mean ``−h ∇L_S`` and covariance exactly ``lr h Σ`` (needs ``h ≤ lr K``). Weak order 1
  in ``h``; no control variates (the mean is not exact).

Keep probability: ``nn.Dropout(q)`` keeps a unit with probability **p = 1 − q**.

References
----------
Z. Zhang, Y. Li, T. Luo, Z.-Q. J. Xu, "Stochastic modified equations and dynamics of dropout
algorithm", ICLR 2024. Q. Li, C. Tai, W. E, "Stochastic modified equations and dynamics of
stochastic gradient algorithms I", JMLR 20 (2019).
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from torch import Tensor, nn

from ..bibliography import LI_TAI_E_2019, ZHANG_2024_DROPOUT, ZHANG_XU_2024_IMPLICIT
from ..checks import check_keep_prob, check_nonnegative_int, check_positive_int, check_seed
from ..models.builtin_nets import PLACEMENTS, cnn, mlp
from ..models.data import digits_data, toy_data
from ..models.net_dropout import NetDropoutModel
from ..models.net_dropout_exact import LastLayerDropout, last_layer_reason
from ..sde import SDE
from .base import (
    NegativeControl,
    SeparableStochasticGradient,
    StochasticGradientAlgorithm,
    TestFunction,
    start_on_every_path,
)
from .capabilities import HasLandscape, Regularizer, closed_form
from .dropout_net_minibatch import ExactNetDropoutMiniBatch, NetDropoutMiniBatch
from .dropout_net_sme import NetDropoutSME, SampledNetDropoutSME, check_order
from .spec import AnalysisSpec, Option, PluginSpec, positive_int_option
from .user_network import is_user_spec, parse_data, parse_model, user_module_and_data

__all__ = ["dropout_net", "net_dropout", "builtin_problem", "NetDropout", "ExactNetDropout",
           "NetDropoutSME", "SampledNetDropoutSME", "NetDropoutMiniBatch", "PLUGINS",
           "REGULARIZER_MASKS"]

REGULARIZER_MASKS = 64
"""Dropout masks per point of the Monte-Carlo value of ``R_1`` (the sampled case)."""


class NetDropout(StochasticGradientAlgorithm, HasLandscape):
    """Full-batch dropout GD on a network (any dropout placement, any loss), with its order-1 SME
    integrated by unbiased estimators (:class:`SampledNetDropoutSME`, Euler–Maruyama only).

    Build it with :func:`dropout_net`, which returns :class:`ExactNetDropout` where the closed
    forms apply.

    Parameters
    ----------
    model : NetDropoutModel
    theta0 : Tensor, (D,), optional
        Default: the module's parameters.
    drift_masks, noise_pairs : int
        ``K`` and ``k`` of :class:`SampledNetDropoutSME`.

    References
    ----------
    Zhang, Li, Luo & Xu (ICLR 2024); Li, Tai & E (JMLR 2019).
    """

    name = "dropout-net"
    references = (ZHANG_2024_DROPOUT, LI_TAI_E_2019)
    sme_orders: ClassVar[tuple[int, ...]] = (1,)

    def __init__(self, model: NetDropoutModel, theta0: Tensor | None = None, *,
                 drift_masks: int = 1, noise_pairs: int = 1):
        if not isinstance(model, NetDropoutModel):
            raise TypeError(f"`model` must be a NetDropoutModel; got {type(model).__name__}.")
        theta0 = model.theta0 if theta0 is None else torch.as_tensor(theta0)
        if theta0.shape != (model.n_params,) or not theta0.is_floating_point() \
                or not bool(torch.isfinite(theta0).all()):
            raise ValueError(f"`theta0` must be a finite floating-point tensor of shape "
                             f"({model.n_params},); got {tuple(theta0.shape)}.")
        self.model = model
        self.theta0 = theta0
        self.drift_masks = check_positive_int(drift_masks, "drift_masks")
        self.noise_pairs = check_positive_int(noise_pairs, "noise_pairs")
        self._probe: int | None = None

    @property
    def exact(self) -> bool:
        """Whether ``L_S`` and ``Σ`` are in closed form."""
        return False

    def initial_state(self, n_paths: int, *, dtype: torch.dtype | None = None,
                      device: torch.device | str | None = None) -> Tensor:
        """``θ0`` on every path, ``(P, D)``."""
        return start_on_every_path(self.theta0, n_paths, dtype=dtype, device=device)

    def stochastic_gradient(self, x: Tensor, generator: torch.Generator) -> Tensor:
        """``∇R_S^drop(θ; η)`` with a fresh mask per path (masks from ``generator``), ``(P, D)``."""
        return self.model.stochastic_gradient(x, generator)

    def sme(self, lr: float, order: int = 1) -> SDE:
        """The order-1 SME with sampled drift and mask-pair noise (:class:`SampledNetDropoutSME`)."""
        check_order(order, self.sme_orders)
        return SampledNetDropoutSME(self.model, lr, drift_masks=self.drift_masks,
                                    noise_pairs=self.noise_pairs)

    def negative_controls(self, lr: float, order: int) -> tuple[NegativeControl, ...]:
        """The SME without dropout's implicit regularizer (drift ``−∇R_S``): an ``O(1)`` error
        (slope 0) that any verification must reject."""
        wrong = SampledNetDropoutSME(self.model, lr, noise_pairs=self.noise_pairs, regularized=False)
        return (NegativeControl("no R_1", wrong, 0.0,
                                "the drift −∇R_S misses dropout's implicit regularizer: O(1) error"),)

    def _probe_rate(self, theta: Tensor) -> Tensor:
        g = self.model.loss_grad(theta)
        return self.model.loss_hvp(theta, g)

    def probe_coordinate(self) -> int:
        """The coordinate with the largest ``|(∇²f ∇f)_j|`` at ``θ0`` (``f = L_S`` in the exact
        case, ``R_S`` otherwise): where the order-1 SME's error grows fastest."""
        if self._probe is None:
            self._probe = int(self._probe_rate(self.theta0.unsqueeze(0))[0].abs().argmax())
        return self._probe

    def paths_needed(self, lr: float, horizon: float, steps_per_lr: int, *, z: float = 5.0,
                     n_masks: int = 64, seed: int = 0) -> int:
        """A rough estimate of the paths per side that resolve the weak error of the sampled
        order-1 SME on ``theta[j]`` (:meth:`probe_coordinate`) by ``z`` standard errors
        (the verdict's ``min_snr`` is 5), without control variates.

        To leading order in ``T`` at ``θ0``, dropout GD is the Euler scheme of the flow at step
        ``lr`` and the SME's Euler–Maruyama run the same at ``h = lr/steps_per_lr``, so their
        means differ by ``e ≈ ((lr − h)/2) T |(∇²f ∇f)_j|`` (the drift correction
        ``−(lr/2)∇²f∇f`` of Li, Tai & E 2019, less the solver's own share). Each side's ``θ_j``
        has variance ``≈ lr T Σ_jj``, so two independent sides of ``N`` paths differ with
        standard error ``√(2 lr T Σ_jj / N)`` and ``N ≈ 2 z² lr T Σ_jj / e²``. ``Σ_jj`` is the
        variance of ``n_masks`` dropout gradients at ``θ0`` (a fixed ``seed``). On the
        two-hidden-layer digits problem (``--placement every --depth 2``) it gave 2,100 paths at
        ``lr = 0.005`` where the measured error and standard error ask for about 4,500: a
        guide for planning within a factor of a few, not a guarantee.

        Returns
        -------
        int
            Paths per side (at least 1).
        """
        j = self.probe_coordinate()
        theta = self.theta0.unsqueeze(0)
        rate = abs(float(self._probe_rate(theta)[0, j]))
        generator = torch.Generator(device=theta.device).manual_seed(seed)
        spread = float(self.model.mask_gradient_samples(theta, n_masks, generator)[:, 0, j].var())
        error = 0.5 * lr * (1.0 - 1.0 / steps_per_lr) * horizon * rate
        if error == 0.0:
            return 1 << 62  # the leading error vanishes at θ0: nothing to resolve it by
        return max(1, math.ceil(2.0 * z * z * lr * horizon * spread / (error * error)))

    def plan_notes(self, lrs: list[float], horizon: float, n_paths: int, order: int,
                   steps_per_lr: int) -> list[str]:
        """The modules modelled and run unchanged; for the sampled SME, the path budget
        (:meth:`paths_needed` at the smallest learning rate, where it is largest)."""
        notes = list(self.model.module_report)
        if not self.exact and order == 1:
            lr = min(lrs)
            need = self.paths_needed(lr, horizon, steps_per_lr)
            if need >= 1 << 62:
                notes.append("path budget (sampled SME): no estimate, the leading error "
                             "vanishes at θ0.")
                return notes
            verdict = ("probably enough" if n_paths >= need else
                       "too few: expect an inconclusive verdict; pass --paths")
            notes.append(
                f"path budget (sampled SME, no control variates): resolving the error on "
                f"theta[{self.probe_coordinate()}] by 5 standard errors at lr={lr:g} needs ≈ "
                f"{need:,} paths per side (a rough estimate at θ0, leading order in T); this run "
                f"has {n_paths:,}: {verdict}.")
        return notes

    def test_functions(self) -> dict[str, TestFunction]:
        """``"R_S"``, ``"theta_norm_sq"`` and ``"theta[j]"`` (:meth:`probe_coordinate`)."""
        j = self.probe_coordinate()
        return {"R_S": self.model.loss, "theta_norm_sq": lambda x: (x * x).sum(dim=1),
                f"theta[{j}]": lambda x: x[:, j]}

    def landscape(self) -> NetDropoutModel:
        """The training loss ``R_S`` of the network (the model)."""
        return self.model

    def implicit_regularizer(self, lr: float) -> Regularizer:
        """``R_1 = E_η R_S^drop − R_S``, by :data:`REGULARIZER_MASKS` masks per point (exact in
        :class:`ExactNetDropout`): the SME's drift is ``−∇(R_S + R_1)``."""
        def value(theta: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
            P, n = theta.shape[0], REGULARIZER_MASKS
            rows = theta.repeat_interleave(n, dim=0)
            masks = self.model.sample_masks(P * n, generator, dtype=theta.dtype,
                                            device=theta.device)
            drop = self.model.dropout_loss_grad(rows, masks)[0].reshape(P, n)
            return drop.mean(dim=1) - self.model.loss(theta), drop.std(dim=1) / n**0.5

        return Regularizer("R_1", "dropout's explicit regularizer E R_S^drop - R_S", value,
                           (ZHANG_XU_2024_IMPLICIT,))

    def __repr__(self) -> str:
        layers = ", ".join(f"{la.name}: p={la.keep_prob:g} {la.mask_shape}" for la in self.model.layers)
        return (f"{type(self).__name__}(D={self.model.n_params}, n={self.model.n_points}, "
                f"loss={self.model.loss_name!r}, dropout=[{layers}])")


class ExactNetDropout(SeparableStochasticGradient, NetDropout):
    """Dropout GD on a network whose only dropout is on the input of its final linear layer, with
    the squared loss: exact ``L_S``, ``Σ`` and SMEs of orders 1 and 2 (:class:`NetDropoutSME`),
    and the control-variate contract (exact mean gradient ``∇L_S`` and covariance ``Σ``).

    Parameters as :class:`NetDropout`.

    References
    ----------
    Z. Zhang, Y. Li, T. Luo, Z.-Q. J. Xu, "Stochastic modified equations and dynamics of dropout
    algorithm", ICLR 2024. Q. Li, C. Tai, W. E, "Stochastic modified equations and dynamics of
    stochastic gradient algorithms I", JMLR 20 (2019).
    """

    name = "dropout-net"
    references = (ZHANG_2024_DROPOUT, LI_TAI_E_2019)
    sme_orders = (1, 2)

    def __init__(self, model: NetDropoutModel, theta0: Tensor | None = None, **kwargs):
        NetDropout.__init__(self, model, theta0, **kwargs)
        self.closed_form = LastLayerDropout(model)

    @property
    def exact(self) -> bool:
        return True

    def draw_gradient_noise(self, n_paths: int, generator: torch.Generator, *,
                            dtype: torch.dtype, device: torch.device) -> tuple[Tensor, ...]:
        """The dropout multipliers of one step, ``(P, m)`` (independent of ``θ``)."""
        return self.model.sample_masks(n_paths, generator, dtype=dtype, device=device)

    def gradient_with(self, x: Tensor, noise: tuple[Tensor, ...]) -> Tensor:
        """``∇R_S^drop(θ; η)`` for the given masks, ``(P, D)``."""
        return self.model.dropout_loss_grad(x, noise)[1]

    def mean_gradient(self, x: Tensor) -> Tensor:
        """``∇L_S``, exactly, ``(P, D)``."""
        return self.closed_form.expected_loss_grad(x)

    def gradient_covariance(self, x: Tensor) -> Tensor:
        """``Σ = F Fᵀ``, exactly, ``(P, D, D)``."""
        return self.closed_form.noise_covariance(x)

    def stochastic_gradient(self, x: Tensor, generator: torch.Generator) -> Tensor:
        return SeparableStochasticGradient.stochastic_gradient(self, x, generator)

    def step(self, x: Tensor, lr: float, generator: torch.Generator) -> Tensor:
        return x - lr * self.stochastic_gradient(x, generator)

    def sme(self, lr: float, order: int = 1) -> SDE:
        """The exact SME of order 1 or 2 (:class:`NetDropoutSME`)."""
        return NetDropoutSME(self.closed_form, lr, check_order(order, self.sme_orders))

    def negative_controls(self, lr: float, order: int) -> tuple[NegativeControl, ...]:
        """Without ``R_1`` (slope 0), plus for order 2 the order-1 SME and the noise-free flow."""
        wrong = NetDropoutSME(self.closed_form, lr, order, regularized=False)
        own = (NegativeControl("no R_1", wrong, 0.0,
                               "the drift misses dropout's implicit regularizer R_1: O(1) error"),)
        return own + StochasticGradientAlgorithm.negative_controls(self, lr, order)

    def _probe_rate(self, theta: Tensor) -> Tensor:
        g = self.closed_form.expected_loss_grad(theta)
        return self.closed_form.expected_loss_hvp(theta, g)

    def implicit_regularizer(self, lr: float) -> Regularizer:
        """``R_1 = L_S − R_S``, exact (:class:`~smetool.models.LastLayerDropout`)."""
        return Regularizer("R_1", "dropout's explicit regularizer E R_S^drop - R_S",
                           closed_form(self.closed_form.implicit_regularizer),
                           (ZHANG_XU_2024_IMPLICIT,))

    def test_functions(self) -> dict[str, TestFunction]:
        """``"R_S"``, ``"L_S"``, ``"theta_norm_sq"`` and ``"theta[j]"``."""
        tests = NetDropout.test_functions(self)
        return {"R_S": tests.pop("R_S"), "L_S": self.closed_form.expected_loss, **tests}


def dropout_net(module: nn.Module, X: Tensor, y: Tensor, *, loss: str = "mse",
                theta0: Tensor | None = None, drift_masks: int = 1, noise_pairs: int = 1,
                exact: bool | None = None) -> NetDropout:
    """The dropout plug-in of a user's network: full-batch dropout GD and its SME.

    Parameters
    ----------
    module : torch.nn.Module
        With one or more dropout layers. **Keep probability p = 1 − q for ``nn.Dropout(q)``**;
        masks are drawn by smetool (one per step and path, shared by the data, as in full-batch
        dropout GD), not by torch's global random state.
    X, y : Tensor
        The full training batch (see :class:`~smetool.models.NetDropoutModel`).
    loss : {"mse", "cross_entropy"}
    theta0 : Tensor, (D,), optional
        Default: the module's parameters, in ``module.named_parameters()`` order.
    drift_masks, noise_pairs : int
        For the sampled SME: ``K`` dropout gradients per drift estimate (the SME step must be
        ``h ≤ lr K``) and ``k`` mask pairs per noise draw.
    exact : bool, optional
        ``None`` (default): exact where the closed forms apply; ``True``: require them (raise
        otherwise); ``False``: use the sampled SME even where they apply (e.g. to test it).

    Returns
    -------
    NetDropout
        :class:`ExactNetDropout` in the exact case.

    Raises
    ------
    ValueError
        ``exact=True`` where the closed forms do not apply (the message says why), and the errors
        of :class:`~smetool.models.NetDropoutModel`.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Linear(3, 8, dtype=torch.float64), nn.Tanh(), nn.Dropout(0.1),
    ...                     nn.Linear(8, 1, dtype=torch.float64))
    >>> X, y = torch.randn(20, 3, dtype=torch.float64), torch.randn(20, dtype=torch.float64)
    >>> algo = dropout_net(net, X, y)
    >>> algo.exact, algo.sme_orders
    (True, (1, 2))
    """
    return net_dropout(NetDropoutModel(module, X, y, loss=loss), theta0, drift_masks=drift_masks,
                       noise_pairs=noise_pairs, exact=exact)


def net_dropout(model: NetDropoutModel, theta0: Tensor | None = None, *, drift_masks: int = 1,
                noise_pairs: int = 1, exact: bool | None = None) -> NetDropout:
    """:func:`dropout_net` of a built :class:`~smetool.models.NetDropoutModel` (same keywords):
    :class:`ExactNetDropout` where the closed forms apply, :class:`NetDropout` otherwise."""
    reason = last_layer_reason(model)
    if exact and reason is not None:
        raise ValueError(f"`exact=True` but the closed forms do not apply: {reason}.")
    cls = ExactNetDropout if (reason is None and exact is not False) else NetDropout
    return cls(model, theta0, drift_masks=drift_masks, noise_pairs=noise_pairs)


def builtin_problem(*, model: str = "mlp", data: str = "digits", keep_prob: float = 0.9,
                    width: int = 8, loss: str = "mse", placement: str = "last", depth: int = 1,
                    n_samples: int = 32, out_scale: float = 0.1, init_seed: int = 0,
                    drift_masks: int = 1, batch_size: int = 0, dtype: torch.dtype = torch.float64,
                    device: torch.device | str | None = None
                    ) -> NetDropout | NetDropoutMiniBatch | ExactNetDropoutMiniBatch:
    """The problems of ``smetool verify dropout-net``: a small MLP or CNN on the first
    ``n_samples`` digits (scikit-learn's bundled ``load_digits``) or on the embedded 1-D task.

    Parameters
    ----------
    model : {"mlp", "cnn"}
        :func:`~smetool.models.builtin_nets.mlp` (``depth`` tanh layers of ``width`` units) or
        :func:`~smetool.models.builtin_nets.cnn` (``width`` channels; digits only).
    data : {"digits", "toy"}
    keep_prob : float
        ``p`` (the layers are ``nn.Dropout(1 − p)``).
    loss : {"mse", "cross_entropy"}
        One-hot targets for ``"mse"`` on digits; ``"cross_entropy"`` needs digits.
    placement : {"last", "every"}
        ``"last"`` with ``"mse"`` is the exact case.
    out_scale : float
        Multiplies the output layer's initial weights (small: a strong drift, small noise).
    init_seed : int
        Seed of the initial weights.
    drift_masks : int
        ``K`` of the sampled SME.
    batch_size : int
        ``0`` (default): full-batch dropout GD. ``B ≥ 1``: dropout SGD on mini-batches of ``B``
        examples (drawn with replacement, one mask per batch): exact SMEs of orders 1 and 2 for
        last-layer dropout with ``"mse"`` (:class:`ExactNetDropoutMiniBatch`), else the derived,
        sampled order-1 SME (:class:`NetDropoutMiniBatch`; verify it with ``method="euler"``).
    dtype, device
        Of the data and ``θ0``.

    Raises
    ------
    ValueError
        An unknown name, or a combination that does not exist (a CNN or cross-entropy on the
        1-D task).
    ImportError
        ``data="digits"`` without scikit-learn.
    """
    if model not in ("mlp", "cnn"):
        raise ValueError(f"`model` must be 'mlp' or 'cnn'; got {model!r}.")
    if data not in ("digits", "toy"):
        raise ValueError(f"`data` must be 'digits' or 'toy'; got {data!r}.")
    if data == "toy" and (model == "cnn" or loss == "cross_entropy"):
        raise ValueError(f"`data`='toy' is a 1-D regression task: it takes model='mlp' and "
                         f"loss='mse'; got model={model!r}, loss={loss!r}.")
    if data == "toy":
        ds = toy_data(dtype=torch.float64)
    else:
        ds = digits_data(n_samples, image=model == "cnn", one_hot=loss == "mse", dtype=torch.float64)
    if model == "mlp":
        net = mlp(ds.X.shape[1], width, ds.n_classes, keep_prob=keep_prob, depth=depth,
                  placement=placement, out_bias=data != "toy", out_scale=out_scale, seed=init_seed)
    else:
        net = cnn(width, ds.n_classes, keep_prob=keep_prob, placement=placement,
                  out_scale=out_scale, seed=init_seed)
    algo = dropout_net(net.to(dtype=dtype, device=device), ds.X.to(dtype=dtype, device=device),
                       ds.y.to(device=device), loss=loss, drift_masks=drift_masks)
    algo.model.label = f"{model} ({ds.name})"
    return with_batches(algo, batch_size, drift_masks)


def with_batches(algo: NetDropout, batch_size: int, drift_masks: int = 1
                 ) -> NetDropout | NetDropoutMiniBatch | ExactNetDropoutMiniBatch:
    """``algo`` itself for ``batch_size = 0``, else dropout SGD on mini-batches of that size on
    its network and data: exact (:class:`ExactNetDropoutMiniBatch`) where the last-layer closed
    forms apply, sampled (:class:`NetDropoutMiniBatch`) otherwise."""
    if check_nonnegative_int(batch_size, "batch_size"):
        if algo.exact:
            return ExactNetDropoutMiniBatch(algo.model, algo.theta0, batch_size=batch_size)
        return NetDropoutMiniBatch(algo.model, algo.theta0, batch_size=batch_size,
                                   drift_samples=drift_masks)
    return algo


def _factory(*, dtype: torch.dtype, device, **options
             ) -> NetDropout | NetDropoutMiniBatch | ExactNetDropoutMiniBatch:
    if is_user_spec(options["model"]) or is_user_spec(options["data"]):
        defaults = {o.name: o.default for o in PLUGINS[0].options}
        module, X, y = user_module_and_data(options, defaults, dtype=dtype, device=device)
        return with_batches(dropout_net(module, X, y, loss=options["loss"],
                                        drift_masks=options["drift_masks"]),
                            options["batch_size"], options["drift_masks"])
    return builtin_problem(dtype=dtype, device=device, **options)


def _choice(name: str, choices: tuple[str, ...]):
    def parse(text: str) -> str:
        if text not in choices:
            raise ValueError(f"`{name}` must be one of {', '.join(choices)}; got {text!r}.")
        return text
    return parse


PLUGINS = (
    PluginSpec(
        name="dropout-net",
        factory=_factory,
        description="dropout GD on an nn.Module (MLP, CNN or your own) on digits, the 1-D task or "
                    "your data; exact SME for last-layer dropout with MSE, sampled otherwise",
        orders=(1, 2),
        # six rates: the errors are resolved to ~3,000 SE, where four rates over a factor of 8
        # leave no degree of freedom for the O(lr³) term the series test needs
        lrs=(0.05, 0.025, 0.02, 0.0125, 0.01, 0.00625),
        horizon=0.2,
        n_paths=200,
        steps_per_lr=2,
        # order 2: ε² errors; ‖θ‖² is the test function that needs the paths (5 SE at ε = 0.02)
        order_defaults={2: {"lrs": (0.05, 0.04, 0.025, 0.02), "n_paths": 600,
                            "steps_per_lr": 4}},
        options=(
            Option("model", parse_model, "mlp",
                   "network: mlp, cnn, or your own as MODULE:OBJECT (an nn.Module with dropout "
                   "layers, or a function returning one)"),
            Option("data", parse_data, "digits",
                   "digits (scikit-learn's bundled load_digits), toy (the embedded 1-D task), a "
                   "FILE.npz with arrays X and y, or MODULE:OBJECT (a loader returning (X, y))"),
            Option("keep_prob", lambda t: check_keep_prob(float(t)), 0.9,
                   "keep probability p in (0, 1] (the layers are nn.Dropout(1 - p))"),
            Option("width", positive_int_option("width"), 8, "hidden units (mlp) or channels (cnn)"),
            Option("loss", _choice("loss", ("mse", "cross_entropy")), "mse",
                   "mse (one-hot targets) or cross_entropy (sampled SME)"),
            Option("placement", _choice("placement", PLACEMENTS), "last",
                   "dropout before the last layer only (exact with mse) or after every hidden layer"),
            Option("depth", positive_int_option("depth"), 1, "hidden layers of the mlp"),
            Option("n_samples", positive_int_option("n_samples"), 32, "digits used (the first n)"),
            Option("out_scale", float, 0.1, "scale of the output layer's initial weights"),
            Option("init_seed", lambda t: check_seed(int(t)), 0, "seed of the initial weights"),
            Option("drift_masks", positive_int_option("drift_masks"), 1,
                   "dropout gradients per drift estimate of the sampled SME (h <= lr K)"),
            Option("batch_size", lambda t: check_nonnegative_int(int(t), "batch_size"), 0,
                   "mini-batch size B (with replacement; one mask per batch): exact SME for "
                   "last-layer dropout with mse, else sampled (--method euler); 0 = full batch"),
        ),
        algorithm=NetDropout,
        describe=lambda alg: {"problem": repr(alg), "exact": alg.exact},
        analysis=AnalysisSpec(lr=0.1, steps=8_000),
    ),
)
"""The ``dropout-net`` plug-in of the command line."""
