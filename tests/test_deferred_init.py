"""Deferred initialization: every module of snnref.nn and snnref.compat built
on the meta device prints, and after ``to_empty`` and torch's recipe
(``for m in model.modules(): m.reset_parameters()``, what FSDP's meta-device
initialization runs) holds exactly what construction on the CPU gives, with
the same random draws, and computes the same outputs.  Every row builds its
module with numbers other than the defaults, so a reset to the registry's
defaults instead of the constructor's fails here."""

import importlib
import inspect

import pytest
import torch
from torch import nn

from snnref import nn as snn
from snnref.compat import qualia, rnnbuilder

STEPS, BATCH, NEURONS = 5, 2, 4


def _drive(shape):
    return torch.randn(shape, generator=torch.Generator().manual_seed(3)) * 0.8 + 0.6


def _tether_call(module):
    return module(_drive((STEPS, BATCH, NEURONS)))


def _rnnbuilder_call(module):
    return module(_drive((STEPS, BATCH, NEURONS)))[0]


def _qualia_call(module):
    # Two single steps: the second starts from the membrane the first left.
    module(_drive((BATCH, NEURONS)))
    return module(_drive((BATCH, NEURONS)) + 0.5)


# class -> (build(device): a module with non-default numbers, a call of it, or None for a surrogate alone).
# qualia's modules take a device argument (as the seed's); the others are built under torch.device(device).
BUILDS = {
    snn.LIF: (lambda d: snn.LIF(NEURONS, decay=0.8, threshold=1.2, alpha=3.0), _tether_call),
    snn.PLIF: (lambda d: snn.PLIF(NEURONS, init_decay=0.7, init_threshold=0.9, surrogate=snn.Sigmoid(3.0, True)),
               _tether_call),
    snn.ALIF: (lambda d: snn.ALIF(NEURONS, decay_v=0.8, decay_a=0.85, threshold=1.1, beta=0.4, alpha=2.5),
               _tether_call),
    snn.SpikingSelfAttention: (lambda d: snn.SpikingSelfAttention(NEURONS, num_heads=2, decay=0.8, threshold=1.1),
                               lambda m: m(_drive((STEPS, BATCH, 3, NEURONS)))),
    snn.Arctan: (lambda d: snn.Arctan(3.0, trainable=True), None),
    snn.Sigmoid: (lambda d: snn.Sigmoid(4.0), None),
    snn.FastSigmoid: (lambda d: snn.FastSigmoid(5.0, trainable=True), None),
    snn.SuperSpike: (lambda d: snn.SuperSpike(30.0), None),
    snn.SpikeLinear: (lambda d: snn.SpikeLinear(0.2), lambda m: m(_drive((BATCH, NEURONS)))),
    rnnbuilder.LIF: (lambda d: rnnbuilder.LIF(4, rnnbuilder.SpikeLinear(0.2)), _rnnbuilder_call),
    rnnbuilder.NoReset: (lambda d: rnnbuilder.NoReset(3), _rnnbuilder_call),
    rnnbuilder.Cooldown: (lambda d: rnnbuilder.Cooldown(6), _rnnbuilder_call),
    rnnbuilder.Adaptive: (lambda d: rnnbuilder.Adaptive(4, tau_thr=6, gamma=0.3), _rnnbuilder_call),
    rnnbuilder.Discontinuous: (lambda d: rnnbuilder.Discontinuous(rnnbuilder.SpikeLinear(0.25), threshold=0.7),
                               _rnnbuilder_call),
    qualia.IFSRL: (lambda d: qualia.IFSRL(1.5, vth_init_l=0.5, vth_init_h=0.9, alpha=2.0, device=d), _qualia_call),
    qualia.ATIF: (lambda d: qualia.ATIF(1.2, vth_init_l=0.6, vth_init_h=1.0, alpha=3.0, device=d), _qualia_call),
}

PACKAGES = ("snnref.nn", "snnref.compat.tether", "snnref.compat.rnnbuilder", "snnref.compat.qualia")


def test_every_public_module_class_has_a_row():
    for package in PACKAGES:
        for name, cls in vars(importlib.import_module(package)).items():
            if inspect.isclass(cls) and issubclass(cls, nn.Module) and not name.startswith("_") \
                    and cls is not snn.Surrogate:
                assert cls in BUILDS, f"{package}.{name} has no row in BUILDS"


def _build(cls, device):
    torch.manual_seed(11)
    build = BUILDS[cls][0]
    with torch.device(device):
        module = build(device)
    if hasattr(module, "initialize_parameters"):
        # A lazy module sizes its parameters from a first input: torch's lazy modules are
        # materialized (on the meta device too) before to_empty can move them.
        module.initialize_parameters(torch.empty((STEPS, BATCH, NEURONS), device=device))
    return module


@pytest.mark.parametrize("cls", list(BUILDS), ids=lambda cls: f"{cls.__module__}.{cls.__name__}")
def test_a_module_built_on_the_meta_device_is_initialized_as_on_the_cpu(cls):
    expected = _build(cls, "cpu")
    module = _build(cls, "meta")
    # It prints where its tensors hold no values.
    assert type(module).__name__ in repr(module)
    module.to_empty(device="cpu")
    owners = [m for m in module.modules() if any(True for _ in m.parameters(recurse=False))
              or any(True for _ in m.buffers(recurse=False))]
    assert owners, "a row whose module holds no tensor tests nothing here"
    with torch.no_grad():
        # What to_empty left is whatever memory it got: NaN here, so that a tensor no reset fills shows.
        for tensor in [*module.parameters(), *module.buffers()]:
            tensor.fill_(float("nan"))
    # torch's recipe after to_empty, as FSDP runs it on every module that holds parameters or buffers.
    torch.manual_seed(11)
    for owner in owners:
        assert hasattr(owner, "reset_parameters"), f"{type(owner).__name__} has no reset_parameters"
        owner.reset_parameters()
    got, want = module.state_dict(), expected.state_dict()
    assert list(got) == list(want)
    for name in want:
        assert got[name].dtype == want[name].dtype and torch.equal(got[name], want[name]), (name, got[name],
                                                                                            want[name])
    call = BUILDS[cls][1]
    if call is not None:
        torch.testing.assert_close(call(module), call(expected), rtol=0, atol=0)


def test_reset_parameters_undoes_training_and_leaves_the_carried_state_to_reset_state():
    module = snn.LIF(NEURONS, decay=0.8, alpha=3.0)
    module(_drive((STEPS, BATCH, NEURONS)))
    carried = module.v.clone()
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.add_(0.25)
    for owner in module.modules():
        owner.reset_parameters()
    assert [p.item() for p in module.parameters()] == [pytest.approx(0.8), 1.0, 3.0]
    assert torch.equal(module.v, carried)


def test_a_module_pickled_before_it_kept_its_numbers_says_so():
    module = snn.ALIF(NEURONS)
    # What unpickling a module saved whole before reset_parameters existed gives: no _initial.
    del module.__dict__["_initial"]
    with pytest.raises(RuntimeError, match="ALIF was pickled before snnref kept its constructor's numbers"):
        module.reset_parameters()
