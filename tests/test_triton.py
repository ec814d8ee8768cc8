"""The Triton kernels (snnref.kernels), run under the interpreter on CPU.

Their equivalence with the spec and bitwise reruns are the shared template of
tests/test_backends.py.  Here: every kernel output buffer is poisoned with NaN
and followed by a NaN guard zone, so an element the kernel forgets to write
cannot pass, and a store past the end of a buffer is caught; the planted
kernel mutants of tests/fixtures/kernel_mutants.py are caught for every family
that has kernels; a registry test requires that every family does; the
surrogate branches, half-precision storage and launch limits.  Every kernel
run as several programs with a partial last block: tests/test_kernel_blocks.py."""

import dataclasses
import importlib
import importlib.util
import inspect

import numpy as np
import pytest
import torch

from fixtures.kernel_mutants import KERNEL_MUTANTS
from fixtures.surrogate_layers import triton_forms
from fixtures.torch_mutants import Mutant, planted
import snnref
from snnref import checks, equivalence, registry, spec
from snnref.kernels import _interpreter, common
from snnref.kernels.surrogates import kind_id
from snnref.ops.surrogates import SURROGATES as TORCH_SURROGATES
from snnref.testing import strategies

FAMILIES = sorted({row.family for row in registry.MODELS.values()})
WITH_KERNELS = [f for f in FAMILIES if importlib.util.find_spec(f"snnref.kernels.{f}") is not None]
GUARD = 64


@pytest.fixture(autouse=True)
def poisoned(monkeypatch):
    """Kernel outputs start as NaN and are followed by a NaN guard zone."""
    buffers = []

    def empty(shape, dtype, device):
        count = int(np.prod(shape))
        buffer = torch.full((count + GUARD,), float("nan"), dtype=dtype, device=device)
        buffers.append((buffer, count))
        return buffer[:count].view(shape)

    monkeypatch.setattr(common, "empty", empty)
    yield buffers
    for buffer, count in buffers:
        assert torch.isnan(buffer[count:]).all(), "a kernel stored past the end of its output"


def test_every_family_has_kernels():
    assert WITH_KERNELS == FAMILIES


def test_time_is_not_a_compile_time_constant():
    for family in WITH_KERNELS:
        module = importlib.import_module(f"snnref.kernels.{family}")
        for name, value in vars(module).items():
            fn = getattr(value, "fn", None)
            if fn is None or "T" not in inspect.signature(fn).parameters:
                continue
            annotation = inspect.signature(fn).parameters["T"].annotation
            assert "constexpr" not in str(annotation), f"{family}.{name}: T is a tl.constexpr"


def probe(kind, scale):
    u = np.array([-1e30, -50.0, -1.5, -1.0, -0.3, -1e-20, 0.0, 1e-20, 0.2, 0.999, 1.0, 3.0, 1e4, 3e38],
                 dtype=np.float32)
    forms = triton_forms(kind, u, scale)
    return torch.from_numpy(u), [torch.from_numpy(forms[name]) for name in ("f", "F", "dF")]


# The probe feeds |u| up to 3e38 on purpose; the interpreter evaluates with
# NumPy, which reports the IEEE overflow to inf that a GPU takes silently (the
# results are checked finite and correct below).
@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")
@pytest.mark.parametrize("key", sorted(registry.SURROGATES))
def test_every_registry_surrogate_has_its_branch(key):
    u, (f, F, dF) = probe(kind_id(key), 1.7)
    reference = TORCH_SURROGATES[key]
    u64, a = u.double(), torch.tensor(1.7, dtype=torch.float64)
    for got, expected in ((f, reference.f(u64, a)), (F, reference.F(u64, a)),
                          (dF, reference.dF(u64, a) if reference.dF else torch.zeros_like(u64))):
        assert torch.isfinite(got).all(), key
        torch.testing.assert_close(got.double(), expected, rtol=2e-6, atol=1e-7)


