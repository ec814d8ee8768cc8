"""snnref.nn: tether's modules on snnref.backend.simulate agree with the float64 spec.

Modules run in float64 and are compared with ``snnref.spec.simulate`` /
``snnref.spec.vjp`` on random cases; the rest checks the module contract of
SPEC section 2: detached state carried across calls, ``reset_state()``, state
kept out of ``state_dict``, per-neuron parameters over any batch size, and
which parameters are trainable.
"""

import copy
import importlib
import re

import numpy as np
import pytest
import torch

import snnref
from snnref import checks, registry, spec
from snnref.compat import rnnbuilder, tether
from snnref.nn import (ALIF, LIF, PLIF, Arctan, FastSigmoid, Sigmoid, SpikeLinear, SpikingSelfAttention,
                       SuperSpike, Surrogate)

NEURONS = 4  # also the attention's dim: num_heads=2 divides it


def tensor(array):
    return torch.tensor(np.asarray(array), dtype=torch.float64)


def registry_params(module):
    """Registry parameter name -> the module's tensor for it."""
    if isinstance(module, SpikingSelfAttention):
        params = {"proj_weight": module.proj.weight, "proj_bias": module.proj.bias}
        for c in ("q", "k", "v"):
            params[f"{c}_weight"] = getattr(module, c).weight
            params.update({f"{c}_{p}": getattr(module, f"{c}_{p}") for p in ("decay", "threshold", "alpha")})
        return params
    if isinstance(module, ALIF):
        names = ("decay_v", "decay_a", "threshold", "beta")
        return dict({n: getattr(module, n) for n in names}, alpha=module.alpha)
    return {"decay": module.decay, "threshold": module.threshold, "alpha": module.alpha}


# (registry key, surrogate key, module factory); PLIF's decay and threshold are (N,) by the registry
MODULES = {
    "LIF-arctan": ("tether.LIF", "arctan", lambda: LIF(NEURONS, store_traces=True)),
    "LIF-sigmoid": ("tether.LIF", "sigmoid",
                    lambda: LIF(NEURONS, surrogate=Sigmoid(3.0, trainable=True), store_traces=True)),
    "LIF-fast_sigmoid": ("tether.LIF", "fast_sigmoid",
                         lambda: LIF(NEURONS, surrogate=FastSigmoid(trainable=True), store_traces=True)),
    "PLIF-arctan": ("tether.PLIF", "arctan", lambda: PLIF(NEURONS, store_traces=True)),
    "PLIF-sigmoid": ("tether.PLIF", "sigmoid",
                     lambda: PLIF(NEURONS, surrogate=Sigmoid(trainable=True), store_traces=True)),
    "ALIF": ("tether.ALIF", "arctan", lambda: ALIF(NEURONS, store_traces=True)),
    "SpikingSelfAttention": ("tether.SpikingSelfAttention", "arctan",
                             lambda: SpikingSelfAttention(NEURONS, num_heads=2)),
}


def build(name, case=None):
    """A float64 module; with a case, its parameters (and carried state, if the case has one) set from it."""
    module = MODULES[name][2]().double()
    if case is not None:
        with torch.no_grad():
            for param, value in registry_params(module).items():
                value.copy_(tensor(case.params[param]))
        for var, value in case.state.items():
            setattr(module, var, tensor(value))
    return module


def case_for(name, seed, steps=8, batch=2, random_state=True):
    key, surrogate, _ = MODULES[name]
    return checks.random_case(key, np.random.default_rng(seed), steps=steps, batch=batch, neurons=NEURONS,
                              surrogate=surrogate, random_state=random_state)


