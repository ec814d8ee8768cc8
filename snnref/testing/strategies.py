"""Hypothesis strategies for every registry model's inputs, parameters and states.

``cases(model)`` draws a complete ``snnref.testing._checks.Case`` (input, parameters,
initial state, cotangents on every output, hardware traces where the model
takes them) from the registry row of ``model`` through ``_checks.random_case``,
the one case generator that ``snnref verify`` uses too: shapes from 1 time step and 1 neuron up,
scalar or per-neuron parameters inside the row's sampling ranges, every
accepted surrogate.  The values come from a NumPy generator seeded by a drawn
integer, so a failing example prints as the call that draws it again,
``snnref.testing.strategies.case(model, seed=..., steps=..., ...)``: a line
to paste into a test or a shell.
"""

from __future__ import annotations

import numpy as np

try:
    from hypothesis import strategies as st
except ModuleNotFoundError as missing:
    if missing.name != "hypothesis":
        raise
    # hypothesis comes with the test extra: said here, where a plain install met a bare module name.
    raise ModuleNotFoundError("snnref.testing.strategies needs hypothesis: pip install 'snnref[test]'",
                              name="hypothesis") from None

from .. import registry
from . import _checks as checks


@st.composite
def cases(draw, model, max_steps=12, max_batch=3, max_neurons=7, initial_state=True, per_neuron=True,
          surrogates=None, min_steps=1, inject=True, neuron_counts=None):
    """A case for ``model`` (a registry key or row): the model is the caller's
    choice, never a draw, so a test parametrized over the registry covers every
    model by construction.  ``initial_state=False`` never draws an explicit
    initial state and ``per_neuron=False`` never draws per-neuron values for
    scalar parameters (for implementations that cannot take them);
    ``surrogates`` restricts the surrogates drawn, ``inject=False`` leaves
    hardware traces out and ``neuron_counts`` draws N from a list (e.g. sizes
    that are no multiple of a block)."""
    row = registry.model(model)
    if neuron_counts is not None and not len(neuron_counts):
        # An empty list is no list to draw from: before, it drew from max_neurons without a word.
        raise ValueError("neuron_counts: expected a non-empty list of neuron counts, got an empty one")
    return case(
        row.key,
        seed=draw(st.integers(0, 2**32 - 1), label="seed"),
        steps=draw(st.integers(min_steps, max_steps), label="T"),
        batch=draw(st.integers(1, max_batch), label="batch"),
        neurons=draw(st.sampled_from(neuron_counts) if neuron_counts else st.integers(1, max_neurons), label="N"),
        surrogate=draw(st.sampled_from(surrogates or row.surrogates or (None,)), label="surrogate"),
        per_neuron=per_neuron and draw(st.booleans(), label="per_neuron"),
        random_state=initial_state and draw(st.booleans(), label="random initial state"),
        inject=inject and bool(row.inject) and draw(st.booleans(), label="inject"),
    )


def case(model, *, seed, steps, batch, neurons, surrogate, per_neuron, random_state, inject):
    """The case ``cases`` draws for these numbers, again (its repr is this call)."""
    drawn = checks.random_case(registry.model(model).key, np.random.default_rng(seed), steps=steps, batch=batch,
                               neurons=neurons, surrogate=surrogate, per_neuron=per_neuron,
                               random_state=random_state, inject=inject)
    drawn.recipe = (f"snnref.testing.strategies.case({drawn.model!r}, seed={seed}, steps={steps}, batch={batch}, "
                    f"neurons={neurons}, surrogate={surrogate!r}, per_neuron={bool(per_neuron)}, "
                    f"random_state={bool(random_state)}, inject={bool(inject)})")
    return drawn


def inputs(model, **sizes):
    """The input x of a drawn case."""
    return cases(model, **sizes).map(lambda case: case.x)


def parameters(model, **sizes):
    return cases(model, **sizes).map(lambda case: case.params)


def states(model, **sizes):
    return cases(model, **sizes).map(lambda case: case.state)
