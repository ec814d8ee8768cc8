"""Write the skeleton of a new model family: ``python tools/new_family.py STEM``.

Writes, for the file stem STEM (the family's name in every layer, see
``snnref/families.py``):

    snnref/spec/STEM.py            the float64 reference: forward, backward, linear_response
    snnref/ops/STEM.py             the torch op: run (autograd Function, hand-written backward)
    kernels/cpu/STEM.py            the fused numba scan: run
    tests/handworked/test_STEM.py  a hand-worked trace to fill in

and prints the registry row to paste into ``snnref/registry.py``.  Every
skeleton is the same working model, a leaky integrator without spikes,

    (1) v[t] = decay * v[t-1] + x[t]        (v[-1] is the initial state)
    (2) out[t] = v[t]

so the new family passes the registry-driven suites from its first run;
replace the equations layer by layer (CONTRIBUTING.md).  The Triton kernel
(``kernels/STEM.py``: ``run`` and ``COMPILE_VARIANTS``) is written by hand on
the kernel skeleton (``kernels/_launch.py``, ``kernels/_jit.py``).  An existing
stem (any of the files, or a registry family) is refused.
"""

from __future__ import annotations

import argparse
import keyword
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

SPEC = '''"""The STEM family (describe the models): a leaky integrator to start from.

Per step t, from the initial state v[-1]:

(1) v[t]   = decay * v[t-1] + x[t]
(2) out[t] = v[t]

Reverse loop (adjoints written ``g``), from g v[T-1] = cotangent of the final v:

(3) g v[t] += cot_out[t] + cot_v[t]
(4) g x[t] = g v[t];  g decay += g v[t] v[t-1];  g v[t-1] = decay g v[t]
"""

from __future__ import annotations

import numpy as np

from ..registry import NO_RESET
from .sums import Sums

# The registry resets this family implements (snnref/families.py): none yet.
RESETS = (NO_RESET,)


def forward(row, x, params, state, spike, inject, detached):
    decay = params["decay"]
    v = np.empty_like(x)
    previous = state["v"]
    for t in range(x.shape[0]):
        previous = v[t] = decay * previous + x[t]  # (1)
    return {"out": v, "v": v}, {"v": v[-1].copy()}, {}, {"v": v}


def backward(row, x, params, state, spike, inject, tape, cot):
    decay, v = params["decay"], tape["v"]
    g_x = np.empty_like(x)
    # A parameter's gradient is a long sum: its size goes beside it, for SPEC.md section 7's
    # third budget term (snnref/spec/sums.py; vjp(..., magnitudes=...)).
    sums = Sums({"decay": x.shape[1:]}, x.dtype)
    g_v = cot["final.v"].copy()
    for t in reversed(range(x.shape[0])):
        g_v = g_v + cot["out"][t] + cot["v"][t]  # (3)
        g_x[t] = g_v
        sums.add("decay", g_v * (v[t - 1] if t else state["v"]))  # (4)
        g_v = decay * g_v
    return {"x": g_x, "decay": sums.total["decay"], "state.v": g_v,
            "magnitudes": {"decay": sums.magnitude["decay"]}}


def linear_response(row, params, x, state, spikes, first_order):
    """The lfilter property's form (``snnref.families``): (1) is a first-order filter of x."""
    return {"v": first_order(params["decay"], x, state["v"])}


def linear_given_spikes(row):
    """No spikes, no reset: linear on every run."""
    return True
'''

OPS = '''"""The STEM family's torch path (equations: snnref/spec/STEM.py), one autograd
Function whose backward is the hand-written reverse scan."""

from __future__ import annotations

import torch

from ..second_order import first_order


class _Scan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, v0, decay):
        v = torch.empty_like(x)
        previous = v0
        for t in range(x.shape[0]):
            previous = decay * previous + x[t]  # (1)
            v[t] = previous
        ctx.save_for_backward(v0, decay, v)
        return v, v[-1].clone()

    # Refused until tests/test_second_order.py shows autograd differentiates
    # this backward right; then the family goes into TORCH_SECOND_ORDER instead.
    @staticmethod
    @first_order("STEM", "torch")
    def backward(ctx, g_v_seq, g_final):
        v0, decay, v = ctx.saved_tensors
        g_x = torch.empty_like(v)
        g_decay = torch.zeros_like(v[0])
        g_v = g_final
        for t in reversed(range(v.shape[0])):
            g_v = g_v + g_v_seq[t]  # (3)
            g_x[t] = g_v
            g_decay = g_decay + g_v * (v[t - 1] if t else v0)  # (4)
            g_v = decay * g_v
        return g_x, g_v, g_decay.sum_to_size(decay.shape)


def run(row, x, params, state, surrogate, inject, smooth, detached):
    v, final = _Scan.apply(x, state["v"], params["decay"])
    return {"out": v, "v": v}, {"v": final}, {}
'''

