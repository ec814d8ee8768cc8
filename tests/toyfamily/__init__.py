"""A toy model family installed at test time: one registry row and a module
per layer, to show that every registry-driven suite picks a new family up
with no edit (tests/test_families.py).

The family ``toy`` is a leaky integrator without spikes, per step t:

(1) v[t]   = decay * v[t-1] + x[t]        (v[-1] is the initial state)
(2) out[t] = v[t]

``install()`` adds the row ``toy.Leaky`` to ``snnref.registry.MODELS`` and
makes this package's modules importable at the stems ``snnref.families``
loads: ``spec`` as ``snnref.spec.toy``, ``ops`` as ``snnref.ops.toy`` and
``kernels`` (its torch op under the kernel contract) as ``snnref.kernels.toy``
and ``snnref.kernels.cpu.toy``.  tests/conftest.py calls it when the
environment variable ``SNNREF_TOY_FAMILY`` is set.
"""

import sys

from snnref import families, registry

from . import kernels, ops, spec

FAMILY = "toy"
ROW = registry.Model(
    key="toy.Leaky", family=FAMILY, doc="toy: a leaky integrator without spikes, out = v",
    params=(registry.Param(name="decay", default=0.9, trainable=True, sample=(0.5, 0.95)),),
    state=(registry.StateVar(name="v", initial=0.0, recorded="after the step"),),
    out=registry.Output.MEMBRANE, surrogates=(), spike_test=None,
)
MODULES = {"spec": spec, "torch": ops, "triton": kernels, "cpu": kernels}


def install() -> None:
    registry.MODELS[ROW.key] = ROW
    for layer, module in MODULES.items():
        sys.modules[families.module_name(FAMILY, layer)] = module
