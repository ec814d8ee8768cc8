"""Every Triton kernel of snnref.kernels compiles for an NVIDIA H100 (sm_90), without a GPU.

The other kernel tests run under Triton's interpreter (TRITON_INTERPRET=1, set
by conftest.py), which executes the kernels in Python and never meets the GPU
compiler's rules: a plain module-level float used in a kernel, or a jit helper
whose returns differ in type, passes the interpreter and fails on a GPU.  Here
each launched kernel (every module's ``_forward`` and ``_backward``) goes
through ``triton.compile`` down to a cubin for ``GPUTarget("cuda", 90, 32)``,
with Triton's bundled ptxas, in a fresh interpreter without TRITON_INTERPRET
(under it ``@triton.jit`` hands back interpreted functions that cannot be
compiled).  That process is this file run as a script; it compiles in a pool
of one worker per core and prints one JSON result per compilation.

Variants: each module has a short list of cases, realistic launches as the
module's autograd functions make them, chosen so that together they cover
every storage dtype (float32, float16, bfloat16), every surrogate id, and both
sides of every compile-time branch (per-neuron or scalar parameters, smooth
twin, strict threshold, replayed stop-gradient values, reset modes, cuba's
models, observations and starts, and the presence flag of every optional
cotangent), with the interactions the kernels branch on jointly (noted per
module).  A kernel's signature comes from ``inspect.signature(kernel.fn)``:
``*_ptr`` arguments are pointers to the storage dtype unless the module's
FLOAT32 table names them (buffers the launch sites allocate in float32
whatever the storage), other plain arguments are integer scalars (i32, and
i64 in some cases for the offsets that may pass 2^31: LAST, TM), and
``tl.constexpr`` arguments take the case's values.  A case that leaves a
constexpr unset, or sets one the kernel does not have, fails: the tables must
follow the kernels.
"""

import importlib
import inspect
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ARCH = 90  # H100
WARP_SIZE = 32
BLOCK = 1024  # common.GPU_BLOCK, the lanes per program on a GPU
WIDE = ("LAST", "TM")  # integer arguments that may pass 2^31 (then i64)
TIMEOUT = 600  # seconds for the whole batch (it takes some 10-20 s on 2 cores)

F32, F16, BF16 = "fp32", "fp16", "bf16"

# Per module: pointers (``*_ptr`` without the suffix) that hold float32 whatever
# the storage dtype, read off the launch sites.  Parameters are in the storage
# dtype unless the host computes them in float32 (cooldown's and adaptive's
# decays, cuba's a, b, k); an absent optional tensor is replaced by some other
# argument, which the kernel never touches, so its dtype does not matter.
FLOAT32 = {
    "lif": {"v_pre", "g_lam", "g_theta", "g_scale"},
    "alif": {"v_save", "a_save", "g_lam_v", "g_lam_a", "g_theta", "g_beta", "g_scale"},
    # z and o are float32 host matmuls; g_o is the cotangent of the float32 o.
    "attention": {"z_q", "z_k", "z_v", "o", "s_save", "v_save", "g_o", "g_z_q", "g_z_k", "g_z_v",
                  "g_lam", "g_theta", "g_scale"},
    "cooldown": {"beta", "m_saved", "g_beta"},
    "adaptive": {"beta", "beta_thr", "m_saved", "r_saved", "g_beta", "g_beta_thr", "g_gamma"},
    "discontinuous": {"g_theta"},
    "cuba": {"a", "b", "k", "v_keep", "i_keep", "r_keep", "g_a", "g_b", "g_leak", "g_reset", "g_theta", "g_k"},
}

# Surrogate ids (registry.SURROGATES order): arctan, sigmoid, fast_sigmoid, superspike, spike_linear.
ARCTAN, SIGMOID, FAST, SUPERSPIKE, LINEAR = range(5)
# Launch options other than constexprs, where a module sets them.
NUM_WARPS = {"attention": 8}


def _case(dtype, grads="", **options):
    """One launch configuration: storage dtype, constexprs, and ``grads`` the
    names of the HAS_G_* flags that are on (the others are off)."""
    return dict(dtype=dtype, grads=grads.split(), options=options)