CPU = '''"""Fused CPU scan of the STEM family (equations: snnref/spec/STEM.py): lanes in
tiles, the time loop inside each lane; the decay's gradient is summed per lane
and reduced in a fixed order (``_launch.reduce_lanes``)."""

from __future__ import annotations

import torch

from snnref.second_order import first_order

from . import _launch
from ._cache_lock import njit


@njit(nogil=True, cache=True, error_model="numpy")
def forward_scan(x, v0, decay, v, tile, first_tile, last_tile):
    steps, count = x.shape
    for tile_index in range(first_tile, last_tile):
        start = tile_index * tile
        for j in range(start, min(start + tile, count)):
            previous = v0[j]
            for t in range(steps):
                previous = decay[j] * previous + x[t, j]  # (1)
                v[t, j] = previous


@njit(nogil=True, cache=True, error_model="numpy")
def backward_scan(v0, decay, v, g_v_seq, g_final, g_x, g_v0, g_decay, tile, first_tile, last_tile):
    steps, count = v.shape
    for tile_index in range(first_tile, last_tile):
        start = tile_index * tile
        for j in range(start, min(start + tile, count)):
            g_v = g_final[j]
            total = 0.0
            for t in range(steps - 1, -1, -1):
                g_v = g_v + g_v_seq[t, j]  # (3)
                g_x[t, j] = g_v
                total += g_v * (v[t - 1, j] if t > 0 else v0[j])  # (4)
                g_v = decay[j] * g_v
            g_v0[j] = g_v
            g_decay[j] = total


class _Scan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, v0, decay):
        step_shape = x.shape[1:]
        count = _launch.lane_count(x)
        lanes = [_launch.per_lane(value, step_shape) for value in (v0, decay)]
        v = _launch.empty(x.shape, x.dtype)
        _launch.run_tiles(forward_scan, count, _launch.sequence(x), *lanes, _launch.sequence(v))
        ctx.save_for_backward(v0, decay, v)
        ctx.lanes = lanes
        return v, v[-1].clone()

    @staticmethod
    @first_order("STEM", "cpu")
    def backward(ctx, g_v_seq, g_final):
        v0, decay, v = ctx.saved_tensors
        count = _launch.lane_count(v)
        g_x = _launch.empty(v.shape, v.dtype)
        g_v0 = _launch.empty(v.shape[1:], v.dtype)
        total = _launch.lane_sums(count, v.dtype)
        _launch.run_tiles(backward_scan, count, *ctx.lanes, _launch.sequence(v), _launch.sequence(g_v_seq),
                          _launch.per_lane(g_final, v.shape[1:]), _launch.sequence(g_x), _launch.lanes(g_v0),
                          total)
        g_decay = _launch.reduce_lanes(total, decay, v.shape[-1]) if ctx.needs_input_grad[2] else None
        return g_x, g_v0, g_decay


def run(row, x, params, state, surrogate, inject, smooth, detached):
    v, final = _Scan.apply(x, state["v"], params["decay"])
    return {"out": v, "v": v}, {"v": final}, {}
'''

HANDWORKED = '''"""Hand-worked trace of the STEM family: every expected number is arithmetic
from the update equations (snnref/spec/STEM.py), checkable on paper."""

import numpy as np

import snnref.spec as spec

KEY = "new.STEM"


def test_forward_by_hand():
    # decay 1/2, v starts at 0, x = 1, 1, 0:
    # t0: v = 0.5*0 + 1 = 1;  t1: v = 0.5*1 + 1 = 1.5;  t2: v = 0.5*1.5 + 0 = 0.75
    x = np.array([1.0, 1.0, 0.0]).reshape(-1, 1, 1)
    trace = spec.simulate(KEY, x, {"decay": 0.5})
    np.testing.assert_array_equal(trace.outputs["out"].ravel(), [1.0, 1.5, 0.75])
    np.testing.assert_array_equal(trace.final_state["v"].ravel(), [0.75])
'''

ROW = '''Model(
    key="new.STEM", family="STEM", doc="STEM: describe the model (a leaky integrator to start from)",
    params=(Param(name="decay", default=0.9, trainable=True, sample=(0.5, 0.95)),),
    state=(StateVar(name="v", initial=0.0, recorded="after the step"),),
    out=Output.MEMBRANE, surrogates=(), spike_test=None,
),'''

FILES = {
    "snnref/spec/STEM.py": SPEC,
    "snnref/ops/STEM.py": OPS,
    "kernels/cpu/STEM.py": CPU,
    "tests/handworked/test_STEM.py": HANDWORKED,
}


def registry_row(stem: str) -> str:
    """The row to paste into the MODELS tuple of snnref/registry.py."""
    return ROW.replace("STEM", stem)


def write(stem: str, root: Path = ROOT, taken=()) -> list:
    """Write the skeleton files of ``stem`` under ``root``; returns their paths.
    ``taken``: family stems already in use (the registry's)."""
    if not stem.isidentifier() or keyword.iskeyword(stem) or stem != stem.lower() or stem.startswith("_"):
        raise ValueError(f"stem: expected a lower-case Python identifier not starting with '_', got {stem!r}")
    paths = {root / name.replace("STEM", stem): text.replace("STEM", stem) for name, text in FILES.items()}
    existing = [str(path) for path in paths if path.exists()]
    if stem in taken or existing:
        raise FileExistsError(f"stem: {stem!r} already exists ({', '.join(existing) or 'a registry family'}); "
                              "choose a new family stem")
    for path, text in paths.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return list(paths)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stem", help="the new family's file stem (a lower-case identifier)")
    parser.add_argument("--root", type=Path, default=ROOT, help="the repository root to write under")
    args = parser.parse_args(argv)
    from snnref import families

    try:
        written = write(args.stem, args.root, families.names())
    except (ValueError, FileExistsError) as error:
        print(f"new_family: {error}", file=sys.stderr)
        return 2
    print("wrote:\n  " + "\n  ".join(str(path) for path in written))
    print("\nAdd this row to the MODELS tuple of snnref/registry.py:\n")
    print(registry_row(args.stem))
    print(f"\nThen write kernels/{args.stem}.py (Triton: run and COMPILE_VARIANTS) and follow CONTRIBUTING.md.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
