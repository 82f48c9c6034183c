"""Benchmark of the recurrence engine: `python benchmarks/engine.py`.

For each activation and sequence length T it times one forward+backward pass over
(batch, T, hidden) inputs, median of several repeats, side by side in one process:

- engine:     gapbench.engine.recurrence (what every gapbench model runs on)
- nn.RNN:     torch.nn.RNN with the same nonlinearity (tanh and relu only)
- autograd:   a plain autograd loop over a cell, as a user would write it:
              h = φ(W_in x_t + b + W_h h) for t = 1..T, outputs stacked (graph nodes per step)
- autograd-u: the same loop with the input projection hoisted out (one product for all
              steps), i.e. only the recurrence in autograd: a stricter baseline
- floor:      the matrix products of the pass alone (input projection, T recurrent products
              forward, T backward, the input and W_h gradient products), no elementwise work
- floor+φ:    the same plus the activation φ once per forward step (tanh and relu): a lower
              bound for any implementation built from torch's CPU kernels

and prints the ratios engine/nn.RNN, autograd/engine, engine/floor and the growth of the
engine's time from each T to the next.
Ratios, not absolute times, are the claims: this machine is shared and noisy. The rows
are appended to results/bench/engine.csv with the machine and versions.
"""
from __future__ import annotations

import argparse
import platform
import statistics
import time
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import torch
from torch.nn import functional as F

from gapbench.engine import ACTIVATIONS, recurrence, reference_recurrence
from gapbench.files import append_csv
from gapbench.provenance import code_version


def _median_seconds(cases: dict, repeats: int) -> dict[str, float]:
    """Median time of each case, timed round-robin (a burst of load hits every case alike)."""
    for fn in cases.values():
        fn()  # warm-up: allocator, lazy initialisation
    times = {name: [] for name in cases}
    for _ in range(repeats):
        for name, fn in cases.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def _cases(batch, steps, hidden, activation, generator):
    x = torch.randn(batch, steps, hidden, generator=generator)
    grad = torch.randn(batch, steps, hidden, generator=generator)
    weight_ih = (torch.randn(hidden, hidden, generator=generator) / hidden**0.5).requires_grad_()
    weight_hh = (torch.randn(hidden, hidden, generator=generator) / hidden**0.5).requires_grad_()
    bias = torch.zeros(hidden, requires_grad=True)

    def engine():
        output, _ = recurrence(F.linear(x, weight_ih, bias), weight_hh, None, activation)
        output.backward(grad)

    phi = {"tanh": torch.tanh, "relu": torch.relu, "linear": lambda a: a}[activation]

    def autograd_cell_loop():
        h, outputs = x.new_zeros(batch, hidden), []
        for t in range(steps):
            h = phi(F.linear(x[:, t], weight_ih, bias) + F.linear(h, weight_hh))
            outputs.append(h)
        torch.stack(outputs, 1).backward(grad)

    def autograd_projected_loop():
        output, _ = reference_recurrence(F.linear(x, weight_ih, bias), weight_hh, None, activation)
        output.backward(grad)

    cases = {"engine": engine, "autograd": autograd_cell_loop, "autograd-u": autograd_projected_loop}
    if activation in ("tanh", "relu"):
        rnn = torch.nn.RNN(hidden, hidden, nonlinearity=activation, batch_first=True)

        def torch_rnn():
            output, _ = rnn(x)
            output.backward(grad)

        cases["nn.RNN"] = torch_rnn

    w = weight_hh.detach()
    h = torch.randn(batch, hidden, generator=generator)
    u_steps = torch.randn(steps, batch, hidden, generator=generator)
    flat = x.reshape(-1, hidden)

    act = ACTIVATIONS[activation]

    def floor(with_activation=False):
        u = flat @ weight_ih.detach().t()
        for t in range(steps):  # forward recurrent products
            a = torch.addmm(u_steps[t], h, w.t())
            if with_activation:
                act.forward_(a)
        for t in range(steps):  # backward recurrent products
            torch.addmm(u_steps[t], h, w)
        flat.t() @ u  # ∂L/∂W_h
        u.t() @ flat  # ∂L/∂W_in
        u @ weight_ih.detach()  # ∂L/∂x

    cases["floor"] = floor
    if act.derivative_from_output is not None:
        # the products plus φ itself, once per step: no implementation can go below this
        cases["floor+φ"] = lambda: floor(with_activation=True)
    return cases


def run(batch, hidden, lengths, activations, repeats, autograd_max_steps, seed=0) -> pd.DataFrame:
    torch.set_flush_denormal(True)  # as in training: vanishing gradients hit subnormals
    generator = torch.Generator().manual_seed(seed)
    rows = []
    for activation in activations:
        for steps in lengths:
            cases = _cases(batch, steps, hidden, activation, generator)
            if steps > autograd_max_steps:
                cases = {name: fn for name, fn in cases.items() if not name.startswith("autograd")}
            for name, seconds in _median_seconds(cases, repeats).items():
                rows.append({"activation": activation, "T": steps, "implementation": name, "seconds": seconds})
                print(f"  {activation:6s} T={steps:5d} {name:9s} {seconds * 1e3:9.2f} ms", flush=True)
    return pd.DataFrame(rows)


def ratios(times: pd.DataFrame) -> pd.DataFrame:
    table = times.pivot_table(index=["activation", "T"], columns="implementation", values="seconds")
    out = pd.DataFrame(index=table.index)
    if "nn.RNN" in table:
        out["engine/nn.RNN"] = table["engine"] / table["nn.RNN"]
    for baseline in ("autograd", "autograd-u"):
        if baseline in table:
            out[f"{baseline}/engine"] = table[baseline] / table["engine"]
    out["engine/floor"] = table["engine"] / table["floor"]
    if "nn.RNN" in table and "floor+φ" in table:
        out["(floor+φ)/nn.RNN"] = table["floor+φ"] / table["nn.RNN"]  # the best engine/nn.RNN possible
    lengths = sorted(times["T"].unique())
    if len(lengths) >= 2:
        growth = table["engine"].unstack("T")
        out["engine T/T_prev"] = (growth / growth.shift(axis=1)).stack().reindex(out.index)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python benchmarks/engine.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--lengths", type=int, nargs="+", default=[100, 500, 2000])
    parser.add_argument("--activations", nargs="+", default=["tanh", "relu", "linear"])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--autograd-max-steps", type=int, default=500,
                        help="skip the (slow) autograd loop above this T")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--out", default="results/bench/engine.csv", help="CSV the rows are appended to")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"B={args.batch} H={args.hidden} threads={torch.get_num_threads()} torch {torch.__version__} "
          f"on {platform.processor() or platform.machine()}; median of {args.repeats}, forward+backward")
    times = run(args.batch, args.hidden, args.lengths, args.activations, args.repeats, args.autograd_max_steps)
    print("\nratios (engine/nn.RNN < 1 and engine/floor near 1 are good):")
    print(ratios(times).round(3).to_string())
    stamp = {
        "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "code_version": code_version(), "torch": torch.__version__, "threads": torch.get_num_threads(),
        "batch": args.batch, "hidden": args.hidden, "machine": platform.platform(), "repeats": args.repeats,
    }
    out = Path(args.out)
    append_csv(out, times.assign(**stamp))
    print(f"\nappended {len(times)} rows to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
