"""qualia-plugin-snn's ``CustomNode`` (SPEC section 4): ``heaviside``, ``SpikeFunctionSigmoid``,
``IFSRL`` and ``ATIF``.

The neurons run in single-step mode: ``forward(input)`` advances one time step
through ``snnref.backend.simulate``, carrying the membrane ``v`` with its
autograd graph from call to call (BPTT across steps) until ``reset()``.
``backend`` (keyword only, an attribute after) is ``snnref.simulate``'s.
"""

from __future__ import annotations

import copy
import math
import numbers

import torch

from .. import arguments
from ..arguments import Names
from ..backend import ANY_DTYPE, check_backend_name, float32_under_autocast, simulate, untraced
from ..nn.carried import check_not_recomputed, check_numbers, record_carried
from ..ops.surrogates import SURROGATES

__all__ = ["ATIF", "IFSRL", "SpikeFunctionSigmoid", "heaviside"]


def heaviside(x):
    """``[x >= 0]`` in ``x``'s dtype."""
    arguments.check_type("x", x, torch.Tensor, "a torch.Tensor")
    return (x >= 0).to(x.dtype)


def _check_alpha(alpha):
    """A finite number > 0 (or a one-element tensor holding one): the backward computes
    alpha sig(alpha x) (1 - sig(alpha x)), where a string failed only then, and an
    alpha of 0 or less gave zero or sign-flipped gradients without a word."""
    if isinstance(alpha, (str, bytes, bool)) or not isinstance(alpha, (numbers.Real, torch.Tensor)) \
            or (isinstance(alpha, torch.Tensor) and alpha.numel() != 1):
        raise TypeError(f"alpha: expected a number, got {alpha!r}")
    if not (math.isfinite(float(alpha)) and float(alpha) > 0):
        raise ValueError(f"alpha: expected a finite number > 0, got {alpha!r}")