def close(actual, expected):
    np.testing.assert_allclose(actual.detach().numpy(), expected, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("name", MODULES)
@pytest.mark.parametrize("seed", [0, 1])
def test_outputs_and_gradients_equal_the_spec(name, seed):
    """Spikes (or the attention output), the stored sequences (detached, as tether stores
    them) and the gradients of x and of every parameter equal spec.simulate / spec.vjp,
    from a random carried state."""
    key, surrogate, _ = MODULES[name]
    case = case_for(name, seed)
    module = build(name, case)
    x = tensor(case.x).requires_grad_()
    out = module(x)
    cotangents = {"out": case.cotangents["out"]}
    (out * tensor(cotangents["out"])).sum().backward()

    trace = spec.simulate(key, case.x, case.params, case.state, surrogate=surrogate)
    grads = spec.vjp(key, case.x, case.params, case.state, cotangents, surrogate=surrogate)
    close(out, trace.outputs["out"])
    for attribute, output in getattr(module, "kept_sequences", {}).items():
        kept = getattr(module, attribute)
        assert not kept.requires_grad, attribute
        close(kept, trace.outputs[output])
    for var, value in trace.final_state.items():
        close(getattr(module, var), value)
    close(x.grad, grads["x"])
    for param, value in registry_params(module).items():
        close(value.grad, grads[param])


@pytest.mark.parametrize("name", MODULES)
def test_state_carried_across_two_calls_equals_one_long_run(name):
    key, surrogate, _ = MODULES[name]
    case = case_for(name, 2, random_state=False)
    x = tensor(case.x)
    whole = build(name, case)
    parts = build(name, case)
    long = whole(x)
    split = torch.cat([parts(x[:3]), parts(x[3:])])
    assert torch.equal(split, long)
    trace = spec.simulate(key, case.x, case.params, surrogate=surrogate)
    close(long, trace.outputs["out"])
    for var, value in trace.final_state.items():
        close(getattr(parts, var), value)
        assert not getattr(parts, var).requires_grad  # carried detached


@pytest.mark.parametrize("name", MODULES)
def test_reset_state_starts_again_from_zero(name):
    key = MODULES[name][0]
    case = case_for(name, 3)
    x = tensor(case.x)
    module = build(name, case)
    module(x)
    old = {var: getattr(module, var) for var in registry.model(key).state_names}
    (module.reset_states if isinstance(module, SpikingSelfAttention) else module.reset_state)()
    for var, value in old.items():
        assert getattr(module, var) is not value and not getattr(module, var).any()
    fresh = build(name, case_for(name, 3, random_state=False))
    assert torch.equal(module(x), fresh(x))


@pytest.mark.parametrize("name", MODULES)
def test_second_backward_after_reset_state(name):
    """The carried state holds no graph: each call backpropagates on its own."""
    case = case_for(name, 4)
    module = build(name, case)
    x = tensor(case.x)
    module(x).sum().backward()
    module(x).sum().backward()
    module.reset_state()
    module(x).sum().backward()
    assert all(p.grad is not None for p in module.parameters())


@pytest.mark.parametrize("name", MODULES)
def test_state_dict_loads_into_a_fresh_module_whatever_the_batch(name):
    key = MODULES[name][0]
    trained = build(name, case_for(name, 5, batch=3))
    trained(tensor(case_for(name, 5, batch=3).x))
    fresh = build(name)
    fresh(tensor(case_for(name, 6, batch=1).x))
    state_dict = trained.state_dict()
    assert not set(state_dict) & set(registry.model(key).state_names)
    fresh.load_state_dict(state_dict)
    # Batch 2 matches neither carried state: both start from zeros.
    x = tensor(case_for(name, 7, batch=2).x)
    assert torch.equal(fresh(x), trained(x))


def test_a_call_with_another_batch_size_starts_from_zero():
    module = LIF(NEURONS).double()
    x = tensor(case_for("LIF-arctan", 8).x)
    module(x[:, :1])
    trace = spec.simulate("tether.LIF", x.numpy())
    close(module(x), trace.outputs["out"])


@pytest.mark.parametrize("given", [torch.full((16,), 1.5), torch.tensor(1.5), 1.5, torch.full((64,), 1.5)],
                         ids=["per neuron", "0-d", "number", "flattened"])
def test_a_membrane_the_caller_sets_is_broadcast_not_dropped(given):
    # Found by an outside user: a per-neuron or single initial membrane set on the module did not
    # fit the call's (B, N) and was dropped like a state from another batch size, without a word.
    x = torch.full((5, 4, 16), 0.1)
    neuron = LIF(16)
    neuron.v = given
    expected = snnref.simulate("tether.LIF", x, {"decay": 0.9, "threshold": 1.0},
                               {"v": torch.full((4, 16), 1.5)}).outputs["out"]
    out = neuron(x)
    assert torch.equal(out, expected) and out.sum() == 64
    # What the module left is its own again: another batch size starts from zero.
    assert torch.equal(neuron(torch.full((5, 2, 16), 0.1)), torch.zeros(5, 2, 16))


@pytest.mark.parametrize("given", [torch.zeros(3), [0.0] * 5])
def test_a_membrane_the_caller_sets_that_does_not_broadcast_is_refused_by_name(given):
    # Before: silently dropped (a tensor), or "AttributeError: 'list' object has no attribute 'numel'".
    neuron = LIF(16)
    neuron.v = given
    with pytest.raises(ValueError, match=r"the carried state v: expected a shape that broadcasts to \(4, 16\)"):
        neuron(torch.full((5, 4, 16), 0.1))


def test_one_state_variable_set_by_the_caller_and_the_other_at_zero():
    x = torch.full((5, 2, 8), 0.3)
    neuron = ALIF(8)
    neuron.v = torch.full((8,), 0.9)
    params = {name: getattr(neuron, name) for name in ("decay_v", "decay_a", "threshold", "beta")}
    expected = snnref.simulate("tether.ALIF", x, dict(params, alpha=neuron.alpha), {"v": torch.full((8,), 0.9)})
    assert torch.equal(neuron(x), expected.outputs["out"])


def test_plif_per_neuron_parameters_broadcast_over_any_batch():
    """Batch 3 equals three batch-1 runs and the (T, n) layout; per-neuron gradients sum
    over the batch (seed bug B4 indexes the parameters by batch x neuron)."""
    case = case_for("PLIF-arctan", 9, batch=3, random_state=False)
    x = tensor(case.x)
    batched = build("PLIF-arctan", case)
    out = batched(x)
    out.sum().backward()
    close(out, spec.simulate("tether.PLIF", case.x, case.params).outputs["out"])
    decay_grads = []
    for b in range(3):
        single = build("PLIF-arctan", case)
        row = single(x[:, b:b + 1])
        assert torch.equal(row, out[:, b:b + 1])
        unbatched = build("PLIF-arctan", case)
        assert torch.equal(unbatched(x[:, b]), out[:, b])
        row.sum().backward()
        decay_grads.append(single.decay.grad)
    close(batched.decay.grad, sum(decay_grads).numpy())


def test_every_attention_parameter_gets_a_nonzero_gradient():
    """Seed bug B6: the fused attention left q/k/v weights without gradients.  The random
    carried context is nonzero, so the query spikes reach the projection."""
    case = case_for("SpikingSelfAttention", 10)
    module = build("SpikingSelfAttention", case)
    out = module(tensor(case.x))
    (out * tensor(case.cotangents["out"])).sum().backward()
    names = {name for name, _ in module.named_parameters()}
    assert names == {"q.weight", "k.weight", "v.weight", "proj.weight", "proj.bias"} | {
        f"{c}_{p}" for c in "qkv" for p in ("decay", "threshold", "alpha")}
    for name, param in module.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name


def test_num_heads_does_not_change_the_attention():
    case = case_for("SpikingSelfAttention", 11)
    reference = SpikingSelfAttention(NEURONS, num_heads=1).double()
    x = tensor(case.x)
    expected = reference(x)
    for heads in (2, 4):
        module = SpikingSelfAttention(NEURONS, num_heads=heads).double()
        module.load_state_dict(reference.state_dict())
        assert torch.equal(module(x), expected)


def test_default_alpha_is_trainable_a_user_surrogate_keeps_its_flag():
    default = LIF(NEURONS)
    assert isinstance(default.alpha, torch.nn.Parameter)
    assert isinstance(default.surrogate, Arctan) and default.surrogate.trainable
    user = LIF(NEURONS, surrogate=Sigmoid(1.5))
    assert not user.surrogate.trainable and not user.alpha.requires_grad
    assert "surrogate.alpha" not in dict(user.named_parameters()) and "surrogate.alpha" in user.state_dict()
    assert LIF(NEURONS, surrogate=FastSigmoid(trainable=True)).surrogate.trainable
    assert PLIF(NEURONS).surrogate.trainable
    # tether's ALIF holds alpha itself: its key is "alpha", as in a tether checkpoint.
    assert set(dict(ALIF(NEURONS).named_parameters())) == {"decay_v", "decay_a", "threshold", "beta", "alpha"}
    attention = SpikingSelfAttention(NEURONS, num_heads=2)
    assert all(getattr(attention, f"{c}_alpha").requires_grad for c in "qkv")
    for param in ("decay", "threshold"):
        assert isinstance(getattr(default, param), torch.nn.Parameter)
    assert PLIF(NEURONS, init_decay=0.8).decay.shape == (NEURONS,)


# Found by mutation testing: every other test builds the tether modules with their defaults or overwrites
# their parameters, so a constructor argument ignored (PLIF's alpha, taken as 2.0) passed.
@pytest.mark.parametrize("make,expected", [
    (lambda: LIF(3, decay=0.8, threshold=0.7, alpha=3.5), {"decay": 0.8, "threshold": 0.7, "alpha": 3.5}),
    (lambda: PLIF(3, init_decay=0.8, init_threshold=0.7, alpha=3.5),
     {"decay": [0.8] * 3, "threshold": [0.7] * 3, "alpha": 3.5}),
    (lambda: ALIF(3, decay_v=0.8, decay_a=0.7, threshold=0.6, beta=0.3, alpha=3.5),
     {"decay_v": 0.8, "decay_a": 0.7, "threshold": 0.6, "beta": 0.3, "alpha": 3.5}),
    # The attention's alpha is tether's fixed initial 2.0, whatever the threshold.
    (lambda: SpikingSelfAttention(4, 2, decay=0.8, threshold=0.7),
     {f"{c}_{p}": v for c in "qkv" for p, v in (("decay", 0.8), ("threshold", 0.7), ("alpha", 2.0))}),
])
def test_the_constructor_s_numbers_are_the_module_s_parameters(make, expected):
    module = make()
    for name, value in expected.items():
        assert torch.equal(getattr(module, name).detach(), torch.tensor(value)), name


def test_surrogate_keys_and_scales():
    assert [s().key for s in (Arctan, Sigmoid, FastSigmoid, SuperSpike, SpikeLinear)] == [
        "arctan", "sigmoid", "fast_sigmoid", "superspike", "spike_linear"]
    assert SpikeLinear(0.5).gradient_factor.item() == 0.5 and SuperSpike().alpha.item() == 50.0
    assert not SpikeLinear().trainable


def test_a_fixed_scale_is_the_given_number_in_every_dtype_and_follows_the_device_only():
    # Before, SpikeLinear's 0.3 was stored in float32: float64 gradients used 0.30000001192092896.
    u = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    SpikeLinear()(u).backward()
    assert u.grad.item() == 0.3  # f(0) = gradient_factor * max(0, 1 - 0), SPEC section 1
    surrogate = Sigmoid(0.1).float().half().double()
    assert surrogate.alpha.dtype == torch.float64 and surrogate.alpha.item() == 0.1
    assert surrogate.to("meta").alpha.device.type == "meta"
    # Deferred initialisation: built on the meta device, then given memory (to_empty keeps no value).
    with torch.device("meta"):
        deferred = LIF(NEURONS, surrogate=Sigmoid(0.1))
    assert deferred.to_empty(device="cpu").surrogate.alpha.device.type == "cpu"
    # A float32 module takes float32 x, its fixed scale rounded once from 0.1; so does a float64 one.
    for dtype in (torch.float32, torch.float64):
        neuron = LIF(NEURONS, surrogate=Sigmoid(0.1)).to(dtype)
        x = torch.full((1, NEURONS), 0.6, dtype=dtype, requires_grad=True)
        neuron(x).sum().backward()
        # One step, its membrane 0.6 is 0.4 below threshold: dL/dx = f(-0.4), written out.
        sigma = 1 / (1 + np.exp(0.1 * 0.4))
        expected = float(torch.tensor(0.1, dtype=dtype)) * sigma * (1 - sigma)
        assert abs(x.grad[0, 0].item() - expected) <= 4 * torch.finfo(dtype).eps * expected
    restored = Sigmoid(0.5)
    restored.load_state_dict(Sigmoid(0.1).state_dict())
    assert restored.alpha.item() == 0.1


def test_compat_tether_names():
    assert tether.LIF is LIF and tether.SpikingSelfAttention is SpikingSelfAttention
    assert importlib.import_module("snnref.nn.plif").PLIF is PLIF  # tether.nn.plif's path
    assert {"ALIF", "Arctan", "FastSigmoid", "PLIF", "Sigmoid", "Surrogate"} <= set(tether.__all__)


def test_store_traces_off_keeps_no_sequence():
    module = LIF(NEURONS)
    module(torch.ones(3, 2, NEURONS))
    assert module.v_seq is None


@pytest.mark.parametrize("name", ["LIF-arctan", "ALIF"])
def test_kept_sequences_hold_no_graph(name):
    """tether keeps v_seq (and ALIF's a_seq) detached: they can be plotted, and a
    module that kept them deep-copies (a tensor in a graph does not)."""
    module = build(name)
    module(tensor(case_for(name, 11).x).requires_grad_()).sum().backward()
    for attribute in module.kept_sequences:
        assert getattr(module, attribute).grad_fn is None
        getattr(module, attribute).numpy()
    copied = copy.deepcopy(module)
    assert torch.equal(copied.v_seq, module.v_seq)
    module.reset_state()
    assert all(getattr(module, attribute) is None for attribute in module.kept_sequences)


@pytest.mark.parametrize("name", ["LIF-arctan", "ALIF"])
def test_scalar_parameter_neurons_take_any_shape_as_tether_flattens_it(name):
    """SPEC section 2: x (T, ...) is flattened to (T, M), so LIF and ALIF run on a
    convolution's (T, B, C, H, W) whatever n_neurons is, and the state is kept while
    M stays the same, whatever the shape: calls on (T, 2, 3, 2) then (T, 12) equal
    one run of the spec on the flattened x; a call with another M starts from zero."""
    key = MODULES[name][0]
    case = case_for(name, 12, steps=6, batch=12, random_state=False)
    flat = tensor(case.x).reshape(6, -1)
    module = build(name, case)
    first, second = module(flat[:3].reshape(3, 2, 3, 2 * NEURONS)), module(flat[3:])
    assert first.shape == (3, 2, 3, 2 * NEURONS) and second.shape == (3, 12 * NEURONS)
    expected = spec.simulate(key, case.x.reshape(6, -1), case.params).outputs["out"]
    close(torch.cat([first.reshape(3, -1), second]), expected)
    close(module(flat[:, :NEURONS]), spec.simulate(key, case.x[:, 0], case.params).outputs["out"])


def _tether_checkpoint(name, state):
    """A state dict as tether saves one: the module's parameters under its keys, and
    the state buffers it keeps persistent (v, and ALIF's a) of shape (M,)."""
    return dict(build(name).state_dict(), **{var: torch.tensor(value).reshape(-1) for var, value in state.items()})


@pytest.mark.parametrize("name", ["LIF-arctan", "ALIF"])
def test_a_tether_checkpoint_loads_with_its_state(name):
    key = MODULES[name][0]
    case = case_for(name, 13, batch=1)
    checkpoint = _tether_checkpoint(name, case.state)
    module = build(name).float()
    module.load_state_dict(checkpoint)  # strict: v (and a) are not unexpected
    assert all(getattr(module, var).dtype == torch.float32 for var in case.state)
    out = module.double()(tensor(case.x))
    params = {param: value.detach().numpy() for param, value in registry_params(module).items()}
    close(out, spec.simulate(key, case.x, params, case.state).outputs["out"])


def test_the_attention_starts_from_zero_when_its_batch_and_tokens_change_places():
    # Its state is per (batch, token, feature), not per flattened neuron: a call on (T, 3, 2, dim)
    # after one on (T, 2, 3, dim) must not take over the other items' context.
    case = case_for("SpikingSelfAttention", 14, batch=3, random_state=False)
    x = tensor(case.x)
    assert x.shape[1] != x.shape[2], x.shape
    module = build("SpikingSelfAttention", case)
    module(x.transpose(1, 2).contiguous())
    assert torch.equal(module(x), build("SpikingSelfAttention", case)(x))


def test_a_tether_checkpoint_loads_with_assign_onto_a_meta_module_and_a_partial_state_is_refused():
    case = case_for("ALIF", 15, batch=1)
    checkpoint = {k: v.double() for k, v in _tether_checkpoint("ALIF", case.state).items()}
    with torch.device("meta"):
        module = ALIF(NEURONS)
    # assign=True takes the checkpoint's tensors as the parameters: the state follows them (before, it
    # stayed on the meta device, in float32).
    module.load_state_dict(checkpoint, assign=True)
    assert {(t.device.type, t.dtype) for t in (module.alpha, module.v, module.a)} == {("cpu", torch.float64)}
    out = module(tensor(case.x))
    params = {param: value.detach().numpy() for param, value in registry_params(module).items()}
    close(out, spec.simulate("tether.ALIF", case.x, params, case.state).outputs["out"])
    with pytest.raises(RuntimeError, match="the carried state: v given without a; a checkpoint holds all of it"):
        ALIF(NEURONS).load_state_dict({k: v for k, v in checkpoint.items() if k != "a"})


# Found by mutation testing: with the copy dropped, a checkpoint's state tensor in the module's dtype
# became the carried state itself, and an in-place edit of it (neuron.v[done] = 0) wrote into the checkpoint.
@pytest.mark.parametrize("name", ["LIF-arctan", "ALIF"])
def test_a_loaded_state_is_a_copy_of_the_checkpoint_s(name):
    case = case_for(name, 16, batch=1)
    checkpoint = _tether_checkpoint(name, case.state)
    saved = {var: checkpoint[var].clone() for var in case.state}
    module = build(name)
    module.load_state_dict(checkpoint)
    for var in case.state:
        getattr(module, var)[0] = 5.0
        assert torch.equal(checkpoint[var], saved[var]), var


def test_an_alif_state_dict_from_before_alpha_was_its_own_parameter_loads():
    module = ALIF(NEURONS, alpha=3.0)
    old = {("surrogate.alpha" if name == "alpha" else name): value for name, value in module.state_dict().items()}
    restored = ALIF(NEURONS)
    restored.load_state_dict(old)
    assert restored.alpha.item() == 3.0


def _filled(module, name, value):
    """``module`` with its parameter ``name`` filled with ``value``, as a step of training might leave it."""
    with torch.no_grad():
        getattr(module, name).fill_(value)
    return module


@pytest.mark.parametrize("make,x,error,match", [
    (lambda: LIF(3), np.zeros((4, 3)), TypeError, r"x: expected a torch.Tensor"),
    (lambda: LIF(3), torch.zeros(4), ValueError, r"x: expected a time-major tensor of rank >= 2"),
    (lambda: PLIF(3), torch.zeros(4, 5), ValueError, r"x: expected a last axis of 3 \(n_neurons\)"),
    (lambda: ALIF(3), torch.zeros(4), ValueError, r"x: expected a time-major tensor of rank >= 2"),
    (lambda: SpikingSelfAttention(4, 2), torch.zeros(4, 2, 4), ValueError, r"x: .*rank 4"),
    (lambda: SpikingSelfAttention(4, 2), torch.zeros(4, 2, 3, 5), ValueError, r"x: expected a last axis of 4 \(dim\)"),
    (lambda: LIF(3), torch.zeros(4, 2, 3, dtype=torch.float16), TypeError,
     # Found by an outside user: the hint was module.to(x.dtype), which the CPU then refused.
     r"x: torch.float16 on cpu, but this module's decay is torch.float32 on cpu; move one to the other "
     r"\(x.to\(torch.float32\): half precision runs on CUDA only\)$"),
    # Found by an outside user: 0/1 spikes as int64 were told module.to(x.dtype), which torch refuses.
    (lambda: LIF(3), torch.ones(4, 2, 3, dtype=torch.int64), TypeError,
     r"x: torch.int64 on cpu, but this module's decay is torch.float32 on cpu; move one to the other "
     r"\(x.to\(torch.float32\): the neurons compute in floating point\)$"),
    (lambda: LIF(3).half(), torch.zeros(4, 2, 3, dtype=torch.float16), TypeError,
     r"x: backend 'auto' on cpu \(half precision on CUDA only\) expects dtype torch.float32 or torch.float64"),
    (lambda: LIF(3, alpha=-1.0), torch.zeros(4, 2, 3), ValueError, r"^alpha: expected a value > 0, got -1.0"),
    # A decay that training made NaN (a constructor's NaN is refused there, test_bad_construction_...).
    (lambda: _filled(LIF(3), "decay", float("nan")), torch.zeros(4, 2, 3), ValueError,
     r"^decay: expected finite values, found NaN or inf$"),
    (lambda: LIF(3), torch.full((4, 2, 3), float("inf")), ValueError, r"^x: expected finite values, found NaN or inf$"),
    # Found by an outside user: the message offered allow_nonfinite, which forward does not take.
    (lambda: rnnbuilder.SpikeLinear(), torch.full((4, 3), float("nan")), ValueError,
     r"^x: expected finite values, found NaN or inf$"),
    (lambda: LIF(3, backend="torch"), torch.zeros(4, 2, 3, dtype=torch.float64), TypeError,
     r"x: torch.float64 on cpu, but this module's decay is torch.float32"),
])
def test_bad_input_names_the_argument(make, x, error, match):
    with pytest.raises(error, match=match):
        make()(x)


@pytest.mark.parametrize("make,error,match", [
    (lambda: SpikingSelfAttention(6, num_heads=4), ValueError, r"num_heads: expected a positive divisor of dim=6"),
    (lambda: SpikingSelfAttention(4), ValueError, r"num_heads: .* got 8"),
    (lambda: LIF(3, surrogate="arctan"), TypeError, r"surrogate: expected an snnref.nn.Surrogate"),
    (lambda: LIF(3, surrogate=SuperSpike()), ValueError, r"surrogate: tether.LIF does not accept 'superspike'"),
    (lambda: SuperSpike(trainable=True), ValueError, r"trainable: the superspike surrogate's alpha has no gradient"),
    (lambda: Surrogate(), TypeError, r"Surrogate is a base class"),
    # Found by an outside user: read as a number, it never received a gradient.
    (lambda: rnnbuilder.SpikeLinear(torch.tensor(0.3, requires_grad=True)), ValueError,
     r"^gradient_factor: requires_grad=True, but trainable=False keeps it a fixed number; the spike_linear "
     r"surrogate's gradient_factor has no gradient; pass a number$"),
    (lambda: Arctan(torch.tensor(2.0, requires_grad=True)), ValueError,
     r"^alpha: requires_grad=True, but trainable=False keeps it a fixed number; pass trainable=True to train it"),
    # Found by an outside user: copied into the module's own parameter, the caller's tensor got no gradient.
    (lambda: LIF(3, decay=torch.tensor(0.9, requires_grad=True)), ValueError,
     r"^decay: requires_grad=True, but the module keeps this value in a tensor of its own"),
    (lambda: Arctan(torch.tensor(2.0, requires_grad=True), trainable=True), ValueError,
     r"^alpha: requires_grad=True, but the module keeps this value in a tensor of its own"),
    (lambda: rnnbuilder.LIF(tau=torch.tensor(5.0, requires_grad=True)), ValueError,
     r"^tau: requires_grad=True, but the module keeps this value in a tensor of its own"),
    (lambda: Arctan("x"), TypeError, r"alpha: expected a number, got 'x'"),
    (lambda: ALIF(3, decay_v="x"), TypeError, r"decay_v: expected a number, got 'x'"),
    (lambda: ALIF(3, beta=None), TypeError, r"beta: expected a number, got None"),
    # Found by mutation testing: True was taken as 1.0 with the bool check removed.
    (lambda: LIF(3, threshold=True), TypeError, r"threshold: expected a number, got True"),
    (lambda: ALIF(0), ValueError, r"n_neurons: expected a positive integer, got 0"),
    # Found by an outside user: taken, and any non-empty string kept the traces.
    (lambda: LIF(3, store_traces="yes"), TypeError, r"^store_traces: expected True or False, got 'yes'$"),
    # Found by an outside user: kept in float32, 1e40 was an inf parameter refused at the first call as
    # "NaN or inf" (PLIF: torch's "cannot be converted to type float without overflow"), 1e-50 a 0.
    (lambda: LIF(3, threshold=1e40), ValueError, r"^threshold: 1e\+40 overflows float32, the dtype the module keeps "
                                                 r"it in \(torch's default\)"),
    (lambda: PLIF(3, init_threshold=1e40), ValueError, r"^init_threshold: 1e\+40 overflows float32"),
    (lambda: LIF(3, alpha=1e-50), ValueError, r"^alpha: 1e-50 underflows to 0 in float32"),
    # Found by an outside user: "no" trained the scale.
    (lambda: Arctan(trainable="no"), TypeError, r"^trainable: expected True or False, got 'no'$"),
    # Found by an outside user: torch's "missing the required forward function" said nothing of what it is.
    (lambda: Arctan()(torch.zeros(3)), TypeError, r"^Arctan is a neuron's surrogate setting, not a layer: pass it "
                                                  r"to a neuron \(LIF\(n, surrogate=Arctan\(\)\)\)"),
    (lambda: SpikingSelfAttention(4.0, 2), ValueError, r"dim: expected a positive integer, got 4.0"),
    (lambda: SpikingSelfAttention(0, 1), ValueError, r"dim: expected a positive integer, got 0"),
    (lambda: SpikingSelfAttention(4, "2"), ValueError, r"num_heads: expected a positive integer, got '2'"),
    (lambda: SpikingSelfAttention(4, 2, decay="x"), TypeError, r"decay: expected a number, got 'x'"),
    (lambda: LIF(3, backend="gpu"), ValueError, r"backend: unknown name 'gpu'; expected one of: auto, torch"),
    (lambda: SpikingSelfAttention(4, 2, backend=None), ValueError, r"backend: unknown name None"),
    # Found by an outside user: taken here, refused only at the first forward.
    (lambda: LIF(3, decay=float("nan")), ValueError, r"^decay: expected a finite number, got nan$"),
    (lambda: ALIF(3, threshold=float("inf")), ValueError, r"^threshold: expected a finite number, got inf$"),
    (lambda: rnnbuilder.LIF(tau=0), ValueError, r"^tau: expected a number > 0, got 0$"),
    (lambda: rnnbuilder.Adaptive(tau_thr=-1.0), ValueError, r"^tau_thr: expected a number > 0, got -1.0$"),
])
def test_bad_construction_names_the_argument(make, error, match):
    with pytest.raises(error, match=match):
        make()


@pytest.mark.parametrize("make", [lambda: ALIF(NEURONS), lambda: PLIF(NEURONS)])
def test_a_module_second_derivative_on_cpu_takes_backend_torch(make):
    """The default on CPU tensors is the first-order cpu backend, whose refusal
    points at ``backend``; a module's ``backend="torch"`` runs the torch path,
    where ALIF's second derivative is verified and LIF's is refused too."""
    x = torch.randn(6, 2, NEURONS, dtype=torch.float64, generator=torch.Generator().manual_seed(1),
                    requires_grad=True)
    for backend in ("auto", "torch"):
        module = make().double()
        module.backend = backend
        (g,) = torch.autograd.grad(module(x * 3).sum(), x, create_graph=True)
        differentiable = backend == "torch" and isinstance(module, ALIF)
        if differentiable:
            torch.autograd.grad(g.pow(2).sum(), x)
        else:
            with pytest.raises(RuntimeError, match="second|differentiated again"):
                torch.autograd.grad(g.pow(2).sum(), x)


@pytest.mark.parametrize("name", MODULES)
def test_the_carried_state_is_no_buffer_but_follows_the_module_s_dtype(name):
    """``AveragedModel(use_buffers=True)`` (an EMA of the weights and of BatchNorm's
    statistics) pairs ``model.buffers()`` with its copy's by position; a carried state
    the model had and the copy, made before the first call, had not shifted every
    later buffer: a shape error, or statistics averaged with a membrane (found by an
    outside user).  The state stays out of ``buffers()`` and still follows ``.double()``."""
    tokens = (2,) if isinstance(build(name), SpikingSelfAttention) else ()
    module = build(name).float()
    module(torch.rand(3, 2, *tokens, NEURONS) + 0.5)
    assert all(getattr(module, var) is not None for var in module.state_names)
    assert not any(tensor is getattr(module, var) for tensor in module.buffers() for var in module.state_names)
    module.double()
    assert all(getattr(module, var).dtype == torch.float64 for var in module.state_names)


def test_an_ema_of_the_buffers_averages_batchnorm_s_statistics_with_their_own():
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    torch.manual_seed(0)
    # A fixed surrogate scale is a buffer too: before, the LIF's v took its place in the pairing.
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), LIF(4, surrogate=Sigmoid(3.0)), torch.nn.BatchNorm1d(4))
    ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(0.5), use_buffers=True)
    expected = model[2].running_mean.clone()
    for step in range(3):
        model(torch.randn(5, 4) + 1.0)
        ema.update_parameters(model)
        # The first update copies; each later one is 0.5 * ema + 0.5 * model.
        expected = model[2].running_mean.clone() if step == 0 else 0.5 * expected + 0.5 * model[2].running_mean
    assert torch.equal(ema.module[2].running_mean, expected)
    assert ema.module[1].surrogate.alpha.item() == 3.0


