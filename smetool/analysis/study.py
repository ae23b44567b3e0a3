"""What the measures of an analysis share: the trained end points of every algorithm on one
landscape, and the quantities several measures need, computed once (:class:`Study`).

* :func:`hessian_summary` — trace, Frobenius norm and top eigenpairs of ``∇²f`` at the end points:
  dense when ``D ≤ dense_max`` (exact, with the full eigendecomposition), otherwise Lanczos for the
  top eigenpairs and Hutch++ for ``tr H`` and ``‖H‖_F² = tr H²`` (with standard errors);
* :meth:`Study.noise` — random gradient data of each algorithm at its end points
  (:func:`~smetool.analysis.variance.update_samples`);
* :meth:`Study.generator` — every random draw of a measure comes from a generator seeded by
  :func:`~smetool.montecarlo.engine.chunk_seed` (:class:`numpy.random.SeedSequence`) of the run's
  seed and a key naming the measure and the algorithm, as the Monte-Carlo layer seeds its chunks:
  the numbers of one measure do not depend on which other measures ran.

References
----------
C. Lanczos (1950); R. A. Meyer, C. Musco, C. Musco, D. P. Woodruff, "Hutch++: optimal stochastic
trace estimation", SOSA 2021.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from ..algorithms.base import Algorithm
from ..algorithms.training import Trajectory
from ..checks import check_positive_int
from ..jsonutil import json_safe
from ..models.landscape import Landscape
from ..models.spectral import dense_matvec, hutchpp_trace, lanczos_top
from ..montecarlo.engine import chunk_seed
from .variance import update_samples

__all__ = ["STREAM_INITS", "STREAM_TRAINING", "STREAM_MEASURES", "Settings", "HessianSummary",
           "hessian_summary", "Study", "seeded_generator", "init_seeds"]

STREAM_INITS, STREAM_TRAINING, STREAM_MEASURES = 0, 1, 2
"""The first key of every seed derived from a run's seed: initial points, training, measures."""


def seeded_generator(seed: int, *key: int) -> torch.Generator:
    """A CPU generator seeded with ``chunk_seed(seed, *key)`` (SeedSequence)."""
    return torch.Generator().manual_seed(chunk_seed(seed, *key))


def init_seeds(seed: int, n: int) -> list[int]:
    """The seeds of ``n`` initial points: ``chunk_seed(seed, STREAM_INITS, s)``."""
    return [chunk_seed(seed, STREAM_INITS, s) for s in range(check_positive_int(n, "n"))]


def _key(name: str) -> int:
    """A stable integer for a measure's or an algorithm's name (CRC-32; not Python's ``hash``)."""
    return zlib.crc32(name.encode())


@dataclass(frozen=True)
class Settings:
    """The knobs of the measures.

    Attributes
    ----------
    n_noise : int
        Random gradient data per seed (draws of the algorithm's step at its end point).
    n_components : int
        Principal directions per seed (variance–flatness).
    level : float
        ``c`` of the interval flatness (2 as in Zhang et al., ICLR 2024; ``e`` in Feng & Tu).
    windows : tuple of int
        Trajectory windows (steps after training), empty for none.
    detrended : bool
        Also analyse each window with its linear trend removed.
    n_eigen : int
        Top Hessian eigendirections of the variance principle.
    dense_max : int
        Largest ``D`` for a dense Hessian.
    threshold : float
        Cosine threshold of the effective orientations.
    seed : int
    """

    n_noise: int = 256
    n_components: int = 10
    level: float = 2.0
    windows: tuple[int, ...] = ()
    detrended: bool = True
    n_eigen: int = 20
    dense_max: int = 2000
    threshold: float = 0.95
    seed: int = 0

    def to_dict(self) -> dict:
        return json_safe({k: getattr(self, k) for k in self.__dataclass_fields__})


@dataclass(frozen=True)
class HessianSummary:
    """Trace, Frobenius norm and top eigenpairs of ``∇²f`` per path.

    Attributes
    ----------
    trace, trace_stderr, frobenius, frobenius_stderr : Tensor, (P,)
        Standard errors are 0 for the dense method.
    top : Tensor, (P, k)
        Largest eigenvalues, decreasing.
    vectors : Tensor, (P, k, D)
        Their unit eigenvectors.
    method : {"dense", "lanczos"}
    """

    trace: Tensor
    trace_stderr: Tensor
    frobenius: Tensor
    frobenius_stderr: Tensor
    top: Tensor
    vectors: Tensor
    method: str

    def to_dict(self) -> dict:
        return json_safe({"trace": self.trace, "trace_stderr": self.trace_stderr,
                          "frobenius": self.frobenius, "frobenius_stderr": self.frobenius_stderr,
                          "top": self.top, "method": self.method})


