"""A slice of the paper grid, estimated, sized, run through Snakemake and checked, and the paper
grid's estimate from the same calibration: `python benchmarks/gpu_slice.py --out DIR [--device cuda]`.

The slice is config/paper.yaml's `adding` entry (Arjovsky's convention) at gaps 30 and 100, all
of its 14 models at H = 128, all five seeds and all three clip arms: 28 jobs, 420 runs, the
paper's data sizes and optimiser, on a GPU its captured step (train.cuda_graph). How it was
chosen: a job keeps the paper's 15 runs (5 seeds × 3 arms), because a GPU step's cost is not
linear in the runs a job trains together, so the slice is calibrated at exactly the paper's
setting and one calibration serves both its check and the paper grid's estimate. What a job
does on the CPU (start-up, the float64 probes: 4 per seed) does not shrink with the steps, and
at gaps 100 and 1000 it alone would be about 3,700 CPU-seconds (the 2-core VM's calibration at
3581b08), 4 minutes on 16 cores; at gaps 30 and 100 it is about 1,050 s. Only the steps are
cut, and they are chosen, not guessed:

1. `gapbench cost` estimates the slice on this machine from its calibration (it measures what
   the calibration lacks: on a GPU, every model at 15 runs per job), and the largest step
   count of STEP_CHOICES whose estimated wall time fits --budget seconds is taken (with
   eval_every half of it); --steps fixes it instead. With --time-left, the budget is cut to
   what the calibration left of that time, less RESERVE_SECONDS.
2. The slice runs through the real workflow: `snakemake --cores C --resources gpu=J` (J jobs
   share the GPU; on the CPU J does nothing), in DIR/work: first `--until train` (the data
   and the training jobs, what the estimate covers), then the rest, each phase's wall time
   measured.
3. The training phase's wall time against the estimate for the same slice (`cost.gpu_wall_hours` on a
   GPU, the CPU grid's core-hours over the cores on a CPU), and every job against its own
   estimate (`gapbench cost --check`: with J jobs sharing a GPU a job's own time includes the
   others' turns, so the total is the comparison that counts).
4. At --size paper, right after the calibration of step 1 (so that a slice cut short keeps it),
   `gapbench cost` of the whole paper grid on this device (config/paper.yaml,
   and on a GPU config/gpu.yaml over it, as the slice's train settings), from the same calibration,
   with --extrapolate: measuring every model at the paper's T = 1000 and 2295 as well would not
   fit the session's minutes (the float64 probes alone), so the jobs longer than T = 200 continue
   the line through 50 and 200, and the estimate says how much of it that is.

`--uncaptured` calibrates, estimates and trains without CUDA graphs (train.cuda_graph false):
gpu_session.sh asks for it when the captured step's tests failed on the GPU, so that the paper
grid's estimate and the slice are still measured, and says so in the report.

Everything goes to DIR: slice.yaml, the calibration, snakemake.log, report.txt (machine,
commit, the choice of steps, estimate and measurement), and the workflow's figures and paper
tables under DIR/work/results. `--size tiny` (H = 8, gaps 10 and 20, seeds 0 and 1, small data)
runs the same steps (but the paper grid's estimate) on any CPU (71 s on a 2-core VM):
tests/test_gpu_slice.py does.
"""
from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
from gapbench.config import jobs_environment, load_config
from gapbench.provenance import code_version
from gapbench.reports import cost
from gapbench.results import FIGURES_DIR, PAPER_DIR, TRAIN_BENCHMARK

STEP_CHOICES = (50, 100, 200, 500, 1000, 2000, 5000)  # 5000: the paper's own
# what --time-left keeps after the training phase: the collection (tables, figures, paper tables of
# 420 runs), the per-job check and the session script's copying of the results
RESERVE_SECONDS = 90
SLICE_TASK, SLICE_GAPS, SLICE_SEEDS = "adding", (30, 100), (0, 1, 2, 3, 4)


