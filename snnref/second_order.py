"""Second-order and batched gradients: computed where verified, refused elsewhere.

A gradient taken with ``create_graph=True`` can be differentiated again (a
gradient penalty, a meta-learning outer step).  That needs each scan's
backward to be a function autograd can differentiate, and snnref's are not
all that:

- the cpu and Triton backends' backward scans are compiled kernels: a gradient
  they return carries no graph, so a second derivative taken through it lacks
  the scan's own terms, silently (tether.PLIF, float64, the sum of one
  Hessian-vector product: 277.7, where finite differences of the gradient
  give 603.7);
- the torch path's reverse scans are torch code, and autograd differentiates
  them correctly for the families in ``TORCH_SECOND_ORDER``, not for LIF and
  attention (the LIF scan of rnnbuilder.LIF, which records the post-reset
  membrane, reads the pre-reset one from a buffer outside the graph).

Both claims are checked against finite differences of the first-order
gradient (``torch.autograd.gradgradcheck`` on every model's smooth twin,
tests/test_second_order.py).  Where a backward is first order, ``first_order``
routes its gradients through ``_Refused`` when they are built with a graph:
a second differentiation through them raises ``SecondOrderError``, naming the
family, the backend and what does differentiate that family twice, instead of
returning a wrong number.  Gradients taken without ``create_graph`` are
untouched and cost nothing more.

A batched gradient (``torch.autograd.grad(..., is_grads_batched=True)``, which
``torch.autograd.functional.jacobian(..., vectorize=True)`` and
``gradcheck(..., check_batched_grad=True)`` use) runs a backward once on
cotangents that autograd's own vmap batches.  The scans' backwards write into
buffers in place, or read NumPy views, which such a tensor cannot take: every
model but the torch path's Discontinuous failed deep inside torch ("vmap:
aten::copy_ ... is not possible", "Batching rule not implemented for
aten::detach").  ``unbatched`` refuses such a call by name; ``first_order``
includes it.
"""

from __future__ import annotations

import functools

import torch

# The families whose torch-path backward autograd differentiates correctly.
TORCH_SECOND_ORDER = frozenset({"adaptive", "alif", "cooldown", "cuba", "discontinuous"})


# torch's test of a tensor batched by autograd's own vmap (a private name: where
# a torch lacks it, the batched call's own errors are what a caller sees).
_BATCHED = getattr(torch._C._functorch, "is_legacy_batchedtensor", lambda tensor: False)

BATCHED_MESSAGE = (
    "a batched gradient (torch.autograd.grad(..., is_grads_batched=True), which torch.autograd.functional."
    "jacobian(..., vectorize=True) and gradcheck(..., check_batched_grad=True) use) runs this backward under "
    "vmap, which snnref's scans do not support; take the cotangents one at a time (jacobian's default "
    "vectorize=False, gradcheck's check_batched_grad=False)")


def unbatched(backward):
    """Decorate a custom Function's ``backward`` that cannot run on batched cotangents."""

    @functools.wraps(backward)
    def wrapped(ctx, *cotangents):
        if any(isinstance(cotangent, torch.Tensor) and _BATCHED(cotangent) for cotangent in cotangents):
            raise NotImplementedError(BATCHED_MESSAGE)
        return backward(ctx, *cotangents)

    return wrapped


class SecondOrderError(RuntimeError):
    """A gradient from a first-order backward was differentiated again."""


def _message(family: str, backend: str) -> str:
    if backend != "torch" and family in TORCH_SECOND_ORDER:
        alternative = ("backend='torch' (an argument of snnref.simulate, the compat functions and the module "
                       "classes) differentiates this family's gradients again")
    else:
        alternative = "no snnref backend differentiates this family's gradients again"
    return (f"create_graph: a gradient from the {family} family's backward on backend {backend!r} was "
            f"differentiated again (torch.autograd.functional.jvp, hvp and hessian do so inside); that backward "
            f"is first order (its second derivative would lack the scan's own terms); {alternative}")


class _Refused(torch.autograd.Function):
    """Copies of the gradients whose own backward raises ``SecondOrderError``."""

    @staticmethod
    def forward(ctx, message, lead_count, *leads_and_gradients):
        ctx.message = message
        return tuple(gradient.clone() for gradient in leads_and_gradients[lead_count:])

    @staticmethod
    def backward(ctx, *_):
        raise SecondOrderError(ctx.message)


def _reach_every_input(node, leads) -> bool:
    """Whether a path from ``leads`` reaches each input of the Function whose
    backward ``node`` is that takes a gradient (the inputs' edges are
    ``node.next_functions``; an input without a gradient has no node): an
    output of the Function reaches all of them through ``node`` itself, an
    input reaches itself."""
    if any(lead.grad_fn is node for lead in leads):
        return True
    def reaches(lead, edge_node, number):
        # A non-leaf input is an output of edge_node; a leaf is the variable its AccumulateGrad node holds.
        return (lead.grad_fn is edge_node and lead.output_nr == number
                or getattr(edge_node, "variable", None) is lead)

    return all(any(reaches(lead, edge_node, number) for lead in leads)
               for edge_node, number in node.next_functions if edge_node is not None)


def first_order(family, backend: str):
    """Decorate a custom Function's ``backward`` whose gradients autograd
    cannot differentiate again.  ``family``: the family's name, or a function
    of ``ctx`` giving it (a Function that serves several families).

    Autograd runs a backward with grad mode on exactly when the caller asked
    for ``create_graph``.  Then the backward runs without recording, and each
    gradient it returns goes through ``_Refused``, whose inputs also include
    the Function's saved tensors that carry a graph (its inputs, or its
    outputs, which lead back to all of them) and the incoming cotangents that
    carry one: autograd runs only the nodes on a path to the tensors
    differentiated, and this puts ``_Refused`` on every path from a gradient
    to the Function's inputs, even where the incoming cotangent is a constant
    (a loss ``out.sum()``), and to the cotangents.  A gradient is linear in
    its cotangent, so its derivative there is the forward's Jacobian-vector
    product (``torch.autograd.functional.jvp`` takes it so); computed through
    a backward run without recording, it was 0, silently.  Where the saved tensors
    do not reach every input that takes a gradient (none is an output and
    some such input is not saved: a second derivative with respect to that
    input would pass beside ``_Refused``), the gradient is refused at once,
    when it is built."""

    def decorate(backward):
        @unbatched
        @functools.wraps(backward)
        def wrapped(ctx, *cotangents):
            if not torch.is_grad_enabled():
                return backward(ctx, *cotangents)
            with torch.no_grad():
                gradients = backward(ctx, *cotangents)
            single = isinstance(gradients, torch.Tensor)
            gradients = [gradients] if single else list(gradients)
            present = [index for index, gradient in enumerate(gradients) if isinstance(gradient, torch.Tensor)]
            if present:
                message = _message(family(ctx) if callable(family) else family, backend)
                leads = [saved for saved in ctx.saved_tensors if saved is not None and saved.requires_grad]
                if not _reach_every_input(ctx, leads):
                    raise SecondOrderError(message)
                leads += [cotangent for cotangent in cotangents
                          if isinstance(cotangent, torch.Tensor) and cotangent.requires_grad]
                marked = _Refused.apply(message, len(leads), *leads, *(gradients[i] for i in present))
                for index, gradient in zip(present, marked):
                    gradients[index] = gradient
            return gradients[0] if single else tuple(gradients)

        return wrapped

    return decorate
