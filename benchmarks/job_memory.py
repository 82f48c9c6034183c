"""The peak memory of a training job, model by model, at one (task, gap) of a grid: what a
cluster job must ask for (the train rule's `mem_mb`).

    python benchmarks/job_memory.py                      # the paper grid's longest sequences
    python benchmarks/job_memory.py --config config/paper.yaml --task copy_poisson --gap 2000 \
        --models gru lstm --seeds 1 --arms none --steps 2 --jobs 2 --out results/bench/job_memory.csv

Each model's job is `python -m gapbench train` as the workflow runs it (the config's model
options, hidden size, batch, probe batch and clip thresholds, gapbench.spec.RunSpec.from_config),
with its training cut to --steps steps (a step's memory does not grow with the number of
steps) and small splits (--sizes: a split is read batch by batch and scored
gapbench.train.evaluation_batch sequences a pass, so its size does not change the peak as long
as it holds one pass). The peak is the job process's maximum resident set size (wait4's
ru_maxrss), which covers the training, the evaluations and the probes. --jobs jobs run at once
(memory is per process; the time is not what is measured here). Rows: model, T, peak MB,
seconds, to --out (CSV).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gapbench import data, tasks  # noqa: E402
from gapbench.config import load_config, model_label, task_entry  # noqa: E402
from gapbench.provenance import provenance  # noqa: E402
from gapbench.spec import RunSpec  # noqa: E402


def run_job(specs: list[RunSpec], data_dirs: list[Path], arms: list[str], folder: Path) -> tuple[int, float, str]:
    """One job in a child process, every seed and clip arm of it in one process as the workflow
    runs it (workflow/rules/common.smk's train_arguments): its peak resident memory (MB),
    seconds, and the tail of its log where it failed."""
    command = [sys.executable, "-m", "gapbench", "train"]
    for spec, data_dir in zip(specs, data_dirs):
        command += ["--spec", spec.to_json(), "--data", str(data_dir)]
        command += [word for arm in arms for word in ("--run", f"{arm}={folder / f'seed{spec.seed}' / arm}")]
    started = time.perf_counter()
    with open(folder / "job.log", "w") as log:
        child = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
        _, status, usage = os.wait4(child.pid, 0)  # the child's own rusage: ru_maxrss in KB on Linux
    seconds = time.perf_counter() - started
    failure = "" if os.waitstatus_to_exitcode(status) == 0 else (folder / "job.log").read_text()[-2000:]
    return usage.ru_maxrss // 1024, seconds, failure


def main() -> None:
    parser = argparse.ArgumentParser(usage=__doc__.split("\n\n")[1].strip(), description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=str(ROOT / "config" / "paper.yaml"))
    parser.add_argument("--task", default="copy_poisson", help="a task label of the config")
    parser.add_argument("--gap", type=int, default=2000)
    parser.add_argument("--models", nargs="*", help="model labels of the config (default: all)")
    parser.add_argument("--seeds", type=int, default=1, help="seeds per job (the config's first ones)")
    parser.add_argument("--arms", nargs="*", default=None, help="clip arms (default: the config's)")
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--sizes", type=int, nargs=3, default=(128, 512, 512), metavar=("TRAIN", "VALIDATION", "TEST"))
    parser.add_argument("--jobs", type=int, default=2, help="jobs at once")
    parser.add_argument("--out", default=str(ROOT / "results" / "bench" / "job_memory.csv"))
    args = parser.parse_args()

    config = load_config(args.config)
    config["train"].update(steps=args.steps, eval_every=args.steps, stop_when_solved=0)
    entry = task_entry(config, args.task)
    task = tasks.build(entry["name"], args.gap, **entry.get("params", {}))
    labels = args.models or [model_label(m) for m in config["models"]]
    arms = args.arms or list(config["clip"]["arms"])
    seeds = list(config["seeds"])[: args.seeds]
    sizes = dict(zip(("train", "validation", "test"), args.sizes))
    print(f"# job memory: {args.task} gap {args.gap} (T = {task.seq_len}), {len(seeds)} seed(s) x {arms}, "
          f"{args.steps} steps, sizes {sizes}; {provenance()['code_version']}, {os.uname().nodename}", flush=True)

    rows, lock = [], threading.Lock()
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        for seed in seeds:  # the datasets first, shared by every model's job
            data.generate(task, seed, sizes, scratch / "data" / f"seed{seed}")
        pending = list(labels)

        def worker() -> None:
            while True:
                with lock:
                    if not pending:
                        return
                    label = pending.pop(0)
                specs = [RunSpec.from_config(config, args.task, args.gap, label, seed) for seed in seeds]
                folder = scratch / "runs" / label
                folder.mkdir(parents=True)
                peak, seconds, failure = run_job(specs, [scratch / "data" / f"seed{seed}" for seed in seeds], arms, folder)
                with lock:
                    print(f"{label:14s} T={task.seq_len:5d} {len(seeds)} seed(s) x {len(arms)} arms: peak {peak:6d} MB "
                          f"in {seconds:6.1f} s" + (f"  FAILED:\n{failure}" if failure else ""), flush=True)
                    rows.append({"model": label, "task": args.task, "gap": args.gap, "seq_len": task.seq_len,
                                 "seeds": len(seeds), "arms": len(arms), "steps": args.steps, "peak_mb": peak,
                                 "seconds": round(seconds, 1), "failed": bool(failure)})

        threads = [threading.Thread(target=worker) for _ in range(max(1, args.jobs))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    table = pd.DataFrame(rows).sort_values("peak_mb", ascending=False)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out, index=False)
    print(table.to_string(index=False))
    print(f"largest peak: {table.peak_mb.max()} MB ({table.iloc[0].model}); rows in {args.out}")


if __name__ == "__main__":
    main()