@pytest.mark.parametrize("backend", ["torch", "cpu"])
@pytest.mark.parametrize("name", MODULES)
def test_a_state_carried_or_reset_under_inference_mode_may_be_edited_in_place_after_it(name, backend):
    """An evaluation or rollout under ``torch.inference_mode``, then ``neuron.v[done] = 0``
    and a training call: the carried state was an inference tensor, and the edit raised
    "Inplace update to inference tensor outside InferenceMode" (torch's own buffers,
    BatchNorm's running stats, stay ordinary tensors there).  The same steps with the
    first call under ``torch.no_grad`` give the same spikes and gradients."""
    tokens = (2,) if isinstance(build(name), SpikingSelfAttention) else ()
    x = torch.randn(2, 6, 3, *tokens, NEURONS, dtype=torch.float64, generator=torch.Generator().manual_seed(3)) + 0.6
    done = torch.tensor([False, True, False])
    results = []
    for mode in (torch.inference_mode, torch.no_grad):
        torch.manual_seed(0)
        module = build(name)
        module.backend = backend
        with mode():
            module(x[0])
        for var in module.state_names:
            assert not getattr(module, var).is_inference()
            getattr(module, var)[done] = 0.0
        out = module(x[1])
        out.sum().backward()
        results.append([out.detach()] + [p.grad for p in module.parameters()])
        with torch.inference_mode():
            module.reset_state()
        for var in module.state_names:
            getattr(module, var)[done] = 1.0
    for inference, no_grad in zip(*results):
        assert torch.equal(inference, no_grad)


