"""The torch path: one module per model family (same stems as ``snnref/spec``),
each a custom autograd Function with a hand-written reverse scan, written
independently of the spec from SPEC.md."""
