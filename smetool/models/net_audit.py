"""What smetool can model in a user's network, checked before a dropout SME is built.

The dropout SME of :class:`~smetool.models.NetDropoutModel` covers one kind of randomness:
multiplicative Bernoulli masks of ``nn.Dropout`` (elementwise) and ``nn.Dropout1d/2d/3d`` (one
value per channel), one mask per step and path, shared by the data. Everything else that makes the
output random, or different between training and evaluation, would be modelled as something else
without a word, so it is refused with one line naming the module and what to do:

* ``nn.AlphaDropout`` / ``nn.FeatureAlphaDropout`` (an affine correction of the dropped units,
  not a multiplicative mask);
* batch normalisation (``nn.BatchNorm1d/2d/3d``, ``nn.SyncBatchNorm``, and instance
  normalisation with ``track_running_stats=True``): in training mode the batch statistics couple
  the examples, in evaluation mode the running statistics are another network;
* channel dropout on an input whose layout is not torch's ``(N, C, …)`` of that layer
  (``nn.Dropout1d`` on ``(N, C)`` features masks whole examples in torch, not features);
* functional dropout and random calls in ``forward`` (``F.dropout``, ``F.alpha_dropout``,
  ``torch.rand``, ``Tensor.bernoulli_``, …), found by tracing one forward pass with a
  :class:`torch.overrides.TorchFunctionMode`: smetool draws the masks, so dropout must be an
  ``nn.Dropout`` module (the documented form; smetool replaces it by a mask slot);
* any other module whose output changes between ``train()`` and ``eval()`` or from one call to
  the next (found by running the network both ways, one module in training mode at a time).

Modules that pass are reported (:func:`describe_modules`): the dropout layers that are modelled
and, by type, the deterministic modules that run unchanged.
"""

from __future__ import annotations

import collections
import copy
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

__all__ = ["refuse_unmodelled", "check_channel_layout", "describe_modules", "CHANNEL_DROPOUTS"]

CHANNEL_DROPOUTS: dict[type[nn.Module], int] = {nn.Dropout1d: 2, nn.Dropout2d: 3, nn.Dropout3d: 4}
"""Channel dropout layers and the rank of one example's input torch masks per channel
(``(C, L)``, ``(C, H, W)``, ``(C, D, H, W)``)."""

_FIX_DROPOUT = "use an nn.Dropout module (smetool draws its masks) or remove it"
_FIX_NORM = "remove it, or use a per-example normalisation (nn.LayerNorm, nn.GroupNorm)"

_RANDOM_CALLS = frozenset({
    "dropout", "dropout_", "dropout1d", "dropout2d", "dropout3d", "alpha_dropout",
    "alpha_dropout_", "feature_alpha_dropout", "feature_alpha_dropout_", "feature_dropout",
    "feature_dropout_", "rand", "rand_like", "randn", "randn_like", "randint", "randint_like",
    "randperm", "bernoulli", "bernoulli_", "normal", "normal_", "uniform_", "multinomial",
    "poisson", "exponential_", "geometric_", "cauchy_", "log_normal_", "random_", "rrelu",
    "rrelu_", "gumbel_softmax", "native_dropout",
})
"""Names of torch functions and tensor methods that draw random numbers (or dropout masks)."""

_NORM_CALLS = frozenset({"batch_norm"})


def _modelled_elsewhere(module: nn.Module) -> str | None:
    """Why smetool cannot model ``module`` by its type (``None``: no objection by type)."""
    if isinstance(module, (nn.AlphaDropout, nn.FeatureAlphaDropout)):
        return (f"{type(module).__name__} rescales and shifts the kept units (not a multiplicative "
                f"mask), which smetool's dropout SME does not cover; {_FIX_DROPOUT}")
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        return (f"{type(module).__name__} normalises with batch statistics in training (they couple "
                f"the examples) and with running statistics in eval mode (another network); "
                f"smetool cannot model it: {_FIX_NORM}")
    if isinstance(module, nn.modules.instancenorm._InstanceNorm) and module.track_running_stats:
        return (f"{type(module).__name__} with track_running_stats=True uses running statistics in "
                f"eval mode; smetool cannot model it: {_FIX_NORM} (or track_running_stats=False)")
    return None


def _where(name: str) -> str:
    return f"module {name!r}" if name else "the network itself"


def _site(name: str) -> str:
    return f"forward() of module {name!r}" if name else "the network's own forward()"


class _CallTracer(TorchFunctionMode):
    """Records the random and batch-statistics calls of a forward pass, with the module path
    that made them (a stack kept by forward hooks)."""

    def __init__(self, stack: list[str]):
        super().__init__()
        self.stack = stack
        self.found: list[tuple[str, str]] = []

    def __torch_function__(self, func: Callable, types: Any, args: Any = (),
                           kwargs: Any = None) -> Any:
        name = getattr(func, "__name__", "")
        if name in _RANDOM_CALLS or name in _NORM_CALLS:
            self.found.append((self.stack[-1], name))
        return func(*args, **(kwargs or {}))


