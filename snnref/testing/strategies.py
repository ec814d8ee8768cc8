"""Hypothesis strategies for every registry model's inputs, parameters and states.

``cases(model)`` draws a complete ``snnref.testing._checks.Case`` (input, parameters,
initial state, cotangents on every output, hardware traces where the model
takes them) from the registry row of ``model`` through ``_checks.random_case``,
the one case generator that ``snnref verify`` uses too: shapes from 1 time step and 1 neuron up,
scalar or per-neuron parameters inside the row's sampling ranges, every
accepted surrogate.  The values come from a NumPy generator seeded by a drawn
integer, so a failing example prints as a handful of small numbers.
"""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

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
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1), label="seed"))
    return checks.random_case(
        row.key, rng,
        steps=draw(st.integers(min_steps, max_steps), label="T"),
        batch=draw(st.integers(1, max_batch), label="batch"),
        neurons=draw(st.sampled_from(neuron_counts) if neuron_counts else st.integers(1, max_neurons), label="N"),
        surrogate=draw(st.sampled_from(surrogates or row.surrogates or (None,)), label="surrogate"),
        per_neuron=per_neuron and draw(st.booleans(), label="per_neuron"),
        random_state=initial_state and draw(st.booleans(), label="random initial state"),
        inject=inject and bool(row.inject) and draw(st.booleans(), label="inject"),
    )


def inputs(model, **sizes):
    """The input x of a drawn case."""
    return cases(model, **sizes).map(lambda case: case.x)


def parameters(model, **sizes):
    return cases(model, **sizes).map(lambda case: case.params)


def states(model, **sizes):
    return cases(model, **sizes).map(lambda case: case.state)
