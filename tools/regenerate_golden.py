"""Regenerate the golden store from the float64 spec (the same as `snnref golden generate`).

    python tools/regenerate_golden.py [--model KEY ...] [--out DIR]

Deterministic: the same bytes on every run with the same NumPy major version.
Commit the result only when a change to the spec is intended.
"""

import sys

from snnref.cli import main

if __name__ == "__main__":
    sys.exit(main(["golden", "generate", *sys.argv[1:]]))
