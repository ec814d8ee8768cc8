"""snnref.continuous: the measured distance of every mapped model from its continuous counterpart.

The section-9 claims are asserted here: exact relations exact to float64
rounding at every dt, hxtorch's explicit Euler at order 1.  A model whose
measurement contradicts SPEC.md section 9 fails; the bounds are never widened.
"""

import argparse
import sys

import numpy as np
import pytest

from snnref import registry, spec
from snnref.continuous import MAPPED, converge, convergence, verify
from snnref.continuous import cli as continuous_cli

MAPPED_ROWS = [registry.model(key) for key in MAPPED]


@pytest.fixture(scope="module")
def studies():
    return {}


def _study(studies, key):
    if key not in studies:
        studies[key] = converge(key, levels=6, seed=0)
    return studies[key]


@pytest.mark.parametrize("key", sorted(registry.MODELS))
def test_every_registry_model_is_studied_or_refused(key, studies):
    if key not in MAPPED:
        with pytest.raises(ValueError, match="model: .*no continuous counterpart.*hxtorch.cuba_lif"):
            converge(key)
        return
    study = _study(studies, key)
    assert study.dts.shape == (7,) and np.all(np.diff(study.dts) < 0)
    assert np.allclose(study.dts[:-1] / study.dts[1:], 2.0)
    assert study.ivp_agreement <= verify.IVP_BOUND
    assert verify.check_relation(study) == []
    if study.relation == "exact":
        assert all(order is None for order in study.order.values())
        assert study.max_deviation <= study.bound
        assert study.spike_counts_agree.all()
    else:
        low, high = verify.ORDER_RANGE
        spiking = registry.model(key).out == "spikes"
        for name in ("spike_times", "first_spike", "membrane") if spiking else ("membrane",):
            assert low <= study.order[name] <= high, (name, study.order[name], study.median_errors[name])


@pytest.mark.parametrize("key", [k for k in MAPPED if registry.model(k).family != "cuba"])
def test_exact_relations_have_spikes_to_compare(key, studies):
    # A study without spikes would not test the reset; NoReset's spikes are its Threshold output.
    study = _study(studies, key)
    assert study.spikes > 0 or key == "rnnbuilder.NoReset"


def _decay_off_by_1e3(monkeypatch):
    """Every level's decay off by 1e-3: tether.LIF's exact relation breaks."""
    original = convergence.level_params

    def off_by_1e3(case, dt):
        params = original(case, dt)
        if "decay" in params:
            params["decay"] = params["decay"] * (1 - 1e-3)
        return params

    monkeypatch.setattr(convergence, "level_params", off_by_1e3)


def test_a_wrong_decay_breaks_the_exact_relation(monkeypatch):
    _decay_off_by_1e3(monkeypatch)
    study = converge("tether.LIF", levels=2)
    assert verify.check_relation(study), study.max_deviation


@pytest.mark.parametrize("key", ["hxtorch.cuba_li", "hxtorch.cuba_lif"])
def test_a_discrete_model_with_a_wrong_time_constant_fails_the_order(monkeypatch, key):
    simulate = convergence.spec.simulate

    def slow_membrane(model, x, params, *args, **kwargs):
        return simulate(model, x, dict(params, tau_mem=params["tau_mem"] * 1.01), *args, **kwargs)

    monkeypatch.setattr(convergence.spec, "simulate", slow_membrane)
    study = converge(key, levels=6)
    assert verify.check_relation(study), study.order


def test_a_discrete_spike_time_interpolates_inside_the_step_that_crossed():
    # Step k is time k dt; the membrane crosses between steps k - 1 and k.  One step late
    # (k dt + ...) still fitted an order of 1: only the errors' size showed it.
    from types import SimpleNamespace

    trace = SimpleNamespace(outputs={"out": np.array([[0.0], [0.0], [1.0], [0.0]]),
                                     "v": np.array([[0.4], [0.6], [0.0], [0.2]])},
                            distance=np.array([[-0.6], [-0.4], [0.4], [-0.8]]))
    counterpart = SimpleNamespace(relation="convergence", params={"v_threshold": 1.0}, state={"v": 0.0})
    # v goes from 0.6 at t = 0.5 to 1.4 before its reset at t = 1.0: threshold 1 halfway, at 0.75.
    (times,) = convergence.discrete_spike_times(trace, 0.5, counterpart)
    assert times.tolist() == [0.75]


def test_the_exact_relations_bound_is_section_7_s_float64_floor_per_random_walk():
    # 64 ulp (the float64 row of the table) for each of sqrt(steps) accumulated roundings.
    assert convergence.exact_bound(1) == 64 * 2.0**-52
    assert convergence.exact_bound(100) == 64 * 2.0**-52 * 10


