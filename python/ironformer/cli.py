"""The `ironformer` command line (filled by the GPT work: train, generate, info, bench)."""
from __future__ import annotations

import sys


def main(argv=None) -> int:
    print("ironformer CLI: not implemented yet", file=sys.stderr)
    return 2
