"""Hypothesis strategies for every registry model's inputs, parameters and states.

``cases(model)`` draws a complete ``snnref.testing.Case`` (input, parameters,
initial state, cotangents on every output, hardware traces where the model
takes them) from the registry row of ``model`` through ``_checks.random_case``,
the one case generator that ``snnref verify`` uses too: shapes from 1 time step and 1 neuron up,
scalar or per-neuron parameters inside the row's sampling ranges, every
accepted surrogate.  The values come from a NumPy generator seeded by a drawn
integer, so a failing example prints as the call that draws it again,
``snnref.testing.strategies.case(model, seed=..., steps=..., ...)``: a line
to paste into a test or a shell.

``register_profiles()`` registers the two hypothesis profiles snnref's own
tests run under, for a test suite of yours: "snnref-ci" (20 examples,
derandomized: the same draws every run) and "snnref-thorough" (500 new draws,
for local fuzzing).  Load one in your conftest.py
(``hypothesis.settings.load_profile("snnref-ci")``) or choose it with
``pytest --hypothesis-profile=snnref-thorough``.
"""

from __future__ import annotations

import numpy as np

try:
    from hypothesis import HealthCheck, settings, strategies as st
except ModuleNotFoundError as missing:
    if missing.name != "hypothesis":
        raise
    # hypothesis comes with the test extra: said here, where a plain install met a bare module name.
    raise ModuleNotFoundError("snnref.testing.strategies needs hypothesis: pip install 'snnref[test]'",
                              name="hypothesis") from None

from .. import arguments, registry
from . import _checks as checks


# The settings of the two profiles (``register_profiles``).  No deadline: a
# first call compiles kernels; too_slow is no failure for a simulator.
CI_PROFILE = dict(max_examples=20, derandomize=True, deadline=None, print_blob=True,
                  suppress_health_check=[HealthCheck.too_slow])
THOROUGH_PROFILE = dict(CI_PROFILE, max_examples=500, derandomize=False)


def register_profiles(ci="snnref-ci", thorough="snnref-thorough"):
    """Register snnref's hypothesis profiles under these names (module docstring)."""
    settings.register_profile(ci, **CI_PROFILE)
    settings.register_profile(thorough, **THOROUGH_PROFILE)


def cases(model, max_steps=12, max_batch=3, max_neurons=7, initial_state=True, per_neuron=True,
          surrogates=None, min_steps=1, inject=True, neuron_counts=None):
    """A case for ``model`` (a registry key or row): the model is the caller's
    choice, never a draw, so a test parametrized over the registry covers every
    model by construction.  ``initial_state=False`` never draws an explicit
    initial state and ``per_neuron=False`` never draws per-neuron values for
    scalar parameters (for implementations that cannot take them);
    ``surrogates`` (a non-empty sequence of keys the model accepts) restricts
    the surrogates drawn, ``inject=False`` leaves hardware traces out and
    ``neuron_counts`` draws N from a list (e.g. sizes that are no multiple of a
    block).  Every argument is checked here, by name, before any draw."""
    row = registry.model(model)
    # "no" would be truthy.
    arguments.check_flags(initial_state=initial_state, per_neuron=per_neuron, inject=inject)
    arguments.check_count("min_steps", min_steps)
    arguments.check_count("max_steps", max_steps, min_steps)
    arguments.check_count("max_batch", max_batch)
    arguments.check_count("max_neurons", max_neurons)
    if neuron_counts is not None:
        # An empty list is no list to draw from: before, it drew from max_neurons without a word.
        if isinstance(neuron_counts, (str, bytes)) or not len(neuron_counts):
            raise ValueError(f"neuron_counts: expected a non-empty list of neuron counts, got {neuron_counts!r}")
        for count in neuron_counts:
            arguments.check_count("neuron_counts", count)
    if surrogates is not None:
        # A string is a sequence of letters: "arctan" was drawn as 'a', 'r', ...
        if isinstance(surrogates, (str, bytes)) or not len(surrogates):
            raise ValueError(f"surrogates: expected a non-empty sequence of surrogate keys, got {surrogates!r}")
        # A custom surrogate (snnref.testing.Surrogate) is the caller's own, not a key.
        refused = [key for key in surrogates if isinstance(key, str) and key not in row.surrogates]
        if refused:
            raise ValueError(f"surrogates: {row.key} does not accept {refused[0]!r}; it accepts: "
                             f"{', '.join(row.surrogates) or 'none (it has no surrogate)'}")
    return _cases(row.key, min_steps, max_steps, max_batch, max_neurons, initial_state, per_neuron,
                  tuple(surrogates or row.surrogates or (None,)), inject and bool(row.inject), neuron_counts)


@st.composite
def _cases(draw, key, min_steps, max_steps, max_batch, max_neurons, initial_state, per_neuron, surrogates,
           inject, neuron_counts):
    return case(
        key,
        seed=draw(st.integers(0, 2**32 - 1), label="seed"),
        steps=draw(st.integers(min_steps, max_steps), label="T"),
        batch=draw(st.integers(1, max_batch), label="batch"),
        neurons=draw(st.sampled_from(neuron_counts) if neuron_counts else st.integers(1, max_neurons), label="N"),
        surrogate=draw(st.sampled_from(surrogates), label="surrogate"),
        per_neuron=per_neuron and draw(st.booleans(), label="per_neuron"),
        random_state=initial_state and draw(st.booleans(), label="random initial state"),
        inject=inject and draw(st.booleans(), label="inject"),
    )


def case(model, *, seed, steps, batch, neurons, surrogate, per_neuron, random_state, inject):
    """The case ``cases`` draws for these numbers, again (its repr is this call)."""
    arguments.check_flags(per_neuron=per_neuron, random_state=random_state, inject=inject)
    arguments.check_count("seed", seed, 0)
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