@pytest.mark.parametrize("backend", ["torch", "cpu"])
@pytest.mark.parametrize("name", MODULES)
def test_the_carried_state_may_be_edited_in_place_between_calls(name, backend):
    """Resetting finished sequences, ``neuron.v[done] = 0``, before one backward over
    both calls gives the gradients of the same state rebound (on the torch path the
    edit raised autograd's in-place error: the carried state was a view of a saved output)."""
    # Two calls of (T, B, N), or (T, B, L, D) for the attention's L = 2 tokens.
    tokens = (2,) if isinstance(build(name), SpikingSelfAttention) else ()
    x = torch.randn(2, 6, 3, *tokens, NEURONS, dtype=torch.float64, generator=torch.Generator().manual_seed(2)) + 0.6
    done = torch.tensor([False, True, False])
    gradients = []
    for in_place in (True, False):
        # The same initial weights (the attention's linear maps draw theirs).
        torch.manual_seed(0)
        module = build(name)
        module.backend = backend
        first = module(x[0])
        for var in module.state_names:
            if in_place:
                getattr(module, var)[done] = 0.0
            else:
                carried = getattr(module, var)
                setattr(module, var, torch.where(done.view(-1, *[1] * (carried.dim() - 1)), 0.0, carried))
        (first.sum() + module(x[1]).sum()).backward()
        gradients.append([p.grad for p in module.parameters()])
    for edited, rebound in zip(*gradients):
        assert torch.equal(edited, rebound)


