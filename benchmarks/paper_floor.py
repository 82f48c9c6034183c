"""How cheap could the paper grid be on this CPU? A lower bound from the matrix products alone.

    python benchmarks/paper_floor.py            # after `python -m gapbench cost config/paper.yaml`

For each model, a training step at hidden size H and batch B must do, per time step, at
least the recurrent matrix products of its equations, forward and backward (multiples of
u = 2·B·H² floating-point operations: h W_h forward, δ W_hᵀ for the gradient carried back,
δᵀ h for ∂L/∂W_h when W_h is trained). The floor of a model is that work at this core's
measured matrix-product rate, with every elementwise operation (φ, gates, the loss, Adam)
taken as free; the paper grid's floor is that time for every time step each job trains
(runs × steps × T), with evaluations, probes and start-up taken as free too. (Before 9569d41
it scaled each job's estimate by floor / measured at short T; since the calibration measures
the long lengths, whose steps grow faster than T, that scaling carried their growth into the
floor.) It is a bound no implementation on this core can beat for the same arithmetic, not a
target.
"""
from __future__ import annotations

import time

import numpy as np
import pandas as pd
import torch

from gapbench.config import load_config
from gapbench.files import read_csv
from gapbench.reports import cost

# recurrent matrix products per time step of a training step, in units of u = 2·B·H²
RECURRENT_PRODUCTS = {
    "vanilla": 3, "linear": 3, "orthogonal": 3, "irnn": 3, "antisymmetric": 3, "exprnn": 3,
    "indrnn": 3,  # diag(u) runs as a dense W_h through the engine: 3 dense products
    "identity": 2,  # W_h = I is not trained: no δᵀh
    "esn": 1,  # only the readout is trained: the reservoir runs forward only
    "cornn": 6,  # two H×H matrices (W y and 𝒲 z)
    "gru": 9,  # three H×H blocks (r, z, n)
    "lstm": 12,  # four H×H blocks (i, f, g, o)
    "lru": 0,  # a diagonal (complex) recurrence: elementwise only
}


def gemm_rate(batch: int, hidden: int, repeats: int = 2000) -> float:
    """FLOP/s of the recurrent product h W_h (batch × H by H × H) on one thread."""
    torch.set_num_threads(1)
    h, w, out = torch.randn(batch, hidden), torch.randn(hidden, hidden), torch.randn(batch, hidden)
    for _ in range(100):
        out.addmm_(h, w)
    started = time.perf_counter()
    for _ in range(repeats):
        out.addmm_(h, w)
    return 2 * batch * hidden * hidden * repeats / (time.perf_counter() - started)


def floor_table(config: dict, calibration: pd.DataFrame, unit_seconds: float) -> pd.DataFrame:
    """Per model: the calibration's time per time step (its line through T = 50 and 200), the
    floor's (products × unit_seconds), the grid's estimated core-hours and its floor: that time
    for every time step the model's jobs train, runs × steps × T (random_guess, which trains
    no recurrence, at its estimate)."""
    hidden = config["hidden_size"]
    estimated = cost.estimate(config, calibration)
    rows = []
    for model, jobs in estimated.groupby("model_name"):
        # the slope of the cost command's own step(T) on short sequences (its line through T = 50 and 200)
        per_time_step = float(np.diff(cost.interpolated(calibration, model, hidden, "step_seconds", [0, 1]))[0])
        products = RECURRENT_PRODUCTS.get(model)  # None: not a gradient-trained recurrence (random_guess)
        ratio = 1.0 if products is None else min(1.0, products * unit_seconds / per_time_step)
        hours = jobs.seconds.sum() / 3600
        time_steps = (jobs.seeds * len(config["clip"]["arms"]) * config["train"]["steps"] * jobs.seq_len).sum()
        floor_hours = hours if products is None else time_steps * products * unit_seconds / 3600
        rows.append({"model": model, "measured ms per time step": 1e3 * per_time_step,
                     "products (u)": products, "floor ms per time step": None if products is None else
                     1e3 * products * unit_seconds, "floor / measured": ratio,
                     "core-hours": hours, "floor core-hours": floor_hours})
    return pd.DataFrame(rows).sort_values("core-hours", ascending=False)


def read_calibration(config: dict, path=cost.CALIBRATION) -> pd.DataFrame:
    """The cost command's CPU calibration, or a SystemExit naming the file and the command that
    writes it where it is missing or lacks one of the config's lengths."""
    if not path.exists():
        raise SystemExit(f"paper_floor.py: {path} does not exist; run `python -m gapbench cost "
                         "config/paper.yaml` first (it measures the calibration this floor is set against)")
    calibration = read_csv(path)
    if cost.missing_lengths(config, calibration, "cpu"):
        raise SystemExit(f"paper_floor.py: {path} lacks lengths config/paper.yaml needs; run `python -m "
                         "gapbench cost config/paper.yaml` first (it measures only what is missing)")
    return calibration


def main() -> None:
    config = load_config("config/paper.yaml")
    hidden, batch = config["hidden_size"], config["train"]["batch_size"]
    rate = max(gemm_rate(batch, hidden) for _ in range(3))
    unit_seconds = 2 * batch * hidden * hidden / rate
    table = floor_table(config, read_calibration(config), unit_seconds)
    print(f"h W_h at B = {batch}, H = {hidden}, one thread: {rate / 1e9:.0f} GFLOP/s "
          f"(u = {1e6 * unit_seconds:.1f} µs)")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    total, floor = table["core-hours"].sum(), table["floor core-hours"].sum()
    print(f"paper grid: {total:,.0f} core-hours estimated; floor {floor:,.0f} core-hours "
          f"({total / floor:.2f}× below the estimate; a 3× cut needs ≤ {total / 3:,.0f})")


if __name__ == "__main__":
    main()
