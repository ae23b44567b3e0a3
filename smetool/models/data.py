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
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..checks import check_positive_int

try:  # optional extra "data"
    from sklearn.datasets import load_digits as _load_digits
except ImportError:  # pragma: no cover - exercised where scikit-learn is absent
    _load_digits = None

__all__ = ["Dataset", "toy_data", "digits_data", "has_digits", "load_npz", "DIGITS_SIZE"]

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


def load_npz(path: str | Path, *, dtype: torch.dtype = torch.float64) -> Dataset:
    """A regression data set from an ``.npz`` file with arrays ``X (n, d)`` and ``y (n,)`` or
    ``(n, C)``; a 1-D ``X`` is one input feature, ``y`` becomes ``(n, C)``.

    Raises
    ------
    ValueError
        The file lacks ``X`` or ``y``, or their lengths differ.
    OSError
        The file cannot be read.
    """
    with np.load(Path(path)) as data:
        missing = [k for k in ("X", "y") if k not in data.files]
        if missing:
            raise ValueError(f"`{path}` must contain arrays 'X' and 'y'; missing "
                             f"{', '.join(missing)} (found {', '.join(data.files) or 'nothing'}).")
        X = torch.as_tensor(np.asarray(data["X"], dtype=float), dtype=dtype)
        y = torch.as_tensor(np.asarray(data["y"], dtype=float), dtype=dtype)
    X = X.unsqueeze(1) if X.ndim == 1 else X
    y = y.unsqueeze(1) if y.ndim == 1 else y
    if X.ndim != 2 or y.ndim != 2 or X.shape[0] != y.shape[0]:
        raise ValueError(f"`{path}`: X must be (n, d) and y (n,) or (n, C) with the same n; got "
                         f"{tuple(X.shape)} and {tuple(y.shape)}.")
    return Dataset(X, y, Path(path).name, y.shape[1])