def _lif(dtype, grads, leak, lam_pn, theta_pn, scale_pn, reset, record_pre, strict, smooth, replay, kind):
    return _case(dtype, grads, LEAK=leak, LAM_PER_NEURON=lam_pn, THETA_PER_NEURON=theta_pn,
                 SCALE_PER_NEURON=scale_pn, RESET=reset, RECORD_PRE=record_pre, STRICT=strict, SMOOTH=smooth,
                 REPLAY=replay, KIND=kind)


def _alif(dtype, grads, pn, strict, smooth, replay, kind):
    names = ("LAM_V", "LAM_A", "THETA", "BETA", "SCALE")
    return _case(dtype, grads, **{f"{n}_PER_NEURON": p for n, p in zip(names, pn)},
                 STRICT=strict, SMOOTH=smooth, REPLAY=replay, KIND=kind)


def _attention(dtype, grads, pn, strict, smooth, replay, kind):
    names = ("LAM", "THETA", "SCALE")
    return _case(dtype, grads, **{f"{n}_PER_NEURON": p for n, p in zip(names, pn)},
                 STRICT=strict, SMOOTH=smooth, REPLAY=replay, KIND=kind)


def _cooldown(dtype, grads, beta_pn, scale_pn, smooth, kind):
    return _case(dtype, grads, BETA_PER_NEURON=beta_pn, SCALE_PER_NEURON=scale_pn, SMOOTH=smooth, KIND=kind)


def _adaptive(dtype, grads, pn, smooth, kind):
    names = ("BETA", "BETA_THR", "GAMMA", "SCALE")
    return _case(dtype, grads, **{f"{n}_PER_NEURON": p for n, p in zip(names, pn)}, SMOOTH=smooth, KIND=kind)


def _discontinuous(dtype, theta_pn, scale_pn, smooth, kind):
    return _case(dtype, THETA_PER_NEURON=theta_pn, SCALE_PER_NEURON=scale_pn, SMOOTH=smooth, KIND=kind)


CUBA_MODELS = {  # LEAK, SPIKING, REFRACTORY
    "cuba_lif": (True, True, False),
    "cuba_refractory_lif": (True, True, True),
    "cuba_li": (True, False, False),
    "cuba_iaf": (False, True, False),
    "cuba_refractory_iaf": (False, True, True),
}


def _cuba(dtype, grads, model, pn, obs_v, obs_z, replay, strict, smooth, kind, v0_from):
    leak, spiking, refractory = CUBA_MODELS[model]
    names = ("LEAK", "RESET", "THETA", "ALPHA", "A", "B", "K")
    return _case(dtype, grads, **{f"{n}_PN": p for n, p in zip(names, pn)},
                 LEAK=leak, SPIKING=spiking, REFRACTORY=refractory, OBS_V=obs_v, OBS_Z=obs_z, REPLAY=replay,
                 STRICT=strict, SMOOTH=smooth, KIND=kind if spiking else -1, V0_FROM=v0_from)