@pytest.mark.parametrize("backend", ["torch", "cpu"])
def test_a_state_the_module_s_own_run_overflowed_is_refused_saying_so(backend):
    """Found by an outside user: training pushed PLIF's decay to 1.7, a lane that never
    spiked overflowed to -inf without a word, and the next call said only "the carried state
    v: expected finite values", as if the caller had given it."""
    neuron = PLIF(4, init_decay=1.7, init_threshold=1.1, backend=backend)
    neuron(-torch.ones(200, 2, 4))
    assert torch.isinf(neuron.v).all()
    with pytest.raises(ValueError, match=r"^the carried state v: expected finite values, found NaN or inf; the "
                                         r"module holds it from its last call, a checkpoint it loaded or an edit of "
                                         r"it .* call reset_state\(\) to start again$"):
        neuron(-torch.ones(2, 2, 4))
    # A checkpoint's NaN state, loaded into a module that never ran, is said to be the module's too
    # (the message said only that its last call had overflowed).
    loaded = PLIF(4, backend=backend)
    loaded.load_state_dict({**neuron.state_dict(), "v": torch.full((2, 4), float("nan"))})
    with pytest.raises(ValueError, match=r"a checkpoint it loaded"):
        loaded(-torch.ones(2, 2, 4))
    neuron.reset_state()
    assert torch.equal(neuron(-torch.ones(2, 2, 4)), torch.zeros(2, 2, 4))
    # A value the caller sets is the caller's: refused as an argument.
    neuron.v = torch.full((2, 4), float("nan"))
    with pytest.raises(ValueError, match=r"^the carried state v: expected finite values, found NaN or inf$"):
        neuron(-torch.ones(2, 2, 4))


