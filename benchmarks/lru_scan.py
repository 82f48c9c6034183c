"""The LRU's two scans timed side by side: `python benchmarks/lru_scan.py`.

Sequential loop against parallel scan (models/lru.py), B = 64, N = 64 (hidden 128), float32, one
CPU thread, best of 6, at T = 100 and 1000, forward and forward + backward; prints each time and
the ratio parallel / sequential measured in the same run (a ratio above 1: the default,
sequential, is the faster), and checks both compute the same outputs.
"""
from __future__ import annotations

import math
import time

import torch

from gapbench import models


def main() -> int:
    torch.set_num_threads(1)
    print(f"default scan: {models.defaults('lru')['scan']}")
    for steps in (100, 1000):
        x = torch.randn(64, steps, 2, generator=torch.Generator().manual_seed(0))
        for backward in (False, True):
            times, outputs = {}, {}
            for scan in ("sequential", "parallel"):
                torch.manual_seed(0)
                model = models.build("lru", 2, 128, scan=scan, r_min=0.9, r_max=0.999)
                best = math.inf
                for _ in range(6):
                    start = time.perf_counter()
                    output, _ = model(x)
                    if backward:
                        output.square().mean().backward()
                    best = min(best, time.perf_counter() - start)
                times[scan], outputs[scan] = best * 1e3, output.detach()
            torch.testing.assert_close(outputs["parallel"], outputs["sequential"], rtol=1e-4, atol=1e-4)
            what = f"T={steps} {'forward+backward' if backward else 'forward'}"
            print(f"{what}: sequential {times['sequential']:.1f} ms, parallel {times['parallel']:.1f} ms, "
                  f"parallel/sequential {times['parallel'] / times['sequential']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
