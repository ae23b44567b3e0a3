"""A user's own network and data for ``smetool verify dropout-net --model … --data …``.

``--model`` is a built-in name (``mlp``, ``cnn``) or ``package.module:factory``, where the object
is a ``torch.nn.Module`` with dropout layers or a function of no arguments returning one.
``--data`` is a built-in name (``digits``, ``toy``), a ``.npz`` file with arrays ``X`` (inputs,
``(n, …)``) and ``y`` (targets ``(n, C)``/``(n,)``, or integer labels for cross-entropy), or
``package.module:loader``: a function of no arguments returning ``(X, y)`` or an object with
attributes ``X`` and ``y``. The command line checks each form when it parses it (the module
imports, the file exists and holds ``X`` and ``y``), and the network against the data before the
first path is simulated; every message names the flag.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..checks import import_object
from ..models.builtin_nets import cnn, mlp
from ..models.data import digits_data, toy_data

__all__ = ["BUILTIN_MODELS", "BUILTIN_DATA", "parse_model", "parse_data", "load_model",
           "load_data", "is_user_spec", "check_forward", "user_module_and_data"]

BUILTIN_MODELS = ("mlp", "cnn")
BUILTIN_DATA = ("digits", "toy")


def is_user_spec(text: str) -> bool:
    """Whether an option value names the user's own code or file (not a built-in name)."""
    return text not in BUILTIN_MODELS + BUILTIN_DATA


def _model_object(text: str) -> Any:
    obj = import_object(text, "--model")
    if isinstance(obj, nn.Module):
        return obj
    if inspect.isclass(obj) and issubclass(obj, nn.Module) or callable(obj):
        return obj
    raise ValueError(f"--model {text} must be a torch.nn.Module or a function returning one; got "
                     f"{type(obj).__name__}.")


def parse_model(text: str) -> str:
    """``mlp``, ``cnn`` or ``MODULE:OBJECT`` (imported and checked now); returns the text."""
    if text in BUILTIN_MODELS:
        return text
    if ":" not in text:
        raise ValueError(f"--model must be {', '.join(BUILTIN_MODELS)} or MODULE:OBJECT (a "
                         f"torch.nn.Module or a function returning one); got {text!r}.")
    _model_object(text)
    return text


def parse_data(text: str) -> str:
    """``digits``, ``toy``, ``FILE.npz`` (read and checked now) or ``MODULE:OBJECT``; returns the
    text."""
    if text in BUILTIN_DATA:
        return text
    if text.endswith(".npz"):
        _npz(text)
        return text
    if ":" not in text:
        raise ValueError(f"--data must be {', '.join(BUILTIN_DATA)}, a FILE.npz with arrays X and "
                         f"y, or MODULE:OBJECT (a loader returning (X, y)); got {text!r}.")
    if not callable(import_object(text, "--data")) and not _has_xy(import_object(text, "--data")):
        raise ValueError(f"--data {text} must be a function returning (X, y) or an object with X "
                         "and y.")
    return text


def _has_xy(obj: Any) -> bool:
    return hasattr(obj, "X") and hasattr(obj, "y")


def _npz(path: str) -> tuple[np.ndarray, np.ndarray]:
    file = Path(path)
    if not file.is_file():
        raise ValueError(f"--data: no such file {path!r}.")
    try:
        with np.load(file, allow_pickle=False) as arrays:
            missing = [k for k in ("X", "y") if k not in arrays.files]
            if missing:
                raise ValueError(f"--data {path}: the file must hold arrays X and y; it has "
                                 f"{', '.join(arrays.files) or 'none'}.")
            return arrays["X"], arrays["y"]
    except (OSError, ValueError) as exc:
        if str(exc).startswith("--data"):
            raise
        raise ValueError(f"--data {path}: not a readable .npz file ({exc}).") from None


def load_data(text: str, *, loss: str, dtype: torch.dtype,
              device: torch.device | str | None) -> tuple[Tensor, Tensor]:
    """``(X, y)`` from a ``.npz`` file or a loader: ``X`` floating point in ``dtype``; ``y`` in
    ``dtype`` for ``"mse"``, integer labels for ``"cross_entropy"``."""
    if text.endswith(".npz"):
        X, y = _npz(text)
    else:
        obj = import_object(text, "--data")
        out = obj() if callable(obj) and not _has_xy(obj) else obj
        if _has_xy(out):
            X, y = out.X, out.y
        elif isinstance(out, (tuple, list)) and len(out) == 2:
            X, y = out
        else:
            raise ValueError(f"--data {text} must give (X, y) or an object with X and y; got "
                             f"{type(out).__name__}.")
    try:
        X_t = torch.as_tensor(np.asarray(X) if not isinstance(X, Tensor) else X)
        y_t = torch.as_tensor(np.asarray(y) if not isinstance(y, Tensor) else y)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise ValueError(f"--data {text}: X and y must be numeric arrays ({exc}).") from None
    if X_t.ndim < 2 or len(X_t) != len(y_t) or len(X_t) == 0:
        raise ValueError(f"--data {text}: X must be (n, …) with n ≥ 1 and y have n rows; got X "
                         f"{tuple(X_t.shape)}, y {tuple(y_t.shape)}.")
    if loss == "cross_entropy":
        if y_t.is_floating_point() and not bool((y_t == y_t.round()).all()):
            raise ValueError(f"--data {text}: --loss cross_entropy needs integer labels y; got "
                             "non-integer values.")
        y_t = y_t.to(torch.long)
    else:
        y_t = y_t.to(dtype)
    return X_t.to(dtype=dtype, device=device), y_t.to(device)


