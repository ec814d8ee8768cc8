"""tether's import paths, as its docs write them, under ``snnref.compat.tether``.

Found by an outside user: ``snnref.compat.tether`` was one flat module, so
``from tether.functional.lif import LIFSubFunction`` or ``tether.nn.surrogates``
had no counterpart with the prefix swapped.  Each documented name must be the
same object as the flat module's (and ``snnref.nn``'s), not a copy.
"""

import importlib

import pytest
import torch

import snnref.nn
from snnref.compat import tether

# (module path in tether's docs, the names it documents)
PATHS = [
    ("nn", ["ALIF", "Arctan", "FastSigmoid", "LIF", "PLIF", "Sigmoid", "SpikingSelfAttention", "Surrogate"]),
    ("nn.lif", ["LIF"]),
    ("nn.plif", ["PLIF"]),
    ("nn.alif", ["ALIF"]),
    ("nn.attention", ["SpikingSelfAttention"]),
    ("nn.surrogates", ["Arctan", "FastSigmoid", "Sigmoid", "Surrogate"]),
    ("functional", ["LIFSubFunction", "PLIFSubFunction"]),
    ("functional.lif", ["LIFSubFunction", "lif"]),
    ("functional.plif", ["PLIFSubFunction", "plif"]),
    ("functional.alif", ["alif"]),
]


@pytest.mark.parametrize("path,names", PATHS, ids=[path for path, _ in PATHS])
def test_tether_s_documented_path_holds_the_same_objects(path, names):
    module = importlib.import_module(f"snnref.compat.tether.{path}")
    for name in names:
        assert getattr(module, name) is getattr(tether, name), f"tether.{path}.{name}"
        if name[0].isupper() and hasattr(snnref.nn, name):
            assert getattr(module, name) is getattr(snnref.nn, name)


def test_the_subpackages_are_attributes_and_the_functions_stay_functions():
    # As in tether: after one import, tether.nn.LIF and tether.functional.lif (a module) are there,
    # and the flat module's lif is still the function.
    assert tether.nn.LIF is snnref.nn.LIF and tether.functional.lif.__name__ == "snnref.compat.tether.functional.lif"
    assert callable(tether.lif) and tether.lif is tether.functional.lif.lif
    x = torch.rand(4, 6)
    spikes, v_final, v_seq = tether.functional.lif.LIFSubFunction.apply(
        x, torch.zeros(6), torch.tensor(0.9), torch.tensor(1.0), torch.tensor(2.0), 0)
    assert torch.equal(spikes, tether.lif(x, torch.zeros(6), torch.tensor(0.9), torch.tensor(1.0),
                                          torch.tensor(2.0), 0)[0])
