"""A toy model family installed at test time: one registry row and a module
per layer, to show that every registry-driven suite picks a new family up
with no edit (tests/test_families.py).

The family ``toy`` is the scaffold's (``tools/new_family.py``) under the stem
``toy``, so that the proof covers what a contributor starts from: a leaky
integrator without spikes, per step t,

(1) v[t]   = decay * v[t-1] + x[t]        (v[-1] is the initial state)
(2) out[t] = v[t]

with the scaffold's reference (a hand-written reverse loop reporting its
long-sum sizes) and torch op (a hand-written first-order backward).
``install()`` adds the row ``toy.Leaky`` to ``snnref.registry.MODELS`` and
makes the modules importable at the stems ``snnref.families`` loads: the
reference as ``snnref.spec.toy``, the torch op as ``snnref.ops.toy`` and, for
both kernel layers, ``kernels`` (the torch op under the kernel contract, with
the compile variants a Triton family declares, so that the kernel suites
collect the toy; the toy has no kernels of its own to run there).
tests/conftest.py calls it when the environment variable ``SNNREF_TOY_FAMILY``
is set.
"""

import importlib.machinery
import importlib.util
import sys
import types
from pathlib import Path

import torch

from snnref import families, registry
from snnref.kernels import _launch

FAMILY = "toy"
ROW = registry.Model(
    key="toy.Leaky", family=FAMILY, doc="toy: a leaky integrator without spikes, out = v",
    params=(registry.Param(name="decay", default=0.9, trainable=True, sample=(0.5, 0.95)),),
    state=(registry.StateVar(name="v", initial=0.0, recorded="after the step"),),
    out=registry.Output.MEMBRANE, surrogates=(), spike_test=None,
)
_SCAFFOLD = Path(__file__).resolve().parents[2] / "tools" / "new_family.py"


def _scaffold():
    loader = importlib.util.spec_from_file_location("new_family", _SCAFFOLD)
    module = importlib.util.module_from_spec(loader)
    loader.loader.exec_module(module)
    return module


def _from_template(layer, template):
    """The scaffold's file for ``layer`` as the module ``snnref.families`` loads for the toy."""
    name = families.module_name(FAMILY, layer)
    module = types.ModuleType(name)
    module.__spec__ = importlib.machinery.ModuleSpec(name, None)
    module.__package__ = name.rpartition(".")[0]
    module.__file__ = f"{_SCAFFOLD} ({layer} template, stem {FAMILY})"
    exec(compile(template.replace("STEM", FAMILY), module.__file__, "exec"), module.__dict__)
    return module


_templates = _scaffold()
spec = _from_template("spec", _templates.SPEC)
ops = _from_template("torch", _templates.OPS)
kernels = types.ModuleType("toyfamily.kernels")
# importlib.util.find_spec of a module found in sys.modules reads its __spec__.
kernels.__spec__ = importlib.machinery.ModuleSpec(kernels.__name__, None)
kernels.run = ops.run
kernels.COMPILE_VARIANTS = _launch.CompileVariants(float32_pointers=frozenset(),
                                                   variants=(_launch.variant(torch.float32, KIND=0),))
MODULES = {"spec": spec, "torch": ops, "triton": kernels, "cpu": kernels}


def install() -> None:
    registry.MODELS[ROW.key] = ROW
    for layer, module in MODULES.items():
        sys.modules[families.module_name(FAMILY, layer)] = module
