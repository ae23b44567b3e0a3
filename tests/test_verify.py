"""verify(): the weak-order test of an SME against its discrete algorithm, and its validation."""

from __future__ import annotations

import json

import pytest
import torch

import smetool
from smetool import verify
from smetool.algorithms.dropout import DropoutAlgorithm
from smetool.algorithms.registry import plugins


def _small():
    return DropoutAlgorithm.verification_default(width=4, n_points=6)


# ----------------------------------------------------------------------------- the main claim
def test_dropout_order_one_sme_has_weak_order_one_on_the_default_problem():
    """The default run of ``smetool verify dropout`` (fixed seed 0, 10,000 paths per side).

    Every error point must be resolved (|e| ≥ 3 SE: no point may be excluded from the fit), the
    95 % CI of the fitted slope must contain 1 for every default test function, and the SME
    solver's own error (coupled h vs 2h) must be a small part of every error.
    """
    spec = plugins()["dropout"]
    algorithm = spec.build(dtype=torch.float64, device="cpu")
    result = verify(algorithm, spec.lrs, horizon=spec.horizon, n_paths=spec.n_paths,
                    steps_per_lr=spec.steps_per_lr, order=1, seed=0, progress=False)
    assert not result.unfitted, result.table()
    assert set(result.fits) == set(algorithm.test_functions())
    for name, fit in result.fits.items():
        assert all(fit.used), f"{name}: a point is below 3 SE\n{result.table()}"
        assert fit.contains(1.0), f"{name}: CI {fit.ci} excludes 1\n{result.table()}"
    for row in result.rows:
        assert abs(row.error) >= 3 * row.stderr
        assert abs(row.solver_error) <= 0.25 * abs(row.error), result.table()


# ----------------------------------------------------------------------------- result object
def test_result_object_json_table_and_plot(tmp_path):
    result = verify(_small(), [0.1, 0.05], horizon=0.2, n_paths=200, seed=1, progress=False,
                    min_snr=0.0)
    d = result.to_dict()
    json.dumps(d)
    assert d["algorithm"] == "dropout" and d["order"] == 1
    row = d["rows"][0]
    assert {"lr", "test_function", "discrete_mean", "sme_mean", "error", "stderr"} <= set(row)
    assert {"test_function", "slope", "ci"} <= set(d["fits"][0])
    assert len(d["fits"][0]["ci"]) == 2
    assert "slope" in result.table() and "VerifyResult(" in repr(result)
    path = tmp_path / "result.json"
    result.to_json(str(path))
    assert json.loads(path.read_text())["rows"]
    pytest.importorskip("matplotlib")
    result.plot(str(tmp_path / "errors.png"))
    assert (tmp_path / "errors.png").stat().st_size > 0


def test_same_seed_same_result():
    a = verify(_small(), [0.1, 0.05], horizon=0.2, n_paths=50, seed=3, progress=False,
               min_snr=0.0)
    b = verify(_small(), [0.1, 0.05], horizon=0.2, n_paths=50, seed=3, progress=False,
               min_snr=0.0)
    assert [r.error for r in a.rows] == [r.error for r in b.rows]


def test_checkpointed_run_resumes_to_the_same_numbers(tmp_path):
    args = dict(horizon=0.2, n_paths=60, chunk_size=20, seed=5, progress=False, min_snr=0.0,
                checkpoint=tmp_path)
    first = verify(_small(), [0.1, 0.05], **args)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step0.pt", "step1.pt"]
    again = verify(_small(), [0.1, 0.05], **args)  # every chunk is read back from the files
    assert [r.error for r in again.rows] == [r.error for r in first.rows]
    with pytest.raises(ValueError, match="belongs to a different run"):
        verify(_small(), [0.1, 0.05], **{**args, "n_paths": 80})


def test_unresolved_points_are_reported_not_raised():
    result = verify(_small(), [0.1, 0.05], horizon=0.2, n_paths=4, seed=0, progress=False,
                    min_snr=1e6)
    assert set(result.unfitted) == {r.test_function for r in result.rows}
    assert "no fit" in result.table()
    with pytest.raises(ValueError, match="no test function has a fitted order to plot"):
        result.plot()


