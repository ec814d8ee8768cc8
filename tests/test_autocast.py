"""The seed layers under torch.autocast compute in float32, as snnref.simulate does.

An autocast ``Linear`` hands the next layer bfloat16 activations while the
neuron's parameters stay float32.  Every entry point of the seed layers (the
functions of ``snnref.functional``, the neuron modules of ``snnref.nn`` and of
``snnref.compat``) must then give, bit for bit, what it gives on the same
values in float32 outside autocast, and hand x's gradient back in x's dtype.
Before, the modules refused the mix by name, and the functions rounded their
Python-number parameters (hxtorch's 1e-5 s time constants) to bfloat16 and
failed on the cpu backend.  ``test_backends.py`` checks simulate itself per
registry model and backend; the table below must name every entry point
(``test_every_entry_point_is_in_the_table``).
"""

import collections
import inspect

import pytest
import torch

import snnref
import snnref.functional as F
from snnref import nn as snn
from snnref.compat import qualia, rnnbuilder

T, B, N = 6, 2, 4
HX = {"leak": 0.0, "reset": 0.0, "threshold": 1.0, "tau_syn": 1e-5, "tau_mem": 1e-5, "dt": 1e-6}
SPIKING_HX = dict(HX, method="superspike", alpha=50.0)


def iaf(keywords):
    return {k: v for k, v in keywords.items() if k != "leak"}


def stepped(step):
    """A step function run over time from zero state, its outputs stacked."""
    def run(x):
        z = v = i = torch.zeros(x.shape[1:], dtype=x.dtype)
        outputs = []
        for t in range(x.shape[0]):
            z, v, i = step(z, v, i, x[t])
            outputs.append(torch.stack((z, v, i)))
        return (torch.stack(outputs),)
    return run


def refractory(x):
    """refractory_update on x itself as the membrane (its own tensors in x's dtype):
    spikes where x > 1, a hold of two steps left where x > 1.5."""
    spikes, held = (x > 1).to(x.dtype), 2 * (x > 1.5).to(x.dtype)
    return F.refractory_update(spikes, x, held, None, None, reset=0.0, refractory_time=2e-6, dt=1e-6)


def module(factory, shape=(T, B, N)):
    """``factory()`` built from a fixed seed (so both runs get the same initial
    parameters), called on x of ``shape``; a tuple of tensors comes back."""
    def run(x):
        torch.manual_seed(0)
        layer = factory()
        out = layer(x.reshape(shape))
        if isinstance(out, tuple):
            out, state = out
            return (out, *state.values())
        return (out,)
    return run


def qualia_steps(factory):
    def run(x):
        torch.manual_seed(0)
        node = factory()
        return (torch.stack([node(x[t]) for t in range(x.shape[0])]), node.v)
    return run


def tether_lif(function, shape):
    def run(x):
        return function(x.reshape(T, B * N), torch.zeros(B * N), torch.full(shape, 0.9, requires_grad=True),
                        torch.ones(shape), 2.0, 0)
    return run


# Entry point -> a run of it on x of shape (T, B, N), returning tensors.
ENTRY_POINTS = {
    "lif": tether_lif(F.lif, ()),
    "plif": tether_lif(F.plif, (N,)),
    "alif": lambda x: F.alif(x.reshape(T, B * N), torch.zeros(B * N), torch.zeros(B * N), 0.9, 0.8,
                             torch.tensor(1.0, requires_grad=True), 0.5, 2.0),
    "cuba_lif_integration": lambda x: F.cuba_lif_integration(x, **SPIKING_HX),
    "cuba_refractory_lif_integration": lambda x: F.cuba_refractory_lif_integration(
        x, refractory_time=2e-6, **SPIKING_HX),
    "cuba_iaf_integration": lambda x: F.cuba_iaf_integration(x, **iaf(SPIKING_HX)),
    "cuba_refractory_iaf_integration": lambda x: F.cuba_refractory_iaf_integration(
        x, refractory_time=2e-6, **iaf(SPIKING_HX)),
    "cuba_li_integration": lambda x: F.cuba_li_integration(
        x, **{k: HX[k] for k in ("leak", "tau_syn", "tau_mem", "dt")}),
    "cuba_lif_step": stepped(lambda z, v, i, x_t: F.cuba_lif_step(z, v, i, x_t, None, None, **SPIKING_HX)),
    "refractory_update": refractory,
    "spiking_threshold": lambda x: (F.spiking_threshold(x, "superspike", 5.0),),
    "nn.LIF": module(lambda: snn.LIF(N, store_traces=True)),
    "nn.PLIF": module(lambda: snn.PLIF(N)),
    "nn.ALIF": module(lambda: snn.ALIF(N)),
    "nn.SpikingSelfAttention": module(lambda: snn.SpikingSelfAttention(N, num_heads=2), (T, 1, B, N)),
    "qualia.IFSRL": qualia_steps(qualia.IFSRL),
    "qualia.ATIF": qualia_steps(qualia.ATIF),
    "rnnbuilder.LIF": module(rnnbuilder.LIF),
    "rnnbuilder.NoReset": module(rnnbuilder.NoReset),
    "rnnbuilder.Cooldown": module(rnnbuilder.Cooldown),
    "rnnbuilder.Adaptive": module(rnnbuilder.Adaptive),
    "rnnbuilder.Discontinuous": module(rnnbuilder.Discontinuous),
}


