"""``torch.autograd.gradcheck`` and ``gradgradcheck`` on a model's smooth twin.

The smooth twin (forward step replaced by the surrogate's primitive, every
stop-gradient value replayed from a base run) is an ordinary differentiable
function of x, the differentiable parameters (trainable or not) and the
initial states, so its
autograd gradient must agree with torch's own finite differences, and so must
its second derivative where a backend differentiates its gradients
(snnref/second_order.py).  Parameters are rescaled to order one first
(hxtorch's time constants are about 1e-5, far below gradcheck's fixed
perturbation).
"""

from __future__ import annotations

import numpy as np
import torch

from .. import registry
from ..backend import simulate


# gradcheck's perturbation and tolerances: float64 central differences of
# order-one inputs are good to about eps^2 + ulp/eps, near 1e-10 here.
EPS, ATOL, RTOL = 1e-6, 1e-7, 1e-5


def _smooth_twin(case, backend, foreign=False):
    """(the twin's outputs as a function of its inputs, those inputs).  ``foreign``:
    its stop-gradient values held from a run on x reversed in time, so that a
    replayed reset differs from the twin's own spike F(u) (a backward that
    rebuilds it from F(u) agrees with one that reads it wherever they are equal)."""
    row = registry.model(case.model)

    def tensor(value, grad=False):
        return torch.tensor(np.asarray(value), dtype=torch.float64, requires_grad=grad)

    differentiable = row.differentiable
    scales = {name: max(abs(v) for v in row.param(name).sample) for name in differentiable}
    fixed = {k: tensor(v) for k, v in case.params.items() if k not in differentiable}
    inject = {k: tensor(v) for k, v in case.inject.items()} if case.inject else None
    names = ["x", *differentiable, *(f"state.{k}" for k in case.state)]
    inputs = [tensor(case.x, True)]
    inputs += [tensor(np.asarray(case.params[k]) / scales[k], True) for k in differentiable]
    inputs += [tensor(v, True) for v in case.state.values()]

    def twin(*values, detached=None):
        args = dict(zip(names, values))
        params = dict(fixed, **{k: args[k] * scales[k] for k in differentiable})
        state = {k: args[f"state.{k}"] for k in case.state}
        trace = simulate(case.model, args["x"], params, state, backend=backend, surrogate=case.surrogate,
                         inject=inject, smooth=True, detached=detached)
        return tuple(trace.outputs.values()) + tuple(trace.final_state.values()), trace.detached

    _, held = twin(inputs[0].flip(0) if foreign else inputs[0], *inputs[1:])
    return (lambda *values: twin(*values, detached=held)[0]), inputs


def smooth_twin_gradcheck(case, backend="torch", foreign=False) -> bool:
    return torch.autograd.gradcheck(*_smooth_twin(case, backend, foreign), eps=EPS, atol=ATOL, rtol=RTOL)


def smooth_twin_gradgradcheck(case, backend="torch") -> bool:
    """The derivative of the gradient (every input, random cotangents on every
    output) against finite differences of the gradient."""
    return torch.autograd.gradgradcheck(*_smooth_twin(case, backend), eps=EPS, atol=ATOL, rtol=RTOL)
