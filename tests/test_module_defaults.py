"""Every seed module built with no arguments holds the registry's defaults
(SPEC section 8, the seeds' own defaults) and trains exactly the registry's
trainable parameters, so a constructor default that drifts from the seed
(LIF(alpha=1.0), ALIF(decay_a=0.95), Adaptive(gamma=0.2), SpikeLinear(0.25),
...) fails here by name.  Found by mutation testing: every other test builds
its modules with explicit values or overwrites their parameters."""

import importlib
import inspect
import math

import pytest
import torch

from snnref import registry
from snnref.compat import qualia, rnnbuilder
from snnref.nn import ALIF, LIF, PLIF, SpikingSelfAttention, SpikeLinear, SuperSpike

NEURONS = 4


def _tether(module):
    """Registry name -> the module's tensor (tether modules)."""
    if isinstance(module, SpikingSelfAttention):
        return {f"{c}_{p}": getattr(module, f"{c}_{p}") for c in "qkv" for p in ("decay", "threshold", "alpha")}
    if isinstance(module, ALIF):
        return dict({n: getattr(module, n) for n in ("decay_v", "decay_a", "threshold", "beta")}, alpha=module.alpha)
    return {"decay": module.decay, "threshold": module.threshold, "alpha": module.alpha}


def _rnnbuilder(module):
    values = {"gradient_factor": module.spike_function.gradient_factor}
    for name in ("tau", "tau_thr", "gamma", "threshold"):
        if hasattr(module, name):
            values[name] = torch.tensor(getattr(module, name), dtype=torch.float64)
    return values


def _qualia(module):
    # The threshold is drawn in [vth_init_l, vth_init_h] * v_threshold; its registry default is v_threshold.
    return {"alpha": torch.tensor(module.alpha, dtype=torch.float64)}


# registry key -> (a module built with every default, registry name -> its value)
DEFAULT_MODULES = {
    "tether.LIF": (lambda: LIF(NEURONS), _tether),
    "tether.PLIF": (lambda: PLIF(NEURONS), _tether),
    "tether.ALIF": (lambda: ALIF(NEURONS), _tether),
    "tether.SpikingSelfAttention": (lambda: SpikingSelfAttention(NEURONS, num_heads=2), _tether),
    "rnnbuilder.LIF": (rnnbuilder.LIF, _rnnbuilder),
    "rnnbuilder.NoReset": (rnnbuilder.NoReset, _rnnbuilder),
    "rnnbuilder.Cooldown": (rnnbuilder.Cooldown, _rnnbuilder),
    "rnnbuilder.Adaptive": (rnnbuilder.Adaptive, _rnnbuilder),
    "rnnbuilder.Discontinuous": (rnnbuilder.Discontinuous, _rnnbuilder),
    "qualia.IFSRL": (qualia.IFSRL, _qualia),
    "qualia.ATIF": (qualia.ATIF, _qualia),
}


def test_every_module_class_of_a_registry_model_has_a_defaults_row():
    built = {type(make()) for make, _ in DEFAULT_MODULES.values()}
    for package in ("snnref.nn", "snnref.compat.tether", "snnref.compat.rnnbuilder", "snnref.compat.qualia"):
        for cls in vars(importlib.import_module(package)).values():
            if inspect.isclass(cls) and getattr(cls, "model", None) in registry.MODELS:
                assert cls in built, f"{package}.{cls.__name__} ({cls.model}) has no row in DEFAULT_MODULES"


@pytest.mark.parametrize("key", sorted(DEFAULT_MODULES))
def test_a_module_built_with_no_arguments_holds_the_registry_defaults(key):
    make, values_of = DEFAULT_MODULES[key]
    values = values_of(make())
    row = registry.model(key)
    checked = []
    for param in row.params:
        if param.default is None or param.name not in values:
            continue
        value = values[param.name].detach()
        # In the module's own dtype: a float32 0.9 is not the float64 0.9.
        assert torch.all(value == torch.tensor(param.default, dtype=value.dtype)), (
            f"{key}: default {param.name} = {value.tolist()}, the registry (the seed) says {param.default}")
        checked.append(param.name)
    assert checked, f"{key}: no default checked"


@pytest.mark.parametrize("key", sorted(k for k in DEFAULT_MODULES if k.startswith("tether.")))
def test_a_tether_module_trains_exactly_the_registry_s_trainable_parameters(key):
    make, values_of = DEFAULT_MODULES[key]
    row = registry.model(key)
    for name, value in values_of(make()).items():
        assert value.requires_grad == row.param(name).trainable, f"{key}: {name}"


def test_qualia_threshold_starts_in_its_initialisation_range_times_v_threshold():
    torch.manual_seed(0)
    for cls in (qualia.IFSRL, qualia.ATIF):
        theta = cls(v_threshold=4.0, vth_init_l=0.8, vth_init_h=1.0).get_coeffs().item()
        assert 3.2 <= theta <= 4.0, (cls.__name__, theta)


def test_hxtorch_superspike_module_default_is_the_registry_s_alpha():
    assert SuperSpike().alpha.item() == registry.model("hxtorch.cuba_lif").param("alpha").default
    assert SpikeLinear().gradient_factor.item() == registry.model("rnnbuilder.LIF").param("gradient_factor").default
    assert math.isclose(SpikeLinear().gradient_factor.item(), 0.3)
