"""A training step on the CPU with glibc's default allocation against freed memory kept for reuse
(`MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=2147483647` in the environment, an opt-in that
docs/performance.md describes) and against freed memory returned (`MALLOC_MMAP_THRESHOLD_=1048576`:
every block over 1 MiB its own mapping, unmapped when freed, the setting that lowered a five-seed
job's sampled peak in docs/performance.md): `python benchmarks/cpu_allocator.py`.

By default glibc serves every block over 32 MiB with its own mmap and unmaps it when freed, so
each training step the kernel maps and zeroes the same large buffers again (the LSTM's gates
over all time steps are 131 MB at H = 128, batch 64, T = 1000). With mmap off and a high trim
threshold the blocks come from the heap and stay: less system time, more resident memory. With
the threshold fixed at 1 MiB glibc never raises it, so more blocks are mapped afresh each step:
more system time, usually less resident memory.

Each timing is a fresh process (an allocator setting holds for a whole process) that trains a job's
runs (gapbench.reports.cost.TimedTraining, the set-up `gapbench cost` times: E runs of one model on
the adding task with the norm arm trained by gapbench.graphed.train_job, run by run on the CPU, at
its learning rate) for --steps steps. The task stamps the time of every training loss; a step of all
E runs is the time from one step's first loss to the next's, and a run's step is the median of those
after the first --warmup steps, over E (with freed memory kept the heap grows for about the first 12
steps of a run at T = 1000, then stays: a long training's steps are those after it; the first steps'
total is reported apart). The child also reports the system CPU time of its training (the kernel
mapping and zeroing pages) and its peak resident memory. The settings alternate, best of --repeats
for each; the script prints per-run milliseconds of a step, the ratios default / kept and default /
returned (above 1: the setting is faster than the default) and appends its rows to --out.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from gapbench.files import append_csv

SETTINGS = ("default", "kept", "returned")

CHILD = r"""
import json, resource, statistics, sys, time
import torch
from gapbench import tasks
from gapbench.reports.cost import TimedTraining

model, hidden, batch, seq_len, runs, steps, warmup = json.loads(sys.argv[1])
torch.set_num_threads(1)
torch.set_flush_denormal(True)  # as a training job runs
stamps = []  # when a training step's loss was computed (evaluations run without gradients)


class Stamped(type(tasks.build("adding", seq_len))):
    def loss(self, prediction, target):
        if torch.is_grad_enabled():
            stamps.append(time.perf_counter())
        return super().loss(prediction, target)


with TimedTraining(model, hidden, seq_len, batch, steps, probe_batch=batch, task=Stamped(seq_len)) as timing:
    system = resource.getrusage(resource.RUSAGE_SELF).ru_stime
    timing.train(steps, runs)
    system = resource.getrusage(resource.RUSAGE_SELF).ru_stime - system
# a step of all runs: from one step's first loss to the next step's first loss
starts = stamps[::runs]
intervals = [b - a for a, b in zip(starts, starts[1:])]
print(json.dumps({"step_seconds": statistics.median(intervals[warmup:]) / runs,
                  "first_steps_seconds": sum(intervals[:warmup]) / runs,
                  "system_share": system / (starts[-1] - starts[0]),
                  "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


# read by glibc as a process starts
ENVIRONMENTS = {"default": {}, "kept": {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": str(2**31 - 1)},
                "returned": {"MALLOC_MMAP_THRESHOLD_": str(2**20)}}


def child(model: str, hidden: int, batch: int, seq_len: int, runs: int, steps: int, warmup: int,
          setting: str) -> dict:
    argument = json.dumps([model, hidden, batch, seq_len, runs, steps, warmup])
    environment = {key: value for key, value in os.environ.items() if not key.startswith("MALLOC_")}
    done = subprocess.run([sys.executable, "-c", CHILD, argument], capture_output=True, text=True,
                          env={**environment, **ENVIRONMENTS[setting]})
    if done.returncode:
        raise SystemExit(f"the timing of {model} at T = {seq_len} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python benchmarks/cpu_allocator.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["vanilla", "lstm", "gru", "lru"])
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--lengths", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--runs", type=int, default=2, help="E: a job's runs (run by run on the CPU)")
    parser.add_argument("--steps", type=int, default=18, help="steps of each training")
    parser.add_argument("--warmup", type=int, default=12, help="first steps left out of the median")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("results/bench/cpu_allocator.csv"))
    args = parser.parse_args(argv)
    if args.steps < args.warmup + 2:  # a step's time is between two steps' losses, after the warm-up
        parser.error(f"--steps {args.steps} leaves no timed step after --warmup {args.warmup}: "
                     f"use --steps {args.warmup + 2} or more")
    if platform.libc_ver()[0] != "glibc":
        raise SystemExit("the setting compared here is glibc's; this C library is " + (platform.libc_ver()[0] or "unknown"))
    # either would set all three children's allocation alike, and none would be glibc's default
    if "malloc" in os.environ.get("GLIBC_TUNABLES", "") or os.environ.get("LD_PRELOAD"):
        raise SystemExit("unset GLIBC_TUNABLES' glibc.malloc entries and LD_PRELOAD (another allocator?) first: "
                         f"GLIBC_TUNABLES={os.environ.get('GLIBC_TUNABLES', '')!r} "
                         f"LD_PRELOAD={os.environ.get('LD_PRELOAD', '')!r}")
    from gapbench.provenance import code_version

    stamp = {"when": datetime.now(timezone.utc).isoformat(timespec="seconds"), "code_version": code_version(),
             "machine": f"{platform.processor() or platform.machine()}; {platform.libc_ver()}; 1 thread"}
    rows = []
    for model in args.models:
        for seq_len in args.lengths:
            best = {setting: None for setting in SETTINGS}
            for _ in range(args.repeats):
                for setting in SETTINGS:  # alternating: both see the same load
                    timed = child(model, args.hidden, args.batch, seq_len, args.runs, args.steps, args.warmup,
                                  setting)
                    if best[setting] is None or timed["step_seconds"] < best[setting]["step_seconds"]:
                        best[setting] = timed
            row = {"model": model, "hidden_size": args.hidden, "batch": args.batch, "seq_len": seq_len,
                   "runs": args.runs, "steps": args.steps, "warmup": args.warmup, "repeats": args.repeats,
                   **{f"{setting}_{key}": best[setting][key] for setting in SETTINGS for key in best[setting]},
                   "speedup": best["default"]["step_seconds"] / best["kept"]["step_seconds"],
                   "speedup_returned": best["default"]["step_seconds"] / best["returned"]["step_seconds"], **stamp}
            rows.append(row)
            print(f"{model:10s} T={seq_len:5d}: ms per run-step: default {row['default_step_seconds'] * 1e3:8.2f} "
                  f"(system {row['default_system_share']:.0%}, peak {row['default_max_rss_mb']:.0f} MB), kept "
                  f"{row['kept_step_seconds'] * 1e3:8.2f} (system {row['kept_system_share']:.0%}, peak "
                  f"{row['kept_max_rss_mb']:.0f} MB), returned {row['returned_step_seconds'] * 1e3:8.2f} (system "
                  f"{row['returned_system_share']:.0%}, peak {row['returned_max_rss_mb']:.0f} MB); default/kept "
                  f"{row['speedup']:.2f}, default/returned {row['speedup_returned']:.2f}", flush=True)
    append_csv(args.out, pd.DataFrame(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
