"""The machine's matrix-multiply peak, measured in this process: the denominator of every "fraction of peak".

    python benchmarks/peak.py            # prints {"bf16_gflops": ..., "fp32_gflops": ...}

A square matmul (2048 by default) repeated for about a second per dtype, after a warm-up, on the threads torch uses
here. The best of three timed rounds is the peak: what a large dense matmul reaches, not a vendor number.
"""

from __future__ import annotations

import json
import time


def matmul_peak(dtype: str = "bfloat16", n: int = 2048, seconds: float = 1.0) -> float:
    """GFLOP/s of an n x n x n matmul in ``dtype`` on the default device (CPU unless CUDA is there)."""
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    a = torch.randn(n, n, dtype=getattr(torch, dtype), device=device)
    b = torch.randn(n, n, dtype=getattr(torch, dtype), device=device)
    flops = 2 * n**3

    def sync():
        if device == "cuda":
            torch.cuda.synchronize()

    a @ b
    sync()
    t0 = time.perf_counter()
    a @ b
    sync()
    reps = max(1, int(seconds / 3 / max(time.perf_counter() - t0, 1e-6)))
    best = 0.0
    for _ in range(3):
        t0 = time.perf_counter()
        for _ in range(reps):
            a @ b
        sync()
        best = max(best, reps * flops / (time.perf_counter() - t0))
    return best / 1e9


def peaks() -> dict[str, float]:
    return {"bf16_gflops": round(matmul_peak("bfloat16"), 1), "fp32_gflops": round(matmul_peak("float32"), 1)}


if __name__ == "__main__":
    print(json.dumps(peaks()))
