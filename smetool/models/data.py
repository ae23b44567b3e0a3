"""Data for the network dropout plug-in, with no download: the embedded 1-D task and a subsample of
scikit-learn's bundled handwritten digits.

``load_digits`` ships with scikit-learn (an optional extra: ``pip install smetool[data]``); it is
read from the package's own files, never from the network.

References
----------
E. Alpaydin, C. Kaynak, "Optical recognition of handwritten digits", UCI Machine Learning
Repository (1998) — the 8×8 digits of ``sklearn.datasets.load_digits`` (1,797 images).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..checks import check_positive_int

try:  # optional extra "data"
    from sklearn.datasets import load_digits as _load_digits
except ImportError:  # pragma: no cover - exercised where scikit-learn is absent
    _load_digits = None

__all__ = ["Dataset", "toy_data", "digits_data", "has_digits", "DIGITS_SIZE"]

DIGITS_SIZE = 1797
"""Images in ``sklearn.datasets.load_digits``."""


@dataclass(frozen=True, eq=False)
class Dataset:
    """Inputs and targets of a training set.

    Attributes
    ----------
    X : Tensor, (n, …)
    y : Tensor
        ``(n, C)`` regression targets (one-hot for classification with the squared loss) or
        ``(n,)`` integer labels.
    name : str
    n_classes : int
        Outputs of a network fitting it.
    """

    X: Tensor
    y: Tensor
    name: str
    n_classes: int

    def __repr__(self) -> str:
        return f"Dataset({self.name!r}, X={tuple(self.X.shape)}, y={tuple(self.y.shape)})"


def toy_data(n_points: int = 16, *, target_scale: float = 1.0,
             dtype: torch.dtype = torch.float64) -> Dataset:
    """The embedded 1-D task of the ``dropout`` plug-in: ``x`` evenly spaced in ``[−1, 1]``, target
    ``target_scale · (½ ReLU(−x − ⅓) + ½ ReLU(x − ⅓))``; ``X (n, 1)``, ``y (n, 1)``."""
    n_points = check_positive_int(n_points, "n_points")
    x = torch.linspace(-1.0, 1.0, n_points, dtype=torch.float64)  # rounded once, to `dtype`
    y = target_scale * (0.5 * torch.relu(-x - 1.0 / 3.0) + 0.5 * torch.relu(x - 1.0 / 3.0))
    return Dataset(x.unsqueeze(1).to(dtype), y.unsqueeze(1).to(dtype), "toy", 1)


def has_digits() -> bool:
    """Whether scikit-learn (and so ``load_digits``) is installed."""
    return _load_digits is not None


def digits_data(n_samples: int = 64, *, image: bool = False, one_hot: bool = True,
                dtype: torch.dtype = torch.float64) -> Dataset:
    """The first ``n_samples`` of scikit-learn's digits, pixels scaled to ``[0, 1]``.

    The data set's order cycles through the classes, so a prefix is close to balanced.

    Parameters
    ----------
    n_samples : int
        At most 1,797.
    image : bool
        ``X (n, 1, 8, 8)`` for a CNN instead of ``(n, 64)``.
    one_hot : bool
        ``y (n, 10)`` one-hot (squared loss) instead of labels ``(n,)`` (cross-entropy).
    dtype : torch.dtype

    Raises
    ------
    ImportError
        scikit-learn is not installed (``pip install smetool[data]``).
    ValueError
        ``n_samples`` outside ``[1, 1797]``.
    """
    if _load_digits is None:
        raise ImportError("the digits data need scikit-learn's bundled load_digits: "
                          "pip install 'smetool[data]' (or scikit-learn).")
    n_samples = check_positive_int(n_samples, "n_samples")
    if n_samples > DIGITS_SIZE:
        raise ValueError(f"`n_samples` must be at most {DIGITS_SIZE}; got {n_samples}.")
    bunch = _load_digits()
    X = torch.as_tensor(bunch.data[:n_samples], dtype=dtype) / 16.0
    labels = torch.as_tensor(bunch.target[:n_samples], dtype=torch.long)
    if image:
        X = X.reshape(n_samples, 1, 8, 8)
    y = torch.nn.functional.one_hot(labels, 10).to(dtype) if one_hot else labels
    return Dataset(X, y, f"digits[:{n_samples}]", 10)
