"""Rules whose step runs on any landscape and whose closed forms need the noisy quadratic.

SAM, USAM and SignSGD step with the landscape's minibatch gradients (``∇f_γ``), so they train a
network as well as their test problem; the exact mean step, the step covariance and the SME are
closed forms of :class:`~smetool.models.NoisyQuadratic` (Gaussian gradient noise, a Hessian
independent of ``γ``) and are refused elsewhere.
"""

from __future__ import annotations

from ..models.landscape import Landscape
from ..models.noisy_quadratic import NoisyQuadratic
from .capabilities import HasLandscape

__all__ = ["QuadraticClosedForms"]


class QuadraticClosedForms(HasLandscape):
    """Mix-in: ``problem`` is the landscape; :meth:`quadratic` the noisy quadratic of the closed
    forms."""

    problem: Landscape

    def landscape(self) -> Landscape:
        return self.problem

    def quadratic(self) -> NoisyQuadratic:
        """The :class:`NoisyQuadratic` the closed forms need.

        Raises
        ------
        ValueError
            The rule runs on another landscape (a network): its mean step has no closed form.
        """
        if not isinstance(self.problem, NoisyQuadratic):
            where = self.problem.label or type(self.problem).__name__
            raise ValueError(f"{getattr(self, 'name', type(self).__name__)} on {where}: the exact "
                             "mean step and the SME need a "
                             "NoisyQuadratic; the step itself runs on any landscape.")
        return self.problem

    def has_exact_mean(self) -> bool:
        """Whether the closed forms apply (the landscape is the noisy quadratic)."""
        return isinstance(self.problem, NoisyQuadratic)