# ----------------------------------------------------------------------------- validation
@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(lrs=[0.1]), "`lrs` must hold at least 2 values"),
        (dict(lrs=[0.1, -0.05]), "must be positive"),
        (dict(lrs=[0.1, 0.1]), "must be distinct"),
        (dict(lrs=[0.1, 0.03]), r"`horizon` \(0.2\) must be a whole number of steps of `lr`"),
        (dict(horizon=-1.0), "`horizon` must be a positive finite number"),
        (dict(order=3), r"`order` must be one of \(1, 2\)"),
        (dict(n_paths=1), "`n_paths` must be an integer ≥ 2"),
        (dict(steps_per_lr=3), "`steps_per_lr` must be an even integer"),
        (dict(test_functions={}), "at least one test function"),
    ],
)
def test_verify_validation(kwargs, match):
    args = dict(lrs=[0.1, 0.05], horizon=0.2, n_paths=10, progress=False)
    args.update(kwargs)
    lrs = args.pop("lrs")
    with pytest.raises(ValueError, match=match) as info:
        verify(_small(), lrs, **args)
    assert str(info.value).startswith("dropout:")


def test_verify_refuses_a_non_plugin():
    with pytest.raises(TypeError, match="must implement smetool.algorithms.Algorithm"):
        verify(object(), [0.1, 0.05], horizon=0.2, n_paths=10)


@pytest.mark.cuda
def test_verify_runs_on_cuda():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    alg = DropoutAlgorithm.verification_default(device="cuda")
    result = verify(alg, [0.04, 0.02], horizon=0.2, n_paths=2000, device="cuda", progress=False,
                    min_snr=0.0)
    assert result.settings["device"] == "cuda"
    assert all(torch.isfinite(torch.tensor(r.error)) for r in result.rows)


def test_order_two_sme_error_is_clearly_below_order_one_at_the_smallest_lr():
    """At the default problem's smallest ε = 0.005 the order-2 SME removes the order-1 SME's error.

    ``e1 = E g(discrete) − E g(SME1)`` and ``e2 = e1 − δ`` with ``δ = E g(SME2) − E g(SME1)``.
    Both SMEs are driven by the same Brownian increments (common random numbers), so ``δ`` is
    measured with a small standard error from paired paths. ``|e2| < |e1|`` exactly when
    ``0 < δ/e1 < 2``; the test asks for that with 4 standard errors of the ratio to spare (delta
    method, one-sided false-failure probability ≈ 3e-5 each), after checking ``|e1| ≥ 3 SE``. A
    perfect order-2 SME would give ``δ/e1 = 1``. 10,000 paths, seeds 1 (SMEs) and 2 (discrete),
    ``h = ε/2``: the solver error, ``O(ε²)``, is far below ``δ = O(ε)`` at this ε.
    """
    from smetool import SmallNoiseHeun, solve

    spec = plugins()["dropout"]
    algorithm = spec.build(dtype=torch.float64, device="cpu")
    lr, horizon, n = min(spec.lrs), spec.horizon, spec.n_paths
    x0 = algorithm.initial_state(n)
    finals = []
    for order in (1, 2):
        sol = solve(algorithm.sme(lr, order), x0, (0.0, horizon), dt=lr / 2,
                    method=SmallNoiseHeun(), generator=1)
        finals.append(sol.final)
    gen = torch.Generator().manual_seed(2)
    x = x0.clone()
    for _ in range(round(horizon / lr)):
        x = algorithm.step(x, lr, gen)
    for name, g in algorithm.test_functions().items():
        d, s1, s2 = g(x), g(finals[0]), g(finals[1])
        e1 = float(d.mean() - s1.mean())
        se1 = float((d.var() / n + s1.var() / n).sqrt())
        delta = float((s2 - s1).mean())
        se_delta = float((s2 - s1).std() / n**0.5)
        assert abs(e1) >= 3 * se1, (name, e1, se1)
        ratio = delta / e1
        se_ratio = ((se_delta / e1) ** 2 + (ratio * se1 / e1) ** 2) ** 0.5
        print(f"{name}: e1 = {e1:+.3e} ± {se1:.1e}, δ/e1 = {ratio:.3f} ± {se_ratio:.3f}")
        assert ratio - 4 * se_ratio > 0 and ratio + 4 * se_ratio < 2, (name, ratio, se_ratio)