T, F = True, False
CASES = {
    # Case numbers are the list indices that failure messages print.
    # Joint branches: the leak's backward term recomputes the reset of each
    # RESET (cases 0, 1, 4); g_record enters before or after the reset by
    # RECORD_PRE (cases 0, 1).
    "lif": [
        _lif(F32, "SPIKES RECORD FINAL", T, T, F, T, 1, F, T, F, F, ARCTAN),
        _lif(F16, "SPIKES RECORD", T, F, T, F, 2, T, F, F, F, SIGMOID),
        _lif(BF16, "FINAL", F, F, F, F, 0, F, T, T, F, FAST),
        _lif(BF16, "SPIKES", T, T, T, T, 1, T, F, T, T, SUPERSPIKE),
        _lif(F16, "RECORD FINAL", T, F, T, F, 0, F, T, F, F, LINEAR),
    ],
    "alif": [
        _alif(F32, "SPIKES V_REC A_REC V_FINAL A_FINAL", (T, F, T, F, T), T, F, F, ARCTAN),
        _alif(F16, "SPIKES A_REC", (F, T, F, T, F), F, F, T, SIGMOID),
        _alif(BF16, "V_REC V_FINAL", (T, T, T, T, T), T, T, F, FAST),
        _alif(F32, "A_FINAL", (F, F, F, F, F), F, T, T, LINEAR),
    ],
    "attention": [
        _attention(F32, "O CONTEXT S_FINAL V_REC V_FINAL", (T, F, T), T, F, F, ARCTAN),
        _attention(F16, "O V_REC", (F, T, F), F, T, T, SUPERSPIKE),
        _attention(BF16, "CONTEXT S_FINAL V_FINAL", (T, T, T), F, F, T, SIGMOID),
    ],
    "cooldown": [
        _cooldown(F32, "SPIKES RECORD FINAL", T, F, F, LINEAR),
        _cooldown(F16, "SPIKES", F, T, T, ARCTAN),
        _cooldown(BF16, "RECORD FINAL", T, T, F, FAST),
    ],
    "adaptive": [
        _adaptive(F32, "SPIKES M_RECORD R_RECORD M_FINAL R_FINAL", (T, F, T, F), F, LINEAR),
        _adaptive(F16, "SPIKES R_RECORD", (F, T, F, T), T, SIGMOID),
        _adaptive(BF16, "M_RECORD M_FINAL R_FINAL", (T, T, T, T), F, SUPERSPIKE),
    ],
    "discontinuous": [
        _discontinuous(F32, T, F, F, LINEAR),
        _discontinuous(F16, F, T, T, ARCTAN),
        _discontinuous(BF16, T, T, F, FAST),
    ],
    # PN order: leak, reset, threshold, alpha, a, b, k.  Joint branches: the
    # refractory clamp with an observed membrane and observed spikes (cases 1,
    # 5) and without (case 3); computed or replayed injections, also under the
    # clamp (cases 1 against 2, 4, 5); the reset recorded apart or being the
    # output spike train (RECORD_RESET, cases 1, 3 against 0, 4); LI's
    # readout, whose g_out joins g_v (case 2); the membrane starting at the
    # state, the leak or the reset (V0_FROM 0, 1, 2).
    "cuba": [
        _cuba(F32, "OUT V I V_FINAL I_FINAL", "cuba_lif", (T, F, T, F, F, T, F), F, F, F, T, F, ARCTAN, 1),
        _cuba(F16, "OUT I R I_FINAL R_FINAL", "cuba_refractory_lif", (F, T, F, T, T, F, T), T, T, F, F, F,
              SIGMOID, 0),
        _cuba(BF16, "OUT V V_FINAL", "cuba_li", (T, F, F, F, T, F, F), T, F, T, T, F, None, 1),
        _cuba(BF16, "V I V_FINAL R_FINAL", "cuba_refractory_iaf", (F, F, F, F, F, F, F), F, F, T, T, T,
              FAST, 2),
        _cuba(F16, "OUT I I_FINAL", "cuba_iaf", (F, T, T, T, F, T, F), F, T, T, T, F, SUPERSPIKE, 2),
        _cuba(F32, "OUT V I R V_FINAL I_FINAL R_FINAL", "cuba_refractory_lif", (T, T, T, T, T, T, T), T, T, T,
              F, T, LINEAR, 1),
    ],
}


def _every_surrogate(cases):
    """The cases, and copies of them (in turn) with each surrogate id they miss:
    every kernel is compiled with every surrogate's branch inlined."""
    spiking = [case for case in cases if case["options"]["KIND"] >= 0]
    missing = sorted(set(range(5)) - {case["options"]["KIND"] for case in spiking})
    extra = [dict(spiking[i % len(spiking)], options=dict(spiking[i % len(spiking)]["options"], KIND=kind))
             for i, kind in enumerate(missing)]
    return cases + extra


CASES = {module: _every_surrogate(cases) for module, cases in CASES.items()}


def _derived(module, kernel, case):
    """Constexprs the launch sites compute from the storage dtype or the model."""
    half = case["dtype"] != F32
    options = case["options"]
    if kernel != "_forward":
        return {}
    if module in ("alif", "attention"):
        return {"SAVE_SEPARATE": half}
    if module in ("cooldown", "adaptive"):
        return {"SAVE_APART": half}
    if module == "cuba":
        reset_is_spikes = options["SPIKING"] and not options["OBS_V"] and not options["REFRACTORY"]
        return {"RECORD_RESET": not reset_is_spikes, "KEEP": half}
    return {}


def _is_constexpr(parameter):
    # The kernel modules use ``from __future__ import annotations``: the
    # annotation may be the string "tl.constexpr" rather than the object.
    return "constexpr" in str(parameter.annotation)


def _constexpr_names(module, kernel):
    fn = getattr(importlib.import_module(f"snnref.kernels.{module}"), kernel)
    return [name for name, parameter in inspect.signature(fn.fn).parameters.items() if _is_constexpr(parameter)]


