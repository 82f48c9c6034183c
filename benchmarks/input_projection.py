"""The input projection's weight gradient, two ways: `python benchmarks/input_projection.py
[--models vanilla lru ...] [--lengths 200 1000 2295] [--inputs 2 10] [--out CSV]` (rows appended).

Every model whose drive is `gapbench.engine.project_input` (u = x W_inᵀ + b over all steps) gets
∂L/∂W_in as (xᵀ G)ᵀ, an [input, batch·T]·[batch·T, hidden] product; F.linear's autograd computes
the same sum as Gᵀ x, [hidden, batch·T]·[batch·T, input], a shape the CPU's BLAS does several
times slower when the input is a few columns wide (benchmarks/step_profile.py found it: 44 µs per
time step of vanilla's 279 at T = 2295, H = 128, input 2). Here one training step of one run
(H = 128, batch 64, random inputs of the task's width, a last-step squared loss, backward, Adam;
one thread, subnormals flushed) is timed with the drive as committed and with the drive's
projection replaced by F.linear, the two alternating in rounds (median of --repeats), so that
both see the same machine load (a step at a time, hence its own minimal step rather than
gapbench.reports.cost.TimedTraining's whole job trainings, which step_profile.py and the
calibration share). It prints the time per time step of each, their ratio, and
whether the weights after the timed steps are the same bits (they need not be: the two sums
may be added in another order).
"""
from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import torch
from torch.nn import functional as F

from gapbench import engine, models
from gapbench.files import append_csv
from gapbench.job import training_numerics
from gapbench.models._base import Net
from gapbench.provenance import code_version

HIDDEN, BATCH = 128, 64


@contextmanager
def projection(name: str):
    """The drives' projection as committed ("project_input") or as F.linear ("F.linear")."""
    committed = engine._InputProjection.apply
    if name == "F.linear":
        engine._InputProjection.apply = staticmethod(F.linear)
    try:
        yield
    finally:
        engine._InputProjection.apply = committed


def training_step(model: str, seq_len: int, inputs: int):
    """A closure that trains one run one step, and the run's parameters."""
    torch.manual_seed(0)
    net = Net(models.build(model, inputs, HIDDEN), 1)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-4)
    generator = torch.Generator().manual_seed(1)
    x, y = torch.randn(BATCH, seq_len, inputs, generator=generator), torch.randn(BATCH, generator=generator)

    def step():
        optimizer.zero_grad()
        loss = ((net(x)[:, -1, 0] - y) ** 2).mean()
        loss.backward()
        optimizer.step()

    return step, list(net.parameters())


def compare(model: str, seq_len: int, inputs: int, repeats: int) -> dict:
    steps, parameters, seconds = {}, {}, {}
    for name in ("project_input", "F.linear"):
        with projection(name):
            steps[name], parameters[name] = training_step(model, seq_len, inputs)
            steps[name]()  # warm-up
        seconds[name] = []
    for _ in range(repeats):
        for name in steps:
            with projection(name):
                started = time.perf_counter()
                steps[name]()
                seconds[name].append(time.perf_counter() - started)
    per_step = {name: statistics.median(values) / seq_len * 1e6 for name, values in seconds.items()}
    same = all(torch.equal(a, b) for a, b in zip(parameters["project_input"], parameters["F.linear"]))
    return {"model": model, "seq_len": seq_len, "input_size": inputs,
            "us_per_time_step_project_input": round(per_step["project_input"], 2),
            "us_per_time_step_f_linear": round(per_step["F.linear"], 2),
            "speedup": round(per_step["F.linear"] / per_step["project_input"], 3),
            "same_bits_after_steps": same}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python benchmarks/input_projection.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["vanilla", "lru", "cornn", "antisymmetric", "exprnn"])
    parser.add_argument("--lengths", nargs="+", type=int, default=[200, 1000, 2295])
    parser.add_argument("--inputs", nargs="+", type=int, default=[2, 10],
                        help="input widths (adding 2, temporal_order 8, copy 10)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("results/bench/input_projection.csv"))
    args = parser.parse_args(argv)
    training_numerics(1)  # as the training jobs compute
    rows = []
    for model in args.models:
        for seq_len in args.lengths:
            for inputs in args.inputs:
                row = compare(model, seq_len, inputs, args.repeats)
                rows.append(row)
                print(f"{model:>13} T={seq_len:<5} input {inputs:>2}: project_input "
                      f"{row['us_per_time_step_project_input']:7.1f} µs per time step, F.linear "
                      f"{row['us_per_time_step_f_linear']:7.1f}: {row['speedup']:.2f}x; same bits after "
                      f"{args.repeats + 1} steps: {'yes' if row['same_bits_after_steps'] else 'no'}", flush=True)
    frame = pd.DataFrame(rows).assign(
        code_version=code_version(), machine=platform.processor() or platform.machine(), torch=torch.__version__,
        measured_at=datetime.now(timezone.utc).isoformat(timespec="seconds"))
    append_csv(args.out, frame)
    print(f"appended {len(frame)} rows to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
