"""snnref.simulate (torch) rejects bad input before computing, naming the argument."""

import re

import numpy as np
import pytest
import torch

import snnref
from snnref import spec
from snnref.compat import tether

X = torch.full((4, 2, 3), 0.5)


def raises(error, match, *args, **kwargs):
    with pytest.raises(error, match=match):
        snnref.simulate(*args, **kwargs)


def test_x_must_be_a_float_tensor():
    raises(TypeError, "x: expected a torch.Tensor, got ndarray", "tether.LIF", np.zeros((4, 3)))
    raises(TypeError, "x: backend .torch. expects dtype torch.float32 or torch.float64, got torch.float16",
           "tether.LIF", X.half(), backend="torch")
    raises(TypeError, "x: backend 'triton' expects dtype torch.float32 or torch.float16 or torch.bfloat16, "
           "got torch.float64", "tether.LIF", X.double(), backend="triton")
    raises(ValueError, r"x: expected a time-major array of shape \(T, ..., N\)", "tether.LIF", torch.zeros(4))
    raises(ValueError, "x: expected finite values", "tether.LIF", torch.tensor([[0.0], [float("nan")]]))


def test_dtype_and_device_mismatches():
    raises(TypeError, r"params\['decay'\]: expected torch.float32 on cpu like x, got torch.float64 on cpu",
           "tether.LIF", X, {"decay": torch.tensor(0.9, dtype=torch.float64)})
    raises(TypeError, r"state\['v'\]: expected torch.float32 on cpu like x, got torch.float32 on meta",
           "tether.LIF", X, None, {"v": torch.zeros(2, 3, device="meta")})
    raises(TypeError, r"inject\['v'\]: expected torch.float32 on cpu like x, got torch.float64",
           "hxtorch.cuba_lif", X, inject={"v": X.double()})


@pytest.mark.parametrize("backend", ["torch", "cpu", "auto"])
def test_sparse_mkldnn_and_nested_tensors_are_refused_by_name(backend):
    """Before this check they failed deep inside torch, a sparse state with
    "expected a shape that broadcasts to (3,), got (3,)"."""
    dense = r"expected a dense \(strided\) tensor, got"
    x = torch.full((4, 3), 0.5)
    raises(ValueError, rf"x: {dense} layout torch.sparse_coo; pass x.to_dense\(\)", "tether.LIF", x.to_sparse(),
           backend=backend)
    raises(ValueError, rf"x: {dense} layout torch.sparse_csr", "tether.LIF", x.to_sparse_csr(), backend=backend)
    raises(ValueError, rf"x: {dense} layout torch._mkldnn", "tether.LIF", x.to_mkldnn(), backend=backend)
    raises(ValueError, rf"x: {dense} a nested tensor", "tether.LIF", torch.nested.nested_tensor([x, x]),
           backend=backend)
    sparse = torch.full((3,), 0.9).to_sparse()
    raises(ValueError, rf"params\['decay'\]: {dense} layout torch.sparse_coo", "tether.PLIF", x, {"decay": sparse},
           backend=backend)
    raises(ValueError, rf"state\['v'\]: {dense} layout torch.sparse_coo", "tether.PLIF", x, None, {"v": sparse},
           backend=backend)
    raises(ValueError, rf"inject\['v'\]: {dense} layout torch.sparse_coo", "hxtorch.cuba_lif", x,
           inject={"v": x.to_sparse()}, backend=backend)


def test_state_of_the_wrong_batch_size():
    raises(ValueError, r"state\['v'\]: expected a shape that broadcasts to \(2, 3\), got \(5, 3\)",
           "tether.LIF", X, None, {"v": torch.zeros(5, 3)})


