"""snnref verify's machinery (snnref.testing._verify): what each mutation-testing
survivor showed it did not check.  A NaN finite-difference error fails and is the
worst, whatever its order; the worst over the cases is kept; every surrogate x
scalar/per-neuron x injection case is drawn; the float32 baseline is counted in
float32 ulps; a failing backend comparison is kept for the HTML report; the reset
property runs for every model that resets to a value; --quick says the goldens
were left out; strided input is compared outside --quick."""

import json
import math
from dataclasses import replace
from types import SimpleNamespace

import numpy as np

from fixtures import outside_lif
from snnref import registry
from snnref.testing import _checks as checks, _verify


def _reported(monkeypatch, worsts):
    """gradient_check returning the given worst errors of "x", one call after another."""
    calls = iter(worsts)
    monkeypatch.setattr(checks, "gradient_check",
                        lambda case, seed=0: checks.GradientReport(case.model, case.surrogate, {"x": next(calls)}))


def test_a_nan_finite_difference_error_fails(monkeypatch):
    _reported(monkeypatch, [float("nan")])
    result = _verify.verify_model("tether.LIF", quick=True)
    assert not result.passed
    assert any(f.startswith("fd arctan: relative error over 1e-06: {'x': 'nan'}") for f in result.failures), \
        result.failures


def test_a_nan_finite_difference_error_is_the_worst_whatever_its_order(monkeypatch):
    # Before: max() kept whichever came first, so a failing row could show a worst of 1e-9.
    for errors in ({"x": 1e-9, "decay": math.nan}, {"decay": math.nan, "x": 1e-9}):
        assert math.isnan(checks.GradientReport("tether.LIF", "arctan", errors).worst)
    count = len(list(_verify._gradient_cases(registry.model("tether.LIF"), 0)))
    _reported(monkeypatch, [1e-9, math.nan] + [1e-9] * (count - 2))
    monkeypatch.setattr(_verify, "_golden", lambda result, *args: None)
    result = _verify.verify_model("tether.LIF")
    assert not result.passed and math.isnan(result.worst_fd)


def test_the_worst_fd_error_is_the_worst_over_every_case(monkeypatch):
    row = registry.model("tether.LIF")
    count = len(list(_verify._gradient_cases(row, 0)))
    assert count > 1
    _reported(monkeypatch, [5e-7] + [1e-9] * (count - 1))
    monkeypatch.setattr(_verify, "_golden", lambda result, *args: None)
    result = _verify.verify_model("tether.LIF")
    assert result.fd_cases == count and result.worst_fd == 5e-7


def test_every_surrogate_with_scalar_and_per_neuron_parameters_and_injection_is_drawn():
    for key in ("tether.LIF", "hxtorch.cuba_lif"):
        row = registry.model(key)
        cases = list(_verify._gradient_cases(row, 0))
        drawn = {(case.surrogate, np.ndim(case.params["threshold"]) > 0, case.inject is not None) for case in cases}
        injects = (False, True) if row.inject else (False,)
        assert drawn == {(s, p, i) for s in row.surrogates for p in (False, True) for i in injects}, (key, drawn)


def test_the_float32_baseline_is_counted_in_float32_ulps():
    # A correct float32 run of tether.LIF is a few float32 ulps off the float64 one (never 1e6: float64 ulps).
    ulps = _verify._float32_ulps(registry.model("tether.LIF"), 0)
    assert 0 < ulps < 1e4


def test_a_failing_backend_comparison_is_kept_for_the_report(monkeypatch):
    from snnref.ops import lif

    honest = lif.run

    def offset(*arguments):
        outputs, finals, used = honest(*arguments)
        outputs["v"] = outputs["v"] + 1e-3
        return outputs, finals, used

    monkeypatch.setattr(lif, "run", offset)
    result = _verify.verify_backend("tether.LIF", "torch", quick=True)
    assert not result.passed
    labels = [label for label, _ in result.failed_comparisons]
    assert labels and all(label.startswith("tether.LIF ") for label in labels), labels
    assert all(not comparison.passed and "out:v" in comparison.traces for _, comparison in result.failed_comparisons)


