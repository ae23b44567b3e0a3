"""The smetool command line: called through main([...]) and as `python -m smetool`."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from smetool.cli import main


def test_list_shows_solvers_and_plugins(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in ("euler", "milstein", "platen", "heun", "dropout"):
        assert name in out
    assert "weak order 2" in out


def test_help_lists_commands(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "verify" in out and "list" in out and "analyze" in out


def test_verify_help_documents_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["verify", "dropout", "--help"])
    out = capsys.readouterr().out
    for flag in ("--lrs", "--horizon", "--paths", "--order", "--keep-prob", "--width", "--seed",
                 "--device", "--json", "--plot", "--out"):
        assert flag in out
    assert "default" in out
    assert "(default: None)" not in out and "(default: False)" not in out
    assert "(default: 0)" in out  # --seed: a falsy default is still a default


def test_verify_help_lists_every_plugins_defaults(capsys):
    from smetool.algorithms.registry import plugins

    with pytest.raises(SystemExit):
        main(["verify", "--help"])
    out = capsys.readouterr().out
    table = out.split("plug-in defaults")[1]
    for name, spec in plugins().items():
        row = next(line for line in table.splitlines() if line.split()[:1] == [name])
        assert ",".join(f"{lr:g}" for lr in spec.lrs) in row and f"{spec.n_paths} paths" in row
        for option in spec.options:
            assert f"{option.flag} {option.default}" in row, (name, option, row)


@pytest.fixture
def fresh_registry():
    from smetool.algorithms import registry

    registry.refresh()
    yield registry
    registry.refresh()


def test_the_cli_passes_the_declared_option_defaults(fresh_registry, capsys):
    """What the help table shows is what the factory receives."""
    from dataclasses import replace

    seen = {}

    def spy(*, dtype, device, **options):
        seen.update(options)
        raise ValueError("stop here")

    spec = fresh_registry.get_plugin("svag-dropout")
    fresh_registry.register(replace(spec, name="svag-spy", factory=spy))
    assert main(["verify", "svag-spy", "--width", "8", "--quiet"]) == 2
    assert seen == {"base_lr": 0.04, "keep_prob": 0.9, "width": 8}
    assert "stop here" in capsys.readouterr().err


def test_verify_writes_json_csv_and_plot(tmp_path, capsys):
    out_dir = tmp_path / "run"
    json_path = tmp_path / "extra.json"
    code = main(["verify", "dropout", "--lrs", "0.1,0.05", "--horizon", "0.2", "--paths", "300",
                 "--width", "4", "--quiet", "--out", str(out_dir), "--json", str(json_path)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "weak error of the order-1 SME of 'dropout'" in printed
    data = json.loads(json_path.read_text())
    assert data["algorithm"] == "dropout" and data["order"] == 1
    assert {"lr", "test_function", "discrete_mean", "sme_mean", "error", "stderr"} <= set(
        data["rows"][0])
    assert json.loads((out_dir / "result.json").read_text())["rows"] == data["rows"]
    assert (out_dir / "errors.csv").read_text().startswith("lr,test_function")
    bib = (out_dir / "citation.bib").read_text()  # the papers of this run: solver and plug-in
    assert bib.startswith("@software{smetool") and "zhang2024dropout" in bib
    assert "milstein1997small" in bib and data["settings"]["plugin"] == "dropout"
    assert data["references"] == ["milstein1997small", "kloeden1992", "zhang2024dropout",
                                  "li2019sme"]
    if data["fits"]:
        assert (out_dir / "errors.png").exists()
        assert {"test_function", "slope", "ci"} <= set(data["fits"][0])


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["verify", "nosuchplugin"], "invalid choice"),
        (["verify", "dropout", "--paths", "-5"], "must be a positive integer"),
        (["verify", "dropout", "--lrs", "0.1,abc"], "must be a positive number"),
        (["verify", "dropout", "--no-such-flag"], "unrecognized arguments"),
        (["verify"], "name a plug-in"),
    ],
)
def test_bad_arguments_exit_nonzero_with_one_line(argv, message, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert message in err
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith("smetool verify") and ": error:" in err and "--help" in err


def test_library_errors_are_one_line_without_traceback(capsys):
    code = main(["verify", "dropout", "--lrs", "0.1,0.03", "--horizon", "0.2", "--paths", "10",
                 "--quiet"])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "must be a whole number of steps" in err and "Traceback" not in err


def test_keep_prob_out_of_range_is_a_clear_error(capsys):
    with pytest.raises(SystemExit) as info:
        main(["verify", "dropout", "--keep-prob", "1.5", "--paths", "10", "--quiet"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "argument --keep-prob: `keep_prob` must be in (0, 1]; got 1.5" in err
    assert len(err.strip().splitlines()) == 1


def test_unwritable_output_folder(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    code = main(["verify", "dropout", "--paths", "10", "--quiet", "--out", str(blocker / "sub")])
    assert code == 2
    err = capsys.readouterr().err
    assert "--out: cannot write" in err and len(err.strip().splitlines()) == 1


def test_debug_shows_the_traceback(capsys):
    code = main(["--debug", "verify", "dropout", "--lrs", "0.1,0.03", "--paths", "10", "--quiet"])
    assert code == 2
    assert "Traceback" in capsys.readouterr().err


def test_cuda_request_without_cuda_is_a_clear_error(capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("CUDA is present")
    assert main(["verify", "dropout", "--device", "cuda", "--paths", "10", "--quiet"]) == 2
    assert "no CUDA device" in capsys.readouterr().err


def test_python_dash_m_smetool():
    done = subprocess.run([sys.executable, "-m", "smetool", "list"], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0 and "dropout" in done.stdout


def test_analyze_dropout_writes_strict_json_figures_and_citation(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    out = tmp_path / "analysis"
    code = main(["analyze", "dropout", "--steps", "200", "--seeds", "2", "--windows", "20,40",
                 "--n-noise", "40", "--quiet", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    text = (out / "report.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    report = json.loads(text)
    assert report["kind"] == "analyze" and report["config"]["plugin"] == "dropout"
    assert {"flatter", "alignment", "condensation", "regularizer"} <= set(
        report["findings"]["dropout"])
    assert sorted(p.name for p in out.glob("*.png")) == [
        "alignment.png", "condensation.png", "loss.png", "regularizer.png", "sharpness.png",
        "variance_flatness.png", "variance_principle.png"]
    assert "zhang2021variance" in (out / "citation.bib").read_text()


def test_analyze_with_missing_data_file_is_one_line(tmp_path, capsys):
    code = main(["analyze", "dropout", "--model", "two-layer", "--data",
                 str(tmp_path / "nope.npz"), "--quiet", "--out", str(tmp_path / "o")])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "nope.npz" in err


def test_analyze_on_npz_data(tmp_path, capsys):
    x = np.linspace(-1, 1, 10)
    np.savez(tmp_path / "data.npz", X=x, y=np.abs(x))
    code = main(["analyze", "dropout", "--model", "two-layer", "--data",
                 str(tmp_path / "data.npz"), "--width", "6", "--steps", "60", "--seeds", "2",
                 "--windows", "20", "--n-noise", "12", "--quiet", "--out", str(tmp_path / "o")])
    assert code == 0, capsys.readouterr().err
    report = json.loads((tmp_path / "o" / "report.json").read_text())
    assert report["config"]["landscape"] == "two-layer (data.npz)"
    assert report["config"]["n_params"] == 18


def test_analyze_sam_on_a_network_and_on_its_own_problem(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    code = main(["analyze", "sam", "--model", "mlp", "--data", "toy", "--width", "6",
                 "--steps", "60", "--seeds", "2", "--windows", "20,40", "--n-noise", "16",
                 "--quiet", "--out", str(tmp_path / "net")])
    assert code == 0, capsys.readouterr().err
    report = json.loads((tmp_path / "net" / "report.json").read_text())
    assert report["config"]["built"] == {"problem": "network", "model": "mlp"}
    assert report["config"]["options"]["rho"] == 0.05  # the network default of the declaration
    assert "foret2021sam" in (tmp_path / "net" / "citation.bib").read_text()
    code = main(["analyze", "sam", "--steps", "50", "--seeds", "2", "--windows", "20",
                 "--n-noise", "16", "--rho", "0.3", "--quiet", "--out", str(tmp_path / "own")])
    assert code == 0, capsys.readouterr().err
    report = json.loads((tmp_path / "own" / "report.json").read_text())
    assert report["config"]["landscape"] == "noisy quadratic"
    assert report["config"]["options"]["rho"] == 0.3
    assert "condensation" not in report["measurements"]  # a quadratic has no units


@pytest.mark.parametrize("argv, message", [
    (["dropout", "--data", "toy"], "--data set the network of --model"),
    (["dropout", "--model", "two-layer", "--data", "digits"], "is a one-output network"),
    (["dropout", "--model", "cnn", "--data", "toy"], "is a regression task"),
])
def test_analyze_network_option_errors_are_one_line(argv, message, tmp_path, capsys):
    code = main(["analyze", *argv, "--quiet", "--out", str(tmp_path / "o")])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err


def test_analyze_windows_below_twenty_steps_are_refused(capsys):
    with pytest.raises(SystemExit):
        main(["analyze", "dropout", "--model", "mlp", "--windows", "5"])
    assert "must be step counts ≥ 20" in capsys.readouterr().err


def test_every_plugin_with_a_landscape_has_an_analyze_command(capsys):
    with pytest.raises(SystemExit):
        main(["analyze", "--help"])
    out = capsys.readouterr().out
    for name in ("dropout", "dropout-net", "sgd", "sam", "usam", "signsgd", "sgd-wd"):
        assert f"    {name}" in out
    assert "    adam" not in out  # no landscape declared


def test_compare_writes_the_table_figures_and_verdicts(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    out = tmp_path / "cmp"
    code = main(["compare", "sam", "sgd", "--model", "mlp", "--data", "digits", "--n-samples",
                 "16", "--width", "4", "--test", "40", "--seeds", "2", "--max-steps", "3000",
                 "--target", "0.6",
                 "--n-noise", "16", "--n-eigen", "5", "--quiet", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    report = json.loads((out / "report.json").read_text())
    assert report["kind"] == "compare" and set(report["findings"]) == {"sam", "sgd"}
    assert all(t["reached"] == [True, True] for t in report["trajectories"].values())
    assert sorted(p.name for p in out.glob("*.png")) == [
        "accuracy.png", "alignment.png", "loss.png", "regularizer.png", "sharpness.png",
        "variance_principle.png"]
    assert "compare on mlp (digits[:16])" in capsys.readouterr().out


@pytest.mark.parametrize("names, message", [
    (["gd"], "the reference of every comparison"),
    (["dropout-net"], "runs on its own problem only"),
    (["nope"], "unknown plug-in 'nope'"),
])
def test_compare_errors_are_one_line(names, message, tmp_path, capsys):
    code = main(["compare", *names, "--model", "mlp", "--data", "digits", "--n-samples", "16",
                 "--test", "20", "--quiet", "--out", str(tmp_path / "o")])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err


@pytest.mark.parametrize("argv", [
    ["svag", "--lrs", "0.25,0.125", "--base-lr", "0.25", "--batch-size", "2"],
    ["svag-dropout", "--lrs", "0.02,0.01", "--width", "4", "--keep-prob", "0.8"],
    ["rmsprop", "--lrs", "0.125,0.0625"],
    ["adam", "--lrs", "0.125,0.0625", "--method", "euler"],
])
def test_verify_runs_every_registered_plugin_with_its_options(argv, tmp_path):
    json_path = tmp_path / "r.json"
    assert main(["verify", *argv, "--paths", "200", "--quiet", "--json", str(json_path)]) == 0
    data = json.loads(json_path.read_text())
    assert data["lrs"] == [float(v) for v in argv[2].split(",")]
    assert data["method"] == ("euler" if "euler" in argv else "heun")
    assert len(data["rows"]) == 2 * len({r["test_function"] for r in data["rows"]})


def test_svag_base_lr_below_a_step_is_a_one_line_error(capsys):
    assert main(["verify", "svag", "--lrs", "0.5,0.25", "--base-lr", "0.25", "--paths", "50",
                 "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "must be at most `base_lr` = 0.25" in err and "Traceback" not in err


def test_odd_steps_per_lr_is_a_one_line_error(capsys):
    assert main(["verify", "sgd", "--steps-per-lr", "3", "--paths", "10", "--quiet"]) == 2
    assert "--steps-per-lr must be even; got 3." in capsys.readouterr().err


def test_registry_refuses_duplicates_and_non_specs(fresh_registry):
    from dataclasses import replace

    from smetool import Option

    register, plugins = fresh_registry.register, fresh_registry.plugins
    with pytest.raises(ValueError, match="a plug-in named 'sgd' is already registered"):
        register(plugins()["sgd"])
    with pytest.raises(TypeError, match="`spec` must be a PluginSpec; got dict"):
        register({"name": "x"})
    with pytest.raises(ValueError, match="option names must be distinct"):
        replace(plugins()["dropout"], name="dropout-2",
                options=(Option("seed2", int, 0, "x"), Option("seed2", int, 1, "y")))
    with pytest.raises(ValueError, match=r"`horizon` \(0.2\) must be a whole number of steps"):
        replace(plugins()["dropout"], name="dropout-2", lrs=(0.03, 0.01))
    assert "dropout-2" not in plugins()