class SpikeFunctionSigmoid(torch.autograd.Function):
    """``apply(x, alpha)``: forward ``heaviside(x)``; backward the sigmoid surrogate
    ``alpha sig(alpha x) (1 - sig(alpha x))``.  ``alpha`` receives no gradient.
    Written with ``setup_context``, so ``torch.func``'s transforms take it too."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x, alpha):
        _check_alpha(alpha)
        return heaviside(x)

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, ctx.alpha = inputs
        ctx.save_for_backward(x)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * SURROGATES["sigmoid"].f(x, ctx.alpha), None


class _SoftResetIF(torch.nn.Module):
    """Integrate-and-fire with a soft reset by one learnable threshold, one step per call.

    Subclasses name the registry model (``_model``) and the threshold parameter (``_coeff``).
    """

    _model: str
    _coeff: str

    def __init__(self, v_threshold=1.0, vth_init_l=0.8, vth_init_h=1.0, alpha=1.0, device="cpu", *,
                 backend="auto"):
        super().__init__()
        self.backend = check_backend_name(backend)
        # Python, NumPy or one-element torch numbers: a sweep's values, which the seed hands to torch.
        v_threshold, low, high, self.alpha = check_numbers(v_threshold=v_threshold, vth_init_l=vth_init_l,
                                                           vth_init_h=vth_init_h, alpha=alpha, positive=("alpha",))
        if low > high:
            raise ValueError(f"vth_init_l: expected at most vth_init_h = {high}, got {low}")
        self._threshold_draw = (low, high, v_threshold)
        try:
            device = torch.device(device)
        except (RuntimeError, TypeError) as error:
            # torch's own message ("Invalid device string: 'gpu0'") named no argument.
            raise ValueError(f"device: expected a torch device or its name ('cpu', 'cuda', 'cuda:0'), "
                             f"got {device!r} ({error})") from None
        self.register_parameter(self._coeff, torch.nn.Parameter(torch.empty(1, device=device)))
        self.reset_parameters()
        self.v = self._resting_membrane()
        # The membrane the last step left (record_carried, check_not_recomputed); {} after a reset.
        self._last_carried = {}

    def reset_parameters(self):
        """The threshold drawn again as the constructor draws it: uniform in
        [vth_init_l, vth_init_h], times v_threshold (after ``to_empty`` from the
        meta device, say).  The membrane is ``reset()``'s."""
        low, high, v_threshold = self._threshold_draw
        with torch.no_grad():
            self.get_coeffs().uniform_(low, high).mul_(v_threshold)

    def _apply(self, fn, recurse=True):
        result = super()._apply(fn, recurse)
        # A membrane on the meta device is the resting one of a module built there (no step runs there):
        # made again where the threshold now is (to_empty), as construction there would have made it.
        if isinstance(self.v, torch.Tensor) and self.v.is_meta:
            self.v = self._resting_membrane()
        return result

    def get_coeffs(self):
        """The threshold parameter, shape (1,)."""
        return getattr(self, self._coeff)

    def _set_threshold(self, value):
        """Copy ``value`` (one element) into the threshold parameter, which stays the same object."""
        if not isinstance(value, torch.Tensor) or value.numel() != 1:
            raise ValueError(f"{self._coeff}: expected a tensor with one element, got {value!r:.80}")
        with torch.no_grad():
            self.get_coeffs().copy_(value.reshape(1))

    def _resting_membrane(self):
        """v before the first step: zeros of shape (1,), a tensor as the seed's (it broadcasts)."""
        theta = self.get_coeffs()
        return torch.zeros(1, dtype=theta.dtype, device=theta.device)

    def reset(self):
        """Set v to 0 by rebinding it, so no autograd graph of earlier steps stays alive."""
        self.v = self._resting_membrane()
        self._last_carried = {}

    def __deepcopy__(self, memo):
        """A copy that goes on from this membrane, cut from its graph: torch deep-copies
        graph leaves only, and v carries the graph of the steps since ``reset()``, so
        ``copy.deepcopy`` of a model mid-sequence (keeping the best model so far,
        ``torch.optim.swa_utils.AveragedModel``) raised, as the seed's does.  The
        original keeps its graph."""
        if isinstance(self.v, torch.Tensor) and self.v.grad_fn is not None:
            # Every reference to v in the copy (its record of the last carried value
            # too) becomes this one tensor.
            memo[id(self.v)] = self.v.detach().clone()
        copied = type(self).__new__(type(self))
        memo[id(self)] = copied
        copied.__setstate__(copy.deepcopy(self.__dict__, memo))
        return copied

    def detach(self):
        """Cut the carried membrane from the graph of earlier steps (truncated BPTT); SpikingJelly's
        ``functional.detach_net`` calls it on every module that has it, as on the seed's nodes."""
        # A number (assigned by a user) has no graph to cut.
        if isinstance(self.v, torch.Tensor):
            self.v = self.v.detach()
            # Still the membrane the last step left (check_not_recomputed), cut from its graph.
            last = getattr(self, "_last_carried", {})
            if last:
                self._last_carried = {"v": (self.v, last["v"][1])}

    @untraced
    @float32_under_autocast
    def forward(self, input):
        """Advance one time step with input ``x[t]`` (any shape)."""
        if not isinstance(input, torch.Tensor) or input.dtype not in ANY_DTYPE:
            raise TypeError(f"input: expected a floating torch.Tensor (float32 or float64; float16 or bfloat16 on the triton backend), got {input!r:.80}")
        # Checked on the caller's shape: the call below sees it with a time axis in front.
        arguments.check_nonempty("input", input.shape)
        # getattr: a module pickled whole before 2026-12-06 has no record (and nothing to compare).
        check_not_recomputed(type(self).__name__, {"v": self.v}, getattr(self, "_last_carried", {}))
        shape = tuple(input.shape) or (1,)
        # The threshold and the carried membrane follow the input's dtype, as the seed's arithmetic does.
        params = {"threshold": self.get_coeffs().to(input.dtype), "alpha": self.alpha}
        # The resting membrane was made on the module's device and dtype at construction or reset(), and a
        # module moved since (.cuda(), .double()) does not move a plain attribute; a user may also assign
        # a number, as SpikingJelly's own reset does.
        carried = self.v.to(input.device, input.dtype) if isinstance(self.v, torch.Tensor) else self.v
        names = Names(x="input", params={"threshold": self._coeff}, param_format="{}",
                      state={"v": "v (the membrane carried since the last reset())"}, allow_nonfinite=False)
        trace = simulate(self._model, input.reshape((1,) + shape), params, {"v": carried}, backend=self.backend,
                         names=names)
        self.v = trace.final_state["v"].reshape(input.shape)
        self._last_carried = record_carried({"v": self.v})
        return trace.outputs["out"].reshape(input.shape)


class IFSRL(_SoftResetIF):
    """IFSRL: ``v += x; z = H(v - vp_th); v -= z vp_th``; returns ``z``."""

    _model = "qualia.IFSRL"
    _coeff = "vp_th"

    def set_coeffs(self, vp_th):
        """Copy ``vp_th`` (one element) into the threshold parameter, which stays the same object."""
        self._set_threshold(vp_th)


class ATIF(_SoftResetIF):
    """ATIF: the dynamics of ``IFSRL`` with threshold ``v_threshold``; returns ``z * v_threshold``."""

    _model = "qualia.ATIF"
    _coeff = "v_threshold"

    def set_coeffs(self, v_threshold):
        """Copy ``v_threshold`` (one element) into the threshold parameter, which stays the same object."""
        self._set_threshold(v_threshold)
    # The seed's ATIF is a SpikingJelly node run step by step ("s"); multi-step ("m") it refuses.
    step_mode = "s"

    def _check_step_mode(self):
        if self.step_mode != "s":
            raise ValueError(f"step_mode: ATIF supports only single-step mode 's', got {self.step_mode!r}")

    @property
    def supported_backends(self):
        """SpikingJelly's backends for ``step_mode``: ("torch",) in single-step mode."""
        self._check_step_mode()
        return ("torch",)

    @untraced
    def forward(self, input):
        """Advance one time step; refused in multi-step mode (SpikingJelly's ``set_step_mode(net, "m")``),
        which would otherwise read a whole sequence as one step of T times as many neurons."""
        self._check_step_mode()
        return super().forward(input)
