"""The state tether's modules carry from one forward call to the next.

The state variables (registry names, e.g. ``v``) are plain tensor attributes
that follow ``.to()`` / ``.double()`` (``CarriedState._apply``) but are no
buffers: they stay out of ``state_dict``, so a saved module loads into a fresh
one whatever batch size either has seen, and out of ``module.buffers()``, which
``AveragedModel(use_buffers=True)`` pairs by position between the model and
its copy (a state that one had and the other had not yet shifted every later
buffer onto the wrong one: a fixed surrogate scale or BatchNorm's statistics
averaged with a membrane, or a shape error).
They are ``None`` before the first call, start at zero, and are stored
detached, so no call's autograd graph outlives it through the state; they are
ordinary tensors after a call or ``reset_state()`` under ``torch.inference_mode``
too, so they may be edited in place after it (``neuron.v[done] = 0``).  The
neuron populations keep it, as tether does (it flattens x to (T, M)), while a
call has as many neurons M as the last, whatever x's shape; the attention keeps
it while x has the same (batch, tokens, dim).  A tether checkpoint stores the
state (persistent buffers ``v``, ``a``): ``load_state_dict`` takes those keys
as the carried state.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from .. import arguments, backend


# torch's default dtypes NumPy rounds alike (bfloat16 has no NumPy type: not checked).
_NUMPY_TYPES = {torch.float16: np.float16, torch.float32: np.float32, torch.float64: np.float64}


def check_numbers(positive=(), **values):
    """Constructor arguments that must be finite real numbers (those named in ``positive``
    above 0), named when they are not.  A NaN decay or a tau of 0 was taken here and
    refused only at the first forward, away from the line that gave it (the modules have
    no allow_nonfinite, and a time constant's domain is positive).  Returns them as
    floats, in the order given.  A tensor asking for a gradient is refused: the
    module keeps the value in a tensor of its own, and the caller's would never
    receive a gradient."""
    numbers = []
    for name, value in values.items():
        if getattr(value, "requires_grad", False):
            raise ValueError(f"{name}: requires_grad=True, but the module keeps this value in a tensor of its own "
                             "(a parameter it trains, or a constant); pass a number or a tensor without requires_grad")
        try:
            if isinstance(value, (str, bytes, bool)):
                raise TypeError
            # detached: a one-element tensor asking for a gradient is read for its value
            # without torch's warning about converting it.
            number = float(value.detach() if isinstance(value, torch.Tensor) else value)
        except (TypeError, ValueError, RuntimeError):
            raise TypeError(f"{name}: expected a number, got {value!r}") from None
        if not math.isfinite(number):
            raise ValueError(f"{name}: expected a finite number, got {value!r}")
        if name in positive and not number > 0:
            raise ValueError(f"{name}: expected a number > 0, got {value!r}")
        # The module keeps it in torch's default dtype: 1e40 became an inf parameter (refused at the first
        # call as "NaN or inf", or by torch inside the constructor), 1e-50 a 0.
        # Rounded by NumPy, not in a tensor: under torch.device("meta") a tensor holds no value.
        dtype = torch.get_default_dtype()
        with np.errstate(over="ignore", under="ignore"):
            held = float(_NUMPY_TYPES[dtype](number)) if dtype in _NUMPY_TYPES else number
        lost = arguments.narrowing(number, held, str(dtype).removeprefix("torch."))
        if lost is not None:
            raise ValueError(f"{name}: {lost}, the dtype the module keeps it in (torch's default); pass a value it "
                             "holds, or build the module under torch.set_default_dtype(torch.float64)")
        numbers.append(number)
    return numbers


class ResetsToConstructor:
    """A module whose ``_initial`` maps its own parameters and buffers (by
    attribute name) to the constructor's numbers."""

    def reset_parameters(self):
        """This module's own parameters back to the constructor's numbers, as
        torch's modules do theirs: after ``to_empty`` from the meta device
        (deferred initialization), ``for m in model.modules(): m.reset_parameters()``
        gives what construction on the device would have (each submodule resets
        its own: a neuron's surrogate, the attention's linear maps).  Each is
        filled in place, in its dtype and on its device (on the meta device too,
        where it holds no value).  A neuron's carried state is ``reset_state``'s."""
        initial = getattr(self, "_initial", None)
        if initial is None:
            raise RuntimeError(f"{type(self).__name__} was pickled before snnref kept its constructor's numbers: "
                               f"build it again to reset its parameters")
        with torch.no_grad():
            for name, value in initial.items():
                getattr(self, name).fill_(value)


def shown(tensor):
    """A one-element tensor's value for ``extra_repr``; on the meta device, which
    holds no value, "meta" (``repr`` of a module built there for deferred
    initialization)."""
    return "meta" if tensor.is_meta else f"{tensor.item():g}"


def check_like_module(module, x):
    """``x`` must have the dtype and device of ``module``'s floating parameters
    and buffers: otherwise the message names the module's, not one of the
    parameters simulate would meet first under a name the caller never used."""
    # One walk over the submodules' own tensors, every call of a module: the
    # three walks of modules(), named_parameters() and named_buffers() took
    # 7 us of a one-step call's 60.
    for prefix, sub in module.named_modules():
        # A surrogate's fixed scale is a float64 constant whatever the module's dtype
        # (snnref.nn.surrogates); looked up on the class, as nn.Module's own lookup of a
        # missing attribute formats an error.
        constant = sub.fixed_scale if hasattr(type(sub), "fixed_scale") else None
        for own, tensor in [*sub._parameters.items(), *sub._buffers.items()]:
            if (tensor is None or isinstance(tensor, nn.parameter.UninitializedParameter)
                    or not tensor.is_floating_point()):
                continue
            dtype = x.dtype if tensor is constant else tensor.dtype
            if (dtype, tensor.device) != (x.dtype, x.device):
                name = f"{prefix}.{own}" if prefix else own
                # Under torch.autocast the forward gets x already cast to float32
                # (backend.float32_under_autocast), whatever the caller passed.
                autocast = (" (under torch.autocast the neurons compute in float32: keep the module in float32 there)"
                            if x.dtype == torch.float32 and tensor.dtype in backend.HALF else "")
                # Where module.to(x.dtype) would be refused next: integer, bool or complex spikes, and
                # half precision, which runs on CUDA only.
                if not x.is_floating_point():
                    remedy = f"x.to({tensor.dtype}): the neurons compute in floating point"
                elif x.dtype in backend.HALF and x.device.type == "cpu":
                    remedy = f"x.to({tensor.dtype}): half precision runs on CUDA only"
                else:
                    remedy = "module.to(x.dtype) or x.to(...)"
                raise TypeError(f"x: {x.dtype} on {x.device}, but this module's {name} is {tensor.dtype} on "
                                f"{tensor.device}; move one to the other ({remedy}){autocast}")


def names(state_names, params=None):
    """How the modules' messages name simulate's arguments: their parameters by
    attribute (``params`` maps the others, a submodule's), the carried state as
    such; they take no ``allow_nonfinite``."""
    return arguments.Names(params=params or {}, param_format="{}",
                           state={name: f"the carried state {name}" for name in state_names}, allow_nonfinite=False)


def check_input(x, features=None, what=None, rank=None):
    """``x`` must be a time-major tensor (rank ``rank``, or at least 2 when None)
    whose last axis has ``features`` entries (any when None); ``what`` names that number."""
    arguments.check_type("x", x, torch.Tensor, "a torch.Tensor")
    # Before the carried state's checks read its values (a module moved to 'meta').
    backend.check_has_values("x", x)
    if (x.dim() < 2) if rank is None else (x.dim() != rank):
        expected = "rank >= 2 (T, ..., N)" if rank is None else f"rank {rank}"
        raise ValueError(f"x: expected a time-major tensor of {expected}, got shape {tuple(x.shape)}")
    if features is not None and x.shape[-1] != features:
        raise ValueError(f"x: expected a last axis of {features} ({what}), got shape {tuple(x.shape)}")


# torch's own test of whether this thread is running a backward pass (torch.utils.checkpoint
# recomputes a call there; a private name: where a torch lacks it, nothing is refused).
_TORCH_GRAPH_TASK_ID = getattr(torch._C, "_current_graph_task_id", lambda: -1)


def record_carried(state):
    """What ``check_not_recomputed`` compares with: each state tensor a call leaves (the same
    object, no copy) and the backward pass it was left in (-1: none)."""
    task = _TORCH_GRAPH_TASK_ID()
    return {name: (value, task) for name, value in state.items()}


def check_not_recomputed(label, state, last_carried):
    """A call that carries state cannot be recomputed from the state its first pass left.

    ``torch.utils.checkpoint`` (reentrant or not) reruns a checkpointed call during the
    backward; a module reading the state it carries then starts from the state the first
    pass left, and the gradients came out wrong without a word (about 100% off for
    tether.LIF).  Refused when a call runs inside a backward and its state (``state``:
    name -> value) is still a tensor a call left outside that backward (``last_carried``,
    from ``record_carried``).  A region that resets the state before the call recomputes
    from that reset, and its later steps from the states the recomputation left, correctly."""
    task = _TORCH_GRAPH_TASK_ID()
    if task == -1:
        return
    left = [name for name, value in state.items()
            if value is not None and name in last_carried and last_carried[name][0] is value
            and last_carried[name][1] != task]
    if left:
        raise RuntimeError(
            f"{label}: called during a backward pass, as torch.utils.checkpoint recomputes a checkpointed call, "
            f"with the state the first pass left ({', '.join(left)}): the recomputation would start from it and "
            "its gradients would be wrong. Checkpoint snnref.simulate with the state passed in and returned, or "
            "reset the state inside the checkpointed function")


def _ordinary():
    """Where the carried state is made: outside inference mode, so that a call or
    reset under ``torch.inference_mode`` (an evaluation, a rollout) leaves an
    ordinary tensor, as torch's own buffers stay (BatchNorm's running stats).
    An inference tensor could not be edited in place after the block
    (``neuron.v[done] = 0`` raised "Inplace update to inference tensor outside
    InferenceMode"); the copy costs what the copy it replaces did."""
    return torch.inference_mode(False)


class CarriedState(ResetsToConstructor, nn.Module):
    """Base of the tether modules: ``state_names`` are the carried registry state variables."""

    state_names: tuple = ()
    # The carried state is kept for a call with as many neurons as the last, reshaped to the call's
    # x.shape[1:] (tether's neurons flatten x); otherwise only for the same x.shape[1:].
    state_per_flattened_neuron = False

    def __init__(self, backend_name="auto"):
        super().__init__()
        # simulate's ``backend``: "torch" differentiates some families twice,
        # the fused backends' backward is first order (``snnref.second_order``).
        self.backend = backend.check_backend_name(backend_name)
        for name in self.state_names:
            setattr(self, name, None)
        self._last_carried = {}
        # The state tensors this module set itself (a call's final state, a reset, a move, a
        # checkpoint's), by name: any other value there the caller set (``carried``).
        self._own = {}

    def _keep(self, name, value):
        """Set state variable ``name`` to ``value``, as this module's own."""
        setattr(self, name, value)
        self._own[name] = value

    def _owns(self, name, value):
        # A module pickled before 2026-12-07 has no record: all its state was its own then.
        own = getattr(self, "_own", None)
        return own is None or own.get(name) is value

    def _apply(self, fn, recurse=True):
        # nn.Module.to, .double(), .cuda() and the like move the carried state as they would a buffer.
        result = super()._apply(fn, recurse)
        self._last_carried = {}
        for name in self.state_names:
            value = getattr(self, name)
            if isinstance(value, torch.Tensor):
                if self._owns(name, value):
                    self._keep(name, fn(value))
                else:
                    setattr(self, name, fn(value))
        return result

    def carried(self, x):
        """The state for a call on ``x`` (None: all zeros, the first call's).

        - What this module left (a call's final state, a reset) is kept while it
          fits the call (as many neurons, ``state_per_flattened_neuron``, else the
          same shape), reshaped to ``x.shape[1:]``; where any does not (the batch
          changed), none is kept, as tether starts again.
        - A value the caller set (``neuron.v = ...``) is passed on as it is,
          reshaped where it holds one value per neuron of the call: simulate
          broadcasts it (a per-neuron or single initial membrane) or refuses it by
          name.  Dropped for not fitting, as the module's own state is, a
          per-neuron membrane set by the caller was ignored without a word.
        """
        shape = x.shape[1:]
        state = {name: getattr(self, name) for name in self.state_names}
        left = {name: value for name, value in state.items() if value is not None and self._owns(name, value)}
        for name, value in left.items():
            # simulate would refuse it as a value the caller gave; the cause is the module's own run.
            if not backend.finite(value):
                raise ValueError(f"the carried state {name}: expected finite values, found NaN or inf; the module "
                                 "holds it from its last call, a checkpoint it loaded or an edit of it (a call's "
                                 "state overflows where a decay above 1 grows a membrane that never reaches "
                                 "threshold: float32 holds magnitudes below 3.4e38); call reset_state() to start "
                                 "again")
        if self.state_per_flattened_neuron:
            fits = all(value.numel() == math.prod(shape) for value in left.values())
        else:
            fits = all(value.shape == shape for value in left.values())
        carried = {name: value.reshape(shape) for name, value in left.items()} if fits else {}
        for name, value in state.items():
            if value is None or name in left:
                continue
            whole = (isinstance(value, torch.Tensor) and self.state_per_flattened_neuron
                     and value.numel() == math.prod(shape))
            carried[name] = value.reshape(shape) if whole else value
        return carried or None

    def carry(self, final_state):
        """Keep a call's final state, detached, for the next call: a copy, which the
        caller may edit in place (``neuron.v[done] = 0``) on every backend; a detached
        view would share its version with an output the torch path saved for backward.
        The copy is an ordinary tensor under ``torch.inference_mode`` too (``_ordinary``)."""
        with _ordinary():
            for name in self.state_names:
                self._keep(name, final_state[name].detach().clone())
        # The same tensors, no copy; forgotten where the state is rebound (reset_state, _apply), so that
        # an old state is not kept alive.  A plain dict: pickle and deepcopy keep it the same object as the state.
        self._last_carried = record_carried({name: getattr(self, name) for name in self.state_names})

    def check_not_recomputed(self):
        """``check_not_recomputed`` for this module's carried state."""
        # getattr: a module pickled whole before 2026-12-06 has no record (and nothing to compare).
        check_not_recomputed(type(self).__name__, {name: getattr(self, name) for name in self.state_names},
                             getattr(self, "_last_carried", {}))

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs):
        # A tether checkpoint's state buffers would otherwise be unexpected keys; they become the
        # carried state, all of them or none (a part would be dropped, or mixed with an older rest).
        given = {name: state_dict.pop(prefix + name) for name in self.state_names if prefix + name in state_dict}
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)
        if given and len(given) < len(self.state_names):
            absent = [prefix + name for name in self.state_names if name not in given]
            error_msgs.append(f"the carried state: {', '.join(prefix + name for name in given)} given without "
                              f"{', '.join(absent)}; a checkpoint holds all of it or none")
            return
        # After the parameters are loaded: in their dtype and on their device (assign=True may have moved them).
        like = next(self.parameters())
        for name, value in given.items():
            self._keep(name, value.detach().to(like.device, like.dtype, copy=True))

    def reset_state(self):
        """Zero the carried state (rebinding it: no old tensor is written in place),
        in ordinary tensors whatever the mode (``_ordinary``)."""
        self._last_carried = {}
        with _ordinary():
            for name in self.state_names:
                value = getattr(self, name)
                # A number or list the caller set has no tensor to zero: the next call starts at 0.
                self._keep(name, torch.zeros_like(value) if isinstance(value, torch.Tensor) else None)


