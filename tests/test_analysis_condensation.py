"""Cosine similarities, effective orientations and orientation–amplitude data."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from smetool.analysis.condensation import (
    cosine_similarity,
    orientation_amplitude,
    unit_orientations,
)
from smetool.models.two_layer import TwoLayerNet, is_odd


def effective_orientations(net, theta, **kw):
    """The two-layer net's neurons as units: input weights and ``|a_r| ‖w_r‖``."""
    a, W = net.split(theta)
    kw.setdefault("antipodal", is_odd(net.activation))
    return unit_orientations(W, a.abs() * W.norm(dim=-1), **kw)


def cosine_similarity_matrix(net, theta):
    return cosine_similarity(net.split(theta)[1])


def _theta(net, a, W):
    return net.join(torch.as_tensor(a, dtype=torch.float64).unsqueeze(0),
                    torch.as_tensor(W, dtype=torch.float64).unsqueeze(0))


def _angles(net, angles, a=None, radius=1.0):
    W = [[radius * math.cos(t), radius * math.sin(t)] for t in angles]
    return _theta(net, a if a is not None else [1.0] * len(angles), W)


def test_planted_clusters_are_counted():
    net = TwoLayerNet(2, 6, "tanh")
    # two tight groups (0.00–0.02 rad and 1.50–1.52 rad) and one antipodal copy of the first
    th = _angles(net, [0.0, 0.01, 0.02, 1.5, 1.52, math.pi + 0.01])
    for method in ("greedy", "components"):
        res = effective_orientations(net, th, method=method)
        assert res.antipodal and res.count.tolist() == [2]
        lab = res.labels[0].tolist()
        assert lab[0] == lab[1] == lab[2] == lab[5] and lab[3] == lab[4] != lab[0]
        kept_apart = effective_orientations(net, th, method=method, antipodal=False)
        assert kept_apart.count.tolist() == [3]


def test_greedy_does_not_chain_but_components_does():
    net = TwoLayerNet(2, 8, "relu")  # not odd: antipodal off by default
    step = 0.25  # cos 0.25 = 0.969 > 0.95 between neighbours, cos 0.5 = 0.878 < 0.95
    th = _angles(net, [k * step for k in range(8)])
    assert not is_odd(net.activation)
    assert effective_orientations(net, th, method="components").count.tolist() == [1]
    greedy = effective_orientations(net, th, method="greedy")
    assert greedy.count.tolist() == [4] and not greedy.antipodal  # leader at 0 takes its neighbour


def test_small_amplitude_and_zero_weight_neurons_are_left_out():
    net = TwoLayerNet(2, 4, "tanh")
    th = _theta(net, [1.0, 1e-4, 1.0, 1.0], [[1.0, 0.0], [0.0, 1.0], [0.0, 0.0], [1.0, 0.01]])
    res = effective_orientations(net, th, min_relative_amplitude=0.01)
    assert res.count.tolist() == [1] and res.labels[0].tolist() == [0, -1, -1, 0]
    assert effective_orientations(net, th).count.tolist() == [2]  # the zero weight is always out
    cos = cosine_similarity_matrix(net, th)[0]
    assert cos[2].abs().sum() == 0 and cos[0, 0] == 1.0


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), m=st.integers(1, 12))
def test_counts_are_invariant_under_permutation_and_rescaling(seed, m):
    g = torch.Generator().manual_seed(seed)
    net = TwoLayerNet(3, m, "tanh")
    th = torch.randn(2, net.n_params, generator=g, dtype=torch.float64)
    a, W = net.split(th)
    perm = torch.randperm(m, generator=g)
    scale = torch.rand(2, m, 1, generator=g, dtype=torch.float64) + 0.5
    # same orientations and amplitudes |a|·‖w‖: a / s, w · s with s > 0
    th2 = net.join(a[:, perm] / scale[..., 0], W[:, perm] * scale)
    for method in ("greedy", "components"):
        c1 = effective_orientations(net, th, method=method).count
        c2 = effective_orientations(net, th2, method=method).count
        assert torch.equal(c1, c2) and bool(((1 <= c1) & (c1 <= m)).all())
    # components never exceeds greedy (a greedy cluster is connected)
    assert bool((effective_orientations(net, th, method="components").count
                 <= effective_orientations(net, th, method="greedy").count).all())
    cos = cosine_similarity_matrix(net, th)
    assert torch.allclose(cos, cos.transpose(1, 2)) and float(cos.abs().max()) <= 1.0


def test_orientation_amplitude():
    net = TwoLayerNet(2, 3, "tanh")
    th = _theta(net, [2.0, -1.0, 0.5], [[0.0, 3.0], [-1.0, -0.0], [1.0, 1.0]])
    a, W = net.split(th)
    oa = orientation_amplitude(W, a.abs() * W.norm(dim=-1))
    f64 = dict(dtype=torch.float64)
    assert torch.allclose(oa.amplitude, torch.tensor([[6.0, 1.0, 0.5 * math.sqrt(2)]], **f64))
    assert torch.allclose(oa.angle, torch.tensor([[math.pi / 2, math.pi, math.pi / 4]], **f64))
    assert torch.allclose(oa.direction.norm(dim=-1), torch.ones(1, 3, dtype=torch.float64))
    assert orientation_amplitude(torch.zeros(1, 2, 3, **f64), torch.zeros(1, 2, **f64)).angle is None
    assert "OrientationAmplitude" in repr(oa) and len(oa.to_dict()["amplitude"][0]) == 3


def test_validation():
    net = TwoLayerNet(2, 3, "tanh")
    th = torch.ones(1, 9, dtype=torch.float64)
    with pytest.raises(ValueError, match="`threshold` must be in \\(-1, 1\\); got 1.5"):
        effective_orientations(net, th, threshold=1.5)
    with pytest.raises(ValueError, match="`min_relative_amplitude` must be in \\[0, 1\\); got 1.0"):
        effective_orientations(net, th, min_relative_amplitude=1.0)
    with pytest.raises(ValueError, match="`method` must be 'greedy' or 'components'; got 'kmeans'"):
        effective_orientations(net, th, method="kmeans")
    res = effective_orientations(net, th)
    assert "OrientationClusters" in repr(res) and res.to_dict()["method"] == "greedy"