def test_parameter_shapes_and_domains():
    raises(ValueError, r"params\['decay'\]: expected a scalar, \(1,\) or \(3,\) \(per neuron\) for N=3 \(x's last axis\), "
           r"got shape \(2,\)",
           "tether.PLIF", X, {"decay": torch.ones(2)})
    raises(ValueError, r"params\['tau_mem'\]: expected values > 0", "hxtorch.cuba_lif", X, {"tau_mem": -1e-5})
    raises(ValueError, r"params\['tau_syn'\]: expected finite values", "hxtorch.cuba_lif", X, {"tau_syn": float("inf")})
    raises(ValueError, r"params: tether.LIF has no parameter 'tau'", "tether.LIF", X, {"tau": 1.0})


def test_unknown_names():
    raises(ValueError, "model: unknown name 'LIF'", "LIF", X)
    raises(ValueError, "surrogate: unknown name 'super_spike'; expected one of:.*superspike",
           "hxtorch.cuba_lif", X, surrogate="super_spike")
    raises(ValueError, "surrogate: qualia.IFSRL does not accept 'arctan'", "qualia.IFSRL", X, surrogate="arctan")
    raises(ValueError, "backend: unknown name 'cuda'; expected one of: auto, torch, triton", "tether.LIF", X,
           backend="cuda")


def test_triton_on_cpu_needs_the_interpreter(monkeypatch):
    from snnref.kernels import common

    monkeypatch.setattr(common, "INTERPRETED", False)
    raises(ValueError, "backend: 'triton' on CPU tensors needs Triton's interpreter: set TRITON_INTERPRET=1",
           "tether.LIF", X, backend="triton")
    # "auto" runs CPU tensors on the torch path.
    assert snnref.simulate("tether.LIF", X, backend="auto").outputs["out"].shape == X.shape



def test_a_family_without_triton_kernels_is_refused_by_name(monkeypatch):
    # Every family has kernels today; one added without them (its spec and torch layers only) must be
    # refused by name, not fail on a missing import (mutant: the check dropped, the kernels imported).
    import importlib.util

    from snnref import backend

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(backend.importlib.util, "find_spec",
                        lambda name, *args: None if name == "snnref.kernels.lif" else find_spec(name, *args))
    raises(ValueError, r"^backend: 'triton' has no kernels for tether.LIF \(family 'lif'\); use backend='torch'$",
           "tether.LIF", X, backend="triton")

def test_cooldown_input_overflow_is_named():
    raises(ValueError, "x", "rnnbuilder.Cooldown", torch.full((2, 1, 2), 100.0))


def test_nothing_is_computed_on_bad_input(monkeypatch):
    import snnref.backend as backend

    def forbidden(row):
        raise AssertionError("computation started")

    monkeypatch.setattr(backend, "_family", forbidden)
    raises(TypeError, r"params\['threshold'\]", "tether.LIF", X, {"threshold": torch.tensor(1.0).double()})


# ----------------------------------------------------------------------------- one rule, two array libraries

XN = np.full((4, 2, 3), 0.5)
HALF_SPIKES = np.where(np.arange(24).reshape(4, 2, 3) % 2, 1.0, 0.5)


def _numpy_and_torch(value):
    return value, (torch.as_tensor(value, dtype=torch.float32) if isinstance(value, np.ndarray) else value)


# (model, params, state, inject, detached): the same bad argument given to both entry points.
SAME_RULE = {
    "unknown parameter": ("tether.LIF", {"tau": 1.0}, None, None, None),
    "non-finite parameter": ("tether.LIF", {"decay": np.array(np.nan)}, None, None, None),
    "boolean parameter": ("tether.LIF", {"decay": True}, None, None, None),
    "boolean parameter list": ("tether.PLIF", {"decay": [0.9, True, 0.9]}, None, None, None),
    "parameter shape": ("tether.PLIF", {"decay": np.ones(2)}, None, None, None),
    "parameter domain": ("hxtorch.cuba_lif", {"tau_mem": np.array(-0.25)}, None, None, None),
    "missing parameter": ("tether.SpikingSelfAttention", None, None, None, None),
    "state name": ("tether.LIF", None, {"m": np.zeros(3)}, None, None),
    "state shape": ("tether.LIF", None, {"v": np.zeros(4)}, None, None),
    "non-finite state": ("tether.LIF", None, {"v": np.full(3, np.inf)}, None, None),
    "inject name": ("hxtorch.cuba_li", None, None, {"spikes": XN}, None),
    "inject shape": ("hxtorch.cuba_lif", None, None, {"v": np.zeros((4, 3, 2))}, None),
    "spikes not 0 or 1": ("hxtorch.cuba_lif", None, None, {"spikes": HALF_SPIKES}, None),
    "detached shape": ("tether.LIF", None, None, None, {"reset_spike": np.zeros((3, 2, 3))}),
    "non-finite detached": ("tether.LIF", None, None, None, {"reset_spike": np.full((4, 2, 3), np.nan)}),
}


