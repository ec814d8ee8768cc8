"""Issue 9's bad inputs outside the gate itself: each is refused by name (the
gate's own ones are in test_gate.py, test_cli.py and test_golden.py)."""

import numpy as np
import pytest
import torch

import snnref
import snnref.spec as spec
from snnref import functional, nn

X = torch.full((4, 1, 3), 0.5)
CUBA = dict(leak=0.0, reset=0.0, threshold=1.0, tau_syn=1e-5, tau_mem=1e-5, method="superspike", alpha=50.0)


def test_x_on_the_meta_device_is_refused():
    with pytest.raises(ValueError, match="x: a tensor on the 'meta' device holds no values"):
        snnref.simulate("tether.LIF", torch.zeros(4, 1, 3, device="meta"))


def test_injected_spikes_must_be_0_or_1():
    half = torch.full((4, 1, 3), 0.5)
    with pytest.raises(ValueError, match=r"inject\['spikes'\]: expected observed spikes of exactly 0 or 1, got 0.5"):
        snnref.simulate("hxtorch.cuba_lif", X, inject={"spikes": half}, backend="torch")
    with pytest.raises(ValueError, match=r"inject\['spikes'\]: expected observed spikes of exactly 0 or 1"):
        spec.simulate("hxtorch.cuba_lif", X.numpy(), inject={"spikes": half.numpy()})
    # 0 and 1 are accepted.
    snnref.simulate("hxtorch.cuba_lif", X, inject={"spikes": (half > 0.4).float()}, backend="torch")


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")
def test_a_float16_membrane_leaving_the_half_range_is_an_error():
    x = torch.full((4, 1, 3), 30000.0, dtype=torch.float16)
    with pytest.raises(OverflowError, match=r"outputs\['m'\]: leaves the torch.float16 range"):
        snnref.simulate("rnnbuilder.NoReset", x, backend="triton")


@pytest.mark.parametrize("call,name", [
    (lambda nan: functional.spiking_threshold(nan, "superspike", 50.0), "input"),
    (lambda nan: functional.cuba_lif_step(torch.zeros(3), torch.zeros(3), torch.zeros(3), nan, None, None,
                                          **CUBA), "input"),
    (lambda nan: functional.cuba_lif_step(torch.zeros(3), nan, torch.zeros(3), torch.zeros(3), None, None,
                                          **CUBA), "v"),
    (lambda nan: functional.refractory_update(torch.zeros(3), torch.zeros(3), nan, None, None, reset=0.0,
                                              refractory_time=1e-6, dt=1e-6), "ref_state"),
])
def test_nan_inputs_to_the_hxtorch_step_functions_are_named(call, name):
    nan = torch.tensor([0.0, float("nan"), 1.0])
    with pytest.raises(ValueError, match=f"{name}: expected finite values, found NaN or inf"):
        call(nan)


@pytest.mark.parametrize("make,message", [
    (lambda: nn.PLIF(-3), "n_neurons: expected a positive integer, got -3"),
    (lambda: nn.LIF(2.5), "n_neurons: expected a positive integer, got 2.5"),
    (lambda: nn.LIF(4, decay="fast"), "decay: expected a number, got 'fast'"),
    (lambda: nn.PLIF(4, init_threshold=None), "init_threshold: expected a number, got None"),
])
def test_neuron_constructors_name_the_bad_argument(make, message):
    with pytest.raises((TypeError, ValueError), match=message):
        make()


def test_good_constructor_arguments_still_work():
    assert nn.LIF(np.int64(3), decay=np.float32(0.8)).n_neurons == 3