def _traced_calls(net: nn.Module, x: Tensor) -> list[tuple[str, str]]:
    stack = [""]
    hooks = []
    for name, sub in net.named_modules():
        if name:
            hooks.append(sub.register_forward_pre_hook(lambda m, a, n=name: stack.append(n)))
            hooks.append(sub.register_forward_hook(lambda m, a, o: stack.pop() and None))
    tracer = _CallTracer(stack)
    try:
        with torch.no_grad(), torch.random.fork_rng(devices=[]), tracer:
            net(x)
    finally:
        for hook in hooks:
            hook.remove()
    return tracer.found


def _outputs_differ(a: Tensor, b: Tensor) -> bool:
    return a.shape != b.shape or not torch.equal(a, b)


def _mode_dependent(net: nn.Module, x: Tensor) -> str | None:
    """The module whose output depends on ``train()``/``eval()`` or on the random state
    (``""`` for the root), or ``None``."""
    probe = copy.deepcopy(net).eval()
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        base = probe(x)
        torch.manual_seed(1)
        if _outputs_differ(base, probe(x)):
            return ""
        for name, sub in probe.named_modules():
            sub.train()
            for child in sub.children():
                child.eval()  # this module's own code in training mode, its children not
            torch.manual_seed(0)
            changed = _outputs_differ(base, probe(x))
            sub.eval()
            if changed:
                return name
    return None


def refuse_unmodelled(net: nn.Module, x: Tensor, slot_type: type[nn.Module]) -> None:
    """Raise unless every source of randomness or train/eval difference in ``net`` is a mask slot.

    Parameters
    ----------
    net : nn.Module
        The copy whose dropout layers are already replaced by ``slot_type`` modules.
    x : Tensor, (n, …)
        A few examples to run it on.
    slot_type : type
        The mask-slot class (deterministic by construction).

    Raises
    ------
    ValueError
        One line naming the module path, what it does, and what to do instead.
    """
    for name, sub in net.named_modules():
        why = _modelled_elsewhere(sub)
        if why is not None:
            raise ValueError(f"{_where(name)}: {why}.")
    for name, call in _traced_calls(net, x):
        if call in _NORM_CALLS:
            raise ValueError(f"{_site(name)} calls {call}(): batch statistics couple "
                             f"the examples and smetool cannot model them; {_FIX_NORM}.")
        raise ValueError(f"{_site(name)} calls {call}(): smetool draws the dropout "
                         f"masks itself and cannot model a random call inside forward "
                         f"(functional dropout is ignored in eval mode and breaks the batched "
                         f"gradients in training mode); {_FIX_DROPOUT}.")
    name = _mode_dependent(net, x)
    if name is not None:
        raise ValueError(f"{_where(name)}: the network's output differs between train() and "
                         f"eval() (or between two calls); smetool models only nn.Dropout masks "
                         f"and would silently simulate another network: make it deterministic "
                         f"and the same in both modes.")


def check_channel_layout(name: str, layer: nn.Module, example_shape: tuple[int, ...]) -> None:
    """Raise unless a channel dropout layer sees one example as torch's ``(C, …)`` of its rank.

    ``nn.Dropout1d`` on ``(N, C)`` features treats the batch as one unbatched ``(C, L)`` input
    and drops whole examples; ``nn.Dropout2d`` on ``(N, C, L)`` follows a deprecated 1-D rule.
    Per-channel masks model neither exactly.
    """
    rank = CHANNEL_DROPOUTS[type(layer)]
    if len(example_shape) != rank:
        layouts = {2: "(N, C, L)", 3: "(N, C, H, W)", 4: "(N, C, D, H, W)"}
        matching = {2: "nn.Dropout1d", 3: "nn.Dropout2d", 4: "nn.Dropout3d"}.get(len(example_shape))
        instead = "nn.Dropout (elementwise masks)" + (f" or {matching}" if matching else "")
        raise ValueError(
            f"module {name!r}: {type(layer).__name__} drops channels of {layouts[rank]} inputs, "
            f"but one example's input here has shape {example_shape}, where torch's masks differ "
            f"from per-channel masks; use {instead}.")


def describe_modules(net: nn.Module, slot_type: type[nn.Module],
                     layers: list[tuple[str, str]]) -> list[str]:
    """Lines for a person: the dropout layers modelled, and the other modules run unchanged.

    Parameters
    ----------
    net : nn.Module
        The copy with mask slots.
    slot_type : type
    layers : list of (str, str)
        ``(module path, description)`` of each modelled dropout layer.
    """
    lines = ["dropout modelled by smetool's masks (one per step and path, shared by the data):"]
    lines += [f"  {name}: {text}" for name, text in layers]
    counts = collections.Counter(
        type(sub).__name__ for name, sub in net.named_modules()
        if name and not isinstance(sub, slot_type) and not list(sub.children()))
    if counts:
        kinds = ", ".join(f"{kind} ×{n}" if n > 1 else kind for kind, n in sorted(counts.items()))
        lines.append(f"run unchanged (deterministic, same in train and eval mode): {kinds}")
    return lines
