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

Variants: each family module states its own, as ``COMPILE_VARIANTS`` (a
``snnref.kernels._launch.CompileVariants``): realistic launches as the
module's autograd functions make them, chosen so that together they cover
every storage dtype (float32, float16, bfloat16) and both sides of every
compile-time branch, with the interactions the kernels branch on jointly
(noted in each module); here each is copied once per surrogate id it misses,
so every kernel is compiled with every surrogate's branch inlined.  The
families are the registry's: a new family needs no edit here.  A kernel's
signature comes from ``inspect.signature(kernel.fn)``: ``*_ptr`` arguments
are pointers to the storage dtype unless the module's ``float32_pointers``
names them (buffers the launch sites allocate in float32 whatever the
storage), other plain arguments are integer scalars (i32, and i64 in some
cases for the offsets that may pass 2^31: LAST, TM), and ``tl.constexpr``
arguments take the variant's values.  A variant that leaves a constexpr
unset, or sets one neither kernel has, fails: the variants must follow the
kernels.
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
import torch

from snnref import registry
from snnref.kernels._launch import GPU_BLOCK as BLOCK

ARCH = 90  # H100
WARP_SIZE = 32
WIDE = ("LAST", "TM")  # integer arguments that may pass 2^31 (then i64)
TIMEOUT = 600  # seconds for the whole batch (it takes some 10-20 s on 2 cores)

F32, F16, BF16 = "fp32", "fp16", "bf16"
SURROGATE_IDS = range(len(registry.SURROGATES))


def _families():
    """Every family some registry row names: each has a Triton module."""
    return sorted({row.family for row in registry.MODELS.values()})


def _compile_variants(module):
    """The module's COMPILE_VARIANTS, or None (test_every_family_states_its_variants fails)."""
    return getattr(importlib.import_module(f"snnref.kernels.{module}"), "COMPILE_VARIANTS", None)


def _case(variant):
    """A variant as the compile step reads it: Triton's name of the storage dtype."""
    names = {torch.float32: F32, torch.float16: F16, torch.bfloat16: BF16}
    return dict(dtype=names[variant.dtype], grads=list(variant.grads), options=dict(variant.constexprs))


def _every_surrogate(cases):
    """The cases, and copies of them (in turn) with each surrogate id they miss:
    every kernel is compiled with every surrogate's branch inlined."""
    spiking = [case for case in cases if case["options"]["KIND"] >= 0]
    missing = sorted(set(SURROGATE_IDS) - {case["options"]["KIND"] for case in spiking})
    extra = [dict(spiking[i % len(spiking)], options=dict(spiking[i % len(spiking)]["options"], KIND=kind))
             for i, kind in enumerate(missing)]
    return cases + extra


# Case numbers are the list indices that failure messages print.
CASES = {module: _every_surrogate([_case(v) for v in _compile_variants(module).variants])
         for module in _families() if _compile_variants(module) is not None}


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
    values = dict(case["options"], BLOCK=BLOCK)
    flags = {f"HAS_G_{name}" for name in case["grads"]}
    # A case holds both kernels' options; each must belong to one of them.
    stray = (set(values) | flags) - set(_constexpr_names(module, "_forward") + _constexpr_names(module, "_backward"))
    if stray:
        raise KeyError(f"{module}: COMPILE_VARIANTS sets {sorted(stray)}, which no kernel of the module takes")
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
                raise KeyError(f"{module}.{kernel}: COMPILE_VARIANTS sets no value for constexpr {name}")
        elif name.endswith("_ptr"):
            float32 = _compile_variants(module).float32_pointers
            signature[name] = "*" + (F32 if name[:-len("_ptr")] in float32 else dtype)
        else:
            signature[name] = "i64" if wide and name in WIDE else "i32"
    offsets = [name for name in signature if name in WIDE]
    described = ", ".join(
        [dtype] + ([f"{'/'.join(offsets)} {signature[offsets[0]]}"] if offsets else [])
        + [f"{k}={v}" for k, v in constexprs.items() if k != "BLOCK"])
    described = f"{module}.{kernel} case {index} ({described})"
    return described, fn, signature, constexprs, dict(num_warps=_compile_variants(module).num_warps)


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
    # Every module of the package is searched: one that launches kernels must be a family's.
    package = Path(importlib.import_module("snnref.kernels").__file__).parent
    modules = {m: k for m in sorted(p.stem for p in package.glob("*.py") if p.stem != "__init__")
               if (k := _launched_kernels(m))}
    print(json.dumps(dict(kernels=modules, package=str(package))), flush=True)
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
    # The modules that launch kernels are the families', each exactly a forward and a backward kernel.
    assert found["kernels"] == {module: ["_backward", "_forward"] for module in CASES}


def test_every_family_states_its_variants():
    missing = [family for family in _families() if _compile_variants(family) is None]
    assert not missing, (f"snnref.kernels.{missing[0]} has no COMPILE_VARIANTS (a "
                         "snnref.kernels._launch.CompileVariants): its kernels would never be compiled for a GPU")


def test_cases_cover_every_dtype_and_surrogate():
    for module, cases in CASES.items():
        assert {case["dtype"] for case in cases} == {F32, F16, BF16}, module
        kinds = {case["options"]["KIND"] for case in cases}
        assert set(SURROGATE_IDS) <= kinds, module


@pytest.mark.parametrize("kernel", [f"{m}.{k}" for m in CASES for k in ("_forward", "_backward")])
def test_kernel_compiles_for_sm90(compiled, kernel):
    _, results = compiled
    mine = [r for r in results if f"{r['module']}.{r['kernel']}" == kernel]
    assert mine
    failures = [f"{r['variant']}:\n{r['error']}" for r in mine if r["error"]]
    assert not failures, f"{kernel} does not compile for sm_{ARCH}:\n\n" + "\n\n".join(failures)


if __name__ == "__main__":
    main()
