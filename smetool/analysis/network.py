"""The dropout papers' findings on any network: :func:`analyze_network`.

From ``P`` initializations (one path each), the runner trains with full-batch dropout and with
gradient descent (GD) on ``R_S`` from the same starting points, batched over paths, then runs a
window of further dropout steps and measures, at the end:

1. the Hessian of ``R_S`` at both end points — dense by forward-over-reverse differentiation when
   ``D ≤ dense_max``, otherwise by Hessian–vector products: Lanczos for the top eigenvalues and
   Hutch++ for the trace and ``‖H‖_F`` (:mod:`smetool.models.spectral`);
2. variance–flatness on **random gradient data** (``n_grad_samples`` dropout gradients at the final
   dropout iterate) and on **random trajectory data** (the last ``T`` iterates of the window, for
   each ``T`` in ``windows``): per-seed slopes of the variance along the principal directions
   against interval flatness (level ``c L``, ``c = 2``) and Hessian flatness ``uᵀHu``;
3. the alignment ``α(H, Σ̂)`` of the Hessian with the sampled noise covariance, against the exact
   mean and spread of its random-eigenbasis baseline;
4. condensation: effective orientations of the first layer's units (dropout vs GD);
5. for each trajectory window, how the variance along its principal directions grows with the
   window length (``β = log₁₀(v_T / v_{T/10})``: 0 for a stationary spread, 1 for diffusion,
   2 for a drift), the diagnostic of the trajectory relations.

Every finding gets a three-way verdict from the seed-to-seed interval and a negative control
(:mod:`.verdicts`).

References
----------
Z. Zhang, Y. Li, T. Luo, Z.-Q. J. Xu, "Stochastic modified equations and dynamics of dropout
algorithm", ICLR 2024; Z. Zhang, Z.-Q. J. Xu, "Implicit regularization of dropout", IEEE TPAMI
46(6), 2024; Z. Zhang, H. Zhou, Z.-Q. J. Xu, arXiv:2111.01022, 2021; Y. Feng, Y. Tu, PNAS 118(9),
2021.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from torch import Tensor
from tqdm.auto import tqdm

from ..bibliography import (
    FENG_TU_2021,
    ZHANG_2021_VARIANCE,
    ZHANG_2024_DROPOUT,
    ZHANG_XU_2024_IMPLICIT,
)
from ..checks import check_lr, check_positive_int, check_seed
from ..models.spectral import dense_matvec, hutchpp_trace, lanczos_top
from .alignment import AlignmentResult, alignment_from_samples, rotated_alignment
from .condensation import OrientationClusters, unit_orientations
from .network_figures import write_network_figures
from .subjects import Subject
from .trajectory_windows import detrend, variance_growth
from .variance_flatness import VarianceFlatness, variance_flatness_from_samples
from .verdicts import Verdict, decide, permuted_slopes, sign_flipped

__all__ = ["HessianSummary", "hessian_summary", "NetworkReport", "analyze_network",
           "NETWORK_REFERENCES"]

NETWORK_REFERENCES = (ZHANG_2024_DROPOUT, ZHANG_XU_2024_IMPLICIT, ZHANG_2021_VARIANCE, FENG_TU_2021)
"""The papers whose findings :func:`analyze_network` checks (for ``citation.bib``)."""


@dataclass(frozen=True)
class HessianSummary:
    """Trace, Frobenius norm and top eigenvalues of ``∇²R_S`` per path.

    Attributes
    ----------
    trace, trace_stderr, frobenius, frobenius_stderr : Tensor, (P,)
        Standard errors are 0 for the dense method.
    top : Tensor, (P, k)
        Largest eigenvalues, decreasing.
    method : {"dense", "lanczos"}
    """

    trace: Tensor
    trace_stderr: Tensor
    frobenius: Tensor
    frobenius_stderr: Tensor
    top: Tensor
    method: str

    def to_dict(self) -> dict:
        return {"trace": self.trace.tolist(), "trace_stderr": self.trace_stderr.tolist(),
                "frobenius": self.frobenius.tolist(),
                "frobenius_stderr": self.frobenius_stderr.tolist(), "top": self.top.tolist(),
                "method": self.method}


def hessian_summary(subject: Subject, theta: Tensor, *, k: int = 5, dense_max: int = 2000,
                    generator: torch.Generator, n_sketch: int = 20, n_probes: int = 40):
    """:class:`HessianSummary` of ``∇²R_S`` at ``θ (P, D)`` and a Hessian–vector product.

    Dense when ``D ≤ dense_max`` (exact); otherwise Lanczos (top ``k``) and Hutch++ for ``tr H``
    and ``‖H‖_F² = tr H²`` (with standard errors; the norm's by the delta method).

    Returns
    -------
    summary : HessianSummary
    hvp : callable
        ``V (P, s, D) -> H V`` at ``θ`` (from the dense matrix when there is one).
    """
    D = subject.n_params
    k = min(check_positive_int(k, "k"), D)
    if D <= dense_max:
        H = subject.hessian(theta)
        top = torch.linalg.eigvalsh(H).flip(-1)[:, :k]
        zero = torch.zeros(theta.shape[0], dtype=theta.dtype)
        return HessianSummary(torch.diagonal(H, dim1=1, dim2=2).sum(-1), zero,
                              torch.linalg.matrix_norm(H), zero, top, "dense"), dense_matvec(H)

    def hvp(V: Tensor) -> Tensor:
        return subject.hvp(theta, V)

    P = theta.shape[0]
    dt, dev = theta.dtype, theta.device
    top = lanczos_top(hvp, P, D, k, tol=1e-6, max_iter=min(D, 4 * k + 40), generator=generator,
                      dtype=dt, device=dev).eigenvalues
    tr = hutchpp_trace(hvp, P, D, n_sketch=n_sketch, n_probes=n_probes, generator=generator,
                       dtype=dt, device=dev)
    sq = hutchpp_trace(lambda V: hvp(hvp(V)), P, D, n_sketch=n_sketch, n_probes=n_probes,
                       generator=generator, dtype=dt, device=dev)
    frob = sq.trace.clamp_min(0.0).sqrt()
    return HessianSummary(tr.trace, tr.stderr, frob, sq.stderr / (2 * frob), top, "lanczos"), hvp


@dataclass(frozen=True)
class NetworkReport:
    """Everything :func:`analyze_network` measured (JSON via :meth:`to_dict`).

    Attributes
    ----------
    config : dict
    loss : dict
        ``"dropout"``, ``"gd"``: ``{"steps": (K,), "loss": (K, P)}`` (``R_S`` along training).
    hessian : dict of str to HessianSummary
        At the dropout and GD end points.
    variance_flatness : dict of str to VarianceFlatness
        ``"gradient"`` and ``"trajectory@T"`` per window.
    growth : dict of str to Tensor
        ``"trajectory@T"``: :func:`variance_growth` of its principal directions, ``(P, K)``.
    alignment : AlignmentResult
        ``α(H, Σ̂)`` at the dropout end point, exact baseline.
    alignment_control : Tensor, (P,)
        ``α`` of ``Σ̂`` in one random eigenbasis per seed.
    orientations : dict of str to OrientationClusters
        ``"initial"``, ``"dropout"``, ``"gd"``.
    findings, controls : dict of str to Verdict
        Each finding and its negative control (same name).
    final : dict of str to Tensor
        ``"dropout"``, ``"gd"``: the end points ``(P, D)`` (not in the JSON).
    files : tuple of str
    """

    config: dict
    loss: dict
    hessian: dict
    variance_flatness: dict
    growth: dict
    alignment: AlignmentResult
    alignment_control: Tensor
    orientations: dict
    findings: dict
    controls: dict
    final: dict = field(default_factory=dict)
    files: tuple = field(default=())

    def to_dict(self) -> dict:
        return {
            "config": self.config,
            "findings": {k: v.to_dict() for k, v in self.findings.items()},
            "controls": {k: v.to_dict() for k, v in self.controls.items()},
            "loss": {k: {"steps": v["steps"].tolist(), "loss": v["loss"].tolist()}
                     for k, v in self.loss.items()},
            "hessian": {k: v.to_dict() for k, v in self.hessian.items()},
            "variance_flatness": {k: v.to_dict() for k, v in self.variance_flatness.items()},
            "growth": {k: v.tolist() for k, v in self.growth.items()},
            "alignment": self.alignment.to_dict(),
            "alignment_control": self.alignment_control.tolist(),
            "orientations": {k: v.to_dict() for k, v in self.orientations.items()},
            "files": list(self.files),
        }

    def summary(self) -> str:
        """One line per finding: verdict, numbers, and the control's verdict."""
        lines = [f"dropout findings on {self.config['network']}:"]
        for name, f in self.findings.items():
            lines.append(f"  [{f.verdict:>12}] {f.claim}: {f.detail} "
                         f"(control: {self.controls[name].verdict})")
        return "\n".join(lines)

    def __repr__(self) -> str:
        counts = {v: sum(f.verdict == v for f in self.findings.values())
                  for v in ("holds", "fails", "inconclusive")}
        return (f"NetworkReport({self.config['network']}, seeds={self.config['n_seeds']}, "
                f"steps={self.config['steps']}, " + ", ".join(f"{k} {n}" for k, n in counts.items())
                + ")")


def _train(subject: Subject, theta: Tensor, method: str, lr: float, steps: int,
           generator: torch.Generator, every: int, bar, record_all: bool = False):
    rec_steps, rec_loss, rec_theta = [0], [subject.loss(theta)], []
    for k in range(1, steps + 1):
        theta = subject.dropout_step(theta, lr, generator) if method == "dropout" \
            else subject.gd_step(theta, lr)
        if record_all:
            rec_theta.append(theta)
        if k % every == 0 or k == steps:
            if not bool(torch.isfinite(theta).all()):
                raise ValueError(f"{method} training produced non-finite parameters by step {k} "
                                 f"(lr={lr:g}); lower `lr`.")
            rec_steps.append(k)
            rec_loss.append(subject.loss(theta))
        bar.update(1)
    record = {"steps": torch.tensor(rec_steps), "loss": torch.stack(rec_loss)}
    return theta, record, (torch.stack(rec_theta) if record_all else None)


def analyze_network(subject: Subject, inits: Tensor, *, lr: float = 0.2, steps: int = 6000,
                    windows: tuple[int, ...] = (100, 1000), detrended: bool = True,
                    n_grad_samples: int = 256,
                    n_components: int = 10, level: float = 2.0, seed: int = 0,
                    dense_max: int = 2000, threshold: float = 0.95, n_checkpoints: int = 40,
                    progress: bool = True, out_dir: str | os.PathLike | None = None,
                    config: dict | None = None) -> NetworkReport:
    """Train dropout and GD from ``inits`` and decide the papers' findings (module docstring).

    Parameters
    ----------
    subject : Subject
        The network (:func:`~smetool.analysis.subjects.builtin_subject`, or a
        :class:`~smetool.analysis.subjects.NetSubject` of your own ``nn.Module``).
    inits : Tensor, (P, D)
        One initialization per seed, ``P ≥ 2`` (the verdicts need a spread; use ≥ 5).
    lr : float
        Learning rate of both methods.
    steps : int
        Training steps of each method.
    windows : tuple of int
        Lengths ``T`` (steps, ≥ 20 each) of the trajectory windows, all taken from one window of
        ``max(windows)`` dropout steps after training.
    detrended : bool
        Also analyse each window with its linear trend removed (:func:`detrend`).
    n_grad_samples : int
        Dropout gradients per seed (random gradient data; ≥ n_components + 1).
    n_components : int
        Principal directions per seed.
    level : float
        ``c`` of the interval flatness (2 as in Zhang et al., ICLR 2024; ``e`` in Feng & Tu).
    seed : int
        Masks use ``seed + 1000``, the other draws ``seed + 2000``.
    dense_max : int
        Largest ``D`` for a dense Hessian.
    threshold : float
        Cosine threshold of the effective orientations.
    n_checkpoints : int
        Loss records along training.
    progress : bool
        A tqdm bar over all steps.
    out_dir : path, optional
        Where to write ``report.json`` and the figures.
    config : dict, optional
        Extra settings recorded in the report (e.g. how the subject was built).

    Returns
    -------
    NetworkReport

    Raises
    ------
    ValueError
        On invalid arguments (each named) or a training run that diverges.

    References
    ----------
    Z. Zhang, Y. Li, T. Luo, Z.-Q. J. Xu, ICLR 2024; Y. Feng, Y. Tu, PNAS 2021.
    """
    lr = check_lr(lr)
    steps, seed = check_positive_int(steps, "steps"), check_seed(seed)
    windows = tuple(sorted({check_positive_int(w, "windows") for w in windows}))
    if not windows or windows[0] < 20:
        raise ValueError(f"`windows` must be step counts ≥ 20; got {windows!r}.")
    K = check_positive_int(n_components, "n_components")
    if K >= windows[0] or n_grad_samples <= K:
        raise ValueError(f"`n_components` must be below the shortest window ({windows[0]}) and "
                         f"below n_grad_samples ({n_grad_samples}); got {K}.")
    if inits.ndim != 2 or inits.shape[1] != subject.n_params or inits.shape[0] < 2:
        raise ValueError(f"`inits` must have shape (P ≥ 2, {subject.n_params}); got "
                         f"{tuple(inits.shape)}.")
    P, W = inits.shape[0], max(windows)
    gen_masks = torch.Generator().manual_seed(seed + 1000)
    gen = torch.Generator().manual_seed(seed + 2000)
    every = max(1, steps // check_positive_int(n_checkpoints, "n_checkpoints"))
    clock = [time.perf_counter()]
    with tqdm(total=2 * steps + W, disable=not progress, desc=f"analyze {subject.label}",
              unit="step") as bar:
        bar.set_postfix_str("dropout")
        th_drop, loss_drop, _ = _train(subject, inits, "dropout", lr, steps, gen_masks, every, bar)
        bar.set_postfix_str("gd")
        th_gd, loss_gd, _ = _train(subject, inits, "gd", lr, steps, gen_masks, every, bar)
        bar.set_postfix_str("window")
        _, _, window = _train(subject, th_drop, "dropout", lr, W, gen_masks, W, bar, True)

    clock.append(time.perf_counter())
    hess, hvp_drop = {}, None
    for name, th in (("dropout", th_drop), ("gd", th_gd)):
        hess[name], fn = hessian_summary(subject, th, dense_max=dense_max, generator=gen)
        hvp_drop = fn if name == "dropout" else hvp_drop

    vf: dict[str, VarianceFlatness] = {}
    growth: dict[str, Tensor] = {}
    G = subject.gradient_samples(th_drop, n_grad_samples, gen)
    vf["gradient"] = variance_flatness_from_samples(
        G, th_drop, subject.loss, subject.hvp, n_components=K, level=level)
    for T in windows:
        for flat in (False, True) if detrended else (False,):
            key = f"trajectory@{T}" + ("-detrended" if flat else "")
            part = detrend(window[-T:]) if flat else window[-T:]
            vf[key] = variance_flatness_from_samples(
                part.transpose(0, 1), None, subject.loss, subject.hvp, n_components=K, level=level)
            growth[key] = variance_growth(part, vf[key].components.directions)
    align = alignment_from_samples(G, hvp_drop, hess["dropout"].trace, hess["dropout"].frobenius)
    control_alpha = rotated_alignment(G, hvp_drop, hess["dropout"].frobenius, gen)

    orient: dict[str, OrientationClusters] = {}
    for name, th in (("initial", inits), ("dropout", th_drop), ("gd", th_gd)):
        Wu, amp = subject.units(th)
        orient[name] = unit_orientations(Wu, amp, threshold=threshold, antipodal=subject.antipodal)

    clock.append(time.perf_counter())
    findings, controls = _decide(hess, vf, growth, align, control_alpha, orient, gen)
    cfg = {"network": subject.label, "n_params": subject.n_params, "n_seeds": P, "lr": lr,
           "steps": steps, "windows": list(windows), "detrended": bool(detrended),
           "n_grad_samples": int(n_grad_samples),
           "n_components": K, "level": float(level), "seed": seed,
           "hessian_method": hess["dropout"].method, "threshold": float(threshold),
           "antipodal": subject.antipodal,
           "seconds": {"training": round(clock[1] - clock[0], 1),
                       "measurements": round(clock[2] - clock[1], 1)}, **(config or {})}
    report = NetworkReport(cfg, {"dropout": loss_drop, "gd": loss_gd}, hess, vf, growth, align,
                           control_alpha, orient, findings, controls,
                           {"dropout": th_drop, "gd": th_gd})
    return report if out_dir is None else _write(report, Path(out_dir))


def _slopes_detail(vf: VarianceFlatness, which: str) -> str:
    pooled = vf.pooled_interval if which == "interval" else vf.pooled_hessian
    left = vf.interval_unbounded if which == "interval" else vf.hessian_nonpositive
    if pooled is None:
        return "no pooled fit"
    return (f"pooled slope {pooled.slope:+.3f} [{pooled.ci_low:+.3f}, {pooled.ci_high:+.3f}] "
            f"({pooled.n_points} points, {left} left out)")


def _decide(hess, vf, growth, align, control_alpha, orient, gen):
    findings: dict[str, Verdict] = {}
    controls: dict[str, Verdict] = {}

    def add(name, claim, values, sign, detail, control_values):
        findings[name] = decide(name, claim, values, sign, detail=detail)
        controls[name] = decide(name, f"negative control of: {claim}", control_values, sign)

    d = hess["dropout"].trace - hess["gd"].trace
    add("flatter", "dropout ends with a smaller Hessian trace than GD (same initializations)",
        d, -1, f"tr H dropout {float(hess['dropout'].trace.mean()):.4g} vs GD "
        f"{float(hess['gd'].trace.mean()):.4g}; per-seed difference", sign_flipped(d, gen))
    for key, data in [("gradient", vf["gradient"])] + [
            (k, v) for k, v in vf.items() if k.startswith("trajectory@")]:
        T, _, tag = key[11:].partition("-")
        kind = "gradient-noise" if key == "gradient" else \
            f"trajectory ({T}-step window{', detrended' if tag else ''})"
        extra = "" if key == "gradient" else (
            f"; growth exponent β of PC1 {float(growth[key][:, 0].median()):.2f}, median over "
            f"PCs {float(growth[key].median()):.2f}")
        var = data.components.variances
        add(f"variance_interval_{key}", f"{kind} variance decreases with interval flatness",
            data.slopes("interval"), -1, _slopes_detail(data, "interval") + extra,
            permuted_slopes(data.interval, var, gen))
        add(f"variance_hessian_{key}", f"{kind} variance increases with Hessian flatness",
            data.slopes("hessian"), +1, _slopes_detail(data, "hessian") + extra,
            permuted_slopes(data.hessian, var, gen))
    gap = align.alpha - align.baseline_mean
    z = gap / align.baseline_sd
    add("alignment", "α(H, Σ) is above its random-eigenbasis baseline", gap, +1,
        f"α {float(align.alpha.mean()):.3f} vs baseline {float(align.baseline_mean.mean()):.3f} ± "
        f"{float(align.baseline_sd.mean()):.3f} (min z {float(z.min()):.1f}); α − baseline",
        control_alpha - align.baseline_mean)
    dc = (orient["dropout"].count - orient["gd"].count).double()
    add("condensation", "dropout yields fewer effective orientations than GD", dc, -1,
        f"orientations dropout {orient['dropout'].count.tolist()}, GD "
        f"{orient['gd'].count.tolist()}, initial {orient['initial'].count.tolist()}; difference",
        sign_flipped(dc, gen))
    return findings, controls


def _write(report: NetworkReport, out: Path) -> NetworkReport:
    out.mkdir(parents=True, exist_ok=True)
    files = [str(f) for f in write_network_figures(report, out)] + [str(out / "report.json")]
    report = replace(report, files=tuple(files))
    (out / "report.json").write_text(json.dumps(report.to_dict(), indent=1, allow_nan=True))
    return report