def test_dt_must_divide_the_pulse_grid():
    with pytest.raises(ValueError, match=r"dt: 0.3 does not divide the pulse grid spacing 1.0"):
        converge("tether.LIF", dt=0.3)
    with pytest.raises(ValueError, match=r"levels: expected a whole number of halvings from 2 to 12, got 1"):
        converge("tether.LIF", levels=1)
    # The command line's bound, in the API too: 100 halvings never ended.
    for study in (converge, convergence.surrogate_gap):
        with pytest.raises(ValueError, match=r"levels: expected a whole number of halvings from 2 to 12, got 100"):
            study("tether.LIF", levels=100)
    with pytest.raises(ValueError, match=r"pulse_spacing: expected a finite time > 0"):
        converge("tether.LIF", pulse_spacing=-1.0)


@pytest.mark.parametrize("run, kwargs, match", [
    (converge, dict(seed="a"), r"seed: expected a whole number >= 0, got 'a'"),
    (converge, dict(seed=1.5), r"seed: expected a whole number >= 0, got 1.5"),
    (converge, dict(seed=-1), r"seed: expected a whole number >= 0, got -1"),
    (converge, dict(dt="x"), r"dt: expected a finite step > 0, got 'x'"),
    (converge, dict(neurons=True), r"neurons: expected a whole number from 1 to 1024, got True"),
    # Found by an outside user: 10^6 neurons ran for minutes in 3 GB, 10^9 asked for 358 GiB; a drive of
    # 10^6 ran 27 s to TooManySpikes, and one of 1e300 gave NaN cosines without a word.
    (converge, dict(neurons=10**6), r"neurons: expected a whole number from 1 to 1024, got 1000000"),
    (convergence.surrogate_gap, dict(drive=1e300), r"drive: expected a scale > 0 of at most 100, got 1e\+300"),
    (convergence.surrogate_gap, dict(drive=1e6), r"drive: expected a scale > 0 of at most 100, got 1000000.0"),
    (convergence.surrogate_gap, dict(drive="a"), r"drive: expected a finite scale > 0, got 'a'"),
    (convergence.surrogate_gap, dict(drive=-1.0), r"drive: expected a finite scale > 0, got -1.0"),
    (convergence.surrogate_gap, dict(pulse_spacing="1"), r"pulse_spacing: expected a finite time > 0, got '1'"),
])
def test_bad_study_arguments_are_named(run, kwargs, match):
    with pytest.raises(ValueError, match=match):
        run("tether.LIF", levels=2, **kwargs)


# Found by an outside user: pulse_spacing=1.0 for a CUBA model (whose time constants are
# about 1e-5 s) ran solve_ivp's check for hours; 1e30 or 1e-20 for tether.LIF was refused as
# params['decay'], a value the caller never gave; 1e308 as pulse_times.
@pytest.mark.parametrize("model, kwargs, match", [
    ("hxtorch.cuba_lif", dict(pulse_spacing=1.0), r"pulse_spacing: 1.0 makes the first step 0.125 longer than the "
                                                  r"study's time constants \(.* to .*\), which the coarsest level "
                                                  r"must resolve; pass a smaller pulse_spacing or dt"),
    ("tether.LIF", dict(pulse_spacing=1e30), r"pulse_spacing: 1e\+30 makes the first step 1e\+30 longer than the "
                                             r"study's time constants \(\d"),
    ("tether.LIF", dict(dt=20.0, pulse_spacing=20.0), r"dt: 20.0 makes the first step 20.0 longer than the "
                                                      r"study's .*pass a smaller dt$"),
    ("tether.LIF", dict(pulse_spacing=1e-20), r"pulse_spacing: 1e-20 makes the finest step 2.5e-21, below 2\^-30 "
                                              r"of the study's time constants"),
    ("rnnbuilder.LIF", dict(pulse_spacing=1e308), r"pulse_spacing: 1e\+308 makes the study's length \(48 pulses "
                                                  r"and a tail\) overflow float64"),
    ("tether.LIF", dict(pulse_spacing=1.0, dt=2.0 ** -15), r"dt: 3.0517578125e-05 with 2 halvings takes 7.34e\+06 "
                                                           r"steps at the finest level .*expected at most 1048576"),
])
@pytest.mark.parametrize("study", [converge, convergence.surrogate_gap])
def test_steps_the_study_cannot_resolve_or_afford_are_refused_by_name(study, model, kwargs, match):
    with pytest.raises(ValueError, match=match):
        study(model, levels=2, **kwargs)


@pytest.mark.parametrize("model", MAPPED)
def test_every_default_study_passes_the_time_scale_checks_at_the_most_levels(model):
    convergence.draw_case(model, levels=convergence.MAX_LEVELS)


def test_a_finer_first_step_is_accepted():
    study = converge("qualia.IFSRL", levels=2, dt=0.25)
    assert study.dts[0] == 0.25 and study.max_deviation == 0.0


