"""The Gaussian-dropout plug-in: full-batch GD with multiplicative Gaussian noise on the hidden
neurons of a two-layer network, and its SMEs (orders 1 and 2) with exact coefficients.

The SMEs are the general ones of :func:`~smetool.algorithms.derive.derive_sme`
(``b₀ = −∇L_S``, ``Σ = Cov``, the order-2 drift ``b₀ − (lr/2)(∇b₀) b₀``), with ``b₀`` and ``Σ`` in
closed form (:class:`~smetool.models.gaussian_dropout.GaussianDropoutProblem`: the gradient is
quadratic in the Gaussian multipliers, so only their moments up to order four enter). The
derived SME with the multipliers enumerated by Gauss–Hermite quadrature agrees with it to
round-off (``tests/test_derive_sme.py``).

References
----------
N. Srivastava, G. Hinton, A. Krizhevsky, I. Sutskever, R. Salakhutdinov, "Dropout: a simple way to
prevent neural networks from overfitting", JMLR 15 (2014), §10. Q. Li, C. Tai, W. E, JMLR 20
(2019) (the SME).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor

from ..bibliography import LI_TAI_E_2019, MILSTEIN_1986, SRIVASTAVA_2014_DROPOUT, Reference
from ..checks import check_keep_prob
from ..models.gaussian_dropout import GaussianDropoutProblem, gaussian_default_problem
from .dropout import DropoutAlgorithm
from .spec import Option, PluginSpec, positive_int_option

__all__ = ["GaussianDropout", "PLUGINS"]


class GaussianDropout(DropoutAlgorithm):
    """Full-batch Gaussian dropout GD on a two-layer network: every hidden neuron's output is
    multiplied by ``1 + η``, ``η ~ N(0, (1 − p)/p)`` drawn afresh per step and path (the variance
    of Bernoulli dropout's ``b/p``), and its SMEs of orders 1 and 2.

    The drift equals Bernoulli dropout's (the same ``L_S``); the covariance differs in its
    third- and fourth-moment terms (``E η³ = 0``, ``E η⁴ = 3v²``), so the noise factor has
    ``m(m+1)/2 + m`` columns. Every method is :class:`~smetool.algorithms.DropoutAlgorithm`'s
    on a :class:`~smetool.models.gaussian_dropout.GaussianDropoutProblem`.

    Parameters
    ----------
    problem : GaussianDropoutProblem
    theta0 : Tensor, (D,)

    References
    ----------
    N. Srivastava et al., "Dropout: a simple way to prevent neural networks from overfitting",
    JMLR 15 (2014), §10; Q. Li, C. Tai, W. E, JMLR 20 (2019).
    """

    name = "gaussian-dropout"
    references: ClassVar[tuple[Reference, ...]] = (SRIVASTAVA_2014_DROPOUT, LI_TAI_E_2019,
                                                   MILSTEIN_1986)

    def __init__(self, problem: GaussianDropoutProblem, theta0: Tensor):
        if not isinstance(problem, GaussianDropoutProblem):
            raise TypeError(f"`problem` must be a GaussianDropoutProblem; got "
                            f"{type(problem).__name__}.")
        super().__init__(problem, theta0)

    @classmethod
    def default(cls, dtype: torch.dtype = torch.float64, **kwargs: Any) -> DropoutAlgorithm:
        """On :func:`~smetool.models.gaussian_dropout.gaussian_default_problem` (the keywords of
        :func:`~smetool.models.dropout_problem.default_problem`); ``verification_default`` adds
        the dropout plug-in's verification settings."""
        problem, theta0 = gaussian_default_problem(dtype, **kwargs)
        return cls(problem, theta0)

    def __repr__(self) -> str:
        return f"GaussianDropout({self.problem!r})"


def _factory(*, dtype: torch.dtype, device: Any, keep_prob: float, width: int) -> GaussianDropout:
    # The dropout plug-in's verification task (a ~ N(0, 0.1²), target × 5).
    problem, theta0 = gaussian_default_problem(dtype, device=device, keep_prob=keep_prob,
                                               width=width, a_std=0.1, target_scale=5.0)
    return GaussianDropout(problem, theta0)


PLUGINS = (
    PluginSpec(
        name="gaussian-dropout",
        factory=_factory,
        description="Gaussian (multiplicative) dropout GD on a two-layer tanh network, exact SME "
                    "(Srivastava et al., JMLR 2014)",
        orders=(1, 2),
        lrs=(0.05, 0.04, 0.025, 0.02, 0.0125, 0.01),
        horizon=0.2,
        n_paths=500,
        steps_per_lr=4,
        order_defaults={2: {"lrs": (0.05, 0.04, 0.025, 0.02, 0.0125, 0.01, 0.005),
                            "n_paths": 1500}},
        options=(Option("keep_prob", lambda t: check_keep_prob(float(t)), 0.9,
                        "sets the multipliers' variance (1 - p)/p, as Bernoulli dropout's"),
                 Option("width", positive_int_option("width"), 16,
                        "hidden neurons m")),
        algorithm=GaussianDropout,
        describe=lambda alg: {"problem": repr(alg.problem)},
    ),
)
"""The ``gaussian-dropout`` plug-in of the command line."""
