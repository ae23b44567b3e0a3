"""The SDE protocol: an Itô SDE ``dX = b(t, X) dt + σ(t, X) dW`` with a diffusion of a declared kind.

States are batch-first, ``(P, D)`` for ``P`` sample paths in ``D`` dimensions; device and dtype
follow the initial state. A user writes an SDE either by subclassing :class:`SDE` or by passing two
functions to :class:`FunctionSDE`. Objects in the torchsde style (``f``, ``g``, ``noise_type``,
``sde_type``) are adapted by :func:`as_sde`.
"""

from __future__ import annotations

import abc
import enum
import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from .checks import check_choice

__all__ = ["NoiseKind", "SDE", "FunctionSDE", "NoiseFree", "TimeChanged", "SampledDriftSDE",
           "TorchsdeAdapter", "as_sde", "shape_probe_drift"]


class NoiseKind(str, enum.Enum):
    """How the diffusion of an SDE is given (the shape :meth:`SDE.diffusion` returns).

    ========== ============================ ============================================
    kind       ``diffusion(t, x)``          Brownian dimension ``M``
    ========== ============================ ============================================
    DIAGONAL   ``(P, D)``; ``b_i(x_i)``     ``D``: component ``i`` drives state ``i``
    SCALAR     ``(P, D)``                   1: one Brownian motion drives every state
    ADDITIVE   ``(D, M)`` or ``(P, D, M)``  ``M``; independent of ``x``
    GENERAL    ``(P, D, M)``                ``M``
    COVARIANCE ``Σ(t, x)``, ``(P, D, D)``   ``D``; ``Σ`` is factored at every evaluation
    SAMPLED    not used                     none: :meth:`SDE.sample_noise` draws ``ζ``,
                                            ``Cov ζ = Σ``, and a step adds ``√h ζ``
    ========== ============================ ============================================
    """

    DIAGONAL = "diagonal"
    SCALAR = "scalar"
    ADDITIVE = "additive"
    GENERAL = "general"
    COVARIANCE = "covariance"
    SAMPLED = "sampled"


class SDE(abc.ABC):
    """An Itô SDE ``dX = b(t, X) dt + σ(t, X) dW``, batched over sample paths.

    Subclasses set :attr:`noise_kind` (and :attr:`noise_dim` for GENERAL and ADDITIVE noise) and
    implement :meth:`drift` and, except for SAMPLED noise, :meth:`diffusion`.

    Attributes
    ----------
    noise_kind : NoiseKind
        How :meth:`diffusion` is to be read (see :class:`NoiseKind`).
    noise_dim : int or None
        ``M``, the dimension of the Brownian motion for GENERAL and ADDITIVE noise; ``None``
        means "read it off the diffusion's shape".

    Notes
    -----
    Three methods have defaults that subclasses may replace with something cheaper:
    :meth:`diffusion_product` (``σ dW`` without forming ``σ``, for GENERAL noise),
    :meth:`euler_increment` (``b h + σ dW`` at once, for GENERAL noise) and
    :meth:`diffusion_derivative` (the derivative Milstein needs, else autograd).
    """

    noise_kind: NoiseKind = NoiseKind.DIAGONAL
    noise_dim: int | None = None

    @abc.abstractmethod
    def drift(self, t: float, x: Tensor) -> Tensor:
        """The drift ``b(t, x)``: ``(P, D) -> (P, D)``."""

    def diffusion(self, t: float, x: Tensor) -> Tensor:
        """The diffusion in the layout of :attr:`noise_kind` (abstract except for SAMPLED)."""
        raise NotImplementedError(  # abstract for every kind but SAMPLED
            f"{type(self).__name__} declares noise_kind={self.noise_kind.value!r} but does not "
            "implement diffusion(t, x)."
        )

    def sample_noise(self, t: float, x: Tensor, generator: torch.Generator) -> Tensor:
        """SAMPLED noise only: a draw ``ζ (P, D)`` with mean 0 and covariance ``Σ(t, x)`` (abstract)."""
        raise NotImplementedError(  # abstract for SAMPLED noise
            f"{type(self).__name__} declares noise_kind='sampled' but does not implement "
            "sample_noise(t, x, generator)."
        )

    def diffusion_product(self, t: float, x: Tensor, dW: Tensor) -> Tensor:
        """GENERAL noise: ``σ(t, x) dW``, ``(P, D)`` for increments ``dW (P, M)``.

        The default forms ``σ`` with :meth:`diffusion`; override it to compute the product
        without the ``(P, D, M)`` matrix (the dropout SME does, its ``M`` growing like ``m²``).
        Euler–Maruyama and :class:`~smetool.solvers.SmallNoiseHeun` call it; schemes that need
        the columns of ``σ`` (Platen) call :meth:`diffusion`.
        """
        return torch.einsum("pdm,pm->pd", self.diffusion(t, x), dW)

    def euler_increment(self, t: float, x: Tensor, h: float, dW: Tensor) -> Tensor:
        """GENERAL noise: the Euler–Maruyama increment ``b(t, x) h + σ(t, x) dW``, ``(P, D)``.

        The default adds :meth:`drift` and :meth:`diffusion_product`; an SDE whose drift and noise
        share their costly part may compute both at once (the dropout SME does: one contraction
        instead of two). :class:`~smetool.solvers.EulerMaruyama` calls it.
        """
        return torch.add(self.diffusion_product(t, x, dW), self.drift(t, x), alpha=h)

    def diffusion_derivative(self, t: float, x: Tensor) -> Tensor | None:
        """The derivative :class:`~smetool.solvers.Milstein` needs, or ``None`` (the default:
        Milstein then uses autograd).

        For DIAGONAL noise ``∂b_i/∂x_i``, for SCALAR noise the directional derivative
        ``(∂b) b``; both ``(P, D)``.
        """
        return None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(noise_kind={self.noise_kind.value!r})"