def hessian_summary(landscape: Landscape, theta: Tensor, *, k: int = 5, dense_max: int = 2000,
                    generator: torch.Generator, n_sketch: int = 20,
                    n_probes: int = 40) -> tuple[HessianSummary, Callable[[Tensor], Tensor]]:
    """:class:`HessianSummary` of ``∇²f`` at ``θ (P, D)`` and a Hessian–vector product.

    Dense when ``D ≤ dense_max`` (exact); otherwise Lanczos (top ``k``) and Hutch++ for ``tr H``
    and ``‖H‖_F² = tr H²`` (with standard errors; the norm's by the delta method).

    Returns
    -------
    summary : HessianSummary
    hvp : callable
        ``V (P, s, D) -> H V`` at ``θ`` (from the dense matrix when there is one).
    """
    D = landscape.n_params
    k = min(check_positive_int(k, "k"), D)
    P = theta.shape[0]
    if D <= dense_max:
        H = landscape.hessian_matrix(theta)
        evals, evecs = torch.linalg.eigh(H)
        top, vecs = evals.flip(-1)[:, :k], evecs.flip(-1)[:, :, :k].transpose(1, 2)
        zero = torch.zeros(P, dtype=theta.dtype)
        summary = HessianSummary(torch.diagonal(H, dim1=1, dim2=2).sum(-1), zero,
                                 torch.linalg.matrix_norm(H), zero, top, vecs, "dense")
        return summary, dense_matvec(H)

    def hvp(V: Tensor) -> Tensor:
        return landscape.hvp(theta, V)

    dt, dev = theta.dtype, theta.device
    lz = lanczos_top(hvp, P, D, k, tol=1e-6, max_iter=min(D, 4 * k + 40), generator=generator,
                     dtype=dt, device=dev)
    tr = hutchpp_trace(hvp, P, D, n_sketch=n_sketch, n_probes=n_probes, generator=generator,
                       dtype=dt, device=dev)
    sq = hutchpp_trace(lambda V: hvp(hvp(V)), P, D, n_sketch=n_sketch, n_probes=n_probes,
                       generator=generator, dtype=dt, device=dev)
    frob = sq.trace.clamp_min(0.0).sqrt()
    return HessianSummary(tr.trace, tr.stderr, frob, sq.stderr / (2 * frob), lz.eigenvalues,
                          lz.eigenvectors, "lanczos"), hvp


@dataclass
class Study:
    """The trained state of an analysis (module docstring).

    Attributes
    ----------
    landscape : Landscape
    inits : Tensor, (P, D)
    algorithms : dict of str to Algorithm
        By label, the reference first.
    trajectories : dict of str to Trajectory
    reference : str
        The label of the reference (gradient descent).
    settings : Settings
    windows : dict of str to Tensor
        ``(T, P, D)`` trajectory data after training (the algorithms other than the reference).
    test : Landscape, optional
        Held-out data (a landscape of the same model), for test accuracy.
    """

    landscape: Landscape
    inits: Tensor
    algorithms: dict[str, Algorithm]
    trajectories: dict[str, Trajectory]
    reference: str
    settings: Settings
    windows: dict[str, Tensor] = field(default_factory=dict)
    test: Landscape | None = None
    _cache: dict[Any, Any] = field(default_factory=dict, repr=False)

    @property
    def others(self) -> list[str]:
        """The labels of the algorithms compared with the reference."""
        return [label for label in self.algorithms if label != self.reference]

    def final(self, label: str) -> Tensor:
        """The end points of ``label``, ``(P, D)``."""
        return self.trajectories[label].final

    def generator(self, measure: str, label: str = "") -> torch.Generator:
        """The generator of one measure on one algorithm (module docstring)."""
        return seeded_generator(self.settings.seed, STREAM_MEASURES, _key(measure), _key(label))

    def _cached(self, key: Any, make: Callable[[], Any]) -> Any:
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]

    def hessian(self, label: str) -> tuple[HessianSummary, Callable[[Tensor], Tensor]]:
        """:func:`hessian_summary` at the end points of ``label`` (computed once), with at least
        ``settings.n_eigen`` eigenpairs."""
        k = max(5, self.settings.n_eigen)
        return self._cached(("hessian", label), lambda: hessian_summary(
            self.landscape, self.final(label), k=k, dense_max=self.settings.dense_max,
            generator=self.generator("hessian", label)))

    def noise(self, label: str) -> Tensor:
        """Random gradient data of ``label`` at its end points, ``(P, n_noise, D)`` (computed
        once)."""
        traj = self.trajectories[label]
        return self._cached(("noise", label), lambda: update_samples(
            self.algorithms[label], self.final(label), traj.lr, self.settings.n_noise,
            self.generator("noise", label)))

    def is_noisy(self, label: str) -> bool:
        """Whether ``label``'s step is random: two draws of it at the end points differ."""
        def draw() -> bool:
            G = update_samples(self.algorithms[label], self.final(label),
                               self.trajectories[label].lr, 2, self.generator("is_noisy", label))
            return bool((G[:, 0] != G[:, 1]).any())
        return self._cached(("noisy", label), draw)