def test_an_id_without_a_branch_gives_nan():
    _, outputs = probe(len(registry.SURROGATES), 1.0)
    assert all(torch.isnan(o).all() for o in outputs)


def test_the_interpreter_runs_a_loop_over_a_runtime_count():
    assert _interpreter.fault() is None


def test_verify_and_golden_checks_run_the_kernels_where_they_were_defined_to_run(monkeypatch):
    """On a GPU machine with the interpreter on (the tests set it everywhere),
    the checks hand the kernels CPU tensors; compiled, CUDA tensors."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert equivalence.kernel_device() == "cpu"
    monkeypatch.setattr(common, "INTERPRETED", False)
    assert equivalence.kernel_device() == "cuda"


def test_an_interpreter_that_cannot_loop_is_named_before_any_launch(monkeypatch):
    """Triton's interpreter before the fix of triton-lang/triton#9171 turned the
    loop count into an int with int() of a one-element array, which NumPy 2.4
    and later refuse (seen with Triton 3.6.0 and NumPy 2.5.2): that conversion
    is planted into this Triton's interpreter."""
    import triton.runtime.interpreter as interpreter

    patch_tensor = interpreter._patch_lang_tensor

    def unfixed(tensor, scope):
        patch_tensor(tensor, scope)
        scope.set_attr(tensor, "__index__", lambda self: int(self.handle.data))

    monkeypatch.setattr(interpreter, "_patch_lang_tensor", unfixed)
    _interpreter.fault.cache_clear()
    try:
        message = (r"backend: 'triton' on CPU tensors runs under Triton's interpreter, and here Triton \S+'s "
                   r"interpreter cannot run a loop over a runtime count with NumPy \S+ .*triton-lang/triton#9171")
        with pytest.raises(RuntimeError, match=message):
            snnref.simulate("tether.LIF", torch.zeros(3, 2), backend="triton")
    finally:
        _interpreter.fault.cache_clear()


def exact_threshold_case(key):
    """Dyadic inputs, leak 1/2 and threshold 1: membranes land exactly on threshold."""
    rng = np.random.default_rng(0)
    case = checks.random_case(key, rng, steps=8, batch=2, neurons=5, random_state=False)
    case.x = rng.integers(0, 5, case.x.shape) / 4.0
    case.params.update(decay=np.asarray(0.5), threshold=np.asarray(1.0))
    return case


def kernel_cases_for(key, mutant):
    if mutant.exact_threshold:
        return [exact_threshold_case(key)]
    return [checks.random_case(key, np.random.default_rng(seed), steps=6, batch=2, neurons=5,
                               per_neuron=True) for seed in (1, 2)]


def install(mutant, monkeypatch):
    """Make the triton backend run the mutant for the families of its models.
    A patched family module runs as the planted copy; a patched helper module
    (the shared jit helpers) reaches each family through a fresh copy of the
    family's module whose imported helpers are the planted copy's."""
    import snnref.backend as backend

    copy = planted(mutant)
    target = mutant.module.rpartition(".")[2]
    families = {registry.model(key).family for key in mutant.models}
    if families == {target}:
        replaced = {target: copy}
    else:
        replaced = {}
        for family in families:
            fresh = planted(Mutant(f"{mutant.name} via {family}", f"snnref.kernels.{family}", "def run(",
                                   "def run(", mutant.models))
            helpers = importlib.import_module(mutant.module)
            for name, value in vars(fresh).items():
                if getattr(helpers, name, None) is value and name in vars(copy):
                    setattr(fresh, name, getattr(copy, name))
            replaced[family] = fresh
    original = backend._family
    monkeypatch.setattr(backend, "_family",
                        lambda row, name="torch": replaced[row.family] if row.family in replaced
                        and name == "triton" else original(row, name))


def caught(key, mutant, poisoned):
    for case in kernel_cases_for(key, mutant):
        try:
            report = equivalence.compare(case, "triton", torch.float32)
        except Exception:  # a crash under the interpreter is a failure of the mutant too
            return True
        if not report.passed:
            return True
        if any(not torch.isnan(buffer[count:]).all() for buffer, count in poisoned):
            return True
    return False


