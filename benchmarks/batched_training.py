"""Per-run cost of a training step, each run alone against E runs trained together:
`python benchmarks/batched_training.py [--device cuda]`.

For each model, at the paper's size by default (H = 128, batch 64, T = 100 and 1000), it times
gapbench.train.train_runs over E runs (seeds × clip arms of one job: here E copies of one task
with the norm arm) against the same runs trained one after another (gapbench.train.train),
in one process, alternating, best of --repeats, and prints the per-run seconds of a step and
the ratio alone / batched (above 1: batching is the faster). A step is what training does:
forward, loss, backward of the summed losses, per-run clipping and optimiser update; one
validation pass per timing is included in both. Rows are appended to --out (CSV) with the
machine and commit.
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
from gapbench.files import write_csv
from gapbench.provenance import code_version
from gapbench.spec import TrainConfig
from gapbench.train import RunSetup, train, train_runs


def _nets(model: str, task, hidden: int, runs: int, device) -> list:
    nets = []
    for seed in range(runs):
        torch.manual_seed(seed)
        nets.append(models.Net(models.build(model, task.input_size, hidden), task.output_size).to(device))
    return nets


def time_model(model: str, hidden: int, batch: int, seq_len: int, runs: int, steps: int, repeats: int,
               device: str) -> dict:
    task = tasks.build("adding", seq_len)
    config = TrainConfig(steps=steps, batch_size=batch, optimizer="adam", lr=1e-3, eval_every=steps,
                         probe_batch=batch)
    quiet = lambda message: None  # noqa: E731
    with tempfile.TemporaryDirectory() as folder:
        data.generate(task, 0, {"train": batch * steps, "validation": batch, "test": batch}, folder)

        def batched():
            nets = _nets(model, task, hidden, runs, device)
            train_runs([RunSetup(net, "norm", 1.0, folder) for net in nets], task, config, device, quiet)

        def alone():
            for net in _nets(model, task, hidden, runs, device):
                train(net, task, folder, "norm", 1.0, config, device, quiet)

        best = {"batched": float("inf"), "alone": float("inf")}
        for _ in range(repeats + 1):  # the first round warms up (allocator, first calls)
            for name, function in (("batched", batched), ("alone", alone)):
                if device == "cuda":
                    torch.cuda.synchronize()
                started = time.perf_counter()
                function()
                if device == "cuda":
                    torch.cuda.synchronize()
                best[name] = min(best[name], time.perf_counter() - started) if _ else best[name]
    per_step = {name: seconds / (runs * steps) for name, seconds in best.items()}
    return {"model": model, "hidden_size": hidden, "batch": batch, "seq_len": seq_len, "runs": runs,
            "steps": steps, "device": device, "alone_seconds_per_run_step": per_step["alone"],
            "batched_seconds_per_run_step": per_step["batched"], "speedup": per_step["alone"] / per_step["batched"]}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python benchmarks/batched_training.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=None, help="default: every registered model")
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--lengths", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--runs", type=int, nargs="+", default=[4, 15], help="E: runs trained together")
    parser.add_argument("--steps", type=int, default=3, help="training steps per timing")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=Path("results/bench/batched_training.csv"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)  # as the training jobs run
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
                print(f"{model:14s} T={seq_len:5d} E={runs:3d}: alone {row['alone_seconds_per_run_step'] * 1e3:8.2f} ms, "
                      f"batched {row['batched_seconds_per_run_step'] * 1e3:8.2f} ms per run-step, "
                      f"alone/batched {row['speedup']:.2f}", flush=True)
    table = pd.DataFrame(rows)
    if args.out.exists():
        table = pd.concat([pd.read_csv(args.out), table], ignore_index=True)
    write_csv(args.out, table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