def neuron_modules(namespace, prefix):
    """The neuron module classes a seed layer exports (surrogate modules aside)."""
    return {f"{prefix}.{name}" for name in namespace.__all__
            if inspect.isclass(cls := getattr(namespace, name)) and issubclass(cls, torch.nn.Module)
            and not issubclass(cls, snn.Surrogate)}


def test_every_entry_point_is_in_the_table():
    # Unterjubel computes nothing: it returns the observation it is given, in that observation's dtype.
    expected = (set(F.__all__) - {"Unterjubel"} | neuron_modules(snn, "nn") | neuron_modules(qualia, "qualia")
                | neuron_modules(rnnbuilder, "rnnbuilder"))
    assert set(ENTRY_POINTS) == expected


def differentiable(tensors):
    return [value for value in tensors if value is not None and value.requires_grad]


@pytest.mark.parametrize("x_dtype", [torch.bfloat16, torch.float32], ids=["bfloat16_x", "float32_x"])
@pytest.mark.parametrize("name", ENTRY_POINTS)
def test_under_autocast_an_entry_point_computes_in_float32(name, x_dtype):
    x_values = (torch.randn(T, B, N, generator=torch.Generator().manual_seed(3)) + 0.6).to(x_dtype)
    cotangent_generator = torch.Generator().manual_seed(4)

    def run(x, autocast):
        x = x.detach().requires_grad_()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            outputs = ENTRY_POINTS[name](x)
        outputs = [value for value in outputs if value is not None]
        loss = sum((value.float() * torch.randn(value.shape, generator=cotangent_generator.manual_seed(k))).sum()
                   for k, value in enumerate(differentiable(outputs)))
        return outputs, torch.autograd.grad(loss, x)[0]

    outputs, x_gradient = run(x_values, autocast=True)
    expected_outputs, expected_gradient = run(x_values.float(), autocast=False)
    assert len(outputs) == len(expected_outputs)
    for value, expected in zip(outputs, expected_outputs):
        assert value.dtype == torch.float32
        assert torch.equal(value, expected)
    assert x_gradient.dtype == x_dtype
    assert torch.equal(x_gradient, expected_gradient.to(x_dtype))


def test_a_half_precision_module_under_autocast_is_told_to_stay_float32():
    # The forward sees x cast to float32, not the half x the caller passed: the
    # message must say why, or it would contradict the caller's own x.
    with torch.autocast("cpu", dtype=torch.bfloat16), pytest.raises(TypeError) as refused:
        snn.LIF(N).to(torch.bfloat16)(torch.zeros(T, B, N, dtype=torch.bfloat16))
    assert str(refused.value) == (
        "x: torch.float32 on cpu, but this module's decay is torch.bfloat16 on cpu; move one to the other "
        "(module.to(x.dtype) or x.to(...)) (under torch.autocast the neurons compute in float32: keep the module "
        "in float32 there)")


def test_hardware_observations_are_cast_with_the_input_in_any_tuple():
    # hw_data's traces are tensors inside a tuple (a named one here): cast with
    # the input, they must not meet it as bfloat16 (refused as another dtype).
    HwData = collections.namedtuple("HwData", "spikes membrane_cadc membrane_madc")
    generator = torch.Generator().manual_seed(5)
    x = (torch.randn(T, B, N, generator=generator) + 0.6).to(torch.bfloat16)
    spikes = (torch.rand(T, B, N, generator=generator) < 0.3).to(torch.bfloat16)
    membrane = torch.randn(T, B, N, generator=generator).to(torch.bfloat16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        observed = F.cuba_lif_integration(x, hw_data=HwData(spikes, membrane, None), **SPIKING_HX)
    expected = F.cuba_lif_integration(x.float(), hw_data=(spikes.float(), membrane.float(), None), **SPIKING_HX)
    for value, reference in zip(observed[:3], expected[:3]):
        assert value.dtype == torch.float32 and torch.equal(value, reference)


# Found by mutation testing: each failed with one bug planted in snnref/backend.py.
def test_the_cast_reaches_every_container_and_keeps_a_named_tuples_type():
    # float32_under_autocast finds the device in nested arguments and casts half tensors wherever they
    # are (mutants: no look into containers; lists left half; a named tuple turned into a plain tuple,
    # which a caller reading its fields by name could no longer use).
    from snnref import backend

    Pair = collections.namedtuple("Pair", "first second")
    half = torch.ones(2, dtype=torch.bfloat16)
    assert backend._first_tensor(("tether.LIF", 3, {"state": [None, half]})) is half
    cast = backend._float32({"listed": [half, 1.5], "named": Pair(half, None)})
    assert cast["listed"][0].dtype == torch.float32 and cast["listed"][1] == 1.5
    assert type(cast["named"]) is Pair and cast["named"].first.dtype == torch.float32 and cast["named"].second is None


def test_under_autocast_a_tensor_on_a_device_autocast_does_not_know_is_left_to_simulate():
    # meta: autocast has no dtype for it (torch.autocast("meta") raised "unsupported scalarType"); the
    # call must reach simulate, whose own check names the device (mutant: autocast entered anyway).
    with torch.autocast("cpu", dtype=torch.bfloat16):
        with pytest.raises(ValueError, match=r"^x: a tensor on the 'meta' device holds no values"):
            snnref.simulate("tether.LIF", torch.zeros(4, 3, device="meta"))