def compile_args(module, kernel, index):
    """(description, fn, signature, constexprs, options) of one compilation."""
    fn = getattr(importlib.import_module(f"snnref.kernels.{module}"), kernel)
    case = CASES[module][index]
    dtype = case["dtype"]
    values = dict(case["options"], **_derived(module, kernel, case), BLOCK=BLOCK)
    flags = {f"HAS_G_{name}" for name in case["grads"]}
    # A case holds both kernels' options; each must belong to one of them.
    stray = (set(values) | flags) - set(_constexpr_names(module, "_forward") + _constexpr_names(module, "_backward"))
    if stray:
        raise KeyError(f"{module}: the case table sets {sorted(stray)}, which no kernel of the module takes")
    wide = index % 2 == 1
    signature, constexprs = {}, {}
    for name, parameter in inspect.signature(fn.fn).parameters.items():
        if _is_constexpr(parameter):
            signature[name] = "constexpr"
            if name.startswith("HAS_G_"):
                constexprs[name] = name in flags
            elif name in values:
                constexprs[name] = values[name]
            else:
                raise KeyError(f"{module}.{kernel}: the case table sets no value for constexpr {name}")
        elif name.endswith("_ptr"):
            signature[name] = "*" + (F32 if name[:-len("_ptr")] in FLOAT32[module] else dtype)
        else:
            signature[name] = "i64" if wide and name in WIDE else "i32"
    offsets = [name for name in signature if name in WIDE]
    described = ", ".join(
        [dtype] + ([f"{'/'.join(offsets)} {signature[offsets[0]]}"] if offsets else [])
        + [f"{k}={v}" for k, v in constexprs.items() if k != "BLOCK"])
    described = f"{module}.{kernel} case {index} ({described})"
    return described, fn, signature, constexprs, dict(num_warps=NUM_WARPS.get(module, 4))


def _message(exc):
    """The error with its causes: Triton reports a failure inside a jit helper as
    an error at the kernel's call site caused by the helper's own error."""
    parts, seen = [], set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        part = f"{type(exc).__name__}: {exc}"
        if not parts or str(exc) not in parts[-1]:
            parts.append(part)
        exc = exc.__cause__ or exc.__context__
    return "\n\ncaused by ".join(parts)


def _compile_one(task):
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    module, kernel, index = task
    start = time.perf_counter()
    described = f"{module}.{kernel} case {index}"
    try:
        described, fn, signature, constexprs, options = compile_args(module, kernel, index)
        compiled = triton.compile(ASTSource(fn, signature, constexprs=constexprs),
                                  target=GPUTarget("cuda", ARCH, WARP_SIZE), options=options)
        if not compiled.asm.get("cubin"):
            raise RuntimeError("no cubin came out of the compilation")
        error = None
    except Exception as exc:  # the compiler's own message is the test's failure message
        error = _message(exc)
    return dict(module=module, kernel=kernel, index=index, variant=described, error=error,
                seconds=round(time.perf_counter() - start, 2))