@pytest.mark.parametrize("mutant", KERNEL_MUTANTS, ids=[m.name for m in KERNEL_MUTANTS])
def test_kernel_mutant_is_caught(mutant, monkeypatch, poisoned):
    install(mutant, monkeypatch)
    survivors = [key for key in mutant.models if not caught(key, mutant, poisoned)]
    poisoned.clear()  # a mutant's writes past the end were the point, not a failure
    assert not survivors, f"{mutant.name} survives the checks of {survivors}"


@pytest.mark.parametrize("mutant", KERNEL_MUTANTS, ids=[m.name for m in KERNEL_MUTANTS])
def test_the_unpatched_kernel_copy_passes(mutant, monkeypatch, poisoned):
    identity = Mutant(mutant.name, mutant.module, mutant.old, mutant.old, mutant.models, mutant.exact_threshold)
    install(identity, monkeypatch)
    for key in mutant.models:
        assert not caught(key, identity, poisoned), key


def test_half_storage_refuses_parameters_below_its_normal_range():
    x = torch.ones(2, 1, 3, dtype=torch.float16)
    with pytest.raises(ValueError, match=r"params\['tau_syn'\]: .* below torch.float16's normal range"):
        snnref.simulate("hxtorch.cuba_lif", x, backend="triton")
    assert not equivalence.storable(registry.model("hxtorch.cuba_lif"), torch.float16)
    assert equivalence.storable(registry.model("hxtorch.cuba_lif"), torch.bfloat16)


# Found by mutation testing: the check was confined to the positive parameters, and a non-negative
# one (refractory_time, 1e-6 s: a subnormal float16) passed with its precision gone.
def test_half_storage_refuses_a_nonnegative_parameter_below_its_normal_range():
    x = torch.ones(2, 1, 3, dtype=torch.float16)
    scaled = {"tau_syn": 10.0, "tau_mem": 10.0, "dt": 1.0}
    with pytest.raises(ValueError, match=r"params\['refractory_time'\]: .* below torch.float16's normal range"):
        snnref.simulate("hxtorch.cuba_refractory_lif", x, {**scaled, "refractory_time": 1e-6}, backend="triton")



def test_half_storage_takes_a_refractory_time_of_zero():
    # 0 is exact in every storage: only values strictly between 0 and the normal range lose their
    # precision (mutant: every magnitude below it, 0 included, refused).
    x = torch.ones(2, 1, 3, dtype=torch.float16)
    scaled = {"tau_syn": 10.0, "tau_mem": 10.0, "dt": 1.0, "refractory_time": 0.0}
    trace = snnref.simulate("hxtorch.cuba_refractory_lif", x, scaled, backend="triton")
    assert trace.outputs["out"].dtype == torch.float16

def test_tether_functional_contract_dispatches_to_the_kernels():
    from snnref import functional

    torch.manual_seed(0)
    x = torch.randn(6, 10) * 0.6 + 0.4
    results = {}
    for backend in ("torch", "triton"):
        inp = x.clone().requires_grad_(True)
        decay = torch.tensor(0.8, requires_grad=True)
        spikes, v_final, v_seq = functional.lif(inp, torch.zeros(10), decay, torch.tensor(1.0),
                                                torch.tensor(2.0), 0, backend=backend)
        (spikes.sum() + v_final.sum() + v_seq.sum()).backward()
        results[backend] = (spikes, v_final, v_seq, inp.grad, decay.grad)
    for ours, theirs in zip(results["triton"], results["torch"]):
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)


def test_a_shape_over_the_kernel_limit_is_refused_before_launch(monkeypatch):
    monkeypatch.setattr(common, "MAX_NEURONS", 5)
    with pytest.raises(ValueError, match=r"x: at most 5 neurons per step in one launch, got 6"):
        snnref.simulate("tether.LIF", torch.zeros(3, 2, 3), backend="triton")


