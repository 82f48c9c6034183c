"""Where a CPU training step's time goes as the sequences grow: `python benchmarks/step_profile.py
[--models vanilla lru] [--lengths 200 1000 2295] [--out TXT]`.

A training step takes more than T times as long at T = 2295 as at T = 50 on these CPUs
(`benchmarks/step_curve.py`). Here each model (H = 128, batch 64, on the adding task) trains as
`gapbench cost` times it (cost.TimedTraining, measure_model's set-up: gapbench.graphed.train_job, 4
runs together, lr cost.TIMING_LR, one thread, subnormals flushed; its nets built inside the timing,
a few milliseconds, and its one validation pass included, as the calibration times it): one warm-up
training, one timed with the process's system CPU time and minor page faults (getrusage), then one
run of it alone under torch.profiler (the runs of a CPU job train one after another; the profiler
keeps every operator call, gigabytes for 4 runs at T = 2295); likewise a forward pass over 64
sequences (the calibration times it at the evaluation batch, which varies with T beyond 256; here
one batch, so that lengths compare). It prints, per run-step (or pass) and per time step, the
profiler's self CPU time of each operator with its input shapes, the largest first, side by side for
every length: what stays flat per time step (the loop over time) and what grows (the passes over
whole (T, batch, hidden) tensors). The profile of one run need not match the 4-run wall time (the
kernel's page mapping lands on whichever operator allocates; lru's did not, measured at b577d27):
compare its total with the wall time on the line above it.
"""
from __future__ import annotations

import argparse
import re
import resource
import sys
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from gapbench.job import flushed_subnormals
from gapbench.reports.cost import RUNS, TIMING_BATCH, TimedTraining

STEPS = 10


def symbolic(shapes: str, seq_len: int) -> str:
    """Input shapes with the sequence length written as T, so that one operator is one row across
    lengths: [[64, 2295, 128]] → [[64, T, 128]], 146880 → T·64 (`main` refuses lengths that
    would rename another size)."""
    names = {seq_len: "T", seq_len + 1: "T+1", seq_len * TIMING_BATCH: "T·64"}
    return re.sub(r"\d+", lambda number: names.get(int(number.group()), number.group()), shapes)


def timed(function, profiled_function, seq_len: int) -> dict:
    """Wall seconds, system CPU share and minor page faults of one call (after a warm-up call),
    then the profile of `profiled_function`."""
    function()  # warm-up
    before, started = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    function()
    seconds, after = time.perf_counter() - started, resource.getrusage(resource.RUSAGE_SELF)
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as profiled:
        profiled_function()
    ops = {}
    for event in profiled.key_averages(group_by_input_shape=True):
        key = (event.key, symbolic(str(event.input_shapes), seq_len))
        total, count = ops.get(key, (0.0, 0))
        ops[key] = (total + event.self_cpu_time_total, count + event.count)
    return {"seconds": seconds, "system": (after.ru_stime - before.ru_stime) / seconds,
            "faults": after.ru_minflt - before.ru_minflt, "ops": ops}


def measure(model: str, hidden: int, seq_len: int) -> dict[str, dict]:
    with TimedTraining(model, hidden, seq_len, TIMING_BATCH, STEPS) as timing:  # measure_model's set-up
        net = timing.nets(1)[0]
        x, _ = timing.first_batch("validation", TIMING_BATCH)  # one batch at every length, so that they compare

        def forward():
            with torch.no_grad():
                net(x)

        step = timed(lambda: timing.train(STEPS, RUNS), lambda: timing.train(STEPS, 1), seq_len)
        return {"step": {**step, "per": STEPS * RUNS, "profiled_per": STEPS},
                "forward": {**timed(forward, forward, seq_len), "per": 1, "profiled_per": 1}}


def report(model: str, kind: str, measured: dict[int, dict], lengths: list[int]) -> list[str]:
    """One table: microseconds per time step of a run-step (or a pass), operator by operator."""
    unit = {T: measured[T][kind]["profiled_per"] * T / 1e6 for T in lengths}  # profiler microseconds → per time step
    wall = {T: measured[T][kind]["per"] * T / 1e6 for T in lengths}
    what = "per run-step: the wall time of 4 runs trained together, the profile of 1 run" if kind == "step" else \
        "one pass, 64 sequences"
    lines = [f"{model}, {kind} ({what})"]
    lines.append("  wall, us per time step: " + "  ".join(
        f"T={T}: {measured[T][kind]['seconds'] / wall[T]:.1f} (system CPU {measured[T][kind]['system']:.0%}, "
        f"{measured[T][kind]['faults'] / measured[T][kind]['per']:.0f} page faults)" for T in lengths))
    keys = {key for T in lengths for key in measured[T][kind]["ops"]}
    longest = lengths[-1]

    def share(key, T):
        return measured[T][kind]["ops"].get(key, (0.0, 0))[0] / 1e6 / unit[T]

    total = {T: sum(share(key, T) for key in keys) for T in lengths}
    lines.append(f"  {'profiled total':<60}" + "".join(f"{total[T]:>10.2f}" for T in lengths))
    for key in sorted(keys, key=lambda key: -share(key, longest))[:10]:
        calls = measured[longest][kind]["ops"].get(key, (0, 0))[1] / measured[longest][kind]["profiled_per"]
        label = f"{key[0]} {key[1]}"[:50] + f" ×{calls:.0f}"
        lines.append(f"  {label:<60}" + "".join(f"{share(key, T):>10.2f}" for T in lengths))
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python benchmarks/step_profile.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["vanilla", "lru"])
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--lengths", nargs="+", type=int, default=[200, 1000, 2295])
    parser.add_argument("--out", type=Path, help="also write the tables here")
    args = parser.parse_args(argv)
    sizes = {1, 2, TIMING_BATCH, args.hidden, args.hidden // 2, 32}  # the adding task's, the runs', the LRU's
    clashing = [T for T in args.lengths if {T, T + 1, T * TIMING_BATCH} & sizes]
    if clashing:
        parser.error(f"--lengths {clashing}: T, T + 1 or 64·T equals another size of the step {sorted(sizes)}, "
                     "so the rows would mix operators; choose other lengths")
    torch.set_num_threads(1)
    lines = [f"self CPU time, microseconds per time step; columns T = {args.lengths}; ×N: the operator's calls at "
             f"T = {args.lengths[-1]}, per run-step or pass"]
    with flushed_subnormals():
        for model in args.models:
            measured = {}
            for T in args.lengths:
                measured[T] = measure(model, args.hidden, T)
                print(f"{model} T={T}: {measured[T]['step']['seconds'] / measured[T]['step']['per'] * 1e3:.1f} ms "
                      "a run-step", file=sys.stderr, flush=True)
            for kind in ("step", "forward"):
                lines += report(model, kind, measured, args.lengths)
    print("\n".join(lines))
    if args.out:
        args.out.write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