class TetherNeuron(CarriedState):
    """A tether neuron population: input (T, ...), spikes out.

    Subclasses set ``model`` and ``state_names``, return their parameters by
    registry name from ``params()`` and their surrogate's key and scale from
    ``surrogate_for(x)``.  With scalar parameters every element of x is a
    neuron, as tether flattens x to (T, M); a subclass with per-neuron
    parameters sets ``neurons_on_last_axis``.  With ``store_traces`` the last
    call's pre-reset membrane is kept in ``v_seq`` (and ``kept_sequences``'
    others), detached as tether keeps it: a record to read, not part of the graph.
    """

    neurons_on_last_axis = False
    state_per_flattened_neuron = True
    # What store_traces keeps: tether's attribute -> the recorded output.
    kept_sequences = {"v_seq": "v"}

    def __init__(self, n_neurons, store_traces, backend_name):
        super().__init__(backend_name)
        self.n_neurons = arguments.check_count("n_neurons", n_neurons)
        # A string such as "no" would be truthy.
        arguments.check_flags(store_traces=store_traces)
        self.store_traces = store_traces
        self.keep_sequences(None)

    @backend.untraced
    @backend.float32_under_autocast
    def forward(self, x):
        if self.neurons_on_last_axis:
            check_input(x, self.n_neurons, "n_neurons")
        else:
            check_input(x)
        # Set as an attribute after construction too (neuron.store_traces = "no" kept them).
        arguments.check_flags(store_traces=self.store_traces)
        check_like_module(self, x)
        self.check_not_recomputed()
        surrogate, scale = self.surrogate_for(x)
        trace = backend.simulate(self.model, x, dict(self.params(), alpha=scale), self.carried(x),
                                 surrogate=surrogate, backend=self.backend, names=names(self.state_names))
        self.carry(trace.final_state)
        self.keep_sequences(trace.outputs)
        return trace.outputs["out"]

    def keep_sequences(self, outputs):
        """The last call's recorded sequences, detached; None without ``store_traces``,
        and before the first call or after ``reset_state()`` (``outputs`` None)."""
        for attribute, output in self.kept_sequences.items():
            kept = self.store_traces and outputs is not None
            setattr(self, attribute, outputs[output].detach() if kept else None)

    def reset_state(self):
        super().reset_state()
        self.keep_sequences(None)

    def extra_repr(self):
        return f"n_neurons={self.n_neurons}, store_traces={self.store_traces}, backend={self.backend!r}"