@pytest.mark.parametrize("case", sorted(SAME_RULE))
def test_the_reference_and_the_torch_path_refuse_alike(case):
    model, params, state, inject, detached = SAME_RULE[case]
    x = XN if model != "tether.SpikingSelfAttention" else np.zeros((2, 1, 1, 2))
    messages = []
    for side in (0, 1):
        pick = (lambda d: None if d is None else {k: _numpy_and_torch(v)[side] for k, v in d.items()})
        run = spec.simulate if side == 0 else snnref.simulate
        arguments = (model, _numpy_and_torch(x)[side], pick(params), pick(state))
        with pytest.raises((TypeError, ValueError)) as error:
            run(*arguments, inject=pick(inject), detached=pick(detached))
        messages.append(str(error.value))
    assert messages[0] == messages[1]


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_the_one_reduction_finiteness_check(dtype):
    from snnref.backend import finite

    biggest = torch.finfo(dtype).max
    # A sum that overflows from finite terms must not read as non-finite.
    assert finite(torch.full((64,), biggest, dtype=dtype))
    assert finite(torch.tensor([biggest, -biggest, 1.0], dtype=dtype))
    assert finite(torch.zeros(0, dtype=dtype))
    for bad in (float("nan"), float("inf"), -float("inf")):
        values = torch.ones(1000, dtype=dtype)
        values[617] = bad
        assert not finite(values)
        assert not finite(values.reshape(10, 100).t())


@pytest.mark.parametrize("backend", ["torch", "cpu"])
def test_a_smooth_twin_s_detached_values_are_refused_by_the_model(backend):
    held = snnref.simulate("tether.LIF", X * 4, smooth=True, backend="torch").detached
    raises(ValueError, r"detached\['reset_spike'\]: expected the model's own spikes",
           "tether.LIF", X * 4, detached=held, backend=backend)


def test_simulate_names_its_arguments_as_a_layer_on_it_asks():
    """``names``: how a layer built on simulate (the seed layers) names the
    arguments, and whether its caller can pass allow_nonfinite."""
    names = snnref.arguments.Names(x="x_seq", param_format="{}", state={"v": "v_init"}, allow_nonfinite=False)
    nan = torch.full((4, 2, 3), float("nan"))
    for args, message in [(("tether.LIF", nan), r"^x_seq: expected finite values, found NaN or inf$"),
                          (("tether.LIF", X, None, {"v": nan[0]}), r"^v_init: expected finite values"),
                          (("tether.LIF", X, {"decay": float("inf")}), r"^decay: expected finite values"),
                          (("tether.LIF", X, {"decay": torch.tensor(0.9).double()}),
                           r"^decay: expected torch.float32 on cpu like x_seq, got torch.float64"),
                          (("tether.LIF", X.half()), r"^x_seq: backend 'auto' on cpu")]:
        raises((ValueError, TypeError), message, *args, names=names)
    raises(ValueError, r"^x: expected finite values, found NaN or inf \(pass allow_nonfinite=True", "tether.LIF", nan)


def test_auto_names_what_it_takes_on_the_cpu():
    raises(TypeError, r"^x: backend 'auto' on cpu expects dtype torch.float32 or torch.float64, got torch.int32$",
           "tether.LIF", torch.ones(5, 3, dtype=torch.int32))
    raises(TypeError, r"^x: backend 'auto' on cpu \(half precision on CUDA only\) expects dtype", "tether.LIF",
           X.bfloat16())