@pytest.mark.parametrize("key", ["tether.LIF", "tether.PLIF", "rnnbuilder.NoReset"])
def test_without_spikes_the_discrete_gradient_of_an_exact_relation_is_the_exact_gradient(key):
    gap = convergence.surrogate_gap(key, levels=2, drive=0.02, spike_term=False)
    assert np.all(gap.relative_error <= 1e-12), gap.relative_error


def test_without_spikes_the_euler_gradient_converges_at_first_order():
    gap = convergence.surrogate_gap("hxtorch.cuba_li", levels=4)
    low, high = verify.ORDER_RANGE
    assert low <= convergence.fit_order(gap.dts, gap.relative_error) <= high
    assert np.all(gap.cosine > 0.99)


@pytest.mark.parametrize("key", ["tether.LIF", "hxtorch.cuba_lif"])
def test_surrogate_gap_is_measured_per_level(key):
    gap = convergence.surrogate_gap(key, levels=2)
    assert gap.cosine.shape == gap.relative_error.shape == (3,)
    assert np.all(np.isfinite(gap.cosine)) and np.all(gap.relative_error > 0)
    assert gap.exact_norm > 0 and "state.v" in gap.names


def test_a_case_whose_membrane_lands_on_threshold_has_no_margin():
    # convergence: the exact relations' cases keep every membrane more than MARGIN (relative) from threshold at each
    # pulse.  qualia.IFSRL (IF, r = 1, threshold 1): two pulses of 0.5 land v exactly on 1; 0.5 then 0.4 stay off.
    row = registry.model("qualia.IFSRL")
    for jumps, margin in (([[0.5], [0.5]], False), ([[0.5], [0.4]], True)):
        case = convergence.Case(row, {"threshold": np.array([1.0])}, {}, np.array([0.0, 1.0]), np.array(jumps), 1.0,
                                1.0, 3.0)
        assert convergence._margin_ok(case, 1) is margin, jumps


def _made_study(**changes):
    base = dict(model="m", node="LIF", relation="euler", dts=np.array([1.0, 0.5, 0.25]), errors={},
                median_errors={name: np.ones(3) for name in convergence.ERROR_NAMES},
                order={"spike_times": 1.0, "first_spike": 1.0, "membrane": 1.0},
                max_deviation=None, bound=None, spike_counts_agree=np.ones(3, dtype=bool), ivp_agreement=0.0,
                spikes=1, neurons_used=1)
    base.update(changes)
    return convergence.Convergence(**base)


def test_check_relation_holds_each_claim_to_both_ends():
    # verify (1): an Euler order must lie inside ORDER_RANGE = [0.9, 1.1], from above as from below; an exact
    # relation's deviation must be a number within the bound (NaN is no agreement).
    assert verify.check_relation(_made_study()) == []
    assert verify.check_relation(_made_study(order={"spike_times": 1.5, "first_spike": 1.0, "membrane": 1.0}))
    assert verify.check_relation(_made_study(order={"spike_times": 0.5, "first_spike": 1.0, "membrane": 1.0}))
    exact = dict(relation="exact", order={"spike_times": None, "first_spike": None, "membrane": None}, bound=1e-14)
    assert verify.check_relation(_made_study(max_deviation=0.0, **exact)) == []
    assert verify.check_relation(_made_study(max_deviation=1e-13, **exact))
    assert verify.check_relation(_made_study(max_deviation=float("nan"), **exact))


def test_the_exact_spike_term_reads_spike_times_on_the_discrete_clock():
    # (5): the exact run starts dt early (the discrete initial state sits at t = -dt), so its spike at t* is the
    # discrete spike at step k = (t* - dt)/dt, and phi must be read there: sum phi(t* - dt) over the exact spikes is
    # sum_k phi(k dt) over the discrete model's spike steps (qualia.ATIF's relation is exact: the same steps).
    case = convergence.draw_case("qualia.ATIF", 0, neurons=2)
    cp = convergence.counterpart_of(case)
    dt = case.dt0
    n = case.jumps.shape[1]
    _, _, per_spike_phi, _ = convergence._exact_vector(case, cp, np.zeros(case.jumps.shape), np.ones(n), dt)
    x, _ = convergence.discrete_input(case, dt)
    fired = spec.simulate("qualia.ATIF", x, convergence.level_params(case, dt)).outputs["out"] != 0
    steps = [np.flatnonzero(fired[:, neuron]) for neuron in range(n)]
    assert sum(len(s) for s in steps) > 0
    expected = [np.sum(1.0 - s * dt / case.t_end) for s in steps]
    np.testing.assert_allclose(per_spike_phi, expected, rtol=1e-12, atol=0)