def load_model(text: str, *, dtype: torch.dtype, device: torch.device | str | None) -> nn.Module:
    """The user's module (a factory is called with no arguments), cast to ``dtype``/``device``."""
    obj = _model_object(text)
    if not isinstance(obj, nn.Module):
        try:
            obj = obj()
        except TypeError as exc:
            raise ValueError(f"--model {text}: calling it with no arguments failed ({exc}).") from None
    if not isinstance(obj, nn.Module):
        raise ValueError(f"--model {text} must return a torch.nn.Module; got {type(obj).__name__}.")
    return obj.to(dtype=dtype, device=device)


def check_forward(module: nn.Module, X: Tensor, y: Tensor, loss: str, model: str,
                  data: str) -> None:
    """The network's output on the data against the targets, before anything runs."""
    try:
        with torch.no_grad():
            out = module.eval()(X[:2])
    except Exception as exc:  # the user's forward on the user's data: report it in one line
        raise ValueError(f"--model {model} does not run on --data {data} (X {tuple(X.shape)}): "
                         f"{type(exc).__name__}: {exc}.") from None
    if loss == "cross_entropy":
        ok = out.ndim == 2 and int(y.max()) < out.shape[1] and int(y.min()) >= 0
        want = f"(n, C) logits with C > max label {int(y.max())}"
    else:
        target = y[:2] if y.ndim > 1 else y[:2].unsqueeze(1)
        ok = tuple(out.reshape(2, -1).shape) == tuple(target.reshape(2, -1).shape)
        want = f"outputs of the shape of y's rows {tuple(y.shape[1:]) or '(1,)'}"
    if not ok:
        raise ValueError(f"--model {model} gives {tuple(out.shape[1:])} per example on --data "
                         f"{data}; --loss {loss} needs {want}.")


# Options of `smetool verify dropout-net` that shape a built-in network or built-in data set.
_NETWORK_OPTIONS = ("keep_prob", "width", "depth", "placement", "out_scale", "init_seed")


def user_module_and_data(options: dict[str, Any], defaults: dict[str, Any], *,
                         dtype: torch.dtype, device: torch.device | str | None
                         ) -> tuple[nn.Module, Tensor, Tensor]:
    """The network and data of a ``dropout-net`` run where ``--model`` or ``--data`` is the
    user's: the user's module (its own dropout layers and initial weights) or a built-in one sized
    to the user's data, checked against each other.

    Raises
    ------
    ValueError
        An option that shapes a built-in network given with a user's ``--model`` (it would be
        ignored), ``--n-samples`` with data that are not the digits, a CNN on data that are not
        ``(n, 1, s, s)`` images, or a network whose output does not fit the targets.
    """
    model, data, loss = options["model"], options["data"], options["loss"]
    if is_user_spec(model):
        given = [k for k in _NETWORK_OPTIONS if options.get(k) != defaults.get(k)]
        if given:
            flag = "--" + given[0].replace("_", "-")
            raise ValueError(f"{flag} shapes the built-in networks; --model {model} is your own "
                             "(set it in your module).")
    if is_user_spec(data) and options.get("n_samples") != defaults.get("n_samples"):
        raise ValueError(f"--n-samples subsamples the digits; --data {data} is your own.")
    X, y = load_data(data, loss=loss, dtype=dtype, device=device) if is_user_spec(data) else \
        _builtin_data(data, model, loss, options["n_samples"], dtype, device)
    if is_user_spec(model):
        module = load_model(model, dtype=dtype, device=device)
    else:
        n_out = (int(y.max()) + 1 if loss == "cross_entropy" else
                 (y.shape[1] if y.ndim > 1 else 1))
        shared = dict(keep_prob=options["keep_prob"], placement=options["placement"],
                      out_scale=options["out_scale"], seed=options["init_seed"])
        if model == "mlp":
            if X.ndim != 2:
                raise ValueError(f"--model mlp needs X of shape (n, d); --data {data} has "
                                 f"{tuple(X.shape)}.")
            module = mlp(X.shape[1], options["width"], n_out, depth=options["depth"],
                         out_bias=data != "toy", **shared)
        else:
            if X.ndim != 4 or X.shape[1] != 1 or X.shape[2] != X.shape[3] or X.shape[2] % 2:
                raise ValueError(f"--model cnn needs images X of shape (n, 1, s, s) with s even; "
                                 f"--data {data} has {tuple(X.shape)}.")
            module = cnn(options["width"], n_out, image_size=X.shape[2], **shared)
        module = module.to(dtype=dtype, device=device)
    check_forward(module, X, y, loss, model, data)
    return module, X, y


def _builtin_data(data: str, model: str, loss: str, n_samples: int, dtype: torch.dtype,
                  device: torch.device | str | None) -> tuple[Tensor, Tensor]:
    ds = toy_data(dtype=torch.float64) if data == "toy" else digits_data(
        n_samples, image=model == "cnn", one_hot=loss == "mse", dtype=torch.float64)
    return ds.X.to(dtype=dtype, device=device), ds.y.to(device=device)