def _unavailable():
    """Why the NVIDIA compilation cannot run here, or None."""
    try:
        import triton
        from triton.backends.compiler import GPUTarget  # noqa: F401
        from triton.compiler import ASTSource  # noqa: F401
    except ImportError as exc:
        return f"Triton's compiler API is not importable: {exc}"
    nvidia = Path(triton.__file__).parent / "backends" / "nvidia"
    if not nvidia.is_dir():
        return f"Triton's NVIDIA backend is not installed ({nvidia} is missing)"
    ptxas = os.environ.get("TRITON_PTXAS_PATH") or str(nvidia / "bin" / "ptxas")
    if not (os.path.isfile(ptxas) and os.access(ptxas, os.X_OK)):
        return f"no executable ptxas at {ptxas} (Triton's bundled ptxas or TRITON_PTXAS_PATH)"
    try:
        probe = subprocess.run([ptxas, "--version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"ptxas at {ptxas} does not run here: {exc}"
    if probe.returncode != 0:
        return f"ptxas at {ptxas} does not run here: {probe.stderr.strip() or probe.returncode}"
    return None


def _tasks():
    return [(module, kernel, index) for module, cases in CASES.items()
            for kernel in ("_forward", "_backward") for index in range(len(cases))]


def _launched_kernels(module):
    """The module's kernels, as opposed to its jit helpers: jit functions that take BLOCK."""
    import triton

    namespace = vars(importlib.import_module(f"snnref.kernels.{module}"))
    return sorted(name for name, value in namespace.items()
                  if isinstance(value, triton.runtime.JITFunction) and value.__module__ == namespace["__name__"]
                  and "BLOCK" in inspect.signature(value.fn).parameters)


def main():
    """Script mode: one JSON object per line on stdout."""
    reason = _unavailable()
    if reason is not None:
        print(json.dumps(dict(unavailable=reason)), flush=True)
        return
    import concurrent.futures
    import multiprocessing

    # Import the kernels once, before the workers fork: each has them ready.
    modules = {m: _launched_kernels(m) for m in CASES}
    package = os.path.dirname(importlib.import_module("snnref.kernels").__file__)
    print(json.dumps(dict(kernels=modules, package=package)), flush=True)
    tasks = _tasks()
    # Longest first (backward kernels, then the bigger modules) for a short tail.
    tasks.sort(key=lambda t: (t[1] != "_backward", t[0] not in ("attention", "cuba")))
    workers = max(1, min(len(tasks), os.cpu_count() or 1))
    context = multiprocessing.get_context("fork")
    with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context) as pool:
        for result in pool.map(_compile_one, tasks):
            print(json.dumps(result), flush=True)


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    """Every compilation's result, from one run of this file as a script."""
    # Neither the interpreter nor the switch that lets plain globals into kernels.
    env = {k: v for k, v in os.environ.items() if k not in ("TRITON_INTERPRET", "TRITON_ALLOW_NON_CONSTEXPR_GLOBALS")}
    # A private cache: every run compiles for real, and nothing lands in ~/.triton.
    env["TRITON_CACHE_DIR"] = str(tmp_path_factory.mktemp("triton_cache"))
    try:
        run = subprocess.run([sys.executable, __file__], capture_output=True, text=True, env=env,
                             cwd=Path(__file__).parent, timeout=TIMEOUT)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"compiling the kernels took over {TIMEOUT} s:\n{exc.stderr or ''}")
    lines = [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]
    if run.returncode != 0 or not lines:
        pytest.fail(f"the compile script failed (exit {run.returncode}):\n{run.stdout}\n{run.stderr}")
    if "unavailable" in lines[0]:
        pytest.skip(f"cannot compile for NVIDIA here: {lines[0]['unavailable']}")
    results = lines[1:]
    if len(results) != len(_tasks()):
        pytest.fail(f"the compile script returned {len(results)} of {len(_tasks())} results:\n{run.stderr}")
    return Compiled(lines[0], results)


class Compiled(tuple):
    """(what the script found: kernels per module and the package's folder; the
    results), with a short repr in failure reports."""

    def __new__(cls, found, results):
        return super().__new__(cls, (found, results))

    def __repr__(self):
        return f"<{len(self[1])} compilations>"


def test_every_launched_kernel_has_cases(compiled):
    found, _ = compiled
    # The script compiled the kernels this test session imports, not another copy.
    package = Path(importlib.import_module("snnref.kernels").__file__).parent
    assert Path(found["package"]) == package
    assert sorted(CASES) == sorted(p.stem for p in package.glob("*.py")
                                   if p.stem not in ("__init__", "common", "surrogates"))
    # Each module launches exactly a forward and a backward kernel.
    assert found["kernels"] == {module: ["_backward", "_forward"] for module in CASES}


def test_cases_cover_every_dtype_and_surrogate():
    for module, cases in CASES.items():
        assert {case["dtype"] for case in cases} == {F32, F16, BF16}, module
        kinds = {case["options"]["KIND"] for case in cases}
        assert set(range(5)) <= kinds, module


@pytest.mark.parametrize("kernel", [f"{m}.{k}" for m in CASES for k in ("_forward", "_backward")])
def test_kernel_compiles_for_sm90(compiled, kernel):
    _, results = compiled
    mine = [r for r in results if f"{r['module']}.{r['kernel']}" == kernel]
    assert mine
    failures = [f"{r['variant']}:\n{r['error']}" for r in mine if r["error"]]
    assert not failures, f"{kernel} does not compile for sm_{ARCH}:\n\n" + "\n\n".join(failures)


if __name__ == "__main__":
    main()