def test_spike_linear_is_callable_as_rnnbuilder_s():
    """rnnbuilder's ``spike_function(u)``: [u > 0] forward, gradient_factor *
    max(0, 1 - |u|) backward (written out here), any shape, in u's dtype."""
    u = torch.tensor([[-1.5, -0.5, 0.0], [0.25, 1.0, 2.0]], dtype=torch.float64, requires_grad=True)
    spikes = SpikeLinear(0.25)(u)
    spikes.backward(torch.ones_like(u))
    assert spikes.dtype == torch.float64 and spikes.shape == u.shape
    assert spikes.tolist() == [[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]]
    assert np.allclose(u.grad.numpy(), [[0.0, 0.125, 0.25], [0.1875, 0.0, 0.0]], rtol=0, atol=0)
    assert SpikeLinear()(torch.tensor(0.5)).item() == 1.0


def test_spike_linear_runs_on_its_own_backend_keyword_or_attribute():
    """rnnbuilder's callable surrogate takes ``backend`` as the neuron modules do,
    so its gradient can be differentiated again on the torch path (written out
    here: d/du of sum g^2 with g = 0.25 max(0, 1 - |u|) is -2 g 0.25 sign(u))."""
    u = torch.tensor([-1.5, -0.5, 0.25, 0.75], dtype=torch.float64, requires_grad=True)
    for module in (SpikeLinear(0.25, backend="torch"), SpikeLinear(0.25)):
        module.backend = "torch"
        (g,) = torch.autograd.grad(module(u).sum(), u, create_graph=True)
        (second,) = torch.autograd.grad(g.pow(2).sum(), u)
        assert second.tolist() == [0.0, 0.0625, -0.09375, -0.03125]
    assert repr(SpikeLinear(backend="cpu")) == "SpikeLinear(gradient_factor=0.3, trainable=False, backend='cpu')"
    with pytest.raises(RuntimeError, match="backend='torch'"):
        (g,) = torch.autograd.grad(SpikeLinear(0.25, backend="cpu")(u).sum(), u, create_graph=True)
        torch.autograd.grad(g.pow(2).sum(), u)
    with pytest.raises(ValueError, match=r"^backend: unknown name 'gpu'"):
        SpikeLinear(backend="gpu")


