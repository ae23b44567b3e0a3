"""The built-in networks of ``smetool analyze NAME --model`` and ``smetool compare``: landscapes
(:class:`~smetool.models.landscape.Landscape`) of a two-layer net, an MLP or a CNN on the
embedded 1-D task or on scikit-learn's bundled digits, with held-out digits for test accuracy.

References
----------
Z. Zhang, Y. Li, T. Luo, Z.-Q. J. Xu, "Stochastic modified equations and dynamics of dropout
algorithm", ICLR 2024 (the 1-D task and the two-layer net); E. Alpaydin, C. Kaynak, UCI (1998)
(the digits).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..checks import check_keep_prob, check_positive_int
from .builtin_nets import PLACEMENTS, cnn, mlp
from .data import DIGITS_SIZE, digits_data, load_npz, toy_data
from .dropout_problem import DropoutProblem
from .landscape import Landscape
from .net_dropout import NetDropoutModel

__all__ = ["NETWORKS", "DATASETS", "NETWORK_SETTINGS", "NetworkSetting", "builtin_network"]

NETWORKS = ("two-layer", "mlp", "cnn")
"""The built-in networks."""

DATASETS = ("digits", "toy")
"""The built-in data sets."""


@dataclass(frozen=True)
class NetworkSetting:
    """The defaults of one built-in network in the analyses.

    Attributes
    ----------
    lr : float
        Learning rate of gradient descent and dropout.
    steps : int
        Training steps (``smetool analyze``).
    n_seeds : int
    width : int
        Hidden units (MLP, two-layer) or channels (CNN).
    n_samples : int
        Training points (the first ``n`` digits).
    data : str
        The default data set.
    """

    lr: float
    steps: int
    n_seeds: int
    width: int
    n_samples: int
    data: str


NETWORK_SETTINGS = {
    "two-layer": NetworkSetting(lr=0.2, steps=20_000, n_seeds=8, width=16, n_samples=16,
                                data="toy"),
    "mlp": NetworkSetting(lr=0.1, steps=8_000, n_seeds=6, width=16, n_samples=64, data="digits"),
    "cnn": NetworkSetting(lr=0.2, steps=8_000, n_seeds=6, width=4, n_samples=64, data="digits"),
}
"""Defaults per network. On the first 64 digits (squared loss on one-hot targets, keep probability
0.9), learning rate 0.2 diverged for some MLP seeds (the top Hessian eigenvalue of ``R_S`` sits
near ``2/lr``, the edge of stability) and 0.1 did not; the CNN (4 channels) trains stably at 0.2.
8,000 steps keep the three networks of ``docs/findings-beyond.md`` within its 20-minute budget on
2 CPU cores."""


def builtin_network(model: str = "mlp", data: str | None = None, *, width: int | None = None,
                    depth: int = 1, keep_prob: float = 0.9, n_samples: int | None = None,
                    placement: str = "last", batch_size: int | None = 8, test: int = 0,
                    dtype: torch.dtype = torch.float64) -> tuple[Landscape, Landscape | None]:
    """A built-in network's training landscape and, with ``test > 0``, a held-out one.

    Parameters
    ----------
    model : {"two-layer", "mlp", "cnn"}
        ``"two-layer"``: the 1-D task's network in closed form
        (:class:`~smetool.models.DropoutProblem`: ``width`` tanh neurons with a bias input, no
        output bias); ``"mlp"``/``"cnn"``: :func:`~smetool.models.builtin_nets.mlp` (``depth``
        tanh layers of ``width`` units) or :func:`~smetool.models.builtin_nets.cnn` (``width``
        channels) as a :class:`~smetool.models.NetDropoutModel` with the squared loss on one-hot
        targets.
    data : {"digits", "toy"} or path, optional
        The first ``n_samples`` digits (8×8 images for the CNN), the embedded 1-D task, or an
        ``.npz`` file with arrays ``X (n, d)`` and ``y (n,)`` (regression, squared loss); default
        the network's (:data:`NETWORK_SETTINGS`).
    width, n_samples : int, optional
        Default the network's.
    depth : int
    keep_prob : float
        ``p`` of the dropout layers (``nn.Dropout(1 − p)``).
    placement : {"last", "every"}
    batch_size : int, optional
        ``B`` of the minibatch gradients (SGD, SAM, SignSGD on it); capped at the number of
        points.
    test : int
        Held-out digits after the training ones (0: none).
    dtype : torch.dtype

    Returns
    -------
    train : Landscape
    test : Landscape or None

    Raises
    ------
    ValueError
        An unknown name, a combination that does not exist (a CNN, or held-out points, on the 1-D
        task; the two-layer net on digits), or more digits than there are.
    ImportError
        ``data="digits"`` without scikit-learn.
    """
    if model not in NETWORKS:
        raise ValueError(f"`model` must be one of {', '.join(NETWORKS)}; got {model!r}.")
    setting = NETWORK_SETTINGS[model]
    data = setting.data if data is None else str(data)
    if data not in DATASETS and not data.endswith(".npz"):
        raise ValueError(f"`data` must be one of {', '.join(DATASETS)} or an .npz file; got "
                         f"{data!r}.")
    width = setting.width if width is None else check_positive_int(width, "width")
    n = setting.n_samples if n_samples is None else check_positive_int(n_samples, "n_samples")
    keep_prob = check_keep_prob(keep_prob)
    if placement not in PLACEMENTS:
        raise ValueError(f"`placement` must be one of {', '.join(PLACEMENTS)}; got {placement!r}.")
    test = int(test)
    regression = data != "digits"
    if regression and (model == "cnn" or test):
        raise ValueError(f"`data`={data!r} is a regression task: it takes model='mlp' or "
                         f"'two-layer' and no held-out points; got model={model!r}, test={test}.")
    if model == "two-layer" and data == "digits":
        raise ValueError("`model`='two-layer' is a one-output network in closed form: it takes "
                         "data='toy' or an .npz file; got 'digits'.")
    if data == "digits" and n + test > DIGITS_SIZE:
        raise ValueError(f"`n_samples` + `test` must be at most {DIGITS_SIZE} digits; got {n} + "
                         f"{test}.")
    if data == "toy":
        ds = toy_data(dtype=dtype)
    elif data == "digits":
        ds = digits_data(n + test, image=model == "cnn", one_hot=True, dtype=dtype)
    else:
        ds = load_npz(data, dtype=dtype)
    if model == "two-layer" and ds.y.shape[1] != 1:
        raise ValueError(f"`model`='two-layer' has one output; `y` of {data!r} has {ds.y.shape[1]}.")
    n = n if data == "digits" else ds.X.shape[0]
    batch = None if batch_size is None else min(check_positive_int(batch_size, "batch_size"), n)
    if model == "two-layer":
        problem = DropoutProblem(ds.X, ds.y[:, 0], width=width, keep_prob=keep_prob,
                                 batch_size=batch)
        problem.label = f"two-layer ({ds.name})"
        return problem, None

    def module() -> nn.Module:
        if model == "mlp":
            return mlp(ds.X.shape[1], width, ds.n_classes, keep_prob=keep_prob, depth=depth,
                       placement=placement, out_bias=data == "digits")
        return cnn(width, ds.n_classes, keep_prob=keep_prob, placement=placement)

    label = f"{model} (digits[:{n}])" if data == "digits" else f"{model} ({ds.name})"
    train = NetDropoutModel(module().to(dtype), ds.X[:n], ds.y[:n], loss="mse",
                            batch_size=batch, label=label)
    held = None if not test else NetDropoutModel(
        module().to(dtype), ds.X[n:], ds.y[n:], loss="mse",
        label=f"{model} (digits[{n}:{n + test}])")
    return train, held
