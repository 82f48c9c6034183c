"""Per-run cost of a training step, each run alone against E runs trained together, and (on a
GPU) against the same E runs with the step captured as a CUDA graph:
`python benchmarks/batched_training.py [--device cuda]`.

For each model, at the paper's size by default (H = 128, batch 64, T = 100 and 1000), three arms
train E runs (seeds × clip arms of one job: here E copies of one task with the norm arm):

- alone: one run after another, each by gapbench.train.train (the single-run path);
- batched: gapbench.train.train_runs over the E runs (the host loop: one batched computation
  where `shares_computation` says so, that is off the CPU; per-run reads of loss, norm and flags
  every step). On the CPU it trains run by run, so there it measures the host loop's overhead
  over `train`;
- device: gapbench.graphed.train_on_device over the E runs, captured as a CUDA graph on a GPU
  (train.cuda_graph), uncaptured on the CPU, where it is the batched computation (one batched
  recurrence for the elementwise models) that train_runs no longer uses there.

A step's cost is the difference of a training 2·steps long and one `steps` long, over the
steps and runs: what a training costs once (optimisers, a graph's eager warm-up and capture,
evaluation) drops out. Arms alternate in one process, best of --repeats after a warm-up round;
the script prints the per-run milliseconds of a step and the ratios alone / batched and
alone / device (above 1: the arm is faster than training alone). Rows are appended to --out
(CSV) with the machine and commit.
"""
from __future__ import annotations

import argparse
import platform
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import torch

from gapbench import data, models, tasks
from gapbench.files import append_csv
from gapbench.graphed import train_on_device
from gapbench.job import training_numerics
from gapbench.provenance import code_version
from gapbench.spec import TrainConfig
from gapbench.train import RunSetup, train, train_runs

ARMS = ("alone", "batched", "device")


def _nets(model: str, task, hidden: int, runs: int, device) -> list:
    nets = []
    for seed in range(runs):
        torch.manual_seed(seed)
        nets.append(models.Net(models.build(model, task.input_size, hidden), task.output_size).to(device))
    return nets


def time_model(model: str, hidden: int, batch: int, seq_len: int, runs: int, steps: int, repeats: int,
               device: str) -> dict:
    task = tasks.build("adding", seq_len)
    quiet = lambda message: None  # noqa: E731
    finished = lambda index, training: None  # noqa: E731
    on_gpu = device == "cuda"

    def config(length: int) -> TrainConfig:
        return TrainConfig(steps=length, batch_size=batch, optimizer="adam", lr=1e-3, eval_every=length,
                           probe_batch=batch, device=device, cuda_graph=on_gpu)

    with tempfile.TemporaryDirectory() as folder:
        data.generate(task, 0, {"train": batch * steps, "validation": batch, "test": batch}, folder)

        def alone(length):
            net = _nets(model, task, hidden, 1, device)[0]  # one run: its per-run cost is the same for each
            train(net, task, folder, "norm", 1.0, config(length), device, quiet)
            return 1

        def batched(length):
            nets = _nets(model, task, hidden, runs, device)
            train_runs([RunSetup(net, "norm", 1.0, folder) for net in nets], task, config(length), device, quiet)
            return runs

        fallbacks = []  # a capture that failed (gapbench.graphed trains on uncaptured and says so)

        def on_device(length):
            nets = _nets(model, task, hidden, runs, device)
            train_on_device([RunSetup(net, "norm", 1.0, folder) for net in nets], task, config(length), device,
                            lambda message: fallbacks.append(message) if message.startswith("[graph]") else None,
                            finished, capture=on_gpu)
            return runs

        def seconds(function, length) -> tuple[float, int]:
            if on_gpu:
                torch.cuda.synchronize()
            started = time.perf_counter()
            trained = function(length)
            if on_gpu:
                torch.cuda.synchronize()
            return time.perf_counter() - started, trained

        best = dict.fromkeys(ARMS, float("inf"))
        for round_ in range(repeats + 1):  # the first round warms up (allocator, first calls, kernels)
            for name, function in zip(ARMS, (alone, batched, on_device)):
                short, trained = seconds(function, steps)
                long, _ = seconds(function, 2 * steps)
                if round_:
                    best[name] = min(best[name], (long - short) / (steps * trained))
    return {"model": model, "hidden_size": hidden, "batch": batch, "seq_len": seq_len, "runs": runs,
            "steps": steps, "device": device, "captured": on_gpu and not fallbacks,
            **{f"{name}_seconds_per_run_step": best[name] for name in ARMS},
            "speedup": best["alone"] / best["batched"], "speedup_device": best["alone"] / best["device"]}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python benchmarks/batched_training.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=None, help="default: every registered model")
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--lengths", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--runs", type=int, nargs="+", default=[4, 15], help="E: runs trained together")
    parser.add_argument("--steps", type=int, default=5, help="a timing is a training of 2·steps minus one of steps")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=Path("results/bench/batched_training.csv"))
    args = parser.parse_args(argv)
    training_numerics(args.threads)  # as the training jobs compute (float32, not TF32, on a GPU)
    rows = []
    stamp = {"when": datetime.now(timezone.utc).isoformat(timespec="seconds"), "code_version": code_version(),
             "machine": f"{platform.processor() or platform.machine()}; torch {torch.__version__}; "
                        f"{torch.cuda.get_device_name() if args.device == 'cuda' else f'{args.threads} thread(s)'}"}
    for model in args.models or models.names():
        if models.build(model, 1, 2).trained_by != "gradient":
            continue  # random guessing takes no training step
        for seq_len in args.lengths:
            for runs in args.runs:
                row = time_model(model, args.hidden, args.batch, seq_len, runs, args.steps, args.repeats, args.device)
                rows.append({**row, **stamp})
                print(f"{model:14s} T={seq_len:5d} E={runs:3d}: ms per run-step: alone "
                      f"{row['alone_seconds_per_run_step'] * 1e3:8.2f}, batched {row['batched_seconds_per_run_step'] * 1e3:8.2f}, "
                      f"{'captured' if row['captured'] else 'device'} {row['device_seconds_per_run_step'] * 1e3:8.2f}; "
                      f"alone/batched {row['speedup']:.2f}, alone/{'captured' if row['captured'] else 'device'} "
                      f"{row['speedup_device']:.2f}", flush=True)
    append_csv(args.out, pd.DataFrame(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
