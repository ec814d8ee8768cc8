"""The layer rules, read from the source: no import points upward.

- The reference (``snnref/spec``, ``snnref/registry.py``, the plain modules
  they use, and the continuous-time ground truth ``snnref/continuous``) imports
  no torch, triton or numba, directly or through snnref.
- The torch path (``snnref/ops``) and the kernels (``kernels/``, installed as
  ``snnref.kernels``) import neither each other's private names nor the
  verification package ``snnref.testing``.
- No production module imports ``snnref.testing`` (or an old path of it), with
  one documented exception (``FORWARDS``): ``snnref/nir.py``'s module
  ``__getattr__`` (PEP 562) imports ``snnref.testing.nir`` when a caller asks
  for an old name that moved there (``snnref.nir.round_trip``, ...).  Only an
  import of that module, inside that function of that file, is allowed:
  importing ``snnref.nir`` still loads nothing of ``snnref.testing``.
- Public names that moved stay importable from their old paths, as the same objects.

Every import statement counts, also one inside a function: a lazy import is
still an arrow between layers.
"""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "triton", "numba")
# The verification package and the old import paths that alias its modules.
VERIFICATION = ("snnref.testing", "snnref.checks", "snnref.properties", "snnref.equivalence", "snnref.gradcheck",
                "snnref.tolerance", "snnref.golden", "snnref.verify")


