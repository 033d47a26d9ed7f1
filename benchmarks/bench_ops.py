"""All transformer-kernel benchmarks of issue 3, one after another, each side by side with
PyTorch eager in its own process (so one library's thread pool never spins during another's):

    python benchmarks/bench_ops.py [--threads 1 2] [--quick]

runs bench_attention.py (fused attention fwd and fwd+bwd vs scaled_dot_product_attention,
GFLOP/s, fraction of peak, peak memory at T = 2048..8192), bench_norm_act.py (layernorm,
GELU, softmax fwd+bwd), and bench_loss_optim.py (cross-entropy fwd+bwd, AdamW vs
torch.optim.AdamW(fused=True), embedding).  Extra arguments are passed to each script.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPTS = ["bench_attention.py", "bench_norm_act.py", "bench_loss_optim.py"]


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    here = Path(__file__).resolve().parent
    status = 0
    for name in SCRIPTS:
        print(f"\n######## {name} {' '.join(argv)}", flush=True)
        status |= subprocess.call([sys.executable, str(here / name), *argv])
    return status


if __name__ == "__main__":
    sys.exit(main())