@pytest.mark.parametrize("make,message", [
    (lambda: Arctan(0.0), "alpha: expected a value > 0, got 0.0"),
    (lambda: SpikeLinear(-0.3), "gradient_factor: expected a value > 0, got -0.3"),
    (lambda: ALIF(3, alpha=0.0), "alpha: expected a value > 0, got 0.0"),
])
def test_a_surrogate_scale_outside_its_domain_is_refused_by_the_constructor(make, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        make()


def test_spike_linear_names_its_own_attribute_and_the_shape_it_was_given():
    module = SpikeLinear()
    with torch.no_grad():
        module.gradient_factor.fill_(-0.5)
    with pytest.raises(ValueError, match=r"^gradient_factor: expected values > 0"):
        module(torch.rand(3))
    with pytest.raises(ValueError, match=re.escape("x: expected at least one element, got shape (0, 3)")):
        SpikeLinear()(torch.zeros(0, 3))


@pytest.mark.parametrize("reentrant", [False, True])
@pytest.mark.parametrize("backend", ["torch", "cpu"])
def test_checkpointed_simulate_gives_the_gradients_of_the_plain_call(backend, reentrant):
    # The README's advice for torch.utils.checkpoint: the functional call, its state explicit.
    from torch.utils.checkpoint import checkpoint

    import snnref

    x = torch.randn(12, 2, NEURONS, generator=torch.Generator().manual_seed(3), requires_grad=True)
    decay = torch.tensor(0.9, requires_grad=True)
    v0 = torch.full((2, NEURONS), 0.2, requires_grad=True)

    def run(x, decay, v0):
        trace = snnref.simulate("tether.LIF", x, {"decay": decay}, {"v": v0}, backend=backend)
        return trace.outputs["out"], trace.final_state["v"]

    def gradients(call):
        # backward(), not autograd.grad: the reentrant checkpoint supports only the former.
        for leaf in (x, decay, v0):
            leaf.grad = None
        out, final = call(x, decay, v0)
        ((out * torch.arange(out.numel()).reshape(out.shape)).sum() + final.sum()).backward()
        return [leaf.grad.clone() for leaf in (x, decay, v0)]

    plain = gradients(run)
    checkpointed = gradients(lambda *inputs: checkpoint(run, *inputs, use_reentrant=reentrant))
    assert all(torch.equal(a, b) for a, b in zip(plain, checkpointed))


def _stateful_calls(backend):
    """(module, x, call) per module kind that carries state: a whole sequence, or qualia's one step."""
    from snnref.compat import qualia

    x3 = torch.rand(6, 2, NEURONS, dtype=torch.float64, generator=torch.Generator().manual_seed(5)) * 2
    x4 = torch.rand(6, 2, 3, NEURONS, dtype=torch.float64, generator=torch.Generator().manual_seed(6)) * 2
    step = qualia.IFSRL(backend=backend).double()
    return [(LIF(NEURONS, backend=backend).double(), x3, None),
            (SpikingSelfAttention(NEURONS, num_heads=2, backend=backend).double(), x4, None),
            (step, x3, lambda x: sum(step(x[t]) for t in range(len(x))))]


@pytest.mark.parametrize("reentrant", [False, True])
@pytest.mark.parametrize("backend", ["torch", "cpu"])
def test_a_checkpointed_module_call_is_refused_unless_it_resets_its_state_first(backend, reentrant):
    # torch.utils.checkpoint reruns the call in the backward: from the state the first pass left, its
    # gradients were wrong without a word (about 100% off for tether.LIF).  A region that resets the state
    # first recomputes from that reset: its gradients are the plain call's.
    from torch.utils.checkpoint import checkpoint

    for module, x, call in _stateful_calls(backend):
        call = call or module
        reset = getattr(module, "reset_state", None) or module.reset
        x = x.clone().requires_grad_()
        call(x.detach())  # a state from an earlier call, as in training
        with pytest.raises(RuntimeError, match=rf"^{type(module).__name__}: called during a backward pass, as "
                           r"torch.utils.checkpoint recomputes a checkpointed call, with the state the first pass "
                           r"left \((q_)?v\b"):
            checkpoint(call, x, use_reentrant=reentrant).sum().backward()

        def from_reset(x):
            reset()
            return call(x)

        x.grad = None
        checkpoint(from_reset, x, use_reentrant=reentrant).sum().backward()
        checkpointed = x.grad.clone()
        x.grad = None
        from_reset(x).sum().backward()
        assert torch.equal(checkpointed, x.grad), type(module).__name__



@pytest.mark.parametrize("backend", ["torch", "cpu"])
def test_a_module_pickled_whole_before_the_recompute_check_still_runs(backend):
    # torch.save(model) pickles the modules' __dict__: one saved before 2026-12-06 has no record of the
    # state its last call left, and its forward (and qualia's detach) must not need one.
    import pickle

    for module, x, call in _stateful_calls(backend):
        (call or module)(x)
        module.__dict__.pop("_last_carried")
        restored = pickle.loads(pickle.dumps(module))
        call = (lambda x: sum(restored(x[t]) for t in range(len(x)))) if call is not None else restored
        first = call(x)
        getattr(restored, "detach", lambda: None)()
        assert torch.isfinite(call(x) + first).all()


def _ddp_worker(rank, store, results):
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    try:
        for backend in DDP_BACKENDS:
            model = _ddp_model(backend)
            ddp = torch.nn.parallel.DistributedDataParallel(model)
            optimizer = torch.optim.SGD(ddp.parameters(), lr=0.1)
            for x in _ddp_batches()[rank]:
                model[1].reset_state()
                optimizer.zero_grad()
                ddp(x).pow(2).mean().backward()
                optimizer.step()
            results.put((rank, backend, [p.detach().numpy().copy() for p in model.parameters()]))
    finally:
        dist.destroy_process_group()


DDP_BACKENDS = ("torch", "cpu")


def _ddp_model(backend):
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(6, NEURONS), LIF(NEURONS, backend=backend), torch.nn.Linear(NEURONS, 3))