@pytest.mark.parametrize("backend", ["torch", "cpu", "auto"])
def test_torch_func_transforms_are_refused_by_name(backend):
    """Under torch.func the scans failed deep inside torch: with torch's
    setup_context message under grad, with vmap's refusal of ``.item()`` in
    the argument checks under vmap.  The module classes and the seed layers
    reach simulate and say the same."""
    message = r"^snnref.simulate: called under a torch.func transform \(grad, vjp, jvp, vmap, jacrev, ...\)"

    def spike_count(x):
        return snnref.simulate("tether.LIF", x, backend=backend).outputs["out"].sum()

    x = X * 4
    with pytest.raises(NotImplementedError, match=message):
        torch.func.grad(spike_count)(x)
    with pytest.raises(NotImplementedError, match=message):
        torch.func.vmap(spike_count, in_dims=1)(x)
    with pytest.raises(NotImplementedError, match=message):
        torch.func.jvp(spike_count, (x,), (torch.ones_like(x),))
    layer = snnref.nn.PLIF(3, backend=backend)
    with pytest.raises(NotImplementedError, match=message):
        torch.func.grad(lambda inputs: layer(inputs).sum())(x)
    with pytest.raises(NotImplementedError, match=message):
        torch.func.grad(lambda inputs: tether.lif(inputs.reshape(4, 6), torch.zeros(6), 0.9, 1.0, 2.0, 0, backend=backend)[0]
                        .sum())(x)
    # Outside a transform the same calls run.
    assert spike_count(x).item() > 0


@pytest.mark.parametrize("flags,message", [
    # A string was truthy: "no" ran the smooth twin.
    (dict(smooth="no"), "smooth: expected True or False, got 'no'"),
    (dict(allow_nonfinite=1), "allow_nonfinite: expected True or False, got 1"),
])
def test_a_flag_that_is_not_a_bool_is_refused_by_every_entry_point(flags, message):
    with pytest.raises(TypeError, match=message):
        spec.simulate("tether.LIF", X.numpy(), **flags)
    with pytest.raises(TypeError, match=message):
        spec.vjp("tether.LIF", X.numpy(), None, None, {"out": np.ones((4, 2, 3))}, **flags)
    for backend in ("torch", "cpu"):
        with pytest.raises(TypeError, match=message):
            snnref.simulate("tether.LIF", X, backend=backend, **flags)


# Found by mutation testing: each was accepted with its check removed (the seed layers check
# the second on their own path, snnref.compat._tensors).
def test_an_empty_hardware_trace_is_refused_by_name():
    empty = r"inject\['v'\]: expected shape \(T_hw, 2, 3\) with T_hw >= 1, got \(0, 2, 3\)"
    with pytest.raises(ValueError, match=empty):
        snnref.simulate("hxtorch.cuba_lif", torch.full((4, 2, 3), 0.5), inject={"v": torch.zeros(0, 2, 3)},
                        backend="torch")


def test_a_module_or_class_given_where_its_key_belongs_is_told_the_key():
    # Found by an outside user: "surrogate: unknown name Arctan(alpha=2, trainable=False)" and no more.
    x = torch.rand(3, 2)
    with pytest.raises(ValueError, match=r"^surrogate: unknown name Arctan\(.*\(did you mean 'arctan'\?\)$"):
        snnref.simulate("tether.LIF", x, surrogate=snnref.nn.Arctan())
    with pytest.raises(ValueError, match=r"^model: unknown name <class 'snnref\.nn\.lif\.LIF'>; .*"
                                         r"\(did you mean 'tether\.LIF'\?\)$"):
        snnref.simulate(snnref.nn.LIF, x)


def test_a_parameter_without_a_gradient_refuses_requires_grad():
    alpha = torch.tensor(50.0, requires_grad=True)
    with pytest.raises(ValueError, match=r"params\['alpha'\]: requires_grad=True, but hxtorch.cuba_lif has no "
                                         r"gradient with respect to alpha"):
        snnref.simulate("hxtorch.cuba_lif", torch.full((4, 2, 3), 0.5), {"alpha": alpha}, backend="torch")


