"""Fused Triton scan kernels, installed as ``snnref.kernels``.

One module per model family (``<family>.py``: its forward and backward
kernels, their ``SCAN`` declaration, its ``run`` and its
``COMPILE_VARIANTS``), beside what they share: ``_jit`` (the shared device functions),
``surrogates`` (the surrogate branches), ``_launch`` (the host side, one
autograd Function for every family: launch grid, buffers, optional
cotangents, the parameter-gradient reduction) and ``common`` (launch checks,
output allocation, ``device_function``: the decorator of every jit function a
kernel calls) and ``_interpreter`` (whether Triton's interpreter can run them
here).  ``cpu/`` holds the fused numba scans of the cpu backend.
"""
