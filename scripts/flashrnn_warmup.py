"""FlashRNN's first call at the F1 shape (the L2 configuration: an LSTM
layer, B=16, I=H=768, T=1024, bfloat16, forward and backward), in a process
of its own, before the benchmarks: FlashRNN builds its CUDA kernels at its
first call for a shape (benchmarks/flashrnn_anchor.py), into the torch
extension cache (TORCH_EXTENSIONS_DIR), so that the benchmark's first call
only loads them. scripts/gpu_check_recurrence.sh runs it under a time
budget, beside the seqkernels build (it needs no seqkernels), and passes
the reason of a failure to the benchmarks.

    python scripts/flashrnn_warmup.py

Exit status 0 when the call ran, 3 when FlashRNN cannot run here, 1 when
the call failed; the last line printed says which, and why.
"""

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from benchmarks import flashrnn_anchor, lstm  # noqa: E402
from benchmarks.plan import Job  # noqa: E402


def main() -> int:
    device = torch.device("cuda")
    skip = flashrnn_anchor.skip_reason(device)
    if skip:
        print(f"flashrnn warm-up: cannot run: {skip}")
        return 3
    cfg = next(c for c in lstm.configs(device, False) if c.name == "L2")
    start = time.perf_counter()
    try:
        case = lstm.build(Job(cfg, flashrnn_anchor.PROVIDER, torch.bfloat16),
                          device)
    except Exception as exc:  # noqa: BLE001 - the reason goes to the row
        message = " ".join(str(exc).split())[:300]
        print(f"flashrnn warm-up: FAILED after "
              f"{time.perf_counter() - start:.0f} s: "
              f"{type(exc).__name__}: {message}")
        return 1
    print(f"flashrnn warm-up: ok: {case.note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
