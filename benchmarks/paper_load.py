"""The paper grid's workflow at paper size, on FABRICATED run folders: how long Snakemake takes to
plan the grid's DAG, and how long and how much memory the three collect steps (tables, figures,
paper tables) take, without training a single run.

    python benchmarks/paper_load.py --out /tmp/paper_load            # config/paper.yaml, all runs
    python benchmarks/paper_load.py --out /tmp/tiny --quick          # a check of the script

SYNTHETIC DATA. Every number in the fabricated run folders is random: they have the paper grid's
exact shape (its 21,630 runs; per run the rows the probes write at the run's hidden size, state
size, sequence length and probe step: every lag up to 256 and log-spaced beyond, D rows for the
elementwise models, S singular values per product lag, S Lyapunov exponents, 2H + 1 memory
delays) and nothing else. metrics.json carries "synthetic": true in its provenance. Never point
a report at them or mix them with results. Only the files the collect steps read are made
(metrics.json and the seven probe and summary CSVs, not history.csv, steps.csv or model.pt), and
every dataset file is an empty placeholder.

Steps, each timed (wall, CPU) with its peak resident memory (of the process and its children):
  fabricate   the run folders and placeholder datasets (2 processes)
  schedule    `snakemake -n` over the fabricated workdir: the DAG of every job, every declared
              file checked (nothing is left to run but the collect rules); also on the default
              grid's structure and on a one-job grid, whose CPU (Snakemake's start, the config
              checks) is taken off both to give the CPU each job adds, at both sizes
  tables      gapbench.reports.tables.collect, as the tables rule runs it
  figures     python -m gapbench figures --page STEM, a process per page one at a time, as the
              figures rule runs each page (summed; the largest peak); then every page in one
              process, side by side
  paper       python -m gapbench paper-tables
Prints one line per step and writes them to OUT/summary.txt.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from multiprocessing import Pool
from pathlib import Path

import numpy as np

from gapbench import models, tasks
from gapbench.config import load_config, model_entry, model_hidden_size, task_label, task_models
from gapbench.probes._linearisation import is_elementwise
from gapbench.probes._numerics import kept_positions
from gapbench.reports.figures import figure_stems, shape_of_config
from gapbench.results import COMPLETE_MARKER, DATA_DIR, DATA_SPLITS, JOB_RECORD, RUN_DIR, TABLES_DIR

ROOT = Path(__file__).resolve().parent.parent
TEXT = np.dtypes.StringDType()
SUMMARY_COLUMNS = ["decay_log10_per_step", "half_life_steps", "lyapunov_max", "lyapunov_sum", "spectral_radius",
                   "memory_capacity", "memory_capacity_from_1"]
TRAINING_COLUMNS = ["diverged", "clipped_fraction", "nonfinite_norms", "norm_min", "norm_q10", "norm_median",
                    "norm_q90", "norm_max"]
FABRICATED = {"gradient_decay", "jacobian_spectrum", "sensitivity", "lyapunov", "memory_capacity"}


def runs_of(config: dict) -> list[dict]:
    """Every run of the config with the shape of its tables: T, probe step, H, S, elementwise."""
    shapes, runs = {}, []
    for entry in config["tasks"]:
        for gap in entry["gaps"]:
            task = tasks.build(entry["name"], gap, **entry.get("params", {}))
            for label in task_models(config, entry):
                model = model_entry(config, label)
                hidden = model_hidden_size(config, model)
                key = (label, task.input_size)
                if key not in shapes:
                    net = models.build(model["name"], task.input_size, hidden, **model.get("options", {}))
                    shapes[key] = (net.state_size, is_elementwise(net))
                state, elementwise = shapes[key]
                for clip in config["clip"]["arms"]:
                    for seed in config["seeds"]:
                        runs.append({
                            "task": task_label(entry), "model": label, "clip": clip, "gap": gap, "seed": seed,
                            "task_name": entry["name"], "model_name": model["name"], "hidden": hidden,
                            "state": state, "elementwise": elementwise, "seq_len": task.seq_len,
                            "probe_step": task.probe_step, "metric": task.metric, "baseline": task.baseline,
                            "score_label": task.score_label,
                        })
    return runs


def _numbers(rng, n):
    return rng.standard_normal(n).astype(TEXT)  # shortest round-trip text of random doubles


def _csv(header: list[str], columns: list, suffix: str) -> str:
    line = columns[0]
    for column in columns[1:]:
        line = np.strings.add(np.strings.add(line, ","), column)
    line = np.strings.add(line, suffix)
    return ",".join(header) + "\n" + "\n".join(line.tolist()) + "\n"


def _ints(values) -> np.ndarray:
    return np.asarray(values).astype(TEXT)


def fabricate_run(run: dict, rng) -> None:
    folder = Path(run["workdir"]) / RUN_DIR.format(**{k: run[k] for k in ("task", "gap", "model", "clip", "seed")})
    folder.mkdir(parents=True, exist_ok=True)
    keys = f"{run['task']},{run['model']},{run['clip']},{run['gap']},{run['seed']}"
    key_header = ["stage", "task", "model", "clip", "gap", "seed"]
    T, t, S, H = run["seq_len"], run["probe_step"], run["state"], run["hidden"]
    tables = {name: [] for name in FABRICATED}
    for stage in ("init", "trained"):
        suffix = f",{stage},{keys}"
        lags = kept_positions(t)
        tables["gradient_decay"].append(_csv(
            ["lag", "log10_grad_norm", "grad_norm", "log10_grad_norm_observed", "grad_norm_observed"] + key_header,
            [_ints(lags)] + [_numbers(rng, len(lags)) for _ in range(4)], suffix))
        lags = kept_positions(T - 1)
        tables["sensitivity"].append(_csv(
            ["lag", "log10_sensitivity", "log10_sensitivity_observed"] + key_header,
            [_ints(lags)] + [_numbers(rng, len(lags)) for _ in range(2)], suffix))
        statistics = ["spectral_radius", "sigma_max", "sigma_min"]
        quantity, step, lag, statistic, index = ["W_h"] * 3, [""] * 3, [""] * 3, list(statistics), [""] * 3
        d_steps = kept_positions(T - 1) if run["elementwise"] else []
        picked = np.unique(np.linspace(0, T - 1, min(25, T)).round().astype(int))
        for name, steps in (("D", d_steps), ("J", picked)):
            for s in statistics:
                quantity += [name] * len(steps)
                step += [str(v) for v in steps]
                lag += ["1"] * len(steps)
                statistic += [s] * len(steps)
                index += [""] * len(steps)
        for product_lag in sorted({max(1, round(T * f)) for f in (0, 0.25, 0.5, 1.0)}):
            quantity += ["product"] * S
            step += [str(T - 1)] * S
            lag += [str(product_lag)] * S
            statistic += ["log10_singular_value"] * S
            index += [str(i) for i in range(1, S + 1)]
        tables["jacobian_spectrum"].append(_csv(
            ["quantity", "step", "lag", "statistic", "index", "value"] + key_header,
            [np.asarray(c, dtype=TEXT) for c in (quantity, step, lag, statistic, index)]
            + [_numbers(rng, len(quantity))], suffix))
        tables["lyapunov"].append(_csv(["index", "exponent", "cumulative_sum"] + key_header,
                                       [_ints(np.arange(1, S + 1)), _numbers(rng, S), _numbers(rng, S)], suffix))
        tables["memory_capacity"].append(_csv(["delay", "mc"] + key_header,
                                              [_ints(np.arange(2 * H + 1)), _numbers(rng, 2 * H + 1)], suffix))
    for name, parts in tables.items():  # one header, both stages
        (folder / f"{name}.csv").write_text(parts[0] + "".join(p.split("\n", 1)[1] for p in parts[1:]))
    summary_header = ["stage"] + SUMMARY_COLUMNS + ["task", "model", "clip", "gap", "seed"] + TRAINING_COLUMNS
    rows = [",".join([stage, *map(repr, rng.standard_normal(len(SUMMARY_COLUMNS)).tolist()), keys, "False",
                      *map(repr, rng.random(len(TRAINING_COLUMNS) - 1).tolist())]) for stage in ("init", "trained")]
    (folder / "propagation_summary.csv").write_text(",".join(summary_header) + "\n" + "\n".join(rows) + "\n")
    loss = float(rng.random())
    metrics = {
        "task": run["task"], "model": run["model"], "clip": run["clip"], "gap": run["gap"], "seed": run["seed"],
        "task_name": run["task_name"], "model_name": run["model_name"], "hidden_size": H, "task_params": {},
        "metric": run["metric"], "score_label": run["score_label"], "test_loss": loss, "test_score": float(rng.random()), "baseline": run["baseline"],
        "chance_score": 0.5, "success": bool(loss < 0.1), "diverged": False, "clip_fraction": 0.0,
        "train_steps": 5000, "steps_to_solve": None, "stopped_early": False, "wall_seconds": 0.0,
        "clip_threshold": None, "stability": {}, "threads": 1, "spec": {},
        "provenance": {"code_version": "synthetic", "synthetic": True},
    }
    (folder / COMPLETE_MARKER).write_text(json.dumps(metrics))


def _fabricate_chunk(chunk) -> int:
    rng = np.random.default_rng(chunk[0]["index"])
    for run in chunk:
        fabricate_run(run, rng)
    return len(chunk)


def fabricate(config: dict, workdir: Path, runs: list[dict], processes: int, log) -> None:
    for entry in config["tasks"]:  # placeholder datasets, older than every run
        for gap in entry["gaps"]:
            for seed in config["seeds"]:
                folder = workdir / DATA_DIR.format(task=task_label(entry), gap=gap, seed=seed)
                folder.mkdir(parents=True, exist_ok=True)
                for name in [f"{split}.npz" for split in DATA_SPLITS] + ["meta.json"]:
                    (folder / name).touch()
    for i, run in enumerate(runs):
        run.update(workdir=str(workdir), index=i)
    chunks = [runs[i:i + 50] for i in range(0, len(runs), 50)]
    done, started = 0, time.monotonic()
    with Pool(processes) as pool:
        for count in pool.imap_unordered(_fabricate_chunk, chunks):
            done += count
            if done % 2000 < 50 or done == len(runs):
                log(f"fabricate: {done}/{len(runs)} runs ({time.monotonic() - started:.0f} s)")
    jobs = {}  # each training job's record, written after its runs (as a job does)
    for run in runs:
        record = JOB_RECORD.format(task=run["task"], gap=run["gap"], model=run["model"])
        jobs.setdefault(record, []).append(RUN_DIR.format(**{k: run[k] for k in ("task", "gap", "model", "clip", "seed")}))
    for record, folders in jobs.items():
        (workdir / record).write_text(json.dumps({"runs": sorted(folders)}))


def measured(command: list[str], cwd: Path, env=None) -> dict:
    """Run a command; its wall time, CPU time and peak resident memory (wait4's rusage of that
    child: the process and the descendants it waited for)."""
    started = time.monotonic()
    with open(cwd / "step.out", "w") as out:
        process = subprocess.Popen(command, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, env=env)
        _, status, usage = os.wait4(process.pid, 0)
    wall = time.monotonic() - started
    text = (cwd / "step.out").read_text()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(command[:4])} failed:\n{text[-3000:]}")
    return {"wall": wall, "cpu": usage.ru_utime + usage.ru_stime, "peak_gb": usage.ru_maxrss / 2**20, "stdout": text}


def snakemake_dry_run(workdir: Path, configfile: Path) -> dict:
    out = measured([sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"), "--directory",
                    str(workdir), "--workflow-profile", "none", "--cores", "2", "-n", "--configfile", str(configfile)],
                   cwd=workdir)
    counts = re.search(r"^total\s+(\d+)", out["stdout"], re.M)
    out["scheduled"] = int(counts.group(1)) if counts else 0
    return out


def dag_jobs(config: dict) -> int:
    """Jobs in the DAG: datasets, training jobs, tables, a figures job per page, paper tables, all."""
    data = sum(len(e["gaps"]) for e in config["tasks"]) * len(config["seeds"])
    train = sum(len(e["gaps"]) * len(task_models(config, e)) for e in config["tasks"])
    return data + train + len(figure_stems(shape_of_config(config))) + 3


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=ROOT / "config" / "paper.yaml")
    parser.add_argument("--default-config", type=Path, default=ROOT / "config" / "default.yaml",
                        help="the structure the per-job scheduling cost is compared with")
    parser.add_argument("--out", type=Path, required=True, help="a scratch folder (several GB at paper size)")
    parser.add_argument("--quick", action="store_true", help="a check of the script: two task entries of the "
                        "paper grid at their first gap, one seed")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--keep", action="store_true", help="keep the fabricated folders")
    args = parser.parse_args(argv)
    lines = []

    def log(message):
        print(message, file=sys.stderr, flush=True)

    def report(line):
        lines.append(line)
        print(line, flush=True)

    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    report(f"SYNTHETIC run folders (random numbers, the paper grid's shape); commit {commit}; "
           f"{os.cpu_count()} cores; {time.strftime('%Y-%m-%d %H:%M')}")
    shutil.rmtree(args.out, ignore_errors=True)
    schedule = {}
    for name, path in (("minimal", args.default_config), ("default", args.default_config), ("paper", args.config)):
        config = load_config(path)
        workdir = args.out / name
        if name == "minimal":  # one training job: Snakemake's fixed cost (start, config checks, DAG)
            config["tasks"] = [{**config["tasks"][0], "gaps": config["tasks"][0]["gaps"][:1]}]
            config["models"], config["seeds"] = config["models"][:1], config["seeds"][:1]
            config["figures"]["decay_gap"] = {}
        if name == "paper" and args.quick:  # two task entries at their first gap, one seed
            config["tasks"] = [{**entry, "gaps": entry["gaps"][:1]} for entry in config["tasks"][:2]]
            config["seeds"] = config["seeds"][:1]
            config["figures"]["decay_gap"] = {}  # its gaps may be cut
        runs = runs_of(config)
        configfile = args.out / f"{name}.yaml"
        configfile.parent.mkdir(parents=True, exist_ok=True)
        configfile.write_text(json.dumps(config))
        started = time.monotonic()
        fabricate(config, workdir, runs, args.processes, log)
        files = sum(len(f) for _, _, f in os.walk(workdir / "results" / "runs"))
        size = sum(p.stat().st_size for p in (workdir / "results" / "runs").rglob("*.csv")) / 1e9
        report(f"{name}: fabricated {len(runs)} runs ({files} files, {size:.2f} GB of CSV) in "
               f"{time.monotonic() - started:.0f} s")
        dry = snakemake_dry_run(workdir, configfile)
        jobs = dag_jobs(config)
        schedule[name] = (jobs, dry["cpu"])
        per_job = ""
        if name != "minimal":  # the CPU a job adds to planning, beyond the fixed cost of a one-job grid
            base_jobs, base_cpu = schedule["minimal"]
            schedule[name] = (jobs, (dry["cpu"] - base_cpu) / (jobs - base_jobs))
            per_job = f"; {1000 * schedule[name][1]:.1f} ms CPU per job beyond a one-job grid's {base_cpu:.1f} s"
        report(f"{name}: schedule (snakemake -n, {jobs} jobs in the DAG, {dry['scheduled']} left to run): "
               f"{dry['wall']:.1f} s wall, {dry['cpu']:.1f} s CPU, peak {dry['peak_gb']:.2f} GB{per_job}")
        if name != "paper":
            continue
        tables = workdir / TABLES_DIR
        runs_file = args.out / "runs.json"
        runs_file.write_text(json.dumps([str(workdir / RUN_DIR.format(**{k: r[k] for k in ("task", "gap", "model",
                                                                                        "clip", "seed")}))
                                         for r in runs]))
        draw = [sys.executable, "-m", "gapbench", "figures", "--tables", str(tables), "--out-dir",
                str(workdir / "results" / "figures")]
        steps = {
            "tables": [sys.executable, "-c", "import json, sys; from gapbench.reports.tables import collect; "
                       f"collect(json.load(open({str(runs_file)!r})), {str(tables)!r})"],
            "figures": None,  # a job per page, as the pipeline draws them (below)
            "paper tables": [sys.executable, "-m", "gapbench", "paper-tables", "--tables", str(tables), "--out-dir",
                             str(workdir / "results" / "paper")],
        }
        total = 0.0
        for step, command in steps.items():
            if step == "figures":
                # one page a process, one at a time (the pipeline runs as many at once as it has
                # cores); beside it, every page in one process, as the pipeline did until 2026-12-08
                pages = [measured([*draw, "--page", page], cwd=workdir)
                         for page in figure_stems(shape_of_config(config))]
                out = {"wall": sum(p["wall"] for p in pages), "cpu": sum(p["cpu"] for p in pages),
                       "peak_gb": max(p["peak_gb"] for p in pages)}
                longest = max(p["wall"] for p in pages)
                report(f"paper: figures, a process per page ({len(pages)} pages, one at a time): "
                       f"{out['wall']:.0f} s wall, {out['cpu']:.0f} s CPU, the longest page {longest:.0f} s, "
                       f"peak {out['peak_gb']:.2f} GB")
                whole = measured(draw, cwd=workdir)
                report(f"paper: figures, every page in one process: {whole['wall']:.0f} s wall, "
                       f"{whole['cpu']:.0f} s CPU, peak {whole['peak_gb']:.2f} GB")
            else:
                out = measured(command, cwd=workdir)
                report(f"paper: {step}: {out['wall']:.0f} s wall, {out['cpu']:.0f} s CPU, peak {out['peak_gb']:.2f} GB")
            total += out["wall"]
        parquet = sum(p.stat().st_size for p in tables.glob("*.parquet")) / 1e9
        csv = sum(p.stat().st_size for p in tables.glob("*.csv")) / 1e9
        report(f"paper: the three collect steps: {total:.0f} s; tables: Parquet {parquet:.2f} GB, CSV {csv:.3f} GB")
    report(f"scheduling CPU per job, paper / default structure: {schedule['paper'][1] / schedule['default'][1]:.2f}x")
    (args.out / "summary.txt").write_text("\n".join(lines) + "\n")
    if not args.keep:
        for name in ("minimal", "default", "paper"):
            shutil.rmtree(args.out / name / "results" / "runs", ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