class FunctionSDE(SDE):
    """An SDE from two functions.

    Parameters
    ----------
    drift : callable ``(t, x) -> (P, D)``
    diffusion : callable ``(t, x) -> ...`` or None
        Output layout as given by ``noise_kind``; ``None`` only for SAMPLED noise.
    noise_kind : NoiseKind or str
        One of ``"diagonal"``, ``"scalar"``, ``"additive"``, ``"general"``, ``"covariance"``,
        ``"sampled"``.
    noise_dim : int, optional
        ``M`` for GENERAL/ADDITIVE noise.
    sample_noise : callable ``(t, x, generator) -> (P, D)``, optional
        Required for SAMPLED noise.
    diffusion_derivative : callable ``(t, x) -> (P, D)``, optional
        See :class:`SDE`; used by Milstein instead of autograd.

    Examples
    --------
    Geometric Brownian motion ``dX = μX dt + σX dW``:

    >>> gbm = FunctionSDE(lambda t, x: 0.5 * x, lambda t, x: 0.2 * x, noise_kind="diagonal")
    """

    def __init__(
        self,
        drift: Callable[[float, Tensor], Tensor],
        diffusion: Callable[[float, Tensor], Tensor] | None = None,
        *,
        noise_kind: NoiseKind | str = NoiseKind.DIAGONAL,
        noise_dim: int | None = None,
        sample_noise: Callable[[float, Tensor, torch.Generator], Tensor] | None = None,
        diffusion_derivative: Callable[[float, Tensor], Tensor] | None = None,
    ):
        kind = parse_noise_kind(noise_kind)
        if not callable(drift):
            raise TypeError(f"`drift` must be callable (t, x) -> (P, D); got {drift!r}.")
        if kind is NoiseKind.SAMPLED:
            if sample_noise is None:
                raise ValueError("`sample_noise` is required when noise_kind='sampled'; got None.")
        elif not callable(diffusion):
            raise TypeError(
                f"`diffusion` must be callable (t, x) -> array for noise_kind={kind.value!r}; "
                f"got {diffusion!r}."
            )
        self._drift = drift
        self._diffusion = diffusion
        self._sample_noise = sample_noise
        self.noise_kind = kind
        self.noise_dim = noise_dim
        self._diffusion_derivative = diffusion_derivative

    def drift(self, t: float, x: Tensor) -> Tensor:
        return self._drift(t, x)

    def diffusion(self, t: float, x: Tensor) -> Tensor:
        if self._diffusion is None:
            return super().diffusion(t, x)
        return self._diffusion(t, x)

    def sample_noise(self, t: float, x: Tensor, generator: torch.Generator) -> Tensor:
        if self._sample_noise is None:
            return super().sample_noise(t, x, generator)
        return self._sample_noise(t, x, generator)

    def diffusion_derivative(self, t: float, x: Tensor) -> Tensor | None:
        if self._diffusion_derivative is None:
            return None
        return self._diffusion_derivative(t, x)


