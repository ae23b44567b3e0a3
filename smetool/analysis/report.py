"""A reproducible report of the dropout papers' analyses: :func:`analyze_dropout`.

From ``n_seeds`` initializations (one path each), the runner trains with dropout, with GD on the
explicit regularizer ``R_S + R_1`` and with plain GD, all batched, and measures at the end:

1. the implicit regularizers ``R_1`` and ``R_2 = (ε/4)(‖∇L_S‖² + tr Σ)`` (Zhang & Xu, TPAMI 2024);
2. the Hessian trace and top eigenvalues of ``R_S`` (flatness of the solution);
3. variance–flatness relations on random gradient data (dropout gradients at the final dropout
   iterate) and on random trajectory data (a window of further dropout steps): fitted slopes of
   variance against interval flatness and against Hessian flatness (ICLR 2024; Feng & Tu 2021);
4. the alignment ``α(H, Σ)`` along the dropout run, against its same-spectrum random baseline;
5. condensation: cosine similarities of the input weights, effective orientations, the
   orientation–amplitude scatter.

Each qualitative finding of the papers is stated as a :class:`Finding` with an explicit margin
derived from the seed-to-seed spread (a one-sided paired t bound at 99 %), so a reader sees
whether it holds on the problem at hand and by how much; nothing is tuned to make it hold.

References
----------
Z. Zhang, Z.-Q. J. Xu, "Implicit regularization of dropout", IEEE TPAMI 46(6), 2024.
Z. Zhang, H. Zhou, Z.-Q. J. Xu, "A variance principle explains why dropout finds flatter minima",
arXiv:2111.01022, 2021.
Z. Zhang, Y. Li, T. Luo, Z.-Q. J. Xu, "Stochastic modified equations and dynamics of dropout
algorithm", ICLR 2024.
Y. Feng, Y. Tu, PNAS 118(9), 2021.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from ..bibliography import ZHANG_2021_VARIANCE, ZHANG_2024_DROPOUT, ZHANG_XU_2024_IMPLICIT
from ..models.dropout_problem import DropoutProblem, default_problem
from .alignment import AlignmentResult, alignment_with_baseline
from .condensation import (
    OrientationClusters,
    cosine_similarity_matrix,
    effective_orientations,
    orientation_amplitude,
)
from .findings import T_CONFIDENCE, Finding, dropout_findings
from .flatness import HessianSpectrum, hessian_spectrum
from .hessian import loss_hessian
from .report_figures import write_figures
from .training import METHODS, ImplicitRegularization, Trajectory, implicit_regularization, train
from .variance import gradient_noise_covariance, trajectory_covariance
from .variance_flatness import variance_flatness

__all__ = ["Finding", "AlignmentTrace", "AnalysisReport", "analyze_dropout", "load_problem",
           "REFERENCES"]

REFERENCES = (ZHANG_XU_2024_IMPLICIT, ZHANG_2021_VARIANCE, ZHANG_2024_DROPOUT)
"""The papers whose analyses :func:`analyze_dropout` reproduces (for ``citation.bib``)."""

@dataclass(frozen=True)
class AlignmentTrace:
    """``α(H, Σ)`` along the dropout run, with its random-eigenbasis baseline.

    Attributes
    ----------
    steps : Tensor, (C,)
    alpha, baseline_mean, baseline_sd : Tensor, (C, P)
    """

    steps: Tensor
    alpha: Tensor
    baseline_mean: Tensor
    baseline_sd: Tensor

    def to_dict(self) -> dict:
        return {
            "steps": self.steps.tolist(),
            "alpha": self.alpha.tolist(),
            "baseline_mean": self.baseline_mean.tolist(),
            "baseline_sd": self.baseline_sd.tolist(),
        }

    def __repr__(self) -> str:
        return (
            f"AlignmentTrace(checkpoints={self.steps.numel()}, final α "
            f"{float(self.alpha[-1].mean()):.3f} vs baseline "
            f"{float(self.baseline_mean[-1].mean()):.3f} ± "
            f"{float(self.baseline_sd[-1].mean()):.3f})"
        )


@dataclass(frozen=True)
class AnalysisReport:
    """Everything :func:`analyze_dropout` measured (JSON via :meth:`to_dict`).

    Attributes
    ----------
    config : dict
        The run's settings (problem, learning rate, steps, seeds, …).
    trajectories : dict of str to Trajectory
        ``"dropout"``, ``"explicit"``, ``"gd"`` (recorded every ``record_every`` steps).
    spectra : dict of str to HessianSpectrum
        Hessian of ``R_S`` at each method's final iterates.
    implicit : dict of str to ImplicitRegularization
        At each method's final iterates.
    variance_flatness : dict of str to VarianceFlatness
        ``"gradient"`` and ``"trajectory"``.
    alignment : AlignmentTrace
        With the exact ``Σ`` along the dropout run.
    trajectory_alignment : AlignmentResult
        ``α`` between ``H`` and the trajectory covariance at the window mean.
    orientations : dict of str to OrientationClusters
    cosine : dict of str to Tensor, (P, m, m)
    amplitude, angle : dict of str to Tensor, (P, m)
        Orientation–amplitude scatter data (``angle`` only for 1-D inputs with bias).
    findings : dict of str to Finding
    files : tuple of str
        Written files (JSON and figures); empty without ``out_dir``.
    """

    config: dict
    trajectories: dict
    spectra: dict
    implicit: dict
    variance_flatness: dict
    alignment: AlignmentTrace
    trajectory_alignment: AlignmentResult
    orientations: dict
    cosine: dict
    amplitude: dict
    angle: dict
    findings: dict
    files: tuple = field(default=())

    def to_dict(self) -> dict:
        return {
            "config": self.config,
            "findings": {k: f.to_dict() for k, f in self.findings.items()},
            "trajectories": {k: t.to_dict() for k, t in self.trajectories.items()},
            "hessian": {k: s.to_dict() for k, s in self.spectra.items()},
            "implicit_regularization": {k: r.to_dict() for k, r in self.implicit.items()},
            "variance_flatness": {k: v.to_dict() for k, v in self.variance_flatness.items()},
            "alignment": self.alignment.to_dict(),
            "trajectory_alignment": self.trajectory_alignment.to_dict(),
            "orientations": {k: o.to_dict() for k, o in self.orientations.items()},
            "cosine_similarity": {k: c.tolist() for k, c in self.cosine.items()},
            "amplitude": {k: a.tolist() for k, a in self.amplitude.items()},
            "angle": {k: (None if a is None else a.tolist()) for k, a in self.angle.items()},
            "files": list(self.files),
        }

    def summary(self) -> str:
        """A few lines: one per finding."""
        lines = [f"dropout analysis ({self.config['problem']}):"]
        for f in self.findings.values():
            lines.append(f"  [{'x' if f.holds else ' '}] {f.claim}: {f.detail}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        held = sum(f.holds for f in self.findings.values())
        return (
            f"AnalysisReport(seeds={self.config['n_seeds']}, steps={self.config['steps']}, "
            f"lr={self.config['lr']:g}, findings held {held}/{len(self.findings)})"
        )


# --------------------------------------------------------------------------------- helpers
def load_problem(path: str | os.PathLike, *, width: int = 16, keep_prob: float = 0.9,
                 activation: str = "tanh", bias: bool = True, dtype: torch.dtype = torch.float64):
    """A :class:`DropoutProblem` from an ``.npz`` file with arrays ``X (n, d0)`` and ``y (n,)``.

    ``X`` may also be 1-D (one input feature); ``y`` of shape ``(n, 1)`` is flattened.

    Raises
    ------
    ValueError
        If the file lacks ``X`` or ``y``.
    """
    with np.load(Path(path)) as data:
        missing = [k for k in ("X", "y") if k not in data.files]
        if missing:
            raise ValueError(
                f"`{path}` must contain arrays 'X' and 'y'; missing {', '.join(missing)} "
                f"(found {', '.join(data.files) or 'nothing'})."
            )
        X = torch.as_tensor(np.asarray(data["X"], dtype=float), dtype=dtype)
        y = torch.as_tensor(np.asarray(data["y"], dtype=float), dtype=dtype)
    if X.ndim == 1:
        X = X.unsqueeze(1)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    return DropoutProblem(X, y, width=width, keep_prob=keep_prob, activation=activation, bias=bias)


def _with_keep_prob(problem, keep_prob: float):
    X = problem.X[:, :-1] if problem.bias else problem.X
    return DropoutProblem(
        X, problem.y, width=problem.width, keep_prob=keep_prob,
        activation=problem.net.activation, bias=problem.bias,
    )


def _initial_params(problem, theta0, n_seeds, seed, a_std, w_std, dtype, device) -> Tensor:
    D = problem.n_params
    if theta0 is None:
        rows = [
            problem.net.init_params(
                a_std=a_std, w_std=w_std, generator=torch.Generator().manual_seed(seed + s),
                dtype=dtype,
            )
            for s in range(n_seeds)
        ]
        return torch.stack(rows).to(device)
    theta0 = torch.as_tensor(theta0).to(dtype=dtype, device=device)
    if theta0.ndim == 1:
        theta0 = theta0.unsqueeze(0).expand(n_seeds, -1)
    if theta0.ndim != 2 or theta0.shape[1] != D or theta0.shape[0] not in (1, n_seeds):
        raise ValueError(
            f"`theta0` must have shape ({D},), (1, {D}) or (n_seeds={n_seeds}, {D}); "
            f"got {tuple(theta0.shape)}."
        )
    return theta0.expand(n_seeds, -1).clone()


# --------------------------------------------------------------------------------- runner
def analyze_dropout(
    problem=None,
    theta0: Tensor | None = None,
    *,
    lr: float = 0.2,
    steps: int = 20_000,
    n_seeds: int = 8,
    keep_prob: float | None = None,
    out_dir: str | os.PathLike | None = None,
    progress: bool = True,
    seed: int = 0,
    window: int = 1000,
    n_components: int = 10,
    n_grad_samples: int = 2000,
    n_checkpoints: int = 20,
    n_baseline: int = 64,
    level: float = 2.0,
    threshold: float = 0.95,
    width: int = 16,
    a_std: float = 0.2,
    w_std: float = 1.0,
    record_every: int | None = None,
    methods: tuple[str, ...] | str = METHODS,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
) -> AnalysisReport:
    """Run dropout, GD on ``R_S + R_1`` and GD from the same initializations and analyse them.

    Parameters
    ----------
    problem : DropoutProblem, str or path, optional
        The task; ``None`` is :func:`smetool.algorithms.dropout_problem.default_problem`; a path
        is an ``.npz`` file with arrays ``X (n, d0)`` and ``y (n,)`` (see :func:`load_problem`,
        with ``width`` neurons and a tanh activation).
    theta0 : Tensor, optional
        ``(D,)`` (every seed starts there; seeds differ by their dropout masks only) or
        ``(n_seeds, D)``. Default: seed ``s`` draws ``a ~ N(0, a_std²)``, ``W ~ N(0, w_std²)``
        from ``torch.Generator().manual_seed(seed + s)`` — for the default problem and
        ``seed=0``, seed 0 is exactly the default ``θ0``.
    lr : float
        Learning rate ``ε`` of all three methods.
    steps : int
        Training steps of each method. The default (horizon ``lr · steps = 4000``) is long
        enough for condensation to show on the default problem; the other findings already
        hold at 4000 steps.
    n_seeds : int
        Paths (initializations), ≥ 2 (the findings' margins need a spread).
    keep_prob : float, optional
        ``p`` (probability of **keeping** a neuron); default: the problem's (0.9 for the
        default problem and for ``.npz`` data).
    out_dir : str or path, optional
        Where to write ``report.json`` and the PNG figures; nothing is written without it.
    progress : bool
        Show a tqdm progress bar over all training steps.
    seed : int
        Seeds the initializations (see ``theta0``), the dropout masks (``seed + 1000``) and the
        other random draws (``seed + 2000``).
    window : int
        Further dropout steps forming the random trajectory data.
    n_components : int
        Principal directions analysed for variance–flatness.
    n_grad_samples : int
        Dropout gradients per seed forming the random gradient data.
    n_checkpoints : int
        Points along the dropout run where ``α`` is evaluated.
    n_baseline : int
        Haar rotations per point for the ``α`` baseline.
    level : float
        ``c`` of the interval flatness.
    threshold : float
        Cosine threshold of the effective orientations.
    width : int
        Neurons, for an ``.npz`` problem.
    a_std, w_std : float
        Initialization scales when ``theta0`` is not given.
    record_every : int, optional
        Recording interval of the loss curves; default ``max(1, steps // n_checkpoints)``.
    methods : tuple of str or str
        Training rules to run (comma-separated in a string); must include ``"dropout"`` and
        ``"gd"``. ``"explicit"`` (GD on ``R_S + R_1``) can be left out to save time.
    dtype, device
        Of the computation (default float64 on the CPU).

    Returns
    -------
    AnalysisReport

    Raises
    ------
    ValueError
        On invalid arguments (each named in the message).

    References
    ----------
    Z. Zhang, Z.-Q. J. Xu, IEEE TPAMI 46(6), 2024; Z. Zhang, H. Zhou, Z.-Q. J. Xu,
    arXiv:2111.01022; Z. Zhang, Y. Li, T. Luo, Z.-Q. J. Xu, ICLR 2024.

    Examples
    --------
    >>> report = analyze_dropout(steps=200, n_seeds=2, window=50, n_grad_samples=100,
    ...                          progress=False)  # doctest: +SKIP
    >>> print(report.summary())  # doctest: +SKIP
    """
    for name, val, lo in (("steps", steps, 1), ("n_seeds", n_seeds, 2), ("window", window, 2),
                          ("n_components", n_components, 1), ("n_grad_samples", n_grad_samples, 2),
                          ("n_checkpoints", n_checkpoints, 1), ("n_baseline", n_baseline, 2)):
        if isinstance(val, bool) or int(val) != val or val < lo:
            raise ValueError(f"`{name}` must be an integer ≥ {lo}; got {val!r}.")
    if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
        raise ValueError(f"`lr` must be a positive finite number; got {lr!r}.")
    if isinstance(methods, str):
        methods = tuple(m.strip() for m in methods.split(",") if m.strip())
    methods = tuple(methods)
    unknown = [m for m in methods if m not in METHODS]
    if unknown or "dropout" not in methods or "gd" not in methods:
        raise ValueError(
            f"`methods` must be a subset of {', '.join(METHODS)} containing dropout and gd; "
            f"got {', '.join(methods) or 'nothing'}."
        )
    methods = tuple(m for m in METHODS if m in methods)  # canonical order

    if problem is None:
        problem, _ = default_problem(dtype)
        name = "default"
    elif isinstance(problem, (str, os.PathLike)):
        name = str(problem)
        problem = load_problem(problem, width=width, keep_prob=keep_prob or 0.9, dtype=dtype)
    elif isinstance(problem, DropoutProblem):
        name = repr(problem)
    else:
        raise TypeError(
            f"`problem` must be a DropoutProblem, a path to an .npz file or None; got "
            f"{type(problem).__name__}."
        )
    if keep_prob is not None and keep_prob != problem.keep_prob:
        problem = _with_keep_prob(problem, keep_prob)
    P = int(n_seeds)
    inits = _initial_params(problem, theta0, P, int(seed), a_std, w_std, dtype, device)
    n_checkpoints = min(int(n_checkpoints), int(steps))
    every = record_every or max(1, int(steps) // n_checkpoints)
    gen_masks = torch.Generator(device=inits.device).manual_seed(int(seed) + 1000)
    gen_other = torch.Generator(device=inits.device).manual_seed(int(seed) + 2000)
    X = problem.X.to(dtype=dtype, device=inits.device)
    y = problem.y.to(dtype=dtype, device=inits.device)
    net = problem.net

    total = len(methods) * int(steps) + int(window)
    with tqdm(total=total, disable=not progress, desc="analyze dropout", unit="step") as bar:
        trajs: dict[str, Trajectory] = {}
        for method in methods:
            bar.set_postfix_str(method)
            trajs[method] = train(
                problem, inits, method=method, lr=lr, steps=int(steps), generator=gen_masks,
                record_every=every, progress=bar.update,
            )
        bar.set_postfix_str("window")
        win = train(
            problem, trajs["dropout"].final, method="dropout", lr=lr, steps=int(window),
            generator=gen_masks, record_every=1, progress=bar.update,
        )

    # 1–2: implicit regularizers and flatness of the solutions
    spectra: dict[str, HessianSpectrum] = {}
    implicit: dict[str, ImplicitRegularization] = {}
    for method, tr in trajs.items():
        spectra[method] = hessian_spectrum(loss_hessian(net, tr.final, X, y), min(5, net.n_params))
        implicit[method] = implicit_regularization(problem, tr.final, lr)

    # 3: variance–flatness on random gradient data and random trajectory data
    k = min(int(n_components), net.n_params)
    center_g = trajs["dropout"].final
    grad_cov = gradient_noise_covariance(problem, center_g, int(n_grad_samples), gen_other)
    vf_grad = variance_flatness(
        grad_cov.covariance, center_g, problem.loss, loss_hessian(net, center_g, X, y),
        n_components=k, level=level,
    )
    traj_cov = trajectory_covariance(win.theta[1:])
    center_t = traj_cov.mean
    H_t = loss_hessian(net, center_t, X, y)
    vf_traj = variance_flatness(
        traj_cov.covariance, center_t, problem.loss, H_t, n_components=k, level=level
    )
    traj_align = alignment_with_baseline(H_t, traj_cov.covariance, gen_other, n_baseline=n_baseline)

    # 4: alignment along the dropout run, with the exact noise covariance
    dr = trajs["dropout"]
    idx = torch.unique(torch.linspace(0, dr.steps.numel() - 1, n_checkpoints + 1).round().long())
    idx = idx[idx > 0] if idx.numel() > 1 else idx  # Σ at θ0 is included only for a 1-point run
    al = [
        alignment_with_baseline(
            loss_hessian(net, dr.theta[i], X, y), problem.noise_covariance(dr.theta[i]), gen_other,
            n_baseline=n_baseline,
        )
        for i in idx.tolist()
    ]
    trace = AlignmentTrace(
        steps=dr.steps[idx],
        alpha=torch.stack([a.alpha for a in al]),
        baseline_mean=torch.stack([a.baseline_mean for a in al]),
        baseline_sd=torch.stack([a.baseline_sd for a in al]),
    )

    # 5: condensation
    orient: dict[str, OrientationClusters] = {}
    cosine, amplitude, angle = {}, {}, {}
    for method in ("initial",) + methods:
        th = inits if method == "initial" else trajs[method].final
        orient[method] = effective_orientations(net, th, threshold=threshold)
        cosine[method] = cosine_similarity_matrix(net, th)
        oa = orientation_amplitude(net, th)
        amplitude[method], angle[method] = oa.amplitude, oa.angle

    findings = dropout_findings(spectra, vf_grad, vf_traj, al[-1], orient)
    config = {
        "problem": name,
        "problem_repr": repr(problem),
        "lr": float(lr),
        "steps": int(steps),
        "n_seeds": P,
        "keep_prob": problem.keep_prob,
        "seed": int(seed),
        "window": int(window),
        "n_components": k,
        "n_grad_samples": int(n_grad_samples),
        "n_checkpoints": int(n_checkpoints),
        "n_baseline": int(n_baseline),
        "level": float(level),
        "threshold": float(threshold),
        "orientation_method": orient["dropout"].method,
        "antipodal": orient["dropout"].antipodal,
        "hessian_of": "R_S",
        "margin": f"one-sided paired t bound at {T_CONFIDENCE:.0%} over seeds",
        "theta0": "given" if theta0 is not None else f"N(0, {a_std}²) / N(0, {w_std}²) by seed",
        "methods": list(methods),
        "dtype": str(dtype),
    }
    report = AnalysisReport(
        config=config, trajectories=trajs, spectra=spectra, implicit=implicit,
        variance_flatness={"gradient": vf_grad, "trajectory": vf_traj}, alignment=trace,
        trajectory_alignment=traj_align, orientations=orient, cosine=cosine,
        amplitude=amplitude, angle=angle, findings=findings,
    )
    if out_dir is None:
        return report
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = write_figures(report, out)
    report = AnalysisReport(**{**report.__dict__, "files": tuple(str(f) for f in files)})
    json_path = out / "report.json"
    report = AnalysisReport(**{**report.__dict__, "files": report.files + (str(json_path),)})
    json_path.write_text(json.dumps(report.to_dict(), indent=1, allow_nan=True))
    return report