def test_a_nan_solve_ivp_agreement_fails_the_row(monkeypatch):
    # verify (2): the closed form must agree with solve_ivp to IVP_BOUND; a NaN agreement (a run that failed) is
    # no agreement, and the row fails naming it.
    monkeypatch.setattr(convergence, "ivp_agreement", lambda case, samples=None: float("nan"))
    result = verify.row("qualia.IFSRL", quick=True)
    assert not result.passed and any(f.startswith("solve_ivp: relative difference nan") for f in result.failures)


def _parse(*argv):
    parser = argparse.ArgumentParser(prog="snnref")
    continuous_cli.add_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["converge", *argv])


def test_cli_prints_the_table(capsys):
    args = _parse("--model", "hxtorch.cuba_li", "--model", "qualia.IFSRL", "--levels", "3")
    assert continuous_cli.run(args) == 0
    out = capsys.readouterr().out
    assert "hxtorch.cuba_li" in out and "qualia.IFSRL" in out and "2 passed, 0 failed" in out
    assert "surrogate vs exact gradient per dt" in out


def test_cli_writes_a_png_plot(tmp_path):
    pytest.importorskip("matplotlib")
    plot = tmp_path / "converge.png"
    args = _parse("--model", "hxtorch.cuba_li", "--levels", "2", "--no-fd", "--plot", str(plot))
    assert continuous_cli.run(args) == 0
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_without_matplotlib_says_so_and_writes_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now raises ImportError
    plot = tmp_path / "converge.png"
    assert continuous_cli.run(_parse("--model", "qualia.IFSRL", "--levels", "2", "--no-fd", "--plot", str(plot))) == 0
    assert "matplotlib is not installed" in capsys.readouterr().err and not plot.exists()


def test_cli_refuses_bad_arguments():
    with pytest.raises(ValueError, match="--model: tether.ALIF has no continuous counterpart"):
        continuous_cli.run(_parse("--model", "tether.ALIF"))
    # The option, as the other errors name it (the registry names its own argument "model").
    with pytest.raises(ValueError, match="^--model: unknown name 'nope'; expected one of: tether.LIF"):
        continuous_cli.run(_parse("--model", "nope"))
    with pytest.raises(ValueError, match="--levels: expected 2 to 12 halvings, got 1"):
        continuous_cli.run(_parse("--levels", "1"))
    # 100 halvings would never end (each doubles the steps).
    with pytest.raises(ValueError, match="--levels: expected 2 to 12 halvings, got 100"):
        continuous_cli.run(_parse("--levels", "100"))
    with pytest.raises(ValueError, match="--plot: expected a .png"):
        continuous_cli.run(_parse("--plot", "out.pdf"))
    # Before the study, as verify's --json is.
    with pytest.raises(ValueError, match="--plot: the directory .*no-such-folder does not exist"):
        continuous_cli.run(_parse("--plot", "no-such-folder/converge.png"))


def test_cli_refuses_a_negative_seed_as_verify_does(capsys):
    with pytest.raises(SystemExit) as ended:
        _parse("--seed", "-1")
    assert ended.value.code == 2 and "argument --seed: expected an integer >= 0, got -1" in capsys.readouterr().err


def test_cli_exits_1_when_a_claim_fails(monkeypatch, capsys):
    # A decay off by 1e-3 breaks tether.LIF's exact relation: the row says FAIL and the exit code is 1.
    _decay_off_by_1e3(monkeypatch)
    assert continuous_cli.run(_parse("--model", "tether.LIF", "--levels", "2", "--no-fd")) == 1
    out = capsys.readouterr().out
    assert "FAIL" in out and "0 passed, 1 failed" in out


def test_cli_studies_a_repeated_model_once(capsys):
    # --model is repeatable; a key given twice is one study, one row.
    assert continuous_cli.run(_parse("--model", "qualia.IFSRL", "--model", "qualia.IFSRL", "--levels", "2",
                                     "--no-fd")) == 0
    out = capsys.readouterr().out
    assert "snnref converge: 1 models" in out and "1 passed, 0 failed" in out


def test_verify_rows_quick():
    rows = verify.rows(quick=True)
    assert [r.model for r in rows] == list(MAPPED)
    for result in rows:
        assert result.passed, (result.model, result.failures)
        assert result.summary and "ivp" in result.summary


def test_verify_rows_full():
    for result in verify.rows(quick=False):
        assert result.passed, (result.model, result.failures)
        assert "fd" in result.summary


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("key", MAPPED)
def test_section_9_claims_hold_on_other_seeds(key, seed):
    study = converge(key, levels=6, seed=seed)
    assert verify.check_relation(study) == [], study.order
    assert study.ivp_agreement <= verify.IVP_BOUND


def test_spike_term_is_a_flag():
    # Found by an outside user: "x" was truthy, and the spike term was kept.
    with pytest.raises(TypeError, match="^spike_term: expected True or False, got 'x'$"):
        convergence.surrogate_gap("tether.LIF", spike_term="x")
