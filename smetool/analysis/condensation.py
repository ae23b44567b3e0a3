"""Condensation of input weights: cosine similarities, effective orientations, amplitudes.

Neuron ``r`` of ``f_θ(x) = Σ_r a_r σ(w_r · x̄)`` has the input weight ``w_r ∈ R^d`` (the bias is
its last entry when ``x̄ = (x, 1)``). Training *condenses* when the ``w_r`` gather on a few
orientations; dropout is reported to strengthen condensation (Zhang & Xu, TPAMI 2024).

**Effective orientations** (the definitions used here). Two neurons are *similar* when
``cos(w_r, w_q) > τ`` (``τ = 0.95`` by default), or ``|cos(w_r, w_q)| > τ`` when antipodal
neurons are merged. Two ways of counting groups of similar neurons are offered:

* ``method="greedy"`` (default): repeatedly take the remaining neuron of largest amplitude
  ``A_r = |a_r| ‖w_r‖`` as a leader and remove it together with every remaining neuron similar
  to it; the count is the number of leaders. Each group lies within angle ``arccos τ`` of its
  leader, so a count measures how many distinct directions carry the network.
* ``method="components"``: connected components of the graph "similar" (single linkage;
  order-independent). A chain of gradually turning neurons counts as one orientation, so even
  random orientations give few components when ``m`` is large compared with the number of
  ``arccos τ``-wide sectors (e.g. 16 random lines in the plane give ≈ 3–4 components at
  ``τ = 0.95``); that is why it is not the default.

Antipodal neurons are merged by default for *odd* activations (``σ(−z) = −σ(z)``, e.g. tanh),
because then ``a σ(w · x) = (−a) σ(−w · x)``: the two neurons are the same feature with a
flipped output weight. For other activations ``w`` and ``−w`` are different features and are
not merged. Neurons with a zero input weight, or an amplitude below
``min_relative_amplitude · max_r A_r``, are left out of the count (they contribute nothing, or
next to nothing, to ``f``); the default keeps every neuron.

References
----------
Z. Zhang, Z.-Q. J. Xu, "Implicit regularization of dropout", IEEE TPAMI 46(6), 2024 (dropout
facilitates condensation; cosine-similarity heat maps of input weights with bias).
T. Luo, Z.-Q. J. Xu, Z. Ma, Y. Zhang, "Phase diagram for two-layer ReLU neural networks at
infinite-width limit", JMLR 22, 2021 (orientation–amplitude scatter, ``A_r = |a_r| ‖w_r‖``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components
from torch import Tensor

__all__ = [
    "cosine_similarity",
    "unit_orientations",
    "OrientationClusters",
    "orientation_amplitude",
    "OrientationAmplitude",
]


def _unit_rows(W: Tensor) -> tuple[Tensor, Tensor]:
    """``W / ‖W‖`` row-wise (0 for a zero row) and the norms ``(P, m)``."""
    norms = W.norm(dim=-1, keepdim=True)
    return torch.where(norms > 0, W / torch.where(norms > 0, norms, torch.ones_like(norms)),
                       0.0), norms[..., 0]


def cosine_similarity(W: Tensor) -> Tensor:
    """Cosine similarities of units' input weights ``W (P, m, d)`` (bias included), ``(P, m, m)``.

    Rows and columns of units with ``w_r = 0`` are 0 (undefined orientation), the diagonal of the
    others is 1.

    References
    ----------
    Z. Zhang, Z.-Q. J. Xu, IEEE TPAMI 46(6), 2024.
    """
    unit, _ = _unit_rows(W)
    return (unit @ unit.transpose(1, 2)).clamp(-1.0, 1.0)


@dataclass(frozen=True)
class OrientationClusters:
    """Effective orientations per path.

    Attributes
    ----------
    count : Tensor, (P,) int64
        Number of effective orientations.
    labels : Tensor, (P, m) int64
        Cluster label of each neuron (``0 … count − 1``; greedy: in order of the leaders'
        amplitudes, components: in order of first appearance); −1 for a neuron left out (zero
        input weight or amplitude below the threshold).
    threshold : float
    antipodal : bool
        Whether ``w`` and ``−w`` were merged.
    method : str
        ``"greedy"`` or ``"components"``.
    """

    count: Tensor
    labels: Tensor
    threshold: float
    antipodal: bool
    method: str = "greedy"

    def to_dict(self) -> dict:
        return {
            "count": self.count.tolist(),
            "labels": self.labels.tolist(),
            "threshold": self.threshold,
            "antipodal": self.antipodal,
            "method": self.method,
        }

    def __repr__(self) -> str:
        return (
            f"OrientationClusters(count={self.count.tolist()}, threshold={self.threshold:g}, "
            f"antipodal={self.antipodal}, method={self.method!r})"
        )


def unit_orientations(
    W: Tensor,
    amplitude: Tensor,
    *,
    threshold: float = 0.95,
    antipodal: bool = True,
    min_relative_amplitude: float = 0.0,
    method: str = "greedy",
) -> OrientationClusters:
    """Effective orientations of ``m`` units from their input weights ``W (P, m, d)`` (e.g. a
    first linear or convolutional layer's rows with the bias appended, :meth:`Landscape.units
    <smetool.models.landscape.Landscape.units>`) and amplitudes ``(P, m)`` (the greedy leaders'
    order; e.g. ``|a_r| ‖w_r‖``): groups of units with ``cos > threshold`` (module docstring).

    Parameters
    ----------
    W : Tensor, (P, m, d)
    amplitude : Tensor, (P, m)
    threshold : float
        ``τ`` in ``(−1, 1)``; units with ``cos > τ`` (or ``|cos| > τ``) are linked.
    antipodal : bool
        Merge ``w`` and ``−w`` (for odd activations, module docstring).
    min_relative_amplitude : float
        Leave out units with an amplitude below this fraction of the largest one (in ``[0, 1)``;
        default 0 keeps every unit with a non-zero input weight).
    method : {"greedy", "components"}
        Largest-amplitude-leader clustering, or connected components (module docstring).

    Returns
    -------
    OrientationClusters

    Raises
    ------
    ValueError
        ``threshold`` outside ``(−1, 1)``, ``min_relative_amplitude`` outside ``[0, 1)``, an
        unknown ``method``, or ``W`` and ``amplitude`` of mismatched shapes.

    References
    ----------
    Z. Zhang, Z.-Q. J. Xu, IEEE TPAMI 46(6), 2024.
    """
    if not -1.0 < threshold < 1.0:
        raise ValueError(f"`threshold` must be in (-1, 1); got {threshold!r}.")
    if not 0.0 <= min_relative_amplitude < 1.0:
        raise ValueError(
            f"`min_relative_amplitude` must be in [0, 1); got {min_relative_amplitude!r}."
        )
    if method not in ("greedy", "components"):
        raise ValueError(f"`method` must be 'greedy' or 'components'; got {method!r}.")
    if W.ndim != 3 or amplitude.shape != W.shape[:2]:
        raise ValueError(f"`W` (P, m, d) and `amplitude` (P, m) must match; got {tuple(W.shape)} "
                         f"and {tuple(amplitude.shape)}.")
    cos, norms = cosine_similarity(W), W.norm(dim=-1)
    amp = amplitude
    keep = (norms > 0) & (amp >= min_relative_amplitude * amp.amax(dim=1, keepdim=True))
    sim = cos.abs() if antipodal else cos
    adj = (sim > threshold) & keep.unsqueeze(1) & keep.unsqueeze(2)
    adj_np, keep_np, amp_np = adj.cpu().numpy(), keep.cpu().numpy(), amp.cpu().numpy()
    P, m = keep_np.shape
    counts = np.zeros(P, dtype=np.int64)
    labels = np.full((P, m), -1, dtype=np.int64)
    for p in range(P):  # graph labelling on m ≤ a few thousand nodes: cheap, not batched
        idx = np.nonzero(keep_np[p])[0]
        if idx.size == 0:
            continue
        if method == "components":
            ncomp, lab = connected_components(
                csr_matrix(adj_np[p][np.ix_(idx, idx)]), directed=False
            )
            # relabel by first appearance so labels do not depend on scipy's numbering
            order: dict[int, int] = {}
            for j in lab:
                order.setdefault(int(j), len(order))
            labels[p, idx] = [order[int(j)] for j in lab]
            counts[p] = ncomp
        else:
            # stable sort: ties in amplitude go to the lower neuron index
            remaining = list(idx[np.argsort(-amp_np[p, idx], kind="stable")])
            c = 0
            while remaining:
                leader = remaining[0]
                members = [r for r in remaining if r == leader or adj_np[p, leader, r]]
                labels[p, members] = c
                remaining = [r for r in remaining if labels[p, r] < 0]
                c += 1
            counts[p] = c
    return OrientationClusters(
        count=torch.as_tensor(counts),
        labels=torch.as_tensor(labels),
        threshold=float(threshold),
        antipodal=bool(antipodal),
        method=method,
    )


@dataclass(frozen=True)
class OrientationAmplitude:
    """Per-neuron orientation and amplitude (scatter-plot data).

    Attributes
    ----------
    direction : Tensor, (P, m, d)
        Unit input weights ``w_r / ‖w_r‖`` (0 where ``w_r = 0``).
    angle : Tensor or None, (P, m)
        For ``d = 2`` (a 1-D input with bias): ``atan2(w_r2, w_r1) ∈ (−π, π]``; ``None`` otherwise.
    amplitude : Tensor, (P, m)
        ``A_r = |a_r| ‖w_r‖``.
    """

    direction: Tensor
    angle: Tensor | None
    amplitude: Tensor

    def to_dict(self) -> dict:
        return {
            "direction": self.direction.tolist(),
            "angle": None if self.angle is None else self.angle.tolist(),
            "amplitude": self.amplitude.tolist(),
        }

    def __repr__(self) -> str:
        P, m, d = self.direction.shape
        return f"OrientationAmplitude(paths={P}, neurons={m}, input_dim={d})"


def orientation_amplitude(W: Tensor, amplitude: Tensor) -> OrientationAmplitude:
    """Orientation and amplitude of every unit (the condensation scatter plot's data).

    Parameters
    ----------
    W : Tensor, (P, m, d)
        Input weights (bias included).
    amplitude : Tensor, (P, m)

    Returns
    -------
    OrientationAmplitude

    References
    ----------
    T. Luo, Z.-Q. J. Xu, Z. Ma, Y. Zhang, JMLR 22, 2021; Z. Zhang, Z.-Q. J. Xu, TPAMI 2024.
    """
    direction, _ = _unit_rows(W)
    angle = torch.atan2(W[..., 1], W[..., 0]) if W.shape[-1] == 2 else None
    if angle is not None:
        # atan2 returns −π for (negative, −0.0); fold it to +π so the range is (−π, π].
        angle = torch.where(angle <= -math.pi, angle + 2 * math.pi, angle)
    return OrientationAmplitude(direction=direction, angle=angle, amplitude=amplitude)
