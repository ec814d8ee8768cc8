"""The toy family's production path: equation (1) of tests/toyfamily/__init__.py
in torch, differentiated by autograd (a toy needs no hand-written backward)."""

import torch


def run(row, x, params, state, surrogate, inject, smooth, detached):
    decay = params["decay"]
    previous = state["v"]
    steps = []
    for t in range(x.shape[0]):
        previous = decay * previous + x[t]
        steps.append(previous)
    v = torch.stack(steps)
    return {"out": v, "v": v}, {"v": previous.clone()}, {}
