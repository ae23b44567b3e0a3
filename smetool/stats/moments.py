"""Streaming moments of Monte-Carlo samples in float64, merged exactly (Chan's formula).

References
----------
T. F. Chan, G. H. Golub, R. J. LeVeque, "Algorithms for computing the sample variance: analysis
and recommendations", The American Statistician 37 (1983). B. P. Welford, Technometrics 4 (1962).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from scipy import stats
from torch import Tensor

from ..checks import check_confidence

__all__ = ["StreamingMoments", "t_quantile"]


class StreamingMoments:
    """Count, mean and sum of squared deviations (``M2``) of a stream of samples, in float64.

    Each update computes the batch's mean and ``M2`` in two passes on the batch's device and merges
    them into the running values with Chan's parallel formula

    ``n = nₐ + n_b``, ``δ = m_b − mₐ``, ``m = mₐ + δ n_b/n``, ``M2 = M2ₐ + M2_b + δ² nₐ n_b / n``,

    which is exact in exact arithmetic and numerically stable. The running values live on the CPU,
    so merging the same batches in the same order gives identical bits on any device.

    Parameters
    ----------
    shape : tuple of int, optional
        Shape of one sample (the statistic's shape); fixed by the first update when omitted.

    Examples
    --------
    >>> import torch
    >>> m = StreamingMoments()
    >>> m.update(torch.tensor([[1.0, 2.0]])); m.update(torch.tensor([[3.0]]))
    >>> float(m.mean[0]), float(m.variance[0]), m.count
    (2.0, 1.0, 3)
    """

    def __init__(self, shape: tuple[int, ...] | None = None):
        self.count = 0
        self._mean = None if shape is None else torch.zeros(shape, dtype=torch.float64)
        self._m2 = None if shape is None else torch.zeros(shape, dtype=torch.float64)

    @property
    def shape(self) -> tuple[int, ...] | None:
        """The shape of one sample's statistic, or ``None`` before the first samples."""
        return None if self._mean is None else tuple(self._mean.shape)

    @property
    def mean(self) -> Tensor:
        """The running mean (float64, CPU).

        Raises
        ------
        ValueError
            Before any sample.
        """
        if self._mean is None:
            raise ValueError("no samples yet: the mean is undefined.")
        return self._mean

    @property
    def m2(self) -> Tensor:
        """The running sum of squared deviations (float64, CPU)."""
        if self._m2 is None:
            raise ValueError("no samples yet: M2 is undefined.")
        return self._m2

    def update(self, batch: Tensor) -> None:
        """Add samples ``batch`` of shape ``(*shape, n)`` (samples along the last axis)."""
        if not isinstance(batch, Tensor) or batch.ndim < 1:
            raise ValueError(
                "`batch` must be a tensor of shape (*shape, n) with samples along the last axis; "
                f"got {type(batch).__name__ if not isinstance(batch, Tensor) else tuple(batch.shape)}."
            )
        n = int(batch.shape[-1])
        if n == 0:
            return
        x = batch.to(torch.float64)
        mean = x.mean(dim=-1)
        m2 = ((x - mean.unsqueeze(-1)) ** 2).sum(dim=-1)
        self._merge_stats(n, mean.cpu(), m2.cpu())

    def merge(self, other: StreamingMoments) -> StreamingMoments:
        """Merge ``other`` into ``self`` (in place) and return ``self``."""
        if not isinstance(other, StreamingMoments):
            raise TypeError(f"`other` must be a StreamingMoments; got {type(other).__name__}.")
        if other.count:
            self._merge_stats(other.count, other.mean, other.m2)
        return self

    def _merge_stats(self, n: int, mean: Tensor, m2: Tensor) -> None:
        if self.shape is not None and self.shape != tuple(mean.shape):
            raise ValueError(
                f"samples of shape {tuple(mean.shape)} cannot be merged into moments of shape "
                f"{self.shape}."
            )
        if self.count == 0 or self._mean is None or self._m2 is None:
            self.count, self._mean, self._m2 = n, mean.clone(), m2.clone()
            return
        total = self.count + n
        delta = mean - self._mean
        self._mean = self._mean + delta * (n / total)
        self._m2 = self._m2 + m2 + delta * delta * (self.count * n / total)
        self.count = total

    @property
    def variance(self) -> Tensor:
        """Unbiased sample variance ``M2 / (n − 1)`` (NaN for fewer than two samples)."""
        if self._mean is None:
            raise ValueError("no samples yet: the variance is undefined.")
        if self.count < 2:
            return torch.full_like(self.mean, float("nan"))
        return self.m2 / (self.count - 1)

    @property
    def stderr(self) -> Tensor:
        """Standard error of the mean, ``sqrt(variance / n)``."""
        return (self.variance / self.count).sqrt()

    def state_dict(self) -> dict[str, Any]:
        """The exact state (for checkpoints)."""
        return {"count": self.count, "mean": self._mean, "m2": self._m2}

    @classmethod
    def from_state_dict(cls, state: Mapping[str, Any]) -> StreamingMoments:
        """Rebuild from :meth:`state_dict` (bit-exact)."""
        out = cls()
        out.count, out._mean, out._m2 = int(state["count"]), state["mean"], state["m2"]
        return out

    def __repr__(self) -> str:
        return f"StreamingMoments(count={self.count}, shape={self.shape})"


def t_quantile(confidence: float, dof: int) -> float:
    """The two-sided Student-t quantile for ``confidence`` with ``dof`` degrees of freedom
    (NaN for ``dof < 1``)."""
    check_confidence(confidence)
    if dof < 1:
        return float("nan")
    return float(stats.t.ppf(0.5 + confidence / 2.0, dof))