def test_verify_checks_the_hard_reset_of_every_model_that_resets_to_a_value():
    for key, row in sorted(registry.MODELS.items()):
        names = [name for name, _ in _verify._property_checks(row)]
        resets = row.reset.kind is registry.ResetKind.TO_VALUE and row.out.spiking
        assert ("reset" in names) == resets, (key, names)


def test_verify_impl_quick_says_that_the_goldens_were_left_out():
    result = _verify.verify_implementation(outside_lif.correct, "tether.LIF", quick=True, examples=1)
    assert "golden traces (--quick)" in result.gate.not_checked()
    assert "golden" not in result.checked


def test_verify_backend_compares_strided_input_outside_quick(monkeypatch):
    from snnref.testing import _equivalence, _fd

    seen = []

    def compare(case, backend, dtype, device=None, contiguous=True, **options):
        seen.append(contiguous)
        return SimpleNamespace(worst=0.0, flips=0, failures=[], passed=True)

    monkeypatch.setattr(_equivalence, "compare", compare)
    monkeypatch.setattr(_fd, "smooth_twin_gradcheck", lambda case, backend: True)
    monkeypatch.setattr(_verify, "_golden", lambda result, *args, **kwargs: None)
    # The gate's threshold and far cases run contiguous only: not counted here.
    monkeypatch.setattr(_verify, "_gate_cases", lambda result, *args: None)
    result = _verify.verify_backend("tether.LIF", "torch")
    assert "strided" in result.checked
    assert seen.count(False) == seen.count(True) > 0
    seen.clear()
    assert "strided" not in _verify.verify_backend("tether.LIF", "torch", quick=True).checked
    assert seen and all(seen)


def test_a_model_the_installed_store_lacks_fails_and_one_another_store_lacks_is_not_checked(tmp_path):
    # Before, "golden" was listed as checked, and the row passed, for a model with no golden file at all
    # (an outside contributor's new family, before its goldens were generated).
    from snnref.testing import _golden

    row = replace(registry.MODELS["tether.LIF"], key="contrib.LIF")
    result = _verify.ModelResult(row.key)
    _verify._golden(result, row, "spec")
    expected = ["golden: the installed store holds no golden file of contrib.LIF (in a checkout: snnref golden "
                "generate --model contrib.LIF --out golden)"]
    assert result.failures == expected and "golden" not in result.checked
    # The installed store named as such is judged the same.
    result = _verify.ModelResult(row.key)
    _verify._golden(result, row, "spec", golden_dir=_golden.store_dir())
    assert result.failures == expected
    # A store of one's own configurations holds some models only: the others are left unchecked.
    own = tmp_path / "own"
    own.mkdir()
    manifest = json.loads((_golden.store_dir() / _golden.MANIFEST).read_text())
    manifest["files"] = {name: entry for name, entry in manifest["files"].items() if entry["model"] == "tether.LIF"}
    (own / _golden.MANIFEST).write_text(json.dumps(manifest))
    result = _verify.ModelResult(row.key)
    _verify._golden(result, row, "spec", golden_dir=own)
    assert not result.failures and "golden" not in result.checked


def test_verify_catches_a_backend_that_fires_on_greater_than_where_the_model_says_greater_or_equal(monkeypatch):
    # Before, a backend row ran random cases only, which almost never put u exactly on 0: an outside
    # contributor's Triton kernel with > for >= passed snnref verify (only a pytest test caught it).
    import torch

    from snnref.ops import lif

    honest = lif.run

    def greater_than(row, x, params, state, *arguments):
        outputs, finals, used = honest(row, x, params, state, *arguments)
        # tether.LIF records v before its reset: where it equals the threshold, > does not fire.
        on_threshold = outputs["v"] == params["threshold"]
        outputs["out"] = torch.where(on_threshold, torch.zeros_like(outputs["out"]), outputs["out"])
        return outputs, finals, used

    monkeypatch.setattr(lif, "run", greater_than)
    monkeypatch.setattr(_verify, "_golden", lambda result, *args: None)
    result = _verify.verify_backend("tether.LIF", "torch")
    assert not result.passed and "threshold" in result.checked and "far" in result.checked
    assert any(f.startswith("float64 threshold arctan: spike flip") and ">= against >" in f for f in result.failures)