def slice_config(size: str, device: str, steps: int, models: list[str] | None, captured: bool = True) -> dict:
    """paper.yaml cut to the slice (the keys Snakemake would merge over config/default.yaml); on
    cuda its step captured as a CUDA graph unless not `captured`."""
    paper = yaml.safe_load((ROOT / "config" / "paper.yaml").read_text())
    entry = next(e for e in paper["tasks"] if e["name"] == SLICE_TASK and "label" not in e)
    config = {**paper, "tasks": [{**entry, "gaps": list(SLICE_GAPS)}], "seeds": list(SLICE_SEEDS),
              "train": {**paper["train"], "steps": steps, "eval_every": max(1, steps // 2), "device": device,
                        "cuda_graph": device == "cuda" and captured},
              "figures": {"decay_gap": {SLICE_TASK: max(SLICE_GAPS)}}}
    if models:
        config["models"] = [m for m in paper["models"] if m["name"] in models]
    if size == "tiny":
        config.update(hidden_size=8, data={"sizes": {"train": 64, "validation": 32, "test": 32}}, seeds=[0, 1],
                      tasks=[{**entry, "gaps": [10, 20]}], figures={"decay_gap": {SLICE_TASK: 20}})
        config["train"].update(batch_size=16, probe_batch=8)
    return config


def paper_configs(device: str, captured: bool, out: Path) -> list[Path]:
    """The config files of the whole paper grid with the slice's train settings: on cuda
    config/gpu.yaml over paper.yaml, or (not `captured`) a file in `out` that trains uncaptured."""
    if device != "cuda":
        return [ROOT / "config" / "paper.yaml"]
    if captured:
        return [ROOT / "config" / "paper.yaml", ROOT / "config" / "gpu.yaml"]
    uncaptured = out / "gpu_uncaptured.yaml"
    uncaptured.write_text(yaml.safe_dump({"train": {"device": "cuda", "cuda_graph": False}}))
    return [ROOT / "config" / "paper.yaml", uncaptured]


def estimated_wall_seconds(path: Path, device: str, calibration: Path, cores: int, jobs_per_gpu: int) -> float:
    """The slice's wall time as `gapbench cost` models it, from the calibration on disk."""
    from gapbench.files import read_csv

    config = load_config(path, cuda_available=lambda: True)
    estimated = cost.estimate(config, read_csv(calibration), device)
    if device == "cuda":
        return cost.gpu_wall_hours(estimated, jobs_per_gpu, cores) * 3600
    return estimated.seconds.sum() / cores  # jobs spread over the cores, each slowed by contention


def _cost(paths, device: str, calibration: Path, *extra: str, log) -> str:
    """`gapbench cost` of the config files `paths` (one, or several merged in order) on `device`."""
    paths = [paths] if isinstance(paths, Path) else paths
    command = [sys.executable, "-m", "gapbench", "cost", *map(str, paths), "--device", device, "--calibration",
               str(calibration), *extra]
    result = subprocess.run(command, capture_output=True, text=True)
    log(f"$ {' '.join(command[1:])}\n{result.stdout}{result.stderr}")
    if result.returncode:
        raise SystemExit(f"gapbench cost failed ({result.returncode})")
    return result.stdout


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python benchmarks/gpu_slice.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--device", default="cuda", choices=["cpu", "cuda"])
    parser.add_argument("--size", default="paper", choices=["paper", "tiny"])
    parser.add_argument("--budget", type=float, default=240.0, help="seconds the slice may take (estimated)")
    parser.add_argument("--steps", type=int, help="steps per run (default: the largest that fits --budget)")
    parser.add_argument("--models", nargs="+", help="default: every model of paper.yaml")
    parser.add_argument("--cores", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--jobs-per-gpu", type=int, help="J of --resources gpu=J (default: --cores)")
    parser.add_argument("--calibration", type=Path, help="default: DIR/step_costs_DEVICE.csv")
    parser.add_argument("--uncaptured", action="store_true",
                        help="train (and calibrate) the slice without CUDA graphs: what gpu_session.sh asks for "
                             "when the captured step's tests failed, so that the estimate and the slice still run")
    parser.add_argument("--time-left", type=float,
                        help="seconds this script may take in all: the slice's budget is cut to what the "
                             "calibration leaves, less RESERVE_SECONDS for the collection and the check")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    jobs_per_gpu = args.jobs_per_gpu or args.cores
    calibration = (args.calibration or out / f"step_costs_{args.device}.csv").resolve()
    report = (out / "report.txt").open("a")

    def log(text: str) -> None:
        print(text, flush=True)
        report.write(text + "\n")
        report.flush()

    captured, path = not args.uncaptured, out / "slice.yaml"

    def write_slice(steps: int) -> None:
        path.write_text(yaml.safe_dump(slice_config(args.size, args.device, steps, args.models, captured),
                                       sort_keys=False))

    log(f"# gpu_slice.py {args.size} on {args.device}, commit {code_version()}, {platform.node()}, "
        f"{args.cores} cores, --resources gpu={jobs_per_gpu}"
        f"{'' if captured or args.device != 'cuda' else ', UNCAPTURED (--uncaptured: no CUDA graphs)'}")
    steps = args.steps or STEP_CHOICES[0]
    write_slice(steps)
    _cost(path, args.device, calibration, log=log)  # calibrates what the calibration lacks
    if args.size == "paper":  # the whole paper grid, from this calibration: first, so a slice cut short keeps it
        try:
            _cost(paper_configs(args.device, captured, out), args.device, calibration, "--extrapolate", log=log)
        except SystemExit as failed:  # said in the log; the slice still runs
            log(f"the paper grid's estimate failed: {failed}")
    budget = args.budget
    if args.time_left is not None:
        spent = time.perf_counter() - started
        budget = min(budget, args.time_left - spent - RESERVE_SECONDS)
        log(f"the slice's budget: {budget:.0f} s (--budget {args.budget:.0f}; {args.time_left:.0f} s in all, "
            f"{spent:.0f} s spent calibrating, {RESERVE_SECONDS} s kept for the rest)")
        if budget <= 0:
            log("no time left for the slice: stopped after the calibration and the estimate")
            return 1
    if args.steps is None:  # the largest step count whose estimate fits the budget
        for choice in STEP_CHOICES:
            write_slice(choice)
            if estimated_wall_seconds(path, args.device, calibration, args.cores, jobs_per_gpu) > budget:
                break
            steps = choice
        write_slice(steps)
    estimate = estimated_wall_seconds(path, args.device, calibration, args.cores, jobs_per_gpu)
    if args.steps is None and estimate > budget:
        log(f"even {steps} steps a run would take {estimate:.0f} s, over the budget of {budget:.0f} s: no slice run")
        return 1
    log(f"steps per run: {steps} ({'given' if args.steps else f'the largest of {STEP_CHOICES} within {budget:.0f} s'}); "
        f"estimated wall time {estimate:.0f} s")

    work = out / "work"
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"), "--directory", str(work),
               "--workflow-profile", "none", "--cores", str(args.cores), "--resources", f"gpu={jobs_per_gpu}",
               "--keep-going", "--configfile", str(path)]  # a failing job leaves the others theirs
    env = jobs_environment()
    walls = {}
    with (out / "snakemake.log").open("w") as snakemake_log:
        # first the data and training jobs (what the estimate covers), then the collection and figures
        for phase, until in (("training", ["--until", "train"]), ("collection", [])):
            started = time.perf_counter()
            result = subprocess.run(command[:-2] + until + command[-2:], stdout=snakemake_log,
                                    stderr=subprocess.STDOUT, env=env)
            walls[phase] = time.perf_counter() - started
            if result.returncode:
                log(f"snakemake ({phase}) failed ({result.returncode}) after {walls[phase]:.0f} s: see "
                    f"{out / 'snakemake.log'}")
                return 1
    log(f"measured wall time: data and training {walls['training']:.0f} s (estimate/measured "
        f"{estimate / walls['training']:.2f}, {(estimate / walls['training'] - 1) * 100:+.0f}%); "
        f"tables, figures and paper tables {walls['collection']:.0f} s")
    benchmarks = work / TRAIN_BENCHMARK.split("/{task}")[0]  # Snakemake's record of each training job
    _cost(path, args.device, calibration, "--check", str(benchmarks), log=log)
    figures = sorted(p.name for p in (work / FIGURES_DIR).glob("*.png"))
    log(f"figures: {len(figures)} ({', '.join(figures)}); paper tables: "
        f"{', '.join(sorted(p.name for p in (work / PAPER_DIR).glob('*')))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