def test_a_detached_value_the_run_does_not_record_is_refused_by_every_backend():
    # Found by an outside user: ignored (here a replay of a run with injected spikes on a run without).
    x = np.full((4, 2, 3), 0.5)
    injected = snnref.spec.simulate("hxtorch.cuba_lif", x, smooth=True, inject={"spikes": np.zeros(x.shape)}).detached
    for backend in ("torch", "cpu"):
        with pytest.raises(ValueError, match=r"^detached: 'inject_spikes': no stop-gradient value of this run \(a "
                                             r"hxtorch.cuba_lif run with these injections records: reset_spike\)$"):
            snnref.simulate("hxtorch.cuba_lif", torch.tensor(x), smooth=True, backend=backend,
                            detached={k: torch.tensor(v) for k, v in injected.items()})


@pytest.mark.parametrize("backend", ["torch", "cpu"])
def test_a_missing_name_in_a_trace_says_what_it_holds(backend):
    trace = snnref.simulate("hxtorch.cuba_lif", X, backend=backend)
    with pytest.raises(KeyError, match=re.escape("outputs of this hxtorch.cuba_lif trace: no 'spikes'; it holds ")) \
            as raised:
        trace.outputs["spikes"]
    assert sorted(raised.value.args[0].rpartition("holds ")[2].split(", ")) == ["'i'", "'out'", "'v'"]


@pytest.mark.parametrize("backend", ["torch", "cpu"])
def test_a_module_moved_to_meta_after_a_call_is_refused_by_name(backend):
    """Found by an outside user: a fresh module on 'meta' was refused by name, but one
    that had run kept a state whose finiteness check failed inside torch ("Tensor.item()
    cannot be called on meta tensors")."""
    neuron = snnref.nn.LIF(3, backend=backend)
    neuron(torch.randn(4, 2, 3))
    neuron.to("meta")
    with pytest.raises(ValueError, match="^x: a tensor on the 'meta' device holds no values"):
        neuron(torch.empty(4, 2, 3, device="meta"))


def test_names_must_be_a_names_record():
    with pytest.raises(TypeError, match=r"^names: expected a snnref.arguments.Names \(or None\), got str$"):
        snnref.simulate("tether.LIF", X, names="foo")


@pytest.mark.parametrize("backend", ["torch", "cpu"])
@pytest.mark.parametrize("argument,value,message", [
    ("params", {"alpha": 1e-300}, r"params\['alpha'\]: 1e-300 underflows to 0 in float32"),
    ("params", {"threshold": 1e39}, r"params\['threshold'\]: 1e\+39 overflows float32"),
    ("state", {"v": np.full(3, 1e300)}, r"state\['v'\]: 1e\+300 overflows float32"),
])
def test_a_number_x_s_dtype_cannot_hold_is_named_as_such(backend, argument, value, message):
    """Found by an outside user: 1e-300 read "expected values > 0, got 0.0" and 1e39
    "found NaN or inf (pass allow_nonfinite=True ...)", numbers the caller never wrote."""
    with pytest.raises(ValueError, match=f"^{message}, the dtype this run computes in; pass a value that float32 "
                                         "holds, or run in float64$"):
        snnref.simulate("tether.LIF", X, backend=backend, **{argument: value})
    # In float64 the same numbers are values like any other.
    snnref.simulate("tether.LIF", X.double(), backend=backend, **{argument: value})


@pytest.mark.parametrize("backend", ["torch", "cpu"])
def test_a_flag_in_a_state_s_place_is_refused(backend):
    # Found by an outside user: state={"v": True} ran as a membrane of 1 (parameters refused it).
    raises(TypeError, r"^state\['v'\]: expected a number or array, got a boolean \(True\)$", "tether.LIF", X,
           state={"v": True}, backend=backend)