class SampledDriftSDE(SDE):
    """An SDE whose drift is known only through unbiased random estimates, with SAMPLED noise.

    The SME of a network with dropout in general positions is one: its drift ``−∇L_S`` is an
    expectation over dropout masks with no closed form, but an average of ``K`` dropout gradients
    estimates it without bias. Euler–Maruyama integrates such an SDE as ::

        X_{n+1} = X_n + h b̂_n + √(h − γ h²) ζ_n,

    where ``b̂ = sample_drift(t, x, g)`` has mean ``b`` and covariance ``γ Cov ζ``, and
    ``ζ = sample_noise(t, x, g)`` has the SDE's noise covariance: the increment then has exactly
    the mean ``h b`` and covariance ``h σσᵀ`` of an Euler–Maruyama step (this needs
    ``γ h ≤ 1``); with a symmetric ``ζ`` its third moments are ``O(h³)`` off, so by Milstein's
    weak-convergence theorem (one-step moment errors ``O(h²)`` give global weak order 1; Milstein &
    Tretyakov, *Stochastic Numerics for Mathematical Physics*, 2004, ch. 2) the scheme is weak
    order 1 in ``h``. Other solvers refuse such an SDE.

    Subclasses implement :meth:`sample_drift`, :meth:`sample_noise` and :attr:`drift_noise_ratio`.
    :meth:`drift` raises: there is nothing exact to return.
    """

    noise_kind = NoiseKind.SAMPLED

    @property
    @abc.abstractmethod
    def drift_noise_ratio(self) -> float:
        """``γ ≥ 0`` with ``Cov sample_drift = γ · Cov sample_noise`` (e.g. ``1/(lr K)`` for the
        mean of ``K`` dropout gradients against noise of covariance ``lr Σ``)."""

    @abc.abstractmethod
    def sample_drift(self, t: float, x: Tensor, generator: torch.Generator) -> Tensor:
        """An unbiased estimate of the drift, ``(P, D)``, drawn from ``generator`` only."""

    def drift(self, t: float, x: Tensor) -> Tensor:
        raise NotImplementedError(  # no closed form: the point of this class
            f"{type(self).__name__} has no closed-form drift; it gives unbiased estimates "
            "(sample_drift) and is integrated by EulerMaruyama().")


def shape_probe_drift(sde: SDE, t: float, x: Tensor) -> Tensor:
    """The drift at ``(t, x)`` for a shape check: for a :class:`SampledDriftSDE` one estimate drawn
    with a throw-away generator (seed 0), so the caller's random stream is untouched."""
    if isinstance(sde, SampledDriftSDE):
        return sde.sample_drift(t, x, torch.Generator(device=x.device).manual_seed(0))
    return sde.drift(t, x)


class NoiseFree(SDE):
    """The drift of another SDE without its noise: the ODE ``dX = b(t, X) dt``.

    Declared with additive noise of one Brownian motion and a zero diffusion, so every solver
    integrates it (its increments are drawn and multiplied by zero). Used as the noise-free
    negative control of an SME and as the noise-free path of the control variates.

    Parameters
    ----------
    sde : SDE
        Whose drift is kept.
    """

    noise_kind = NoiseKind.ADDITIVE
    noise_dim = 1

    def __init__(self, sde: SDE):
        if not isinstance(sde, SDE):
            raise TypeError(f"`sde` must be an smetool SDE; got {type(sde).__name__}.")
        self.sde = sde

    def drift(self, t: float, x: Tensor) -> Tensor:
        return self.sde.drift(t, x)

    def diffusion(self, t: float, x: Tensor) -> Tensor:
        return x.new_zeros(x.shape[1], 1)

    def __repr__(self) -> str:
        return f"NoiseFree({self.sde!r})"


class TimeChanged(SDE):
    """Another SDE run at ``speed`` times its rate: ``dY = c b(ct, Y) dt + √c σ(ct, Y) dW``.

    ``Y_t`` has the law of ``X_{ct}`` (a deterministic time change). With ``c ≠ 1`` this is the
    SME written in the wrong time convention (e.g. ``t = k ε / 2`` for ``t = k ε``): a drift error
    of ``O(1)``, the error an order-1 weak check exists to detect. Used as the default negative
    control of order-1 checks (:meth:`smetool.algorithms.Algorithm.negative_controls`).

    Parameters
    ----------
    sde : SDE
        The SDE to run faster or slower; Brownian noise (not SAMPLED or COVARIANCE).
    speed : float
        ``c > 0``.
    """

    def __init__(self, sde: SDE, speed: float):
        if not isinstance(sde, SDE):
            raise TypeError(f"`sde` must be an smetool SDE; got {type(sde).__name__}.")
        if sde.noise_kind in (NoiseKind.SAMPLED, NoiseKind.COVARIANCE):
            raise ValueError(f"`sde` must have Brownian noise (not {sde.noise_kind.value!r}) to be "
                             "time-changed.")
        if not (isinstance(speed, (int, float)) and math.isfinite(speed) and speed > 0):
            raise ValueError(f"`speed` must be a finite number > 0; got {speed!r}.")
        self.sde, self.speed = sde, float(speed)
        self.noise_kind, self.noise_dim = sde.noise_kind, sde.noise_dim
        self._root = math.sqrt(self.speed)

    def drift(self, t: float, x: Tensor) -> Tensor:
        return self.speed * self.sde.drift(self.speed * t, x)

    def diffusion(self, t: float, x: Tensor) -> Tensor:
        return self._root * self.sde.diffusion(self.speed * t, x)

    def diffusion_product(self, t: float, x: Tensor, dW: Tensor) -> Tensor:
        return self._root * self.sde.diffusion_product(self.speed * t, x, dW)

    def __repr__(self) -> str:
        return f"TimeChanged({self.sde!r}, speed={self.speed:g})"