def test_sgd_order_one_sme_default_run():
    """``smetool verify sgd`` (seed 0): the order-1 SME's slope CI contains 1 for every test
    function, with at least three resolved learning rates each."""
    spec = plugins()["sgd"]
    algorithm = spec.build(dtype=torch.float64, device="cpu")
    result = verify(algorithm, spec.lrs, horizon=spec.horizon, n_paths=spec.n_paths,
                    steps_per_lr=spec.steps_per_lr, seed=0, progress=False)
    assert not result.unfitted, result.table()
    for name, fit in result.fits.items():
        assert sum(fit.used) >= 3, result.table()
        assert fit.contains(1.0), result.table()


class _Toy(smetool.Algorithm):
    """A one-line plug-in (GD with additive noise on ½|x|²) whose pieces the tests break."""

    name = "toy"

    def initial_state(self, n, *, dtype=None, device=None):
        return torch.ones(n, 2, dtype=dtype or torch.float64, device=device)

    def step(self, x, lr, generator):
        return x - lr * (x + torch.randn(x.shape, generator=generator, dtype=x.dtype))

    def sme(self, lr, order=1):
        return smetool.FunctionSDE(lambda t, x: -x, lambda t, x: lr**0.5 * torch.ones_like(x))

    def test_functions(self):
        return {"x0": lambda x: x[:, 0]}


def _broken(**overrides):
    return type("Broken", (_Toy,), overrides)()


@pytest.mark.parametrize("plugin, kwargs, error, match", [
    (_broken(sme=lambda self, lr, order=1: smetool.FunctionSDE(
        lambda t, x: x[:, :1], lambda t, x: torch.ones_like(x))), {}, ValueError,
     r"toy \(lr=0.1\): the SME's drift\(t, x\) must have the shape of x, \(2, 2\); got \(2, 1\)"),
    (_broken(step=lambda self, x, lr, g: x[:, :1]), {}, ValueError,
     r"toy \(lr=0.1\): step\(x, lr, generator\) must return the shape of x, \(2, 2\); got \(2, 1\)"),
    (_broken(sme=lambda self, lr, order=1: smetool.FunctionSDE(
        lambda t, x: -x, lambda t, x: torch.ones(x.shape[0], 2, 3, dtype=x.dtype),
        noise_kind=smetool.NoiseKind.GENERAL)), {"method": "milstein"}, smetool.UnsupportedError,
     r"toy \(lr=0.1\): Milstein\(\) does not support noise_kind='general'"),
    (_broken(test_functions=lambda self: {"bad": lambda x: x}), {}, ValueError,
     r"toy \(lr=0.1\): test function 'bad' must map states \(N, D\) to values \(N,\)"),
    (_broken(initial_state=lambda self, n, *, dtype=None, device=None: torch.ones(n, 2)
             * float("nan")), {}, ValueError, r"toy \(lr=0.1\): initial_state holds NaN or inf"),
    (_broken(sme=lambda self, lr, order=1: "not an SDE"), {}, TypeError,
     r"toy \(lr=0.1\): sme\(lr, order\) must return an smetool.SDE; got str"),
    (_Toy(), {"lrs": [0.1, 0.03]}, ValueError,
     r"toy: `horizon` \(0.2\) must be a whole number of steps of `lr` \(0.03\); got 6.66667 steps"),
])
def test_broken_plugins_get_errors_naming_the_plugin(plugin, kwargs, error, match):
    lrs = kwargs.pop("lrs", [0.1, 0.05])
    with pytest.raises(error, match=match):
        verify(plugin, lrs, horizon=0.2, n_paths=10, progress=False, **kwargs)


def test_diverging_plugin_says_where_and_keeps_the_finished_chunks(tmp_path):
    def step(self, x, lr, generator):  # blows up on the second chunk's paths only
        return x * (1e308 if x.shape[0] == 5 and bool((x > 0).all()) else 1.0)

    plugin = _broken(step=step)
    with pytest.raises(FloatingPointError,
                       match=r"toy: at lr=0.1 \(horizon T = 0.2; .*\), chunk 1 diverged: 5 of 5 "
                             r"discrete samples non-finite"):
        verify(plugin, [0.1, 0.05], horizon=0.2, n_paths=15, chunk_size=10, progress=False,
               checkpoint=tmp_path)
    assert (tmp_path / "step0.pt").exists()  # chunk 0 is kept for a resumed run