def test_half_storage_keeps_small_weights():
    # Only scales (positive parameters) must be normal numbers; a weight may be tiny.
    case = checks.random_case("tether.SpikingSelfAttention", np.random.default_rng(0), steps=3, batch=1, neurons=3)
    case.params["proj_weight"][0, 0] = 4e-5
    assert equivalence.compare(case, "triton", torch.float16).passed


# Found by the thorough hypothesis profile: a parameter gradient in half storage
# made of two partial gradients, each rounded to storage before autograd added
# them (qualia.ATIF's threshold through its scaled output; the reset of a
# membrane that starts at a parameter which is itself a view).
HALF_GRADIENTS_ROUNDED_ONCE = [
    pytest.param(torch.float16, True, dict(model="qualia.ATIF", seed=4294967295, steps=6, batch=3, neurons=7,
                                           surrogate="sigmoid", per_neuron=True, random_state=False, inject=False),
                 id="qualia.ATIF-threshold"),
    pytest.param(torch.bfloat16, False, dict(model="hxtorch.cuba_refractory_iaf", seed=63, steps=3, batch=1, neurons=3,
                                             surrogate="superspike", per_neuron=False, random_state=False,
                                             inject=True),
                 id="hxtorch.cuba_refractory_iaf-reset"),
]


@pytest.mark.parametrize("dtype,contiguous,drawn", HALF_GRADIENTS_ROUNDED_ONCE)
def test_half_storage_rounds_each_parameter_gradient_once(dtype, contiguous, drawn):
    report = equivalence.compare(strategies.case(**drawn), "triton", dtype, contiguous=contiguous)
    assert report.passed, report.failures


# Found by the same profile: exp(-1/tau) computed in bfloat16 storage, which moved
# the membrane far enough to flip a spike that the spec decides by a wide margin.
@pytest.mark.parametrize("drawn", [
    dict(model="rnnbuilder.LIF", seed=729, steps=5, batch=3, neurons=3, surrogate="spike_linear", per_neuron=False,
         random_state=False, inject=False),
    dict(model="rnnbuilder.NoReset", seed=21, steps=6, batch=2, neurons=3, surrogate="spike_linear",
         per_neuron=False, random_state=False, inject=False),
], ids=lambda drawn: drawn["model"])
def test_half_storage_computes_the_leak_in_float32(drawn):
    report = equivalence.compare(strategies.case(**drawn), "triton", torch.bfloat16)
    assert report.passed, report.failures


def test_a_scaled_output_with_a_detached_reset_is_refused_by_the_lif_kernel(monkeypatch):
    """The kernel's spikes buffer holds theta s where the output is scaled
    (qualia.ATIF), and a detached reset would record that as its 0/1 spike.
    No registry row has both; a planted one is refused by name, and the other
    backends record the reset spike of the spec."""
    planted = dataclasses.replace(registry.MODELS["qualia.ATIF"], key="planted.scaled_hard", reset=registry.HARD_RESET)
    monkeypatch.setitem(registry.MODELS, planted.key, planted)
    x = torch.tensor([[0.5, 2.0], [1.5, 0.2], [0.8, 1.1]], dtype=torch.float64)
    params = {"threshold": torch.tensor(0.7, dtype=torch.float64)}
    with pytest.raises(ValueError, match=r"^backend: 'triton' has no lif kernel for planted.scaled_hard: its output "
                                         r"is the spike times the threshold and its reset's spike is detached"):
        snnref.simulate(planted.key, x.float(), {"threshold": 0.7}, backend="triton")
    reference = spec.simulate(planted.key, x.numpy(), {"threshold": 0.7})
    for backend in ("torch", "cpu"):
        trace = snnref.simulate(planted.key, x, params, backend=backend)
        np.testing.assert_array_equal(trace.detached["reset_spike"].numpy(), reference.detached["reset_spike"])
        np.testing.assert_array_equal(trace.outputs["out"].numpy(), reference.outputs["out"])
