"""What early stopping would change in a grid trained without it:
`python -m gapbench.reports.stopping RUNS_FOLDER [--patience 1 2 3]`.

Replays every run's validation history (history.csv, written at every evaluation) under the
rule of gapbench.train.train (its `SolvedStreak`, the same code) — stop once the validation
split meets the task's success criterion at K evaluations in a row — and prints, for each K,
how many runs would stop, the training steps saved, and the runs the rule would get wrong: a
run stopped as solved whose validation was no longer solved at the end of full training, or
whose test result at the end was not a success. A K with no wrong stops on a representative grid is a safe default
(docs/performance.md records the measurement behind train.stop_when_solved).
Only runs trained without stopping (stop_when_solved = 0, or never stopped) replay fully.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

from gapbench import tasks
from gapbench.files import read_csv
from gapbench.results import COMPLETE_MARKER, HISTORY_FILE
from gapbench.train import SolvedStreak


def replay(runs_dir, patience: list[int]) -> pd.DataFrame:
    """One row per run and K: steps trained, the stop step (None: no stop) and its verdicts."""
    rows = []
    for metrics_path in sorted(Path(runs_dir).glob(f"**/{COMPLETE_MARKER}")):
        metrics = json.loads(metrics_path.read_text())
        if metrics.get("stopped_early"):
            continue  # its history ends at its stop: nothing to replay
        task = tasks.build(metrics["task_name"], metrics["gap"], **metrics["task_params"])
        history = read_csv(metrics_path.parent / HISTORY_FILE)
        solved = [task.success(loss, score) for loss, score in zip(history.val_loss, history.val_score)]
        for k in patience:
            streak = SolvedStreak(k, metrics["train_steps"])
            stop = next((int(step) for step, ok in zip(history.step, solved) if streak.record(int(step), ok)), None)
            rows.append({"task": metrics["task"], "model": metrics["model"], "clip": metrics["clip"],
                         "gap": metrics["gap"], "seed": metrics["seed"], "patience": k,
                         "trained_steps": metrics["train_steps"], "stop_step": stop,
                         "solved_at_end": bool(solved[-1]) if solved else False,
                         "test_success_at_end": bool(metrics["success"])})
    return pd.DataFrame(rows)


def summarise(replayed: pd.DataFrame) -> pd.DataFrame:
    """Per K: runs, stopped runs, share of training steps saved, and wrong stops."""
    out = []
    for k, rows in replayed.groupby("patience"):
        stopped = rows[rows.stop_step.notna()]
        saved = (stopped.trained_steps - stopped.stop_step).sum()
        out.append({"patience": k, "runs": len(rows), "stopped": len(stopped),
                    "steps_saved_fraction": saved / rows.trained_steps.sum(),
                    "stopped_but_unsolved_at_end": int((~stopped.solved_at_end).sum()),
                    "stopped_but_test_failure_at_end": int((~stopped.test_success_at_end).sum())})
    return pd.DataFrame(out)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gapbench.reports.stopping", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", type=Path, help="a results/runs folder of a grid trained with stop_when_solved: 0")
    parser.add_argument("--patience", type=int, nargs="+", default=[1, 2, 3])
    args = parser.parse_args(argv)
    replayed = replay(args.runs, args.patience)
    if replayed.empty:
        raise SystemExit(f"no run folders with a full history under {args.runs}")
    print(summarise(replayed).to_string(index=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