def module_name(path: Path, root: Path) -> str:
    """The dotted name a source file is imported under (kernels/ installs as snnref.kernels)."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[0] == "kernels":
        parts = ["snnref"] + parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def sources(*patterns):
    """The source files under ROOT matching the glob ``patterns``, sorted."""
    found = {path for pattern in patterns for path in ROOT.glob(pattern) if "__pycache__" not in path.parts}
    return sorted(found)


def imports(path: Path, root: Path):
    """Every import statement of the file ``path`` (module ``module_name(path, root)``)
    as (absolute module, imported name or None, bound alias or None, line).

    ``from a import b`` yields ("a", "b", "b"), since b may be a name or a
    submodule; relative imports are resolved against the file's package.
    """
    name = module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.extend((alias.name, None, alias.asname, node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module
            found.extend((module, alias.name, alias.asname or alias.name, node.lineno) for alias in node.names)
    return found


def within(module: str, packages) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


def private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


# --------------------------------------------------------------------------- the rules


def heavy_imports(path: Path, root: Path = ROOT):
    """Imports of torch, triton or numba."""
    return [f"line {line}: {module}" for module, _, _, line in imports(path, root) if within(module, HEAVY)]


# Production module -> the verification module its module-level __getattr__ may
# import, to serve the old paths of names that moved there (see the docstring).
FORWARDS = {"snnref.nir": "snnref.testing.nir"}


def forwarded_imports(path: Path, root: Path):
    """The imports ``FORWARDS`` allows in ``path``, as (line, imported module): those of
    exactly the forward's target inside the file's module-level ``def __getattr__``."""
    target = FORWARDS.get(module_name(path, root))
    if target is None:
        return set()
    inside = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.FunctionDef) and node.name == "__getattr__":
            inside |= {inner.lineno for inner in ast.walk(node) if isinstance(inner, (ast.Import, ast.ImportFrom))}
    return {(line, target) for module, imported, _, line in imports(path, root)
            if line in inside and (f"{module}.{imported}" if imported else module) == target}


def verification_imports(path: Path, root: Path = ROOT):
    """Imports of the verification package, by its path or an old one (``from snnref import checks`` too),
    except the documented forwards."""
    bad = []
    allowed = forwarded_imports(path, root)
    for module, imported, _, line in imports(path, root):
        target = f"{module}.{imported}" if imported else module
        if (within(module, VERIFICATION) or within(target, VERIFICATION)) and (line, target) not in allowed:
            bad.append(f"line {line}: {target}")
    return bad


def private_crossings(path: Path, other: str, root: Path = ROOT):
    """Private names taken from package ``other``: ``from other.m import _x``, a private
    module ``other._m``, or ``alias._x`` on a module of ``other`` bound by an import."""
    bad, aliases = [], set()
    for module, imported, alias, line in imports(path, root):
        target = f"{module}.{imported}" if imported else module
        if not within(target, (other,)):
            continue
        if any(private(part) for part in target.split(".")):
            bad.append(f"line {line}: {module}" + (f" import {imported}" if imported else ""))
        if alias:
            aliases.add(alias)
    for node in ast.walk(ast.parse(path.read_text())):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases
                and private(node.attr)):
            bad.append(f"line {node.lineno}: {node.value.id}.{node.attr}")
    return bad


REFERENCE = sources("snnref/spec/*.py", "snnref/registry.py", "snnref/arguments.py", "snnref/trace.py",
                    "snnref/_files.py", "snnref/continuous/*.py")
TORCH_PATH = sources("snnref/ops/*.py")
KERNELS = sources("kernels/**/*.py")
PRODUCTION = sources(
    "snnref/__init__.py", "snnref/backend.py", "snnref/functional.py", "snnref/arguments.py", "snnref/trace.py",
    "snnref/_files.py", "snnref/registry.py", "snnref/nir.py", "snnref/nn/*.py", "snnref/compat/*.py",
    "snnref/ops/*.py", "snnref/spec/*.py", "kernels/**/*.py",
)


def ids(paths):
    return [str(p.relative_to(ROOT)) for p in paths]


@pytest.mark.parametrize("path", REFERENCE, ids=ids(REFERENCE))
def test_the_reference_imports_no_torch_triton_or_numba(path):
    assert heavy_imports(path) == []


@pytest.mark.parametrize("path", TORCH_PATH + KERNELS, ids=ids(TORCH_PATH + KERNELS))
def test_ops_and_kernels_take_no_private_name_from_each_other(path):
    other = "snnref.kernels" if path in TORCH_PATH else "snnref.ops"
    assert private_crossings(path, other) == []


@pytest.mark.parametrize("path", PRODUCTION, ids=ids(PRODUCTION))
def test_production_never_imports_the_verification_package(path):
    assert verification_imports(path) == []


def test_the_documented_forward_is_there_and_lazy():
    # The exception FORWARDS allows is in use (else it must go), and it is
    # lazy: importing snnref.nir loads no verification module.
    assert forwarded_imports(ROOT / "snnref" / "nir.py", ROOT)
    probe = "import sys, snnref.nir\nprint(sorted(m for m in sys.modules if m.startswith('snnref.testing')))"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]", f"loaded: {result.stdout.strip()}"


def test_the_reference_and_the_tolerances_load_without_torch():
    probe = ("import sys, snnref.spec, snnref.registry, snnref.testing._checks, snnref.testing.tolerance, "
             "snnref.continuous\n"
             "print(sorted(m for m in sys.modules if m.split('.')[0] in " + repr(HEAVY) + "))")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]", f"loaded: {result.stdout.strip()}"


def test_the_file_lists_are_not_empty():
    # A moved folder must not turn the rules above into zero parametrized cases.
    assert all([REFERENCE, TORCH_PATH, KERNELS, PRODUCTION])
    assert ROOT / "snnref" / "backend.py" in PRODUCTION and ROOT / "kernels" / "lif.py" in KERNELS


# --------------------------------------------------------------------------- the checkers catch violations


@pytest.mark.parametrize("source,rule,expected", [
    ("import torch\n", "heavy", ["line 1: torch"]),
    ("def f():\n    from numba import njit\n", "heavy", ["line 2: numba"]),
    ("import numpy as np\n", "heavy", []),
    ("from snnref.testing import tolerance\n", "verification", ["line 1: snnref.testing.tolerance"]),
    ("from snnref import checks\n", "verification", ["line 1: snnref.checks"]),
    ("from ..testing._golden import pack\n", "verification", ["line 1: snnref.testing._golden.pack"]),
    ("from snnref import registry\n", "verification", []),
    ("from snnref.ops.lif import _leak\n", "private", ["line 1: snnref.ops.lif import _leak"]),
    ("from ..ops import _shared\n", "private", ["line 1: snnref.ops import _shared"]),
    ("import snnref.ops.lif as torch_lif\nstep = torch_lif._leak\n", "private", ["line 2: torch_lif._leak"]),
    ("from ..ops import lif\nstep = lif._leak\n", "private", ["line 2: lif._leak"]),
    ("from snnref.ops.lif import run\n", "private", []),
    ("from snnref import registry, ops\nregistry._rows\n", "private", []),
])
def test_the_checkers_report_what_they_should(tmp_path, source, rule, expected):
    folder = tmp_path / "kernels"
    folder.mkdir()
    path = folder / "probe.py"
    path.write_text(textwrap.dedent(source))
    checker = {"heavy": heavy_imports, "verification": verification_imports,
               "private": lambda p, root: private_crossings(p, "snnref.ops", root)}[rule]
    assert checker(path, tmp_path) == expected


FORWARD = "def __getattr__(name):\n    from .testing import nir as moved\n    return getattr(moved, name)\n"


@pytest.mark.parametrize("file,source,expected", [
    ("snnref/nir.py", FORWARD, []),
    ("snnref/nir.py", "def __getattr__(name):\n    import snnref.testing.nir\n", []),
    # At module level, in another function, nested, or of another module: still upward.
    ("snnref/nir.py", "from .testing import nir\n", ["line 1: snnref.testing.nir"]),
    ("snnref/nir.py", "def round_trip():\n    from .testing import nir\n", ["line 2: snnref.testing.nir"]),
    ("snnref/nir.py", "class A:\n    def __getattr__(self, name):\n        from .testing import nir\n",
     ["line 3: snnref.testing.nir"]),
    ("snnref/nir.py", "def __getattr__(name):\n    from .testing import _checks\n",
     ["line 2: snnref.testing._checks"]),
    ("snnref/nir.py", "def __getattr__(name):\n    from .testing.nir import compare\n",
     ["line 2: snnref.testing.nir.compare"]),
    ("snnref/nir.py", "def __getattr__(name):\n    from .testing import nir, _checks\n",
     ["line 2: snnref.testing._checks"]),
    ("snnref/nir.py", FORWARD + "from .testing import nir\n", ["line 4: snnref.testing.nir"]),
    # The forward is allowed only where FORWARDS says.
    ("snnref/backend.py", FORWARD, ["line 2: snnref.testing.nir"]),
])
def test_the_verification_checker_allows_exactly_the_documented_forward(tmp_path, file, source, expected):
    path = tmp_path / file
    path.parent.mkdir(parents=True)
    path.write_text(source)
    assert verification_imports(path, tmp_path) == expected


# --------------------------------------------------------------------------- old import paths


# The seeds' functional modules' names (hxtorch's Unterjubel is the autograd Function its documentation lists).
SEED_FUNCTIONS = {"tether": ("lif", "plif", "alif"),
                  "hxtorch": ("Unterjubel", "cuba_iaf_integration", "cuba_li_integration", "cuba_lif_integration",
                              "cuba_lif_step", "cuba_refractory_iaf_integration", "cuba_refractory_lif_integration",
                              "refractory_update", "spiking_threshold")}


@pytest.mark.parametrize("seed", sorted(SEED_FUNCTIONS))
def test_functional_reexports_each_seed_function_as_the_same_object(seed):
    functional = importlib.import_module("snnref.functional")
    compat = importlib.import_module(f"snnref.compat.{seed}")
    for name in SEED_FUNCTIONS[seed]:
        assert getattr(functional, name) is getattr(compat, name), name
        assert name in compat.__all__ and name in functional.__all__, name
    assert sorted(functional.__all__) == sorted(n for names in SEED_FUNCTIONS.values() for n in names)


# Each seed's public names (/work/shared/seeds), all importable from snnref.compat.<seed>.
SEED_API = {
    "tether": ("LIF", "PLIF", "ALIF", "SpikingSelfAttention", "Arctan", "Sigmoid", "FastSigmoid", "Surrogate",
               "lif", "plif", "alif", "LIFSubFunction", "PLIFSubFunction"),
    "rnnbuilder": ("LIF", "NoReset", "Cooldown", "Adaptive", "Discontinuous", "SpikeLinear"),
    "qualia": ("heaviside", "SpikeFunctionSigmoid", "IFSRL", "ATIF"),
    "hxtorch": SEED_FUNCTIONS["hxtorch"],
}


@pytest.mark.parametrize("seed", sorted(SEED_API))
def test_each_compat_module_holds_its_seeds_whole_api(seed):
    compat = importlib.import_module(f"snnref.compat.{seed}")
    assert sorted(compat.__all__) == sorted(SEED_API[seed])
    assert all(hasattr(compat, name) for name in compat.__all__)


def test_tether_modules_are_snnref_nn_modules():
    from snnref import nn
    from snnref.compat import tether

    for name in ("LIF", "PLIF", "ALIF", "SpikingSelfAttention", "Arctan", "Sigmoid", "FastSigmoid", "Surrogate"):
        assert getattr(tether, name) is getattr(nn, name), name


def test_moved_names_resolve_to_the_same_objects():
    import snnref.backend
    import snnref.spec
    import snnref.spec.api
    from snnref import _files, trace
    from snnref.testing import _golden

    assert snnref.spec.api.Trace is trace.Trace
    assert snnref.spec.Trace is trace.Trace
    assert snnref.backend.Trace is trace.Trace
    assert _golden.write_atomically is _files.write_atomically
    assert importlib.import_module("snnref.golden").write_atomically is _files.write_atomically


@pytest.mark.parametrize("old,new", [
    ("snnref.checks", "snnref.testing._checks"),
    ("snnref.properties", "snnref.testing._properties"),
    ("snnref.equivalence", "snnref.testing._equivalence"),
    ("snnref.gradcheck", "snnref.testing._fd"),
    ("snnref.tolerance", "snnref.testing.tolerance"),
    ("snnref.golden", "snnref.testing._golden"),
    ("snnref.verify", "snnref.testing._verify"),
])
def test_old_verification_paths_are_the_moved_modules(old, new):
    assert importlib.import_module(old) is importlib.import_module(new)


def test_write_atomically_replaces_the_whole_file(tmp_path):
    from snnref._files import write_atomically

    target = tmp_path / "deep" / "file.bin"
    write_atomically(target, b"first")
    write_atomically(str(target), b"second")
    assert target.read_bytes() == b"second"
    assert [p.name for p in target.parent.iterdir()] == ["file.bin"]



def test_a_failed_write_leaves_the_old_file(tmp_path):
    from snnref._files import replacing, write_atomically

    target = tmp_path / "file.bin"
    write_atomically(target, b"old")
    with pytest.raises(RuntimeError, match="interrupted"):
        with replacing(target) as temporary:
            Path(temporary).write_bytes(b"half")
            raise RuntimeError("interrupted")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["file.bin"]