def _ddp_batches():
    """Three steps of (T, batch, features) inputs per rank."""
    generators = [torch.Generator().manual_seed(100 + rank) for rank in range(2)]
    return [[torch.rand(10, 4, 6, generator=g) * 2 for _ in range(3)] for g in generators]


def test_distributed_data_parallel_trains_as_one_process_averaging_both_ranks_gradients(tmp_path):
    # DDP averages the ranks' gradients by hooks on the parameters: the scans' hand-written backwards must
    # hand them over as autograd's own do, and the carried state (no buffer) is not broadcast.  Two processes
    # on gloo, both backends in each; the reference is one process averaging the two ranks' gradients.
    import torch.multiprocessing as mp

    context = mp.get_context("spawn")
    results = context.Queue()
    workers = [context.Process(target=_ddp_worker, args=(rank, tmp_path / "store", results)) for rank in range(2)]
    for worker in workers:
        worker.start()
    trained = {(rank, backend): parameters
               for rank, backend, parameters in (results.get(timeout=240) for _ in range(2 * len(DDP_BACKENDS)))}
    for worker in workers:
        worker.join(60)
        assert worker.exitcode == 0
    for backend in DDP_BACKENDS:
        model = _ddp_model(backend)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        for xs in zip(*_ddp_batches()):
            grads = []
            for x in xs:
                model[1].reset_state()
                model.zero_grad()
                model(x).pow(2).mean().backward()
                grads.append([p.grad.clone() for p in model.parameters()])
            for p, *per_rank in zip(model.parameters(), *grads):
                p.grad = sum(per_rank) / 2
            optimizer.step()
        for rank in (0, 1):
            for got, expected in zip(trained[rank, backend], model.parameters()):
                # Bitwise: halving is exact in binary, so a/2 + b/2 (DDP) equals (a + b)/2.
                np.testing.assert_array_equal(got, expected.detach().numpy(), err_msg=backend)


def test_store_traces_set_after_construction_is_a_flag_too():
    # Found by an outside user: neuron.store_traces = "no" kept the traces (the constructor refused "no").
    neuron = LIF(3)
    neuron.store_traces = "no"
    with pytest.raises(TypeError, match="^store_traces: expected True or False, got 'no'$"):
        neuron(torch.zeros(2, 1, 3))