def parse_noise_kind(kind: NoiseKind | str) -> NoiseKind:
    """Turn a string into a :class:`NoiseKind`, listing the valid names when it is unknown."""
    return check_choice(NoiseKind, kind, "noise_kind")


_TORCHSDE_KINDS = {
    "diagonal": NoiseKind.DIAGONAL,
    "scalar": NoiseKind.SCALAR,
    "general": NoiseKind.GENERAL,
    "additive": NoiseKind.ADDITIVE,
}


class TorchsdeAdapter(SDE):
    """A torchsde-style SDE object (``f``, ``g``, ``noise_type``, ``sde_type="ito"``) as an smetool SDE.

    torchsde's noise types map to the smetool kinds of the same name: ``scalar`` returns ``g`` of
    shape ``(P, D, 1)`` and is read as SCALAR noise; ``additive`` (``g`` of shape ``(P, D, M)``,
    independent of the state, as torchsde requires) is ADDITIVE, so that the schemes that exploit
    it (Milstein, Platen's (15.1.4) step, the Heun scheme's weak order 2) accept it.
    """

    def __init__(self, sde: Any):
        sde_type = getattr(sde, "sde_type", "ito")
        if sde_type != "ito":
            raise ValueError(
                f"`sde.sde_type` must be 'ito' (smetool integrates Itô SDEs); got {sde_type!r}. "
                "Convert the Stratonovich drift with the Itô correction first."
            )
        noise_type = getattr(sde, "noise_type", None)
        if noise_type not in _TORCHSDE_KINDS:
            raise ValueError(
                f"`sde.noise_type` must be one of {', '.join(_TORCHSDE_KINDS)}; got {noise_type!r}."
            )
        self.inner = sde
        self.noise_kind = _TORCHSDE_KINDS[noise_type]
        self._scalar = noise_type == "scalar"

    def drift(self, t: float, x: Tensor) -> Tensor:
        return self.inner.f(_as_time(t, x), x)

    def diffusion(self, t: float, x: Tensor) -> Tensor:
        g = self.inner.g(_as_time(t, x), x)
        return g.squeeze(-1) if self._scalar else g

    def __repr__(self) -> str:
        return f"TorchsdeAdapter({type(self.inner).__name__}, noise_kind={self.noise_kind.value!r})"


def _as_time(t: float, x: Tensor) -> Tensor:
    # torchsde modules receive t as a 0-d tensor.
    return torch.as_tensor(t, dtype=x.dtype, device=x.device)


_TORCHSDE_ATTRIBUTES = ("f", "g", "f_and_g", "g_prod", "f_and_g_prod", "noise_type", "sde_type")


def as_sde(sde: Any) -> SDE:
    """Return ``sde`` itself if it is an :class:`SDE`, or adapt a torchsde-style object.

    Raises
    ------
    TypeError
        If ``sde`` is neither an :class:`SDE` nor has torchsde's ``f``, ``g`` and ``noise_type``;
        for an object with some torchsde attributes the message names the missing ones.
    """
    if isinstance(sde, SDE):
        return sde
    missing = [name for name in ("f", "g", "noise_type") if not hasattr(sde, name)]
    if not missing:
        return TorchsdeAdapter(sde)
    present = [name for name in _TORCHSDE_ATTRIBUTES if hasattr(sde, name)]
    if present:
        raise TypeError(
            f"`sde` looks like a torchsde SDE but lacks {', '.join(missing)}: smetool calls "
            "f(t, y) and g(t, y) and reads noise_type (it does not use f_and_g, g_prod or "
            f"h); got {type(sde).__name__} with {', '.join(present)}."
        )
    raise TypeError(
        "`sde` must be a smetool.SDE (subclass it or use FunctionSDE(drift, diffusion, "
        f"noise_kind=...)) or a torchsde-style object with f, g and noise_type; got {type(sde).__name__}."
    )
